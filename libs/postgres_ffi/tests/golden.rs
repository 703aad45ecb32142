//! Golden tests: WAL written by a real PostgreSQL 15 (see
//! `testdata/README.md` and `testdata/generate.sh`) decoded by
//! `WalStreamDecoder` + `decode_wal_record`, compared record by record with
//! what `pg_waldump` printed for the same WAL.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use postgres_ffi::waldecoder::WalStreamDecoder;
use postgres_ffi::walrecord::{decode_wal_record, DecodedWALRecord, WalDecodeError};
use postgres_ffi::xlog_utils::{
    page_header_size_at, parse_xlog_file_name, xlog_record_crc, XLogPageHeaderData, XLogRecord,
    WAL_SEGMENT_SIZE, XLOG_BLCKSZ, XLP_FIRST_IS_CONTRECORD,
};
use utils::lsn::Lsn;

const SEG: u64 = WAL_SEGMENT_SIZE as u64;
const VARIANTS: [&str; 5] = ["default", "checksums", "pglz", "lz4", "zstd"];

fn rmgr_id(name: &str) -> u8 {
    (0..=u8::MAX)
        .find(|id| postgres_ffi::pg_constants::rmgr_name(*id) == Some(name))
        .unwrap_or_else(|| panic!("unknown rmgr name {name}"))
}

fn fork_number(name: &str) -> u8 {
    match name {
        "main" => 0,
        "fsm" => 1,
        "vm" => 2,
        "init" => 3,
        _ => panic!("unknown fork {name}"),
    }
}

/// One block reference as pg_waldump prints it.
#[derive(Debug, Clone, PartialEq)]
struct DumpBlock {
    id: u8,
    rel: (u32, u32, u32),
    fork: u8,
    blk: u32,
    fpw: bool,
    /// "FPW for WAL verification": an image not to be applied.
    for_verification: bool,
    /// (hole offset, hole length), `--bkp-details` only.
    hole: Option<(u16, u16)>,
    /// Compression method, `--bkp-details` only.
    method: Option<String>,
}

/// One record line of pg_waldump.
#[derive(Debug, Clone)]
struct DumpRecord {
    rmid: u8,
    tot_len: u32,
    xid: u32,
    lsn: Lsn,
    prev: Lsn,
    desc: String,
    blocks: Vec<DumpBlock>,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line}"));
    line[at + key.len()..].trim_start()
}

fn until(s: &str, end: char) -> &str {
    s.split(end).next().unwrap()
}

fn parse_rel(s: &str) -> (u32, u32, u32) {
    let mut it = s.split('/').map(|p| p.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

/// Parses "#0: rel 1663/5/1247 [fork vm] blk 14[ FPW[ for WAL verification]]"
/// (plain format) or "#0: rel ... fork main blk 14 (FPW...); hole: offset:
/// 64, length: 6288[, compression saved: N, method: lz4]" (bkp details).
fn parse_block(s: &str) -> DumpBlock {
    let s = s
        .trim()
        .trim_start_matches("blkref ")
        .trim_start_matches('#');
    let (id, rest) = s.split_once(": rel ").unwrap();
    let words: Vec<&str> = rest.split_whitespace().collect();
    let rel = parse_rel(words[0]);
    let (fork, blk_at) = if words[1] == "fork" {
        (fork_number(words[2]), 4)
    } else {
        (0, 2)
    };
    assert_eq!(words[blk_at - 1], "blk", "{s}");
    let blk = words[blk_at].parse().unwrap();
    let tail = words[blk_at + 1..].join(" ");
    let fpw = tail.contains("FPW");
    let for_verification = tail.contains("for WAL verification");
    let hole = tail.contains("hole:").then(|| {
        let off = until(field(&tail, "hole: offset:"), ',').parse().unwrap();
        let len = until(field(&tail, "length:"), ',').parse().unwrap();
        (off, len)
    });
    let method = tail
        .contains("method:")
        .then(|| field(&tail, "method:").trim().to_string());
    DumpBlock {
        id: id.parse().unwrap(),
        rel,
        fork,
        blk,
        fpw,
        for_verification,
        hole,
        method,
    }
}

fn parse_record_line(line: &str) -> DumpRecord {
    let rmgr = until(field(line, "rmgr:"), ' ');
    let lens = until(field(line, "len (rec/tot):"), ',');
    let tot_len = lens.split('/').nth(1).unwrap().trim().parse().unwrap();
    let xid = until(field(line, "tx:"), ',').parse().unwrap();
    let lsn = until(field(line, "lsn:"), ',').parse().unwrap();
    let prev = until(field(line, "prev"), ',').parse().unwrap();
    let desc_and_blocks = field(line, "desc:");
    let mut parts = desc_and_blocks.split(", blkref ");
    let desc = parts.next().unwrap().to_string();
    let blocks = parts.map(parse_block).collect();
    DumpRecord {
        rmid: rmgr_id(rmgr),
        tot_len,
        xid,
        lsn,
        prev,
        desc,
        blocks,
    }
}

/// Parses pg_waldump output, plain or with `--bkp-details`.
fn parse_waldump(text: &str) -> Vec<DumpRecord> {
    let mut records: Vec<DumpRecord> = Vec::new();
    for line in text.lines() {
        if line.starts_with("rmgr:") {
            records.push(parse_record_line(line));
        } else if line.trim_start().starts_with("blkref #") {
            records
                .last_mut()
                .expect("blkref after a record")
                .blocks
                .push(parse_block(line));
        } else if !line.trim().is_empty() {
            panic!("unexpected pg_waldump line: {line}");
        }
    }
    records
}

struct Fixture {
    name: String,
    /// The segments' bytes, concatenated.
    wal: Vec<u8>,
    /// LSN of `wal[0]`.
    base: Lsn,
    first_record: Lsn,
    end: Lsn,
    plain: Vec<DumpRecord>,
    bkp: Vec<DumpRecord>,
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn load(variant: &str) -> Fixture {
    let dir = testdata().join(format!("wal_{variant}"));
    let range = fs::read_to_string(dir.join("range.txt")).unwrap();
    let (first, end) = range.trim().split_once(' ').unwrap();
    let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".zst")?.to_string();
            let (tli, segno) = parse_xlog_file_name(&name, WAL_SEGMENT_SIZE)?;
            assert_eq!(tli, 1);
            Some((segno, p))
        })
        .collect();
    segments.sort();
    assert!(!segments.is_empty(), "no segments in {}", dir.display());
    let mut wal = Vec::new();
    for (i, (segno, path)) in segments.iter().enumerate() {
        assert_eq!(*segno, segments[0].0 + i as u64, "segments are consecutive");
        let bytes = zstd::decode_all(fs::File::open(path).unwrap()).unwrap();
        assert_eq!(
            bytes.len() as u64,
            SEG,
            "{} is a whole segment",
            path.display()
        );
        wal.extend_from_slice(&bytes);
    }
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    Fixture {
        name: variant.to_string(),
        wal,
        base: Lsn(segments[0].0 * SEG),
        first_record: first.parse().unwrap(),
        end: end.parse().unwrap(),
        plain: parse_waldump(&read("waldump.txt")),
        bkp: parse_waldump(&read("waldump_bkp.txt")),
    }
}

/// Decodes the fixture's WAL from `start`, feeding `chunk` bytes at a time,
/// until the end of the WAL (zeros) or the end of the bytes. Returns each
/// record with its raw length.
fn decode_from(fx: &Fixture, start: Lsn, chunk: usize) -> Vec<(DecodedWALRecord, usize)> {
    let mut decoder = WalStreamDecoder::new(start);
    let mut out = Vec::new();
    let from = (start.0 - fx.base.0) as usize;
    'feed: for piece in fx.wal[from..].chunks(chunk) {
        decoder.feed_bytes(piece);
        loop {
            match decoder.poll_decode() {
                Ok(Some((end, rec))) => {
                    let lsn = decoder.last_record_lsn().unwrap();
                    let len = rec.len();
                    let decoded = decode_wal_record(lsn, end, rec)
                        .unwrap_or_else(|e| panic!("{}: {e}", fx.name));
                    out.push((decoded, len));
                }
                Ok(None) => break,
                Err(WalDecodeError::EndOfWal { lsn, .. }) => {
                    assert_eq!(lsn, fx.end, "{}: WAL ends where PostgreSQL's did", fx.name);
                    break 'feed;
                }
                Err(e) => panic!("{}: {e}", fx.name),
            }
        }
    }
    out
}

fn u16_at(page: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([page[at], page[at + 1]])
}

/// Compares decoded records with pg_waldump's, field by field.
fn compare(fx: &Fixture, decoded: &[(DecodedWALRecord, usize)], dump: &[DumpRecord]) {
    let name = &fx.name;
    assert_eq!(decoded.len(), dump.len(), "{name}: record count");
    for ((rec, len), want) in decoded.iter().zip(dump) {
        let at = format!("{name}: record at {} ({})", want.lsn, want.desc);
        assert_eq!(rec.lsn, want.lsn, "{at}");
        assert_eq!(rec.xl_rmid, want.rmid, "{at}");
        assert_eq!(*len as u32, want.tot_len, "{at}");
        assert_eq!(rec.xl_xid, want.xid, "{at}");
        assert_eq!(rec.xl_prev, want.prev, "{at}");
        assert_eq!(rec.blocks.len(), want.blocks.len(), "{at}: block count");
        for (blk, wb) in rec.blocks.iter().zip(&want.blocks) {
            let at = format!("{at}, block {}", wb.id);
            assert_eq!(blk.block_id, wb.id, "{at}");
            assert_eq!((blk.spcnode, blk.dbnode, blk.relnode), wb.rel, "{at}");
            assert_eq!(blk.forknum, wb.fork, "{at}");
            assert_eq!(blk.blkno, wb.blk, "{at}");
            assert_eq!(blk.has_image, wb.fpw, "{at}");
            assert_eq!(blk.apply_image, wb.fpw && !wb.for_verification, "{at}");
            if let Some(image) = &blk.image {
                assert_eq!(image.len(), 8192, "{at}");
            }
            if let (Some(image), Some((off, len))) = (&blk.image, wb.hole) {
                let (off, len) = (usize::from(off), usize::from(len));
                assert!(image[off..off + len].iter().all(|&b| b == 0), "{at}: hole");
                if len > 0 {
                    // A standard page: the hole is pd_lower..pd_upper, and
                    // pd_pagesize_version is 8192 | 4. Both only hold if the
                    // image was decompressed and reassembled correctly.
                    assert_eq!(usize::from(u16_at(image, 12)), off, "{at}: pd_lower");
                    assert_eq!(usize::from(u16_at(image, 14)), off + len, "{at}: pd_upper");
                    assert_eq!(u16_at(image, 18), 8192 | 4, "{at}: page version");
                }
            }
        }
        // Heap records flagged +INIT re-initialize their (new) page, block 0.
        if (want.rmid == 9 || want.rmid == 10) && !rec.blocks.is_empty() {
            let init = want
                .desc
                .split_whitespace()
                .next()
                .unwrap()
                .ends_with("+INIT");
            assert_eq!(rec.blocks[0].will_init, init, "{at}: will_init");
        }
    }
}

/// Structural checks that need no pg_waldump: alignment, end LSNs, CRC.
fn check_ends(fx: &Fixture, decoded: &[(DecodedWALRecord, usize)]) {
    for pair in decoded.windows(2) {
        let (a, b) = (&pair[0].0, &pair[1].0);
        assert!(a.lsn.is_aligned(8), "{}: {} aligned", fx.name, a.lsn);
        let header = page_header_size_at(a.end_lsn, WAL_SEGMENT_SIZE) as u64;
        assert_eq!(
            b.lsn,
            a.end_lsn + header,
            "{}: record after {} starts at its end",
            fx.name,
            a.lsn
        );
        if a.is_xlog_switch() {
            assert_eq!(
                a.end_lsn.0 % SEG,
                0,
                "{}: switch ends at a segment",
                fx.name
            );
        }
    }
    assert_eq!(decoded.last().unwrap().0.end_lsn, fx.end, "{}", fx.name);
}

#[test]
fn golden_wal_matches_pg_waldump() {
    for variant in VARIANTS {
        let fx = load(variant);
        let chunk = if variant == "default" { 8191 } else { 1 << 20 };
        let decoded = decode_from(&fx, fx.first_record, chunk);
        compare(&fx, &decoded, &fx.plain);
        compare(&fx, &decoded, &fx.bkp);
        check_ends(&fx, &decoded);

        // The workload's features are all there.
        let recs: Vec<&DecodedWALRecord> = decoded.iter().map(|(r, _)| r).collect();
        let switches = recs.iter().filter(|r| r.is_xlog_switch()).count();
        assert_eq!(switches, 1, "{variant}: one XLOG_SWITCH");
        assert!(
            decoded
                .iter()
                .any(|(r, len)| r.lsn.0 % XLOG_BLCKSZ as u64 + *len as u64 > 2 * XLOG_BLCKSZ as u64),
            "{variant}: a record spans three pages"
        );
        assert!(
            recs.iter().any(|r| r.origin_id.is_some()),
            "{variant}: origin"
        );
        let images = recs
            .iter()
            .flat_map(|r| &r.blocks)
            .filter(|b| b.has_image)
            .count();
        assert!(images > 500, "{variant}: {images} images");
        assert!(
            recs.iter().flat_map(|r| &r.blocks).all(|b| b.has_image),
            "{variant}: wal_consistency_checking gives every block an image"
        );
        let methods: Vec<&str> = fx
            .bkp
            .iter()
            .flat_map(|r| &r.blocks)
            .filter_map(|b| b.method.as_deref())
            .collect();
        match variant {
            "pglz" | "lz4" | "zstd" => {
                assert!(methods.len() > 100, "{variant}: compressed images");
                assert!(methods.iter().all(|m| *m == variant), "{variant}");
            }
            _ => assert!(methods.is_empty(), "{variant}"),
        }
    }
}

#[test]
fn golden_wal_from_a_page_with_a_continued_record() {
    for variant in VARIANTS {
        let fx = load(variant);
        let all = decode_from(&fx, fx.first_record, 1 << 20);
        // The first pages starting with the continuation of a record.
        let mut tried = 0;
        let mut page = fx.base + XLOG_BLCKSZ as u64;
        while tried < 3 && page < fx.end {
            let off = (page.0 - fx.base.0) as usize;
            let hdr = XLogPageHeaderData::from_bytes(&fx.wal[off..]).unwrap();
            if hdr.xlp_info & XLP_FIRST_IS_CONTRECORD != 0 {
                let got = decode_from(&fx, page, 10_000);
                let want: Vec<_> = all.iter().filter(|(r, _)| r.lsn > page).cloned().collect();
                assert_eq!(got.len(), want.len(), "{variant} from {page}");
                assert!(
                    got.iter().zip(&want).all(|(a, b)| a == b),
                    "{variant} from {page}"
                );
                tried += 1;
            }
            page += XLOG_BLCKSZ as u64;
        }
        assert_eq!(tried, 3, "{variant}: pages with continued records");
    }
}

#[test]
fn golden_wal_corruption_is_detected() {
    let fx = load("default");
    let all = decode_from(&fx, fx.first_record, 1 << 20);
    // Flip one byte inside a record that does not cross a page (so that no
    // page header is hit): its CRC no longer matches.
    let idx = (10..all.len())
        .find(|&i| all[i].0.lsn.0 % XLOG_BLCKSZ as u64 + all[i].1 as u64 <= XLOG_BLCKSZ as u64)
        .unwrap();
    let (rec, len) = &all[idx];
    let off = (rec.lsn.0 - fx.base.0) as usize + len / 2;
    let mut wal = fx.wal.clone();
    wal[off] ^= 0x01;
    let mut decoder = WalStreamDecoder::new(fx.first_record);
    decoder.feed_bytes(&wal[(fx.first_record.0 - fx.base.0) as usize..][..4 << 20]);
    let mut n = 0;
    let err = loop {
        match decoder.poll_decode() {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, idx);
    assert!(
        matches!(err, WalDecodeError::BadCrc { lsn, .. } if lsn == rec.lsn),
        "{err}"
    );

    // Every record PostgreSQL wrote passes our CRC computation.
    let mut decoder = WalStreamDecoder::new(fx.first_record);
    decoder.feed_bytes(&fx.wal[(fx.first_record.0 - fx.base.0) as usize..][..1 << 20]);
    while let Some((_, raw)) = decoder.poll_decode().unwrap() {
        let hdr = XLogRecord::from_bytes(&raw).unwrap();
        assert_eq!(hdr.xl_crc, xlog_record_crc(&raw));
        // And decode_wal_record checks it too.
        let mut bad = raw.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        let lsn = decoder.last_record_lsn().unwrap();
        assert!(matches!(
            decode_wal_record(lsn, lsn, Bytes::from(bad)),
            Err(WalDecodeError::BadCrc { .. })
        ));
    }
}
