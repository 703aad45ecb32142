//! The open in-memory layer: receives ingested values in LSN order until it
//! is frozen and flushed to an L0 delta layer file.
//!
//! Values live in an ephemeral file (removed at start-up like every
//! temporary file), so memory per layer is bounded by the index: one
//! `(lsn, offset, len)` entry per value, about 24 bytes, plus one
//! map node per key. Recent writes sit in a small buffer before they reach
//! the file; reads see both.

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
use utils::lsn::Lsn;

/// Bytes buffered in memory before they are written to the ephemeral file.
const WRITE_BUFFER: usize = 256 * 1024;

static EPHEMERAL_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy)]
struct Entry {
    lsn: Lsn,
    offset: u64,
    len: u32,
}

/// Where one value of a frozen layer is: see [`InMemoryLayer::value_refs`].
#[derive(Debug, Clone, Copy)]
pub struct ValueRef {
    /// The value's key.
    pub key: Key,
    entry: Entry,
}

impl ValueRef {
    /// The value's LSN.
    pub fn lsn(&self) -> Lsn {
        self.entry.lsn
    }
}

struct Inner {
    index: BTreeMap<Key, Vec<Entry>>,
    /// Bytes already in the file.
    file_len: u64,
    /// Bytes after `file_len`, not yet written.
    buffer: Vec<u8>,
    /// End (exclusive) of the LSN range once frozen.
    end_lsn: Option<Lsn>,
    num_values: usize,
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
                file_len: 0,
                buffer: Vec::with_capacity(WRITE_BUFFER),
                end_lsn: None,
                num_values: 0,
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
        let len = u32::try_from(value.len()).map_err(|_| {
            io::Error::other(format!("value of {} bytes is too large", value.len()))
        })?;
        let offset = inner.file_len + inner.buffer.len() as u64;
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
        buf.resize(len, 0);
        if e.offset >= inner.file_len {
            let start = (e.offset - inner.file_len) as usize;
            buf.copy_from_slice(&inner.buffer[start..start + len]);
            Ok(())
        } else {
            self.file.read_exact_at(buf, e.offset)
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

    /// Bytes of values held.
    pub fn size(&self) -> u64 {
        let inner = self.read_inner();
        inner.file_len + inner.buffer.len() as u64
    }

    /// Number of values held.
    pub fn num_values(&self) -> usize {
        self.read_inner().num_values
    }

    /// Every value's place, in (key, LSN) order: what a flush writes. For a
    /// frozen layer, whose values no longer change; read each with
    /// [`InMemoryLayer::read_value`] (from any thread).
    pub fn value_refs(&self) -> Vec<ValueRef> {
        let inner = self.read_inner();
        let mut refs = Vec::with_capacity(inner.num_values);
        for (key, versions) in &inner.index {
            refs.extend(versions.iter().map(|e| ValueRef {
                key: *key,
                entry: *e,
            }));
        }
        refs
    }

    /// Reads the value `r` points at into `buf` (resized to fit).
    pub fn read_value(&self, r: &ValueRef, buf: &mut Vec<u8>) -> io::Result<()> {
        let inner = self.read_inner();
        self.read_entry_into(&inner, &r.entry, buf)
    }
}

impl Drop for InMemoryLayer {
    fn drop(&mut self) {
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

    #[test]
    fn values_round_trip_across_the_buffer_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let layer = InMemoryLayer::create(dir.path(), Lsn(0x10)).unwrap();
        let key = |i: u32| Key {
            field6: i,
            ..Key::MIN
        };
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
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        for r in layer.value_refs() {
            layer.read_value(&r, &mut buf).unwrap();
            seen.push((r.key, r.lsn(), buf[0]));
        }
        assert_eq!(seen.len(), 300);
        assert!(seen.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        // Going back in LSN for a key is refused; frozen layers refuse writes.
        assert!(layer.put(key(0), Lsn(0x11), b"x").is_err());
        layer.freeze(Lsn(0x100));
        assert!(layer.put(key(9), Lsn(0x200), b"x").is_err());
        let path = layer.path.clone();
        drop(layer);
        assert!(!path.exists());
    }
}
