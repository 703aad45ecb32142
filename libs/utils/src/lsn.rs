//! Log sequence numbers: byte positions in a PostgreSQL WAL stream.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Size of a WAL block (page) in bytes (PostgreSQL `XLOG_BLCKSZ`).
pub const XLOG_BLCKSZ: u64 = 8192;

/// A position in the WAL, printed as PostgreSQL does: `X/Y`, the high and low
/// 32 bits in uppercase hex.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Why a text could not be read as an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {text:?}: expected two hexadecimal numbers of at most 8 digits separated by '/', like 0/16B3748")]
pub struct LsnParseError {
    text: String,
}

impl Lsn {
    /// The invalid / unset LSN.
    pub const INVALID: Lsn = Lsn(0);
    /// The largest LSN.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// True for every LSN but 0/0.
    pub fn is_valid(self) -> bool {
        self != Lsn::INVALID
    }

    /// `self + n`, or `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<Lsn> {
        self.0.checked_add(n).map(Lsn)
    }

    /// `self - other` in bytes, or `None` when `other` is larger.
    pub fn checked_sub(self, other: Lsn) -> Option<u64> {
        self.0.checked_sub(other.0)
    }

    /// Whether the LSN is a multiple of `align` (a power of two).
    pub fn is_aligned(self, align: u64) -> bool {
        debug_assert!(align.is_power_of_two());
        self.0 & (align - 1) == 0
    }

    /// Rounds up to a multiple of `align` (a power of two), saturating at the
    /// largest aligned value.
    pub fn align_up(self, align: u64) -> Lsn {
        debug_assert!(align.is_power_of_two());
        match self.0.checked_add(align - 1) {
            Some(v) => Lsn(v & !(align - 1)),
            None => Lsn(!(align - 1)),
        }
    }

    /// Rounds down to a multiple of `align` (a power of two).
    pub fn align_down(self, align: u64) -> Lsn {
        debug_assert!(align.is_power_of_two());
        Lsn(self.0 & !(align - 1))
    }

    /// Rounds up to the 8-byte alignment of WAL records (`MAXALIGN`).
    pub fn align(self) -> Lsn {
        self.align_up(8)
    }

    /// Offset within a WAL segment of `seg_size` bytes.
    pub fn segment_offset(self, seg_size: u64) -> u64 {
        self.0 % seg_size
    }

    /// Number of the WAL segment of `seg_size` bytes that holds this LSN.
    pub fn segment_number(self, seg_size: u64) -> u64 {
        self.0 / seg_size
    }

    /// Offset within the WAL block (page) that holds this LSN.
    pub fn block_offset(self) -> u64 {
        self.0 % XLOG_BLCKSZ
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError {
            text: s.to_string(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let part = |p: &str| -> Result<u64, LsnParseError> {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u64::from_str_radix(p, 16).map_err(|_| err())
        };
        Ok(Lsn((part(hi)? << 32) | part(lo)?))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Add<u64> for Lsn {
    type Output = Lsn;
    /// Panics on overflow, like integer addition in debug builds; use
    /// [`Lsn::checked_add`] for untrusted input.
    fn add(self, rhs: u64) -> Lsn {
        Lsn(self.0.checked_add(rhs).expect("LSN overflow"))
    }
}

impl AddAssign<u64> for Lsn {
    fn add_assign(&mut self, rhs: u64) {
        *self = *self + rhs;
    }
}

impl Sub<u64> for Lsn {
    type Output = Lsn;
    /// `n` bytes earlier. Panics on underflow; use [`Lsn::checked_sub`] on
    /// the raw values for untrusted input.
    fn sub(self, rhs: u64) -> Lsn {
        Lsn(self.0.checked_sub(rhs).expect("LSN subtraction underflow"))
    }
}

impl Sub<Lsn> for Lsn {
    type Output = u64;
    /// Distance in bytes. Panics when `rhs` is larger; use
    /// [`Lsn::checked_sub`] for untrusted input.
    fn sub(self, rhs: Lsn) -> u64 {
        self.0
            .checked_sub(rhs.0)
            .expect("LSN subtraction underflow")
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Lsn {
        Lsn(v)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_format() {
        assert_eq!("0/16B3748".parse::<Lsn>().unwrap(), Lsn(0x16B3748));
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
        assert_eq!("ffffffff/ffffffff".parse::<Lsn>().unwrap(), Lsn::MAX);
        assert_eq!(Lsn(0x1_0000_00A0).to_string(), "1/A0");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }

    #[test]
    fn bad_text_is_an_error() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0//0",
            "1",
            "g/0",
            "0/123456789",
            "-1/0",
            "0/ 1",
            "+1/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.to_string().contains("0/16B3748"), "{bad}: {err}");
        }
    }

    #[test]
    fn alignment() {
        assert_eq!(Lsn(9).align(), Lsn(16));
        assert_eq!(Lsn(16).align(), Lsn(16));
        assert_eq!(Lsn(8191).align_down(8192), Lsn(0));
        assert_eq!(Lsn(8193).align_up(8192), Lsn(16384));
        assert_eq!(Lsn::MAX.align(), Lsn(!7));
        assert!(Lsn(24).is_aligned(8));
        assert!(!Lsn(25).is_aligned(8));
        assert_eq!(Lsn(0x1000_0010).segment_offset(16 << 20), 0x10);
        assert_eq!(Lsn(3 * (16 << 20) + 5).segment_number(16 << 20), 3);
        assert_eq!(Lsn(8192 + 40).block_offset(), 40);
    }

    #[test]
    fn arithmetic() {
        assert_eq!(Lsn(10) + 5, Lsn(15));
        assert_eq!(Lsn(10) - Lsn(4), 6);
        assert_eq!(Lsn(4).checked_sub(Lsn(10)), None);
        assert_eq!(Lsn::MAX.checked_add(1), None);
        let mut l = Lsn(1);
        l += 2;
        assert_eq!(l, Lsn(3));
    }

    proptest! {
        #[test]
        fn round_trip(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
            let json = serde_json::to_string(&lsn).unwrap();
            prop_assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = s.parse::<Lsn>();
        }

        #[test]
        fn align_up_is_smallest_aligned_at_or_above(v in 0u64..u64::MAX / 2, shift in 0u32..20) {
            let align = 1u64 << shift;
            let up = Lsn(v).align_up(align);
            prop_assert!(up.is_aligned(align));
            prop_assert!(up >= Lsn(v));
            prop_assert!(up.0 - v < align);
        }
    }
}
