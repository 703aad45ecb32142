//! The layer map of a timeline: which layer file holds the newest value of a
//! key at or below an LSN (DESIGN.md section 3), answered without scanning
//! all layers.
//!
//! # Structure: historic layer coverage
//!
//! Delta layers and image layers are kept apart, each in a
//! `HistoricCoverage` (submodule `historic`) holding:
//!
//! * every layer of the kind in a `BTreeMap` keyed by its *painting order*
//!   `(lsn_range.start, lsn_range.end, key_range.start, key_range.end)`.
//!   Within one kind this is a total order on layer names; it is also the
//!   tie-break of [`LayerMap::search`];
//! * a `BTreeMap` from every distinct `lsn_range.start` x to a *version*: a
//!   persistent ordered map (`im::OrdMap`) from key-range start to
//!   (range end, layer) telling which layer covers each key when only layers
//!   with `lsn_range.start <= x` count. A version is what painting those
//!   layers in painting order onto an empty key line gives, each layer
//!   overwriting the ranges it covers; so for each key it holds the
//!   *greatest* layer, in painting order, among those covering the key,
//!   which is exactly `delta(key, v)` / `image(key, v)` of
//!   [`LayerMap::search`].
//!
//! A query is then one `BTreeMap` lookup (the last version at or below the
//! LSN) and one `OrdMap` lookup per kind. Consecutive versions differ by the
//! few layers starting at one LSN, so each is an O(1) clone of its
//! predecessor plus a few paints that copy O(log n) tree nodes each. Flushes
//! add layers above everything held and only extend the newest version;
//! compaction and GC change layers in the past, which rebuilds the versions
//! from the lowest LSN they touch, once per batch ([`LayerMap::replace`]).
//! Reads vastly outnumber those changes, which is the trade we want.
//!
//! Alternatives considered: a 2-D interval tree over (key, LSN) rectangles
//! finds the layers *containing* a point, but `search` wants the greatest
//! start among layers that may lie wholly below the LSN, which it answers
//! only by scanning; a per-key list of layers costs memory per key.
//!
//! # Complexity
//!
//! n = layers held; k = layers with `lsn_range.start` at or after the lowest
//! LSN a change touches; c = coverage ranges those repaints overwrite (at
//! most n); m = pieces returned.
//!
//! | operation | time |
//! |---|---|
//! | [`LayerMap::search`], [`LayerMap::get`] | O(log n) |
//! | [`LayerMap::image_coverage`] | O(log n + m) |
//! | [`LayerMap::insert`] after every layer of its kind (flush order) | O(log n) amortized |
//! | [`LayerMap::insert`] elsewhere, [`LayerMap::remove`] | O((k + c) log n), at worst O(n log n) |
//! | [`LayerMap::replace`] of b layers | O(b log n + (k + c) log n), one rebuild per kind |
//! | [`LayerMap::level0_deltas`] | O(number of L0 layers) |
//! | [`LayerMap::len`], [`LayerMap::is_empty`] | O(1) |
//!
//! Memory: O(n log n) tree nodes over all versions (each paint copies the
//! O(log n) nodes on its path; everything else is shared).

mod historic;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use pageserver_api::key::Key;
use utils::lsn::Lsn;

use super::{LayerName, PersistentLayerDesc};
use historic::{HistoricCoverage, LayerOrder};

/// The historic (on-disk) layers of one timeline, indexed for
/// [`LayerMap::search`] and [`LayerMap::image_coverage`].
///
/// Holds `Arc<PersistentLayerDesc>`s; a layer is identified by its
/// [`LayerName`], so inserting a layer with the name of a held one replaces
/// it. Cloning is cheap (O(number of distinct layer start LSNs), the key
/// maps are shared), so a reader can take a snapshot while a writer
/// prepares the next map.
#[derive(Clone, Default)]
pub struct LayerMap {
    deltas: HistoricCoverage,
    images: HistoricCoverage,
    /// The L0 deltas again, by painting order (so by `lsn_range.start`).
    l0: BTreeMap<LayerOrder, Arc<PersistentLayerDesc>>,
}

/// The answer of [`LayerMap::search`]: read `layer`'s values of the key in
/// the LSN range `lsn_floor..end_lsn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// The layer to read.
    pub layer: Arc<PersistentLayerDesc>,
    /// Lowest LSN to read in `layer`; if older data is still needed, search
    /// again with `end_lsn = lsn_floor`. Always below the searched `end_lsn`.
    pub lsn_floor: Lsn,
}

impl fmt::Debug for LayerMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerMap")
            .field("deltas", &self.deltas.len())
            .field("images", &self.images.len())
            .field("l0", &self.l0.len())
            .finish()
    }
}

impl LayerMap {
    /// An empty map.
    pub fn new() -> LayerMap {
        LayerMap::default()
    }

    fn kind(&self, is_delta: bool) -> &HistoricCoverage {
        if is_delta {
            &self.deltas
        } else {
            &self.images
        }
    }

    fn kind_mut(&mut self, is_delta: bool) -> &mut HistoricCoverage {
        if is_delta {
            &mut self.deltas
        } else {
            &mut self.images
        }
    }

    /// Adds a layer, replacing the held layer with the same name if any.
    ///
    /// O(log n) amortized when the layer sorts after every held layer of
    /// its kind (a flush); otherwise rebuilds the versions from its
    /// `lsn_range.start` on (see the module comment). To change many layers
    /// use [`LayerMap::replace`]. A layer with an empty key range is held but
    /// never found by a search.
    pub fn insert(&mut self, layer: Arc<PersistentLayerDesc>) {
        if layer.is_l0() {
            self.l0.insert(LayerOrder::of_desc(&layer), layer.clone());
        }
        self.kind_mut(layer.is_delta).insert(layer);
    }

    /// Removes the layer with this name and returns it, or `None` (and
    /// changes nothing) if no such layer is held. Rebuilds the versions of
    /// its kind from its `lsn_range.start` on.
    pub fn remove(&mut self, name: &LayerName) -> Option<Arc<PersistentLayerDesc>> {
        let order = LayerOrder::of(name);
        let kind = self.kind_mut(name.is_delta);
        let removed = kind.remove_deferred(&order)?;
        kind.rebuild_from(order.lsn_start());
        if removed.is_l0() {
            self.l0.remove(&order);
        }
        Some(removed)
    }

    /// Removes the layers named in `remove` (names not held are ignored),
    /// then adds `add` (replacing same-named layers), rebuilding the
    /// versions of each kind once, from the lowest LSN changed. This is the
    /// form for compaction and GC, which swap many layers at once.
    pub fn replace(&mut self, remove: &[LayerName], add: Vec<Arc<PersistentLayerDesc>>) {
        let mut dirty_delta: Option<Lsn> = None;
        let mut dirty_image: Option<Lsn> = None;
        let mut mark = |is_delta: bool, lsn: Lsn| {
            let dirty = if is_delta {
                &mut dirty_delta
            } else {
                &mut dirty_image
            };
            *dirty = Some(dirty.map_or(lsn, |d| d.min(lsn)));
        };
        for name in remove {
            let order = LayerOrder::of(name);
            if let Some(removed) = self.kind_mut(name.is_delta).remove_deferred(&order) {
                if removed.is_l0() {
                    self.l0.remove(&order);
                }
                mark(name.is_delta, order.lsn_start());
            }
        }
        for layer in add {
            mark(layer.is_delta, layer.lsn_range.start);
            if layer.is_l0() {
                self.l0.insert(LayerOrder::of_desc(&layer), layer.clone());
            }
            self.kind_mut(layer.is_delta).insert_deferred(layer);
        }
        if let Some(lsn) = dirty_delta {
            self.deltas.rebuild_from(lsn);
        }
        if let Some(lsn) = dirty_image {
            self.images.rebuild_from(lsn);
        }
    }

    /// Which layer to read for the newest value of `key` below `end_lsn`
    /// (exclusive). `end_lsn == Lsn(0)` gives `None`. O(log n).
    ///
    /// Let v = `end_lsn - 1` and define
    ///
    /// * delta(key, v): among delta layers whose key range contains `key`
    ///   and whose `lsn_range.start <= v`, the one with the greatest
    ///   `lsn_range.start`; ties go to the greatest `lsn_range.end`, then
    ///   the greatest `key_range.start`, then the greatest `key_range.end`
    ///   (with the kind, these four values are the layer's name, so the
    ///   order is total). A delta layer lying wholly below v still counts;
    /// * image(key, v): the same among image layers.
    ///
    /// Then, writing D and I for those layers:
    ///
    /// * neither exists: `None`;
    /// * only I: `SearchResult { layer: I, lsn_floor: I.lsn_range.start }`;
    /// * only D: `SearchResult { layer: D, lsn_floor: D.lsn_range.start }`;
    /// * both: if `I.lsn_range.end >= D.lsn_range.end` or
    ///   `I.lsn_range.start + 1 == end_lsn`, then I with `lsn_floor =
    ///   I.lsn_range.start`; otherwise D with `lsn_floor =
    ///   max(D.lsn_range.start, I.lsn_range.start + 1)` (the image bounds
    ///   how far down the delta needs reading).
    ///
    /// The reader reads the chosen layer's values for `key` in
    /// `lsn_floor..end_lsn`; if it needs older data it searches again with
    /// `end_lsn = lsn_floor`. `lsn_floor < end_lsn` always, so this makes
    /// progress.
    pub fn search(&self, key: Key, end_lsn: Lsn) -> Option<SearchResult> {
        let v = Lsn(end_lsn.0.checked_sub(1)?);
        let delta = self.deltas.find(key, v);
        let image = self.images.find(key, v);
        let (layer, lsn_floor) = match (delta, image) {
            (None, None) => return None,
            (None, Some(i)) => (i, i.lsn_range.start),
            (Some(d), None) => (d, d.lsn_range.start),
            (Some(d), Some(i)) => {
                // i.lsn_range.start <= v < end_lsn, so `+ 1` cannot overflow.
                let after_image = Lsn(i.lsn_range.start.0 + 1);
                if i.lsn_range.end >= d.lsn_range.end || after_image == end_lsn {
                    (i, i.lsn_range.start)
                } else {
                    (d, d.lsn_range.start.max(after_image))
                }
            }
        };
        Some(SearchResult {
            layer: layer.clone(),
            lsn_floor,
        })
    }

    /// `key_range` cut into maximal pieces, in key order, each paired with
    /// the newest image layer with LSN `<= lsn` covering it (ties broken as
    /// in [`LayerMap::search`]), or `None` where no such image exists. The
    /// pieces are contiguous and together exactly `key_range`; adjacent
    /// pieces differ in their layer. An empty `key_range` gives an empty
    /// vector. O(log n + m) for m pieces.
    pub fn image_coverage(
        &self,
        key_range: Range<Key>,
        lsn: Lsn,
    ) -> Vec<(Range<Key>, Option<Arc<PersistentLayerDesc>>)> {
        self.images.pieces(key_range, lsn)
    }

    /// Every layer held: the deltas, then the images, each sorted by
    /// `(lsn_range.start, lsn_range.end, key_range.start, key_range.end)`.
    pub fn iter_historic(&self) -> impl Iterator<Item = &Arc<PersistentLayerDesc>> {
        self.deltas.iter().chain(self.images.iter())
    }

    /// The L0 delta layers (delta layers over the whole key space, see
    /// [`PersistentLayerDesc::is_l0`]) sorted by `lsn_range.start` (then
    /// `lsn_range.end`). O(number of L0 layers).
    pub fn level0_deltas(&self) -> Vec<Arc<PersistentLayerDesc>> {
        self.l0.values().cloned().collect()
    }

    /// Number of layers held. O(1).
    pub fn len(&self) -> usize {
        self.deltas.len() + self.images.len()
    }

    /// True when no layer is held. O(1).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The held layer with this name. O(log n).
    pub fn get(&self, name: &LayerName) -> Option<&Arc<PersistentLayerDesc>> {
        self.kind(name.is_delta).get(&LayerOrder::of(name))
    }
}
