//! Historic layer coverage for one kind of layer (delta or image): every
//! layer of that kind, plus one persistent key-range coverage map per
//! distinct `lsn_range.start`. See the parent module for why.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use im::OrdMap;
use pageserver_api::key::Key;
use utils::lsn::Lsn;

use super::super::{LayerName, PersistentLayerDesc};

/// The painting order of layers of one kind, and the tie-break of
/// [`super::LayerMap::search`]: `(lsn_range.start, lsn_range.end,
/// key_range.start, key_range.end)`, compared in that order. Within one kind
/// it is a total order on layer names (a name is exactly these four values
/// plus the kind), so it also serves as the lookup key of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LayerOrder {
    lsn_start: Lsn,
    lsn_end: Lsn,
    key_start: Key,
    key_end: Key,
}

impl LayerOrder {
    /// The order of the layer with this name.
    pub(super) fn of(name: &LayerName) -> LayerOrder {
        LayerOrder {
            lsn_start: name.lsn_range.start,
            lsn_end: name.lsn_range.end,
            key_start: name.key_range.start,
            key_end: name.key_range.end,
        }
    }

    /// The order of this layer.
    pub(super) fn of_desc(desc: &PersistentLayerDesc) -> LayerOrder {
        LayerOrder {
            lsn_start: desc.lsn_range.start,
            lsn_end: desc.lsn_range.end,
            key_start: desc.key_range.start,
            key_end: desc.key_range.end,
        }
    }

    /// Sorts before every layer starting at `lsn` or later and after every
    /// layer starting earlier.
    fn first_at(lsn: Lsn) -> LayerOrder {
        LayerOrder {
            lsn_start: lsn,
            lsn_end: Lsn(0),
            key_start: Key::MIN,
            key_end: Key::MIN,
        }
    }

    /// The `lsn_range.start` of the layer.
    pub(super) fn lsn_start(&self) -> Lsn {
        self.lsn_start
    }
}

/// Which layer covers each key: a persistent map from the start of a key
/// range to (its exclusive end, the layer). Ranges are disjoint; keys in no
/// range are covered by no layer. Cloning is O(1) and clones share nodes.
///
/// (`OrdMap::get_prev` is not used: it is wrong across tree nodes in im 15,
/// see bodil/im-rs#205. `range(..=key).next_back()` is the working form.)
#[derive(Clone, Default)]
pub(super) struct Coverage {
    map: OrdMap<Key, (Key, Arc<PersistentLayerDesc>)>,
}

impl Coverage {
    /// Makes `layer` the cover of every key in `keys`, hiding whatever
    /// covered them before. O((1 + r) log s) for a map of s ranges of which
    /// r are overwritten; adds at most two ranges.
    fn paint(&mut self, keys: &Range<Key>, layer: &Arc<PersistentLayerDesc>) {
        let (start, end) = (keys.start, keys.end);
        if start >= end {
            return;
        }
        // A range starting before `start` that reaches into the painted one:
        // keep its part before `start` and, if it sticks out, after `end`.
        let before = self
            .map
            .range(..start)
            .next_back()
            .map(|(s, (e, l))| (*s, *e, l.clone()));
        if let Some((s, e, l)) = before {
            if e > start {
                if e > end {
                    self.map.insert(end, (e, l.clone()));
                }
                self.map.insert(s, (start, l));
            }
        }
        // Ranges starting inside the painted one go; the last may stick out.
        let inside: Vec<(Key, Key, Arc<PersistentLayerDesc>)> = self
            .map
            .range(start..end)
            .map(|(s, (e, l))| (*s, *e, l.clone()))
            .collect();
        for (s, e, l) in inside {
            self.map.remove(&s);
            if e > end {
                self.map.insert(end, (e, l));
            }
        }
        self.map.insert(start, (end, layer.clone()));
    }

    /// The layer covering `key`. O(log s).
    fn get(&self, key: Key) -> Option<&Arc<PersistentLayerDesc>> {
        match self.map.range(..=key).next_back() {
            Some((_, (end, layer))) if key < *end => Some(layer),
            _ => None,
        }
    }

    /// `keys` cut into maximal pieces covered by one layer or by none, in
    /// key order. O(log s + m) for m pieces.
    fn pieces(&self, keys: Range<Key>) -> Vec<(Range<Key>, Option<Arc<PersistentLayerDesc>>)> {
        let mut out: Vec<(Range<Key>, Option<Arc<PersistentLayerDesc>>)> = Vec::new();
        if keys.start >= keys.end {
            return out;
        }
        let mut push = |range: Range<Key>, layer: Option<&Arc<PersistentLayerDesc>>| {
            if range.start >= range.end {
                return;
            }
            if let Some((last_range, last_layer)) = out.last_mut() {
                let same = match (last_layer.as_ref(), layer) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                };
                if same && last_range.end == range.start {
                    last_range.end = range.end;
                    return;
                }
            }
            out.push((range, layer.cloned()));
        };
        let mut cursor = keys.start;
        if let Some((_, (e, l))) = self.map.range(..keys.start).next_back() {
            if *e > keys.start {
                cursor = (*e).min(keys.end);
                push(keys.start..cursor, Some(l));
            }
        }
        for (s, (e, l)) in self.map.range(keys.start..keys.end) {
            push(cursor..*s, None);
            cursor = (*e).min(keys.end);
            push(*s..cursor, Some(l));
        }
        push(cursor..keys.end, None);
        out
    }
}

/// All layers of one kind and their coverage at every LSN where a layer
/// starts.
///
/// Invariant: for every layer start LSN `x`, `versions[x]` is the result of
/// painting, in [`LayerOrder`], every layer with `lsn_range.start <= x` onto
/// an empty [`Coverage`]; there are no other versions.
#[derive(Clone, Default)]
pub(super) struct HistoricCoverage {
    layers: BTreeMap<LayerOrder, Arc<PersistentLayerDesc>>,
    versions: BTreeMap<Lsn, Coverage>,
}

impl HistoricCoverage {
    /// Number of layers. O(1).
    pub(super) fn len(&self) -> usize {
        self.layers.len()
    }

    /// The layer with this order (that is, name). O(log n).
    pub(super) fn get(&self, order: &LayerOrder) -> Option<&Arc<PersistentLayerDesc>> {
        self.layers.get(order)
    }

    /// Every layer, in [`LayerOrder`].
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<PersistentLayerDesc>> {
        self.layers.values()
    }

    /// The coverage considering layers with `lsn_range.start <= lsn`.
    /// O(log n).
    fn version_at(&self, lsn: Lsn) -> Option<&Coverage> {
        self.versions.range(..=lsn).next_back().map(|(_, c)| c)
    }

    /// Among layers whose key range contains `key` and whose
    /// `lsn_range.start <= lsn`, the greatest in [`LayerOrder`]. O(log n).
    pub(super) fn find(&self, key: Key, lsn: Lsn) -> Option<&Arc<PersistentLayerDesc>> {
        self.version_at(lsn)?.get(key)
    }

    /// [`Coverage::pieces`] of the version at `lsn`. O(log n + m).
    pub(super) fn pieces(
        &self,
        keys: Range<Key>,
        lsn: Lsn,
    ) -> Vec<(Range<Key>, Option<Arc<PersistentLayerDesc>>)> {
        match self.version_at(lsn) {
            Some(coverage) => coverage.pieces(keys),
            None if keys.start < keys.end => vec![(keys, None)],
            None => Vec::new(),
        }
    }

    /// Adds `layer`, replacing a layer of the same name. When it sorts after
    /// every layer already held (the flush order) it is painted onto the
    /// newest version: O(log n) amortized. Otherwise the versions from its
    /// LSN on are rebuilt (see [`HistoricCoverage::rebuild_from`]).
    pub(super) fn insert(&mut self, layer: Arc<PersistentLayerDesc>) {
        let order = LayerOrder::of_desc(&layer);
        let newest = self.layers.last_key_value().map(|(o, _)| *o);
        if newest.is_some_and(|newest| newest >= order) {
            self.layers.insert(order, layer);
            self.rebuild_from(order.lsn_start);
            return;
        }
        let mut coverage = match self.versions.last_key_value() {
            Some((lsn, _)) if *lsn == order.lsn_start => {
                self.versions.remove(&order.lsn_start).expect("just seen")
            }
            Some((_, coverage)) => coverage.clone(),
            None => Coverage::default(),
        };
        coverage.paint(&layer.key_range, &layer);
        self.versions.insert(order.lsn_start, coverage);
        self.layers.insert(order, layer);
    }

    /// Removes a layer without fixing the versions; the caller must call
    /// [`HistoricCoverage::rebuild_from`] with an LSN no later than the
    /// removed layer's `lsn_range.start` before the next query.
    pub(super) fn remove_deferred(
        &mut self,
        order: &LayerOrder,
    ) -> Option<Arc<PersistentLayerDesc>> {
        self.layers.remove(order)
    }

    /// Adds or replaces a layer without fixing the versions; same contract
    /// as [`HistoricCoverage::remove_deferred`].
    pub(super) fn insert_deferred(&mut self, layer: Arc<PersistentLayerDesc>) {
        self.layers.insert(LayerOrder::of_desc(&layer), layer);
    }

    /// Recomputes every version at or after `from` from the layers:
    /// starts from the last version before `from` and repaints the k
    /// layers with `lsn_range.start >= from`. O((k + c) log n) where c is
    /// the number of ranges of that base version the repaints overwrite
    /// (at most n); O(n log n) when `from` is at or before the oldest layer.
    pub(super) fn rebuild_from(&mut self, from: Lsn) {
        drop(self.versions.split_off(&from));
        let mut coverage = self
            .versions
            .last_key_value()
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let mut current: Option<Lsn> = None;
        for (order, layer) in self.layers.range(LayerOrder::first_at(from)..) {
            if let Some(lsn) = current.filter(|lsn| *lsn != order.lsn_start) {
                self.versions.insert(lsn, coverage.clone());
            }
            coverage.paint(&layer.key_range, layer);
            current = Some(order.lsn_start);
        }
        if let Some(lsn) = current {
            self.versions.insert(lsn, coverage);
        }
    }

    /// Number of stored versions (distinct layer start LSNs), for tests.
    #[cfg(test)]
    pub(super) fn version_count(&self) -> usize {
        self.versions.len()
    }
}
