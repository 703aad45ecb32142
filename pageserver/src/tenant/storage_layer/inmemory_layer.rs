//! The open in-memory layer: receives ingested values in LSN order until it
//! is frozen and flushed to an L0 delta layer file.
//!
//! Values live in an ephemeral file (removed at start-up like every
//! temporary file), so memory per layer is bounded by the index: one
//! `(lsn, offset, len)` entry per value, about 24 bytes, plus one
//! map node per key. Recent writes sit in a small buffer before they reach
//! the file; reads see both.
//!
//! The ephemeral file is laid out as an L0 layer file: room for the header,
//! then each value as a layer file blob (length, flags, CRC32C, the value
//! uncompressed) in arrival order. The flush only appends index and footer,
//! writes the header, fsyncs and renames it ([`InMemoryLayer::finish`]):
//! values are written once, and compaction compresses page images when it
//! rewrites them into L1 layers.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Instant;

use bytes::Bytes;
use pageserver_api::key::Key;
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::layer_file::{
    blob_header, blob_len, finish_in_place, IndexEntry, LayerError, BLOB_HEADER_SIZE, HEADER_SIZE,
    INDEX_ENTRY_SIZE,
};
use super::PersistentLayerDesc;

/// Bytes buffered in memory before they are written to the ephemeral file.
const WRITE_BUFFER: usize = 256 * 1024;

static EPHEMERAL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Where a value is: its blob starts at `offset`, the value itself
/// [`BLOB_HEADER_SIZE`] bytes later.
#[derive(Debug, Clone, Copy)]
struct Entry {
    lsn: Lsn,
    offset: u64,
    len: u32,
}

struct Inner {
    index: BTreeMap<Key, Vec<Entry>>,
    /// Bytes already in the file.
    file_len: u64,
    /// Bytes after `file_len`, not yet written.
    buffer: Vec<u8>,
    /// CRC32C of the blobs written to the file.
    blobs_crc: u32,
    /// End (exclusive) of the LSN range once frozen.
    end_lsn: Option<Lsn>,
    num_values: usize,
    /// The layer file this layer became, once finished.
    finished: Option<(PersistentLayerDesc, PathBuf)>,
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
}

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
                // Room for the layer file header, written when finished.
                file_len: HEADER_SIZE as u64,
                buffer: Vec::with_capacity(WRITE_BUFFER),
                blobs_crc: 0,
                end_lsn: None,
                num_values: 0,
                finished: None,
            }),
        })
    }

    fn read_inner(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().expect("in-memory layer lock poisoned")
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().expect("in-memory layer lock poisoned")
    }

    /// Adds the serialized value of `key` at `lsn`. LSNs of one key must not
    /// go backwards; a frozen layer refuses writes.
    pub fn put(&self, key: Key, lsn: Lsn, value: &[u8]) -> io::Result<()> {
        let mut inner = self.write_inner();
        if let Some(end) = inner.end_lsn {
            return Err(io::Error::other(format!(
                "in-memory layer {}..{end} is frozen",
                self.start_lsn
            )));
        }
        let len = u32::try_from(value.len())
            .ok()
            .filter(|_| blob_len(value.len()).is_some())
            .ok_or_else(|| {
                io::Error::other(format!("value of {} bytes is too large", value.len()))
            })?;
        let offset = inner.file_len + inner.buffer.len() as u64;
        inner.buffer.extend_from_slice(&blob_header(0, value));
        inner.buffer.extend_from_slice(value);
        if inner.buffer.len() >= WRITE_BUFFER {
            self.flush_buffer(&mut inner)?;
        }
        let entry = Entry { lsn, offset, len };
        let versions = inner.index.entry(key).or_default();
        match versions.last_mut() {
            // A second value for the same key and LSN replaces the first.
            Some(last) if last.lsn == lsn => *last = entry,
            Some(last) if last.lsn > lsn => {
                return Err(io::Error::other(format!(
                    "value for key {key} at {lsn} is older than the stored {}",
                    last.lsn
                )))
            }
            _ => versions.push(entry),
        }
        inner.num_values += 1;
        Ok(())
    }

    fn flush_buffer(&self, inner: &mut Inner) -> io::Result<()> {
        self.file.write_all_at(&inner.buffer, inner.file_len)?;
        inner.blobs_crc = crc32c::crc32c_append(inner.blobs_crc, &inner.buffer);
        inner.file_len += inner.buffer.len() as u64;
        inner.buffer.clear();
        Ok(())
    }

    fn read_entry(&self, inner: &Inner, e: &Entry) -> io::Result<Bytes> {
        let mut buf = Vec::new();
        self.read_entry_into(inner, e, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Reads the value of `e` into `buf` (resized to fit).
    fn read_entry_into(&self, inner: &Inner, e: &Entry, buf: &mut Vec<u8>) -> io::Result<()> {
        let len = e.len as usize;
        let at = e.offset + BLOB_HEADER_SIZE as u64;
        buf.resize(len, 0);
        if at >= inner.file_len {
            let start = (at - inner.file_len) as usize;
            buf.copy_from_slice(&inner.buffer[start..start + len]);
            Ok(())
        } else {
            self.file.read_exact_at(buf, at)
        }
    }

    /// Serialized values of `key` with LSN in `lsn_range`, newest first.
    pub fn get_values(&self, key: Key, lsn_range: Range<Lsn>) -> io::Result<Vec<(Lsn, Bytes)>> {
        let inner = self.read_inner();
        let Some(versions) = inner.index.get(&key) else {
            return Ok(Vec::new());
        };
        versions
            .iter()
            .rev()
            .filter(|e| lsn_range.contains(&e.lsn))
            .map(|e| Ok((e.lsn, self.read_entry(&inner, e)?)))
            .collect()
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

    /// Bytes of values held (with their blob headers).
    pub fn size(&self) -> u64 {
        let inner = self.read_inner();
        inner.file_len + inner.buffer.len() as u64 - HEADER_SIZE as u64
    }

    /// Number of values held.
    pub fn num_values(&self) -> usize {
        self.read_inner().num_values
    }

    /// Makes the ephemeral file of this frozen layer its L0 delta layer file
    /// in `dir`, durably (see [`finish_in_place`]), and returns that file's
    /// path. The values are not copied; reads of this layer go on working
    /// meanwhile. Calling it again after it succeeded returns the same file.
    pub fn finish(
        &self,
        dir: &Path,
        tenant_id: TenantId,
        timeline_id: TimelineId,
    ) -> Result<PathBuf, LayerError> {
        let mut inner = self.write_inner();
        if let Some((_, path)) = &inner.finished {
            return Ok(path.clone());
        }
        let Some(end) = inner.end_lsn else {
            return Err(LayerError::Misuse(format!(
                "in-memory layer at {} is not frozen: cannot write its layer file",
                self.start_lsn
            )));
        };
        if !inner.buffer.is_empty() {
            self.flush_buffer(&mut inner)
                .map_err(|e| LayerError::io(&self.path, e))?;
        }
        let mut index = Vec::with_capacity(inner.num_values * INDEX_ENTRY_SIZE);
        let mut count = 0;
        for (key, versions) in &inner.index {
            for e in versions {
                IndexEntry {
                    key: *key,
                    lsn: e.lsn,
                    offset: e.offset,
                    len: e.len + BLOB_HEADER_SIZE as u32,
                }
                .encode_into(&mut index);
                count += 1;
            }
        }
        let finished = finish_in_place(
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
        let path = finished.1.clone();
        inner.finished = Some(finished);
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
        Key {
            field6: i,
            ..Key::MIN
        }
    }

    #[test]
    fn values_round_trip_across_the_buffer_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let layer = InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap();
        // Enough 8 KiB values to spill the write buffer several times.
        for lsn in 0..100u64 {
            for k in 0..3 {
                let v = vec![(lsn as u8) ^ (k as u8); 8192];
                layer.put(key(k), Lsn(0x10 + lsn), &v).unwrap();
            }
        }
        assert_eq!(layer.num_values(), 300);
        assert!(layer.size() > WRITE_BUFFER as u64);
        let got = layer.get_values(key(1), Lsn(0x20)..Lsn(0x30)).unwrap();
        assert_eq!(got.len(), 16);
        assert_eq!(got[0].0, Lsn(0x2f));
        assert!(got[0].1.iter().all(|b| *b == (0x1f ^ 1)));
        // Going back in LSN for a key is refused; frozen layers refuse writes.
        assert!(layer.put(key(0), Lsn(0x11), b"x").is_err());
        layer.freeze(Lsn(0x100));
        assert!(layer.put(key(9), Lsn(0x200), b"x").is_err());
        let path = layer.path.clone();
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
        let layer = InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap();
        let ids = (TenantId::generate(), TimelineId::generate());
        assert!(matches!(
            layer.finish(dir.path(), ids.0, ids.1),
            Err(LayerError::Misuse(_))
        ));
        let mut want = BTreeMap::new();
        for lsn in 0..100u64 {
            // Keys in descending order: arrival order is not key order.
            for k in (0..3u32).rev() {
                let v = vec![(lsn as u8) ^ (k as u8); 8192 - k as usize];
                layer.put(key(k), Lsn(0x10 + lsn), &v).unwrap();
                want.insert((key(k), Lsn(0x10 + lsn)), v);
            }
        }
        // A second value at the same key and LSN replaces the first.
        layer.put(key(1), Lsn(0x10 + 99), b"replaced").unwrap();
        want.insert((key(1), Lsn(0x10 + 99)), b"replaced".to_vec());
        layer.freeze(Lsn(0x10 + 100));
        let path = layer.finish(dir.path(), ids.0, ids.1).unwrap();
        assert_eq!(layer.finish(dir.path(), ids.0, ids.1).unwrap(), path);
        // Reads of the finished layer still work.
        let got = layer.get_values(key(2), Lsn(0x10)..Lsn(0x12)).unwrap();
        assert_eq!(got.len(), 2);
        let ephemeral = layer.path.clone();
        drop(layer);
        assert!(!ephemeral.exists());

        let reader = LayerReader::open(&path).unwrap();
        reader.verify().unwrap();
        assert_eq!(reader.tenant_id(), ids.0);
        assert_eq!(reader.desc().key_range, Key::MIN..Key::MAX);
        assert_eq!(reader.desc().lsn_range, Lsn(0x10)..Lsn(0x10 + 100));
        let got: Vec<_> = reader.iter_values().map(|v| v.unwrap()).collect();
        assert_eq!(got.len(), want.len());
        for ((k, l, v), ((wk, wl), wv)) in got.iter().zip(&want) {
            assert_eq!((k, l, &v[..]), (wk, wl, &wv[..]));
        }
        let newest = reader
            .get_values(key(1), Lsn(0x10 + 98)..Lsn(0x10 + 100))
            .unwrap();
        assert_eq!(newest[0].1, Bytes::from_static(b"replaced"));
        assert_eq!(&newest[1].1[..], &want[&(key(1), Lsn(0x10 + 98))][..]);
    }
}
