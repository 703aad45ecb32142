//! Tests of the layer map: edge cases, and property tests against a model
//! that implements the definitions of [`LayerMap::search`] and
//! [`LayerMap::image_coverage`] literally by scanning every layer.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use pageserver_api::key::Key;
use proptest::prelude::*;
use proptest::sample::Index;
use utils::lsn::Lsn;

use super::{LayerMap, LayerName, PersistentLayerDesc};

/// The `i`-th key of a small key space; `k(0) == Key::MIN`.
fn k(i: u32) -> Key {
    Key {
        field6: i,
        ..Key::MIN
    }
}

fn delta(keys: Range<Key>, lsns: Range<u64>) -> Arc<PersistentLayerDesc> {
    Arc::new(PersistentLayerDesc {
        key_range: keys,
        lsn_range: Lsn(lsns.start)..Lsn(lsns.end),
        is_delta: true,
        file_size: 1,
    })
}

fn l0(lsns: Range<u64>) -> Arc<PersistentLayerDesc> {
    delta(Key::MIN..Key::MAX, lsns)
}

fn image(keys: Range<Key>, lsn: u64) -> Arc<PersistentLayerDesc> {
    Arc::new(PersistentLayerDesc {
        key_range: keys,
        lsn_range: Lsn(lsn)..Lsn(lsn + 1),
        is_delta: false,
        file_size: 1,
    })
}

fn with_size(layer: &PersistentLayerDesc, file_size: u64) -> Arc<PersistentLayerDesc> {
    Arc::new(PersistentLayerDesc {
        file_size,
        ..layer.clone()
    })
}

/// `search` as (layer, lsn_floor), comparable by value.
fn found(map: &LayerMap, key: Key, end_lsn: u64) -> Option<(PersistentLayerDesc, Lsn)> {
    map.search(key, Lsn(end_lsn))
        .map(|r| ((*r.layer).clone(), r.lsn_floor))
}

type Pieces = Vec<(Range<Key>, Option<PersistentLayerDesc>)>;

fn pieces(map: &LayerMap, keys: Range<Key>, lsn: u64) -> Pieces {
    map.image_coverage(keys, Lsn(lsn))
        .into_iter()
        .map(|(r, l)| (r, l.map(|l| (*l).clone())))
        .collect()
}

/// The definitions, implemented by scanning all layers.
#[derive(Default)]
struct Model {
    layers: HashMap<LayerName, Arc<PersistentLayerDesc>>,
}

impl Model {
    fn insert(&mut self, layer: Arc<PersistentLayerDesc>) {
        self.layers.insert(layer.layer_name(), layer);
    }

    fn remove(&mut self, name: &LayerName) -> Option<Arc<PersistentLayerDesc>> {
        self.layers.remove(name)
    }

    /// delta(key, v) / image(key, v) of the `search` doc comment.
    fn best(&self, key: Key, v: Lsn, is_delta: bool) -> Option<&Arc<PersistentLayerDesc>> {
        self.layers
            .values()
            .filter(|l| l.is_delta == is_delta && l.key_range.contains(&key))
            .filter(|l| l.lsn_range.start <= v)
            .max_by_key(|l| {
                (
                    l.lsn_range.start,
                    l.lsn_range.end,
                    l.key_range.start,
                    l.key_range.end,
                )
            })
    }

    fn search(&self, key: Key, end_lsn: u64) -> Option<(PersistentLayerDesc, Lsn)> {
        if end_lsn == 0 {
            return None;
        }
        let end_lsn = Lsn(end_lsn);
        let v = Lsn(end_lsn.0 - 1);
        let (layer, floor) = match (self.best(key, v, true), self.best(key, v, false)) {
            (None, None) => return None,
            (None, Some(i)) => (i, i.lsn_range.start),
            (Some(d), None) => (d, d.lsn_range.start),
            (Some(d), Some(i)) => {
                if i.lsn_range.end >= d.lsn_range.end || i.lsn_range.start + 1 == end_lsn {
                    (i, i.lsn_range.start)
                } else {
                    (d, std::cmp::max(d.lsn_range.start, i.lsn_range.start + 1))
                }
            }
        };
        Some(((**layer).clone(), floor))
    }

    fn image_coverage(&self, keys: Range<Key>, lsn: u64) -> Pieces {
        if keys.start >= keys.end {
            return Vec::new();
        }
        let mut cuts: BTreeSet<Key> = [keys.start, keys.end].into();
        for l in self.layers.values().filter(|l| !l.is_delta) {
            for b in [l.key_range.start, l.key_range.end] {
                if keys.contains(&b) {
                    cuts.insert(b);
                }
            }
        }
        let cuts: Vec<Key> = cuts.into_iter().collect();
        let mut out: Pieces = Vec::new();
        for w in cuts.windows(2) {
            let layer = self.best(w[0], Lsn(lsn), false).map(|l| (**l).clone());
            match out.last_mut() {
                Some((r, last)) if *last == layer => r.end = w[1],
                _ => out.push((w[0]..w[1], layer)),
            }
        }
        out
    }

    fn level0(&self) -> Vec<PersistentLayerDesc> {
        let mut l0: Vec<_> = self
            .layers
            .values()
            .filter(|l| l.is_l0())
            .map(|l| (**l).clone())
            .collect();
        l0.sort_by_key(|l| (l.lsn_range.start, l.lsn_range.end));
        l0
    }
}

/// Checks everything but `search` / `image_coverage` against the model.
fn check_contents(map: &LayerMap, model: &Model) {
    assert_eq!(map.len(), model.layers.len());
    assert_eq!(map.is_empty(), model.layers.is_empty());
    for (name, layer) in &model.layers {
        assert_eq!(map.get(name).map(|l| &**l), Some(&**layer), "{name}");
    }
    let held: Vec<(bool, PersistentLayerDesc)> = map
        .iter_historic()
        .map(|l| (!l.is_delta, (**l).clone()))
        .collect();
    let mut sorted = held.clone();
    sorted.sort_by_key(|(image, l)| {
        (
            *image,
            l.lsn_range.start,
            l.lsn_range.end,
            l.key_range.start,
            l.key_range.end,
        )
    });
    assert_eq!(held, sorted, "iter_historic order");
    let held: BTreeSet<String> = held
        .iter()
        .map(|(_, l)| l.layer_name().to_string())
        .collect();
    let want: BTreeSet<String> = model.layers.keys().map(|n| n.to_string()).collect();
    assert_eq!(held, want);
    let l0: Vec<PersistentLayerDesc> = map.level0_deltas().iter().map(|l| (**l).clone()).collect();
    assert_eq!(l0, model.level0());
    // One version per distinct start LSN, no stale ones.
    for (coverage, is_delta) in [(&map.deltas, true), (&map.images, false)] {
        let starts: BTreeSet<Lsn> = model
            .layers
            .values()
            .filter(|l| l.is_delta == is_delta)
            .map(|l| l.lsn_range.start)
            .collect();
        assert_eq!(coverage.version_count(), starts.len());
    }
}

// ---------------------------------------------------------------- unit tests

#[test]
fn empty_map_and_lsn_zero() {
    let mut map = LayerMap::new();
    assert!(map.is_empty());
    assert_eq!(found(&map, k(1), 100), None);
    assert_eq!(pieces(&map, k(0)..k(5), 10), vec![(k(0)..k(5), None)]);
    assert_eq!(pieces(&map, k(5)..k(5), 10), vec![]);
    map.insert(image(k(0)..k(10), 0));
    map.insert(l0(0..10));
    assert_eq!(found(&map, k(1), 0), None);
    assert_eq!(
        found(&map, k(1), 1),
        Some(((*image(k(0)..k(10), 0)).clone(), Lsn(0)))
    );
}

#[test]
fn end_lsn_at_layer_boundary() {
    let mut map = LayerMap::new();
    let a = l0(0..10);
    let b = l0(10..20);
    let img = image(k(0)..k(10), 20);
    for l in [&a, &b, &img] {
        map.insert(l.clone());
    }
    // end_lsn == b.start: b is not visible, a is.
    assert_eq!(found(&map, k(3), 10), Some(((*a).clone(), Lsn(0))));
    assert_eq!(found(&map, k(3), 11), Some(((*b).clone(), Lsn(10))));
    // end_lsn == b.end == image LSN: image not visible yet.
    assert_eq!(found(&map, k(3), 20), Some(((*b).clone(), Lsn(10))));
    // Image at end_lsn - 1 wins.
    assert_eq!(found(&map, k(3), 21), Some(((*img).clone(), Lsn(20))));
    // Outside the image's keys the delta (wholly below v) still answers.
    assert_eq!(found(&map, k(12), 21), Some(((*b).clone(), Lsn(10))));
}

#[test]
fn image_exactly_at_end_lsn_minus_one() {
    let mut map = LayerMap::new();
    let d = delta(k(0)..k(10), 10..30);
    let img = image(k(0)..k(10), 15);
    map.insert(d.clone());
    map.insert(img.clone());
    // Image is the newest and ends before the delta, but it is exactly at v.
    assert_eq!(found(&map, k(1), 16), Some(((*img).clone(), Lsn(15))));
    // Above it the delta is read down to just above the image.
    assert_eq!(found(&map, k(1), 17), Some(((*d).clone(), Lsn(16))));
    assert_eq!(found(&map, k(1), 25), Some(((*d).clone(), Lsn(16))));
    // Below the image only the delta counts.
    assert_eq!(found(&map, k(1), 15), Some(((*d).clone(), Lsn(10))));
    // An image newer than the delta's end wins outright.
    let newer = image(k(0)..k(10), 40);
    map.insert(newer.clone());
    assert_eq!(found(&map, k(1), 100), Some(((*newer).clone(), Lsn(40))));
}

#[test]
fn key_at_exclusive_end_of_range() {
    let mut map = LayerMap::new();
    let d = delta(k(2)..k(5), 10..20);
    let img = image(k(2)..k(5), 30);
    map.insert(d.clone());
    map.insert(img.clone());
    assert_eq!(found(&map, k(4), 100), Some(((*img).clone(), Lsn(30))));
    assert_eq!(found(&map, k(5), 100), None);
    assert_eq!(found(&map, k(1), 100), None);
    assert_eq!(found(&map, k(2), 25), Some(((*d).clone(), Lsn(10))));
    assert_eq!(
        pieces(&map, k(0)..k(8), 30),
        vec![
            (k(0)..k(2), None),
            (k(2)..k(5), Some((*img).clone())),
            (k(5)..k(8), None)
        ]
    );
    assert_eq!(
        pieces(&map, k(3)..k(4), 30),
        vec![(k(3)..k(4), Some((*img).clone()))]
    );
    assert_eq!(pieces(&map, k(0)..k(8), 29), vec![(k(0)..k(8), None)]);
    // Key::MAX is an exclusive bound: never covered.
    map.insert(image(k(0)..Key::MAX, 50));
    assert_eq!(found(&map, Key::MAX, 100), None);
}

#[test]
fn ties_go_to_greatest_end_then_keys() {
    let mut map = LayerMap::new();
    let short = delta(k(0)..k(10), 10..20);
    let long = delta(k(0)..k(10), 10..30);
    let right = delta(k(5)..k(10), 10..30);
    map.insert(long.clone());
    map.insert(short.clone());
    assert_eq!(found(&map, k(7), 100), Some(((*long).clone(), Lsn(10))));
    map.insert(right.clone());
    assert_eq!(found(&map, k(7), 100), Some(((*right).clone(), Lsn(10))));
    assert_eq!(found(&map, k(3), 100), Some(((*long).clone(), Lsn(10))));
}

#[test]
fn newer_image_hides_older_in_coverage() {
    let mut map = LayerMap::new();
    let old = image(k(0)..k(10), 10);
    let new = image(k(3)..k(6), 20);
    map.insert(new.clone());
    map.insert(old.clone());
    assert_eq!(
        pieces(&map, k(0)..k(12), 25),
        vec![
            (k(0)..k(3), Some((*old).clone())),
            (k(3)..k(6), Some((*new).clone())),
            (k(6)..k(10), Some((*old).clone())),
            (k(10)..k(12), None),
        ]
    );
    assert_eq!(
        pieces(&map, k(0)..k(12), 15),
        vec![(k(0)..k(10), Some((*old).clone())), (k(10)..k(12), None)]
    );
}

#[test]
fn insert_replace_remove_by_name() {
    let mut map = LayerMap::new();
    let a = l0(0..10);
    let b = l0(10..20);
    let l1 = delta(k(0)..k(5), 0..20);
    map.insert(b.clone());
    map.insert(a.clone());
    assert_eq!(map.level0_deltas(), vec![a.clone(), b.clone()]);
    // Same name, new file size: replaced, also in search results.
    let a2 = with_size(&a, 99);
    map.insert(a2.clone());
    assert_eq!(map.len(), 2);
    assert_eq!(map.get(&a.layer_name()), Some(&a2));
    assert_eq!(map.search(k(1), Lsn(5)).unwrap().layer, a2);
    // Compaction: L0s out, one L1 in.
    map.replace(&[a.layer_name(), b.layer_name()], vec![l1.clone()]);
    assert_eq!(map.len(), 1);
    assert!(map.level0_deltas().is_empty());
    assert_eq!(found(&map, k(1), 15), Some(((*l1).clone(), Lsn(0))));
    assert_eq!(found(&map, k(6), 15), None);
    assert_eq!(map.remove(&a.layer_name()), None);
    assert_eq!(map.remove(&l1.layer_name()), Some(l1));
    assert!(map.is_empty());
    assert_eq!(found(&map, k(1), 15), None);
}

#[test]
fn reader_loop_makes_progress() {
    let mut map = LayerMap::new();
    for i in 0..10 {
        map.insert(l0(i * 10..i * 10 + 10));
        map.insert(image(k(0)..k(4), i * 10 + 5));
    }
    let mut end = 1000;
    let mut steps = 0;
    while let Some(r) = map.search(k(2), Lsn(end)) {
        assert!(r.lsn_floor.0 < end);
        end = r.lsn_floor.0;
        steps += 1;
    }
    assert_eq!(end, 0);
    // Per decade: delta down to just above the image, the image, the rest
    // of the delta.
    assert!(steps >= 10, "{steps}");
}

// ------------------------------------------------------------ property tests

/// Keys `k(0)..k(KEYS)`; small so that layers overlap.
const KEYS: u32 = 24;
/// Search LSNs go up to here, past every layer.
const MAX_LSN: u64 = 140;

fn key_range(space: u32) -> impl Strategy<Value = Range<Key>> {
    (0..space, 1..=space / 2, proptest::bool::weighted(0.1)).prop_map(move |(a, len, to_max)| {
        let end = if to_max {
            Key::MAX
        } else {
            k((a + len).min(space))
        };
        k(a)..end
    })
}

/// A pool of layers to insert and remove: an L0 stack with consecutive LSN
/// ranges, L1 deltas with smaller key ranges, and images.
fn layer_pool() -> impl Strategy<Value = Vec<Arc<PersistentLayerDesc>>> {
    let l0s = (0u64..20, prop::collection::vec(1u64..15, 0..8));
    let l1s = prop::collection::vec((key_range(KEYS), 0u64..100, 1u64..30), 0..12);
    let images = prop::collection::vec((key_range(KEYS), 0u64..110), 0..12);
    (l0s, l1s, images).prop_map(|((start, widths), l1s, images)| {
        let mut pool = Vec::new();
        let mut lsn = start;
        for w in widths {
            pool.push(l0(lsn..lsn + w));
            lsn += w;
        }
        for (keys, start, len) in l1s {
            pool.push(delta(keys, start..start + len));
        }
        for (keys, lsn) in images {
            pool.push(image(keys, lsn));
        }
        pool
    })
}

#[derive(Debug, Clone)]
enum Op {
    /// Insert a pool layer with this file size (same name: replace).
    Insert(Index, u64),
    Remove(Index),
    Replace(Vec<Index>, Vec<(Index, u64)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<Index>(), 1u64..4).prop_map(|(i, s)| Op::Insert(i, s)),
        2 => any::<Index>().prop_map(Op::Remove),
        1 => (
            prop::collection::vec(any::<Index>(), 0..5),
            prop::collection::vec((any::<Index>(), 1u64..4), 0..5)
        )
            .prop_map(|(r, a)| Op::Replace(r, a)),
    ]
}

fn pick<'a>(pool: &'a [Arc<PersistentLayerDesc>], i: &Index) -> &'a PersistentLayerDesc {
    i.get::<Arc<PersistentLayerDesc>>(pool)
}

fn apply(map: &mut LayerMap, model: &mut Model, pool: &[Arc<PersistentLayerDesc>], op: &Op) {
    match op {
        Op::Insert(i, size) => {
            let layer = with_size(pick(pool, i), *size);
            map.insert(layer.clone());
            model.insert(layer);
        }
        Op::Remove(i) => {
            let name = i.get(pool).layer_name();
            assert_eq!(map.remove(&name), model.remove(&name), "remove {name}");
        }
        Op::Replace(remove, add) => {
            let remove: Vec<LayerName> = remove.iter().map(|i| i.get(pool).layer_name()).collect();
            let add: Vec<_> = add
                .iter()
                .map(|(i, s)| with_size(pick(pool, i), *s))
                .collect();
            for name in &remove {
                model.remove(name);
            }
            for layer in &add {
                model.insert(layer.clone());
            }
            map.replace(&remove, add);
        }
    }
}

fn check_everything(map: &LayerMap, model: &Model) {
    check_contents(map, model);
    let keys: Vec<Key> = (0..=KEYS).map(k).chain([Key::MAX]).collect();
    for &key in &keys {
        for end in 0..=MAX_LSN {
            assert_eq!(
                found(map, key, end),
                model.search(key, end),
                "key {key} end_lsn {end}"
            );
        }
        // The reader's loop: floors strictly decrease and stay in the layer.
        let mut end = Lsn(MAX_LSN);
        while let Some(r) = map.search(key, end) {
            assert!(r.lsn_floor < end && r.lsn_floor >= r.layer.lsn_range.start);
            assert!(r.layer.key_range.contains(&key));
            end = r.lsn_floor;
        }
    }
    for lsn in 0..=MAX_LSN {
        let all = Key::MIN..Key::MAX;
        assert_eq!(
            pieces(map, all.clone(), lsn),
            model.image_coverage(all, lsn),
            "lsn {lsn}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random layer sets and insert/remove/replace sequences: search and
    /// image_coverage agree with the model after every step (at sampled
    /// points) and at the end (everywhere).
    #[test]
    fn matches_model(
        pool in layer_pool(),
        flush_order_first in any::<bool>(),
        ops in prop::collection::vec(op(), 0..30),
        probes in prop::collection::vec((0..=KEYS, 0..=MAX_LSN), 12),
        ranges in prop::collection::vec((0..=KEYS, 0..=KEYS, 0..=MAX_LSN), 6),
    ) {
        let mut map = LayerMap::new();
        let mut model = Model::default();
        if pool.is_empty() {
            check_everything(&map, &model);
            return Ok(());
        }
        if flush_order_first {
            // The common case: layers arrive in LSN order (the fast path).
            let mut sorted = pool.clone();
            sorted.sort_by_key(|l| (l.lsn_range.start, l.lsn_range.end));
            for l in sorted {
                map.insert(l.clone());
                model.insert(l);
            }
        }
        for op in &ops {
            apply(&mut map, &mut model, &pool, op);
            check_contents(&map, &model);
            for &(key, end) in &probes {
                prop_assert_eq!(found(&map, k(key), end), model.search(k(key), end));
            }
            for &(a, b, lsn) in &ranges {
                prop_assert_eq!(
                    pieces(&map, k(a)..k(b), lsn),
                    model.image_coverage(k(a)..k(b), lsn)
                );
            }
        }
        check_everything(&map, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Hundreds of layers over a wide key space, so the persistent maps grow
    /// several tree levels deep (im's nodes hold 64 entries).
    #[test]
    fn matches_model_with_deep_trees(
        layers in prop::collection::vec(
            (key_range(4000).prop_map(|r| r.start..std::cmp::min(r.end, r.start.add(40))),
             0u64..200, 1u64..20, any::<bool>()),
            200..400,
        ),
        removals in prop::collection::vec(any::<Index>(), 0..60),
        probes in prop::collection::vec((0u32..4000, 0u64..230), 300),
        ranges in prop::collection::vec((0u32..4000, 0u32..4000, 0u64..230), 20),
    ) {
        let mut map = LayerMap::new();
        let mut model = Model::default();
        let pool: Vec<_> = layers
            .into_iter()
            .map(|(keys, lsn, len, is_delta)| {
                if is_delta { delta(keys, lsn..lsn + len) } else { image(keys, lsn) }
            })
            .collect();
        for l in &pool {
            map.insert(l.clone());
            model.insert(l.clone());
        }
        let (batch, single) = removals.split_at(removals.len() / 2);
        let batch: Vec<LayerName> = batch.iter().map(|i| i.get(&pool).layer_name()).collect();
        for name in &batch {
            model.remove(name);
        }
        map.replace(&batch, Vec::new());
        for i in single {
            let name = i.get(&pool).layer_name();
            prop_assert_eq!(map.remove(&name), model.remove(&name));
        }
        check_contents(&map, &model);
        for (key, end) in probes {
            prop_assert_eq!(found(&map, k(key), end), model.search(k(key), end));
        }
        for (a, b, lsn) in ranges {
            prop_assert_eq!(
                pieces(&map, k(a)..k(b), lsn),
                model.image_coverage(k(a)..k(b), lsn)
            );
        }
    }
}
