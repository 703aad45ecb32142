//! WAL ingest benchmark: how fast real PostgreSQL 15 WAL goes from a WAL
//! file on disk, through [`WalStreamDecoder`] and
//! [`WalIngest::ingest_record`], into durable layer files of a fresh
//! timeline, next to how fast the machine reads and writes the same bytes.
//!
//! Run with `cargo bench -p pageserver --bench ingest_bench`. The temporary
//! directory is created under `$TMPDIR` (default `/tmp`), so point `TMPDIR`
//! at the disk to measure. `BENCH_REPEAT` (default `30`) is the number of
//! runs of each measurement whose median is reported; `BENCH_WAL` (default
//! `default`) picks the fixture variant (`checksums`, `pglz`, `lz4`,
//! `zstd`). At the defaults a run takes about two seconds on two cores.
//!
//! The input is the golden WAL of `libs/postgres_ffi/testdata/wal_<variant>`
//! (see its README.md): consecutive 16 MiB segments written by a real
//! PostgreSQL 15 with `wal_consistency_checking = 'all'`, so every block
//! reference carries a full page image. The segments are decompressed and
//! written, from the start of the first segment to the end of the WAL page
//! holding the end of the WAL, into one file in the temporary directory,
//! which is fsynced. Decoding starts at the first record of the captured
//! range (`range.txt`). The file is a few MiB of records, plus the unused
//! rest of a segment after an `XLOG_SWITCH` (zeros that the decoder skips
//! without looking at them); "WAL bytes" below means the LSN range that
//! holds records and page headers, without that skipped part, and WAL rates
//! are in those bytes. One run is short, so each measurement is repeated
//! on fresh state and the median, minimum and maximum are shown.
//!
//! What is measured, in order:
//!
//! 1. **Read**: the whole WAL file read in 1 MiB chunks. Nothing is dropped
//!    from the page cache first (that needs root), so this is a read from
//!    memory: the file was just written.
//! 2. **Floor**: a file as large as the WAL file written in 1 MiB chunks into
//!    the same directory with one fsync at the end, as in `storage_bench`.
//!    One warm-up write comes first and is shown apart.
//! 3. **Decode only**: the WAL file read in 1 MiB chunks and every record
//!    decoded ([`WalStreamDecoder::poll_decode_record`]), nothing stored.
//! 4. **Ingest, end to end**: a fresh, empty timeline (no import: ingest
//!    creates relations, CLOG pages and directories as records arrive) with
//!    its flush loop running on a tokio runtime, built-in default tenant
//!    settings; the clock runs from opening the WAL file, through reading,
//!    decoding and [`WalIngest::ingest_record`] for every record (one
//!    [`Timeline::writer`] per 1 MiB chunk, as the walreceiver takes one per
//!    message), to the end of [`Timeline::checkpoint_blocking`], when
//!    everything is in flushed layer files. The time inside `ingest_record`
//!    and the checkpoint time are shown apart. A record that fails to ingest
//!    is reported with its LSN and the error (the ingest state is then reset
//!    and the next record follows, so the figures still cover the whole
//!    WAL).
//!
//! Figures are printed, never checked: they depend on the machine (STYLE.md
//! point 12). Rates are MiB/s (2^20 bytes per second).

mod common;

use common::{env_or, write_floor, FloorSync, Spread};

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pageserver::tenant::timeline::{dir_size, SharedTenantConf, Timeline};
use pageserver::walingest::records::rmgr_name;
use pageserver::walingest::WalIngest;
use pageserver_api::tenant_config::TenantConfig;
use postgres_ffi::waldecoder::WalStreamDecoder;
use postgres_ffi::walrecord::{decode_wal_record, DecodedWALRecord, WalDecodeError};
use postgres_ffi::xlog_utils::{parse_xlog_file_name, WAL_SEGMENT_SIZE, XLOG_BLCKSZ};
use utils::lsn::Lsn;

const MIB: f64 = (1 << 20) as f64;
/// Read and write chunk.
const CHUNK: usize = 1 << 20;
const SEG: u64 = WAL_SEGMENT_SIZE as u64;
const WAL_FILE: &str = "wal.bin";

/// The WAL file and what is in it.
struct WalInput {
    path: PathBuf,
    /// LSN of the file's first byte (a segment start).
    base: Lsn,
    /// First record of the captured range: where decoding starts.
    first_record: Lsn,
    /// End of the WAL (where zeros start).
    end: Lsn,
    /// Size of the file.
    file_bytes: u64,
    segments: usize,
}

/// What one decode pass found.
#[derive(Default)]
struct Survey {
    records: usize,
    /// Sum of the records' lengths (`xl_tot_len`).
    record_bytes: u64,
    /// Unused rest of segments after `XLOG_SWITCH` records.
    switch_skipped: u64,
    blocks: usize,
    images: usize,
    end_of_wal: Option<Lsn>,
}

fn fixture_dir(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../libs/postgres_ffi/testdata")
        .join(format!("wal_{variant}"))
}

/// Decompresses the variant's segments into one fsynced file in `dir`.
fn write_wal_file(dir: &Path, variant: &str) -> WalInput {
    let fx = fixture_dir(variant);
    let range = std::fs::read_to_string(fx.join("range.txt"))
        .unwrap_or_else(|e| panic!("cannot read {}/range.txt: {e}", fx.display()));
    let (first, end) = range.trim().split_once(' ').expect("range.txt: START END");
    let first_record: Lsn = first.parse().expect("range.txt: start LSN");
    let end: Lsn = end.parse().expect("range.txt: end LSN");
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(&fx)
        .expect("fixture directory")
        .map(|e| e.expect("fixture directory entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".zst")?.to_string();
            let (_, segno) = parse_xlog_file_name(&name, WAL_SEGMENT_SIZE)?;
            Some((segno, p))
        })
        .collect();
    segments.sort();
    assert!(!segments.is_empty(), "no segments in {}", fx.display());
    let base = Lsn(segments[0].0 * SEG);
    let mut wal = Vec::with_capacity(segments.len() * WAL_SEGMENT_SIZE);
    for (i, (segno, path)) in segments.iter().enumerate() {
        assert_eq!(*segno, segments[0].0 + i as u64, "segments are consecutive");
        let file = File::open(path).expect("open segment");
        wal.extend_from_slice(&zstd::decode_all(file).expect("decompress segment"));
    }
    // Up to the end of the page holding the end of the WAL: the decoder
    // sees the zeros after the last record and stops there.
    let page = XLOG_BLCKSZ as u64;
    let cut = ((end.0 - base.0).div_ceil(page) * page).min(wal.len() as u64);
    wal.truncate(cut as usize);
    let path = dir.join(WAL_FILE);
    let mut f = File::create(&path).expect("create WAL file");
    f.write_all(&wal).expect("write WAL file");
    f.sync_all().expect("fsync WAL file");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
    WalInput {
        path,
        base,
        first_record,
        end,
        file_bytes: wal.len() as u64,
        segments: segments.len(),
    }
}

/// Opens the WAL file at the first record.
fn open_at_first_record(input: &WalInput) -> File {
    let mut f = File::open(&input.path).expect("open WAL file");
    f.seek(SeekFrom::Start(input.first_record.0 - input.base.0))
        .expect("seek WAL file");
    f
}

/// Reads the next chunk into `buf`; returns the byte count (0 at the end).
fn read_chunk(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).expect("read WAL file") {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Where the WAL ends, from the decoder's error; panics on anything but the
/// end of the WAL (the fixture is known good).
fn end_of_wal(e: WalDecodeError) -> Lsn {
    match e {
        WalDecodeError::EndOfWal { lsn, .. } => lsn,
        e => panic!("decoding the WAL file failed: {e}"),
    }
}

/// One pass over the file with the raw records, to count what is in it.
fn survey(input: &WalInput) -> Survey {
    let mut f = open_at_first_record(input);
    let mut buf = vec![0u8; CHUNK];
    let mut decoder = WalStreamDecoder::new(input.first_record);
    let mut s = Survey::default();
    'read: loop {
        let n = read_chunk(&mut f, &mut buf);
        if n == 0 {
            break;
        }
        decoder.feed_bytes(&buf[..n]);
        loop {
            match decoder.poll_decode() {
                Ok(Some((end, raw))) => {
                    let lsn = decoder.last_record_lsn().expect("a record was returned");
                    let len = raw.len() as u64;
                    let rec = decode_wal_record(lsn, end, raw).expect("decode record");
                    s.records += 1;
                    s.record_bytes += len;
                    s.blocks += rec.blocks.len();
                    s.images += rec.blocks.iter().filter(|b| b.has_image).count();
                    if rec.is_xlog_switch() {
                        s.switch_skipped += end.0 - Lsn(lsn.0 + len).align().0;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    s.end_of_wal = Some(end_of_wal(e));
                    break 'read;
                }
            }
        }
    }
    s
}

/// Reads the file in 1 MiB chunks; returns the time taken.
fn read_file(path: &Path) -> Duration {
    let mut buf = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut f = File::open(path).expect("open WAL file");
    while read_chunk(&mut f, &mut buf) > 0 {}
    started.elapsed()
}

/// Writes `bytes` in 1 MiB chunks with one fsync at the end; returns the
/// time taken.
fn floor(dir: &Path, bytes: u64) -> Duration {
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + i / 8192) as u8).collect();
    write_floor(dir, bytes, FloorSync::AtEnd, &chunk)
}

/// Reads and decodes every record, storing nothing; returns the time
/// taken and the record count.
fn decode_only(input: &WalInput) -> (Duration, usize) {
    let mut buf = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut f = open_at_first_record(input);
    let mut decoder = WalStreamDecoder::new(input.first_record);
    let mut records = 0;
    'read: loop {
        let n = read_chunk(&mut f, &mut buf);
        if n == 0 {
            break;
        }
        decoder.feed_bytes(&buf[..n]);
        loop {
            match decoder.poll_decode_record() {
                Ok(Some(rec)) => {
                    std::hint::black_box(&rec);
                    records += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    end_of_wal(e);
                    break 'read;
                }
            }
        }
    }
    (started.elapsed(), records)
}

fn conf() -> SharedTenantConf {
    Arc::new(RwLock::new(TenantConfig::builtin_defaults()))
}

/// A fresh, empty timeline whose history starts at `start`.
fn create_timeline(dir: &Path, start: Lsn) -> Arc<Timeline> {
    Timeline::create_standalone(dir, start, conf()).expect("create timeline directory")
}

/// A record that failed to ingest.
struct Failure {
    lsn: Lsn,
    rmgr: &'static str,
    error: String,
}

/// Timings of one end-to-end ingest run.
struct IngestRun {
    /// Opening the file to the last record ingested.
    ingested: Duration,
    /// Time inside `ingest_record`.
    in_ingest_record: Duration,
    /// `checkpoint_blocking`.
    checkpoint: Duration,
    /// Opening the file to the end of the checkpoint.
    total: Duration,
    records: usize,
    failures: Vec<Failure>,
    /// Size of the timeline directory after the checkpoint.
    layer_bytes: u64,
    disk_consistent_lsn: Lsn,
}

/// Ingests `records` with one writer; failures are noted and the ingest
/// state reset.
fn ingest_batch(
    tl: &Timeline,
    ingest: &mut WalIngest,
    records: &[DecodedWALRecord],
    failures: &mut Vec<Failure>,
) {
    let mut writer = tl.writer();
    for rec in records {
        if let Err(e) = ingest.ingest_record(tl, &mut writer, rec) {
            failures.push(Failure {
                lsn: rec.lsn,
                rmgr: rmgr_name(rec.xl_rmid),
                error: e.to_string(),
            });
            ingest.reset();
        }
    }
}

/// Reads, decodes and ingests the whole WAL file into a new timeline in
/// `dir`, then checkpoints it.
fn ingest_run(dir: &Path, input: &WalInput) -> IngestRun {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tl = create_timeline(dir, input.first_record);
    {
        let _enter = rt.enter();
        tl.spawn_background();
    }
    let mut ingest = WalIngest::default();
    let mut failures = Vec::new();
    let mut in_ingest_record = Duration::ZERO;
    let mut records = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut batch = Vec::new();
    let started = Instant::now();
    let mut f = open_at_first_record(input);
    let mut decoder = WalStreamDecoder::new(input.first_record);
    'read: loop {
        let n = read_chunk(&mut f, &mut buf);
        if n == 0 {
            break;
        }
        decoder.feed_bytes(&buf[..n]);
        let mut at_end = false;
        loop {
            match decoder.poll_decode_record() {
                Ok(Some(rec)) => batch.push(rec),
                Ok(None) => break,
                Err(e) => {
                    end_of_wal(e);
                    at_end = true;
                    break;
                }
            }
        }
        records += batch.len();
        let t = Instant::now();
        ingest_batch(&tl, &mut ingest, &batch, &mut failures);
        in_ingest_record += t.elapsed();
        batch.clear();
        if at_end {
            break 'read;
        }
    }
    let ingested = started.elapsed();
    tl.checkpoint_blocking().expect("checkpoint");
    let total = started.elapsed();
    let run = IngestRun {
        ingested,
        in_ingest_record,
        checkpoint: total - ingested,
        total,
        records,
        failures,
        layer_bytes: dir_size(tl.path()).expect("timeline dir size"),
        disk_consistent_lsn: tl.disk_consistent_lsn(),
    };
    rt.block_on(tl.shutdown(false));
    let path = tl.path().to_path_buf();
    drop(tl);
    std::fs::remove_dir_all(path).expect("remove timeline");
    run
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn rate(bytes: u64, d: Duration) -> f64 {
    mib(bytes) / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let repeat: usize = env_or("BENCH_REPEAT", 30usize).max(1);
    let variant: String = env_or("BENCH_WAL", "default".to_string());
    let run_started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "ingest_bench: WAL fixture wal_{variant}, {repeat} runs of each measurement, dir {}",
        dir.path().display()
    );

    let input = write_wal_file(dir.path(), &variant);
    let s = survey(&input);
    let wal_bytes = (input.end.0 - input.first_record.0) - s.switch_skipped;
    println!(
        "WAL file: {} segments from {} cut at the end of the page holding the WAL end {}: {} bytes ({:.2} MiB), fsynced",
        input.segments,
        input.base,
        input.end,
        input.file_bytes,
        mib(input.file_bytes)
    );
    println!(
        "WAL: {} records from {} ({:.2} MiB of records, {} block refs, {} with a page image); WAL bytes {} ({:.2} MiB) = LSN range {}..{} minus {:.2} MiB skipped after XLOG_SWITCH; decoder stopped at {}",
        s.records,
        input.first_record,
        mib(s.record_bytes),
        s.blocks,
        s.images,
        wal_bytes,
        mib(wal_bytes),
        input.first_record,
        input.end,
        mib(s.switch_skipped),
        s.end_of_wal.map_or("the end of the file (no zeros seen)".to_string(), |l| l.to_string()),
    );

    // 1. Read.
    let reads: Vec<Duration> = (0..repeat).map(|_| read_file(&input.path)).collect();
    let read = Spread::of(reads.iter().map(|d| rate(input.file_bytes, *d)).collect());
    println!(
        "read (page cache not dropped: the file was just written, so this is memory speed): {}",
        read.show(1, "MiB/s")
    );

    // 2. Floor.
    let warm_up = floor(dir.path(), input.file_bytes);
    println!(
        "floor warm-up write (not counted): {:.1} MiB/s",
        rate(input.file_bytes, warm_up)
    );
    let floors: Vec<f64> = (0..repeat)
        .map(|_| rate(input.file_bytes, floor(dir.path(), input.file_bytes)))
        .collect();
    let floor_rate = Spread::of(floors);
    println!(
        "floor, write {:.2} MiB + fsync at end: {}",
        mib(input.file_bytes),
        floor_rate.show(1, "MiB/s")
    );

    // 3. Decode only.
    let mut decode_ms = Vec::new();
    for _ in 0..repeat {
        let (d, n) = decode_only(&input);
        assert_eq!(n, s.records, "every decode pass sees the same records");
        decode_ms.push(ms(d));
    }
    let decode = Spread::of(decode_ms.clone());
    let decode_rate = Spread::of(
        decode_ms
            .iter()
            .map(|m| mib(wal_bytes) / (m / 1e3))
            .collect(),
    );
    println!(
        "decode only (read + decode): {} = {}",
        decode.show(2, "ms"),
        decode_rate.show(1, "MiB/s of WAL")
    );

    // 4. Ingest end to end.
    let mut runs = Vec::new();
    for i in 1..=repeat {
        let r = ingest_run(dir.path(), &input);
        println!(
            "ingest run {i:2}: total {:7.2} ms = read+decode+ingest {:7.2} ms (in ingest_record {:7.2} ms) + checkpoint {:6.2} ms; {} records, {} failed; layer files {:.2} MiB; disk_consistent_lsn {}",
            ms(r.total),
            ms(r.ingested),
            ms(r.in_ingest_record),
            ms(r.checkpoint),
            r.records,
            r.failures.len(),
            mib(r.layer_bytes),
            r.disk_consistent_lsn,
        );
        runs.push(r);
    }
    let failures = &runs[0].failures;
    for f in failures.iter().take(10) {
        println!("  ingest failure at {} ({}): {}", f.lsn, f.rmgr, f.error);
    }
    if failures.len() > 10 {
        println!("  ... and {} more", failures.len() - 10);
    }
    let pick = |f: &dyn Fn(&IngestRun) -> f64| Spread::of(runs.iter().map(f).collect());
    let total = pick(&|r| ms(r.total));
    let ingested = pick(&|r| ms(r.ingested));
    let in_record = pick(&|r| ms(r.in_ingest_record));
    let checkpoint = pick(&|r| ms(r.checkpoint));
    let ingest_rate = pick(&|r| rate(wal_bytes, r.total));
    let records_rate = pick(&|r| r.records as f64 / r.total.as_secs_f64());
    let total_time: Duration = runs.iter().map(|r| r.total).sum();
    let total_records: usize = runs.iter().map(|r| r.records).sum();
    let layer_bytes = runs[runs.len() / 2].layer_bytes;

    println!();
    println!(
        "=== ingest_bench summary: wal_{variant}, {} records, {:.2} MiB of WAL ({:.2} MiB file), median of {repeat} runs ===",
        s.records,
        mib(wal_bytes),
        mib(input.file_bytes)
    );
    println!(
        "read WAL file (page cache warm)     {}",
        read.show(1, "MiB/s")
    );
    println!(
        "floor, write + fsync at end         {}",
        floor_rate.show(1, "MiB/s")
    );
    println!(
        "decode only (read + decode)         {}",
        decode_rate.show(1, "MiB/s")
    );
    println!(
        "ingest end to end (to checkpoint)   {}",
        ingest_rate.show(1, "MiB/s")
    );
    println!(
        "ingest records                      {}",
        records_rate.show(0, "rec/s")
    );
    println!(
        "ingest / read                       {:9.4}",
        ingest_rate.median / read.median
    );
    println!(
        "ingest / floor                      {:9.3}",
        ingest_rate.median / floor_rate.median
    );
    println!(
        "time: decode only                   {}",
        decode.show(2, "ms")
    );
    println!(
        "time: read + decode + ingest        {}",
        ingested.show(2, "ms")
    );
    println!(
        "time:   of which in ingest_record   {}",
        in_record.show(2, "ms")
    );
    println!(
        "time: checkpoint                    {}",
        checkpoint.show(2, "ms")
    );
    println!(
        "time: end to end                    {}",
        total.show(2, "ms")
    );
    println!(
        "decode share of end to end          {:9.1} %",
        100.0 * decode.median / total.median
    );
    println!(
        "all ingest runs                     {:9.2} s for {} records, {:.1} MiB of WAL",
        total_time.as_secs_f64(),
        total_records,
        mib(wal_bytes) * runs.len() as f64
    );
    println!(
        "layer bytes / WAL bytes             {:9.2} ({:.2} MiB of layer files per run)",
        layer_bytes as f64 / wal_bytes as f64,
        mib(layer_bytes)
    );
    println!(
        "records failing to ingest           {:9} per run",
        failures.len()
    );
    println!(
        "run time                            {:9.1} s",
        run_started.elapsed().as_secs_f64()
    );
}
