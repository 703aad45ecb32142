//! The 18-byte key space of the page store (DESIGN.md section 3).
//!
//! A [`Key`] is six fields compared in order, so the derived ordering equals
//! the ordering of the big-endian byte encoding:
//!
//! | field | bytes | meaning (relation blocks)       |
//! |-------|-------|---------------------------------|
//! | 1     | 1     | kind prefix (0x00 = relation)   |
//! | 2     | 4     | spcnode                         |
//! | 3     | 4     | dbnode                          |
//! | 4     | 4     | relnode                         |
//! | 5     | 1     | fork number                     |
//! | 6     | 4     | block number                    |
//!
//! Text form (layer file names, `pagectl`): 36 lowercase hex digits.
//!
//! # Kinds of keys
//!
//! Every key that carries data is one of the [`KeyKind`]s below; any other
//! 18-byte value is rejected by [`Key::kind`]. Fields are listed 1 to 6.
//!
//! | kind                        | field1 | 2       | 3      | 4       | 5       | 6            |
//! |-----------------------------|--------|---------|--------|---------|---------|--------------|
//! | relation block              | 0x00   | spcnode | dbnode | relnode | forknum | blknum       |
//! | relation size               | 0x00   | spcnode | dbnode | relnode | forknum | `0xFFFFFFFF` |
//! | relation directory of a db  | 0x00   | spcnode | dbnode | 0       | 0       | 1            |
//! | relmap file of a db         | 0x00   | spcnode | dbnode | 0       | 0       | 0            |
//! | database directory          | 0x00   | 0       | 0      | 0       | 0       | 0            |
//! | SLRU directory              | 0x01   | kind    | 0      | 0       | 0       | 0            |
//! | SLRU block                  | 0x01   | kind    | 1      | segno   | 0       | blknum       |
//! | SLRU segment size           | 0x01   | kind    | 1      | segno   | 0       | `0xFFFFFFFF` |
//! | two-phase directory         | 0x02   | 0       | 0      | 0       | 0       | 0            |
//! | two-phase file              | 0x02   | 0       | 0      | 0       | 0       | xid (≠ 0)    |
//! | control file (`pg_control`) | 0x03   | 0       | 0      | 0       | 0       | 0            |
//! | checkpoint                  | 0x03   | 0       | 0      | 0       | 0       | 1            |
//! | last commit timestamp       | 0x03   | 0       | 0      | 0       | 0       | 2            |
//!
//! Relation keys have spcnode ≠ 0 and relnode ≠ 0 (both are invalid OIDs in
//! PostgreSQL) and forknum ≤ [`MAX_FORKNUM`]. The database directory uses
//! spcnode 0, which is why it cannot clash with the relmap key of a database
//! (whose spcnode is a real tablespace, never 0). All keys of one database
//! (relmap, relation directory, relation blocks and sizes) are contiguous,
//! see [`rel_range_of_db`]; the blocks of one relation are contiguous and sort
//! before its size key, see [`rel_block_range`].

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a key's byte encoding.
pub const KEY_SIZE: usize = 18;

/// A key of the page store.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Kind prefix.
    pub field1: u8,
    /// First 32-bit field (spcnode for relations).
    pub field2: u32,
    /// Second 32-bit field (dbnode for relations).
    pub field3: u32,
    /// Third 32-bit field (relnode for relations).
    pub field4: u32,
    /// Small field (fork number for relations).
    pub field5: u8,
    /// Last 32-bit field (block number for relations).
    pub field6: u32,
}

/// Why bytes or text could not be read as a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong number of bytes.
    #[error("a key is {KEY_SIZE} bytes, got {0}")]
    Length(usize),
    /// Not 36 hex digits.
    #[error("invalid key {0:?}: expected 36 hexadecimal digits")]
    Text(String),
    /// Well-formed 18 bytes that are not a key of any [`KeyKind`].
    #[error("key {0} is not a valid key of any kind (relation, SLRU, two-phase, control)")]
    Unknown(Key),
}

impl Key {
    /// The smallest key.
    pub const MIN: Key = Key {
        field1: 0,
        field2: 0,
        field3: 0,
        field4: 0,
        field5: 0,
        field6: 0,
    };
    /// The largest key (an exclusive bound: no data is stored under it).
    pub const MAX: Key = Key {
        field1: u8::MAX,
        field2: u32::MAX,
        field3: u32::MAX,
        field4: u32::MAX,
        field5: u8::MAX,
        field6: u32::MAX,
    };

    /// Big-endian encoding; byte order equals key order.
    pub fn to_bytes(&self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        b[0] = self.field1;
        b[1..5].copy_from_slice(&self.field2.to_be_bytes());
        b[5..9].copy_from_slice(&self.field3.to_be_bytes());
        b[9..13].copy_from_slice(&self.field4.to_be_bytes());
        b[13] = self.field5;
        b[14..18].copy_from_slice(&self.field6.to_be_bytes());
        b
    }

    /// Reads [`Key::to_bytes`] output.
    pub fn from_slice(b: &[u8]) -> Result<Key, KeyError> {
        if b.len() != KEY_SIZE {
            return Err(KeyError::Length(b.len()));
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Ok(Key {
            field1: b[0],
            field2: u32_at(1),
            field3: u32_at(5),
            field4: u32_at(9),
            field5: b[13],
            field6: u32_at(14),
        })
    }

    /// The key as a 144-bit number in an `i128`-free form: the top 16 bits
    /// and the low 128 bits. Useful for arithmetic on key ranges.
    fn to_u128_pair(self) -> (u16, u128) {
        let b = self.to_bytes();
        let hi = u16::from_be_bytes([b[0], b[1]]);
        let lo = u128::from_be_bytes(b[2..18].try_into().expect("16 bytes"));
        (hi, lo)
    }

    fn from_u128_pair(hi: u16, lo: u128) -> Key {
        let mut b = [0u8; KEY_SIZE];
        b[0..2].copy_from_slice(&hi.to_be_bytes());
        b[2..18].copy_from_slice(&lo.to_be_bytes());
        Key::from_slice(&b).expect("18 bytes")
    }

    /// The next key in order (saturating at [`Key::MAX`]).
    pub fn next(&self) -> Key {
        self.add(1)
    }

    /// `self + n` in the key order, treating the key as one 144-bit number
    /// (saturating at [`Key::MAX`]).
    pub fn add(&self, n: u32) -> Key {
        let (hi, lo) = self.to_u128_pair();
        match lo.checked_add(u128::from(n)) {
            Some(lo) => Key::from_u128_pair(hi, lo),
            None => match hi.checked_add(1) {
                Some(hi) => Key::from_u128_pair(hi, lo.wrapping_add(u128::from(n))),
                None => Key::MAX,
            },
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Key, KeyError> {
        let bad = || KeyError::Text(s.chars().take(64).collect());
        if s.len() != 2 * KEY_SIZE || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut b = [0u8; KEY_SIZE];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Key::from_slice(&b)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Kinds of keys
// ---------------------------------------------------------------------------

const REL_PREFIX: u8 = 0x00;
const SLRU_PREFIX: u8 = 0x01;
const TWOPHASE_PREFIX: u8 = 0x02;
const CONTROL_PREFIX: u8 = 0x03;

/// Block number (field 6) that marks a size key instead of a block key.
const SIZE_BLKNUM: u32 = u32::MAX;
/// Field 6 of the relation directory key of a database.
const RELDIR_TAG: u32 = 1;
/// Field 6 of the relmap file key of a database.
const RELMAP_TAG: u32 = 0;
/// Field 3 of SLRU segment keys (blocks and sizes); 0 is the SLRU directory.
const SLRU_SEGMENT_TAG: u32 = 1;

/// The main fork of a relation (PostgreSQL `MAIN_FORKNUM`).
pub const MAIN_FORKNUM: u8 = 0;
/// The free space map fork (PostgreSQL `FSM_FORKNUM`).
pub const FSM_FORKNUM: u8 = 1;
/// The visibility map fork (PostgreSQL `VISIBILITYMAP_FORKNUM`).
pub const VISIBILITYMAP_FORKNUM: u8 = 2;
/// The init fork of unlogged relations (PostgreSQL `INIT_FORKNUM`).
pub const INIT_FORKNUM: u8 = 3;
/// The largest valid fork number; keys with a larger one are invalid.
pub const MAX_FORKNUM: u8 = INIT_FORKNUM;

/// Identifies one fork of one relation, as PostgreSQL's `RelFileNode` plus
/// `ForkNumber`. The derived order equals the order of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelTag {
    /// Tablespace OID (never 0 in a valid key).
    pub spcnode: u32,
    /// Database OID (0 for shared catalogs in the global tablespace).
    pub dbnode: u32,
    /// Relation file node (never 0 in a valid key).
    pub relnode: u32,
    /// Fork number, `0..=MAX_FORKNUM`.
    pub forknum: u8,
}

impl fmt::Display for RelTag {
    /// PostgreSQL style: `spc/db/rel` with `_fsm`, `_vm` or `_init` for forks
    /// 1 to 3 (the main fork has no suffix), e.g. `1663/5/1259_fsm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.spcnode, self.dbnode, self.relnode)?;
        match self.forknum {
            MAIN_FORKNUM => Ok(()),
            FSM_FORKNUM => f.write_str("_fsm"),
            VISIBILITYMAP_FORKNUM => f.write_str("_vm"),
            INIT_FORKNUM => f.write_str("_init"),
            other => write!(f, "_fork{other}"),
        }
    }
}

/// The SLRUs whose pages the page server stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlruKind {
    /// Transaction status (`pg_xact`, formerly `pg_clog`).
    Clog = 0,
    /// Multixact offsets (`pg_multixact/offsets`).
    MultiXactOffsets = 1,
    /// Multixact members (`pg_multixact/members`).
    MultiXactMembers = 2,
}

impl SlruKind {
    /// All kinds, in key order.
    pub const ALL: [SlruKind; 3] = [
        SlruKind::Clog,
        SlruKind::MultiXactOffsets,
        SlruKind::MultiXactMembers,
    ];

    /// Directory of the SLRU relative to the PostgreSQL data directory.
    pub fn dir_name(&self) -> &'static str {
        match self {
            SlruKind::Clog => "pg_xact",
            SlruKind::MultiXactOffsets => "pg_multixact/offsets",
            SlruKind::MultiXactMembers => "pg_multixact/members",
        }
    }

    /// The kind stored in field 2 of SLRU keys, if `n` names one.
    pub fn from_u32(n: u32) -> Option<SlruKind> {
        SlruKind::ALL.into_iter().find(|k| *k as u32 == n)
    }
}

impl fmt::Display for SlruKind {
    /// Same as [`SlruKind::dir_name`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// What a key is, with its decoded fields (see the table in the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// One block of one relation fork.
    RelBlock {
        /// The relation fork.
        rel: RelTag,
        /// Block number, never `0xFFFFFFFF`.
        blknum: u32,
    },
    /// Number of blocks of a relation fork.
    RelSize(RelTag),
    /// The set of relation forks of a database.
    RelDir {
        /// Tablespace OID.
        spcnode: u32,
        /// Database OID.
        dbnode: u32,
    },
    /// The `pg_filenode.map` file of a database.
    RelMapFile {
        /// Tablespace OID.
        spcnode: u32,
        /// Database OID.
        dbnode: u32,
    },
    /// The set of databases of the cluster.
    DbDir,
    /// The set of segments of one SLRU.
    SlruDir(SlruKind),
    /// One page of an SLRU segment.
    SlruBlock {
        /// Which SLRU.
        kind: SlruKind,
        /// Segment number (the segment file name).
        segno: u32,
        /// Page number within the segment, never `0xFFFFFFFF`.
        blknum: u32,
    },
    /// Number of pages of an SLRU segment.
    SlruSegmentSize {
        /// Which SLRU.
        kind: SlruKind,
        /// Segment number.
        segno: u32,
    },
    /// The set of prepared transactions (`pg_twophase`).
    TwoPhaseDir,
    /// The state file of one prepared transaction.
    TwoPhaseFile {
        /// Transaction id, never 0.
        xid: u32,
    },
    /// `global/pg_control`.
    ControlFile,
    /// The latest checkpoint record contents.
    Checkpoint,
    /// The last commit seen by ingest: its LSN, its timestamp and the
    /// running maximum of commit timestamps (for LSN-by-timestamp, see
    /// [`crate::commit_ts::LastCommitTs`]).
    LastCommitTs,
}

impl KeyKind {
    /// The key of this kind; `k.kind()?.key() == k` for every valid key `k`.
    pub fn key(&self) -> Key {
        match *self {
            KeyKind::RelBlock { rel, blknum } => rel_block_key(rel, blknum),
            KeyKind::RelSize(rel) => rel_size_key(rel),
            KeyKind::RelDir { spcnode, dbnode } => rel_dir_key(spcnode, dbnode),
            KeyKind::RelMapFile { spcnode, dbnode } => relmap_file_key(spcnode, dbnode),
            KeyKind::DbDir => DBDIR_KEY,
            KeyKind::SlruDir(kind) => slru_dir_key(kind),
            KeyKind::SlruBlock {
                kind,
                segno,
                blknum,
            } => slru_block_key(kind, segno, blknum),
            KeyKind::SlruSegmentSize { kind, segno } => slru_segment_size_key(kind, segno),
            KeyKind::TwoPhaseDir => TWOPHASEDIR_KEY,
            KeyKind::TwoPhaseFile { xid } => twophase_file_key(xid),
            KeyKind::ControlFile => CONTROLFILE_KEY,
            KeyKind::Checkpoint => CHECKPOINT_KEY,
            KeyKind::LastCommitTs => LAST_COMMIT_TS_KEY,
        }
    }
}

impl fmt::Display for KeyKind {
    /// Human-readable, for error messages, e.g. `block 7 of relation 1663/5/1259`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::RelBlock { rel, blknum } => write!(f, "block {blknum} of relation {rel}"),
            KeyKind::RelSize(rel) => write!(f, "size of relation {rel}"),
            KeyKind::RelDir { spcnode, dbnode } => {
                write!(f, "relation directory of database {spcnode}/{dbnode}")
            }
            KeyKind::RelMapFile { spcnode, dbnode } => {
                write!(f, "relmap file of database {spcnode}/{dbnode}")
            }
            KeyKind::DbDir => f.write_str("database directory"),
            KeyKind::SlruDir(kind) => write!(f, "{kind} directory"),
            KeyKind::SlruBlock {
                kind,
                segno,
                blknum,
            } => write!(f, "block {blknum} of {kind} segment {segno:04X}"),
            KeyKind::SlruSegmentSize { kind, segno } => {
                write!(f, "size of {kind} segment {segno:04X}")
            }
            KeyKind::TwoPhaseDir => f.write_str("two-phase directory"),
            KeyKind::TwoPhaseFile { xid } => write!(f, "two-phase file of xid {xid}"),
            KeyKind::ControlFile => f.write_str("control file"),
            KeyKind::Checkpoint => f.write_str("checkpoint"),
            KeyKind::LastCommitTs => f.write_str("last commit timestamp"),
        }
    }
}

const fn make_key(
    field1: u8,
    field2: u32,
    field3: u32,
    field4: u32,
    field5: u8,
    field6: u32,
) -> Key {
    Key {
        field1,
        field2,
        field3,
        field4,
        field5,
        field6,
    }
}

/// Key of block `blknum` of `rel`. Not validated: a `rel` with spcnode 0,
/// relnode 0 or a fork above [`MAX_FORKNUM`], or `blknum == 0xFFFFFFFF`,
/// gives a key that [`Key::kind`] does not read back as a relation block.
pub const fn rel_block_key(rel: RelTag, blknum: u32) -> Key {
    make_key(
        REL_PREFIX,
        rel.spcnode,
        rel.dbnode,
        rel.relnode,
        rel.forknum,
        blknum,
    )
}

/// Key of the size (number of blocks) of `rel`; sorts after all its blocks.
pub const fn rel_size_key(rel: RelTag) -> Key {
    rel_block_key(rel, SIZE_BLKNUM)
}

/// Key of the set of relations of database `dbnode` in tablespace `spcnode`.
pub const fn rel_dir_key(spcnode: u32, dbnode: u32) -> Key {
    make_key(REL_PREFIX, spcnode, dbnode, 0, 0, RELDIR_TAG)
}

/// Key of the relmap file (`pg_filenode.map`) of a database.
pub const fn relmap_file_key(spcnode: u32, dbnode: u32) -> Key {
    make_key(REL_PREFIX, spcnode, dbnode, 0, 0, RELMAP_TAG)
}

/// Key of the set of databases. It is [`Key::MIN`]: spcnode 0 is not a valid
/// tablespace, so it never clashes with a [`relmap_file_key`].
pub const DBDIR_KEY: Key = make_key(REL_PREFIX, 0, 0, 0, 0, 0);

/// Key of the set of segments of an SLRU.
pub const fn slru_dir_key(kind: SlruKind) -> Key {
    make_key(SLRU_PREFIX, kind as u32, 0, 0, 0, 0)
}

/// Key of page `blknum` (within the segment, `0..SLRU_PAGES_PER_SEGMENT` in
/// PostgreSQL) of SLRU segment `segno`. `blknum == 0xFFFFFFFF` is the
/// segment size key instead.
pub const fn slru_block_key(kind: SlruKind, segno: u32, blknum: u32) -> Key {
    make_key(SLRU_PREFIX, kind as u32, SLRU_SEGMENT_TAG, segno, 0, blknum)
}

/// Key of the size (number of pages) of an SLRU segment.
pub const fn slru_segment_size_key(kind: SlruKind, segno: u32) -> Key {
    slru_block_key(kind, segno, SIZE_BLKNUM)
}

/// Key of the set of prepared transactions.
pub const TWOPHASEDIR_KEY: Key = make_key(TWOPHASE_PREFIX, 0, 0, 0, 0, 0);

/// Key of the state file of prepared transaction `xid` (xid 0 is the
/// directory key, not a file).
pub const fn twophase_file_key(xid: u32) -> Key {
    make_key(TWOPHASE_PREFIX, 0, 0, 0, 0, xid)
}

/// Key of `global/pg_control`.
pub const CONTROLFILE_KEY: Key = make_key(CONTROL_PREFIX, 0, 0, 0, 0, 0);

/// Key of the latest checkpoint data.
pub const CHECKPOINT_KEY: Key = make_key(CONTROL_PREFIX, 0, 0, 0, 0, 1);

/// Key of the last commit seen at each LSN (written at every commit record's
/// end LSN), see [`crate::commit_ts::LastCommitTs`].
pub const LAST_COMMIT_TS_KEY: Key = make_key(CONTROL_PREFIX, 0, 0, 0, 0, 2);

/// All block keys of `rel` (its size key is the exclusive end).
pub fn rel_block_range(rel: RelTag) -> Range<Key> {
    rel_block_key(rel, 0)..rel_size_key(rel)
}

/// Every key of one database: its relmap file, its relation directory and
/// the blocks and sizes of all its relations. Used to drop a database.
pub fn rel_range_of_db(spcnode: u32, dbnode: u32) -> Range<Key> {
    let start = make_key(REL_PREFIX, spcnode, dbnode, 0, 0, 0);
    let last = make_key(REL_PREFIX, spcnode, dbnode, u32::MAX, u8::MAX, u32::MAX);
    start..last.next()
}

impl Key {
    /// Decodes what this key is. Any 18 bytes that are not a key of some
    /// [`KeyKind`] give [`KeyError::Unknown`]; this never panics.
    pub fn kind(&self) -> Result<KeyKind, KeyError> {
        let unknown = Err(KeyError::Unknown(*self));
        let Key {
            field1,
            field2,
            field3,
            field4,
            field5,
            field6,
        } = *self;
        let kind = match field1 {
            REL_PREFIX if field2 == 0 => match (field3, field4, field5, field6) {
                (0, 0, 0, 0) => KeyKind::DbDir,
                _ => return unknown,
            },
            REL_PREFIX if field4 == 0 => match (field5, field6) {
                (0, RELMAP_TAG) => KeyKind::RelMapFile {
                    spcnode: field2,
                    dbnode: field3,
                },
                (0, RELDIR_TAG) => KeyKind::RelDir {
                    spcnode: field2,
                    dbnode: field3,
                },
                _ => return unknown,
            },
            REL_PREFIX if field5 <= MAX_FORKNUM => {
                let rel = RelTag {
                    spcnode: field2,
                    dbnode: field3,
                    relnode: field4,
                    forknum: field5,
                };
                if field6 == SIZE_BLKNUM {
                    KeyKind::RelSize(rel)
                } else {
                    KeyKind::RelBlock {
                        rel,
                        blknum: field6,
                    }
                }
            }
            SLRU_PREFIX => {
                let Some(kind) = SlruKind::from_u32(field2) else {
                    return unknown;
                };
                match (field3, field5, field6) {
                    (0, 0, 0) if field4 == 0 => KeyKind::SlruDir(kind),
                    (SLRU_SEGMENT_TAG, 0, SIZE_BLKNUM) => KeyKind::SlruSegmentSize {
                        kind,
                        segno: field4,
                    },
                    (SLRU_SEGMENT_TAG, 0, blknum) => KeyKind::SlruBlock {
                        kind,
                        segno: field4,
                        blknum,
                    },
                    _ => return unknown,
                }
            }
            TWOPHASE_PREFIX if (field2, field3, field4, field5) == (0, 0, 0, 0) => {
                if field6 == 0 {
                    KeyKind::TwoPhaseDir
                } else {
                    KeyKind::TwoPhaseFile { xid: field6 }
                }
            }
            CONTROL_PREFIX if (field2, field3, field4, field5) == (0, 0, 0, 0) => match field6 {
                0 => KeyKind::ControlFile,
                1 => KeyKind::Checkpoint,
                2 => KeyKind::LastCommitTs,
                _ => return unknown,
            },
            _ => return unknown,
        };
        Ok(kind)
    }

    /// Whether this is a relation block key; same as matching
    /// `KeyKind::RelBlock` on [`Key::kind`], but cheaper.
    pub fn is_rel_block(&self) -> bool {
        self.field1 == REL_PREFIX
            && self.field2 != 0
            && self.field4 != 0
            && self.field5 <= MAX_FORKNUM
            && self.field6 != SIZE_BLKNUM
    }
}

#[cfg(test)]
mod core_tests {
    use super::*;
    use proptest::prelude::*;

    fn any_key() -> impl Strategy<Value = Key> {
        (
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u32>(),
        )
            .prop_map(|(field1, field2, field3, field4, field5, field6)| Key {
                field1,
                field2,
                field3,
                field4,
                field5,
                field6,
            })
    }

    proptest! {
        #[test]
        fn bytes_and_text_round_trip(k in any_key()) {
            prop_assert_eq!(Key::from_slice(&k.to_bytes()).unwrap(), k);
            prop_assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
        }

        #[test]
        fn byte_order_is_key_order(a in any_key(), b in any_key()) {
            prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
        }

        #[test]
        fn next_is_the_successor(k in any_key()) {
            prop_assume!(k != Key::MAX);
            let n = k.next();
            prop_assert!(n > k);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Key::from_slice(&[0; 3]), Err(KeyError::Length(3)));
        assert!("zz".parse::<Key>().is_err());
        assert!("0".repeat(35).parse::<Key>().is_err());
        assert!("g".repeat(36).parse::<Key>().is_err());
        assert_eq!(Key::MAX.next(), Key::MAX);
        let k = Key {
            field6: u32::MAX,
            ..Key::MIN
        };
        assert_eq!(
            k.next(),
            Key {
                field5: 1,
                field6: 0,
                ..Key::MIN
            }
        );
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;
    use proptest::prelude::*;

    fn any_rel() -> impl Strategy<Value = RelTag> {
        (1..=u32::MAX, any::<u32>(), 1..=u32::MAX, 0..=MAX_FORKNUM).prop_map(
            |(spcnode, dbnode, relnode, forknum)| RelTag {
                spcnode,
                dbnode,
                relnode,
                forknum,
            },
        )
    }

    fn any_slru() -> impl Strategy<Value = SlruKind> {
        prop::sample::select(SlruKind::ALL.to_vec())
    }

    /// Every valid key kind, built through the public constructors.
    fn any_kind() -> impl Strategy<Value = KeyKind> {
        prop_oneof![
            (any_rel(), 0..u32::MAX).prop_map(|(rel, blknum)| KeyKind::RelBlock { rel, blknum }),
            any_rel().prop_map(KeyKind::RelSize),
            (1..=u32::MAX, any::<u32>())
                .prop_map(|(spcnode, dbnode)| KeyKind::RelDir { spcnode, dbnode }),
            (1..=u32::MAX, any::<u32>())
                .prop_map(|(spcnode, dbnode)| KeyKind::RelMapFile { spcnode, dbnode }),
            Just(KeyKind::DbDir),
            any_slru().prop_map(KeyKind::SlruDir),
            (any_slru(), any::<u32>(), 0..u32::MAX).prop_map(|(kind, segno, blknum)| {
                KeyKind::SlruBlock {
                    kind,
                    segno,
                    blknum,
                }
            }),
            (any_slru(), any::<u32>())
                .prop_map(|(kind, segno)| KeyKind::SlruSegmentSize { kind, segno }),
            Just(KeyKind::TwoPhaseDir),
            (1..=u32::MAX).prop_map(|xid| KeyKind::TwoPhaseFile { xid }),
            Just(KeyKind::ControlFile),
            Just(KeyKind::Checkpoint),
            Just(KeyKind::LastCommitTs),
        ]
    }

    proptest! {
        #[test]
        fn constructors_round_trip_through_kind(kind in any_kind()) {
            let key = kind.key();
            prop_assert_eq!(key.kind(), Ok(kind));
            prop_assert_eq!(key.is_rel_block(), matches!(kind, KeyKind::RelBlock { .. }));
        }

        #[test]
        fn rel_blocks_sort_by_blknum_then_size(rel in any_rel(), a in 0..u32::MAX, b in 0..u32::MAX) {
            let (ka, kb) = (rel_block_key(rel, a), rel_block_key(rel, b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert!(ka < rel_size_key(rel));
            prop_assert!(rel_block_range(rel).contains(&ka));
            prop_assert!(!rel_block_range(rel).contains(&rel_size_key(rel)));
            let db = rel_range_of_db(rel.spcnode, rel.dbnode);
            prop_assert!(db.contains(&ka) && db.contains(&rel_size_key(rel)));
            prop_assert!(db.contains(&rel_dir_key(rel.spcnode, rel.dbnode)));
            prop_assert!(db.contains(&relmap_file_key(rel.spcnode, rel.dbnode)));
        }

        #[test]
        fn other_databases_are_outside_the_db_range(rel in any_rel(), spc in 1..=u32::MAX, db in any::<u32>()) {
            prop_assume!((spc, db) != (rel.spcnode, rel.dbnode));
            let range = rel_range_of_db(spc, db);
            prop_assert!(!range.contains(&rel_block_key(rel, 0)));
            prop_assert!(!range.contains(&rel_size_key(rel)));
            prop_assert!(!range.contains(&rel_dir_key(rel.spcnode, rel.dbnode)));
        }

        #[test]
        fn random_keys_never_panic(
            bytes in prop::array::uniform18(any::<u8>()),
            near_valid in any::<bool>(),
        ) {
            let mut key = Key::from_slice(&bytes).unwrap();
            if near_valid {
                // Small field values reach every branch of `kind()`.
                key.field1 %= 5;
                key.field2 %= 4;
                key.field3 %= 3;
                key.field4 %= 3;
                key.field5 %= 5;
                key.field6 = if key.field6 % 3 == 2 { u32::MAX } else { key.field6 % 3 };
            }
            match key.kind() {
                Ok(kind) => prop_assert_eq!(kind.key(), key),
                Err(e) => prop_assert_eq!(e, KeyError::Unknown(key)),
            }
            prop_assert_eq!(key.is_rel_block(), matches!(key.kind(), Ok(KeyKind::RelBlock { .. })));
        }
    }

    #[test]
    fn fixed_keys_and_their_kinds() {
        assert_eq!(DBDIR_KEY, Key::MIN);
        assert_eq!(DBDIR_KEY.kind(), Ok(KeyKind::DbDir));
        assert_eq!(TWOPHASEDIR_KEY.kind(), Ok(KeyKind::TwoPhaseDir));
        assert_eq!(CONTROLFILE_KEY.kind(), Ok(KeyKind::ControlFile));
        assert_eq!(CHECKPOINT_KEY.kind(), Ok(KeyKind::Checkpoint));
        assert_eq!(LAST_COMMIT_TS_KEY.kind(), Ok(KeyKind::LastCommitTs));
        assert_eq!(
            LAST_COMMIT_TS_KEY.to_string(),
            "030000000000000000000000000000000002"
        );
        assert_eq!(
            "030000000000000000000000000000000002".parse::<Key>(),
            Ok(LAST_COMMIT_TS_KEY)
        );
        assert_eq!(
            LAST_COMMIT_TS_KEY.kind().unwrap().to_string(),
            "last commit timestamp"
        );
        assert!(CHECKPOINT_KEY < LAST_COMMIT_TS_KEY);
        assert_eq!(
            relmap_file_key(1664, 0).kind(),
            Ok(KeyKind::RelMapFile {
                spcnode: 1664,
                dbnode: 0
            })
        );
        assert_eq!(
            rel_dir_key(1663, 5).to_string(),
            "000000067f00000005000000000000000001"
        );
    }

    #[test]
    fn invalid_keys_are_unknown() {
        let rel = RelTag {
            spcnode: 1663,
            dbnode: 5,
            relnode: 1259,
            forknum: 0,
        };
        let bad = [
            Key {
                field5: MAX_FORKNUM + 1,
                ..rel_block_key(rel, 0)
            },
            Key {
                field2: 0,
                ..rel_block_key(rel, 0)
            },
            Key {
                field3: 5,
                ..DBDIR_KEY
            },
            Key {
                field6: 2,
                ..rel_dir_key(1663, 5)
            },
            Key {
                field5: 1,
                ..rel_dir_key(1663, 5)
            },
            Key {
                field2: 3,
                ..slru_dir_key(SlruKind::Clog)
            },
            Key {
                field4: 1,
                ..slru_dir_key(SlruKind::Clog)
            },
            Key {
                field3: 2,
                ..slru_block_key(SlruKind::Clog, 0, 0)
            },
            Key {
                field5: 1,
                ..slru_block_key(SlruKind::Clog, 0, 0)
            },
            Key {
                field4: 1,
                ..twophase_file_key(7)
            },
            Key {
                field6: 3,
                ..CHECKPOINT_KEY
            },
            Key {
                field1: 4,
                ..Key::MIN
            },
            Key::MAX,
        ];
        for key in bad {
            assert_eq!(key.kind(), Err(KeyError::Unknown(key)), "{key}");
            assert!(!key.is_rel_block());
        }
        let msg = KeyError::Unknown(Key::MAX).to_string();
        assert!(msg.contains(&Key::MAX.to_string()), "{msg}");
    }

    #[test]
    fn display_forms() {
        let rel = RelTag {
            spcnode: 1663,
            dbnode: 5,
            relnode: 1259,
            forknum: 0,
        };
        let with_fork = |forknum| RelTag { forknum, ..rel }.to_string();
        assert_eq!(with_fork(MAIN_FORKNUM), "1663/5/1259");
        assert_eq!(with_fork(FSM_FORKNUM), "1663/5/1259_fsm");
        assert_eq!(with_fork(VISIBILITYMAP_FORKNUM), "1663/5/1259_vm");
        assert_eq!(with_fork(INIT_FORKNUM), "1663/5/1259_init");
        assert_eq!(
            SlruKind::MultiXactMembers.dir_name(),
            "pg_multixact/members"
        );
        assert_eq!(SlruKind::Clog.to_string(), "pg_xact");
        let kind = rel_block_key(rel, 7).kind().unwrap();
        assert_eq!(kind.to_string(), "block 7 of relation 1663/5/1259");
        let kind = slru_block_key(SlruKind::Clog, 1, 3).kind().unwrap();
        assert_eq!(kind.to_string(), "block 3 of pg_xact segment 0001");
    }
}
