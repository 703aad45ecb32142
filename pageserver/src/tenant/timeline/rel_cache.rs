//! A cache of relation sizes (and existence) for reads at recent LSNs, so
//! that a GetPage does not decode the relation directory and read the size
//! key every time.
//!
//! Each entry is `(lsn, size)`: the size (`None`: the relation does not
//! exist) as of `lsn`, with no change to the relation between `lsn` and the
//! timeline's last record LSN. That holds because ingest, the timeline's
//! only writer, updates the entry for every change it makes (at the
//! record's LSN, before the record's LSN is published), and because entries
//! are only kept for LSNs at or above `valid_from`, the last record LSN when
//! the timeline was loaded: changes older than that were made by an earlier
//! process and are not tracked. A read at `L` may use an entry at `E <= L`;
//! a read that went to storage at `L >= valid_from` stores what it found
//! only where there is no entry, so a slow reader never hides a change
//! ingest recorded meanwhile.

use std::collections::HashMap;
use std::sync::RwLock;

use pageserver_api::key::RelTag;
use utils::lsn::Lsn;

/// Entries kept before the cache is cleared (a few MB at most).
const MAX_ENTRIES: usize = 64 * 1024;

/// Relation sizes by relation, valid from an LSN on.
pub struct RelSizeCache {
    inner: RwLock<Inner>,
}

struct Inner {
    /// Entries below this LSN are neither kept nor used.
    valid_from: Lsn,
    /// The newest change recorded.
    newest: Lsn,
    entries: HashMap<RelTag, (Lsn, Option<u32>)>,
}

impl Inner {
    /// Makes room: everything goes, and entries older than the newest
    /// change recorded are refused from now on (a slow reader could
    /// otherwise bring back a size that a dropped entry had superseded).
    fn make_room(&mut self, rel: &RelTag) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(rel) {
            self.entries.clear();
            self.valid_from = self.valid_from.max(self.newest);
        }
    }
}

impl RelSizeCache {
    /// An empty cache for a timeline whose last record LSN is `valid_from`.
    pub fn new(valid_from: Lsn) -> Self {
        Self {
            inner: RwLock::new(Inner {
                valid_from,
                newest: valid_from,
                entries: HashMap::new(),
            }),
        }
    }

    /// The size of `rel` at `lsn` (`Some(None)`: it does not exist), if
    /// known.
    pub fn get(&self, rel: RelTag, lsn: Lsn) -> Option<Option<u32>> {
        let inner = self.inner.read().expect("rel size cache poisoned");
        if lsn < inner.valid_from {
            return None;
        }
        match inner.entries.get(&rel) {
            Some((at, size)) if *at <= lsn => Some(*size),
            _ => None,
        }
    }

    /// Records what a read at `lsn` found in storage, unless an entry
    /// exists: an older one is still valid (and covers more LSNs), a newer
    /// one records a change the read may have missed.
    pub fn remember(&self, rel: RelTag, lsn: Lsn, size: Option<u32>) {
        let mut inner = self.inner.write().expect("rel size cache poisoned");
        if lsn < inner.valid_from {
            return;
        }
        inner.make_room(&rel);
        if lsn >= inner.valid_from {
            inner.entries.entry(rel).or_insert((lsn, size));
        }
    }

    /// Records changes made by ingest at `lsn` (called before `lsn` is
    /// published as the last record LSN).
    pub fn changed(&self, lsn: Lsn, changes: impl IntoIterator<Item = (RelTag, Option<u32>)>) {
        let mut inner = self.inner.write().expect("rel size cache poisoned");
        for (rel, size) in changes {
            inner.make_room(&rel);
            inner.newest = inner.newest.max(lsn);
            inner.entries.insert(rel, (lsn, size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REL: RelTag = RelTag {
        spcnode: 1663,
        dbnode: 5,
        relnode: 16384,
        forknum: 0,
    };

    #[test]
    fn entries_answer_from_their_lsn_on() {
        let c = RelSizeCache::new(Lsn(100));
        assert_eq!(c.get(REL, Lsn(150)), None);
        c.changed(Lsn(120), [(REL, Some(3))]);
        assert_eq!(c.get(REL, Lsn(119)), None);
        assert_eq!(c.get(REL, Lsn(120)), Some(Some(3)));
        assert_eq!(c.get(REL, Lsn(500)), Some(Some(3)));
        c.changed(Lsn(130), [(REL, None)]);
        assert_eq!(c.get(REL, Lsn(125)), None);
        assert_eq!(c.get(REL, Lsn(130)), Some(None));
    }

    #[test]
    fn reads_never_hide_newer_changes_or_predate_loading() {
        let c = RelSizeCache::new(Lsn(100));
        // Below the load point nothing is kept: older changes are untracked.
        c.remember(REL, Lsn(50), Some(1));
        assert_eq!(c.get(REL, Lsn(200)), None);
        c.changed(Lsn(150), [(REL, Some(7))]);
        // A slow reader that read at 120, before the change, loses.
        c.remember(REL, Lsn(120), Some(5));
        assert_eq!(c.get(REL, Lsn(160)), Some(Some(7)));
        assert_eq!(c.get(REL, Lsn(140)), None);
        // A read of another relation fills an empty slot.
        let other = RelTag { relnode: 1, ..REL };
        c.remember(other, Lsn(170), Some(2));
        assert_eq!(c.get(other, Lsn(165)), None);
        assert_eq!(c.get(other, Lsn(170)), Some(Some(2)));
    }
}
