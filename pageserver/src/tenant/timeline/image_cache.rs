//! The node's cache of reconstructed page images: the answer of a GetPage
//! at an LSN, kept so that the next GetPage of the same block at that LSN
//! or a later one is answered from memory, without the layer map, the layer
//! files or WAL redo.
//!
//! # Validity
//!
//! An entry of timeline T holds, for key K, the image `get(K, L)` that a read
//! at some ingested LSN `L` produced, and `v`, the LSN of the newest version
//! of K at or below `L` (so the image is `get(K, x)` for every x in
//! `v..=L`). It answers a read at L' when `v <= L'` and no version of K
//! exists in `(L, L']`. The second condition holds for every ingested L'
//! as long as the entry is in the cache, because:
//!
//! * ingest, the only writer of a timeline, calls
//!   [`ImageCache::invalidate`] for every value it puts, before the value's
//!   LSN is published as the last record LSN (so before any read can be at
//!   that LSN); that removes the key's entry;
//! * a fill racing with such a write cannot bring an old image back: the
//!   shard remembers, per timeline, the highest LSN written to any of its
//!   keys, and a fill whose read LSN `L` is below it is refused. Both run
//!   under the shard's lock, so either the write comes first (the fill is
//!   refused) or the fill does (the write removes it).
//!
//! Nothing else changes which version is newest at an ingested LSN:
//! compaction, image layer creation, layer eviction and download rewrite or
//! move values without changing them, and GC removes only versions below
//! its cutoff, which readers check before they look here. Branches have
//! their own entries (keys include the timeline's cache id, unique to each
//! timeline object, never reused, like the page cache's reader ids), and a
//! branch's reads of its parent are bounded by the branch point, below
//! everything the parent writes later.
//!
//! # Structure
//!
//! [`SHARDS`] shards by key hash, each a mutex over a hash map and a CLOCK
//! ring (second-chance eviction) with its share of the byte budget. A hit is
//! one uncontended lock, one hash lookup and a reference count increment.
//! Hits, misses, refused fills and bytes held are in
//! `pageserver_image_cache_*`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use pageserver_api::key::Key;
use rustc_hash::FxBuildHasher;
use utils::lsn::Lsn;

use crate::metrics::{
    IMAGE_CACHE_BYTES_HELD, IMAGE_CACHE_FILLS_REFUSED, IMAGE_CACHE_HITS, IMAGE_CACHE_MISSES,
};

/// Bytes of images the node-wide cache holds at most. The images of a
/// block that is also in the page cache share its memory when the stored
/// value was an image.
pub const IMAGE_CACHE_BYTES: usize = 256 << 20;

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;

/// A new id for a timeline object's entries.
pub fn next_cache_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `(timeline cache id, key)`.
type CacheKey = (u64, Key);

/// One cached image.
struct Slot {
    key: CacheKey,
    /// Newest version of the key at or below the LSN of the read that
    /// produced the image.
    version_lsn: Lsn,
    image: Bytes,
    /// Set by hits, cleared as the CLOCK hand passes.
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    /// Key -> position in `ring`.
    index: HashMap<CacheKey, usize, FxBuildHasher>,
    /// Slots; `None` where an entry was removed (reused from `free`).
    ring: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    bytes: usize,
    /// Per timeline cache id: the highest LSN ingest wrote to any key of
    /// this shard (fills reading below it are refused).
    last_write: HashMap<u64, Lsn, FxBuildHasher>,
}

impl Shard {
    fn remove_at(&mut self, pos: usize) {
        if let Some(slot) = self.ring[pos].take() {
            self.index.remove(&slot.key);
            self.bytes -= slot.image.len();
            self.free.push(pos);
        }
    }

    /// Frees slots until `need` more bytes fit in `budget`: the CLOCK hand
    /// gives referenced slots a second chance and frees the first
    /// unreferenced one (within two laps).
    fn make_room(&mut self, need: usize, budget: usize) {
        while self.bytes + need > budget && !self.index.is_empty() {
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let pos = self.hand;
            self.hand += 1;
            match &mut self.ring[pos] {
                Some(slot) if slot.referenced => slot.referenced = false,
                Some(_) => self.remove_at(pos),
                None => {}
            }
        }
    }

    fn insert(&mut self, slot: Slot, budget: usize) {
        self.make_room(slot.image.len(), budget);
        self.bytes += slot.image.len();
        let key = slot.key;
        let pos = match self.free.pop() {
            Some(pos) => {
                self.ring[pos] = Some(slot);
                pos
            }
            None => {
                self.ring.push(Some(slot));
                self.ring.len() - 1
            }
        };
        self.index.insert(key, pos);
    }
}

/// A byte-bounded cache of reconstructed images; see the module comment for
/// when an entry may answer a read.
pub struct ImageCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
    hasher: FxBuildHasher,
}

/// The node-wide cache.
pub static IMAGE_CACHE: LazyLock<ImageCache> = LazyLock::new(|| ImageCache::new(IMAGE_CACHE_BYTES));

impl ImageCache {
    /// An empty cache holding at most `capacity` bytes of images.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: capacity / SHARDS,
            hasher: FxBuildHasher,
        }
    }

    fn shard(&self, key: &CacheKey) -> std::sync::MutexGuard<'_, Shard> {
        let mut h = self.hasher.build_hasher();
        key.hash(&mut h);
        let h = std::hash::Hasher::finish(&h);
        // The high bits: FxHash mixes them best.
        let i = (h >> 32) as usize & (SHARDS - 1);
        self.shards[i].lock().expect("image cache poisoned")
    }

    /// The image of `key` at `lsn` for timeline `id`, if an entry answers
    /// it. `lsn` must be ingested and at or above the timeline's GC cutoff.
    pub fn get(&self, id: u64, key: Key, lsn: Lsn) -> Option<Bytes> {
        let ck = (id, key);
        let mut shard = self.shard(&ck);
        let found = match shard.index.get(&ck) {
            Some(&pos) => match &mut shard.ring[pos] {
                Some(slot) if slot.version_lsn <= lsn => {
                    slot.referenced = true;
                    Some(slot.image.clone())
                }
                _ => None,
            },
            None => None,
        };
        drop(shard);
        match found {
            Some(_) => IMAGE_CACHE_HITS.inc(),
            None => IMAGE_CACHE_MISSES.inc(),
        }
        found
    }

    /// Offers the image of `key` that a read at `read_lsn` (ingested) found,
    /// whose newest version is at `version_lsn`. Refused when ingest wrote a
    /// key of the shard above `read_lsn` meanwhile, or when the entry held
    /// is as new. Returns whether it was kept.
    pub fn fill(&self, id: u64, key: Key, read_lsn: Lsn, version_lsn: Lsn, image: Bytes) -> bool {
        debug_assert!(version_lsn <= read_lsn);
        if image.len() > self.shard_budget {
            return false;
        }
        let ck = (id, key);
        let mut shard = self.shard(&ck);
        if shard.last_write.get(&id).is_some_and(|w| *w > read_lsn) {
            drop(shard);
            IMAGE_CACHE_FILLS_REFUSED.inc();
            return false;
        }
        if let Some(&pos) = shard.index.get(&ck) {
            let held = shard.ring[pos].as_ref().map(|s| s.version_lsn);
            if held.is_some_and(|held| held >= version_lsn) {
                return false;
            }
            let before = shard.bytes;
            shard.remove_at(pos);
            IMAGE_CACHE_BYTES_HELD.sub((before - shard.bytes) as i64);
        }
        let before = shard.bytes;
        shard.insert(
            Slot {
                key: ck,
                version_lsn,
                image,
                referenced: false,
            },
            self.shard_budget,
        );
        IMAGE_CACHE_BYTES_HELD.add(shard.bytes as i64 - before as i64);
        true
    }

    /// Ingest wrote `key` of timeline `id` at `lsn` (not yet published):
    /// drops its entry and refuses fills that read below `lsn`.
    pub fn invalidate(&self, id: u64, key: Key, lsn: Lsn) {
        let ck = (id, key);
        let mut shard = self.shard(&ck);
        let w = shard.last_write.entry(id).or_insert(lsn);
        *w = (*w).max(lsn);
        if let Some(&pos) = shard.index.get(&ck) {
            let before = shard.bytes;
            shard.remove_at(pos);
            IMAGE_CACHE_BYTES_HELD.sub((before - shard.bytes) as i64);
        }
    }

    /// Drops everything of timeline `id` (when the timeline object goes).
    pub fn forget(&self, id: u64) {
        for shard in &self.shards {
            let mut shard = shard.lock().expect("image cache poisoned");
            shard.last_write.remove(&id);
            let positions: Vec<usize> = shard
                .index
                .iter()
                .filter(|((tl, _), _)| *tl == id)
                .map(|(_, pos)| *pos)
                .collect();
            let before = shard.bytes;
            for pos in positions {
                shard.remove_at(pos);
            }
            IMAGE_CACHE_BYTES_HELD.sub((before - shard.bytes) as i64);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("image cache poisoned").bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pageserver_api::key::{rel_block_key, RelTag};

    const REL: RelTag = RelTag {
        spcnode: 1663,
        dbnode: 5,
        relnode: 16384,
        forknum: 0,
    };

    fn page(b: u8) -> Bytes {
        Bytes::from(vec![b; 8192])
    }

    #[test]
    fn entries_answer_from_their_version_on() {
        let c = ImageCache::new(64 << 20);
        let k = rel_block_key(REL, 1);
        assert_eq!(c.get(1, k, Lsn(100)), None);
        assert!(c.fill(1, k, Lsn(100), Lsn(60), page(1)));
        assert_eq!(c.get(1, k, Lsn(59)), None);
        assert_eq!(c.get(1, k, Lsn(60)), Some(page(1)));
        assert_eq!(c.get(1, k, Lsn(500)), Some(page(1)));
        // Other timelines and keys are apart.
        assert_eq!(c.get(2, k, Lsn(500)), None);
        assert_eq!(c.get(1, rel_block_key(REL, 2), Lsn(500)), None);
        // An older version does not replace a newer one; a newer one does.
        assert!(!c.fill(1, k, Lsn(100), Lsn(50), page(9)));
        assert!(c.fill(1, k, Lsn(120), Lsn(110), page(2)));
        assert_eq!(c.get(1, k, Lsn(100)), None);
        assert_eq!(c.get(1, k, Lsn(110)), Some(page(2)));
        assert_eq!(c.bytes(), 8192);
        c.forget(1);
        assert_eq!(c.get(1, k, Lsn(500)), None);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn writes_drop_entries_and_refuse_stale_fills() {
        let c = ImageCache::new(64 << 20);
        let k = rel_block_key(REL, 1);
        assert!(c.fill(1, k, Lsn(100), Lsn(60), page(1)));
        c.invalidate(1, k, Lsn(130));
        assert_eq!(c.get(1, k, Lsn(200)), None);
        // A slow reader that read at 120, before the write, loses...
        assert!(!c.fill(1, k, Lsn(120), Lsn(60), page(1)));
        assert_eq!(c.get(1, k, Lsn(200)), None);
        // ...and so does one for another key of the shard (conservative),
        // while a read at or above the write is kept.
        assert!(c.fill(1, k, Lsn(130), Lsn(130), page(2)));
        assert_eq!(c.get(1, k, Lsn(130)), Some(page(2)));
        // Writes of another timeline do not matter.
        c.invalidate(2, k, Lsn(1000));
        assert_eq!(c.get(1, k, Lsn(140)), Some(page(2)));
        assert!(c.fill(1, rel_block_key(REL, 3), Lsn(140), Lsn(10), page(3)));
    }

    #[test]
    fn eviction_keeps_the_budget_and_prefers_unreferenced() {
        // One shard's share is 4 pages.
        let c = ImageCache::new(4 * 8192 * SHARDS);
        // Keys of one shard.
        let mut keys = Vec::new();
        let mut blk = 0;
        while keys.len() < 8 {
            let k = rel_block_key(REL, blk);
            let shard = |k: Key| {
                let mut h = c.hasher.build_hasher();
                (7u64, k).hash(&mut h);
                (std::hash::Hasher::finish(&h) >> 32) as usize & (SHARDS - 1)
            };
            if shard(k) == shard(rel_block_key(REL, 0)) {
                keys.push(k);
            }
            blk += 1;
        }
        for (i, k) in keys[..4].iter().enumerate() {
            assert!(c.fill(7, *k, Lsn(10), Lsn(10), page(i as u8)));
        }
        assert_eq!(c.bytes(), 4 * 8192);
        // Key 0 is used: the next fill evicts another.
        assert!(c.get(7, keys[0], Lsn(10)).is_some());
        assert!(c.fill(7, keys[4], Lsn(10), Lsn(10), page(4)));
        assert_eq!(c.bytes(), 4 * 8192);
        assert!(c.get(7, keys[0], Lsn(10)).is_some());
        assert!(c.get(7, keys[4], Lsn(10)).is_some());
        for k in &keys[5..] {
            assert!(c.fill(7, *k, Lsn(10), Lsn(10), page(5)));
            assert!(c.bytes() <= 4 * 8192);
        }
        // An image larger than a shard's share is not kept.
        assert!(!c.fill(7, keys[0], Lsn(20), Lsn(20), Bytes::from(vec![0; 5 * 8192])));
    }
}
