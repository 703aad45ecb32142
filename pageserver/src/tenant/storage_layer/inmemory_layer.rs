//! The open in-memory layer: receives ingested values in LSN order until it
//! is frozen and flushed to an L0 delta layer file.
//!
//! Values live in an ephemeral file (removed at start-up like every
//! temporary file), so memory per layer is bounded by the index, one entry
//! per value (about 32 bytes) plus one map node per key, and by the values
//! not yet written: about `MAX_SEALED` + `MAX_ENCODERS` + 2 batches of
//! `BATCH_BYTES` (the open one, those waiting, those being encoded).
//!
//! The ephemeral file is laid out as an L0 layer file: room for the header,
//! then each value as a layer file blob (length, flags, CRC32C, stored
//! bytes), page images zstd-compressed. The flush only appends index and
//! footer, writes the header, fsyncs and renames the file
//! ([`InMemoryLayer::finish`]): values are written and compressed once, and
//! compaction copies them as stored.
//!
//! Puts append values to an open batch in memory; a page image is held
//! there by reference, not copied ([`InMemoryLayer::put_image`]), and its
//! page compressed straight from the caller's buffer. A full batch is sealed
//! and encoded (compressed and checksummed) by up to `MAX_ENCODERS`
//! encoder threads of the layer at once, while puts go on: compression
//! stays off the ingest path. Encoded batches are written to the file in
//! order, by whichever thread holds the commit lock, so blobs are in arrival
//! order (an encoder thread that finds the lock taken leaves its batch to
//! the thread writing and encodes the next); every `WRITEBACK_CHUNK`
//! written, that thread starts their writeback, so the flush's fsync waits
//! for the tail only. When more than `MAX_SEALED` sealed batches wait, the
//! putting thread encodes one itself, which bounds the memory and slows
//! ingest to the encoding rate. Reads find each value either in the file or
//! in its batch.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use pageserver_api::key::Key;
use pageserver_api::value::Value;
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::layer_file::{
    blob_len, crc, decode_stored, finish_in_place, BlobInfo, IndexEntry, LayerError,
    ValueCompressor, BLOB_HEADER_SIZE, HEADER_SIZE, INDEX_ENTRY_SIZE, PREALLOCATION_CHUNK,
    WRITEBACK_CHUNK,
};

/// Value bytes per batch: a batch is sealed for encoding once it holds this
/// much.
const BATCH_BYTES: usize = 1 << 20;
/// Sealed batches that may wait for encoding before puts encode themselves.
const MAX_SEALED: usize = 4;
/// Most encoder threads per layer.
const MAX_ENCODERS: usize = 2;

static EPHEMERAL_SEQ: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Each encoding thread's compressor (its zstd context is reused).
    static COMPRESSOR: std::cell::RefCell<ValueCompressor> =
        std::cell::RefCell::new(ValueCompressor::default());
}

/// Where a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// Written: the blob starts at `offset`; `len` stored bytes follow its
    /// header, compressed when `flags` says so.
    File { offset: u64, len: u32, flags: u8 },
    /// Not written yet: value `index` of batch `seq`.
    Staged { seq: u64, index: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    lsn: Lsn,
    loc: Loc,
}

/// One value of a batch: key, LSN, its bytes and whether to store it
/// compressed.
struct BatchValue {
    key: Key,
    lsn: Lsn,
    bytes: Staged,
    compress: bool,
}

/// Where a batch holds a value's bytes.
enum Staged {
    /// Serialized at `start..start + len` of the batch's data.
    Data { start: u32, len: u32 },
    /// A page image: its page, shared with the caller.
    Page(Bytes),
}

impl Staged {
    /// Length of the serialized value.
    fn len(&self) -> usize {
        match self {
            Staged::Data { len, .. } => *len as usize,
            Staged::Page(page) => Value::IMAGE_PREFIX_LEN + page.len(),
        }
    }
}

/// Values put one after another, encoded together.
struct Batch {
    seq: u64,
    data: Vec<u8>,
    values: Vec<BatchValue>,
    /// Bytes of the pages held by reference.
    page_bytes: usize,
}

impl Batch {
    fn new(seq: u64, data: Vec<u8>) -> Batch {
        Batch {
            seq,
            data,
            values: Vec::new(),
            page_bytes: 0,
        }
    }

    /// Bytes of values held.
    fn len(&self) -> usize {
        self.data.len() + self.page_bytes
    }

    /// Bytes `start..start + len` of the data.
    fn data(&self, start: u32, len: u32) -> &[u8] {
        &self.data[start as usize..(start + len) as usize]
    }

    /// The serialized value `index` (copied from its page for an image).
    fn value(&self, index: u32) -> Option<Bytes> {
        Some(match &self.values.get(index as usize)?.bytes {
            Staged::Data { start, len } => Bytes::copy_from_slice(self.data(*start, *len)),
            Staged::Page(page) => Value::Image(page.clone()).ser().into(),
        })
    }

    /// Appends value `index` to `out` as its blob.
    fn encode_value(&self, index: usize, c: &mut ValueCompressor, out: &mut Vec<u8>) -> BlobInfo {
        let v = &self.values[index];
        match &v.bytes {
            Staged::Data { start, len } => c.append_blob(self.data(*start, *len), v.compress, out),
            Staged::Page(page) => c.append_page_blob(page, v.compress, out),
        }
    }
}

/// A batch's blobs, ready to be written: the bytes, and each value's blob
/// offset within them, stored length and flags.
struct Encoded {
    out: Vec<u8>,
    blobs: Vec<(u64, u32, u8)>,
    /// CRC32C of `out`, computed by the encoding thread (off the commit
    /// lock) from the blobs' CRCs.
    crc: u32,
}

/// Where a sealed batch is on its way to the file.
enum Stage {
    Waiting,
    Encoding,
    Encoded(Encoded),
    Writing,
}

struct Sealed {
    batch: Arc<Batch>,
    stage: Stage,
}

struct Inner {
    index: BTreeMap<Key, Vec<Entry>>,
    /// The batch puts append to.
    open_batch: Batch,
    /// Sealed batches not written yet, oldest first.
    sealed: VecDeque<Sealed>,
    /// Encoder threads running (or starting).
    encoders: usize,
    /// Why writing the file failed last, if it did (the batch stays sealed
    /// and is written again).
    failed: Option<String>,
    /// Bytes in the file: room for the header, then the blobs written.
    file_len: u64,
    /// Which written bytes' writeback to start next.
    writeback: crashsafe::WritebackCursor,
    /// CRC32C of the blobs written.
    blobs_crc: u32,
    /// End (exclusive) of the LSN range once frozen.
    end_lsn: Option<Lsn>,
    num_values: usize,
    /// The layer file this layer became, once finished.
    finished: Option<PathBuf>,
}

/// An in-memory layer with values in an ephemeral file.
pub struct InMemoryLayer {
    /// First LSN this layer may hold.
    pub start_lsn: Lsn,
    /// When the first value arrived (for `checkpoint_timeout`).
    pub opened_at: Instant,
    path: PathBuf,
    file: File,
    inner: RwLock<Inner>,
    /// Held while encoded batches are written: in order, one at a time.
    /// Holds the disk space reserved ahead of them.
    committing: Mutex<crashsafe::Preallocation>,
    /// Bytes of values held (before compression): read after every write
    /// batch, without waiting for the lock that encoder threads take.
    size: AtomicU64,
}

/// `len` as a staged value's length, if a value that long can be stored.
fn stageable(len: usize) -> Option<u32> {
    u32::try_from(len).ok().filter(|_| blob_len(len).is_some())
}

/// Buffers of written batches, kept for new batches of any layer: fresh
/// memory costs a page fault per page.
static SPARE_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Most buffers kept.
const MAX_SPARE_BUFFERS: usize = 16;

impl std::fmt::Debug for InMemoryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InMemoryLayer({}..{:?})", self.start_lsn, self.end_lsn())
    }
}

impl InMemoryLayer {
    /// A new open layer starting at `start_lsn`, with its ephemeral file in
    /// `dir` (named with [`crashsafe::TEMP_SUFFIX`] so start-up removes it).
    pub fn create(dir: &Path, start_lsn: Lsn) -> io::Result<InMemoryLayer> {
        let seq = EPHEMERAL_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = crashsafe::path_with_suffix(
            &dir.join(format!("ephemeral-{}-{seq}", std::process::id())),
            crashsafe::TEMP_SUFFIX,
        );
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(InMemoryLayer {
            start_lsn,
            opened_at: Instant::now(),
            path,
            file,
            inner: RwLock::new(Inner {
                index: BTreeMap::new(),
                open_batch: Batch::new(0, Vec::new()),
                sealed: VecDeque::new(),
                encoders: 0,
                failed: None,
                // Room for the layer file header, written when finished.
                file_len: HEADER_SIZE as u64,
                writeback: crashsafe::WritebackCursor::new(WRITEBACK_CHUNK),
                blobs_crc: 0,
                end_lsn: None,
                num_values: 0,
                finished: None,
            }),
            committing: Mutex::new(crashsafe::Preallocation::new(PREALLOCATION_CHUNK)),
            size: AtomicU64::new(0),
        })
    }

    fn read_inner(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().expect("in-memory layer lock poisoned")
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().expect("in-memory layer lock poisoned")
    }

    /// Adds the serialized value of `key` at `lsn`, to be stored compressed
    /// when `compress` (and that is smaller). LSNs of one key must not go
    /// backwards; a frozen layer refuses writes. An earlier failure to write
    /// the ephemeral file is returned here if writing still fails.
    pub fn put(
        self: &Arc<Self>,
        key: Key,
        lsn: Lsn,
        value: &[u8],
        compress: bool,
    ) -> io::Result<()> {
        self.put_with(key, lsn, compress, |buf| buf.extend_from_slice(value))
    }

    /// [`InMemoryLayer::put`] of the value that `serialize` appends to the
    /// buffer it is given (serialized in place, not copied).
    pub fn put_with(
        self: &Arc<Self>,
        key: Key,
        lsn: Lsn,
        compress: bool,
        serialize: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<()> {
        self.stage(key, lsn, compress, |batch| {
            let start = batch.data.len();
            serialize(&mut batch.data);
            let len = batch.data.len() - start;
            match (u32::try_from(start), stageable(len)) {
                (Ok(start), Some(len)) => Ok(Staged::Data { start, len }),
                _ => {
                    batch.data.truncate(start);
                    Err(len)
                }
            }
        })
    }

    /// [`InMemoryLayer::put`] of the serialized [`Value::Image`] of `page`:
    /// the batch holds the page itself, not a copy, and it is stored
    /// compressed when `compress` (and that is smaller). The page's buffer
    /// stays referenced until its batch is written, so it should not be a
    /// slice of a much larger one (WAL ingest and imports make each page
    /// its own buffer).
    pub fn put_image(
        self: &Arc<Self>,
        key: Key,
        lsn: Lsn,
        page: Bytes,
        compress: bool,
    ) -> io::Result<()> {
        self.stage(key, lsn, compress, |batch| {
            let staged = Staged::Page(page);
            let len = staged.len();
            stageable(len).ok_or(len)?;
            batch.page_bytes += len;
            Ok(staged)
        })
    }

    /// Adds the value that `add` puts in the open batch (or the length of
    /// one too large to store).
    fn stage(
        self: &Arc<Self>,
        key: Key,
        lsn: Lsn,
        compress: bool,
        add: impl FnOnce(&mut Batch) -> Result<Staged, usize>,
    ) -> io::Result<()> {
        let failed = self.write_inner().failed.take();
        if let Some(why) = failed {
            // Retry now, so the error reaches the writer.
            self.commit()
                .map_err(|e| io::Error::new(e.kind(), format!("{e} (first failure: {why})")))?;
        }
        let (start_encoder, backlog) = {
            let mut inner = self.write_inner();
            if let Some(end) = inner.end_lsn {
                return Err(io::Error::other(format!(
                    "in-memory layer {}..{end} is frozen",
                    self.start_lsn
                )));
            }
            let inner = &mut *inner;
            // One lookup of the key's versions for the check and the insert.
            let Inner {
                index,
                open_batch: batch,
                ..
            } = &mut *inner;
            let versions = index.entry(key).or_default();
            if let Some(last) = versions.last() {
                if last.lsn > lsn {
                    return Err(io::Error::other(format!(
                        "value for key {key} at {lsn} is older than the stored {}",
                        last.lsn
                    )));
                }
            }
            let bytes = match add(batch) {
                Ok(bytes) => bytes,
                Err(len) => {
                    if versions.is_empty() {
                        index.remove(&key);
                    }
                    return Err(io::Error::other(format!(
                        "value of {len} bytes is too large"
                    )));
                }
            };
            let len = bytes.len() as u64;
            let entry = Entry {
                lsn,
                loc: Loc::Staged {
                    seq: batch.seq,
                    index: batch.values.len() as u32,
                },
            };
            batch.values.push(BatchValue {
                key,
                lsn,
                bytes,
                compress,
            });
            match versions.last_mut() {
                // A second value for the same key and LSN replaces the first.
                Some(last) if last.lsn == lsn => *last = entry,
                _ => versions.push(entry),
            }
            // Under the lock, in the order of the puts.
            self.size.fetch_add(len, Ordering::Relaxed);
            inner.num_values += 1;
            if inner.open_batch.len() < BATCH_BYTES {
                return Ok(());
            }
            self.seal(inner)
        };
        if start_encoder {
            self.start_encoder();
        }
        if backlog {
            // Encoders fall behind: help.
            self.encode_one()?;
        }
        Ok(())
    }

    /// Seals the open batch (if it holds values); returns whether an
    /// encoder thread should be started (counted as running already) and
    /// whether too many batches wait.
    fn seal(&self, inner: &mut Inner) -> (bool, bool) {
        if inner.open_batch.values.is_empty() {
            return (false, false);
        }
        let next = Batch::new(inner.open_batch.seq + 1, self.spare_buffer());
        let batch = Arc::new(std::mem::replace(&mut inner.open_batch, next));
        inner.sealed.push_back(Sealed {
            batch,
            stage: Stage::Waiting,
        });
        let start = inner.encoders < MAX_ENCODERS;
        if start {
            inner.encoders += 1;
        }
        (start, inner.sealed.len() > MAX_SEALED)
    }

    /// Starts a thread that encodes and writes sealed batches until none
    /// waits (or writing fails).
    fn start_encoder(self: &Arc<Self>) {
        let layer = self.clone();
        let spawned = std::thread::Builder::new()
            .name("ephemeral-encode".to_string())
            .spawn(move || loop {
                let result = layer.encode_one();
                let mut inner = layer.write_inner();
                match result {
                    Ok(true) => continue,
                    Ok(false)
                        if inner
                            .sealed
                            .iter()
                            .any(|s| matches!(s.stage, Stage::Waiting)) =>
                    {
                        continue
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(
                            "cannot write ephemeral file {}: {e}; retried by the next write",
                            layer.path.display()
                        );
                        inner.failed = Some(e.to_string());
                    }
                }
                inner.encoders -= 1;
                break;
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start an encoder thread, encoding while writing: {e}");
            self.write_inner().encoders -= 1;
        }
    }

    /// Encodes the oldest sealed batch no thread has taken, then writes
    /// what is encoded in order; whether there was a batch to take.
    fn encode_one(&self) -> io::Result<bool> {
        let batch = {
            let mut inner = self.write_inner();
            let waiting = inner
                .sealed
                .iter_mut()
                .find(|s| matches!(s.stage, Stage::Waiting));
            match waiting {
                Some(s) => {
                    s.stage = Stage::Encoding;
                    s.batch.clone()
                }
                None => return Ok(false),
            }
        };
        let mut out = self.spare_buffer();
        out.reserve(batch.len() + batch.values.len() * BLOB_HEADER_SIZE);
        let mut crc = 0;
        let blobs = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            (0..batch.values.len())
                .map(|i| {
                    let offset = out.len();
                    let blob = batch.encode_value(i, &mut c, &mut out);
                    let len = blob.stored_len as usize;
                    crc = crc::append_blob(crc, blob.flags, len, blob.crc);
                    (offset as u64, blob.stored_len, blob.flags)
                })
                .collect()
        });
        {
            let mut inner = self.write_inner();
            let s = inner
                .sealed
                .iter_mut()
                .find(|s| s.batch.seq == batch.seq)
                .expect("a batch being encoded stays sealed");
            s.stage = Stage::Encoded(Encoded { out, blobs, crc });
        }
        // Let the commit recycle the batch's buffer.
        drop(batch);
        // A thread writing already writes this batch too: encode the next.
        self.commit_with(false)?;
        Ok(true)
    }

    /// Writes encoded batches at the front of the queue to the file, in
    /// order, and points their values' entries there. On error the batch
    /// stays encoded, to be written again.
    fn commit(&self) -> io::Result<()> {
        self.commit_with(true)
    }

    /// [`InMemoryLayer::commit`]; unless `wait`, returns at once when
    /// another thread is writing (which then writes what is encoded: a
    /// writer looks again after letting go of the commit lock).
    fn commit_with(&self, wait: bool) -> io::Result<()> {
        loop {
            let mut committing = if wait {
                self.committing.lock().expect("commit lock poisoned")
            } else {
                match self.committing.try_lock() {
                    Ok(guard) => guard,
                    Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
                    Err(std::sync::TryLockError::Poisoned(_)) => panic!("commit lock poisoned"),
                }
            };
            self.write_encoded(&mut committing)?;
            // Test hook: widens the window in which other threads find the
            // lock taken after this thread's last look.
            fail::fail_point!("ephemeral-commit-unlock");
            drop(committing);
            // A batch encoded while this thread wrote, by a thread that
            // found the lock taken, is this thread's to write.
            let front_encoded = matches!(
                self.read_inner().sealed.front().map(|s| &s.stage),
                Some(Stage::Encoded(_))
            );
            if !front_encoded {
                return Ok(());
            }
        }
    }

    /// [`InMemoryLayer::commit`]'s work, under the commit lock (which holds
    /// the file's reserved space).
    fn write_encoded(&self, prealloc: &mut crashsafe::Preallocation) -> io::Result<()> {
        loop {
            let (batch, encoded, file_off, crc) = {
                let mut inner = self.write_inner();
                let (file_off, crc) = (inner.file_len, inner.blobs_crc);
                let Some(front) = inner.sealed.front_mut() else {
                    return Ok(());
                };
                match std::mem::replace(&mut front.stage, Stage::Writing) {
                    Stage::Encoded(encoded) => (front.batch.clone(), encoded, file_off, crc),
                    other => {
                        // Not encoded yet: whoever encodes it writes it.
                        front.stage = other;
                        return Ok(());
                    }
                }
            };
            prealloc.reserve(&self.file, file_off + encoded.out.len() as u64);
            if let Err(e) = self.write_at(&encoded.out, file_off) {
                let mut inner = self.write_inner();
                if let Some(front) = inner.sealed.front_mut() {
                    front.stage = Stage::Encoded(encoded);
                }
                return Err(e);
            }
            let crc = crc::combine(crc, encoded.crc, encoded.out.len() as u64);
            let mut inner = self.write_inner();
            for (i, (v, (offset, len, flags))) in
                batch.values.iter().zip(&encoded.blobs).enumerate()
            {
                let staged = Loc::Staged {
                    seq: batch.seq,
                    index: i as u32,
                };
                let versions = inner
                    .index
                    .get_mut(&v.key)
                    .expect("batched keys are indexed");
                if let Ok(i) = versions.binary_search_by_key(&v.lsn, |e| e.lsn) {
                    // Unless a later put replaced the value.
                    if versions[i].loc == staged {
                        versions[i].loc = Loc::File {
                            offset: file_off + offset,
                            len: *len,
                            flags: *flags,
                        };
                    }
                }
            }
            inner.file_len = file_off + encoded.out.len() as u64;
            inner.blobs_crc = crc;
            let file_len = inner.file_len;
            let writeback = inner.writeback.due(file_len);
            let written = inner.sealed.pop_front().expect("the front was encoded");
            drop(inner);
            if let Some((from, len)) = writeback {
                // Only an early start, so that the flush's fsync waits for
                // the tail (still under `committing`: one at a time); a
                // failed writeback fails that fsync.
                let _ = crashsafe::start_writeback(&self.file, from, len);
            }
            drop(batch);
            self.recycle(encoded.out);
            if let Ok(b) = Arc::try_unwrap(written.batch) {
                self.recycle(b.data);
            }
        }
    }

    /// Writes `buf` at `offset` of the ephemeral file. Test hook: configured
    /// as `return(TEXT)`, writes to files whose path contains TEXT fail.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        fail::fail_point!("ephemeral-write", |only: Option<String>| {
            match only {
                Some(only) if self.path.to_string_lossy().contains(only.as_str()) => {
                    Err(io::Error::other("failpoint ephemeral-write"))
                }
                _ => self.file.write_all_at(buf, offset),
            }
        });
        self.file.write_all_at(buf, offset)
    }

    /// An empty buffer for a batch or its encoded form.
    fn spare_buffer(&self) -> Vec<u8> {
        let spare = SPARE_BUFFERS
            .lock()
            .expect("spare buffers lock poisoned")
            .pop();
        spare.unwrap_or_else(|| Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 8))
    }

    /// Keeps a buffer for later batches (a few at most, none much larger
    /// than a batch).
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() > 2 * BATCH_BYTES {
            return;
        }
        let mut spare = SPARE_BUFFERS.lock().expect("spare buffers lock poisoned");
        if spare.len() < MAX_SPARE_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }

    /// Reads the value at `loc`.
    fn read_loc(&self, inner: &Inner, loc: Loc) -> io::Result<Bytes> {
        match loc {
            Loc::Staged { seq, index } => {
                let batch = if seq == inner.open_batch.seq {
                    Some(&inner.open_batch)
                } else {
                    inner
                        .sealed
                        .iter()
                        .find(|s| s.batch.seq == seq)
                        .map(|s| &*s.batch)
                };
                batch.and_then(|b| b.value(index)).ok_or_else(|| {
                    io::Error::other(format!("value {index} of batch {seq} is gone"))
                })
            }
            Loc::File { offset, len, flags } => {
                let mut buf = vec![0u8; len as usize];
                let at = offset + BLOB_HEADER_SIZE as u64;
                self.file.read_exact_at(&mut buf, at)?;
                decode_stored(flags, Bytes::from(buf)).map_err(|w| {
                    io::Error::other(format!(
                        "ephemeral file {}, value at offset {at}: {w}",
                        self.path.display()
                    ))
                })
            }
        }
    }

    /// Serialized values of `key` with LSN in `lsn_range`, newest first.
    pub fn get_values(&self, key: Key, lsn_range: Range<Lsn>) -> io::Result<Vec<(Lsn, Bytes)>> {
        self.values_newest_first(key, lsn_range, false)
    }

    /// [`InMemoryLayer::get_values`] down to the newest page image (a
    /// serialized [`Value::Image`]), which a read needs nothing older than:
    /// a page updated many times is not decoded version by version.
    pub fn get_values_to_image(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
    ) -> io::Result<Vec<(Lsn, Bytes)>> {
        self.values_newest_first(key, lsn_range, true)
    }

    fn values_newest_first(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
        to_image: bool,
    ) -> io::Result<Vec<(Lsn, Bytes)>> {
        let inner = self.read_inner();
        let Some(versions) = inner.index.get(&key) else {
            return Ok(Vec::new());
        };
        let mut values = Vec::new();
        for e in versions.iter().rev().filter(|e| lsn_range.contains(&e.lsn)) {
            let value = self.read_loc(&inner, e.loc)?;
            let image = Value::is_serialized_image(&value);
            values.push((e.lsn, value));
            if to_image && image {
                break;
            }
        }
        Ok(values)
    }

    /// Freezes the layer: its LSN range becomes `start_lsn..end_lsn`.
    pub fn freeze(&self, end_lsn: Lsn) {
        let mut inner = self.write_inner();
        debug_assert!(inner.end_lsn.is_none());
        inner.end_lsn = Some(end_lsn);
    }

    /// End of the LSN range, once frozen.
    pub fn end_lsn(&self) -> Option<Lsn> {
        self.read_inner().end_lsn
    }

    /// Bytes of values held (before compression).
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Number of values held.
    pub fn num_values(&self) -> usize {
        self.read_inner().num_values
    }

    /// Makes the ephemeral file of this frozen layer its L0 delta layer file
    /// in `dir`, durably (index and footer appended, fsync, rename), and returns that file's
    /// path: encodes what is not written yet, then appends index and footer.
    /// Reads of this layer go on working meanwhile. Calling it again after
    /// it succeeded returns the same file.
    pub fn finish(
        &self,
        dir: &Path,
        tenant_id: TenantId,
        timeline_id: TimelineId,
    ) -> Result<PathBuf, LayerError> {
        {
            let mut inner = self.write_inner();
            if let Some(path) = &inner.finished {
                return Ok(path.clone());
            }
            if inner.end_lsn.is_none() {
                return Err(LayerError::Misuse(format!(
                    "in-memory layer at {} is not frozen: cannot write its layer file",
                    self.start_lsn
                )));
            }
            self.seal(&mut inner);
        }
        // Encode what no encoder has taken, then wait for the rest.
        let io_err = |e| LayerError::io(&self.path, e);
        while self.encode_one().map_err(io_err)? {}
        loop {
            self.commit().map_err(io_err)?;
            if self.read_inner().sealed.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut inner = self.write_inner();
        let end = inner.end_lsn.expect("checked above");
        let mut index = Vec::with_capacity(inner.num_values * INDEX_ENTRY_SIZE);
        let mut count = 0;
        for (key, versions) in &inner.index {
            for e in versions {
                let Loc::File { offset, len, .. } = e.loc else {
                    return Err(LayerError::Misuse(format!(
                        "in-memory layer at {}: value of {key} at {} not written",
                        self.start_lsn, e.lsn
                    )));
                };
                IndexEntry {
                    key: *key,
                    lsn: e.lsn,
                    offset,
                    len: len + BLOB_HEADER_SIZE as u32,
                }
                .encode_into(&mut index);
                count += 1;
            }
        }
        let (_, path) = finish_in_place(
            &self.file,
            &self.path,
            dir,
            (tenant_id, timeline_id),
            self.start_lsn..end,
            &index,
            count,
            inner.file_len,
            inner.blobs_crc,
        )?;
        inner.finished = Some(path.clone());
        Ok(path)
    }
}

impl Drop for InMemoryLayer {
    fn drop(&mut self) {
        let finished = match self.inner.get_mut() {
            Ok(inner) => inner.finished.is_some(),
            Err(mut poisoned) => poisoned.get_mut().finished.is_some(),
        };
        if finished {
            // Renamed: the file is a layer file now.
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cannot remove ephemeral file {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Key {
        Key::MIN.add(i)
    }

    #[test]
    fn reads_to_the_newest_image_stop_there() {
        use pageserver_api::value::NativeRecord;
        let dir = tempfile::tempdir().unwrap();
        let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
        let image = Value::Image(Bytes::from(vec![3u8; 8192])).ser();
        let record = |n| Value::Record(NativeRecord::RelSizeSet(n)).ser();
        layer.put(key(1), Lsn(0x10), &record(1), false).unwrap();
        layer.put(key(1), Lsn(0x11), &image, true).unwrap();
        for n in 0..50u64 {
            layer
                .put(key(1), Lsn(0x12 + n), &record(n as u32), false)
                .unwrap();
        }
        let lsns = |v: Vec<(Lsn, Bytes)>| v.into_iter().map(|(l, _)| l).collect::<Vec<_>>();
        let all = Lsn(0)..Lsn(0x100);
        let got = layer.get_values_to_image(key(1), all.clone()).unwrap();
        assert_eq!(got.len(), 51);
        assert_eq!((got[50].0, &got[50].1[..]), (Lsn(0x11), &image[..]));
        assert_eq!(lsns(layer.get_values(key(1), all).unwrap()).len(), 52);
        // Below the image, the older record.
        let got = layer
            .get_values_to_image(key(1), Lsn(0)..Lsn(0x11))
            .unwrap();
        assert_eq!(lsns(got), vec![Lsn(0x10)]);
    }

    /// Encoder threads that find the commit lock taken leave their batch to
    /// the thread writing: no encoded batch may be left unwritten once the
    /// encoders are done, without a flush or another put to write it.
    #[test]
    fn every_encoded_batch_is_written_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let page = Bytes::from(
            (0..8192u32)
                .map(|i| (i * 31 % 7) as u8)
                .collect::<Vec<u8>>(),
        );
        // Threads that finish encoding while the writer is about to let go
        // of the lock leave their batches to it.
        fail::cfg("ephemeral-commit-unlock", "sleep(3)").unwrap();
        for round in 0..20u32 {
            let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
            // Whole batches, sealed by the last put of each.
            let puts = (BATCH_BYTES / page.len()) * (2 + round as usize % 5);
            for i in 0..puts {
                let lsn = Lsn(0x10 + i as u64);
                layer
                    .put_image(key(i as u32 % 64), lsn, page.clone(), true)
                    .unwrap();
            }
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let (sealed, encoders) = {
                    let inner = layer.read_inner();
                    (inner.sealed.len(), inner.encoders)
                };
                if sealed == 0 {
                    break;
                }
                // With no encoder left, no thread would ever write them.
                assert!(
                    encoders > 0,
                    "round {round}: {sealed} batches left unwritten"
                );
                assert!(Instant::now() < deadline, "round {round}: encoders hang");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let inner = layer.read_inner();
            let written = inner.index.values().flatten();
            assert!(written.clone().all(|e| matches!(e.loc, Loc::File { .. })));
            assert_eq!(written.count(), puts);
        }
        fail::remove("ephemeral-commit-unlock");
    }

    #[test]
    fn values_round_trip_across_the_buffer_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
        // Enough 8 KiB values for several batches, some compressed.
        for lsn in 0..300u64 {
            for k in 0..3 {
                let v = vec![(lsn as u8) ^ (k as u8); 8192];
                layer.put(key(k), Lsn(0x10 + lsn), &v, k != 2).unwrap();
            }
        }
        assert_eq!(layer.num_values(), 900);
        assert_eq!(layer.size(), 900 * 8192);
        // Every value reads back, whether written yet or not.
        for k in 0..3u32 {
            let all = layer.get_values(key(k), Lsn(0)..Lsn(0x1000)).unwrap();
            assert_eq!(all.len(), 300);
            for (lsn, v) in all {
                let want = ((lsn.0 - 0x10) as u8) ^ (k as u8);
                assert!(
                    v.len() == 8192 && v.iter().all(|b| *b == want),
                    "{k} at {lsn}"
                );
            }
        }
        let got = layer.get_values(key(1), Lsn(0x20)..Lsn(0x30)).unwrap();
        assert_eq!(got.len(), 16);
        assert_eq!(got[0].0, Lsn(0x2f));
        assert!(got[0].1.iter().all(|b| *b == (0x1f ^ 1)));
        // Going back in LSN for a key is refused; frozen layers refuse writes.
        assert!(layer.put(key(0), Lsn(0x11), b"x", false).is_err());
        layer.freeze(Lsn(0x1000));
        assert!(layer.put(key(9), Lsn(0x2000), b"x", false).is_err());
        let path = layer.path.clone();
        // The encoder thread may hold the layer a moment longer.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut layer = layer;
        let layer = loop {
            match Arc::try_unwrap(layer) {
                Ok(l) => break l,
                Err(l) if Instant::now() < deadline => {
                    layer = l;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(_) => panic!("encoder thread did not end"),
            }
        };
        drop(layer);
        assert!(!path.exists());
    }

    /// Finishing turns the ephemeral file into an L0 layer file in place:
    /// every value once, in (key, LSN) order, a replaced value's old blob
    /// left as a gap; the whole-file checksum holds.
    #[test]
    fn finish_makes_the_l0_layer_file() {
        use crate::tenant::storage_layer::layer_file::LayerReader;
        let dir = tempfile::tempdir().unwrap();
        let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
        let ids = (TenantId::generate(), TimelineId::generate());
        assert!(matches!(
            layer.finish(dir.path(), ids.0, ids.1),
            Err(LayerError::Misuse(_))
        ));
        let mut want = BTreeMap::new();
        for lsn in 0..300u64 {
            // Keys in descending order: arrival order is not key order.
            for k in (0..3u32).rev() {
                let v = vec![(lsn as u8) ^ (k as u8); 8192 - k as usize];
                let at = Lsn(0x10 + lsn);
                if k == 0 {
                    // Key 0: page images, held by the batch.
                    want.insert((key(k), at), Value::Image(Bytes::from(v.clone())).ser());
                    layer.put_image(key(k), at, Bytes::from(v), true).unwrap();
                } else {
                    layer.put(key(k), at, &v, false).unwrap();
                    want.insert((key(k), at), v);
                }
            }
        }
        // A second value at the same key and LSN replaces the first.
        layer
            .put(key(1), Lsn(0x10 + 299), b"replaced", false)
            .unwrap();
        want.insert((key(1), Lsn(0x10 + 299)), b"replaced".to_vec());
        let last_image = Value::Image(Bytes::from_static(b"replacing page")).ser();
        layer
            .put(key(0), Lsn(0x10 + 299), &last_image, false)
            .unwrap();
        want.insert((key(0), Lsn(0x10 + 299)), last_image);
        layer.freeze(Lsn(0x10 + 300));
        let path = layer.finish(dir.path(), ids.0, ids.1).unwrap();
        assert_eq!(layer.finish(dir.path(), ids.0, ids.1).unwrap(), path);
        // Reads of the finished layer still work.
        let got = layer.get_values(key(2), Lsn(0x10)..Lsn(0x12)).unwrap();
        assert_eq!(got.len(), 2);
        let ephemeral = layer.path.clone();
        drop(layer);
        assert!(!ephemeral.exists());
        assert!(path.exists());

        let reader = LayerReader::open(&path).unwrap();
        reader.verify().unwrap();
        crate::tenant::storage_layer::layer_file::tests::assert_no_space_reserved_beyond_the_end(
            &path,
        );
        assert_eq!(reader.tenant_id(), ids.0);
        assert_eq!(reader.desc().key_range, Key::MIN..Key::MAX);
        assert_eq!(reader.desc().lsn_range, Lsn(0x10)..Lsn(0x10 + 300));
        let got: Vec<_> = reader.iter_values().map(|v| v.unwrap()).collect();
        assert_eq!(got.len(), want.len());
        for ((k, l, v), ((wk, wl), wv)) in got.iter().zip(&want) {
            assert_eq!((k, l, &v[..]), (wk, wl, &wv[..]));
        }
        let newest = reader
            .get_values(key(1), Lsn(0x10 + 298)..Lsn(0x10 + 300))
            .unwrap();
        assert_eq!(newest[0].1, Bytes::from_static(b"replaced"));
        assert_eq!(&newest[1].1[..], &want[&(key(1), Lsn(0x10 + 298))][..]);
        // Values put with `compress` are stored compressed, the others not;
        // images (put either way) as their page.
        for item in reader.iter_raw() {
            let (k, l, raw) = item.unwrap();
            let replaced = l == Lsn(0x10 + 299);
            assert_eq!(raw.is_compressed(), k == key(0) && !replaced, "{k} {l}");
            assert_eq!(raw.is_page_image(), k == key(0), "{k} {l}");
        }
    }

    /// A value too large for a blob is refused and leaves no trace: the key
    /// takes values afterwards, and the layer file holds only those.
    #[test]
    fn a_value_too_large_to_store_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
        // Zeroed on demand: never touched, so it costs no memory.
        let huge = Bytes::from(vec![0u8; u32::MAX as usize]);
        let err = layer.put_image(key(1), Lsn(0x10), huge, true).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        assert!(layer
            .get_values(key(1), Lsn(0)..Lsn(0x100))
            .unwrap()
            .is_empty());
        assert_eq!((layer.num_values(), layer.size()), (0, 0));
        layer.put(key(1), Lsn(0x10), b"small", false).unwrap();
        layer.freeze(Lsn(0x11));
        let ids = (TenantId::generate(), TimelineId::generate());
        let path = layer.finish(dir.path(), ids.0, ids.1).unwrap();
        let reader = crate::tenant::storage_layer::layer_file::LayerReader::open(&path).unwrap();
        let values: Vec<_> = reader.iter_values().map(|v| v.unwrap()).collect();
        assert_eq!(
            values,
            vec![(key(1), Lsn(0x10), Bytes::from_static(b"small"))]
        );
    }

    /// Values read back right while batches are encoded and written by
    /// other threads: each is either staged or in the file, never missing.
    #[test]
    fn reads_during_encoding_see_every_value() {
        let dir = tempfile::tempdir().unwrap();
        let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
        let page = |i: u64| {
            let mut v = vec![(i % 251) as u8; 8192];
            v[..8].copy_from_slice(&i.to_le_bytes());
            v
        };
        // Every third value is a page image, held by the batch.
        let value = |i: u64| match i % 3 {
            0 => Value::Image(Bytes::from(page(i))).ser(),
            _ => page(i),
        };
        let done = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..3000u64 {
                    // Half compressed; keys cycle so each has many versions.
                    let (k, lsn, compress) = (key((i % 7) as u32), Lsn(0x10 + i), i % 2 == 0);
                    match i % 3 {
                        0 => layer.put_image(k, lsn, Bytes::from(page(i)), compress),
                        _ => layer.put(k, lsn, &value(i), compress),
                    }
                    .unwrap();
                    done.store(i + 1, Ordering::Release);
                }
            });
            let mut checked = 0;
            while done.load(Ordering::Acquire) < 3000 {
                let n = done.load(Ordering::Acquire);
                if n == 0 {
                    continue;
                }
                let i = n - 1;
                let got = layer
                    .get_values(key((i % 7) as u32), Lsn(0x10 + i)..Lsn(0x11 + i))
                    .unwrap();
                assert_eq!(got.len(), 1, "value {i}");
                assert_eq!(&got[0].1[..], &value(i)[..], "value {i}");
                checked += 1;
            }
            assert!(checked > 0);
        });
        layer.freeze(Lsn(0x10 + 3000));
        let ids = (TenantId::generate(), TimelineId::generate());
        let path = layer.finish(dir.path(), ids.0, ids.1).unwrap();
        let reader = crate::tenant::storage_layer::layer_file::LayerReader::open(&path).unwrap();
        reader.verify().unwrap();
        assert_eq!(reader.num_values(), 3000);
        for item in reader.iter_values() {
            let (_, lsn, v) = item.unwrap();
            assert_eq!(&v[..], &value(lsn.0 - 0x10)[..]);
        }
        for item in reader.iter_raw() {
            let (_, lsn, raw) = item.unwrap();
            let i = lsn.0 - 0x10;
            assert_eq!(raw.is_page_image(), i % 3 == 0, "value {i}");
            assert_eq!(raw.is_compressed(), i % 2 == 0, "value {i}");
        }
    }

    /// A failed write of the ephemeral file loses nothing: the batch is
    /// written again, the writer hears of the failure, and the layer file
    /// holds every value once writing works again.
    #[cfg(feature = "testing")]
    #[test]
    fn failed_writes_are_retried_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let only = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
        let layer = Arc::new(InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap());
        // Scoped to this test's directory so that parallel tests are unaffected.
        fail::cfg("ephemeral-write", &format!("return({only})")).unwrap();
        // Puts until one reports the failure an encoder thread met (after
        // a few batches, pausing so that busy machines run the encoders).
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut lsn = 0x10u64;
        for i in 0u64.. {
            assert!(
                Instant::now() < deadline,
                "no put reported the failing writes"
            );
            if i >= 600 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            match layer.put(key((i % 5) as u32), Lsn(lsn), &vec![i as u8; 8192], true) {
                Ok(()) => lsn += 1,
                Err(e) => {
                    assert!(e.to_string().contains("failpoint"), "{e}");
                    break;
                }
            }
        }
        layer.freeze(Lsn(lsn));
        let ids = (TenantId::generate(), TimelineId::generate());
        let err = layer.finish(dir.path(), ids.0, ids.1).unwrap_err();
        assert!(err.to_string().contains("failpoint"), "{err}");
        fail::remove("ephemeral-write");
        let path = layer.finish(dir.path(), ids.0, ids.1).unwrap();
        let reader = crate::tenant::storage_layer::layer_file::LayerReader::open(&path).unwrap();
        reader.verify().unwrap();
        assert_eq!(reader.num_values() as u64, lsn - 0x10);
    }
}
