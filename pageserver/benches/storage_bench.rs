//! Storage engine benchmark: how fast one timeline takes 8 KiB page images
//! until they are durable and compacted, how much it writes to disk for
//! them, and how long reads take, next to the machine's own sequential
//! write rate measured in the same run.
//!
//! Run with `cargo bench -p pageserver --bench storage_bench`. The temporary
//! directory is created under `$TMPDIR` (default `/tmp`), so point `TMPDIR`
//! at the disk to measure. `BENCH_SCALE` (default `1`) scales the bytes put
//! and the number of distinct blocks (`BENCH_SCALE=0.25` for a quick run);
//! `BENCH_REPEAT` (default `5`) is the number of rounds (see below) whose
//! median is reported. At the defaults a run takes about 20 seconds on two
//! cores.
//!
//! What is measured: one warm-up floor write, then `BENCH_REPEAT` rounds of
//! the three floors, the compression-only rate and one put phase, then
//! reads. Each round's put rate is divided by that round's floors and
//! compression-only rate, and the median of these ratios is reported: on a
//! shared machine the speed drifts within a minute, and rates measured
//! apart would carry the drift into the ratio. A round starts once the last
//! round's deleted files are closed (their page cache freed).
//!
//! 1. **Floor**: a file as large as the put phase, written in 1 MiB chunks
//!    into the same directory, with one fsync at the end; again with an
//!    fsync every 8 MiB; and again with writeback started every 8 MiB
//!    (`sync_file_range`, as the layer writers do every 2 MiB; on the
//!    machines measured, 1 to 16 MiB gave the floor the same rate) and one
//!    fsync at the end, which is the fastest on some machines. The put rate
//!    is shown as a ratio to each and to the fastest of the round. The
//!    warm-up write is shown apart: the first write into a fresh directory
//!    can be several times slower. Each round also measures the CPU's part
//!    of a floor: the put phase's pages compressed as the engine compresses
//!    them, on every core, with no I/O. The engine does that work and more,
//!    so the put rate is shown as a ratio to it too: how close the rest of
//!    the engine (index, checksums, writes, compaction) comes to costing
//!    nothing. The machine's CPU time of the writeback floor and of the
//!    compression-only run is shown too, and the put run's is split into
//!    compression, layer writes (at the floor's CPU per byte) and the rest,
//!    taking compression's and the floor's least CPU over the rounds (what
//!    else runs on the machine only adds to them):
//!    the put phase cannot take less time than that CPU time spread over
//!    every core, which is what binds it on a machine with few cores. The
//!    summary shows both CPU figures as ratios to the fastest floor too:
//!    the compression-only rate, and the put rate that the put run's
//!    machine CPU would allow on every core with no idle time (the most a
//!    put run of that CPU cost can reach).
//! 2. **Put phase** (512 MiB at scale 1): every block of one relation
//!    (20k blocks) is loaded in block order, then random blocks are
//!    overwritten until the total is reached, one page image per WAL record
//!    at increasing LSNs, through [`Timeline::writer`] in batches of
//!    [`BATCH`] records. Pages are half compressible: a header, line
//!    pointers and repeating tuples, then random bytes; they are all made
//!    before the clock starts, as the floor's data is. The timeline's own
//!    flush loop (on a tokio runtime) makes L0 layers at a 64 MiB
//!    `checkpoint_distance`; a second thread runs `compact_blocking(false)`
//!    as the tenant maintenance loop would: on every 200 ms tick when at
//!    least `compaction_threshold` (4 here) L0 layers exist or
//!    `compaction_period` has passed, and at once after a run that left
//!    that many L0 layers behind. Writers wait while 2 x
//!    `compaction_threshold` L0 layers exist (the write path's L0
//!    throttle); the time is shown. The clock stops once a checkpoint, that
//!    thread's last run and a final forced compaction are done. Layer files
//!    created are found by listing the directory every 20 ms (they appear
//!    complete, by rename, and live at least until a compaction ends),
//!    giving the bytes written per byte put; the kernel's count of bytes the
//!    process sent to storage (`/proc/self/io`), the process CPU time and
//!    the whole machine's (`/proc/stat`: kernel writeback threads too) are
//!    shown beside.
//! 3. **Reads** with `get_blocking`, one key at a time, each value checked:
//!    20k random blocks at the last LSN and 20k at random LSNs in the first
//!    half of the history (a block among those written by then), on the
//!    last put run's compacted timeline. Then the put phase runs once more on
//!    a fresh timeline with `compaction_period` 0 (no compaction, no
//!    throttle; its rate is shown too) and the same reads run over its L0
//!    layers only.
//!
//! Figures are printed, never checked: they depend on the machine (STYLE.md
//! point 12). Rates are MiB/s (2^20 bytes per second).

mod common;

/// The page server's allocator (see `main.rs`): the engine is measured as
/// it runs there.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use common::{env_or, write_floor, FloorSync, Spread};

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pageserver::metrics::INGEST_THROTTLE_SECONDS;
use pageserver::tenant::storage_layer::layer_file::ZSTD_LEVEL;
use pageserver::tenant::storage_layer::LayerName;
use pageserver::tenant::timeline::compaction::CompactionStats;
use pageserver::tenant::timeline::{dir_size, SharedTenantConf, Timeline};
use pageserver_api::key::{rel_block_key, Key, RelTag};
use pageserver_api::tenant_config::TenantConfig;
use pageserver_api::value::Value;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use utils::lsn::Lsn;

/// Page size.
const PAGE: usize = 8192;
const MIB: f64 = (1 << 20) as f64;
/// Bytes of page images put at scale 1.
const BASE_BYTES: f64 = (512u64 << 20) as f64;
/// Distinct blocks at scale 1.
const BASE_BLOCKS: f64 = 20_000.0;
/// Reads per latency measurement.
const READS: usize = 20_000;
const CHECKPOINT_DISTANCE: u64 = 64 << 20;
/// L0 layers that make the maintenance loop compact (the default is 10,
/// which 512 MiB at 64 MiB per layer would never reach).
const COMPACTION_THRESHOLD: u64 = 4;
/// Tick of the tenant maintenance loop.
const MAINTENANCE_TICK: Duration = Duration::from_millis(200);
/// LSN advance per page: an 8 KiB full-page image plus a record header.
const LSN_STEP: u64 = 8224;
const START_LSN: u64 = 0x0100_0000;
/// WAL records put per writer (write lock) acquisition.
const BATCH: usize = 64;
/// Distinct page bodies; each put's page is a copy of one, stamped.
const POOL: usize = 512;
const REL: RelTag = RelTag {
    spcnode: 1663,
    dbnode: 5,
    relnode: 16384,
    forknum: 0,
};

/// Which block each put writes, and every block's put indexes.
struct Workload {
    order: Vec<u32>,
    versions: Vec<Vec<u32>>,
}

impl Workload {
    fn new(puts: usize, blocks: u32, rng: &mut StdRng) -> Workload {
        let mut order: Vec<u32> = (0..blocks).collect();
        while order.len() < puts {
            order.push(rng.gen_range(0..blocks));
        }
        order.truncate(puts);
        let mut versions = vec![Vec::new(); blocks as usize];
        for (i, b) in order.iter().enumerate() {
            versions[*b as usize].push(i as u32);
        }
        Workload { order, versions }
    }

    fn blocks(&self) -> u32 {
        self.versions.len() as u32
    }

    fn bytes(&self) -> u64 {
        (self.order.len() * PAGE) as u64
    }
}

fn lsn_of(put: usize) -> Lsn {
    Lsn(START_LSN + (put as u64 + 1) * LSN_STEP)
}

/// Page bodies: 24-byte header (stamped per put), line pointers and
/// repeating tuples up to half the page, random bytes after.
fn page_pool(rng: &mut StdRng) -> Vec<Vec<u8>> {
    (0..POOL)
        .map(|p| {
            let mut page = vec![0u8; PAGE];
            let tuples = 40;
            for t in 0..tuples {
                let lp = (0x1000 + t * 52) as u32 | (52 << 17);
                page[24 + t * 4..28 + t * 4].copy_from_slice(&lp.to_le_bytes());
            }
            let mut tuple = [0u8; 52];
            tuple[0..4].copy_from_slice(&(1000 + p as u32).to_le_bytes());
            tuple[18..20].copy_from_slice(&4u16.to_le_bytes());
            for (i, chunk) in page[24 + tuples * 4..PAGE / 2].chunks_mut(52).enumerate() {
                tuple[24..28].copy_from_slice(&(i as u32).to_le_bytes());
                chunk.copy_from_slice(&tuple[..chunk.len()]);
            }
            rng.fill_bytes(&mut page[PAGE / 2..]);
            page
        })
        .collect()
}

/// Every put's page, made before any clock starts (as the floor's data
/// is): a pool body stamped with the put's LSN and block.
fn all_pages(w: &Workload, pool: &[Vec<u8>]) -> Vec<Bytes> {
    w.order
        .iter()
        .enumerate()
        .map(|(put, block)| {
            let mut p = pool[put % POOL].clone();
            p[0..8].copy_from_slice(&lsn_of(put).0.to_le_bytes());
            p[8..12].copy_from_slice(&block.to_le_bytes());
            Bytes::from(p)
        })
        .collect()
}

fn conf(compaction: bool) -> SharedTenantConf {
    let mut c = TenantConfig::builtin_defaults();
    c.checkpoint_distance = Some(CHECKPOINT_DISTANCE);
    c.compaction_threshold = Some(COMPACTION_THRESHOLD);
    if !compaction {
        // A zero period turns background compaction, and with it the L0
        // ingest throttle, off.
        c.compaction_period = Some(Duration::ZERO);
    }
    Arc::new(RwLock::new(c))
}

fn create_timeline(dir: &Path, conf: SharedTenantConf) -> Arc<Timeline> {
    Timeline::create_standalone(dir, Lsn(START_LSN), conf).expect("create timeline directory")
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

/// Writes `bytes` in 1 MiB chunks, made durable as `sync` says; returns
/// MiB/s.
fn floor(dir: &Path, bytes: u64, sync: FloorSync, pool: &[Vec<u8>]) -> f64 {
    let chunk: Vec<u8> = pool.iter().flatten().copied().take(1 << 20).collect();
    rate(bytes, write_floor(dir, bytes, sync, &chunk))
}

/// Runs `f`, and measures the whole machine's CPU time meanwhile (kernel
/// writeback threads included): what a floor or the compression-only run
/// costs in CPU, next to the put run's.
fn machine_cpu_of<T>(f: impl FnOnce() -> T) -> (T, Option<Duration>) {
    let before = machine_cpu();
    let value = f();
    let spent = before.zip(machine_cpu()).map(|(b, a)| a.saturating_sub(b));
    (value, spent)
}

/// The CPU's part of the floor: how fast the put phase's pages are
/// compressed as the engine compresses them (zstd at [`ZSTD_LEVEL`], one
/// context per thread), on every core and with no I/O, in MiB/s of pages.
/// The engine must do this much and more, so it bounds the put rate from
/// above whatever the disk's speed.
fn compression_only(pages: &[Bytes]) -> f64 {
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let share = pages.len().div_ceil(threads).max(1);
    let started = Instant::now();
    let stored: usize = thread::scope(|s| {
        let workers: Vec<_> = pages
            .chunks(share)
            .map(|part| {
                s.spawn(move || {
                    let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd context");
                    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(PAGE));
                    part.iter()
                        .map(|page| {
                            out.clear();
                            zstd.compress_to_buffer(page, &mut out)
                                .expect("compress page")
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("compressing thread"))
            .sum()
    });
    let elapsed = started.elapsed();
    // Used, so that the work is not optimized away.
    assert!(stored > 0, "pages compress to something");
    rate((pages.len() * PAGE) as u64, elapsed)
}

/// `write_bytes - cancelled_write_bytes` of this process, if the kernel
/// reports it.
fn process_disk_writes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| -> Option<i64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    Some((field("write_bytes:")? - field("cancelled_write_bytes:")?).max(0) as u64)
}

/// User + system CPU time of the whole process so far (all threads), from
/// `/proc/self/stat` (in USER_HZ = 100 ticks per second).
fn process_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Busy CPU time of the whole machine so far (user, nice, system, irq and
/// softirq of every core), from `/proc/stat` (in USER_HZ = 100 ticks per
/// second).
fn machine_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let ticks: u64 = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum();
    Some(Duration::from_millis(ticks * 10))
}

/// Records every layer file in `path` with its size (layer files appear
/// complete, by rename, and never change).
fn scan_layers(path: &Path, seen: &mut HashMap<String, u64>) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if seen.contains_key(&name) || name.parse::<LayerName>().is_err() {
            continue;
        }
        if let Ok(md) = entry.metadata() {
            seen.insert(name, md.len());
        }
    }
}

/// Created layer files: (L0, L1, image) bytes.
fn created_bytes(seen: &HashMap<String, u64>) -> (u64, u64, u64) {
    let mut by_level = (0, 0, 0);
    for (name, size) in seen {
        let n: LayerName = name.parse().expect("scanned names parse");
        if !n.is_delta {
            by_level.2 += size;
        } else if n.key_range == (Key::MIN..Key::MAX) {
            by_level.0 += size;
        } else {
            by_level.1 += size;
        }
    }
    by_level
}

/// What the compaction thread did.
#[derive(Default)]
struct CompactionTotals {
    runs: usize,
    busy: Duration,
    l0_merged: usize,
    l1_written: usize,
    images_written: usize,
}

impl CompactionTotals {
    fn add(&mut self, s: &CompactionStats, busy: Duration) {
        self.runs += 1;
        self.busy += busy;
        self.l0_merged += s.l0_merged;
        self.l1_written += s.l1_written;
        self.images_written += s.images_written;
    }
}

/// The maintenance loop's compaction rule, in a thread, until `stop` says
/// so (or is dropped): it wakes at once, not at its next tick. As there, a
/// run that leaves `compaction_threshold` L0 layers behind (they piled up
/// while it ran) is followed by the next at once, not a tick later.
fn compaction_loop(tl: &Timeline, stop: &Receiver<()>) -> CompactionTotals {
    let mut totals = CompactionTotals::default();
    let conf = tl.tenant_conf();
    let threshold = conf.compaction_threshold.unwrap_or(10) as usize;
    let period = conf.compaction_period.unwrap_or_default();
    let mut since = Duration::ZERO;
    let mut last_pass = Instant::now();
    let mut behind = false;
    loop {
        let pause = if behind {
            Duration::ZERO
        } else {
            MAINTENANCE_TICK
        };
        match stop.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return totals,
        }
        since += last_pass.elapsed();
        last_pass = Instant::now();
        behind = false;
        if !period.is_zero() && (since >= period || tl.l0_count() >= threshold) {
            let started = Instant::now();
            let s = tl.compact_blocking(false).expect("background compaction");
            totals.add(&s, started.elapsed());
            behind = s.l0_merged > 0 && tl.l0_count() >= threshold;
        }
        if since >= period {
            since = Duration::ZERO;
        }
    }
}

/// Puts every page of the workload, `BATCH` records per writer.
fn put_all(tl: &Timeline, w: &Workload, pages: &[Bytes]) {
    for first in (0..w.order.len()).step_by(BATCH) {
        let mut writer = tl.writer();
        let last = (first + BATCH).min(w.order.len());
        for (i, page) in pages.iter().enumerate().take(last).skip(first) {
            let block = w.order[i];
            let lsn = lsn_of(i);
            let value = Value::Image(page.clone());
            writer
                .put(rel_block_key(REL, block), lsn, &value)
                .expect("put");
            writer.finish_write(lsn).expect("finish_write");
        }
    }
}

/// Timings and byte counts of one put phase.
struct Ingest {
    tl: Arc<Timeline>,
    /// Puts returned (values in memory or ephemeral files).
    put: Duration,
    /// Checkpoint done: everything durable.
    durable: Duration,
    /// Compaction thread stopped and final compaction done.
    compacted: Duration,
    compaction: CompactionTotals,
    final_compaction: CompactionStats,
    layers_created: (u64, u64, u64),
    process_writes: Option<u64>,
    /// CPU time of the process from the first put to `compacted`.
    cpu: Option<Duration>,
    /// CPU time of the whole machine meanwhile: the process, the kernel's
    /// writeback and extent conversion threads, and anything else running.
    machine_cpu: Option<Duration>,
    /// Seconds writers waited for compaction (L0 ingest throttle).
    throttled: f64,
}

/// Runs a put phase on a new timeline in `dir`: with the compaction
/// thread and a final compaction, or without any compaction.
fn ingest(dir: &Path, w: &Workload, pages: &[Bytes], compaction: bool) -> Ingest {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tl = create_timeline(dir, conf(compaction));
    {
        let _enter = rt.enter();
        tl.spawn_background();
    }
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop_sampler = AtomicBool::new(false);
    let writes_before = process_disk_writes();
    let cpu_before = process_cpu();
    let machine_before = machine_cpu();
    let throttled_before = INGEST_THROTTLE_SECONDS.get();
    let started = Instant::now();
    let (put, durable, compacted, totals, final_stats, seen) = thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut seen = HashMap::new();
            while !stop_sampler.load(Ordering::Relaxed) {
                scan_layers(tl.path(), &mut seen);
                thread::sleep(Duration::from_millis(20));
            }
            scan_layers(tl.path(), &mut seen);
            seen
        });
        let tl_ref = &tl;
        let compactor = compaction.then(|| s.spawn(move || compaction_loop(tl_ref, &stop_rx)));
        put_all(&tl, w, pages);
        let put = started.elapsed();
        tl.checkpoint_blocking().expect("checkpoint");
        let durable = started.elapsed();
        // The thread may have returned already (it never does on its own).
        let _ = stop.send(());
        let totals = compactor
            .map(|c| c.join().expect("compaction thread"))
            .unwrap_or_default();
        let final_stats = if compaction {
            tl.compact_blocking(true).expect("final compaction")
        } else {
            CompactionStats::default()
        };
        let compacted = started.elapsed();
        stop_sampler.store(true, Ordering::Relaxed);
        let seen = sampler.join().expect("sampler thread");
        (put, durable, compacted, totals, final_stats, seen)
    });
    let process_writes = writes_before
        .zip(process_disk_writes())
        .map(|(b, a)| a.saturating_sub(b));
    let cpu = cpu_before
        .zip(process_cpu())
        .map(|(b, a)| a.saturating_sub(b));
    let machine_cpu = machine_before
        .zip(machine_cpu())
        .map(|(b, a)| a.saturating_sub(b));
    rt.block_on(tl.shutdown(false));
    Ingest {
        tl,
        put,
        durable,
        compacted,
        compaction: totals,
        final_compaction: final_stats,
        layers_created: created_bytes(&seen),
        process_writes,
        cpu,
        machine_cpu,
        throttled: INGEST_THROTTLE_SECONDS.get() - throttled_before,
    }
}

/// p50, p99 and max in microseconds.
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            self.p50, self.p99, self.max
        )
    }
}

/// `READS` gets of random blocks, at the last LSN (`old == false`) or at a
/// random LSN in the first half of the history; each value is checked.
fn read_latency(tl: &Timeline, w: &Workload, old: bool, rng: &mut StdRng) -> Latency {
    let puts = w.order.len();
    let mut micros: Vec<f64> = (0..READS)
        .map(|_| {
            let (at, block) = if old {
                let at = rng.gen_range(0..puts / 2);
                let block = rng.gen_range(0..=(at as u32).min(w.blocks() - 1));
                (at, block)
            } else {
                (puts - 1, rng.gen_range(0..w.blocks()))
            };
            let versions = &w.versions[block as usize];
            let want = versions[versions.partition_point(|v| *v as usize <= at) - 1];
            let lsn = lsn_of(at);
            let started = Instant::now();
            let got = tl
                .get_blocking(rel_block_key(REL, block), lsn)
                .expect("get_blocking");
            let elapsed = started.elapsed();
            let header = (&got[0..8], &got[8..12]);
            let expected = (
                &lsn_of(want as usize).0.to_le_bytes()[..],
                &block.to_le_bytes()[..],
            );
            assert_eq!(header, expected, "wrong page for block {block} at {lsn}");
            elapsed.as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    let pick = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    Latency {
        p50: pick(0.5),
        p99: pick(0.99),
        max: pick(1.0),
    }
}

/// Waits until the deferred-drop thread has dropped everything queued so
/// far (it drops in order): closing deleted layer files frees their page
/// cache there, work that must not overlap a floor measurement.
fn wait_for_deferred_drops() {
    struct Signal(std::sync::mpsc::Sender<()>);
    impl Drop for Signal {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    utils::deferred_drop::drop_in_background(Signal(tx));
    rx.recv_timeout(Duration::from_secs(60))
        .expect("deferred drops done within a minute");
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:7.1} MiB/s (min {:.1}, max {:.1})",
            self.median, self.min, self.max
        )
    }
}

/// The process's CPU seconds, and the machine's, as text ("n/a" where
/// unknown).
fn cpu_text(r: &Ingest) -> String {
    format!(
        "{} (machine {})",
        secs_text(r.cpu),
        secs_text(r.machine_cpu)
    )
}

/// Seconds as text, "n/a" when unknown.
fn secs_text(c: Option<Duration>) -> String {
    c.map_or("n/a".to_string(), |c| format!("{:.2} s", c.as_secs_f64()))
}

/// Prints one put run with compaction; returns (MiB/s, layer bytes per put).
fn report_run(run: usize, r: &Ingest, logical: u64) -> (f64, f64) {
    let c = &r.compaction;
    let (l0, l1, img) = r.layers_created;
    let wa = (l0 + l1 + img) as f64 / logical as f64;
    let proc_wa = r.process_writes.map_or("n/a".to_string(), |b| {
        format!("{:.2}", b as f64 / logical as f64)
    });
    println!(
        "put run {run}: {:.1} MiB/s: puts {:.2} s (throttled {:.1} s), durable {:.2} s, compacted {:.2} s, CPU {}; compaction thread {} runs {:.2} s ({} L0 -> {} L1, {} image), final {} L0 {:.2} s",
        rate(logical, r.compacted),
        r.put.as_secs_f64(),
        r.throttled,
        r.durable.as_secs_f64(),
        r.compacted.as_secs_f64(),
        cpu_text(r),
        c.runs,
        c.busy.as_secs_f64(),
        c.l0_merged,
        c.l1_written,
        c.images_written,
        r.final_compaction.l0_merged,
        r.final_compaction.elapsed_secs,
    );
    println!(
        "  layer files written L0 {:.0} + L1 {:.0} + image {:.0} MiB = {wa:.2} x put bytes (/proc/self/io: {proc_wa} x); live after compaction {:.0} MiB",
        mib(l0),
        mib(l1),
        mib(img),
        mib(dir_size(r.tl.path()).expect("timeline dir size")),
    );
    (rate(logical, r.compacted), wa)
}

fn main() {
    let scale: f64 = env_or("BENCH_SCALE", 1.0);
    let repeat: usize = env_or("BENCH_REPEAT", 5usize).max(1);
    let run_started = Instant::now();
    let mut rng = StdRng::seed_from_u64(42);
    let blocks = ((BASE_BLOCKS * scale) as u32).max(64);
    let puts = ((BASE_BYTES * scale) as usize / PAGE).max(blocks as usize * 2);
    let w = Workload::new(puts, blocks, &mut rng);
    let pool = page_pool(&mut rng);
    let compressed: usize = pool
        .iter()
        .map(|p| zstd::bulk::compress(p, ZSTD_LEVEL).expect("zstd").len())
        .sum();
    let dir = tempfile::tempdir().expect("temp dir");
    let logical = w.bytes();
    println!(
        "storage_bench: scale {scale}, {repeat} rounds of floors and put, dir {}",
        dir.path().display()
    );
    println!(
        "workload: {puts} page images of {PAGE} B = {:.0} MiB over {blocks} blocks ({:.1} versions each), size ratio {:.2} at zstd level {ZSTD_LEVEL} (the engine's); checkpoint_distance {} MiB, compaction_threshold {COMPACTION_THRESHOLD}, other settings built-in defaults; compaction in a second thread by the maintenance loop's rule (200 ms tick, none after a run that left the threshold behind)",
        mib(logical),
        puts as f64 / blocks as f64,
        compressed as f64 / (POOL * PAGE) as f64,
        CHECKPOINT_DISTANCE >> 20
    );

    // The first write into the fresh directory is slower on some machines
    // (allocation, host cache): shown, not counted.
    let warm_up = floor(dir.path(), logical, FloorSync::AtEnd, &pool);
    println!("floor warm-up write (not counted): {warm_up:.1} MiB/s");
    let pages = all_pages(&w, &pool);
    // Rounds of the three floors, the compression-only rate and one put
    // run, so that each put run has its references measured seconds before
    // it: on a shared machine the speed drifts within a minute, and a ratio
    // of rates measured apart would carry the drift.
    let (mut at_end, mut every_8m, mut writeback) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rates, mut was, mut zstd_only) = (Vec::new(), Vec::new(), Vec::new());
    // Per round: the put run's machine CPU seconds and its layer bytes over
    // the bytes put; the compression-only run's and the writeback floor's
    // machine CPU seconds.
    let mut put_cpu: Vec<(f64, f64)> = Vec::new();
    let (mut zstd_cpu_s, mut floor_cpu) = (Vec::new(), Vec::new());
    let mut last = None;
    for run in 1..=repeat {
        // No page cache of the last run's deleted files is still being freed.
        wait_for_deferred_drops();
        at_end.push(floor(dir.path(), logical, FloorSync::AtEnd, &pool));
        every_8m.push(floor(dir.path(), logical, FloorSync::Every(8 << 20), &pool));
        let (wb_rate, wb_cpu) =
            machine_cpu_of(|| floor(dir.path(), logical, FloorSync::Writeback(8 << 20), &pool));
        writeback.push(wb_rate);
        let (zstd_rate, zstd_cpu) = machine_cpu_of(|| compression_only(&pages));
        zstd_only.push(zstd_rate);
        println!(
            "round {run} floors: fsync at end {:.1}, fsync every 8 MiB {:.1}, writeback every 8 MiB {:.1} MiB/s (machine CPU {}); compression only {:.1} MiB/s (machine CPU {})",
            at_end[run - 1],
            every_8m[run - 1],
            wb_rate,
            secs_text(wb_cpu),
            zstd_rate,
            secs_text(zstd_cpu)
        );
        let r = ingest(dir.path(), &w, &pages, true);
        let (put_rate, wa) = report_run(run, &r, logical);
        if let (Some(put), Some(z), Some(f)) = (r.machine_cpu, zstd_cpu, wb_cpu) {
            put_cpu.push((put.as_secs_f64(), wa));
            zstd_cpu_s.push(z.as_secs_f64());
            floor_cpu.push(f.as_secs_f64());
        }
        rates.push(put_rate);
        was.push(wa);
        if let Some(prev) = last.replace(r) {
            let path = prev.tl.path().to_path_buf();
            drop(prev);
            std::fs::remove_dir_all(path).expect("remove timeline");
        }
    }
    // The machine's CPU of each put run beyond compressing its pages and
    // writing its layer bytes at the floor's cost per byte: what the rest
    // of the engine costs. Compression and the floor cost their least over
    // the rounds: anything else busy on the machine only adds to them.
    let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (z, f) = (least(&zstd_cpu_s), least(&floor_cpu));
    let mut cpu_split: Vec<[f64; 4]> = put_cpu
        .iter()
        .map(|&(put, wa)| [put, z, wa * f, put - z - wa * f])
        .collect();
    // Rates over other rates of the same rounds, round by round.
    let per_round = |nums: &[f64], dens: &[f64]| {
        Spread::of(nums.iter().zip(dens).map(|(n, d)| n / d).collect())
    };
    // Each round's put rate over its own floors and compression-only rate.
    let ratios = |floors: &[f64]| per_round(&rates, floors);
    let fastest: Vec<f64> = (0..repeat)
        .map(|i| at_end[i].max(every_8m[i]).max(writeback[i]))
        .collect();
    let (ratio_end, ratio_8m) = (ratios(&at_end), ratios(&every_8m));
    let (ratio_wb, ratio_fastest) = (ratios(&writeback), ratios(&fastest));
    let ratio_zstd = ratios(&zstd_only);
    // Each round's compression-only rate and CPU bound over its fastest floor.
    let over_fastest = |nums: &[f64]| per_round(nums, &fastest);
    let zstd_over_fastest = over_fastest(&zstd_only);
    // Per round: the put rate the put run's machine CPU allows at best,
    // spread over every core with no idle time.
    let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let bound_over_fastest = (cpu_split.len() == repeat).then(|| {
        let cpu_bound: Vec<f64> = cpu_split
            .iter()
            .map(|[put, ..]| mib(logical) / (put / cores))
            .collect();
        over_fastest(&cpu_bound)
    });
    let (floor_end, floor_8m) = (Spread::of(at_end), Spread::of(every_8m));
    let floor_wb = Spread::of(writeback);
    let zstd_floor = Spread::of(zstd_only);
    let put = Spread::of(rates);
    let wa = Spread::of(was).median;
    let main = last.expect("at least one run");
    let latest = read_latency(&main.tl, &w, false, &mut rng);
    let old = read_latency(&main.tl, &w, true, &mut rng);
    let stats = main.tl.layer_stats();
    println!(
        "get after compaction ({} L0, {} L1, {} image layers): latest {latest}; old {old}",
        stats.l0_count, stats.l1_count, stats.image_count
    );
    let main_path = main.tl.path().to_path_buf();
    drop(main);
    std::fs::remove_dir_all(&main_path).expect("remove timeline");

    let l0_run = ingest(dir.path(), &w, &pages, false);
    let l0_rate = rate(logical, l0_run.durable);
    let l0_latest = read_latency(&l0_run.tl, &w, false, &mut rng);
    let l0_old = read_latency(&l0_run.tl, &w, true, &mut rng);
    println!(
        "no compaction: durable after {:.2} s ({l0_rate:.1} MiB/s, CPU {}); get over {} L0 layers only: latest {l0_latest}; old {l0_old}",
        l0_run.durable.as_secs_f64(),
        cpu_text(&l0_run),
        l0_run.tl.l0_count()
    );

    println!();
    println!(
        "=== storage_bench summary: {:.0} MiB of 8 KiB pages, {blocks} blocks, median of {repeat} rounds ===",
        mib(logical)
    );
    println!("floor, fsync at end              {floor_end}");
    println!("floor, fsync every 8 MiB         {floor_8m}");
    println!("floor, writeback every 8 MiB     {floor_wb}");
    println!("put, durable + compacted         {put}");
    // Judged against the machine's best way to write, round by round.
    println!(
        "put/fastest floor                {}",
        ratio_fastest.show(2, "x")
    );
    println!(
        "put/floor (fsync at end)         {}",
        ratio_end.show(2, "x")
    );
    println!("put/floor (fsync every 8 MiB)    {}", ratio_8m.show(2, "x"));
    println!(
        "put/floor (writeback every 8 MiB) {}",
        ratio_wb.show(2, "x")
    );
    println!("compression only, all cores      {zstd_floor}");
    println!(
        "put/compression only             {}",
        ratio_zstd.show(2, "x")
    );
    // How fast the CPU alone lets the engine go, next to the disk: the
    // compression of the pages on every core, and the put run's machine
    // CPU spread over every core without idle time.
    println!(
        "compression only/fastest floor   {}",
        zstd_over_fastest.show(2, "x")
    );
    if let Some(bound) = bound_over_fastest {
        println!(
            "put CPU bound/fastest floor      {} (put run's machine CPU over {cores} cores)",
            bound.show(2, "x")
        );
    }
    if cpu_split.len() == repeat {
        // The round of the median total, so that its parts add up to it.
        cpu_split.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let [total, zstd, writes, rest] = cpu_split[cpu_split.len() / 2];
        println!(
            "machine CPU of a put run         {total:7.2} s = compression {zstd:.2} s + layer writes {writes:.2} s (both at their least CPU over the rounds; writes at the writeback floor's per byte) + rest of the engine {rest:.2} s (the round of the median total)"
        );
    }
    println!("put, no compaction, durable      {l0_rate:7.1} MiB/s (one run)");
    println!("layer bytes written / put bytes  {wa:7.2}");
    println!("get latest, compacted            {latest}");
    println!("get old, compacted               {old}");
    println!("get latest, L0 only              {l0_latest}");
    println!("get old, L0 only                 {l0_old}");
    println!(
        "run time                         {:7.1} s",
        run_started.elapsed().as_secs_f64()
    );
}
