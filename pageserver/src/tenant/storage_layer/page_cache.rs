//! The node's page cache: values read from layer files, after their
//! checksum was verified and their image decompressed, kept in memory up to
//! a byte budget and evicted least recently used first.
//!
//! Layer files never change once written, so an entry is keyed by the
//! reader that read it (a number unique to each opened file, never reused)
//! and the value's position in that file's index. A file that is replaced,
//! evicted or downloaded again is opened as a new reader, whose values are
//! new entries; entries of readers that are gone age out. Hits and misses
//! are counted in `pageserver_page_cache_{hits,misses}_total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;

use crate::metrics::{PAGE_CACHE_HITS, PAGE_CACHE_MISSES};

/// Bytes of values the cache holds at most.
pub const PAGE_CACHE_BYTES: usize = 128 << 20;

/// A new reader id (for [`PageCache`] keys).
pub fn next_reader_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `(reader id, index position)`.
type CacheKey = (u64, u32);

/// A byte-bounded LRU cache of decoded layer values.
pub struct PageCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    values: HashMap<CacheKey, (Bytes, u64)>,
    /// Use tick -> key, oldest first.
    order: BTreeMap<u64, CacheKey>,
    bytes: usize,
    tick: u64,
}

/// The node-wide cache.
pub static PAGE_CACHE: LazyLock<PageCache> = LazyLock::new(|| PageCache::new(PAGE_CACHE_BYTES));

impl PageCache {
    /// An empty cache holding at most `capacity` bytes of values.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The value at `pos` of reader `reader`, if cached (counts a hit or a
    /// miss).
    pub fn get(&self, reader: u64, pos: u32) -> Option<Bytes> {
        let mut inner = self.inner.lock().expect("page cache poisoned");
        inner.tick += 1;
        let tick = inner.tick;
        let found = match inner.values.get_mut(&(reader, pos)) {
            Some((value, used)) => {
                let old = std::mem::replace(used, tick);
                Some((value.clone(), old))
            }
            None => None,
        };
        match found {
            Some((value, old)) => {
                inner.order.remove(&old);
                inner.order.insert(tick, (reader, pos));
                PAGE_CACHE_HITS.inc();
                Some(value)
            }
            None => {
                PAGE_CACHE_MISSES.inc();
                None
            }
        }
    }

    /// Caches a value, evicting the least recently used ones beyond the
    /// budget.
    pub fn insert(&self, reader: u64, pos: u32, value: Bytes) {
        if value.len() > self.capacity {
            return;
        }
        let mut inner = self.inner.lock().expect("page cache poisoned");
        inner.tick += 1;
        let tick = inner.tick;
        let len = value.len();
        if let Some((old, used)) = inner.values.insert((reader, pos), (value, tick)) {
            inner.order.remove(&used);
            inner.bytes -= old.len();
        }
        inner.order.insert(tick, (reader, pos));
        inner.bytes += len;
        while inner.bytes > self.capacity {
            let Some((_, key)) = inner.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = inner.values.remove(&key) {
                inner.bytes -= old.len();
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("page cache poisoned").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_values_go_first() {
        let c = PageCache::new(30);
        let v = |b: u8| Bytes::from(vec![b; 10]);
        c.insert(1, 0, v(0));
        c.insert(1, 1, v(1));
        c.insert(1, 2, v(2));
        assert_eq!(c.bytes(), 30);
        // Using 0 makes 1 the oldest.
        assert_eq!(c.get(1, 0), Some(v(0)));
        c.insert(2, 0, v(9));
        assert_eq!(c.bytes(), 30);
        assert_eq!(c.get(1, 1), None);
        assert_eq!(c.get(1, 0), Some(v(0)));
        assert_eq!(c.get(1, 2), Some(v(2)));
        assert_eq!(c.get(2, 0), Some(v(9)));
        // Readers are told apart; a replaced value keeps the count right.
        assert_eq!(c.get(3, 0), None);
        c.insert(2, 0, Bytes::from(vec![7u8; 5]));
        assert_eq!(c.bytes(), 25);
        // A value over the whole budget is not kept.
        c.insert(4, 0, Bytes::from(vec![0u8; 31]));
        assert_eq!(c.get(4, 0), None);
    }
}
