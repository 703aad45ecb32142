//! The storage engine against a model: random puts, flushes, compactions,
//! GC runs, restarts and branches, with reads at random LSNs compared to a
//! plain in-memory map of every version.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use pageserver_api::key::{rel_block_key, rel_size_key, Key, RelTag};
use pageserver_api::models::TenantState;
use pageserver_api::tenant_config::TenantConfig;
use pageserver_api::value::{NativeRecord, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::layers::LayerManager;
use super::read::PageReconstructError;
use super::{SharedTenantConf, Timeline};
use crate::tenant::metadata::TimelineMetadata;

const REL: RelTag = RelTag {
    spcnode: 1663,
    dbnode: 5,
    relnode: 16384,
    forknum: 0,
};

fn conf() -> SharedTenantConf {
    let mut c = TenantConfig::builtin_defaults();
    c.checkpoint_distance = Some(64 * 1024);
    c.compaction_threshold = Some(3);
    c.compaction_target_size = Some(48 * 1024);
    c.image_creation_threshold = Some(2);
    c.gc_horizon = Some(0x400);
    c.pitr_interval = Some(std::time::Duration::ZERO);
    Arc::new(RwLock::new(c))
}

fn root_metadata() -> TimelineMetadata {
    TimelineMetadata::new_root(15)
}

/// A new root timeline of a new tenant in `dir`.
fn new_root(dir: &Path, c: &SharedTenantConf) -> Arc<Timeline> {
    create(
        dir,
        (TenantId::generate(), TimelineId::generate()),
        root_metadata(),
        c,
    )
}

fn create(
    dir: &Path,
    ids: (TenantId, TimelineId),
    m: TimelineMetadata,
    c: &SharedTenantConf,
) -> Arc<Timeline> {
    let path = dir.join(ids.1.to_string());
    Timeline::create_on_disk(&path, &m).unwrap();
    Arc::new(Timeline::new(
        ids.0,
        ids.1,
        path,
        m,
        LayerManager::default(),
        TenantState::Active,
        c.clone(),
        &CancellationToken::new(),
    ))
}

fn reload(tl: &Timeline, c: &SharedTenantConf) -> Arc<Timeline> {
    let new = Timeline::load(
        tl.tenant_id,
        tl.timeline_id,
        tl.path().to_path_buf(),
        c.clone(),
        &CancellationToken::new(),
    );
    assert_eq!(new.state(), TenantState::Active, "{:?}", new.state());
    if let Some(a) = tl.ancestor() {
        new.set_ancestor(a.clone());
    }
    Arc::new(new)
}

/// Every version of every key, with the value each read must return.
#[derive(Default, Clone)]
struct Model {
    versions: BTreeMap<Key, BTreeMap<Lsn, Vec<u8>>>,
}

impl Model {
    fn get(&self, key: Key, lsn: Lsn) -> Option<&Vec<u8>> {
        self.versions
            .get(&key)?
            .range(..=lsn)
            .next_back()
            .map(|(_, v)| v)
    }
}

fn image(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(1..2000);
    let fill: u8 = rng.gen();
    // Half compressible, half random.
    (0..len)
        .map(|i| if i % 2 == 0 { fill } else { rng.gen() })
        .collect()
}

/// Puts a batch at `lsn`: images of random blocks and a relation-size record.
fn put_batch(tl: &Timeline, model: &mut Model, rng: &mut StdRng, lsn: Lsn) {
    let mut w = tl.writer();
    for _ in 0..rng.gen_range(1..6) {
        let key = rel_block_key(REL, rng.gen_range(0..40));
        let v = image(rng);
        w.put(key, lsn, &Value::Image(Bytes::from(v.clone())))
            .unwrap();
        model.versions.entry(key).or_default().insert(lsn, v);
    }
    let size_key = rel_size_key(REL);
    let n: u32 = rng.gen_range(0..100);
    let old = model
        .get(size_key, lsn)
        .map(|v| u32::from_le_bytes(v[..4].try_into().unwrap()));
    let (rec, new) = match old {
        Some(o) if rng.gen_bool(0.8) => (NativeRecord::RelSizeExtend(n), o.max(n)),
        _ => (NativeRecord::RelSizeSet(n), n),
    };
    w.put(size_key, lsn, &Value::Record(rec)).unwrap();
    model
        .versions
        .entry(size_key)
        .or_default()
        .insert(lsn, new.to_le_bytes().to_vec());
    w.finish_write(lsn).unwrap();
}

fn check_reads(tl: &Timeline, model: &Model, rng: &mut StdRng, upto: Lsn, n: usize) {
    let cutoff = tl.gc_cutoff_lsn();
    for _ in 0..n {
        let lsn = Lsn(rng.gen_range(cutoff.0..=upto.0));
        let key = if rng.gen_bool(0.2) {
            rel_size_key(REL)
        } else {
            rel_block_key(REL, rng.gen_range(0..40))
        };
        match (tl.get_blocking(key, lsn), model.get(key, lsn)) {
            (Ok(got), Some(want)) => assert_eq!(&got[..], &want[..], "key {key} at {lsn}"),
            (Err(PageReconstructError::MissingKey { .. }), None) => {}
            (got, want) => panic!("key {key} at {lsn}: got {got:?}, model has {want:?}"),
        }
    }
    if cutoff.0 > 0 {
        let err = tl.get_blocking(rel_size_key(REL), cutoff - 1).unwrap_err();
        assert!(
            matches!(err, PageReconstructError::BelowGcCutoff { .. }),
            "{err}"
        );
    }
}

#[test]
fn random_operations_match_the_model() {
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let c = conf();
        let mut tl = new_root(dir.path(), &c);
        let mut model = Model::default();
        let mut lsn = Lsn(0x100);
        let mut removed = 0;
        for step in 0..400 {
            lsn += rng.gen_range(1..40) * 8;
            put_batch(&tl, &mut model, &mut rng, lsn);
            match rng.gen_range(0..100) {
                0..=5 => tl.checkpoint_blocking().unwrap(),
                6..=8 => {
                    tl.compact_blocking(rng.gen_bool(0.5)).unwrap();
                }
                9..=10 => {
                    tl.checkpoint_blocking().unwrap();
                    tl.compact_blocking(true).unwrap();
                    let gc = tl
                        .gc_blocking(Vec::new, Some(rng.gen_range(0..0x800)))
                        .unwrap();
                    removed += gc.layers_removed;
                }
                11 => {
                    // Restart: only what is durable survives, and it all does.
                    tl.checkpoint_blocking().unwrap();
                    let durable = tl.disk_consistent_lsn();
                    assert_eq!(durable, lsn);
                    tl = reload(&tl, &c);
                }
                _ => {}
            }
            if step % 20 == 0 {
                check_reads(&tl, &model, &mut rng, lsn, 30);
            }
        }
        check_reads(&tl, &model, &mut rng, lsn, 300);
        let stats = tl.layer_stats();
        assert!(stats.l1_count > 0 && stats.image_count > 0, "{stats:?}");
        assert!(removed > 0, "GC never removed a layer");
    }
}

/// Image layers follow the depth a read walks: L1 layers side by side in
/// key order are one step, waiting L0 layers do not count, and a second
/// generation of L1 layers over the same keys reaches the threshold (2).
#[test]
fn images_follow_the_stack_of_l1_layers_over_a_key() {
    let mut rng = StdRng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    // Layers are flushed here only, by checkpoint.
    c.write().unwrap().checkpoint_distance = Some(64 << 20);
    let tl = new_root(dir.path(), &c);
    let mut model = Model::default();
    let mut lsn = Lsn(0x100);
    let mut l0_layers = |n: usize, model: &mut Model, lsn: &mut Lsn| {
        for _ in 0..n {
            for _ in 0..30 {
                *lsn += 8;
                put_batch(&tl, model, &mut rng, *lsn);
            }
            tl.checkpoint_blocking().unwrap();
        }
    };
    l0_layers(3, &mut model, &mut lsn);
    let stats = tl.compact_blocking(false).unwrap();
    assert_eq!(stats.l0_merged, 3, "{stats:?}");
    let layers = tl.layer_stats();
    assert!(layers.l1_count >= 2, "side by side L1 layers: {layers:?}");
    assert_eq!(layers.image_count, 0, "{layers:?}");

    l0_layers(2, &mut model, &mut lsn);
    let stats = tl.compact_blocking(false).unwrap();
    assert_eq!((stats.l0_merged, stats.images_written), (0, 0), "{stats:?}");

    let stats = tl.compact_blocking(true).unwrap();
    assert_eq!(stats.l0_merged, 2, "{stats:?}");
    assert!(stats.images_written > 0, "{stats:?}");
    check_reads(&tl, &model, &mut rng, lsn, 200);
    // The images cover the stack: nothing more to write.
    let stats = tl.compact_blocking(true).unwrap();
    assert_eq!(stats.images_written, 0, "{stats:?}");
}

#[test]
fn unflushed_data_is_lost_on_restart_and_nothing_else() {
    let mut rng = StdRng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    let ids = (TenantId::generate(), TimelineId::generate());
    let tl = create(dir.path(), ids, root_metadata(), &c);
    let mut model = Model::default();
    for i in 1..=50u64 {
        put_batch(&tl, &mut model, &mut rng, Lsn(0x1000 + i * 8));
    }
    tl.checkpoint_blocking().unwrap();
    let durable = tl.disk_consistent_lsn();
    for i in 51..=60u64 {
        put_batch(&tl, &mut model, &mut rng, Lsn(0x1000 + i * 8));
    }
    // A flushed layer above the metadata's disk_consistent_lsn (crash between
    // layer write and metadata update) is removed at load.
    tl.freeze();
    {
        let frozen = tl.layers.read().unwrap().frozen[0].layer.clone();
        tl.write_l0(&frozen).unwrap();
    }
    let again = reload(&tl, &c);
    assert_eq!(again.disk_consistent_lsn(), durable);
    assert_eq!(again.layer_stats().l0_count, tl.layer_stats().l0_count);
    check_reads(&again, &model, &mut rng, durable, 200);
    // The writer continues above the durable LSN.
    put_batch(&again, &mut model, &mut rng, durable + 8);
}

#[test]
fn branches_read_their_parent_below_the_branch_point() {
    let mut rng = StdRng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    let tenant_id = TenantId::generate();
    let parent = create(
        dir.path(),
        (tenant_id, TimelineId::generate()),
        root_metadata(),
        &c,
    );
    let mut model = Model::default();
    let mut lsn = Lsn(0x100);
    for _ in 0..100 {
        lsn += 16;
        put_batch(&parent, &mut model, &mut rng, lsn);
    }
    parent.checkpoint_blocking().unwrap();
    let branch_lsn = lsn;
    let mut m = root_metadata();
    m.ancestor_timeline = Some(parent.timeline_id);
    m.ancestor_lsn = branch_lsn;
    m.disk_consistent_lsn = branch_lsn;
    m.latest_gc_cutoff_lsn = branch_lsn;
    let child = create(dir.path(), (tenant_id, TimelineId::generate()), m, &c);
    child.set_ancestor(parent.clone());
    let mut child_model = model.clone();
    // Both move on independently.
    for _ in 0..100 {
        lsn += 16;
        put_batch(&parent, &mut model, &mut rng, lsn);
        put_batch(&child, &mut child_model, &mut rng, lsn);
    }
    for tl in [&parent, &child] {
        tl.checkpoint_blocking().unwrap();
        tl.compact_blocking(true).unwrap();
    }
    check_reads(&child, &child_model, &mut rng, lsn, 300);
    check_reads(&parent, &model, &mut rng, lsn, 300);
    check_cached_reads(&child, &child_model, &mut rng, lsn);
    check_cached_reads(&parent, &model, &mut rng, lsn);
    // The parent moves on; the branch's cached images do not follow it.
    for _ in 0..20 {
        lsn += 16;
        put_batch(&parent, &mut model, &mut rng, lsn);
    }
    check_cached_reads(&child, &child_model, &mut rng, child.last_record_lsn());
    check_cached_reads(&parent, &model, &mut rng, lsn);
    // GC of the parent keeps what the branch point needs.
    let stats = parent.gc_blocking(|| vec![branch_lsn], Some(0)).unwrap();
    assert!(stats.cutoff > branch_lsn);
    check_reads(&child, &child_model, &mut rng, lsn, 300);
    let child = reload(&child, &c);
    check_reads(&child, &child_model, &mut rng, lsn, 300);
}

/// Reads of every block through the image cache ([`Timeline::get_page_cached`]),
/// at the latest LSN (twice: the second is answered by the cache) and at
/// random readable LSNs, against the model.
fn check_cached_reads(tl: &Timeline, model: &Model, rng: &mut StdRng, upto: Lsn) {
    let cutoff = tl.gc_cutoff_lsn();
    for blk in 0..40 {
        let key = rel_block_key(REL, blk);
        for lsn in [upto, upto, Lsn(rng.gen_range(cutoff.0..=upto.0))] {
            match (tl.get_page_cached(key, lsn), model.get(key, lsn)) {
                (Ok(got), Some(want)) => assert_eq!(&got[..], &want[..], "key {key} at {lsn}"),
                (Err(PageReconstructError::MissingKey { .. }), None) => {}
                (got, want) => panic!("key {key} at {lsn}: got {got:?}, model has {want:?}"),
            }
        }
        if model.get(key, upto).is_some() {
            let cached = tl.cached_page(key, upto).expect("filled by the read above");
            assert_eq!(&cached[..], &model.get(key, upto).unwrap()[..]);
        }
    }
    if cutoff.0 > 0 {
        let err = tl
            .get_page_cached(rel_block_key(REL, 0), cutoff - 1)
            .unwrap_err();
        assert!(
            matches!(err, PageReconstructError::BelowGcCutoff { .. }),
            "{err}"
        );
        assert!(tl.cached_page(rel_block_key(REL, 0), cutoff - 1).is_none());
    }
}

/// The image cache never answers with a stale image: new WAL, flushes,
/// compaction (which rewrites layers and creates images), GC and restarts
/// are interleaved with cached reads at the latest and at older LSNs.
#[test]
fn image_cache_follows_writes_compaction_gc_and_restarts() {
    for seed in 0..2u64 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let dir = tempfile::tempdir().unwrap();
        let c = conf();
        let mut tl = new_root(dir.path(), &c);
        let mut model = Model::default();
        let mut lsn = Lsn(0x100);
        for step in 0..150 {
            lsn += rng.gen_range(1..40) * 8;
            put_batch(&tl, &mut model, &mut rng, lsn);
            match rng.gen_range(0..20) {
                0..=2 => tl.checkpoint_blocking().unwrap(),
                3..=4 => {
                    tl.checkpoint_blocking().unwrap();
                    tl.compact_blocking(true).unwrap();
                }
                5 => {
                    tl.checkpoint_blocking().unwrap();
                    tl.compact_blocking(true).unwrap();
                    tl.gc_blocking(Vec::new, Some(rng.gen_range(0..0x800)))
                        .unwrap();
                }
                6 => {
                    tl.checkpoint_blocking().unwrap();
                    tl = reload(&tl, &c);
                }
                _ => {}
            }
            if step % 3 == 0 {
                check_cached_reads(&tl, &model, &mut rng, lsn);
            }
        }
    }
}

/// Readers at the latest LSN race a writer: every image a cached read
/// returns is the model's value at the LSN it read at, though fills and
/// writes interleave arbitrarily.
#[test]
fn image_cache_reads_racing_ingest_are_never_stale() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    let tl = new_root(dir.path(), &c);
    let model = RwLock::new(Model::default());
    let done = std::sync::atomic::AtomicBool::new(false);
    let blocks = 4;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut lsn = Lsn(0x100);
            for i in 0..3000u32 {
                lsn += 8;
                let key = rel_block_key(REL, i % blocks);
                let v = i.to_le_bytes().repeat(4);
                let mut w = tl.writer();
                w.put(key, lsn, &Value::Image(Bytes::from(v.clone())))
                    .unwrap();
                // In the model before the LSN is published.
                model
                    .write()
                    .unwrap()
                    .versions
                    .entry(key)
                    .or_default()
                    .insert(lsn, v);
                w.finish_write(lsn).unwrap();
                drop(w);
                if i % 500 == 499 {
                    tl.checkpoint_blocking().unwrap();
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        for _ in 0..2 {
            s.spawn(|| {
                let mut rng = StdRng::seed_from_u64(7);
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Acquire) || reads < 1000 {
                    let lsn = tl.last_record_lsn();
                    let key = rel_block_key(REL, rng.gen_range(0..blocks));
                    let got = match tl.get_page_cached(key, lsn) {
                        Ok(v) => Some(v),
                        Err(PageReconstructError::MissingKey { .. }) => None,
                        Err(e) => panic!("{e}"),
                    };
                    let want = model.read().unwrap().get(key, lsn).cloned();
                    assert_eq!(got.as_deref(), want.as_deref(), "key {key} at {lsn}");
                    reads += 1;
                }
            });
        }
    });
}

#[test]
fn writes_are_published_in_lsn_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    let tl = new_root(dir.path(), &c);
    let key = rel_block_key(REL, 1);
    let img = |b: u8| Value::Image(Bytes::from(vec![b; 16]));
    {
        let mut w = tl.writer();
        w.put(key, Lsn(0x20), &img(1)).unwrap();
        // Publishing below a value already put is refused...
        assert!(matches!(
            w.finish_write(Lsn(0x18)),
            Err(super::write::WriteError::FinishBelowPut { .. })
        ));
        assert_eq!(tl.last_record_lsn(), Lsn(0));
        // ...and a writer dropped unpublished publishes what it put.
    }
    assert_eq!(tl.last_record_lsn(), Lsn(0x20));
    assert_eq!(&tl.get_blocking(key, Lsn(0x20)).unwrap()[..], &[1; 16]);
    let mut w = tl.writer();
    assert!(
        w.put(key, Lsn(0x20), &img(2)).is_err(),
        "at or below the last record LSN"
    );
    w.put(key, Lsn(0x28), &img(3)).unwrap();
    w.finish_write(Lsn(0x30)).unwrap();
    drop(w);
    tl.checkpoint_blocking().unwrap();
    assert_eq!(tl.disk_consistent_lsn(), Lsn(0x30));
    assert_eq!(&tl.get_blocking(key, Lsn(0x2f)).unwrap()[..], &[3; 16]);
    assert_eq!(&tl.get_blocking(key, Lsn(0x27)).unwrap()[..], &[1; 16]);
}

/// Commits (as ingest stores them) survive flush, compaction, GC within the
/// retained range, restart, and are found across a branch point; every
/// answer equals a scan of the model.
#[test]
fn lsn_by_timestamp_matches_a_scan() {
    use super::lsn_by_ts::{search, LsnForTimestamp};
    use pageserver_api::commit_ts::LastCommitTs;
    use pageserver_api::key::LAST_COMMIT_TS_KEY;

    let mut rng = StdRng::seed_from_u64(21);
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    let tenant_id = TenantId::generate();
    let mut parent = create(
        dir.path(),
        (tenant_id, TimelineId::generate()),
        root_metadata(),
        &c,
    );
    let mut commits: BTreeMap<Lsn, LastCommitTs> = BTreeMap::new();
    let mut model = Model::default();
    let put_commit =
        |tl: &Timeline, commits: &mut BTreeMap<Lsn, LastCommitTs>, lsn: Lsn, ts: i64| {
            let prev = commits.range(..lsn).next_back().map(|(_, v)| *v);
            let v = LastCommitTs::next(prev, lsn, ts);
            let mut w = tl.writer();
            w.put(
                LAST_COMMIT_TS_KEY,
                lsn,
                &Value::Image(Bytes::copy_from_slice(&v.encode())),
            )
            .unwrap();
            w.finish_write(lsn).unwrap();
            commits.insert(lsn, v);
        };
    let mut lsn = Lsn(0x100);
    let mut ts = 1_000_000i64;
    for i in 0..300 {
        lsn += rng.gen_range(1..40) * 8;
        if i % 3 == 0 {
            put_batch(&parent, &mut model, &mut rng, lsn);
        } else {
            ts += rng.gen_range(-50_000..200_000);
            put_commit(&parent, &mut commits, lsn, ts);
        }
        if i % 50 == 49 {
            parent.checkpoint_blocking().unwrap();
            parent.compact_blocking(true).unwrap();
        }
    }
    parent.checkpoint_blocking().unwrap();
    let branch_lsn = lsn;
    let scan = |commits: &BTreeMap<Lsn, LastCommitTs>, lo: Lsn, hi: Lsn, t: i64| {
        let mut reads = 0;
        let got = search(lo, hi, t, |l: Lsn| {
            reads += 1;
            Ok::<_, ()>(commits.range(..=l).next_back().map(|(_, v)| *v))
        });
        got.unwrap()
    };
    let check =
        |tl: &Timeline, commits: &BTreeMap<Lsn, LastCommitTs>, rng: &mut StdRng, max_ts: i64| {
            let lo = tl.earliest_readable_lsn();
            let hi = tl.last_record_lsn();
            for _ in 0..60 {
                let t = rng.gen_range(0..max_ts + 500_000);
                let got = tl.find_lsn_for_timestamp(t).unwrap();
                assert_eq!(got, scan(commits, lo, hi, t), "ts {t} in {lo}..={hi}");
                if let LsnForTimestamp::Present(l) = got {
                    assert!(l >= lo && l <= hi);
                }
            }
        };
    check(&parent, &commits, &mut rng, ts);
    // A branch sees the parent's commits and adds its own.
    let mut m = root_metadata();
    m.ancestor_timeline = Some(parent.timeline_id);
    m.ancestor_lsn = branch_lsn;
    m.disk_consistent_lsn = branch_lsn;
    m.latest_gc_cutoff_lsn = branch_lsn;
    let child = create(dir.path(), (tenant_id, TimelineId::generate()), m, &c);
    child.set_ancestor(parent.clone());
    assert_eq!(
        child.earliest_readable_lsn(),
        parent.earliest_readable_lsn()
    );
    let mut child_commits = commits.clone();
    let mut child_ts = ts;
    for _ in 0..50 {
        lsn += 64;
        child_ts += rng.gen_range(1..100_000);
        put_commit(&child, &mut child_commits, lsn, child_ts);
    }
    check(&child, &child_commits, &mut rng, child_ts);
    // The parent's history before the branch point is not the child's
    // business: the parent sees only its own commits.
    check(&parent, &commits, &mut rng, ts);
    // GC of the parent raises its cutoff: searches start there, and the
    // branch keeps its own range from the branch point.
    let gc = parent
        .gc_blocking(|| vec![branch_lsn], Some(0x800))
        .unwrap();
    assert!(gc.cutoff > Lsn(0x100));
    assert_eq!(parent.earliest_readable_lsn(), gc.cutoff);
    check(&parent, &commits, &mut rng, ts);
    check(&child, &child_commits, &mut rng, child_ts);
    let first = *commits.values().next().unwrap();
    assert_eq!(
        parent.find_lsn_for_timestamp(first.max_ts - 1).unwrap(),
        LsnForTimestamp::Past(gc.cutoff)
    );
    // A restart reads the same stored values.
    parent = reload(&parent, &c);
    check(&parent, &commits, &mut rng, ts);
    // No commit at all: nodata.
    let empty = create(
        dir.path(),
        (tenant_id, TimelineId::generate()),
        root_metadata(),
        &c,
    );
    put_batch(&empty, &mut model, &mut rng, Lsn(0x40));
    assert_eq!(
        empty.find_lsn_for_timestamp(ts).unwrap(),
        LsnForTimestamp::NoData(Lsn(0x40))
    );
}

/// The logical size kept from ingest's size changes equals the sum of
/// relation sizes computed from storage, before and after it is started.
#[test]
fn incremental_logical_size_matches_a_recount() {
    use crate::walingest::state::IngestState;

    let mut rng = StdRng::seed_from_u64(5);
    let dir = tempfile::tempdir().unwrap();
    let c = conf();
    let tl = new_root(dir.path(), &c);
    let mut state = IngestState::default();
    let mut lsn = Lsn(0x100);
    let step = |state: &mut IngestState, lsn: &mut Lsn, rng: &mut StdRng| {
        *lsn += 8;
        let rel = RelTag {
            dbnode: rng.gen_range(1..3),
            relnode: rng.gen_range(1..6),
            ..REL
        };
        match rng.gen_range(0..10) {
            0..=5 => {
                state.create_rel(&tl, rel).unwrap();
                let n = state.rel_size(&tl, rel).unwrap().unwrap();
                state.set_rel_size(rel, n + rng.gen_range(0..5));
            }
            6 => {
                if let Some(n) = state.rel_size(&tl, rel).unwrap() {
                    state.set_rel_size(rel, n / 2);
                }
            }
            7 | 8 => state.drop_rel(&tl, rel).unwrap(),
            _ => {
                state.drop_db(&tl, rel.spcnode, rel.dbnode).unwrap();
            }
        }
        state.stage_dirs();
        let mut w = tl.writer();
        state.pending.write(&mut w, *lsn).unwrap();
        tl.logical_size_tracker().add_delta(state.take_size_delta());
        w.finish_write(*lsn).unwrap();
    };
    for _ in 0..100 {
        step(&mut state, &mut lsn, &mut rng);
    }
    assert_eq!(tl.current_logical_size(), None, "unknown until computed");
    let initial = tl.init_logical_size_blocking().unwrap();
    assert_eq!(tl.current_logical_size(), Some(initial));
    let mut nonzero = 0;
    for i in 0..300 {
        step(&mut state, &mut lsn, &mut rng);
        if i % 30 == 0 {
            tl.checkpoint_blocking().unwrap();
        }
        let recount = tl.logical_size(tl.last_record_lsn()).unwrap();
        assert_eq!(tl.current_logical_size(), Some(recount), "after step {i}");
        if recount > 0 {
            nonzero += 1;
        }
    }
    assert!(nonzero > 100, "the workload keeps relations around");
}

/// Readers waiting for an LSN wake up when a writer publishes it, whether
/// they start waiting before, during or after the write (a wake-up skipped
/// for want of waiters must never be one a waiter needed): a lost wake-up
/// would leave a waiter to its timeout, as nothing is written after.
#[test]
fn waiters_for_an_lsn_always_wake() {
    let dir = tempfile::tempdir().unwrap();
    let tl = new_root(dir.path(), &conf());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut lsn = Lsn(0x1000);
    for round in 0..2000 {
        let next = lsn + 8;
        let waiter = {
            let tl = tl.clone();
            rt.spawn(async move { tl.wait_lsn(next, std::time::Duration::from_secs(10)).await })
        };
        // Let the waiter get ahead of the write in some rounds, not others.
        for _ in 0..rng.gen_range(0..200) {
            std::hint::spin_loop();
        }
        let mut w = tl.writer();
        w.put(
            rel_block_key(REL, round % 7),
            next,
            &Value::Image(Bytes::from(vec![round as u8; 16])),
        )
        .unwrap();
        w.finish_write(next).unwrap();
        drop(w);
        let woke = rt.block_on(waiter).unwrap();
        assert!(
            woke.is_ok(),
            "round {round}: the waiter for {next} did not wake: {woke:?}"
        );
        lsn = next;
    }
    assert_eq!(tl.last_record_lsn(), lsn);
}

/// With background compaction on, a write that freezes a layer while
/// 2 x `compaction_threshold` L0 layers exist waits (the L0 throttle), and
/// goes on once a compaction merges them, long before the throttle's cap.
/// With it off, nothing would merge them, so nothing waits.
#[test]
fn writers_wait_for_compaction_while_l0_layers_pile_up() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::write::L0_THROTTLE_LIMIT;

    for compaction_on in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let c = conf();
        {
            let mut c = c.write().unwrap();
            c.compaction_threshold = Some(2);
            c.compaction_period = Some(if compaction_on {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            });
        }
        let tl = new_root(dir.path(), &c);
        let mut rng = StdRng::seed_from_u64(5);
        let mut model = Model::default();
        let mut lsn = Lsn(0x100);
        // Four L0 layers: the throttle's limit at a threshold of 2.
        for _ in 0..4 {
            lsn += 8;
            put_batch(&tl, &mut model, &mut rng, lsn);
            tl.checkpoint_blocking().unwrap();
        }
        assert_eq!(tl.l0_count(), 4);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let (tl, done) = (&tl, &done);
            let writer = s.spawn(move || {
                // No flush loop runs: the layer frozen by the last write
                // stays frozen, and the L0 count stays at 4.
                while tl.layers.read().unwrap().frozen.is_empty() {
                    lsn += 8;
                    put_batch(tl, &mut model, &mut rng, lsn);
                }
                done.store(true, Ordering::SeqCst);
            });
            let started = Instant::now();
            if compaction_on {
                while tl.layers.read().unwrap().frozen.is_empty() {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "no layer froze"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(300));
                assert!(
                    !done.load(Ordering::SeqCst),
                    "the write that froze a layer over 4 L0 layers did not wait"
                );
                let compacting = Instant::now();
                let stats = tl.compact_blocking(false).unwrap();
                assert_eq!(stats.l0_merged, 4, "{stats:?}");
                writer.join().unwrap();
                assert!(
                    compacting.elapsed() < L0_THROTTLE_LIMIT / 2,
                    "the writer went on only at the throttle's cap: {:?}",
                    compacting.elapsed()
                );
            } else {
                writer.join().unwrap();
                assert!(
                    started.elapsed() < L0_THROTTLE_LIMIT / 2,
                    "the writer waited with background compaction off: {:?}",
                    started.elapsed()
                );
                assert_eq!(tl.l0_count(), 4, "nothing merged the L0 layers");
            }
            assert!(done.load(Ordering::SeqCst));
        });
    }
}
