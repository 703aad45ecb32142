//! Values stored under keys (DESIGN.md section 3): page images and small
//! native records that are applied in Rust, without Postgres redo code.
//!
//! `get(key, lsn)` collects the newest image (or initialising record) and the
//! records above it, then calls [`reconstruct`] to apply them oldest first.
//!
//! Value formats (images):
//!
//! * relation blocks, SLRU pages, relmap/two-phase/control files: the bytes
//!   PostgreSQL has on disk;
//! * CLOG pages: [`BLCKSZ`] bytes, optionally followed by an 8-byte
//!   little-endian trailer with the greatest commit timestamp on the page
//!   (see [`clog_page_commit_ts`]);
//! * relation and SLRU segment sizes: a 4-byte little-endian `u32`;
//! * directories: [`Directory::encode`].
//!
//! An empty directory is created with the [`NativeRecord::DirInit`] record (or
//! by storing the image of an empty [`Directory`]; both read the same).
//!
//! The binary form of a [`Value`] ([`Value::ser`]) is a tag byte followed by
//! the payload, little-endian; [`Value::des`] rejects anything malformed.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;

use crate::key::{Key, KeyError, KeyKind, SlruKind, MAX_FORKNUM};

/// Size of a PostgreSQL page (relation block or SLRU page).
pub const BLCKSZ: usize = 8192;
/// Transactions whose status one CLOG page holds (PostgreSQL 15).
pub const CLOG_XACTS_PER_PAGE: u32 = 32768;
/// Size of the commit timestamp trailer that may follow a CLOG page.
pub const CLOG_TRAILER_SIZE: usize = 8;
const CLOG_XACTS_PER_BYTE: u32 = 4;
const CLOG_BITS_PER_XACT: u32 = 2;

/// What is stored under a key at an LSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// The complete value (a page image, file contents, a size, a directory).
    Image(Bytes),
    /// A change to the older value under the same key.
    Record(NativeRecord),
}

/// Transaction status as stored in two bits of a CLOG page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClogStatus {
    /// `TRANSACTION_STATUS_IN_PROGRESS`.
    InProgress = 0,
    /// `TRANSACTION_STATUS_COMMITTED`.
    Committed = 1,
    /// `TRANSACTION_STATUS_ABORTED`.
    Aborted = 2,
    /// `TRANSACTION_STATUS_SUB_COMMITTED`.
    SubCommitted = 3,
}

impl ClogStatus {
    /// The status whose two-bit code is `bits` (only the low two bits count).
    pub fn from_bits(bits: u8) -> ClogStatus {
        match bits & 3 {
            0 => ClogStatus::InProgress,
            1 => ClogStatus::Committed,
            2 => ClogStatus::Aborted,
            _ => ClogStatus::SubCommitted,
        }
    }
}

/// A small change applied in Rust to the older value under a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NativeRecord {
    /// Sets the status of each xid on a CLOG page. The caller passes only
    /// xids that live on this page (`xid / CLOG_XACTS_PER_PAGE` equal to the
    /// page number); this cannot be checked here, as a CLOG key holds the
    /// segment and page within it but records do not carry their page.
    ClogSetStatus {
        /// Transactions to update.
        xids: Vec<u32>,
        /// Their new status.
        status: ClogStatus,
        /// Commit timestamp (PostgreSQL `TimestampTz`, microseconds since
        /// 2000-01-01); raises the page's trailer to at least this value.
        commit_ts: Option<i64>,
    },
    /// Initialises an SLRU page of [`BLCKSZ`] zero bytes.
    SlruZeroPage,
    /// Writes `bytes` at `offset` of an SLRU page (multixact offsets and
    /// members); the write must lie within the page.
    SlruWrite {
        /// Byte offset in the page.
        offset: u16,
        /// The bytes to write.
        bytes: Vec<u8>,
    },
    /// Initialises a relation or SLRU segment size to this many blocks.
    RelSizeSet(u32),
    /// Raises a relation or SLRU segment size to at least this many blocks.
    RelSizeExtend(u32),
    /// Initialises an empty directory of this kind.
    DirInit(DirKind),
    /// Adds an entry to a directory (no-op if present).
    DirAdd(DirEntry),
    /// Removes an entry from a directory (no-op if absent).
    DirRemove(DirEntry),
}

impl NativeRecord {
    /// Whether the record produces the value on its own, ignoring the older one.
    pub fn will_init(&self) -> bool {
        matches!(
            self,
            NativeRecord::SlruZeroPage | NativeRecord::RelSizeSet(_) | NativeRecord::DirInit(_)
        )
    }

    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            NativeRecord::ClogSetStatus { .. } => "CLOG set-status",
            NativeRecord::SlruZeroPage => "SLRU zero-page",
            NativeRecord::SlruWrite { .. } => "SLRU write",
            NativeRecord::RelSizeSet(_) => "size-set",
            NativeRecord::RelSizeExtend(_) => "size-extend",
            NativeRecord::DirInit(_) => "directory-init",
            NativeRecord::DirAdd(_) => "directory-add",
            NativeRecord::DirRemove(_) => "directory-remove",
        }
    }

    /// Whether the record may be stored under a key of this kind: CLOG
    /// records under CLOG blocks, zero-page under any SLRU block, size
    /// records under relation or SLRU segment sizes, directory records under
    /// the directory key of their entry kind.
    pub fn fits(&self, kind: &KeyKind) -> bool {
        match self {
            NativeRecord::ClogSetStatus { .. } => matches!(
                kind,
                KeyKind::SlruBlock {
                    kind: SlruKind::Clog,
                    ..
                }
            ),
            NativeRecord::SlruZeroPage | NativeRecord::SlruWrite { .. } => {
                matches!(kind, KeyKind::SlruBlock { .. })
            }
            NativeRecord::RelSizeSet(_) | NativeRecord::RelSizeExtend(_) => {
                matches!(kind, KeyKind::RelSize(_) | KeyKind::SlruSegmentSize { .. })
            }
            NativeRecord::DirInit(dir) => DirKind::of_key(kind) == Some(*dir),
            NativeRecord::DirAdd(e) | NativeRecord::DirRemove(e) => {
                DirKind::of_key(kind) == Some(e.kind())
            }
        }
    }
}

impl From<NativeRecord> for Value {
    fn from(r: NativeRecord) -> Value {
        Value::Record(r)
    }
}

// ---------------------------------------------------------------------------
// CLOG pages
// ---------------------------------------------------------------------------

/// The greatest commit timestamp recorded on a CLOG page value, if it has
/// the trailer (i.e. is `BLCKSZ + CLOG_TRAILER_SIZE` bytes long).
pub fn clog_page_commit_ts(page: &[u8]) -> Option<i64> {
    let trailer = page.get(BLCKSZ..)?;
    let trailer: [u8; CLOG_TRAILER_SIZE] = trailer.try_into().ok()?;
    Some(i64::from_le_bytes(trailer))
}

/// The PostgreSQL page of a CLOG page value: its first [`BLCKSZ`] bytes
/// (all of it if shorter).
pub fn clog_page_without_trailer(page: &[u8]) -> &[u8] {
    &page[..page.len().min(BLCKSZ)]
}

/// Status of `xid` on a CLOG page (only `xid % CLOG_XACTS_PER_PAGE` is
/// used); `None` if the page is shorter than [`BLCKSZ`].
pub fn clog_page_xid_status(page: &[u8], xid: u32) -> Option<ClogStatus> {
    if page.len() < BLCKSZ {
        return None;
    }
    let (byte, shift) = clog_position(xid);
    Some(ClogStatus::from_bits(page[byte] >> shift))
}

fn clog_position(xid: u32) -> (usize, u32) {
    let index = xid % CLOG_XACTS_PER_PAGE;
    let byte = (index / CLOG_XACTS_PER_BYTE) as usize;
    let shift = (xid % CLOG_XACTS_PER_BYTE) * CLOG_BITS_PER_XACT;
    (byte, shift)
}

fn clog_apply(
    page: &mut Vec<u8>,
    xids: &[u32],
    status: ClogStatus,
    commit_ts: Option<i64>,
) -> Result<(), String> {
    if page.len() != BLCKSZ && page.len() != BLCKSZ + CLOG_TRAILER_SIZE {
        return Err(format!(
            "a CLOG page is {BLCKSZ} or {} bytes, the value is {} bytes",
            BLCKSZ + CLOG_TRAILER_SIZE,
            page.len()
        ));
    }
    for &xid in xids {
        let (byte, shift) = clog_position(xid);
        page[byte] = (page[byte] & !(3 << shift)) | ((status as u8) << shift);
    }
    if let Some(ts) = commit_ts {
        let ts = clog_page_commit_ts(page).map_or(ts, |old| old.max(ts));
        page.truncate(BLCKSZ);
        page.extend_from_slice(&ts.to_le_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

/// Which kind of entries a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirKind {
    /// Relation forks of one database ([`DirEntry::Rel`]).
    Rel = 0,
    /// Databases of the cluster ([`DirEntry::Db`]).
    Db = 1,
    /// Segments of one SLRU ([`DirEntry::SlruSegment`]).
    SlruSegment = 2,
    /// Prepared transactions ([`DirEntry::TwoPhase`]).
    TwoPhase = 3,
}

impl DirKind {
    const ALL: [DirKind; 4] = [
        DirKind::Rel,
        DirKind::Db,
        DirKind::SlruSegment,
        DirKind::TwoPhase,
    ];

    /// The directory kind stored under keys of this kind, if any.
    pub fn of_key(kind: &KeyKind) -> Option<DirKind> {
        match kind {
            KeyKind::RelDir { .. } => Some(DirKind::Rel),
            KeyKind::DbDir => Some(DirKind::Db),
            KeyKind::SlruDir(_) => Some(DirKind::SlruSegment),
            KeyKind::TwoPhaseDir => Some(DirKind::TwoPhase),
            _ => None,
        }
    }

    fn from_tag(tag: u8) -> Result<DirKind, ValueError> {
        DirKind::ALL
            .into_iter()
            .find(|k| *k as u8 == tag)
            .ok_or(ValueError::UnknownTag {
                what: "directory kind",
                tag,
            })
    }

    /// Bytes of one encoded entry (without the kind tag).
    fn entry_size(self) -> usize {
        match self {
            DirKind::Rel => 5,
            DirKind::Db => 8,
            DirKind::SlruSegment | DirKind::TwoPhase => 4,
        }
    }
}

impl fmt::Display for DirKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirKind::Rel => "relation directory",
            DirKind::Db => "database directory",
            DirKind::SlruSegment => "SLRU segment directory",
            DirKind::TwoPhase => "two-phase directory",
        })
    }
}

/// One entry of a directory. The derived order is the order in a [`Directory`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirEntry {
    /// A relation fork of the directory's database.
    Rel {
        /// Relation file node (not 0).
        relnode: u32,
        /// Fork number (at most [`MAX_FORKNUM`]).
        forknum: u8,
    },
    /// A database.
    Db {
        /// Tablespace OID (not 0).
        spcnode: u32,
        /// Database OID.
        dbnode: u32,
    },
    /// An SLRU segment, by segment number.
    SlruSegment(u32),
    /// A prepared transaction, by xid (not 0).
    TwoPhase(u32),
}

impl DirEntry {
    /// The kind of directory this entry belongs in.
    pub fn kind(&self) -> DirKind {
        match self {
            DirEntry::Rel { .. } => DirKind::Rel,
            DirEntry::Db { .. } => DirKind::Db,
            DirEntry::SlruSegment(_) => DirKind::SlruSegment,
            DirEntry::TwoPhase(_) => DirKind::TwoPhase,
        }
    }

    /// Why the entry cannot be stored, if it cannot (0 OIDs, bad fork).
    fn invalid_reason(&self) -> Option<&'static str> {
        match *self {
            DirEntry::Rel { relnode: 0, .. } => Some("relnode 0 is not a relation"),
            DirEntry::Rel { forknum, .. } if forknum > MAX_FORKNUM => {
                Some("fork number is larger than MAX_FORKNUM")
            }
            DirEntry::Db { spcnode: 0, .. } => Some("spcnode 0 is not a tablespace"),
            DirEntry::TwoPhase(0) => Some("xid 0 is not a transaction"),
            _ => None,
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match *self {
            DirEntry::Rel { relnode, forknum } => {
                out.extend_from_slice(&relnode.to_le_bytes());
                out.push(forknum);
            }
            DirEntry::Db { spcnode, dbnode } => {
                out.extend_from_slice(&spcnode.to_le_bytes());
                out.extend_from_slice(&dbnode.to_le_bytes());
            }
            DirEntry::SlruSegment(n) | DirEntry::TwoPhase(n) => {
                out.extend_from_slice(&n.to_le_bytes())
            }
        }
    }

    fn decode_payload(kind: DirKind, r: &mut Reader<'_>) -> Result<DirEntry, ValueError> {
        Ok(match kind {
            DirKind::Rel => DirEntry::Rel {
                relnode: r.u32("relation entry")?,
                forknum: r.u8("relation entry")?,
            },
            DirKind::Db => DirEntry::Db {
                spcnode: r.u32("database entry")?,
                dbnode: r.u32("database entry")?,
            },
            DirKind::SlruSegment => DirEntry::SlruSegment(r.u32("SLRU segment entry")?),
            DirKind::TwoPhase => DirEntry::TwoPhase(r.u32("two-phase entry")?),
        })
    }
}

impl fmt::Display for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirEntry::Rel { relnode, forknum } => write!(f, "relation {relnode} fork {forknum}"),
            DirEntry::Db { spcnode, dbnode } => write!(f, "database {spcnode}/{dbnode}"),
            DirEntry::SlruSegment(segno) => write!(f, "SLRU segment {segno:04X}"),
            DirEntry::TwoPhase(xid) => write!(f, "prepared transaction {xid}"),
        }
    }
}

/// Why an entry cannot be added to or removed from a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// The entry belongs in another kind of directory.
    #[error("{entry} does not belong in a {dir}")]
    WrongKind {
        /// The directory's kind.
        dir: DirKind,
        /// The rejected entry.
        entry: DirEntry,
    },
    /// The entry is not valid in any directory.
    #[error("invalid directory entry {entry}: {reason}")]
    InvalidEntry {
        /// The rejected entry.
        entry: DirEntry,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A directory value: a sorted set of entries of one [`DirKind`].
///
/// Encoding: kind tag (`u8`), entry count (`u32`), then the entries in
/// strictly increasing order, fixed size per kind, little-endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    kind: DirKind,
    entries: BTreeSet<DirEntry>,
}

impl Directory {
    /// An empty directory.
    pub fn new(kind: DirKind) -> Directory {
        Directory {
            kind,
            entries: BTreeSet::new(),
        }
    }

    /// The kind of entries it holds.
    pub fn kind(&self) -> DirKind {
        self.kind
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `entry` is present.
    pub fn contains(&self, entry: &DirEntry) -> bool {
        self.entries.contains(entry)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &DirEntry> + '_ {
        self.entries.iter()
    }

    /// The relation forks of a relation directory, as relations of database
    /// `dbnode` in tablespace `spcnode`.
    pub fn rels(&self, spcnode: u32, dbnode: u32) -> impl Iterator<Item = crate::key::RelTag> + '_ {
        self.entries.iter().filter_map(move |e| match e {
            DirEntry::Rel { relnode, forknum } => Some(crate::key::RelTag {
                spcnode,
                dbnode,
                relnode: *relnode,
                forknum: *forknum,
            }),
            _ => None,
        })
    }

    fn check(&self, entry: &DirEntry) -> Result<(), DirError> {
        if entry.kind() != self.kind {
            return Err(DirError::WrongKind {
                dir: self.kind,
                entry: *entry,
            });
        }
        match entry.invalid_reason() {
            Some(reason) => Err(DirError::InvalidEntry {
                entry: *entry,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Adds `entry`; `Ok(false)` if it was already present.
    pub fn insert(&mut self, entry: DirEntry) -> Result<bool, DirError> {
        self.check(&entry)?;
        Ok(self.entries.insert(entry))
    }

    /// Removes `entry`; `Ok(false)` if it was absent.
    pub fn remove(&mut self, entry: &DirEntry) -> Result<bool, DirError> {
        self.check(entry)?;
        Ok(self.entries.remove(entry))
    }

    /// The image stored under the directory's key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.entries.len() * self.kind.entry_size());
        out.push(self.kind as u8);
        // A set larger than u32::MAX entries cannot be built from values.
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            e.encode_payload(&mut out);
        }
        out
    }

    /// Reads [`Directory::encode`] output; rejects unknown kinds, counts that
    /// do not match the length, unsorted or duplicate and invalid entries.
    pub fn decode(buf: &[u8]) -> Result<Directory, ValueError> {
        let mut r = Reader { buf };
        let kind = DirKind::from_tag(r.u8("directory kind")?)?;
        let count = r.count("directory entry", kind.entry_size())?;
        let mut entries = BTreeSet::new();
        let mut prev: Option<DirEntry> = None;
        for _ in 0..count {
            let e = DirEntry::decode_payload(kind, &mut r)?;
            if let Some(reason) = e.invalid_reason() {
                return Err(ValueError::Invalid {
                    what: "directory entry",
                    reason: format!("{e}: {reason}"),
                });
            }
            if prev.is_some_and(|p| p >= e) {
                return Err(ValueError::Invalid {
                    what: "directory",
                    reason: format!("entries not in strictly increasing order at {e}"),
                });
            }
            prev = Some(e);
            entries.insert(e);
        }
        r.finish()?;
        Ok(Directory { kind, entries })
    }

    /// The directory a complete value holds: a decoded image, or an empty
    /// directory for [`NativeRecord::DirInit`]. Other records are not
    /// complete values and give [`ValueError::NotComplete`].
    pub fn from_value(value: &Value) -> Result<Directory, ValueError> {
        match value {
            Value::Image(buf) => Directory::decode(buf),
            Value::Record(NativeRecord::DirInit(kind)) => Ok(Directory::new(*kind)),
            Value::Record(r) => Err(ValueError::NotComplete(r.name())),
        }
    }

    /// The directory as an image value.
    pub fn to_value(&self) -> Value {
        Value::Image(Bytes::from(self.encode()))
    }
}

// ---------------------------------------------------------------------------
// Binary form
// ---------------------------------------------------------------------------

/// Why bytes could not be read as a [`Value`] or [`Directory`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The input ends in the middle of a field.
    #[error("value is truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes it needs.
        need: u64,
        /// Bytes left in the input.
        have: usize,
    },
    /// A count that cannot fit in the rest of the input.
    #[error("{what} count {count} does not fit in the {have} bytes left")]
    Count {
        /// What is counted.
        what: &'static str,
        /// The count read.
        count: u32,
        /// Bytes left in the input.
        have: usize,
    },
    /// A tag byte with no meaning.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// The kind of tag.
        what: &'static str,
        /// The byte read.
        tag: u8,
    },
    /// Bytes after a complete value.
    #[error("{0} unexpected bytes after the end of the value")]
    TrailingBytes(usize),
    /// A well-formed field with an impossible value.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A record where a complete value was needed.
    #[error("a {0} record is not a complete value")]
    NotComplete(&'static str),
}

const TAG_IMAGE: u8 = 0;
const TAG_CLOG_SET_STATUS: u8 = 1;
const TAG_SLRU_ZERO_PAGE: u8 = 2;
const TAG_REL_SIZE_SET: u8 = 3;
const TAG_REL_SIZE_EXTEND: u8 = 4;
const TAG_DIR_INIT: u8 = 5;
const TAG_DIR_ADD: u8 = 6;
const TAG_DIR_REMOVE: u8 = 7;
const TAG_SLRU_WRITE: u8 = 8;

/// Bounds-checked little-endian reader; never allocates more than it reads.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], ValueError> {
        let have = self.buf.len();
        match usize::try_from(n) {
            Ok(n) if n <= have => {
                let (head, tail) = self.buf.split_at(n);
                self.buf = tail;
                Ok(head)
            }
            _ => Err(ValueError::Truncated {
                what,
                need: n,
                have,
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ValueError> {
        let b = self.take(N as u64, what)?;
        Ok(b.try_into().expect("take returned N bytes"))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ValueError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ValueError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ValueError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, ValueError> {
        self.array(what).map(i64::from_le_bytes)
    }

    /// A `u32` count of items of `size` bytes each that must fit in the rest.
    fn count(&mut self, what: &'static str, size: usize) -> Result<u32, ValueError> {
        let count = self.u32(what)?;
        let have = self.buf.len();
        if (count as u64) * (size as u64) > have as u64 {
            return Err(ValueError::Count { what, count, have });
        }
        Ok(count)
    }

    fn finish(self) -> Result<(), ValueError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(ValueError::TrailingBytes(n)),
        }
    }
}

impl Value {
    /// First byte of the binary form of every [`Value::Image`] (and of no
    /// record), so a stored value can be classified without decoding it.
    pub const IMAGE_TAG: u8 = TAG_IMAGE;

    /// Whether `serialized` is the binary form of a [`Value::Image`] (by its
    /// first byte, [`Value::IMAGE_TAG`]).
    pub fn is_serialized_image(serialized: &[u8]) -> bool {
        serialized.first() == Some(&TAG_IMAGE)
    }

    /// Length of what comes before the page in the binary form of a
    /// [`Value::Image`]: [`Value::IMAGE_TAG`] and the `u64` page length.
    pub const IMAGE_PREFIX_LEN: usize = 9;

    /// What comes before a page of `page_len` bytes in the binary form of a
    /// [`Value::Image`] of it.
    pub fn serialized_image_prefix(page_len: usize) -> [u8; Value::IMAGE_PREFIX_LEN] {
        let mut prefix = [0u8; Value::IMAGE_PREFIX_LEN];
        prefix[0] = TAG_IMAGE;
        prefix[1..].copy_from_slice(&(page_len as u64).to_le_bytes());
        prefix
    }

    /// The page of `serialized` when it is exactly the binary form of a
    /// [`Value::Image`] (tag, a length that matches, the page): a layer file
    /// stores only the page of such a value, and
    /// [`Value::serialized_image_prefix`] gives the rest back.
    pub fn serialized_image_page(serialized: &[u8]) -> Option<&[u8]> {
        let page = serialized.get(Value::IMAGE_PREFIX_LEN..)?;
        (serialized[..Value::IMAGE_PREFIX_LEN] == Value::serialized_image_prefix(page.len()))
            .then_some(page)
    }

    /// Whether the value is complete on its own (an image or an
    /// initialising record), so older values need not be read.
    pub fn will_init(&self) -> bool {
        match self {
            Value::Image(_) => true,
            Value::Record(r) => r.will_init(),
        }
    }

    /// The binary form, see [`Value::ser_into`].
    pub fn ser(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.ser_into(&mut out);
        out
    }

    /// Appends the binary form to `out`: a tag byte, then the payload
    /// (images: `u64` length and bytes; CLOG records: status, timestamp flag
    /// and optional `i64`, `u32` count and xids; directory records: entry
    /// kind tag and fields), all little-endian.
    pub fn ser_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Image(b) => {
                out.reserve(Value::IMAGE_PREFIX_LEN + b.len());
                out.extend_from_slice(&Value::serialized_image_prefix(b.len()));
                out.extend_from_slice(b);
            }
            Value::Record(NativeRecord::ClogSetStatus {
                xids,
                status,
                commit_ts,
            }) => {
                out.reserve(19 + 4 * xids.len());
                out.push(TAG_CLOG_SET_STATUS);
                out.push(*status as u8);
                match commit_ts {
                    Some(ts) => {
                        out.push(1);
                        out.extend_from_slice(&ts.to_le_bytes());
                    }
                    None => out.push(0),
                }
                // A page holds 32768 xids; more than u32::MAX is not a record.
                out.extend_from_slice(&(xids.len() as u32).to_le_bytes());
                for xid in xids {
                    out.extend_from_slice(&xid.to_le_bytes());
                }
            }
            Value::Record(NativeRecord::SlruZeroPage) => out.push(TAG_SLRU_ZERO_PAGE),
            Value::Record(NativeRecord::SlruWrite { offset, bytes }) => {
                out.push(TAG_SLRU_WRITE);
                out.extend_from_slice(&offset.to_le_bytes());
                // Callers write a few bytes inside one page.
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Value::Record(NativeRecord::RelSizeSet(n)) => {
                out.push(TAG_REL_SIZE_SET);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Record(NativeRecord::RelSizeExtend(n)) => {
                out.push(TAG_REL_SIZE_EXTEND);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Record(NativeRecord::DirInit(kind)) => {
                out.push(TAG_DIR_INIT);
                out.push(*kind as u8);
            }
            Value::Record(NativeRecord::DirAdd(e)) => {
                out.extend_from_slice(&[TAG_DIR_ADD, e.kind() as u8]);
                e.encode_payload(out);
            }
            Value::Record(NativeRecord::DirRemove(e)) => {
                out.extend_from_slice(&[TAG_DIR_REMOVE, e.kind() as u8]);
                e.encode_payload(out);
            }
        }
    }

    /// [`Value::des`] of a shared buffer: an image is a slice of `buf`,
    /// not a copy (what the read path wants for 8 KiB pages).
    pub fn des_shared(buf: &Bytes) -> Result<Value, ValueError> {
        if let [TAG_IMAGE, len @ ..] = &buf[..] {
            if let Some(len) = len.first_chunk::<8>().map(|l| u64::from_le_bytes(*l)) {
                if len.checked_add(9) == Some(buf.len() as u64) {
                    return Ok(Value::Image(buf.slice(9..)));
                }
            }
        }
        Value::des(buf)
    }

    /// Reads [`Value::ser`] output. Truncated input, unknown tags, counts
    /// larger than the input and trailing bytes are errors. Directory entries
    /// are checked when applied, not here.
    pub fn des(buf: &[u8]) -> Result<Value, ValueError> {
        let mut r = Reader { buf };
        let value = match r.u8("value tag")? {
            TAG_IMAGE => {
                let len = r.u64("image length")?;
                Value::Image(Bytes::copy_from_slice(r.take(len, "image")?))
            }
            TAG_CLOG_SET_STATUS => {
                let status = match r.u8("CLOG status")? {
                    s @ 0..=3 => ClogStatus::from_bits(s),
                    tag => {
                        return Err(ValueError::UnknownTag {
                            what: "CLOG status",
                            tag,
                        })
                    }
                };
                let commit_ts = match r.u8("commit timestamp flag")? {
                    0 => None,
                    1 => Some(r.i64("commit timestamp")?),
                    tag => {
                        return Err(ValueError::UnknownTag {
                            what: "commit timestamp flag",
                            tag,
                        })
                    }
                };
                let count = r.count("CLOG xid", 4)?;
                let xids = (0..count)
                    .map(|_| r.u32("CLOG xid"))
                    .collect::<Result<_, _>>()?;
                NativeRecord::ClogSetStatus {
                    xids,
                    status,
                    commit_ts,
                }
                .into()
            }
            TAG_SLRU_ZERO_PAGE => NativeRecord::SlruZeroPage.into(),
            TAG_SLRU_WRITE => {
                let offset = u16::from_le_bytes(r.array("SLRU write offset")?);
                let len = r.count("SLRU write byte", 1)?;
                let bytes = r.take(u64::from(len), "SLRU write bytes")?.to_vec();
                if usize::from(offset) + bytes.len() > BLCKSZ {
                    return Err(ValueError::Invalid {
                        what: "SLRU write",
                        reason: format!("{} bytes at offset {offset} leave the page", bytes.len()),
                    });
                }
                NativeRecord::SlruWrite { offset, bytes }.into()
            }
            TAG_REL_SIZE_SET => NativeRecord::RelSizeSet(r.u32("size")?).into(),
            TAG_REL_SIZE_EXTEND => NativeRecord::RelSizeExtend(r.u32("size")?).into(),
            TAG_DIR_INIT => {
                NativeRecord::DirInit(DirKind::from_tag(r.u8("directory kind")?)?).into()
            }
            tag @ (TAG_DIR_ADD | TAG_DIR_REMOVE) => {
                let kind = DirKind::from_tag(r.u8("directory kind")?)?;
                let entry = DirEntry::decode_payload(kind, &mut r)?;
                if tag == TAG_DIR_ADD {
                    NativeRecord::DirAdd(entry).into()
                } else {
                    NativeRecord::DirRemove(entry).into()
                }
            }
            tag => return Err(ValueError::UnknownTag { what: "value", tag }),
        };
        r.finish()?;
        Ok(value)
    }
}

// ---------------------------------------------------------------------------
// Reconstruction
// ---------------------------------------------------------------------------

/// Why records could not be applied to produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Nothing to reconstruct from.
    #[error("no value for key {key}: no base image and no records")]
    NoValue {
        /// The key.
        key: Key,
    },
    /// The key is not a valid key of any kind.
    #[error("cannot apply records: {0}")]
    InvalidKey(#[from] KeyError),
    /// No base image, and the oldest record needs one.
    #[error("no base value for {kind} (key {key}): the oldest record ({record}) does not initialise the value")]
    NoBase {
        /// The key.
        key: Key,
        /// What the key is.
        kind: KeyKind,
        /// The record that needs an older value.
        record: &'static str,
    },
    /// The record is not stored under keys of this kind.
    #[error("a {record} record cannot apply to {kind} (key {key})")]
    WrongKey {
        /// The key.
        key: Key,
        /// What the key is.
        kind: KeyKind,
        /// The record.
        record: &'static str,
    },
    /// The older value is not what the record expects.
    #[error("a {record} record does not fit the value of {kind} (key {key}): {reason}")]
    BadValue {
        /// The key.
        key: Key,
        /// What the key is.
        kind: KeyKind,
        /// The record.
        record: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// A directory edit was refused.
    #[error("a {record} record cannot apply to {kind} (key {key}): {source}")]
    Directory {
        /// The key.
        key: Key,
        /// What the key is.
        kind: KeyKind,
        /// The record.
        record: &'static str,
        /// Why.
        source: DirError,
    },
}

/// The value while records are applied; directories stay decoded between
/// consecutive directory records.
enum State {
    Missing,
    Raw(Vec<u8>),
    Dir(Directory),
}

/// The value of `key` after applying `records` (oldest first) to
/// `base_image`. A record that [`NativeRecord::will_init`] replaces whatever
/// came before it. Errors, naming the key: no base and the oldest record
/// does not initialise; a record that does not [`NativeRecord::fits`] the
/// key; a value of the wrong shape (CLOG page not 8192/8200 bytes, size not
/// 4 bytes, directory that does not decode or is of another kind).
pub fn reconstruct(
    key: Key,
    base_image: Option<Bytes>,
    records: &[NativeRecord],
) -> Result<Bytes, ApplyError> {
    if records.is_empty() {
        return base_image.ok_or(ApplyError::NoValue { key });
    }
    let kind = key.kind()?;
    let mut state = match base_image {
        Some(b) => State::Raw(Vec::from(b)),
        None => State::Missing,
    };
    for rec in records {
        let record = rec.name();
        let bad_value = |reason: String| ApplyError::BadValue {
            key,
            kind,
            record,
            reason,
        };
        if !rec.fits(&kind) {
            return Err(ApplyError::WrongKey { key, kind, record });
        }
        state = match (rec, state) {
            (NativeRecord::SlruZeroPage, _) => State::Raw(vec![0; BLCKSZ]),
            (NativeRecord::RelSizeSet(n), _) => State::Raw(n.to_le_bytes().to_vec()),
            (NativeRecord::DirInit(dir), _) => State::Dir(Directory::new(*dir)),
            (
                NativeRecord::ClogSetStatus {
                    xids,
                    status,
                    commit_ts,
                },
                State::Raw(mut page),
            ) => {
                clog_apply(&mut page, xids, *status, *commit_ts).map_err(bad_value)?;
                State::Raw(page)
            }
            (NativeRecord::SlruWrite { offset, bytes }, State::Raw(mut page)) => {
                let start = usize::from(*offset);
                let end = start + bytes.len();
                if page.len() != BLCKSZ || end > BLCKSZ {
                    return Err(bad_value(format!(
                        "cannot write {} bytes at offset {start} of a {}-byte page",
                        bytes.len(),
                        page.len()
                    )));
                }
                page[start..end].copy_from_slice(bytes);
                State::Raw(page)
            }
            (NativeRecord::RelSizeExtend(n), State::Raw(old)) => {
                let old: [u8; 4] = old.as_slice().try_into().map_err(|_| {
                    bad_value(format!(
                        "a size is 4 bytes, the value is {} bytes",
                        old.len()
                    ))
                })?;
                State::Raw(u32::from_le_bytes(old).max(*n).to_le_bytes().to_vec())
            }
            (NativeRecord::DirAdd(e) | NativeRecord::DirRemove(e), state) => {
                let mut dir = match state {
                    State::Dir(dir) => dir,
                    State::Raw(buf) => Directory::decode(&buf)
                        .map_err(|e| bad_value(format!("not a directory: {e}")))?,
                    State::Missing => return Err(ApplyError::NoBase { key, kind, record }),
                };
                // fits() made sure the key is a directory key of the entry's kind.
                if dir.kind() != e.kind() {
                    return Err(bad_value(format!(
                        "the value is a {}, the key holds a {}",
                        dir.kind(),
                        e.kind()
                    )));
                }
                let edit = match rec {
                    NativeRecord::DirAdd(_) => dir.insert(*e),
                    _ => dir.remove(e),
                };
                edit.map_err(|source| ApplyError::Directory {
                    key,
                    kind,
                    record,
                    source,
                })?;
                State::Dir(dir)
            }
            (
                NativeRecord::ClogSetStatus { .. }
                | NativeRecord::RelSizeExtend(_)
                | NativeRecord::SlruWrite { .. },
                State::Missing,
            ) => return Err(ApplyError::NoBase { key, kind, record }),
            // Only directory keys hold directories, and only directory
            // records fit them, so a decoded directory never meets these.
            (
                NativeRecord::ClogSetStatus { .. }
                | NativeRecord::RelSizeExtend(_)
                | NativeRecord::SlruWrite { .. },
                State::Dir(_),
            ) => return Err(bad_value("the value is a directory".into())),
        };
    }
    match state {
        // Not reached: records is not empty and each one sets the state.
        State::Missing => Err(ApplyError::NoValue { key }),
        State::Raw(buf) => Ok(Bytes::from(buf)),
        State::Dir(dir) => Ok(Bytes::from(dir.encode())),
    }
}

#[cfg(test)]
mod tests;
