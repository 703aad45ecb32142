//! Tests of the stream decoder on WAL built with `WalPageWriter`.

use bytes::Bytes;
use proptest::prelude::*;
use utils::lsn::Lsn;

use super::*;
use crate::xlog_utils::{
    encode_wal_record, WalPageWriter, WAL_SEGMENT_MIN_SIZE, XLOG_SIZE_OF_XLOG_LONG_PHD,
};

const SEG: usize = WAL_SEGMENT_MIN_SIZE;
const SYSID: u64 = 7_000_000_000_000_000_001;

/// A record of about `len` bytes (at least 24; lengths no record can have
/// are rounded up) from rmgr 10 (Heap), `prev` as its prev-link, filled with
/// `seed`.
fn record_of_len(len: usize, prev: Lsn, seed: u8) -> Bytes {
    let data_len = match len.saturating_sub(24) {
        0 => 0,
        n @ 1..=257 => n.max(2) - 2,
        n => n.max(261) - 5,
    };
    let data: Vec<u8> = (0..data_len).map(|i| seed.wrapping_add(i as u8)).collect();
    encode_wal_record(10, 0x00, u32::from(seed), prev, &data)
}

/// Expected (start, end, bytes) of each appended record.
type Expected = Vec<(Lsn, Lsn, Bytes)>;

fn append(w: &mut WalPageWriter, len: usize, seed: u8, expected: &mut Expected) {
    let prev = w.last_record().unwrap_or(Lsn(0));
    let rec = record_of_len(len, prev, seed);
    let (start, end) = w.append_record(&rec);
    expected.push((start, end, rec));
}

/// Decodes `bytes` from `start`, feeding `chunk` bytes at a time, until the
/// input is used up. Returns (start, end, record) of each record.
fn decode_chunked(start: Lsn, bytes: &[u8], chunk: usize) -> Result<Expected, WalDecodeError> {
    let mut d = WalStreamDecoder::with_segment_size(start, SEG);
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        d.feed_bytes(piece);
        while let Some((end, rec)) = d.poll_decode()? {
            out.push((d.last_record_lsn().unwrap(), end, rec));
        }
    }
    Ok(out)
}

#[test]
fn record_split_at_every_offset() {
    // A record starting at every 8-byte offset of a page, with sizes that
    // put its header, its body or its end across the page boundary.
    let page = Lsn(3 * SEG as u64 + 5 * 8192);
    for offset in (24..8192).step_by(8) {
        let start = page + offset;
        let mut w = WalPageWriter::new(start, 1, SYSID, SEG);
        let mut expected = Vec::new();
        append(&mut w, 24, 1, &mut expected);
        append(&mut w, 8192 - offset as usize + 3, 2, &mut expected);
        append(&mut w, 20_000, 3, &mut expected);
        append(&mut w, 100, 4, &mut expected);
        let bytes = w.into_bytes();
        let got = decode_chunked(start, &bytes, bytes.len()).unwrap();
        assert_eq!(got, expected, "offset {offset}");
        if offset % 512 == 24 {
            for chunk in [1, 7, 24, 8191] {
                let got = decode_chunked(start, &bytes, chunk).unwrap();
                assert_eq!(got, expected, "offset {offset} chunk {chunk}");
            }
        }
    }
}

#[test]
fn record_ending_at_page_end_does_not_need_next_page() {
    let start = Lsn(SEG as u64 + 8192 + 24);
    let mut w = WalPageWriter::new(start, 1, SYSID, SEG);
    let mut expected = Vec::new();
    append(&mut w, 8192 - 24, 1, &mut expected);
    assert_eq!(expected[0].1, Lsn(SEG as u64 + 2 * 8192));
    let mut d = WalStreamDecoder::with_segment_size(start, SEG);
    d.feed_bytes(w.bytes());
    let (end, rec) = d.poll_decode().unwrap().unwrap();
    assert_eq!((end, rec), (expected[0].1, expected[0].2.clone()));
    assert_eq!(d.poll_decode().unwrap(), None);
}

#[test]
fn records_across_segments_and_switch() {
    let start = Lsn(2 * SEG as u64 - 3 * 8192 + 24);
    let mut w = WalPageWriter::new(start, 1, SYSID, SEG);
    let mut expected = Vec::new();
    append(&mut w, 30_000, 1, &mut expected); // crosses into segment 2
    append(&mut w, 500, 2, &mut expected);
    // XLOG_SWITCH: the decoder reports the next segment start as its end.
    let switch = encode_wal_record(0, 0x40, 0, w.last_record().unwrap(), &[]);
    let (s, _) = w.append_record(&switch);
    w.pad_to_segment_end();
    expected.push((s, w.lsn(), switch));
    append(&mut w, 300, 3, &mut expected);
    assert_eq!(
        expected[3].0,
        Lsn(3 * SEG as u64 + XLOG_SIZE_OF_XLOG_LONG_PHD as u64)
    );
    let bytes = w.into_bytes();
    for chunk in [bytes.len(), 1000, 8192] {
        let got = decode_chunked(start, &bytes, chunk).unwrap();
        assert_eq!(got, expected, "chunk {chunk}");
    }
    // decode_all assumes 16 MiB segments: the long header at 2 MiB
    // announces 1 MiB ones, so it stops before the first record completes.
    assert!(decode_all(start, &bytes).is_empty());
    let (all, end) = try_decode_all(start, &bytes, SEG).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all[2].is_xlog_switch());
    assert_eq!(all[2].end_lsn, Lsn(3 * SEG as u64));
    assert_eq!(end, all[3].end_lsn);
}

#[test]
fn switch_record_ending_at_segment_end() {
    // A switch record whose last byte is the segment's last byte.
    let start = Lsn(2 * SEG as u64 - 48);
    let mut w = WalPageWriter::new(start, 1, SYSID, SEG);
    let mut expected = Vec::new();
    append(&mut w, 24, 1, &mut expected);
    let switch = encode_wal_record(0, 0x40, 0, w.last_record().unwrap(), &[]);
    let (s, e) = w.append_record(&switch);
    assert_eq!(e, Lsn(2 * SEG as u64));
    expected.push((s, e, switch));
    append(&mut w, 40, 2, &mut expected);
    let bytes = w.into_bytes();
    assert_eq!(decode_chunked(start, &bytes, 5).unwrap(), expected);
}

#[test]
fn start_at_page_with_continuation() {
    let base = Lsn(SEG as u64);
    let mut w = WalPageWriter::new(base, 1, SYSID, SEG);
    let mut expected = Vec::new();
    append(&mut w, 100, 1, &mut expected);
    append(&mut w, 3 * 8192, 2, &mut expected); // pages 0..3
    append(&mut w, 200, 3, &mut expected);
    append(&mut w, 9000, 4, &mut expected);
    let bytes = w.into_bytes();
    // From the segment start: everything.
    assert_eq!(decode_chunked(base, &bytes, 4096).unwrap(), expected);
    // From pages 1 and 2: the big record is skipped (its continuation spans
    // both pages), the decoder resumes with the next one.
    for page in [1usize, 2, 3] {
        let from = page * 8192;
        let got = decode_chunked(base + from as u64, &bytes[from..], 333).unwrap();
        let want: Expected = expected
            .iter()
            .filter(|(s, _, _)| s.0 > base.0 + from as u64)
            .cloned()
            .collect();
        assert_eq!(got, want, "page {page}");
    }
}

#[test]
fn start_at_record_in_middle_of_page() {
    let base = Lsn(SEG as u64);
    let mut w = WalPageWriter::new(base, 1, SYSID, SEG);
    let mut expected = Vec::new();
    for i in 0..20 {
        append(&mut w, 1000 + i * 37, i as u8, &mut expected);
    }
    let bytes = w.into_bytes();
    let (from, _, _) = expected[7];
    let offset = (from.0 - base.0) as usize;
    let got = decode_chunked(from, &bytes[offset..], 100).unwrap();
    assert_eq!(got, expected[7..].to_vec());
}

/// Builds: A, a record B cut at the next page boundary by a crash, then at
/// that page (flagged XLP_FIRST_IS_OVERWRITE_CONTRECORD) the record `C`
/// made by `make_c(B start, A start)` and a record D.
fn overwrite_stream(make_c: impl Fn(Lsn, Lsn) -> Bytes) -> (Lsn, Vec<u8>, Expected) {
    let base = Lsn(SEG as u64 + 8192);
    let mut w = WalPageWriter::new(base, 1, SYSID, SEG);
    let mut expected = Vec::new();
    append(&mut w, 4000, 1, &mut expected);
    let a = expected[0].0;
    let b = record_of_len(10_000, a, 2);
    let (b_start, _) = w.append_record(&b);
    let mut bytes = w.bytes()[..8192].to_vec();
    let cut = base + 8192;

    let mut w2 = WalPageWriter::new(cut, 1, SYSID, SEG);
    let c = make_c(b_start, a);
    let (c_start, c_end) = w2.append_record(&c);
    expected.push((c_start, c_end, c));
    append(&mut w2, 50, 4, &mut expected);
    let mut tail = w2.into_bytes().to_vec();
    // Flag the page as PostgreSQL's CreateOverwriteContrecordRecord does.
    tail[2] |= XLP_FIRST_IS_OVERWRITE_CONTRECORD as u8;
    bytes.extend_from_slice(&tail);
    (base, bytes, expected)
}

fn overwrite_record(aborted: Lsn, prev: Lsn) -> Bytes {
    let mut data = aborted.0.to_le_bytes().to_vec();
    data.extend_from_slice(&123_456i64.to_le_bytes());
    encode_wal_record(0, XLOG_OVERWRITE_CONTRECORD, 0, prev, &data)
}

#[test]
fn overwritten_contrecord_is_dropped() {
    let (base, bytes, expected) = overwrite_stream(overwrite_record);
    for chunk in [bytes.len(), 1, 100] {
        assert_eq!(decode_chunked(base, &bytes, chunk).unwrap(), expected);
    }
    let (recs, _) = try_decode_all(base, &bytes, SEG).unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[1].xl_rmid, 0);
    assert_eq!(recs[1].rmgr_info(), XLOG_OVERWRITE_CONTRECORD);

    // Starting at the flagged page itself: no record to drop.
    let from = base + 8192;
    let got = decode_chunked(from, &bytes[8192..], 50).unwrap();
    assert_eq!(got, expected[1..].to_vec());
}

#[test]
fn overwrite_flag_needs_overwrite_record() {
    // Another record type.
    let (base, bytes, _) =
        overwrite_stream(|_, prev| encode_wal_record(0, 0x20, 0, prev, &[0; 16]));
    let err = decode_chunked(base, &bytes, bytes.len()).unwrap_err();
    assert!(err.to_string().contains("OVERWRITE_CONTRECORD"), "{err}");
    // Naming the wrong LSN.
    let (base, bytes, _) = overwrite_stream(|b, prev| overwrite_record(b + 8, prev));
    let err = decode_chunked(base, &bytes, bytes.len()).unwrap_err();
    assert!(matches!(err, WalDecodeError::InvalidRecord { .. }), "{err}");
}

/// A stream of a few records crossing pages, from a segment start.
fn sample_stream() -> (Lsn, Vec<u8>, Expected) {
    let base = Lsn(4 * SEG as u64);
    let mut w = WalPageWriter::new(base, 1, SYSID, SEG);
    let mut expected = Vec::new();
    for i in 0..6 {
        append(&mut w, 5000 + i * 11, i as u8, &mut expected);
    }
    (base, w.into_bytes().to_vec(), expected)
}

fn first_error(base: Lsn, bytes: &[u8]) -> WalDecodeError {
    decode_chunked(base, bytes, bytes.len()).unwrap_err()
}

#[test]
fn page_header_errors() {
    let (base, bytes, _) = sample_stream();
    let page1 = base + 8192;

    let mut b = bytes.clone();
    b[8192] = 0x11; // magic
    let err = first_error(base, &b);
    assert!(
        matches!(&err, WalDecodeError::InvalidPageHeader { lsn, detail } if *lsn == page1 && detail.contains("magic")),
        "{err}"
    );

    let mut b = bytes.clone();
    b[8192 + 9] ^= 0x40; // pageaddr
    let err = first_error(base, &b);
    assert!(err.to_string().contains("page address"), "{err}");

    let mut b = bytes.clone();
    b[8192 + 2] &= !(XLP_FIRST_IS_CONTRECORD as u8); // contrecord flag
    let err = first_error(base, &b);
    assert!(err.to_string().contains("no contrecord flag"), "{err}");

    let mut b = bytes.clone();
    b[8192 + 16] ^= 1; // xlp_rem_len
    let err = first_error(base, &b);
    assert!(err.to_string().contains("contrecord length"), "{err}");

    let mut b = bytes.clone();
    b[8192 + 3] = 0x01; // unknown info bits
    let err = first_error(base, &b);
    assert!(err.to_string().contains("info bits"), "{err}");

    let mut b = bytes.clone();
    b[2] &= !(XLP_LONG_HEADER as u8); // short header at segment start
    let err = first_error(base, &b);
    assert_eq!(err.lsn(), base);

    let mut b = bytes.clone();
    b[33] ^= 1; // xlp_seg_size
    let err = first_error(base, &b);
    assert!(err.to_string().contains("segment size"), "{err}");

    let mut b = bytes.clone();
    b[37] ^= 1; // xlp_xlog_blcksz
    let err = first_error(base, &b);
    assert!(err.to_string().contains("page size"), "{err}");

    let mut b = bytes.clone();
    b[8192..8192 + 24].fill(0); // zeroed page: end of WAL
    assert!(matches!(first_error(base, &b), WalDecodeError::EndOfWal { lsn, .. } if lsn == page1));
}

#[test]
fn sysid_must_not_change() {
    let start = Lsn(SEG as u64);
    let mut w = WalPageWriter::new(start, 1, SYSID, SEG);
    let mut expected = Vec::new();
    append(&mut w, 5000, 1, &mut expected);
    let switch = encode_wal_record(0, 0x40, 0, w.last_record().unwrap(), &[]);
    let (switch_lsn, _) = w.append_record(&switch);
    w.pad_to_segment_end();
    let mut same = w.bytes().to_vec();
    let mut other = w.bytes().to_vec();
    for (sysid, out) in [(SYSID, &mut same), (SYSID + 1, &mut other)] {
        let mut next = WalPageWriter::new(Lsn(2 * SEG as u64), 1, sysid, SEG);
        next.append_record(&record_of_len(100, switch_lsn, 3));
        out.extend_from_slice(next.bytes());
    }
    assert_eq!(decode_chunked(start, &same, 1000).unwrap().len(), 3);
    let err = first_error(start, &other);
    assert!(err.to_string().contains("system identifier"), "{err}");
    assert_eq!(err.lsn(), Lsn(2 * SEG as u64));
}

#[test]
fn record_errors() {
    let (base, bytes, expected) = sample_stream();
    // Corrupt a byte of the second record's body: CRC mismatch.
    let second = (expected[1].0 .0 - base.0) as usize;
    let mut b = bytes.clone();
    b[second + 100] ^= 0x20;
    let err = first_error(base, &b);
    assert!(
        matches!(err, WalDecodeError::BadCrc { lsn, .. } if lsn == expected[1].0),
        "{err}"
    );
    // Wrong prev-link in the third record, detected from its header.
    let third = (expected[2].0 .0 - base.0) as usize;
    let mut b = bytes.clone();
    b[third + 8] ^= 0x08;
    let err = first_error(base, &b);
    assert!(err.to_string().contains("prev-link"), "{err}");
    assert_eq!(err.lsn(), expected[2].0);
    // Length below the header size.
    let mut b = bytes.clone();
    b[third..third + 4].copy_from_slice(&10u32.to_le_bytes());
    let err = first_error(base, &b);
    assert!(err.to_string().contains("invalid record length"), "{err}");
    // Length above the maximum.
    let mut b = bytes.clone();
    b[third..third + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    assert!(first_error(base, &b).to_string().contains("maximum"));
    // Zero length: end of WAL.
    let mut b = bytes.clone();
    b[third..third + 4].fill(0);
    assert!(matches!(
        first_error(base, &b),
        WalDecodeError::EndOfWal { .. }
    ));
    let (recs, end) = try_decode_all(base, &b, SEG).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(end, expected[1].1);
    // Errors are sticky.
    let mut d = WalStreamDecoder::with_segment_size(base, SEG);
    d.feed_bytes(&b);
    let mut n = 0;
    let err = loop {
        match d.poll_decode() {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 2);
    d.feed_bytes(&[0; 100]);
    assert_eq!(d.poll_decode().unwrap_err(), err);
}

#[test]
fn truncated_input_waits_for_more() {
    let (base, bytes, expected) = sample_stream();
    for cut in [1, 23, 24, 39, 40, 41, 100, 8191, 8192, 8200, 12_000] {
        let got = decode_chunked(base, &bytes[..cut], cut).unwrap();
        let want: Vec<_> = expected
            .iter()
            .filter(|(_, end, _)| (end.0 - base.0) as usize <= cut)
            .cloned()
            .collect();
        assert_eq!(got, want, "cut {cut}");
    }
}

#[test]
fn invalid_starts() {
    for (lsn, seg) in [
        (Lsn(SEG as u64 + 4), SEG),         // unaligned
        (Lsn(SEG as u64 + 8), SEG),         // inside the long header
        (Lsn(SEG as u64 + 8192 + 16), SEG), // inside a short header
        (Lsn(0), 3 << 20),                  // bad segment size
    ] {
        let mut d = WalStreamDecoder::with_segment_size(lsn, seg);
        d.feed_bytes(&[0; 64]);
        let err = d.poll_decode().unwrap_err();
        assert!(
            matches!(err, WalDecodeError::InvalidStart { .. }),
            "{lsn}: {err}"
        );
    }
    // Just after the headers is fine.
    let mut d = WalStreamDecoder::with_segment_size(Lsn(SEG as u64 + 40), SEG);
    assert_eq!(d.poll_decode().unwrap(), None);
    let d = WalStreamDecoder::new(Lsn(16 << 20));
    assert_eq!(d.segment_size(), 16 << 20);
    assert_eq!(d.lsn(), Lsn(16 << 20));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Records of random sizes from a random start, fed in random chunks,
    /// come back exactly.
    #[test]
    fn random_records_round_trip(
        start_page in 0u64..300,
        start_off in 0u64..1021,
        sizes in proptest::collection::vec(prop_oneof![24usize..300, 261usize..40_000], 1..12),
        chunk in 1usize..20_000,
    ) {
        let off = if start_off == 0 { 0 } else { 40 + start_off * 8 };
        let start = Lsn(5 * SEG as u64 + start_page * 8192 + off.min(8184));
        let mut w = WalPageWriter::new(start, 1, SYSID, SEG);
        let mut expected = Vec::new();
        for (i, size) in sizes.into_iter().enumerate() {
            append(&mut w, size, i as u8, &mut expected);
        }
        let bytes = w.into_bytes();
        prop_assert_eq!(decode_chunked(start, &bytes, chunk).unwrap(), expected);
    }

    /// Arbitrary bytes at an arbitrary start never panic.
    #[test]
    fn random_bytes_never_panic(
        start in (0u64..(1 << 40)).prop_map(|v| v * 8),
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        chunk in 1usize..5000,
    ) {
        let _ = decode_chunked(Lsn(start), &bytes, chunk);
        let _ = try_decode_all(Lsn(start), &bytes, SEG);
    }

    /// A valid stream with some bytes changed gives records or an error,
    /// never a panic; every record returned passes its CRC.
    #[test]
    fn mutated_stream_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (base, mut bytes, _) = sample_stream();
        for (idx, val) in flips {
            let i = idx.index(bytes.len());
            bytes[i] = val;
        }
        if let Ok(recs) = decode_chunked(base, &bytes, 1000) {
            for (_, _, rec) in recs {
                let hdr = XLogRecord::from_bytes(&rec).unwrap();
                prop_assert_eq!(hdr.xl_crc, xlog_record_crc(&rec));
            }
        }
    }
}
