//! CRC32C arithmetic: the CRC of a concatenation from the CRCs of its parts,
//! without reading the bytes again.
//!
//! A CRC register is a polynomial over GF(2) modulo the Castagnoli
//! polynomial P. Feeding `n` zero bytes to the raw register (no initial or
//! final inversion) multiplies it by x^(8n) mod P, and the raw register is
//! linear in its start value. With the inversions of CRC32C this gives, for
//! byte strings A and B:
//!
//! ```text
//! crc(A ++ B) = shift(crc(A), |B|) ^ crc(B)
//! ```
//!
//! where `shift(c, n)` is `c * x^(8n) mod P` ([`combine`]). A layer file's
//! CRC covers every blob, and every blob carries its own CRC (of its flags
//! byte and stored bytes, which the blob's CRC field separates in the file):
//! [`append_blob`] extends the file's CRC over a blob from the blob's CRC,
//! one multiplication instead of a second pass over the bytes.
//!
//! The arithmetic follows zlib's `crc32_combine` (`multmodp`, `x2nmodp`),
//! in the reflected bit order CRC32C uses: bit 31 holds the coefficient of
//! x^0.

use std::sync::OnceLock;

/// The Castagnoli polynomial, reflected.
const POLY: u32 = 0x82F6_3B78;
/// x^0, reflected.
const ONE: u32 = 1 << 31;
/// `shift` by fewer bytes than this takes x^(8n) from a table (64 KiB): a
/// blob of a page, compressed or not, is shorter.
const TABLE_LEN: usize = 16 << 10;

/// `a * b mod P`. Branch-free: the operands are data.
const fn mul(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut i = 0;
    while i < 32 {
        // The coefficient of x^i in `a`.
        let bit = (a >> (31 - i)) & 1;
        product ^= b & bit.wrapping_neg();
        // b *= x
        b = (b >> 1) ^ (POLY & (b & 1).wrapping_neg());
        i += 1;
    }
    product
}

/// x^(2^k) mod P for k = 0..67: enough for x^(8n) of any u64 `n`.
const fn x_pow_2k() -> [u32; 67] {
    let mut table = [0u32; 67];
    // x^1
    let mut p = ONE >> 1;
    let mut k = 0;
    while k < table.len() {
        table[k] = p;
        p = mul(p, p);
        k += 1;
    }
    table
}

const X_POW_2K: [u32; 67] = x_pow_2k();

/// x^(8n) mod P by repeated squaring: one multiplication per set bit of n.
fn x_pow_8n(n: u64) -> u32 {
    let mut p = ONE;
    let mut k = 3;
    let mut n = n;
    while n != 0 {
        if n & 1 == 1 {
            p = mul(X_POW_2K[k], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// x^(8n) mod P for n below [`TABLE_LEN`].
fn small_powers() -> &'static [u32] {
    static TABLE: OnceLock<Vec<u32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let x8 = X_POW_2K[3];
        let mut table = Vec::with_capacity(TABLE_LEN);
        let mut p = ONE;
        for _ in 0..TABLE_LEN {
            table.push(p);
            p = mul(p, x8);
        }
        table
    })
}

/// `crc * x^(8 len) mod P`: the raw register after `len` zero bytes.
fn shift(crc: u32, len: u64) -> u32 {
    let power = match usize::try_from(len) {
        Ok(n) if n < TABLE_LEN => small_powers()[n],
        _ => x_pow_8n(len),
    };
    mul(power, crc)
}

/// The CRC32C of `A ++ B` from `crc_a` (of A), `crc_b` (of B) and B's length.
pub(crate) fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    shift(crc_a, len_b) ^ crc_b
}

/// Extends `crc` (the CRC32C of everything before the blob) over a blob:
/// its header (length, flags, CRC), then `stored_len` stored bytes whose
/// blob CRC, `crc32c(flags ++ stored)`, is `blob_crc`.
pub(crate) fn append_blob(crc: u32, flags: u8, stored_len: usize, blob_crc: u32) -> u32 {
    // crc(X ++ stored) = shift(crc(X), n) ^ crc0(stored), where crc0 is the
    // raw register from zero; and blob_crc = shift(crc(flags), n) ^
    // crc0(stored) likewise. So crc(X ++ stored) = shift(crc(X) ^
    // crc(flags), n) ^ blob_crc: one shift for the two.
    let head = super::blob_header_with_crc(flags, stored_len, blob_crc);
    let through_head = crc32c::crc32c_append(crc, &head);
    shift(through_head ^ crc32c::crc32c(&[flags]), stored_len as u64) ^ blob_crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn combine_equals_the_crc_of_the_concatenation() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Across the table's end, and far beyond it.
        let lens = [
            0,
            1,
            2,
            7,
            8,
            9,
            100,
            4095,
            8192,
            TABLE_LEN - 1,
            TABLE_LEN,
            TABLE_LEN + 1,
            1 << 20,
            3 << 20,
        ];
        for &len_a in &[0usize, 1, 13, 5000] {
            for &len_b in &lens {
                let mut a = vec![0u8; len_a];
                let mut b = vec![0u8; len_b];
                rng.fill(&mut a[..]);
                rng.fill(&mut b[..]);
                let whole = crc32c::crc32c_append(crc32c::crc32c(&a), &b);
                let got = combine(crc32c::crc32c(&a), crc32c::crc32c(&b), len_b as u64);
                assert_eq!(got, whole, "{len_a} + {len_b}");
                assert_eq!(
                    got,
                    crc32c::crc32c_combine(crc32c::crc32c(&a), crc32c::crc32c(&b), len_b)
                );
            }
        }
    }

    #[test]
    fn powers_from_the_table_equal_repeated_squaring() {
        let table = small_powers();
        for n in (0..TABLE_LEN).step_by(97).chain([1, 2, 3, TABLE_LEN - 1]) {
            assert_eq!(table[n], x_pow_8n(n as u64), "x^(8*{n})");
        }
        // x^8 * x^8 = x^16
        assert_eq!(mul(X_POW_2K[3], X_POW_2K[3]), X_POW_2K[4]);
    }

    #[test]
    fn append_blob_equals_reading_the_blob() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut crc = crc32c::crc32c(b"bytes before the first blob");
        for round in 0..200 {
            let len = match round % 4 {
                0 => 0,
                1 => rng.gen_range(1..64),
                2 => rng.gen_range(4000..8300),
                _ => rng.gen_range(TABLE_LEN..TABLE_LEN * 3),
            };
            let mut stored = vec![0u8; len];
            rng.fill(&mut stored[..]);
            let flags: u8 = rng.gen_range(0..4);
            let blob_crc = crc32c::crc32c_append(crc32c::crc32c(&[flags]), &stored);
            let head = super::super::blob_header_with_crc(flags, stored.len(), blob_crc);
            let read = crc32c::crc32c_append(crc32c::crc32c_append(crc, &head), &stored);
            crc = append_blob(crc, flags, len, blob_crc);
            assert_eq!(crc, read, "round {round}, {len} bytes");
        }
    }
}
