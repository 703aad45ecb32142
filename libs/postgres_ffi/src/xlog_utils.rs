//! The WAL file layout of PostgreSQL 15: segments, pages and their headers,
//! the fixed `XLogRecord` header, and the record CRC.
//!
//! Reading uses [`XLogPageHeaderData::from_bytes`],
//! [`XLogLongPageHeaderData::from_bytes`] and [`XLogRecord::from_bytes`]
//! (the stream decoder in [`crate::waldecoder`] builds on them). Writing WAL
//! (for example a segment holding a shutdown checkpoint for a base backup)
//! uses [`encode_wal_record`] to build a record with a correct CRC and
//! [`WalPageWriter`] to lay records out on pages with the right headers.
//!
//! The constants and layouts follow `access/xlog_internal.h` and
//! `access/xlogrecord.h` of PostgreSQL 15.

use bytes::{BufMut, Bytes, BytesMut};
use utils::lsn::Lsn;

use crate::pg_constants::{XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT};

// The WAL page size (`XLOG_BLCKSZ`), the default segment size (16 MiB; the
// size is fixed by `initdb --wal-segsize`, so functions that depend on it take
// it as a parameter) and the page magic of PostgreSQL 15 (0xD110) are defined
// once, in `pg_constants`.
pub use crate::pg_constants::{WAL_SEGMENT_SIZE, XLOG_BLCKSZ, XLOG_PAGE_MAGIC};

/// Smallest valid WAL segment size (1 MiB, `WalSegMinSize`).
pub const WAL_SEGMENT_MIN_SIZE: usize = 1024 * 1024;

/// Largest valid WAL segment size (1 GiB, `WalSegMaxSize`).
pub const WAL_SEGMENT_MAX_SIZE: usize = 1024 * 1024 * 1024;

/// `xlp_info` flag: the page starts with the continuation of a record that
/// began on an earlier page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `xlp_info` flag: the page has a long header (first page of a segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `xlp_info` flag: backup blocks starting on this page are optional.
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `xlp_info` flag: the page starts with an `XLOG_OVERWRITE_CONTRECORD` record
/// that replaces the missing continuation of a record aborted by a crash.
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// All `xlp_info` bits PostgreSQL 15 defines (`XLP_ALL_FLAGS`).
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// Size of a short page header, MAXALIGNed (`SizeOfXLogShortPHD`).
pub const XLOG_SIZE_OF_XLOG_SHORT_PHD: usize = 24;
/// Size of a long page header, MAXALIGNed (`SizeOfXLogLongPHD`).
pub const XLOG_SIZE_OF_XLOG_LONG_PHD: usize = 40;
/// Size of the fixed `XLogRecord` header (`SizeOfXLogRecord`).
pub const XLOG_SIZE_OF_XLOG_RECORD: usize = 24;
/// Offset of `xl_crc` in the `XLogRecord` header.
pub const XLOG_RECORD_CRC_OFFS: usize = 20;

/// Largest `xl_tot_len` accepted (`MaxAllocSize`, 1 GiB - 1, which bounds
/// records in PostgreSQL 15). Anything larger is corruption.
pub const XLOG_MAX_RECORD_SIZE: u32 = 0x3fff_ffff;

/// Alignment of WAL records (`MAXIMUM_ALIGNOF`).
pub const MAXALIGN: u64 = 8;

/// A WAL timeline id.
pub type TimeLineID = u32;
/// A WAL segment number (`XLogSegNo`).
pub type XLogSegNo = u64;

/// Whether `size` is a segment size PostgreSQL accepts (a power of two from
/// 1 MiB to 1 GiB).
pub fn is_valid_wal_segment_size(size: usize) -> bool {
    size.is_power_of_two() && (WAL_SEGMENT_MIN_SIZE..=WAL_SEGMENT_MAX_SIZE).contains(&size)
}

/// Number of the segment holding `lsn` (`XLByteToSeg`).
pub fn segment_number(lsn: Lsn, seg_size: usize) -> XLogSegNo {
    lsn.0 / seg_size as u64
}

/// Offset of `lsn` within its segment (`XLogSegmentOffset`).
pub fn segment_offset(lsn: Lsn, seg_size: usize) -> usize {
    (lsn.0 % seg_size as u64) as usize
}

/// LSN of byte `offset` of segment `segno` (`XLogSegNoOffsetToRecPtr`).
pub fn segment_lsn(segno: XLogSegNo, offset: usize, seg_size: usize) -> Lsn {
    Lsn(segno * seg_size as u64 + offset as u64)
}

/// Size of the page header at `lsn` if `lsn` is the start of a page: the long
/// header at a segment start, the short one at other page starts, and 0 in
/// the middle of a page.
pub fn page_header_size_at(lsn: Lsn, seg_size: usize) -> usize {
    if segment_offset(lsn, seg_size) == 0 {
        XLOG_SIZE_OF_XLOG_LONG_PHD
    } else if lsn.is_aligned(XLOG_BLCKSZ as u64) {
        XLOG_SIZE_OF_XLOG_SHORT_PHD
    } else {
        0
    }
}

fn segments_per_xlog_id(seg_size: usize) -> u64 {
    0x1_0000_0000 / seg_size as u64
}

/// File name of WAL segment `segno` on timeline `tli` (`XLogFileName`), such
/// as `000000010000000000000001`.
pub fn xlog_file_name(tli: TimeLineID, segno: XLogSegNo, seg_size: usize) -> String {
    let per_id = segments_per_xlog_id(seg_size);
    format!(
        "{:08X}{:08X}{:08X}",
        tli,
        (segno / per_id) as u32,
        (segno % per_id) as u32
    )
}

/// Whether `name` is a WAL segment file name (24 uppercase hex digits,
/// `IsXLogFileName`).
pub fn is_xlog_file_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// Whether `name` is a partial WAL segment file name (`<segment>.partial`).
pub fn is_partial_xlog_file_name(name: &str) -> bool {
    name.strip_suffix(".partial").is_some_and(is_xlog_file_name)
}

/// Timeline and segment number of a WAL segment file name
/// (`XLogFromFileName`), or `None` when `name` is not one.
pub fn parse_xlog_file_name(name: &str, seg_size: usize) -> Option<(TimeLineID, XLogSegNo)> {
    if !is_xlog_file_name(name) {
        return None;
    }
    let part = |r: std::ops::Range<usize>| u32::from_str_radix(&name[r], 16).ok();
    let tli = part(0..8)?;
    let log = u64::from(part(8..16)?);
    let seg = u64::from(part(16..24)?);
    Some((tli, log * segments_per_xlog_id(seg_size) + seg))
}

fn le_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The header at the start of every WAL page (`XLogPageHeaderData`),
/// 24 bytes on disk including 4 bytes of padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XLogPageHeaderData {
    /// [`XLOG_PAGE_MAGIC`] for PostgreSQL 15 pages.
    pub xlp_magic: u16,
    /// `XLP_*` flag bits.
    pub xlp_info: u16,
    /// Timeline of the first record on the page.
    pub xlp_tli: TimeLineID,
    /// LSN of the page start.
    pub xlp_pageaddr: u64,
    /// Bytes of a record continued from the previous page (including those
    /// on later pages), 0 when the page does not start with a continuation.
    pub xlp_rem_len: u32,
}

impl XLogPageHeaderData {
    /// Reads a header from the first [`XLOG_SIZE_OF_XLOG_SHORT_PHD`] bytes of
    /// `buf`, or `None` when `buf` is shorter. Nothing is validated.
    pub fn from_bytes(buf: &[u8]) -> Option<Self> {
        if buf.len() < XLOG_SIZE_OF_XLOG_SHORT_PHD {
            return None;
        }
        Some(Self {
            xlp_magic: le_u16(buf, 0),
            xlp_info: le_u16(buf, 2),
            xlp_tli: le_u32(buf, 4),
            xlp_pageaddr: le_u64(buf, 8),
            xlp_rem_len: le_u32(buf, 16),
        })
    }

    /// The 24 on-disk bytes (padding zeroed).
    pub fn encode(&self) -> [u8; XLOG_SIZE_OF_XLOG_SHORT_PHD] {
        let mut out = [0u8; XLOG_SIZE_OF_XLOG_SHORT_PHD];
        out[0..2].copy_from_slice(&self.xlp_magic.to_le_bytes());
        out[2..4].copy_from_slice(&self.xlp_info.to_le_bytes());
        out[4..8].copy_from_slice(&self.xlp_tli.to_le_bytes());
        out[8..16].copy_from_slice(&self.xlp_pageaddr.to_le_bytes());
        out[16..20].copy_from_slice(&self.xlp_rem_len.to_le_bytes());
        out
    }

    /// Whether [`XLP_LONG_HEADER`] is set.
    pub fn is_long(&self) -> bool {
        self.xlp_info & XLP_LONG_HEADER != 0
    }

    /// Size of this header on disk, long or short (`XLogPageHeaderSize`).
    pub fn size(&self) -> usize {
        if self.is_long() {
            XLOG_SIZE_OF_XLOG_LONG_PHD
        } else {
            XLOG_SIZE_OF_XLOG_SHORT_PHD
        }
    }
}

/// The long header of the first page of a segment
/// (`XLogLongPageHeaderData`), 40 bytes on disk including padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XLogLongPageHeaderData {
    /// The standard fields; `xlp_info` has [`XLP_LONG_HEADER`].
    pub std: XLogPageHeaderData,
    /// System identifier of the cluster (from `pg_control`).
    pub xlp_sysid: u64,
    /// WAL segment size, as a cross-check.
    pub xlp_seg_size: u32,
    /// WAL page size, as a cross-check ([`XLOG_BLCKSZ`]).
    pub xlp_xlog_blcksz: u32,
}

impl XLogLongPageHeaderData {
    /// Reads a long header from the first [`XLOG_SIZE_OF_XLOG_LONG_PHD`]
    /// bytes of `buf`, or `None` when `buf` is shorter. Nothing is validated.
    pub fn from_bytes(buf: &[u8]) -> Option<Self> {
        if buf.len() < XLOG_SIZE_OF_XLOG_LONG_PHD {
            return None;
        }
        Some(Self {
            std: XLogPageHeaderData::from_bytes(buf)?,
            xlp_sysid: le_u64(buf, 24),
            xlp_seg_size: le_u32(buf, 32),
            xlp_xlog_blcksz: le_u32(buf, 36),
        })
    }

    /// The 40 on-disk bytes (padding zeroed).
    pub fn encode(&self) -> [u8; XLOG_SIZE_OF_XLOG_LONG_PHD] {
        let mut out = [0u8; XLOG_SIZE_OF_XLOG_LONG_PHD];
        out[..XLOG_SIZE_OF_XLOG_SHORT_PHD].copy_from_slice(&self.std.encode());
        out[24..32].copy_from_slice(&self.xlp_sysid.to_le_bytes());
        out[32..36].copy_from_slice(&self.xlp_seg_size.to_le_bytes());
        out[36..40].copy_from_slice(&self.xlp_xlog_blcksz.to_le_bytes());
        out
    }
}

/// The fixed header of every WAL record (`XLogRecord`), 24 bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XLogRecord {
    /// Total length of the record, this header included.
    pub xl_tot_len: u32,
    /// Transaction id, 0 when none.
    pub xl_xid: u32,
    /// Start LSN of the previous record.
    pub xl_prev: u64,
    /// Flag bits: low 4 for the WAL machinery, high 4 for the rmgr.
    pub xl_info: u8,
    /// Resource manager id.
    pub xl_rmid: u8,
    /// CRC32C of the record, see [`xlog_record_crc`].
    pub xl_crc: u32,
}

impl XLogRecord {
    /// Reads a header from the first [`XLOG_SIZE_OF_XLOG_RECORD`] bytes of
    /// `buf`, or `None` when `buf` is shorter. Nothing is validated.
    pub fn from_bytes(buf: &[u8]) -> Option<Self> {
        if buf.len() < XLOG_SIZE_OF_XLOG_RECORD {
            return None;
        }
        Some(Self {
            xl_tot_len: le_u32(buf, 0),
            xl_xid: le_u32(buf, 4),
            xl_prev: le_u64(buf, 8),
            xl_info: buf[16],
            xl_rmid: buf[17],
            xl_crc: le_u32(buf, 20),
        })
    }

    /// The 24 on-disk bytes (padding zeroed).
    pub fn encode(&self) -> [u8; XLOG_SIZE_OF_XLOG_RECORD] {
        let mut out = [0u8; XLOG_SIZE_OF_XLOG_RECORD];
        out[0..4].copy_from_slice(&self.xl_tot_len.to_le_bytes());
        out[4..8].copy_from_slice(&self.xl_xid.to_le_bytes());
        out[8..16].copy_from_slice(&self.xl_prev.to_le_bytes());
        out[16] = self.xl_info;
        out[17] = self.xl_rmid;
        out[20..24].copy_from_slice(&self.xl_crc.to_le_bytes());
        out
    }
}

/// CRC32C of a whole record as PostgreSQL computes it: over the bytes after
/// the fixed header, then over the header up to `xl_crc`. `record` must be
/// at least [`XLOG_SIZE_OF_XLOG_RECORD`] bytes long.
pub fn xlog_record_crc(record: &[u8]) -> u32 {
    assert!(
        record.len() >= XLOG_SIZE_OF_XLOG_RECORD,
        "a WAL record has a 24-byte header"
    );
    let crc = crc32c::crc32c(&record[XLOG_SIZE_OF_XLOG_RECORD..]);
    crc32c::crc32c_append(crc, &record[..XLOG_RECORD_CRC_OFFS])
}

/// Builds a complete WAL record without block references: the header with
/// `xl_tot_len` and a correct `xl_crc`, the main-data header (short form
/// below 256 bytes, long form above, none when `main_data` is empty) and
/// `main_data`. `info` is stored as given (rmgr bits and `XLR_*` bits).
///
/// Panics when the record would exceed [`XLOG_MAX_RECORD_SIZE`].
pub fn encode_wal_record(rmid: u8, info: u8, xid: u32, prev: Lsn, main_data: &[u8]) -> Bytes {
    let data_hdr = match main_data.len() {
        0 => 0,
        1..=255 => 2,
        _ => 5,
    };
    let total = XLOG_SIZE_OF_XLOG_RECORD + data_hdr + main_data.len();
    assert!(
        total <= XLOG_MAX_RECORD_SIZE as usize,
        "WAL record of {total} bytes is too long"
    );
    let mut buf = BytesMut::with_capacity(total);
    let header = XLogRecord {
        xl_tot_len: total as u32,
        xl_xid: xid,
        xl_prev: prev.0,
        xl_info: info,
        xl_rmid: rmid,
        xl_crc: 0,
    };
    buf.put_slice(&header.encode());
    match data_hdr {
        0 => {}
        2 => {
            buf.put_u8(XLR_BLOCK_ID_DATA_SHORT);
            buf.put_u8(main_data.len() as u8);
        }
        _ => {
            buf.put_u8(XLR_BLOCK_ID_DATA_LONG);
            buf.put_u32_le(main_data.len() as u32);
        }
    }
    buf.put_slice(main_data);
    let crc = xlog_record_crc(&buf);
    buf[XLOG_RECORD_CRC_OFFS..XLOG_SIZE_OF_XLOG_RECORD].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

/// Lays complete records out as a WAL byte stream: pads each record start
/// to 8 bytes, writes a page header at every page start (long at segment
/// starts), and splits records across pages with `XLP_FIRST_IS_CONTRECORD`
/// and `xlp_rem_len`, as PostgreSQL's `XLogInsert` does.
///
/// The bytes produced start at the writer's start LSN; write them at that
/// offset of the segment file(s). A writer started in the middle of a page
/// assumes that page's header is already written.
#[derive(Debug)]
pub struct WalPageWriter {
    start: Lsn,
    buf: BytesMut,
    tli: TimeLineID,
    sysid: u64,
    seg_size: usize,
    last_record: Option<Lsn>,
}

impl WalPageWriter {
    /// A writer whose first byte is at `start` (8-byte aligned), for
    /// timeline `tli`, a cluster with system id `sysid` and segments of
    /// `seg_size` bytes.
    ///
    /// Panics on an unaligned `start`, on `start` inside a page header, or on
    /// an invalid `seg_size`: these are programming errors.
    pub fn new(start: Lsn, tli: TimeLineID, sysid: u64, seg_size: usize) -> Self {
        assert!(
            start.is_aligned(MAXALIGN),
            "WAL start {start} is not aligned"
        );
        assert!(
            is_valid_wal_segment_size(seg_size),
            "invalid WAL segment size {seg_size}"
        );
        let in_page = start.0 % XLOG_BLCKSZ as u64;
        let header = if segment_offset(start, seg_size) < XLOG_BLCKSZ {
            XLOG_SIZE_OF_XLOG_LONG_PHD
        } else {
            XLOG_SIZE_OF_XLOG_SHORT_PHD
        };
        assert!(
            in_page == 0 || in_page >= header as u64,
            "WAL start {start} is inside a page header"
        );
        Self {
            start,
            buf: BytesMut::new(),
            tli,
            sysid,
            seg_size,
            last_record: None,
        }
    }

    /// The LSN of the next byte to be written.
    pub fn lsn(&self) -> Lsn {
        Lsn(self.start.0 + self.buf.len() as u64)
    }

    /// Start LSN of the last record appended, to use as the next `xl_prev`.
    pub fn last_record(&self) -> Option<Lsn> {
        self.last_record
    }

    /// Bytes written so far, starting at the start LSN.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Consumes the writer, returning the bytes written.
    pub fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }

    fn write_page_header(&mut self, rem_len: u32) {
        let lsn = self.lsn();
        let std = XLogPageHeaderData {
            xlp_magic: XLOG_PAGE_MAGIC,
            xlp_info: if rem_len > 0 {
                XLP_FIRST_IS_CONTRECORD
            } else {
                0
            },
            xlp_tli: self.tli,
            xlp_pageaddr: lsn.0,
            xlp_rem_len: rem_len,
        };
        if segment_offset(lsn, self.seg_size) == 0 {
            let long = XLogLongPageHeaderData {
                std: XLogPageHeaderData {
                    xlp_info: std.xlp_info | XLP_LONG_HEADER,
                    ..std
                },
                xlp_sysid: self.sysid,
                xlp_seg_size: self.seg_size as u32,
                xlp_xlog_blcksz: XLOG_BLCKSZ as u32,
            };
            self.buf.put_slice(&long.encode());
        } else {
            self.buf.put_slice(&std.encode());
        }
    }

    fn at_page_start(&self) -> bool {
        self.lsn().is_aligned(XLOG_BLCKSZ as u64)
    }

    /// Appends a complete record (as built by [`encode_wal_record`] or taken
    /// from a decoder) and returns its start LSN and its end LSN (the
    /// MAXALIGNed position after it, PostgreSQL's `EndRecPtr`).
    ///
    /// Panics on a record shorter than its header or longer than
    /// [`XLOG_MAX_RECORD_SIZE`].
    pub fn append_record(&mut self, record: &[u8]) -> (Lsn, Lsn) {
        assert!(
            (XLOG_SIZE_OF_XLOG_RECORD..=XLOG_MAX_RECORD_SIZE as usize).contains(&record.len()),
            "WAL record of {} bytes",
            record.len()
        );
        self.pad_to(self.lsn().align());
        if self.at_page_start() {
            self.write_page_header(0);
        }
        let start = self.lsn();
        let mut rest = record;
        while !rest.is_empty() {
            if self.at_page_start() {
                self.write_page_header(rest.len() as u32);
            }
            let room = XLOG_BLCKSZ - (self.lsn().0 % XLOG_BLCKSZ as u64) as usize;
            let n = room.min(rest.len());
            self.buf.put_slice(&rest[..n]);
            rest = &rest[n..];
        }
        self.last_record = Some(start);
        (start, self.lsn().align())
    }

    /// Writes zeros up to `lsn` without page headers, as PostgreSQL leaves
    /// the rest of a segment after an `XLOG_SWITCH` record or the tail of the
    /// last page. Panics if `lsn` is behind the current position.
    pub fn pad_to(&mut self, lsn: Lsn) {
        let n = lsn
            .checked_sub(self.lsn())
            .expect("cannot pad WAL backwards");
        self.buf.put_bytes(0, n as usize);
    }

    /// Zero-fills the rest of the current segment (after an `XLOG_SWITCH`
    /// record). A no-op at a segment start.
    pub fn pad_to_segment_end(&mut self) {
        let lsn = self.lsn().align_up(self.seg_size as u64);
        self.pad_to(lsn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            xlog_file_name(1, 1, WAL_SEGMENT_SIZE),
            "000000010000000000000001"
        );
        assert_eq!(
            xlog_file_name(2, 0x1_0005, WAL_SEGMENT_SIZE),
            "000000020000010000000005"
        );
        // 256 segments of 16 MiB per xlog id.
        assert_eq!(
            xlog_file_name(1, 257, WAL_SEGMENT_SIZE),
            "000000010000000100000001"
        );
        assert_eq!(
            xlog_file_name(1, 4097, WAL_SEGMENT_MIN_SIZE),
            "000000010000000100000001"
        );
        assert_eq!(
            parse_xlog_file_name("000000010000000100000001", WAL_SEGMENT_SIZE),
            Some((1, 257))
        );
        assert_eq!(
            parse_xlog_file_name("00000001000000010000000g", WAL_SEGMENT_SIZE),
            None
        );
        assert_eq!(parse_xlog_file_name("0000000100", WAL_SEGMENT_SIZE), None);
        assert!(is_partial_xlog_file_name(
            "000000010000000100000001.partial"
        ));
        assert!(!is_partial_xlog_file_name("000000010000000100000001"));
        assert!(!is_xlog_file_name("00000001000000010000000a"));
    }

    #[test]
    fn segment_math() {
        let lsn = Lsn(3 * WAL_SEGMENT_SIZE as u64 + 100);
        assert_eq!(segment_number(lsn, WAL_SEGMENT_SIZE), 3);
        assert_eq!(segment_offset(lsn, WAL_SEGMENT_SIZE), 100);
        assert_eq!(segment_lsn(3, 100, WAL_SEGMENT_SIZE), lsn);
        assert_eq!(
            page_header_size_at(Lsn(WAL_SEGMENT_SIZE as u64), WAL_SEGMENT_SIZE),
            40
        );
        assert_eq!(page_header_size_at(Lsn(8192), WAL_SEGMENT_SIZE), 24);
        assert_eq!(page_header_size_at(Lsn(8200), WAL_SEGMENT_SIZE), 0);
        assert!(is_valid_wal_segment_size(WAL_SEGMENT_SIZE));
        assert!(!is_valid_wal_segment_size(3 << 20));
        assert!(!is_valid_wal_segment_size(512 * 1024));
    }

    #[test]
    fn headers_round_trip() {
        let short = XLogPageHeaderData {
            xlp_magic: XLOG_PAGE_MAGIC,
            xlp_info: XLP_FIRST_IS_CONTRECORD,
            xlp_tli: 7,
            xlp_pageaddr: 0x1_2345_6000,
            xlp_rem_len: 99,
        };
        let bytes = short.encode();
        assert_eq!(&bytes[..2], &[0x10, 0xD1]);
        assert_eq!(XLogPageHeaderData::from_bytes(&bytes), Some(short));
        assert_eq!(XLogPageHeaderData::from_bytes(&bytes[..23]), None);
        assert_eq!(short.size(), 24);

        let long = XLogLongPageHeaderData {
            std: XLogPageHeaderData {
                xlp_info: XLP_LONG_HEADER,
                ..short
            },
            xlp_sysid: 0x0102_0304_0506_0708,
            xlp_seg_size: WAL_SEGMENT_SIZE as u32,
            xlp_xlog_blcksz: XLOG_BLCKSZ as u32,
        };
        let bytes = long.encode();
        assert_eq!(XLogLongPageHeaderData::from_bytes(&bytes), Some(long));
        assert_eq!(XLogLongPageHeaderData::from_bytes(&bytes[..39]), None);
        assert_eq!(long.std.size(), 40);
    }

    #[test]
    fn record_encoding() {
        let rec = encode_wal_record(0, 0x40, 0, Lsn(0x100), &[]);
        assert_eq!(rec.len(), 24);
        let hdr = XLogRecord::from_bytes(&rec).unwrap();
        assert_eq!(hdr.xl_tot_len, 24);
        assert_eq!(hdr.xl_prev, 0x100);
        assert_eq!(hdr.xl_crc, xlog_record_crc(&rec));

        let rec = encode_wal_record(1, 0x10, 5, Lsn(8), &[7; 10]);
        assert_eq!(rec.len(), 24 + 2 + 10);
        assert_eq!(&rec[24..26], &[XLR_BLOCK_ID_DATA_SHORT, 10]);

        let rec = encode_wal_record(1, 0x10, 5, Lsn(8), &[7; 300]);
        assert_eq!(rec.len(), 24 + 5 + 300);
        assert_eq!(rec[24], XLR_BLOCK_ID_DATA_LONG);
        assert_eq!(&rec[25..29], &300u32.to_le_bytes());
        let hdr = XLogRecord::from_bytes(&rec).unwrap();
        assert_eq!(XLogRecord::from_bytes(&hdr.encode()), Some(hdr));
    }

    /// The record CRC covers the data after the header, then the header up
    /// to `xl_crc` (the golden tests check it against PostgreSQL's records).
    #[test]
    fn crc_matches_crc32c_definition() {
        // CRC-32C (Castagnoli) of "123456789" is E3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let rec = encode_wal_record(0, 0x40, 0, Lsn(0x0522_A368), &[]);
        let mut whole = rec[24..].to_vec();
        whole.extend_from_slice(&rec[..20]);
        assert_eq!(xlog_record_crc(&rec), crc32c::crc32c(&whole));
    }

    #[test]
    fn writer_splits_records_and_writes_headers() {
        let seg = WAL_SEGMENT_MIN_SIZE;
        let mut w = WalPageWriter::new(Lsn(seg as u64), 1, 42, seg);
        let big = encode_wal_record(1, 0, 1, Lsn(0), &vec![1u8; 3 * XLOG_BLCKSZ]);
        let (start, end) = w.append_record(&big);
        assert_eq!(start, Lsn(seg as u64 + 40));
        let bytes = w.bytes();
        let long = XLogLongPageHeaderData::from_bytes(bytes).unwrap();
        assert_eq!(long.std.xlp_info, XLP_LONG_HEADER);
        assert_eq!(long.xlp_sysid, 42);
        let second = XLogPageHeaderData::from_bytes(&bytes[XLOG_BLCKSZ..]).unwrap();
        assert_eq!(second.xlp_info, XLP_FIRST_IS_CONTRECORD);
        assert_eq!(second.xlp_pageaddr, seg as u64 + XLOG_BLCKSZ as u64);
        assert_eq!(second.xlp_rem_len as usize, big.len() - (XLOG_BLCKSZ - 40));
        // 40 + 3 page headers of 24 bytes.
        assert_eq!(
            end,
            Lsn(seg as u64 + (40 + 3 * 24 + big.len()) as u64).align()
        );
        assert_eq!(w.last_record(), Some(start));
        w.pad_to_segment_end();
        assert_eq!(w.lsn(), Lsn(2 * seg as u64));
        w.pad_to_segment_end();
        assert_eq!(w.lsn(), Lsn(2 * seg as u64));
    }

    #[test]
    #[should_panic(expected = "inside a page header")]
    fn writer_rejects_start_in_header() {
        WalPageWriter::new(Lsn(8192 + 8), 1, 1, WAL_SEGMENT_SIZE);
    }
}
