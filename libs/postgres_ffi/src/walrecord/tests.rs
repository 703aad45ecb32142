//! Unit tests of `decode_wal_record` on records built here, block by block.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use utils::lsn::Lsn;

use super::pglz::tests::pglz_compress_for_tests;
use super::*;
use crate::xlog_utils::{encode_wal_record, XLOG_RECORD_CRC_OFFS};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    None,
    Pglz,
    Lz4,
    Zstd,
}

#[derive(Clone, Debug)]
struct TestImage {
    page: Vec<u8>,
    /// (offset, length) of the zero hole, not stored.
    hole: Option<(u16, u16)>,
    method: Method,
    apply: bool,
}

#[derive(Clone, Debug)]
struct TestBlock {
    id: u8,
    rel: (u32, u32, u32),
    same_rel: bool,
    fork: u8,
    blkno: u32,
    will_init: bool,
    data: Vec<u8>,
    image: Option<TestImage>,
}

fn block(id: u8, blkno: u32) -> TestBlock {
    TestBlock {
        id,
        rel: (1663, 5, 16384),
        same_rel: false,
        fork: 0,
        blkno,
        will_init: false,
        data: vec![],
        image: None,
    }
}

/// A page with a header-like start, a hole of zeros and tuple-like data.
fn test_page(hole_offset: u16, hole_length: u16) -> Vec<u8> {
    let mut page: Vec<u8> = (0..BLCKSZ).map(|i| (i * 7 % 251) as u8).collect();
    let (a, b) = (
        usize::from(hole_offset),
        usize::from(hole_offset + hole_length),
    );
    page[a..b].fill(0);
    page
}

/// Encodes `blocks`, origin, top-level xid and main data as PostgreSQL's
/// `XLogRecordAssemble` does, with a correct CRC.
fn build_record(
    blocks: &[TestBlock],
    origin: Option<u16>,
    toplevel: Option<u32>,
    main_data: &[u8],
) -> Bytes {
    let mut headers = BytesMut::new();
    let mut payload = BytesMut::new();
    for b in blocks {
        let mut fork_flags = b.fork;
        if b.will_init {
            fork_flags |= BKPBLOCK_WILL_INIT;
        }
        if !b.data.is_empty() {
            fork_flags |= BKPBLOCK_HAS_DATA;
        }
        if b.image.is_some() {
            fork_flags |= BKPBLOCK_HAS_IMAGE;
        }
        if b.same_rel {
            fork_flags |= BKPBLOCK_SAME_REL;
        }
        headers.put_u8(b.id);
        headers.put_u8(fork_flags);
        headers.put_u16_le(b.data.len() as u16);
        if let Some(img) = &b.image {
            let (hole_offset, hole_length) = img.hole.unwrap_or((0, 0));
            let mut raw = img.page[..usize::from(hole_offset)].to_vec();
            raw.extend_from_slice(&img.page[usize::from(hole_offset + hole_length)..]);
            let (stored, method_bit) = match img.method {
                Method::None => (raw, 0),
                Method::Pglz => (pglz_compress_for_tests(&raw), BKPIMAGE_COMPRESS_PGLZ),
                Method::Lz4 => (lz4_flex::block::compress(&raw), BKPIMAGE_COMPRESS_LZ4),
                Method::Zstd => (
                    zstd::bulk::compress(&raw, 3).unwrap(),
                    BKPIMAGE_COMPRESS_ZSTD,
                ),
            };
            let mut info = method_bit;
            if img.hole.is_some() {
                info |= BKPIMAGE_HAS_HOLE;
            }
            if img.apply {
                info |= BKPIMAGE_APPLY;
            }
            headers.put_u16_le(stored.len() as u16);
            headers.put_u16_le(hole_offset);
            headers.put_u8(info);
            if method_bit != 0 && img.hole.is_some() {
                headers.put_u16_le(hole_length);
            }
            payload.put_slice(&stored);
        }
        if !b.same_rel {
            headers.put_u32_le(b.rel.0);
            headers.put_u32_le(b.rel.1);
            headers.put_u32_le(b.rel.2);
        }
        headers.put_u32_le(b.blkno);
        payload.put_slice(&b.data);
    }
    if let Some(o) = origin {
        headers.put_u8(XLR_BLOCK_ID_ORIGIN);
        headers.put_u16_le(o);
    }
    if let Some(x) = toplevel {
        headers.put_u8(XLR_BLOCK_ID_TOPLEVEL_XID);
        headers.put_u32_le(x);
    }
    if !main_data.is_empty() {
        if main_data.len() < 256 {
            headers.put_u8(XLR_BLOCK_ID_DATA_SHORT);
            headers.put_u8(main_data.len() as u8);
        } else {
            headers.put_u8(XLR_BLOCK_ID_DATA_LONG);
            headers.put_u32_le(main_data.len() as u32);
        }
        payload.put_slice(main_data);
    }
    finish_record(10, 0x00, 77, Lsn(0x100), &headers, &payload)
}

/// Header + body with xl_tot_len and CRC filled in.
fn finish_record(rmid: u8, info: u8, xid: u32, prev: Lsn, headers: &[u8], payload: &[u8]) -> Bytes {
    let mut rec = BytesMut::new();
    let total = XLOG_SIZE_OF_XLOG_RECORD + headers.len() + payload.len();
    rec.put_slice(
        &XLogRecord {
            xl_tot_len: total as u32,
            xl_xid: xid,
            xl_prev: prev.0,
            xl_info: info,
            xl_rmid: rmid,
            xl_crc: 0,
        }
        .encode(),
    );
    rec.put_slice(headers);
    rec.put_slice(payload);
    fix_crc(&mut rec);
    rec.freeze()
}

fn fix_crc(rec: &mut [u8]) {
    let crc = xlog_record_crc(rec);
    rec[XLOG_RECORD_CRC_OFFS..XLOG_SIZE_OF_XLOG_RECORD].copy_from_slice(&crc.to_le_bytes());
}

const LSN: Lsn = Lsn(0x0100_0028);

fn decode(rec: Bytes) -> Result<DecodedWALRecord, WalDecodeError> {
    decode_wal_record(LSN, LSN + 1000, rec)
}

#[test]
fn main_data_only() {
    let rec = encode_wal_record(1, 0x10, 42, Lsn(0x55), b"hello");
    let d = decode(rec).unwrap();
    assert_eq!(d.lsn, LSN);
    assert_eq!(d.end_lsn, LSN + 1000);
    assert_eq!((d.xl_rmid, d.xl_info, d.xl_xid), (1, 0x10, 42));
    assert_eq!(d.xl_prev, Lsn(0x55));
    assert_eq!(&d.main_data[..], b"hello");
    assert!(d.blocks.is_empty());
    assert_eq!((d.origin_id, d.toplevel_xid), (None, None));
    assert!(!d.is_xlog_switch());

    let long = vec![9u8; 70_000];
    let d = decode(encode_wal_record(1, 0, 0, Lsn(0), &long)).unwrap();
    assert_eq!(d.main_data.len(), 70_000);

    let switch = decode(encode_wal_record(0, 0x40, 0, Lsn(0), &[])).unwrap();
    assert!(switch.is_xlog_switch());
    assert_eq!(switch.main_data.len(), 0);
}

#[test]
fn blocks_origin_toplevel() {
    let mut b0 = block(0, 7);
    b0.data = vec![1, 2, 3];
    b0.will_init = true;
    let mut b1 = block(1, 8);
    b1.same_rel = true;
    b1.fork = 2;
    b1.data = vec![4; 300];
    let mut b5 = block(5, 9);
    b5.rel = (1664, 0, 1262);
    let rec = build_record(&[b0, b1, b5], Some(3), Some(1234), b"main");
    let d = decode(rec).unwrap();
    assert_eq!(d.blocks.len(), 3);
    let (a, b, c) = (&d.blocks[0], &d.blocks[1], &d.blocks[2]);
    assert_eq!(
        (a.spcnode, a.dbnode, a.relnode, a.blkno),
        (1663, 5, 16384, 7)
    );
    assert!(a.will_init && a.has_data && !a.has_image && a.image.is_none());
    assert_eq!(&a.data[..], &[1, 2, 3]);
    assert_eq!(
        (b.spcnode, b.dbnode, b.relnode, b.blkno),
        (1663, 5, 16384, 8)
    );
    assert_eq!(b.forknum, 2);
    assert_eq!(b.flags & BKPBLOCK_SAME_REL, BKPBLOCK_SAME_REL);
    assert_eq!(b.data.len(), 300);
    assert_eq!(
        (c.block_id, c.spcnode, c.dbnode, c.relnode),
        (5, 1664, 0, 1262)
    );
    assert!(!c.has_data && c.data.is_empty());
    assert_eq!(d.origin_id, Some(3));
    assert_eq!(d.toplevel_xid, Some(1234));
    assert_eq!(&d.main_data[..], b"main");
    assert_eq!(d.block(5).map(|b| b.blkno), Some(9));
    assert!(d.block(2).is_none());
}

#[test]
fn images_all_methods() {
    for method in [Method::None, Method::Pglz, Method::Lz4, Method::Zstd] {
        for hole in [None, Some((64u16, 4000u16)), Some((8000, 192))] {
            let page = match hole {
                Some((o, l)) => test_page(o, l),
                None => test_page(0, 0),
            };
            let mut b = block(0, 1);
            b.image = Some(TestImage {
                page: page.clone(),
                hole,
                method,
                apply: method != Method::Lz4,
            });
            b.data = vec![5; 10];
            let d = decode(build_record(&[b], None, None, &[])).unwrap();
            let blk = &d.blocks[0];
            assert!(blk.has_image);
            assert_eq!(blk.apply_image, method != Method::Lz4);
            let image = blk.image.as_ref().unwrap();
            assert_eq!(image.len(), BLCKSZ, "{method:?} {hole:?}");
            assert_eq!(&image[..], &page[..], "{method:?} {hole:?}");
            assert_eq!(&blk.data[..], &[5; 10]);
        }
    }
}

/// Block 0 with an image of a page with a hole at 100..1100.
fn image_block(method: Method) -> TestBlock {
    let mut b = block(0, 1);
    b.image = Some(TestImage {
        page: test_page(100, 1000),
        hole: Some((100, 1000)),
        method,
        apply: true,
    });
    b
}

fn expect_err(rec: Bytes, what: &str) -> WalDecodeError {
    let Err(err) = decode(rec) else {
        panic!("{what}: decoded without error")
    };
    assert_eq!(err.lsn(), LSN, "{what}: {err}");
    let text = err.to_string();
    assert!(text.contains(&LSN.to_string()), "{what}: {text}");
    err
}

#[test]
fn crc_and_length_errors() {
    let rec = encode_wal_record(1, 0, 0, Lsn(0), b"abc");
    let mut bad = rec.to_vec();
    bad[26] ^= 1;
    assert!(matches!(
        expect_err(bad.into(), "crc"),
        WalDecodeError::BadCrc { .. }
    ));
    expect_err(rec.slice(..20), "short header");
    expect_err(rec.slice(..rec.len() - 1), "truncated");
    let mut longer = rec.to_vec();
    longer.push(0);
    expect_err(longer.into(), "longer than xl_tot_len");

    // Invalid rmgr id, with a correct CRC.
    let rec = encode_wal_record(50, 0, 0, Lsn(0), b"abc");
    assert!(expect_err(rec, "rmid")
        .to_string()
        .contains("resource manager"));
    // Custom rmgr ids are valid.
    decode(encode_wal_record(200, 0, 0, Lsn(0), b"abc")).unwrap();
}

/// Rebuilds `rec` with its body replaced, keeping the header and fixing
/// length and CRC.
fn with_body(body: &[u8]) -> Bytes {
    finish_record(10, 0, 1, Lsn(0), body, &[])
}

#[test]
fn block_header_errors() {
    let rel = [0x7f, 6, 0, 0, 5, 0, 0, 0, 0, 0x40, 0, 0];
    let mut cases: Vec<(&str, Vec<u8>)> = vec![];
    // HAS_DATA with zero length.
    let mut v = vec![0, BKPBLOCK_HAS_DATA, 0, 0];
    v.extend_from_slice(&rel);
    v.extend_from_slice(&[1, 0, 0, 0]);
    cases.push(("has data without data", v));
    // Data length without HAS_DATA.
    let mut v = vec![0, 0, 4, 0];
    v.extend_from_slice(&rel);
    v.extend_from_slice(&[1, 0, 0, 0, 9, 9, 9, 9]);
    cases.push(("data without has data", v));
    // SAME_REL on the first block.
    cases.push((
        "same rel first",
        vec![0, BKPBLOCK_SAME_REL, 0, 0, 1, 0, 0, 0],
    ));
    // Invalid block ids.
    cases.push(("block id 33", vec![33, 0, 0, 0]));
    cases.push(("block id 200", vec![200, 0, 0, 0]));
    // Out of order.
    let mut v = vec![1, 0, 0, 0];
    v.extend_from_slice(&rel);
    v.extend_from_slice(&[1, 0, 0, 0, 1, BKPBLOCK_SAME_REL, 0, 0, 2, 0, 0, 0]);
    cases.push(("out of order", v));
    // Fork 9.
    let mut v = vec![0, 9, 0, 0];
    v.extend_from_slice(&rel);
    v.extend_from_slice(&[1, 0, 0, 0]);
    cases.push(("bad fork", v));
    // Image header cut short.
    cases.push((
        "short image header",
        vec![0, BKPBLOCK_HAS_IMAGE, 0, 0, 1, 2],
    ));
    // Main data longer than the record.
    cases.push((
        "long main data",
        vec![XLR_BLOCK_ID_DATA_LONG, 0xff, 0xff, 0xff, 0x7f],
    ));
    cases.push(("short main data", vec![XLR_BLOCK_ID_DATA_SHORT, 10, 1, 2]));
    // Garbage after the main data.
    cases.push(("trailing bytes", vec![XLR_BLOCK_ID_DATA_SHORT, 1, 1, 2]));
    for (what, body) in cases {
        let err = expect_err(with_body(&body), what);
        assert!(
            matches!(err, WalDecodeError::InvalidRecord { .. }),
            "{what}: {err}"
        );
    }
}

/// An image header with the given fields and `stored` bytes behind it.
fn image_record(
    bimg_len: u16,
    hole_offset: u16,
    info: u8,
    hole_length: Option<u16>,
    stored: &[u8],
) -> Bytes {
    let mut h = vec![0, BKPBLOCK_HAS_IMAGE, 0, 0];
    h.extend_from_slice(&bimg_len.to_le_bytes());
    h.extend_from_slice(&hole_offset.to_le_bytes());
    h.push(info);
    if let Some(l) = hole_length {
        h.extend_from_slice(&l.to_le_bytes());
    }
    h.extend_from_slice(&[0x7f, 6, 0, 0, 5, 0, 0, 0, 0, 0x40, 0, 0, 1, 0, 0, 0]);
    finish_record(10, 0, 1, Lsn(0), &h, stored)
}

#[test]
fn image_header_errors() {
    let full = vec![1u8; BLCKSZ];
    // Sanity: a plain full image decodes.
    decode(image_record(BLCKSZ as u16, 0, 0, None, &full)).unwrap();
    let cases: Vec<(&str, Bytes)> = vec![
        (
            "no hole but short",
            image_record(100, 0, 0, None, &full[..100]),
        ),
        (
            "longer than a page",
            image_record(9000, 0, 0, None, &vec![0; 9000]),
        ),
        (
            "hole at offset 0",
            image_record(100, 0, BKPIMAGE_HAS_HOLE, None, &full[..100]),
        ),
        (
            "hole flag, full length",
            image_record(BLCKSZ as u16, 10, BKPIMAGE_HAS_HOLE, None, &full),
        ),
        (
            "offset without hole flag",
            image_record(BLCKSZ as u16, 10, 0, None, &full),
        ),
        (
            "hole past page end",
            image_record(100, 8100, BKPIMAGE_HAS_HOLE, None, &full[..100]),
        ),
        (
            "compressed hole past page end",
            image_record(
                10,
                8000,
                BKPIMAGE_HAS_HOLE | BKPIMAGE_COMPRESS_LZ4,
                Some(500),
                &[0; 10],
            ),
        ),
        (
            "compressed hole length 0",
            image_record(
                10,
                8000,
                BKPIMAGE_HAS_HOLE | BKPIMAGE_COMPRESS_LZ4,
                Some(0),
                &[0; 10],
            ),
        ),
        (
            "compressed full size",
            image_record(BLCKSZ as u16, 0, BKPIMAGE_COMPRESS_ZSTD, None, &full),
        ),
    ];
    for (what, rec) in cases {
        let err = expect_err(rec, what);
        assert!(
            matches!(err, WalDecodeError::InvalidRecord { .. }),
            "{what}: {err}"
        );
    }
}

#[test]
fn bad_compressed_images() {
    for method in [
        BKPIMAGE_COMPRESS_PGLZ,
        BKPIMAGE_COMPRESS_LZ4,
        BKPIMAGE_COMPRESS_ZSTD,
    ] {
        // Garbage instead of compressed data.
        let rec = image_record(50, 100, BKPIMAGE_HAS_HOLE | method, Some(1000), &[0xff; 50]);
        let err = expect_err(rec, "garbage image");
        assert!(
            matches!(err, WalDecodeError::BadImage { block_id: 0, .. }),
            "{method}: {err}"
        );
    }
    for method in [Method::Pglz, Method::Lz4, Method::Zstd] {
        // Valid data cut short: the record is rebuilt with a shorter image.
        let rec = build_record(&[image_block(method)], None, None, &[]);
        decode(rec.clone()).unwrap();
        let bimg_len = u16::from_le_bytes([rec[28], rec[29]]);
        let stored = &rec[rec.len() - usize::from(bimg_len)..];
        let cut = &stored[..stored.len() - 5];
        let info = rec[32];
        let rec = image_record(cut.len() as u16, 100, info, Some(1000), cut);
        let err = expect_err(rec, "cut image");
        assert!(
            matches!(err, WalDecodeError::BadImage { block_id: 0, .. }),
            "{method:?}: {err}"
        );
    }
    // Two methods at once.
    let rec = image_record(
        10,
        100,
        BKPIMAGE_HAS_HOLE | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_PGLZ,
        Some(100),
        &[0; 10],
    );
    assert!(matches!(
        expect_err(rec, "two methods"),
        WalDecodeError::BadImage { .. }
    ));
    // Compressed data of the wrong size: a zstd frame of a smaller page.
    let small = zstd::bulk::compress(&[1u8; 100], 1).unwrap();
    let rec = image_record(
        small.len() as u16,
        100,
        BKPIMAGE_HAS_HOLE | BKPIMAGE_COMPRESS_ZSTD,
        Some(100),
        &small,
    );
    assert!(matches!(
        expect_err(rec, "short zstd"),
        WalDecodeError::BadImage { .. }
    ));
    let lz = lz4_flex::block::compress(&[1u8; 100]);
    let rec = image_record(
        lz.len() as u16,
        100,
        BKPIMAGE_HAS_HOLE | BKPIMAGE_COMPRESS_LZ4,
        Some(100),
        &lz,
    );
    assert!(matches!(
        expect_err(rec, "short lz4"),
        WalDecodeError::BadImage { .. }
    ));
}

fn arb_block() -> impl Strategy<Value = TestBlock> {
    (
        0u8..4,
        any::<u32>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::option::of((0usize..4, any::<bool>(), 0u16..3)),
    )
        .prop_map(|(fork, blkno, will_init, data, image)| {
            let mut b = block(0, blkno);
            b.fork = fork;
            b.will_init = will_init;
            b.data = data;
            b.image = image.map(|(m, apply, hole)| {
                let method = [Method::None, Method::Pglz, Method::Lz4, Method::Zstd][m];
                let hole = [None, Some((24u16, 8000u16)), Some((4000, 100))][usize::from(hole)];
                let page = match hole {
                    Some((o, l)) => test_page(o, l),
                    None => test_page(0, 0),
                };
                TestImage {
                    page,
                    hole,
                    method,
                    apply,
                }
            });
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn built_records_round_trip(
        mut blocks in proptest::collection::vec(arb_block(), 0..4),
        same_rel in any::<bool>(),
        origin in proptest::option::of(any::<u16>()),
        toplevel in proptest::option::of(any::<u32>()),
        main in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        for (i, b) in blocks.iter_mut().enumerate() {
            b.id = (i * 3) as u8;
            b.same_rel = same_rel && i > 0;
        }
        let rec = build_record(&blocks, origin, toplevel, &main);
        let d = decode(rec).unwrap();
        prop_assert_eq!(d.blocks.len(), blocks.len());
        for (got, want) in d.blocks.iter().zip(&blocks) {
            prop_assert_eq!(got.block_id, want.id);
            prop_assert_eq!(got.forknum, want.fork);
            prop_assert_eq!(got.blkno, want.blkno);
            prop_assert_eq!(got.will_init, want.will_init);
            prop_assert_eq!(&got.data[..], &want.data[..]);
            prop_assert_eq!(got.image.as_deref(), want.image.as_ref().map(|i| &i.page[..]));
        }
        prop_assert_eq!(d.origin_id, origin);
        prop_assert_eq!(d.toplevel_xid, toplevel);
        prop_assert_eq!(&d.main_data[..], &main[..]);
    }

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), fix in any::<bool>()) {
        let mut rec = body.clone();
        if fix && rec.len() >= XLOG_SIZE_OF_XLOG_RECORD {
            let len = rec.len() as u32;
            rec[..4].copy_from_slice(&len.to_le_bytes());
            rec[17] %= 22;
            fix_crc(&mut rec);
        }
        let _ = decode(rec.into());
    }

    /// Flipping bytes of a valid record (and fixing the CRC so that decoding
    /// goes past it) gives an error or a record, never a panic.
    #[test]
    fn mutated_records_never_panic(
        blocks in proptest::collection::vec(arb_block(), 1..3),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut blocks = blocks;
        for (i, b) in blocks.iter_mut().enumerate() {
            b.id = i as u8;
        }
        let mut rec = build_record(&blocks, Some(1), None, b"main data").to_vec();
        for (idx, val) in flips {
            let i = XLOG_SIZE_OF_XLOG_RECORD + idx.index(rec.len() - XLOG_SIZE_OF_XLOG_RECORD);
            rec[i] = val;
        }
        fix_crc(&mut rec);
        if let Ok(d) = decode(rec.into()) {
            for b in d.blocks {
                if let Some(img) = b.image {
                    prop_assert_eq!(img.len(), BLCKSZ);
                }
            }
        }
    }
}
