//! PostgreSQL 15 data pages: the page header (`storage/bufpage.h`), the data
//! checksum (`storage/checksum_impl.h`) and the masking that
//! `wal_consistency_checking` applies before comparing pages
//! (`access/common/bufmask.c`, `heap_mask`, `btree_mask`).
//!
//! Page header layout (24 bytes, little-endian):
//!
//! | offset | size | field                                        |
//! |-------:|-----:|----------------------------------------------|
//! | 0      | 8    | `pd_lsn` (xlogid: high u32, then xrecoff: low u32) |
//! | 8      | 2    | `pd_checksum`                                |
//! | 10     | 2    | `pd_flags`                                   |
//! | 12     | 2    | `pd_lower` (start of free space)             |
//! | 14     | 2    | `pd_upper` (end of free space)               |
//! | 16     | 2    | `pd_special` (start of special space)        |
//! | 18     | 2    | `pd_pagesize_version` (size \| layout version) |
//! | 20     | 4    | `pd_prune_xid`                               |
//! | 24     | 4*n  | line pointers (`ItemIdData`: bits 0-14 `lp_off`, 15-16 `lp_flags`, 17-31 `lp_len`) |
//!
//! Functions taking a whole page panic when the slice is not [`BLCKSZ`]
//! bytes long (a caller bug); header helpers need only the first 24 bytes.
//! Nothing here panics on page *contents*.

use thiserror::Error;
use utils::lsn::Lsn;

use crate::pg_constants::{
    maxalign, BLCKSZ, PD_ALL_VISIBLE, PD_HAS_FREE_LINES, PD_PAGE_FULL, SIZE_OF_PAGE_HEADER_DATA,
};

/// Errors about page contents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    /// `pd_lower`/`pd_upper`/`pd_special` are not ordered within the page.
    #[error(
        "invalid page header: pd_lower {lower}, pd_upper {upper}, pd_special {special} \
         (need {SIZE_OF_PAGE_HEADER_DATA} <= pd_lower <= pd_upper <= pd_special <= {BLCKSZ})"
    )]
    InvalidBounds {
        /// `pd_lower`.
        lower: u16,
        /// `pd_upper`.
        upper: u16,
        /// `pd_special`.
        special: u16,
    },
}

/// The 24-byte header of every data page (`PageHeaderData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageHeaderData {
    /// LSN of the end of the last WAL record that changed the page.
    pub pd_lsn: Lsn,
    /// Data checksum, when enabled.
    pub pd_checksum: u16,
    /// Flag bits (`PD_*`).
    pub pd_flags: u16,
    /// Offset of the start of free space (end of the line pointer array).
    pub pd_lower: u16,
    /// Offset of the end of free space (start of tuple data).
    pub pd_upper: u16,
    /// Offset of the start of the special space.
    pub pd_special: u16,
    /// Page size OR'ed with the layout version.
    pub pd_pagesize_version: u16,
    /// Oldest prunable xid, or 0.
    pub pd_prune_xid: u32,
}

impl PageHeaderData {
    /// Read the header from the first 24 bytes of `page`.
    pub fn read(page: &[u8]) -> PageHeaderData {
        PageHeaderData {
            pd_lsn: page_get_lsn(page),
            pd_checksum: get_u16(page, 8),
            pd_flags: get_u16(page, 10),
            pd_lower: get_u16(page, 12),
            pd_upper: get_u16(page, 14),
            pd_special: get_u16(page, 16),
            pd_pagesize_version: get_u16(page, 18),
            pd_prune_xid: get_u32(page, 20),
        }
    }

    /// Write the header into the first 24 bytes of `page`.
    pub fn write(&self, page: &mut [u8]) {
        page_set_lsn(page, self.pd_lsn);
        put_u16(page, 8, self.pd_checksum);
        put_u16(page, 10, self.pd_flags);
        put_u16(page, 12, self.pd_lower);
        put_u16(page, 14, self.pd_upper);
        put_u16(page, 16, self.pd_special);
        put_u16(page, 18, self.pd_pagesize_version);
        put_u32(page, 20, self.pd_prune_xid);
    }

    /// Check `24 <= pd_lower <= pd_upper <= pd_special <= BLCKSZ`.
    pub fn check_bounds(&self) -> Result<(), PageError> {
        let (l, u, s) = (
            usize::from(self.pd_lower),
            usize::from(self.pd_upper),
            usize::from(self.pd_special),
        );
        if l < SIZE_OF_PAGE_HEADER_DATA || l > u || u > s || s > BLCKSZ {
            return Err(PageError::InvalidBounds {
                lower: self.pd_lower,
                upper: self.pd_upper,
                special: self.pd_special,
            });
        }
        Ok(())
    }

    /// Number of line pointers (`PageGetMaxOffsetNumber`).
    pub fn max_offset_number(&self) -> u16 {
        let lower = usize::from(self.pd_lower);
        if lower <= SIZE_OF_PAGE_HEADER_DATA {
            0
        } else {
            ((lower - SIZE_OF_PAGE_HEADER_DATA) / 4) as u16
        }
    }
}

/// The page LSN (`PageGetLSN`).
pub fn page_get_lsn(page: &[u8]) -> Lsn {
    Lsn((u64::from(get_u32(page, 0)) << 32) | u64::from(get_u32(page, 4)))
}

/// Set the page LSN (`PageSetLSN`).
pub fn page_set_lsn(page: &mut [u8], lsn: Lsn) {
    put_u32(page, 0, (lsn.0 >> 32) as u32);
    put_u32(page, 4, lsn.0 as u32);
}

/// Whether the page was never initialised (`PageIsNew`: `pd_upper == 0`).
pub fn page_is_new(page: &[u8]) -> bool {
    get_u16(page, 14) == 0
}

/// Stored checksum (`pd_checksum`).
pub fn page_get_checksum(page: &[u8]) -> u16 {
    get_u16(page, 8)
}

/// Compute and store the checksum of a page at block `blkno`
/// (`PageSetChecksumInplace`); new (all-zero) pages are left alone, as
/// PostgreSQL does.
pub fn page_set_checksum(page: &mut [u8], blkno: u32) {
    if !page_is_new(page) {
        let sum = pg_checksum_page(page, blkno);
        put_u16(page, 8, sum);
    }
}

/// Whether the stored checksum matches; a new page must be all zeros
/// (the checks of `PageIsVerifiedExtended`, without the header sanity part).
pub fn page_verify_checksum(page: &[u8], blkno: u32) -> bool {
    if page_is_new(page) {
        return page.iter().all(|&b| b == 0);
    }
    pg_checksum_page(page, blkno) == page_get_checksum(page)
}

/// Zero the free space between `pd_lower` and `pd_upper`, as a restored
/// full-page image with a hole has it.
pub fn page_zero_unused_space(page: &mut [u8]) -> Result<(), PageError> {
    assert_page_len(page);
    let hdr = PageHeaderData::read(page);
    hdr.check_bounds()?;
    page[usize::from(hdr.pd_lower)..usize::from(hdr.pd_upper)].fill(0);
    Ok(())
}

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const CHECKSUM_BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

#[inline]
fn checksum_comp(sum: &mut u32, value: u32) {
    let tmp = *sum ^ value;
    *sum = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
}

/// PostgreSQL's data page checksum (`pg_checksum_page`): 32 parallel
/// FNV-1a-style sums over the page read as little-endian `u32` words (with
/// `pd_checksum` taken as zero), two extra rounds of zeros, XOR-folded, mixed
/// with the block number and reduced to `1..=65535`.
///
/// # Panics
/// If `page` is not [`BLCKSZ`] bytes.
pub fn pg_checksum_page(page: &[u8], blkno: u32) -> u16 {
    assert_page_len(page);
    let mut sums = CHECKSUM_BASE_OFFSETS;
    for (row, chunk) in page.chunks_exact(4 * N_SUMS).enumerate() {
        for (j, sum) in sums.iter_mut().enumerate() {
            let mut word = get_u32(chunk, 4 * j);
            if row == 0 && j == 2 {
                // Bytes 8..10 are pd_checksum (low half of word 2): zero it.
                word &= 0xFFFF_0000;
            }
            checksum_comp(sum, word);
        }
    }
    for _ in 0..2 {
        for sum in sums.iter_mut() {
            checksum_comp(sum, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    ((folded % 65535) + 1) as u16
}

/// What kind of page [`mask_page`] treats a page as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// Heap page (no special space): `heap_mask`.
    Heap,
    /// B-tree page (16-byte `BTPageOpaqueData`): `btree_mask`.
    Btree,
    /// Anything else: only LSN and checksum are masked.
    Other,
}

impl PageKind {
    /// Guess the kind from the header: no special space and at least one
    /// line pointer means heap; a 16-byte special space whose last `u16`
    /// (`btpo_cycleid`) is at most `MAX_BT_CYCLE_ID` means B-tree (hash and
    /// GiST pages put page ids above it there). Everything else, including
    /// new pages, pages without line pointers (visibility map, FSM) and pages
    /// with an invalid header, is [`PageKind::Other`].
    pub fn detect(page: &[u8]) -> PageKind {
        assert_page_len(page);
        let hdr = PageHeaderData::read(page);
        if page_is_new(page) || hdr.check_bounds().is_err() {
            return PageKind::Other;
        }
        let special = usize::from(hdr.pd_special);
        if special == BLCKSZ {
            if hdr.max_offset_number() > 0 {
                PageKind::Heap
            } else {
                PageKind::Other
            }
        } else if BLCKSZ - special == BT_OPAQUE_SIZE && get_u16(page, BLCKSZ - 2) <= MAX_BT_CYCLE_ID
        {
            PageKind::Btree
        } else {
            PageKind::Other
        }
    }
}

/// Mask a page for comparison with another version of it, guessing its kind
/// with [`PageKind::detect`]. Two pages that PostgreSQL's
/// `wal_consistency_checking` would accept as equal mask to equal bytes.
///
/// Without a block number, the `t_ctid` of heap tuples that point at their
/// own slot (or hold a speculative-insertion token) is normalised to block 0;
/// use [`mask_page`] with the block number for the exact PostgreSQL masking.
pub fn mask_page_for_comparison(page: &[u8]) -> Vec<u8> {
    mask_page(page, PageKind::detect(page), None)
}

const MASK_MARKER: u8 = 0;
const BT_OPAQUE_SIZE: usize = 16;
const MAX_BT_CYCLE_ID: u16 = 0xFF7F;
const BTP_LEAF: u16 = 1 << 0;
const BTP_SPLIT_END: u16 = 1 << 5;
const BTP_HAS_GARBAGE: u16 = 1 << 6;
const LP_UNUSED: u32 = 0;
const LP_NORMAL: u32 = 1;
const HEAP_XMIN_COMMITTED: u16 = 0x0100;
const HEAP_XMIN_INVALID: u16 = 0x0200;
const HEAP_XMIN_FROZEN: u16 = HEAP_XMIN_COMMITTED | HEAP_XMIN_INVALID;
const HEAP_XMAX_COMMITTED: u16 = 0x0400;
const HEAP_XMAX_INVALID: u16 = 0x0800;
const HEAP_XACT_MASK: u16 = 0xFFF0;
const SPEC_TOKEN_OFFSET_NUMBER: u16 = 0xFFFE;
/// Size of the fixed part of `HeapTupleHeaderData` up to `t_hoff`.
const HEAP_TUPLE_HEADER_MIN: usize = 23;

/// Mask a page of the given kind the way PostgreSQL's `rm_mask` callbacks do
/// (`MASK_MARKER` is 0):
///
/// * all kinds: `pd_lsn` and `pd_checksum`;
/// * heap and B-tree: `pd_prune_xid`, the `PD_PAGE_FULL`, `PD_HAS_FREE_LINES`
///   and `PD_ALL_VISIBLE` flags, and the free space between `pd_lower` and
///   `pd_upper`;
/// * heap: per normal tuple the visibility hint bits of `t_infomask` (all of
///   `HEAP_XACT_MASK` unless xmin is frozen, else only the xmax hint bits)
///   and the command id; the ctid of speculative tuples; and the alignment
///   padding after every tuple with storage;
/// * B-tree: line pointer flags of leaf pages (every used item becomes
///   `LP_UNUSED`), `BTP_HAS_GARBAGE`, `BTP_SPLIT_END` and `btpo_cycleid`.
///
/// `blkno` is used to rewrite speculative ctids to `(blkno, offset)` as
/// `heap_mask` does; `None` normalises them as described at
/// [`mask_page_for_comparison`]. A page whose header bounds are invalid only
/// gets the header fields masked (PostgreSQL raises an error instead).
///
/// # Panics
/// If `page` is not [`BLCKSZ`] bytes.
pub fn mask_page(page: &[u8], kind: PageKind, blkno: Option<u32>) -> Vec<u8> {
    assert_page_len(page);
    let mut p = page.to_vec();
    // mask_page_lsn_and_checksum
    p[0..8].fill(MASK_MARKER);
    p[8..10].fill(MASK_MARKER);
    if kind == PageKind::Other {
        return p;
    }
    // mask_page_hint_bits
    put_u32(&mut p, 20, u32::from(MASK_MARKER));
    let flags = get_u16(&p, 10) & !(PD_PAGE_FULL | PD_HAS_FREE_LINES | PD_ALL_VISIBLE);
    put_u16(&mut p, 10, flags);

    let hdr = PageHeaderData::read(&p);
    if hdr.check_bounds().is_err() {
        return p;
    }
    // mask_unused_space
    p[usize::from(hdr.pd_lower)..usize::from(hdr.pd_upper)].fill(MASK_MARKER);
    match kind {
        PageKind::Heap => mask_heap_items(&mut p, &hdr, blkno),
        PageKind::Btree => mask_btree(&mut p, &hdr),
        PageKind::Other => {}
    }
    p
}

/// One line pointer: (offset, flags, length).
fn item_id(page: &[u8], off: u16) -> (usize, u32, usize) {
    let raw = get_u32(page, SIZE_OF_PAGE_HEADER_DATA + 4 * (usize::from(off) - 1));
    (
        (raw & 0x7FFF) as usize,
        (raw >> 15) & 0x3,
        (raw >> 17) as usize,
    )
}

fn mask_heap_items(p: &mut [u8], hdr: &PageHeaderData, blkno: Option<u32>) {
    for off in 1..=hdr.max_offset_number() {
        let (lp_off, lp_flags, lp_len) = item_id(p, off);
        if lp_len == 0 || lp_off + lp_len > BLCKSZ {
            continue;
        }
        if lp_flags == LP_NORMAL && lp_len >= HEAP_TUPLE_HEADER_MIN {
            let t = lp_off;
            let mut infomask = get_u16(p, t + 20);
            if infomask & HEAP_XMIN_FROZEN != HEAP_XMIN_FROZEN {
                infomask &= !HEAP_XACT_MASK;
            } else {
                infomask &= !(HEAP_XMAX_INVALID | HEAP_XMAX_COMMITTED);
            }
            put_u16(p, t + 20, infomask);
            // t_cid (t_field3)
            put_u32(p, t + 8, u32::from(MASK_MARKER));
            // t_ctid: bi_hi, bi_lo, ip_posid at 12, 14, 16.
            let posid = get_u16(p, t + 16);
            match blkno {
                Some(blk) if posid == SPEC_TOKEN_OFFSET_NUMBER => {
                    put_u16(p, t + 12, (blk >> 16) as u16);
                    put_u16(p, t + 14, blk as u16);
                    put_u16(p, t + 16, off);
                }
                None if posid == SPEC_TOKEN_OFFSET_NUMBER || posid == off => {
                    put_u32(p, t + 12, 0);
                    put_u16(p, t + 16, off);
                }
                _ => {}
            }
        }
        let padlen = maxalign(lp_len) - lp_len;
        let end = (lp_off + lp_len + padlen).min(BLCKSZ);
        p[lp_off + lp_len..end].fill(MASK_MARKER);
    }
}

fn mask_btree(p: &mut [u8], hdr: &PageHeaderData) {
    let special = usize::from(hdr.pd_special);
    if BLCKSZ - special != BT_OPAQUE_SIZE {
        return;
    }
    let flags_at = special + 12;
    let flags = get_u16(p, flags_at);
    if flags & BTP_LEAF != 0 {
        // mask_lp_flags
        for off in 1..=hdr.max_offset_number() {
            let at = SIZE_OF_PAGE_HEADER_DATA + 4 * (usize::from(off) - 1);
            let raw = get_u32(p, at);
            if (raw >> 15) & 0x3 != LP_UNUSED {
                put_u32(p, at, raw & !(0x3 << 15));
            }
        }
    }
    put_u16(p, flags_at, flags & !(BTP_HAS_GARBAGE | BTP_SPLIT_END));
    put_u16(p, special + 14, 0);
}

fn assert_page_len(page: &[u8]) {
    assert_eq!(page.len(), BLCKSZ, "a page must be {BLCKSZ} bytes");
}

fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::test_cluster::TestCluster;
    use std::path::Path;

    /// A heap page with `tuples` (each: infomask, tuple data length) laid out
    /// the way PageAddItem does: line pointers after the header, tuples
    /// MAXALIGNed from the end of the page downwards.
    fn heap_page(tuples: &[(u16, usize)]) -> Vec<u8> {
        let mut p = vec![0u8; BLCKSZ];
        let mut upper = BLCKSZ;
        for (i, &(infomask, len)) in tuples.iter().enumerate() {
            upper -= maxalign(len);
            let lp = (upper as u32) | (LP_NORMAL << 15) | ((len as u32) << 17);
            put_u32(&mut p, SIZE_OF_PAGE_HEADER_DATA + 4 * i, lp);
            put_u32(&mut p, upper, 1000 + i as u32); // t_xmin
            put_u32(&mut p, upper + 8, 7); // t_cid
            put_u16(&mut p, upper + 14, 0); // ctid block lo
            put_u16(&mut p, upper + 16, i as u16 + 1); // ctid posid (self)
            put_u16(&mut p, upper + 20, infomask);
            p[upper + 22] = 24; // t_hoff
            for b in &mut p[upper + 24..upper + len] {
                *b = 0xAB;
            }
        }
        PageHeaderData {
            pd_lsn: Lsn(0x1_0000_0010),
            pd_checksum: 0,
            pd_flags: 0,
            pd_lower: (SIZE_OF_PAGE_HEADER_DATA + 4 * tuples.len()) as u16,
            pd_upper: upper as u16,
            pd_special: BLCKSZ as u16,
            pd_pagesize_version: BLCKSZ as u16 | 4,
            pd_prune_xid: 0,
        }
        .write(&mut p);
        p
    }

    #[test]
    fn header_read_write_and_lsn_layout() {
        let mut p = heap_page(&[(0, 30)]);
        let mut h = PageHeaderData::read(&p);
        assert_eq!(h.pd_lsn, Lsn(0x1_0000_0010));
        // pd_lsn is stored as (xlogid, xrecoff), each little-endian.
        assert_eq!(&p[0..8], &[1, 0, 0, 0, 0x10, 0, 0, 0]);
        assert_eq!(h.max_offset_number(), 1);
        assert_eq!(h.pd_upper as usize, BLCKSZ - 32);
        h.pd_prune_xid = 0xDEAD_BEEF;
        h.write(&mut p);
        assert_eq!(&p[20..24], &0xDEAD_BEEFu32.to_le_bytes());
        page_set_lsn(&mut p, Lsn(0x0000_0002_0000_0001));
        assert_eq!(page_get_lsn(&p), Lsn(0x0000_0002_0000_0001));
        assert!(!page_is_new(&p));
        assert!(page_is_new(&[0u8; BLCKSZ]));
    }

    #[test]
    fn zero_unused_space_checks_bounds() {
        let mut p = heap_page(&[(0, 30)]);
        p[100] = 0x55;
        page_zero_unused_space(&mut p).unwrap();
        assert_eq!(p[100], 0);
        assert_eq!(p[BLCKSZ - 8], 0xAB, "tuple data is kept");
        put_u16(&mut p, 12, 9000);
        assert!(matches!(
            page_zero_unused_space(&mut p),
            Err(PageError::InvalidBounds { lower: 9000, .. })
        ));
    }

    #[test]
    fn checksum_properties() {
        let mut p = heap_page(&[(0, 40), (0, 50)]);
        let sum = pg_checksum_page(&p, 0);
        assert_ne!(sum, 0, "checksum is never 0");
        // The stored checksum field does not take part.
        put_u16(&mut p, 8, 0x1234);
        assert_eq!(pg_checksum_page(&p, 0), sum);
        // Block number and contents do.
        assert_ne!(pg_checksum_page(&p, 1), sum);
        p[BLCKSZ - 1] ^= 1;
        assert_ne!(pg_checksum_page(&p, 0), sum);
        page_set_checksum(&mut p, 3);
        assert!(page_verify_checksum(&p, 3));
        assert!(!page_verify_checksum(&p, 4));
        let mut new = vec![0u8; BLCKSZ];
        page_set_checksum(&mut new, 1);
        assert!(new.iter().all(|&b| b == 0), "new pages are not checksummed");
        assert!(page_verify_checksum(&new, 1));
    }

    #[test]
    fn heap_mask_hides_hints_but_not_data() {
        let a = heap_page(&[(0x0002, 30), (HEAP_XMIN_FROZEN, 41)]);
        assert_eq!(PageKind::detect(&a), PageKind::Heap);
        let mut b = a.clone();
        page_set_lsn(&mut b, Lsn(0x5_0000_0000));
        put_u16(&mut b, 8, 0x4242);
        put_u32(&mut b, 20, 900); // pd_prune_xid
        put_u16(
            &mut b,
            10,
            PD_PAGE_FULL | PD_HAS_FREE_LINES | PD_ALL_VISIBLE,
        );
        b[200] = 0x77; // free space
        let t0 = BLCKSZ - 32;
        let t1 = BLCKSZ - 32 - 48;
        // Tuple 0: xmin committed hint; tuple 1 (frozen): xmax invalid hint.
        put_u16(&mut b, t0 + 20, 0x0002 | HEAP_XMIN_COMMITTED);
        put_u16(&mut b, t1 + 20, HEAP_XMIN_FROZEN | HEAP_XMAX_INVALID);
        put_u32(&mut b, t0 + 8, 99); // t_cid
        b[t1 + 41] = 0x33; // alignment padding after tuple 1 (41 -> 48)
        assert_ne!(a, b);
        assert_eq!(mask_page_for_comparison(&a), mask_page_for_comparison(&b));
        assert_eq!(
            mask_page(&a, PageKind::Heap, Some(0)),
            mask_page(&b, PageKind::Heap, Some(0))
        );

        // Data and non-hint infomask bits are compared.
        let mut c = a.clone();
        c[t0 + 25] ^= 1;
        assert_ne!(mask_page_for_comparison(&a), mask_page_for_comparison(&c));
        let mut d = a.clone();
        put_u16(&mut d, t0 + 20, 0x0002 | 0x0001); // HEAP_HASNULL is not a hint
        assert_ne!(mask_page_for_comparison(&a), mask_page_for_comparison(&d));
        // For a frozen tuple, HEAP_XMIN_* bits are kept.
        let mut e = a.clone();
        put_u16(&mut e, t1 + 20, HEAP_XMIN_COMMITTED);
        assert_ne!(mask_page_for_comparison(&a), mask_page_for_comparison(&e));
    }

    #[test]
    fn heap_mask_speculative_ctid() {
        let a = heap_page(&[(0, 30)]);
        let t0 = BLCKSZ - 32;
        // Primary: speculative token in ctid; replica after redo: (7, 1).
        let mut spec = a.clone();
        put_u32(&mut spec, t0 + 12, 0x0001_0002);
        put_u16(&mut spec, t0 + 16, SPEC_TOKEN_OFFSET_NUMBER);
        let mut redone = a.clone();
        put_u16(&mut redone, t0 + 12, 0);
        put_u16(&mut redone, t0 + 14, 7);
        put_u16(&mut redone, t0 + 16, 1);
        assert_eq!(
            mask_page(&spec, PageKind::Heap, Some(7)),
            mask_page(&redone, PageKind::Heap, Some(7))
        );
        assert_eq!(
            mask_page_for_comparison(&spec),
            mask_page_for_comparison(&redone)
        );
    }

    fn btree_leaf() -> Vec<u8> {
        let mut p = vec![0u8; BLCKSZ];
        let special = BLCKSZ - BT_OPAQUE_SIZE;
        let upper = special - 16;
        put_u32(&mut p, 24, (upper as u32) | (LP_NORMAL << 15) | (16 << 17));
        p[upper..upper + 16].fill(0x11);
        PageHeaderData {
            pd_lsn: Lsn(5),
            pd_lower: 28,
            pd_upper: upper as u16,
            pd_special: special as u16,
            pd_pagesize_version: BLCKSZ as u16 | 4,
            ..Default::default()
        }
        .write(&mut p);
        put_u16(&mut p, special + 12, BTP_LEAF);
        p
    }

    #[test]
    fn btree_mask_hides_lp_flags_garbage_and_cycleid() {
        let a = btree_leaf();
        assert_eq!(PageKind::detect(&a), PageKind::Btree);
        let special = BLCKSZ - BT_OPAQUE_SIZE;
        let mut b = a.clone();
        let lp = get_u32(&b, 24);
        put_u32(&mut b, 24, lp | (0x3 << 15)); // LP_DEAD
        put_u16(
            &mut b,
            special + 12,
            BTP_LEAF | BTP_HAS_GARBAGE | BTP_SPLIT_END,
        );
        put_u16(&mut b, special + 14, 17);
        assert_eq!(mask_page_for_comparison(&a), mask_page_for_comparison(&b));
        let mut c = a.clone();
        put_u32(&mut c, special + 4, 99); // btpo_next matters
        assert_ne!(mask_page_for_comparison(&a), mask_page_for_comparison(&c));
        // A hash-like page id in the last two bytes is not a B-tree.
        let mut h = a.clone();
        put_u16(&mut h, special + 14, 0xFF80);
        assert_eq!(PageKind::detect(&h), PageKind::Other);
    }

    #[test]
    fn masking_never_panics_on_garbage() {
        let mut p = vec![0xFFu8; BLCKSZ];
        assert_eq!(PageKind::detect(&p), PageKind::Other);
        for kind in [PageKind::Heap, PageKind::Btree, PageKind::Other] {
            let m = mask_page(&p, kind, Some(1));
            assert_eq!(&m[0..10], &[0; 10]);
        }
        // Valid bounds, but line pointers pointing past the page.
        PageHeaderData {
            pd_lower: 8000,
            pd_upper: 8000,
            pd_special: BLCKSZ as u16,
            ..Default::default()
        }
        .write(&mut p);
        assert_eq!(PageKind::detect(&p), PageKind::Heap);
        let _ = mask_page(&p, PageKind::Heap, None);
    }

    proptest::proptest! {
        /// Masking and kind detection never panic on garbage headers and
        /// line pointers.
        #[test]
        fn masking_arbitrary_pages_never_panics(
            header in proptest::collection::vec(proptest::prelude::any::<u8>(), 24..=24),
            lps in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..64),
            fill in proptest::prelude::any::<u8>(),
            blkno in proptest::prelude::any::<Option<u32>>(),
        ) {
            let mut p = vec![fill; BLCKSZ];
            p[..24].copy_from_slice(&header);
            for (i, lp) in lps.iter().enumerate() {
                put_u32(&mut p, 24 + 4 * i, *lp);
            }
            let kind = PageKind::detect(&p);
            for k in [kind, PageKind::Heap, PageKind::Btree] {
                let m = mask_page(&p, k, blkno);
                proptest::prop_assert_eq!(m.len(), BLCKSZ);
            }
            let _ = pg_checksum_page(&p, 0);
        }
    }

    /// Relation segment files of a directory (names like `1259`, `1259_fsm`,
    /// `1259.1`).
    fn relation_files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn checksums_of_a_real_cluster_verify() {
        let Some(cluster) =
            TestCluster::init("checksums_of_a_real_cluster_verify", &["--data-checksums"])
        else {
            return;
        };
        let mut pages = 0;
        for sub in ["global", "base/1"] {
            for file in relation_files(&cluster.datadir.join(sub)) {
                let data = std::fs::read(&file).unwrap();
                assert_eq!(data.len() % BLCKSZ, 0, "{}", file.display());
                let name = file.file_name().unwrap().to_str().unwrap();
                let segno: u32 = name.split_once('.').map_or(0, |(_, s)| s.parse().unwrap());
                for (i, page) in data.chunks_exact(BLCKSZ).enumerate() {
                    let blkno = segno * crate::pg_constants::RELSEG_SIZE + i as u32;
                    assert!(
                        page_verify_checksum(page, blkno),
                        "{} block {blkno}: stored {:#06x}, computed {:#06x}",
                        file.display(),
                        page_get_checksum(page),
                        pg_checksum_page(page, blkno)
                    );
                    pages += 1;
                }
            }
        }
        assert!(pages > 500, "only {pages} pages checked");
    }

    #[test]
    fn real_hint_bit_changes_mask_equal() {
        let Some(mut cluster) =
            TestCluster::init("real_hint_bit_changes_mask_equal", &["--data-checksums"])
        else {
            return;
        };
        cluster.start("");
        let path = cluster.psql(
            "postgres",
            "CREATE TABLE h(a int PRIMARY KEY, b text);\n\
             INSERT INTO h SELECT g, repeat('x', g % 50) FROM generate_series(1, 200) g;\n\
             CHECKPOINT;\n\
             SELECT pg_relation_filepath('h');",
        );
        let heap_file = cluster.datadir.join(path.trim());
        let before = std::fs::read(&heap_file).unwrap();
        // Reading the rows sets hint bits; a checkpoint writes them out.
        cluster.psql("postgres", "SELECT count(*) FROM h;\nCHECKPOINT;");
        let after = std::fs::read(&heap_file).unwrap();
        let idx = cluster.psql("postgres", "SELECT pg_relation_filepath('h_pkey');");
        let index = std::fs::read(cluster.datadir.join(idx.trim())).unwrap();
        cluster.stop();

        let (b0, a0) = (&before[..BLCKSZ], &after[..BLCKSZ]);
        assert_ne!(b0, a0, "hint bits should have changed the page");
        assert_eq!(PageKind::detect(a0), PageKind::Heap);
        assert!(page_verify_checksum(a0, 0));
        assert_eq!(
            mask_page(b0, PageKind::Heap, Some(0)),
            mask_page(a0, PageKind::Heap, Some(0))
        );
        assert_eq!(mask_page_for_comparison(b0), mask_page_for_comparison(a0));
        for (blk, page) in index.chunks_exact(BLCKSZ).enumerate() {
            assert_eq!(PageKind::detect(page), PageKind::Btree, "index block {blk}");
            assert!(page_verify_checksum(page, blk as u32));
        }
    }
}
