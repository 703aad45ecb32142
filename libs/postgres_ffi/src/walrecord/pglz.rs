//! PostgreSQL's own LZ compression format (`pg_lzcompress.c`), used for
//! `wal_compression = pglz` page images and for compressed TOAST values.
//!
//! The format is a sequence of groups: a control byte, then up to 8 items,
//! one per control bit from the lowest. A clear bit is a literal byte. A set
//! bit is a 2- or 3-byte back-reference tag: the first byte holds the match
//! length minus 3 (low nibble) and the high 4 bits of the offset (high
//! nibble), the second byte the low 8 bits of the offset; a length nibble of
//! 15 means a third byte adds 0..=255 more. The match is copied from
//! `offset` bytes back in the output and may overlap the bytes being written.

/// Decompresses `src`, which must expand to exactly `rawsize` bytes and be
/// consumed entirely (`pglz_decompress` with `check_complete`). Returns
/// `None` on any malformed input: a tag cut short, an offset of 0 or one
/// pointing before the start of the output, or a size mismatch.
pub fn pglz_decompress(src: &[u8], rawsize: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(rawsize);
    let mut sp = 0usize;
    while sp < src.len() && out.len() < rawsize {
        let mut ctrl = src[sp];
        sp += 1;
        for _ in 0..8 {
            if sp >= src.len() || out.len() >= rawsize {
                break;
            }
            if ctrl & 1 != 0 {
                if sp + 2 > src.len() {
                    return None;
                }
                let mut len = usize::from(src[sp] & 0x0f) + 3;
                let off = (usize::from(src[sp] & 0xf0) << 4) | usize::from(src[sp + 1]);
                sp += 2;
                if len == 18 {
                    len += usize::from(*src.get(sp)?);
                    sp += 1;
                }
                if off == 0 || off > out.len() {
                    return None;
                }
                // Like PostgreSQL, never write past rawsize.
                let len = len.min(rawsize - out.len());
                let from = out.len() - off;
                if off >= len {
                    out.extend_from_within(from..from + len);
                } else {
                    // Overlapping copy: each byte may be one just written.
                    for i in 0..len {
                        let b = out[from + i];
                        out.push(b);
                    }
                }
            } else {
                out.push(src[sp]);
                sp += 1;
            }
            ctrl >>= 1;
        }
    }
    (out.len() == rawsize && sp == src.len()).then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A simple (quadratic, greedy) pglz compressor producing the format
    /// PostgreSQL reads, for tests.
    pub(crate) fn pglz_compress_for_tests(src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < src.len() {
            let ctrl_at = out.len();
            out.push(0u8);
            for bit in 0..8 {
                if pos >= src.len() {
                    break;
                }
                let mut best = (0usize, 0usize);
                let window = pos.saturating_sub(4095);
                for start in window..pos {
                    let mut l = 0;
                    while l < 273 && pos + l < src.len() && src[start + l] == src[pos + l] {
                        l += 1;
                    }
                    if l > best.0 {
                        best = (l, pos - start);
                    }
                }
                if best.0 >= 3 {
                    let (len, off) = best;
                    out[ctrl_at] |= 1 << bit;
                    if len >= 18 {
                        out.push(0x0f | ((off >> 4) & 0xf0) as u8);
                        out.push((off & 0xff) as u8);
                        out.push((len - 18) as u8);
                    } else {
                        out.push((len - 3) as u8 | ((off >> 4) & 0xf0) as u8);
                        out.push((off & 0xff) as u8);
                    }
                    pos += len;
                } else {
                    out.push(src[pos]);
                    pos += 1;
                }
            }
        }
        out
    }

    #[test]
    fn literals_and_overlapping_match() {
        // ctrl 0b0000_0010: literal 'a', then tag len 3+2=5 off 1.
        let src = [0x02, b'a', 0x02, 0x01];
        assert_eq!(pglz_decompress(&src, 6).unwrap(), b"aaaaaa");
        // Extended length: nibble 15 + extra byte 10 => 28 bytes.
        let src = [0x02, b'z', 0x0f, 0x01, 10];
        assert_eq!(pglz_decompress(&src, 29).unwrap(), vec![b'z'; 29]);
    }

    #[test]
    fn malformed_inputs_fail() {
        // Offset 0.
        assert_eq!(pglz_decompress(&[0x02, b'a', 0x00, 0x00], 4), None);
        // Offset before the output start.
        assert_eq!(pglz_decompress(&[0x01, 0x00, 0x05], 3), None);
        // Tag cut short.
        assert_eq!(pglz_decompress(&[0x02, b'a', 0x01], 4), None);
        // Extension byte missing.
        assert_eq!(pglz_decompress(&[0x02, b'a', 0x0f, 0x01], 40), None);
        // Too short / too long output.
        assert_eq!(pglz_decompress(&[0x00, b'a', b'b'], 3), None);
        assert_eq!(pglz_decompress(&[0x00, b'a', b'b'], 1), None);
        assert_eq!(pglz_decompress(&[], 1), None);
        assert_eq!(pglz_decompress(&[], 0), Some(vec![]));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..3000)) {
            let compressed = pglz_compress_for_tests(&data);
            prop_assert_eq!(pglz_decompress(&compressed, data.len()), Some(data));
        }

        #[test]
        fn random_input_never_panics(src in proptest::collection::vec(any::<u8>(), 0..200), rawsize in 0usize..9000) {
            if let Some(out) = pglz_decompress(&src, rawsize) {
                prop_assert_eq!(out.len(), rawsize);
            }
        }
    }
}
