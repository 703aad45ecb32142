//! Decoding one WAL record of PostgreSQL 15 into its parts: the fixed
//! header, block references (relation, fork, block, full-page image, per-block
//! data), the replication origin, the top-level xid and the main data
//! (`DecodeXLogRecord` and `RestoreBlockImage` of `xlogreader.c`).
//!
//! Records come from [`crate::waldecoder::WalStreamDecoder`]. Full-page
//! images are returned as whole `BLCKSZ` pages: the hole is zero-filled and
//! pglz, LZ4 and zstd compression (`wal_compression`) is undone. Every
//! malformed input gives a [`WalDecodeError`] naming the record's LSN; no
//! length is trusted before it is checked against the record.

use bytes::Bytes;
use utils::lsn::Lsn;

use crate::pg_constants::{
    BKPBLOCK_FORK_MASK, BKPBLOCK_HAS_DATA, BKPBLOCK_HAS_IMAGE, BKPBLOCK_SAME_REL,
    BKPBLOCK_WILL_INIT, BKPIMAGE_APPLY, BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_PGLZ,
    BKPIMAGE_COMPRESS_ZSTD, BKPIMAGE_HAS_HOLE, BLCKSZ, MAX_FORKNUM, RM_MAX_BUILTIN_ID,
    RM_MIN_CUSTOM_ID, RM_XLOG_ID, XLOG_SWITCH, XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT,
    XLR_BLOCK_ID_ORIGIN, XLR_BLOCK_ID_TOPLEVEL_XID, XLR_MAX_BLOCK_ID, XLR_RMGR_INFO_MASK,
};
use crate::xlog_utils::{
    xlog_record_crc, XLogRecord, XLOG_MAX_RECORD_SIZE, XLOG_SIZE_OF_XLOG_RECORD,
};

mod image;
pub mod pglz;

/// Flag bits of `fork_flags` (`BKPBLOCK_FLAG_MASK`).
pub const BKPBLOCK_FLAG_MASK: u8 = 0xF0;
/// All compression bits.
pub const BKPIMAGE_COMPRESSED_MASK: u8 =
    BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD;

/// Why WAL could not be decoded. Each variant names the LSN of the page or
/// record at fault. After an error the stream decoder stays failed: restart
/// it at a known-good LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalDecodeError {
    /// The decoder was asked to start at an LSN where no record or page can
    /// begin.
    #[error("cannot start decoding WAL at {lsn}: {detail}")]
    InvalidStart {
        /// The requested start.
        lsn: Lsn,
        /// What is wrong with it.
        detail: String,
    },
    /// A page header is not a valid PostgreSQL 15 WAL page header, or does not
    /// fit the stream (address, continuation length, segment size).
    #[error("invalid WAL page header at {lsn}: {detail}")]
    InvalidPageHeader {
        /// Start of the page.
        lsn: Lsn,
        /// What is wrong with it.
        detail: String,
    },
    /// A record's header or block headers are inconsistent.
    #[error("invalid WAL record at {lsn}: {detail}")]
    InvalidRecord {
        /// Start of the record.
        lsn: Lsn,
        /// What is wrong with it.
        detail: String,
    },
    /// A record's CRC does not match its contents.
    #[error("WAL record at {lsn} is corrupt: stored CRC {stored:08X}, computed {computed:08X}")]
    BadCrc {
        /// Start of the record.
        lsn: Lsn,
        /// `xl_crc` as stored.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// A full-page image cannot be restored (bad compressed data).
    #[error(
        "cannot restore the image of block reference {block_id} in WAL record at {lsn}: {detail}"
    )]
    BadImage {
        /// Start of the record.
        lsn: Lsn,
        /// Block reference id in the record.
        block_id: u8,
        /// What is wrong with it.
        detail: String,
    },
    /// Zeros where a record or page header should be: the end of the WAL
    /// written so far (PostgreSQL stops replay here too).
    #[error("end of WAL at {lsn}: {detail}")]
    EndOfWal {
        /// Where the zeros start.
        lsn: Lsn,
        /// What was found.
        detail: String,
    },
}

impl WalDecodeError {
    /// The LSN the error is about.
    pub fn lsn(&self) -> Lsn {
        match self {
            WalDecodeError::InvalidStart { lsn, .. }
            | WalDecodeError::InvalidPageHeader { lsn, .. }
            | WalDecodeError::InvalidRecord { lsn, .. }
            | WalDecodeError::BadCrc { lsn, .. }
            | WalDecodeError::BadImage { lsn, .. }
            | WalDecodeError::EndOfWal { lsn, .. } => *lsn,
        }
    }
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedWALRecord {
    /// Start LSN of the record.
    pub lsn: Lsn,
    /// End LSN of the record, MAXALIGNed (PostgreSQL's `EndRecPtr`); for an
    /// `XLOG_SWITCH` record, the start of the next segment.
    pub end_lsn: Lsn,
    /// Transaction id (`xl_xid`), 0 when none.
    pub xl_xid: u32,
    /// Start LSN of the previous record (`xl_prev`).
    pub xl_prev: Lsn,
    /// `xl_info`: rmgr bits (`& 0xF0`) and `XLR_*` bits.
    pub xl_info: u8,
    /// Resource manager id.
    pub xl_rmid: u8,
    /// Block references, in block id order.
    pub blocks: Vec<DecodedBkpBlock>,
    /// The rmgr's main data.
    pub main_data: Bytes,
    /// Replication origin (`XLR_BLOCK_ID_ORIGIN`), when the record has one.
    pub origin_id: Option<u16>,
    /// Top-level transaction id of a subtransaction's record
    /// (`XLR_BLOCK_ID_TOPLEVEL_XID`, written with `wal_level = logical`).
    pub toplevel_xid: Option<u32>,
}

impl DecodedWALRecord {
    /// The rmgr-specific bits of `xl_info` (`XLogRecGetInfo & ~XLR_INFO_MASK`).
    pub fn rmgr_info(&self) -> u8 {
        self.xl_info & XLR_RMGR_INFO_MASK
    }

    /// Whether this is an `XLOG_SWITCH` record (the rest of the segment is
    /// unused).
    pub fn is_xlog_switch(&self) -> bool {
        self.xl_rmid == RM_XLOG_ID && self.rmgr_info() == XLOG_SWITCH
    }

    /// The block reference with id `block_id`, if any.
    pub fn block(&self, block_id: u8) -> Option<&DecodedBkpBlock> {
        self.blocks.iter().find(|b| b.block_id == block_id)
    }
}

/// A block reference of a decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBkpBlock {
    /// Block reference id (0..=32), as used by the rmgr's redo code.
    pub block_id: u8,
    /// Tablespace OID of the relation.
    pub spcnode: u32,
    /// Database OID of the relation (0 for shared relations).
    pub dbnode: u32,
    /// Relfilenode of the relation.
    pub relnode: u32,
    /// Fork: 0 main, 1 FSM, 2 visibility map, 3 init.
    pub forknum: u8,
    /// Block number in the fork.
    pub blkno: u32,
    /// The raw `fork_flags` byte (`BKPBLOCK_*` bits and the fork number).
    pub flags: u8,
    /// The record carries a full-page image of the block.
    pub has_image: bool,
    /// The image is meant to be restored at redo (`BKPIMAGE_APPLY`); when
    /// false it was taken for `wal_consistency_checking` only, but it still
    /// shows the page as it stood after the record.
    pub apply_image: bool,
    /// Redo initializes the page from scratch (`BKPBLOCK_WILL_INIT`).
    pub will_init: bool,
    /// The record carries rmgr data for this block.
    pub has_data: bool,
    /// The full `BLCKSZ` page image: decompressed, hole zero-filled.
    pub image: Option<Bytes>,
    /// The rmgr data for this block (empty when `has_data` is false).
    pub data: Bytes,
}

/// Block header fields needed until the data is sliced out.
struct BlockHeader {
    block_id: u8,
    rel: (u32, u32, u32),
    fork_flags: u8,
    blkno: u32,
    data_len: u16,
    image: Option<ImageHeader>,
}

/// `XLogRecordBlockImageHeader` plus the hole length.
struct ImageHeader {
    bimg_len: u16,
    hole_offset: u16,
    hole_length: u16,
    bimg_info: u8,
}

/// A bounds-checked little-endian reader over the record's block headers.
struct Reader<'a> {
    buf: &'a [u8],
    lsn: Lsn,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WalDecodeError> {
        if self.buf.len() < N {
            return Err(WalDecodeError::InvalidRecord {
                lsn: self.lsn,
                detail: "record with invalid length: block headers run past the end of the record"
                    .to_string(),
            });
        }
        let (head, rest) = self.buf.split_at(N);
        self.buf = rest;
        Ok(head.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, WalDecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WalDecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, WalDecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
}

/// Decodes the complete record `record` that starts at `lsn` and ends at
/// `end_lsn` (as returned by the stream decoder), checking its length, CRC,
/// resource manager id and block headers the way PostgreSQL 15's
/// `DecodeXLogRecord` does, and restoring every full-page image.
///
/// `main_data` and block data share `record`'s memory.
pub fn decode_wal_record(
    lsn: Lsn,
    end_lsn: Lsn,
    record: Bytes,
) -> Result<DecodedWALRecord, WalDecodeError> {
    let invalid = |detail: String| WalDecodeError::InvalidRecord { lsn, detail };
    let hdr = XLogRecord::from_bytes(&record).ok_or_else(|| {
        invalid(format!(
            "{} bytes is shorter than the {XLOG_SIZE_OF_XLOG_RECORD}-byte record header",
            record.len()
        ))
    })?;
    check_record_header(lsn, &hdr)?;
    if hdr.xl_tot_len as usize != record.len() {
        return Err(invalid(format!(
            "xl_tot_len is {} but the record has {} bytes",
            hdr.xl_tot_len,
            record.len()
        )));
    }
    let computed = xlog_record_crc(&record);
    if computed != hdr.xl_crc {
        return Err(WalDecodeError::BadCrc {
            lsn,
            stored: hdr.xl_crc,
            computed,
        });
    }

    let mut reader = Reader {
        buf: &record[XLOG_SIZE_OF_XLOG_RECORD..],
        lsn,
    };
    let mut headers: Vec<BlockHeader> = Vec::new();
    let mut datatotal: u64 = 0;
    let mut main_data_len: u32 = 0;
    let mut origin_id = None;
    let mut toplevel_xid = None;
    let mut prev_rel: Option<(u32, u32, u32)> = None;
    while reader.buf.len() as u64 > datatotal {
        let block_id = reader.u8()?;
        match block_id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_data_len = u32::from(reader.u8()?);
                datatotal += u64::from(main_data_len);
                // By convention the main data header is the last one.
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_data_len = reader.u32()?;
                datatotal += u64::from(main_data_len);
                break;
            }
            XLR_BLOCK_ID_ORIGIN => origin_id = Some(reader.u16()?),
            XLR_BLOCK_ID_TOPLEVEL_XID => toplevel_xid = Some(reader.u32()?),
            0..=XLR_MAX_BLOCK_ID => {
                if let Some(last) = headers.last() {
                    if block_id <= last.block_id {
                        return Err(invalid(format!("out-of-order block_id {block_id}")));
                    }
                }
                let block = read_block_header(&mut reader, block_id, &mut prev_rel)?;
                datatotal += u64::from(block.data_len);
                if let Some(img) = &block.image {
                    datatotal += u64::from(img.bimg_len);
                }
                headers.push(block);
            }
            _ => return Err(invalid(format!("invalid block_id {block_id}"))),
        }
    }
    if reader.buf.len() as u64 != datatotal {
        return Err(invalid(format!(
            "record with invalid length: headers announce {datatotal} bytes of data, {} remain",
            reader.buf.len()
        )));
    }

    // The data follows the headers: per block its image then its data, in
    // block order, then the main data.
    let mut pos = record.len() - reader.buf.len();
    let mut blocks = Vec::with_capacity(headers.len());
    for h in headers {
        let image = match &h.image {
            Some(img) => {
                let stored = &record[pos..pos + usize::from(img.bimg_len)];
                pos += usize::from(img.bimg_len);
                Some(image::restore(lsn, h.block_id, img, stored)?)
            }
            None => None,
        };
        let data = record.slice(pos..pos + usize::from(h.data_len));
        pos += usize::from(h.data_len);
        blocks.push(DecodedBkpBlock {
            block_id: h.block_id,
            spcnode: h.rel.0,
            dbnode: h.rel.1,
            relnode: h.rel.2,
            forknum: h.fork_flags & BKPBLOCK_FORK_MASK,
            blkno: h.blkno,
            flags: h.fork_flags,
            has_image: h.image.is_some(),
            apply_image: h
                .image
                .as_ref()
                .is_some_and(|i| i.bimg_info & BKPIMAGE_APPLY != 0),
            will_init: h.fork_flags & BKPBLOCK_WILL_INIT != 0,
            has_data: h.fork_flags & BKPBLOCK_HAS_DATA != 0,
            image,
            data,
        });
    }
    let main_data = record.slice(pos..pos + main_data_len as usize);
    debug_assert_eq!(pos + main_data_len as usize, record.len());

    Ok(DecodedWALRecord {
        lsn,
        end_lsn,
        xl_xid: hdr.xl_xid,
        xl_prev: Lsn(hdr.xl_prev),
        xl_info: hdr.xl_info,
        xl_rmid: hdr.xl_rmid,
        blocks,
        main_data,
        origin_id,
        toplevel_xid,
    })
}

/// Checks of the fixed header that need nothing but the header
/// (`ValidXLogRecordHeader`, without the prev-link check).
pub(crate) fn check_record_header(lsn: Lsn, hdr: &XLogRecord) -> Result<(), WalDecodeError> {
    let invalid = |detail: String| WalDecodeError::InvalidRecord { lsn, detail };
    if (hdr.xl_tot_len as usize) < XLOG_SIZE_OF_XLOG_RECORD {
        return Err(invalid(format!(
            "invalid record length {}: expected at least {XLOG_SIZE_OF_XLOG_RECORD}",
            hdr.xl_tot_len
        )));
    }
    if hdr.xl_tot_len > XLOG_MAX_RECORD_SIZE {
        return Err(invalid(format!(
            "record length {} is larger than the maximum {XLOG_MAX_RECORD_SIZE}",
            hdr.xl_tot_len
        )));
    }
    if hdr.xl_rmid > RM_MAX_BUILTIN_ID && hdr.xl_rmid < RM_MIN_CUSTOM_ID {
        return Err(invalid(format!(
            "invalid resource manager ID {}",
            hdr.xl_rmid
        )));
    }
    Ok(())
}

/// Reads one `XLogRecordBlockHeader` with its image header, relation and
/// block number, checking them like `DecodeXLogRecord`.
fn read_block_header(
    reader: &mut Reader<'_>,
    block_id: u8,
    prev_rel: &mut Option<(u32, u32, u32)>,
) -> Result<BlockHeader, WalDecodeError> {
    let lsn = reader.lsn;
    let invalid = |detail: String| WalDecodeError::InvalidRecord {
        lsn,
        detail: format!("block reference {block_id}: {detail}"),
    };
    let fork_flags = reader.u8()?;
    let forknum = fork_flags & BKPBLOCK_FORK_MASK;
    if forknum > MAX_FORKNUM {
        return Err(invalid(format!("invalid fork number {forknum}")));
    }
    let data_len = reader.u16()?;
    let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
    if has_data && data_len == 0 {
        return Err(invalid(
            "BKPBLOCK_HAS_DATA set, but no data included".into(),
        ));
    }
    if !has_data && data_len != 0 {
        return Err(invalid(format!(
            "BKPBLOCK_HAS_DATA not set, but data length is {data_len}"
        )));
    }
    let image = if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        let bimg_len = reader.u16()?;
        let hole_offset = reader.u16()?;
        let bimg_info = reader.u8()?;
        let has_hole = bimg_info & BKPIMAGE_HAS_HOLE != 0;
        let compressed = bimg_info & BKPIMAGE_COMPRESSED_MASK != 0;
        let hole_length = if compressed {
            if has_hole {
                reader.u16()?
            } else {
                0
            }
        } else {
            // Uncompressed: the stored bytes are the page minus the hole.
            (BLCKSZ as u16).checked_sub(bimg_len).ok_or_else(|| {
                invalid(format!(
                    "block image length {bimg_len} is larger than a page"
                ))
            })?
        };
        if has_hole && (hole_offset == 0 || hole_length == 0 || usize::from(bimg_len) == BLCKSZ) {
            return Err(invalid(format!(
                "BKPIMAGE_HAS_HOLE set, but hole offset {hole_offset} length {hole_length} block image length {bimg_len}"
            )));
        }
        if !has_hole && (hole_offset != 0 || hole_length != 0) {
            return Err(invalid(format!(
                "BKPIMAGE_HAS_HOLE not set, but hole offset {hole_offset} length {hole_length}"
            )));
        }
        if compressed && usize::from(bimg_len) >= BLCKSZ {
            return Err(invalid(format!(
                "image compressed, but block image length is {bimg_len}"
            )));
        }
        if usize::from(hole_offset) + usize::from(hole_length) > BLCKSZ {
            return Err(invalid(format!(
                "hole offset {hole_offset} length {hole_length} pass the end of the page"
            )));
        }
        Some(ImageHeader {
            bimg_len,
            hole_offset,
            hole_length,
            bimg_info,
        })
    } else {
        None
    };
    let rel = if fork_flags & BKPBLOCK_SAME_REL == 0 {
        let rel = (reader.u32()?, reader.u32()?, reader.u32()?);
        *prev_rel = Some(rel);
        rel
    } else {
        prev_rel.ok_or_else(|| invalid("BKPBLOCK_SAME_REL set but no previous rel".into()))?
    };
    let blkno = reader.u32()?;
    Ok(BlockHeader {
        block_id,
        rel,
        fork_flags,
        blkno,
        data_len,
        image,
    })
}

#[cfg(test)]
mod tests;
