//! Delta and image layer files: the immutable on-disk form of a layer
//! (DESIGN.md section 3). [`LayerWriter`] writes one, [`LayerReader`] reads
//! and checks one.
//!
//! # Format (version 3)
//!
//! All integers are little-endian. Keys are the 18-byte big-endian
//! [`Key::to_bytes`](pageserver_api::key::Key::to_bytes) encoding.
//!
//! ```text
//! header (99 bytes)
//!   magic            8   b"PSLAYER\0"
//!   format version   2   u16, currently 3 (1 and 2 are still read)
//!   kind             1   0 = delta, 1 = image
//!   tenant id       16
//!   timeline id     16
//!   key range       36   start, end (exclusive)
//!   LSN range       16   start, end (exclusive) as u64; image: lsn, lsn + 1
//!   header CRC       4   CRC32C of the 95 bytes above
//! value blobs, between header and index
//!   stored length    4   u32
//!   flags            1   bit 0 = zstd-compressed; bit 1 = page image (see
//!                        below); other bits must be 0
//!   blob CRC         4   CRC32C of the flags byte followed by the stored bytes
//!   stored bytes
//! index, at `index offset`
//!   entries         38 each: key (18), lsn (u64), blob offset (u64),
//!                   blob length (u32, blob header included),
//!                   sorted by (key, lsn), no duplicates
//!   index CRC        4   CRC32C of the entries
//! footer (28 bytes, at the very end)
//!   index offset     8   u64
//!   entry count      8   u64
//!   file CRC         4   CRC32C of every byte of the file before this field
//!   magic            8   b"PSLAYER\0"
//! ```
//!
//! The index gives every blob's extent, so a reader never trusts a stored
//! length to size a read: extents lie between header and index and do not
//! overlap; the stored length must fill the extent exactly. Blobs may come in
//! any order and leave gaps. Compaction and image layer creation write them
//! in index order, back to back; an L0 layer is its in-memory layer's
//! ephemeral file, finished in place, so its blobs are in arrival (LSN)
//! order, and a value replaced while the layer was open leaves a gap.
//!
//! A page image blob (flag bit 1) holds a value that is exactly the binary
//! form of a page image ([`Value::IMAGE_TAG`], the `u64` page length, the
//! page): only the page is stored (compressed when bit 0 is set too), and a
//! reader puts the 9 bytes before it back. Writers store every value of
//! that form so, which lets the write path compress a page straight from
//! the caller's buffer, without first copying it behind its prefix.
//!
//! Version 2 differed only in the flags: bit 1 is not used, every value is
//! stored whole. Version 1 also differed in the index: 34-byte entries
//! without the length, blobs in index order tiling the space between
//! header and index exactly (each extent ends where the next blob starts).
//!
//! [`Value::IMAGE_TAG`]: pageserver_api::value::Value::IMAGE_TAG
//!
//! Compressed blobs hold one zstd frame with its content size;
//! the writer only compresses values up to [`MAX_COMPRESSIBLE_VALUE`] bytes
//! and the reader refuses frames that claim more, so decompression is
//! bounded too.
//!
//! Opening a file checks header, footer and index; each value read is checked
//! against its blob CRC; [`LayerReader::verify`] also checks the whole-file
//! CRC. A corrupt file gives [`LayerError::Corrupt`] with the file and the
//! offset, never wrong data.

pub(crate) mod crc;
mod reader;
#[cfg(test)]
pub(crate) mod tests;
mod writer;

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pageserver_api::key::{Key, KEY_SIZE};
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

pub(crate) use reader::decode_stored;
pub use reader::{LayerReader, MappedLayer, RawValue, RawValueIter};
pub use writer::LayerWriter;
pub(crate) use writer::{
    finish_in_place, BlobInfo, ValueCompressor, PREALLOCATION_CHUNK, WRITEBACK_CHUNK,
};

/// What went wrong writing or reading a layer file. Every message names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The file system failed.
    #[error("I/O error on layer file {}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file's content is not a valid layer file; it must not be served
    /// and should be downloaded again.
    #[error("layer file {} is corrupt at offset {offset}: {what}", path.display())]
    Corrupt {
        /// The corrupt file.
        path: PathBuf,
        /// Byte offset of the bad data in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The caller broke a rule of the API (order of values, ranges); nothing
    /// was written. The message names the file.
    #[error("{0}")]
    Misuse(String),
    /// A layer that is not resident could not be downloaded.
    #[error("cannot download layer {layer} from remote object {object}: {reason}")]
    Download {
        /// The layer name.
        layer: String,
        /// The remote object.
        object: String,
        /// Why (after retries).
        reason: String,
    },
}

impl LayerError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        LayerError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> Self {
        LayerError::Corrupt {
            path: path.to_owned(),
            offset,
            what: what.into(),
        }
    }
}

/// Magic at the start and at the end of every layer file.
const MAGIC: [u8; 8] = *b"PSLAYER\0";
/// The format version written.
const FORMAT_VERSION: u16 = 3;
/// The oldest format version still read.
const OLDEST_FORMAT_VERSION: u16 = 1;
const KIND_DELTA: u8 = 0;
const KIND_IMAGE: u8 = 1;

/// Size of the header, including its CRC.
pub(crate) const HEADER_SIZE: usize = 99;
/// Offset of the header CRC.
const HEADER_CRC_OFFSET: usize = HEADER_SIZE - 4;
/// Size of a blob's length, flags and CRC.
pub(crate) const BLOB_HEADER_SIZE: usize = 9;
/// Flag bit: stored bytes are a zstd frame.
pub(crate) const FLAG_ZSTD: u8 = 1;
/// Flag bit (format version 3): the value is a serialized page image, of
/// which only the page is stored
/// ([`Value::serialized_image_page`](pageserver_api::value::Value::serialized_image_page)).
pub(crate) const FLAG_PAGE_IMAGE: u8 = 2;
/// Size of one index entry.
pub(crate) const INDEX_ENTRY_SIZE: usize = KEY_SIZE + 20;
/// Size of one index entry in format version 1 (no blob length).
const INDEX_ENTRY_SIZE_V1: usize = KEY_SIZE + 16;
/// Size of the footer.
const FOOTER_SIZE: usize = 28;
/// Offset of the file CRC within the footer.
const FOOTER_CRC_OFFSET: usize = 16;

/// Values larger than this are stored uncompressed even when compression is
/// asked for; a reader refuses compressed blobs that expand beyond it.
pub const MAX_COMPRESSIBLE_VALUE: usize = 1 << 20;
/// zstd level for compressed values: fast, still most of the gain for pages.
/// At level -1 zstd leaves literals uncompressed, which is where half-random
/// pages lose most time: on `storage_bench`'s pages, levels 1 and 3 take
/// 2.4-3.5x as long per page for the same size ratio (0.54), and levels -2
/// to -5 take longer and compress less (0.57-0.60).
pub const ZSTD_LEVEL: i32 = -1;

/// The fixed-size header: everything known about the file before its values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    /// Format version: [`FORMAT_VERSION`] for files written now.
    version: u16,
    is_delta: bool,
    tenant_id: TenantId,
    timeline_id: TimelineId,
    key_range: Range<Key>,
    lsn_range: Range<Lsn>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn key_at(b: &[u8], at: usize) -> Key {
    let mut a = [0u8; KEY_SIZE];
    a.copy_from_slice(&b[at..at + KEY_SIZE]);
    key_from_array(a)
}

/// Every 18-byte array is a key.
fn key_from_array(a: [u8; KEY_SIZE]) -> Key {
    Key::from_slice(&a).unwrap_or(Key::MIN)
}

/// CRC32C of a blob's flags byte followed by its stored bytes.
fn blob_crc(flags: u8, stored: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[flags]), stored)
}

impl Header {
    fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10] = if self.is_delta {
            KIND_DELTA
        } else {
            KIND_IMAGE
        };
        b[11..27].copy_from_slice(self.tenant_id.as_bytes());
        b[27..43].copy_from_slice(self.timeline_id.as_bytes());
        b[43..61].copy_from_slice(&self.key_range.start.to_bytes());
        b[61..79].copy_from_slice(&self.key_range.end.to_bytes());
        b[79..87].copy_from_slice(&self.lsn_range.start.0.to_le_bytes());
        b[87..95].copy_from_slice(&self.lsn_range.end.0.to_le_bytes());
        let crc = crc32c::crc32c(&b[..HEADER_CRC_OFFSET]);
        b[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The blob flag bits this file's format version uses.
    fn known_flags(&self) -> u8 {
        if self.version >= 3 {
            FLAG_ZSTD | FLAG_PAGE_IMAGE
        } else {
            FLAG_ZSTD
        }
    }

    /// Reads and checks a header; `path` is only for errors.
    fn decode(b: &[u8; HEADER_SIZE], path: &Path) -> Result<Header, LayerError> {
        if b[0..8] != MAGIC {
            return Err(LayerError::corrupt(path, 0, "bad magic: not a layer file"));
        }
        let stored_crc = u32_at(b, HEADER_CRC_OFFSET);
        if crc32c::crc32c(&b[..HEADER_CRC_OFFSET]) != stored_crc {
            return Err(LayerError::corrupt(
                path,
                HEADER_CRC_OFFSET as u64,
                "header checksum mismatch",
            ));
        }
        let version = u16_at(b, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(LayerError::corrupt(
                path,
                8,
                format!(
                    "unsupported format version {version} \
                     (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
                ),
            ));
        }
        let is_delta = match b[10] {
            KIND_DELTA => true,
            KIND_IMAGE => false,
            other => {
                return Err(LayerError::corrupt(
                    path,
                    10,
                    format!("unknown layer kind {other}"),
                ))
            }
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[11..27]);
        let tenant_id = TenantId::from_bytes(id);
        id.copy_from_slice(&b[27..43]);
        let timeline_id = TimelineId::from_bytes(id);
        let key_range = key_at(b, 43)..key_at(b, 61);
        if key_range.start >= key_range.end {
            return Err(LayerError::corrupt(
                path,
                43,
                format!("empty key range {}..{}", key_range.start, key_range.end),
            ));
        }
        let lsn_range = Lsn(u64_at(b, 79))..Lsn(u64_at(b, 87));
        let lsn_ok = if is_delta {
            lsn_range.start < lsn_range.end
        } else {
            lsn_range.start.checked_add(1) == Some(lsn_range.end)
        };
        if !lsn_ok {
            return Err(LayerError::corrupt(
                path,
                79,
                format!("invalid LSN range {}..{}", lsn_range.start, lsn_range.end),
            ));
        }
        Ok(Header {
            version,
            is_delta,
            tenant_id,
            timeline_id,
            key_range,
            lsn_range,
        })
    }
}

/// One index entry: where the value of (key, lsn) is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) key: Key,
    pub(crate) lsn: Lsn,
    /// Where the blob starts.
    pub(crate) offset: u64,
    /// Bytes of the blob, its header included.
    pub(crate) len: u32,
}

impl IndexEntry {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.to_bytes());
        out.extend_from_slice(&self.lsn.0.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    /// `b` is exactly [`INDEX_ENTRY_SIZE`] bytes, or [`INDEX_ENTRY_SIZE_V1`]
    /// for `version` 1, whose entries have no length: it is 0 until the
    /// index is checked.
    fn decode(b: &[u8], version: u16) -> IndexEntry {
        IndexEntry {
            key: key_at(b, 0),
            lsn: Lsn(u64_at(b, KEY_SIZE)),
            offset: u64_at(b, KEY_SIZE + 8),
            len: if version == 1 {
                0
            } else {
                u32_at(b, KEY_SIZE + 16)
            },
        }
    }

    /// Where the blob ends (exclusive).
    fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Bytes of a blob holding `stored_len` stored bytes; `None` when that
/// does not fit the u32 of an index entry.
pub(crate) fn blob_len(stored_len: usize) -> Option<u32> {
    u32::try_from(stored_len.checked_add(BLOB_HEADER_SIZE)?).ok()
}

/// The header of a blob: stored length, flags, CRC (the caller checked
/// with [`blob_len`] that the length fits).
fn blob_header_with_crc(flags: u8, stored_len: usize, crc: u32) -> [u8; BLOB_HEADER_SIZE] {
    let mut head = [0u8; BLOB_HEADER_SIZE];
    head[0..4].copy_from_slice(&(stored_len as u32).to_le_bytes());
    head[4] = flags;
    head[5..9].copy_from_slice(&crc.to_le_bytes());
    head
}
