//! Restoring a full-page image from its stored form (`RestoreBlockImage`):
//! decompress (pglz, LZ4 or zstd) to `BLCKSZ - hole_length` bytes, then put
//! the zero-filled hole back.

use bytes::Bytes;
use utils::lsn::Lsn;

use super::{pglz, ImageHeader, WalDecodeError, BKPIMAGE_COMPRESSED_MASK};
use crate::pg_constants::{
    BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_PGLZ, BKPIMAGE_COMPRESS_ZSTD, BLCKSZ,
};

/// The whole page described by `img`, whose stored bytes are `stored`
/// (`img.bimg_len` of them). The header checks in `read_block_header`
/// guarantee `hole_offset + hole_length <= BLCKSZ`.
pub(super) fn restore(
    lsn: Lsn,
    block_id: u8,
    img: &ImageHeader,
    stored: &[u8],
) -> Result<Bytes, WalDecodeError> {
    let bad = |detail: String| WalDecodeError::BadImage {
        lsn,
        block_id,
        detail,
    };
    let hole_offset = usize::from(img.hole_offset);
    let hole_length = usize::from(img.hole_length);
    let raw_len = BLCKSZ - hole_length;

    let decompressed;
    let raw: &[u8] = match img.bimg_info & BKPIMAGE_COMPRESSED_MASK {
        0 => stored,
        BKPIMAGE_COMPRESS_PGLZ => {
            decompressed = pglz::pglz_decompress(stored, raw_len).ok_or_else(|| {
                bad(format!(
                    "invalid pglz data ({} bytes, expected to expand to {raw_len})",
                    stored.len()
                ))
            })?;
            &decompressed
        }
        BKPIMAGE_COMPRESS_LZ4 => {
            let mut out = vec![0u8; raw_len];
            match lz4_flex::block::decompress_into(stored, &mut out) {
                Ok(n) if n == raw_len => {}
                Ok(n) => {
                    return Err(bad(format!(
                        "LZ4 data expands to {n} bytes, expected {raw_len}"
                    )))
                }
                Err(e) => return Err(bad(format!("invalid LZ4 data: {e}"))),
            }
            decompressed = out;
            &decompressed
        }
        BKPIMAGE_COMPRESS_ZSTD => {
            // One context per thread, reused: creating one per image costs
            // more than decompressing the page.
            let out = ZSTD
                .with(|d| {
                    let mut d = d.borrow_mut();
                    if d.is_none() {
                        *d = Some(zstd::bulk::Decompressor::new()?);
                    }
                    d.as_mut()
                        .expect("created above")
                        .decompress(stored, raw_len)
                })
                .map_err(|e| bad(format!("invalid zstd data: {e}")))?;
            if out.len() != raw_len {
                return Err(bad(format!(
                    "zstd data expands to {} bytes, expected {raw_len}",
                    out.len()
                )));
            }
            decompressed = out;
            &decompressed
        }
        other => {
            return Err(bad(format!(
                "more than one compression method set (bimg_info bits {other:#04x})"
            )))
        }
    };
    if raw.len() != raw_len {
        return Err(bad(format!(
            "image has {} bytes, expected {raw_len}",
            raw.len()
        )));
    }

    let mut page = Vec::with_capacity(BLCKSZ);
    page.extend_from_slice(&raw[..hole_offset]);
    page.resize(hole_offset + hole_length, 0);
    page.extend_from_slice(&raw[hole_offset..]);
    debug_assert_eq!(page.len(), BLCKSZ);
    Ok(Bytes::from(page))
}

thread_local! {
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}
