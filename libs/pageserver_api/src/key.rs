//! The 18-byte key space of the page store (DESIGN.md section 3).
//!
//! A [`Key`] is six fields compared in order, so the derived ordering equals
//! the ordering of the big-endian byte encoding:
//!
//! | field | bytes | meaning (relation blocks)       |
//! |-------|-------|---------------------------------|
//! | 1     | 1     | kind prefix (0x00 = relation)   |
//! | 2     | 4     | spcnode                         |
//! | 3     | 4     | dbnode                          |
//! | 4     | 4     | relnode                         |
//! | 5     | 1     | fork number                     |
//! | 6     | 4     | block number                    |
//!
//! Text form (layer file names, `pagectl`): 36 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a key's byte encoding.
pub const KEY_SIZE: usize = 18;

/// A key of the page store.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Kind prefix.
    pub field1: u8,
    /// First 32-bit field (spcnode for relations).
    pub field2: u32,
    /// Second 32-bit field (dbnode for relations).
    pub field3: u32,
    /// Third 32-bit field (relnode for relations).
    pub field4: u32,
    /// Small field (fork number for relations).
    pub field5: u8,
    /// Last 32-bit field (block number for relations).
    pub field6: u32,
}

/// Why bytes or text could not be read as a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong number of bytes.
    #[error("a key is {KEY_SIZE} bytes, got {0}")]
    Length(usize),
    /// Not 36 hex digits.
    #[error("invalid key {0:?}: expected 36 hexadecimal digits")]
    Text(String),
}

impl Key {
    /// The smallest key.
    pub const MIN: Key = Key {
        field1: 0,
        field2: 0,
        field3: 0,
        field4: 0,
        field5: 0,
        field6: 0,
    };
    /// The largest key (an exclusive bound: no data is stored under it).
    pub const MAX: Key = Key {
        field1: u8::MAX,
        field2: u32::MAX,
        field3: u32::MAX,
        field4: u32::MAX,
        field5: u8::MAX,
        field6: u32::MAX,
    };

    /// Big-endian encoding; byte order equals key order.
    pub fn to_bytes(&self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        b[0] = self.field1;
        b[1..5].copy_from_slice(&self.field2.to_be_bytes());
        b[5..9].copy_from_slice(&self.field3.to_be_bytes());
        b[9..13].copy_from_slice(&self.field4.to_be_bytes());
        b[13] = self.field5;
        b[14..18].copy_from_slice(&self.field6.to_be_bytes());
        b
    }

    /// Reads [`Key::to_bytes`] output.
    pub fn from_slice(b: &[u8]) -> Result<Key, KeyError> {
        if b.len() != KEY_SIZE {
            return Err(KeyError::Length(b.len()));
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Ok(Key {
            field1: b[0],
            field2: u32_at(1),
            field3: u32_at(5),
            field4: u32_at(9),
            field5: b[13],
            field6: u32_at(14),
        })
    }

    /// The key as a 144-bit number in an `i128`-free form: the top 16 bits
    /// and the low 128 bits. Useful for arithmetic on key ranges.
    fn to_u128_pair(self) -> (u16, u128) {
        let b = self.to_bytes();
        let hi = u16::from_be_bytes([b[0], b[1]]);
        let lo = u128::from_be_bytes(b[2..18].try_into().expect("16 bytes"));
        (hi, lo)
    }

    fn from_u128_pair(hi: u16, lo: u128) -> Key {
        let mut b = [0u8; KEY_SIZE];
        b[0..2].copy_from_slice(&hi.to_be_bytes());
        b[2..18].copy_from_slice(&lo.to_be_bytes());
        Key::from_slice(&b).expect("18 bytes")
    }

    /// The next key in order (saturating at [`Key::MAX`]).
    pub fn next(&self) -> Key {
        self.add(1)
    }

    /// `self + n` in the key order, treating the key as one 144-bit number
    /// (saturating at [`Key::MAX`]).
    pub fn add(&self, n: u32) -> Key {
        let (hi, lo) = self.to_u128_pair();
        match lo.checked_add(u128::from(n)) {
            Some(lo) => Key::from_u128_pair(hi, lo),
            None => match hi.checked_add(1) {
                Some(hi) => Key::from_u128_pair(hi, lo.wrapping_add(u128::from(n))),
                None => Key::MAX,
            },
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Key, KeyError> {
        let bad = || KeyError::Text(s.chars().take(64).collect());
        if s.len() != 2 * KEY_SIZE || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut b = [0u8; KEY_SIZE];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Key::from_slice(&b)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod core_tests {
    use super::*;
    use proptest::prelude::*;

    fn any_key() -> impl Strategy<Value = Key> {
        (any::<u8>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u8>(), any::<u32>()).prop_map(
            |(field1, field2, field3, field4, field5, field6)| Key {
                field1,
                field2,
                field3,
                field4,
                field5,
                field6,
            },
        )
    }

    proptest! {
        #[test]
        fn bytes_and_text_round_trip(k in any_key()) {
            prop_assert_eq!(Key::from_slice(&k.to_bytes()).unwrap(), k);
            prop_assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
        }

        #[test]
        fn byte_order_is_key_order(a in any_key(), b in any_key()) {
            prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
        }

        #[test]
        fn next_is_the_successor(k in any_key()) {
            prop_assume!(k != Key::MAX);
            let n = k.next();
            prop_assert!(n > k);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Key::from_slice(&[0; 3]), Err(KeyError::Length(3)));
        assert!("zz".parse::<Key>().is_err());
        assert!("0".repeat(35).parse::<Key>().is_err());
        assert!("g".repeat(36).parse::<Key>().is_err());
        assert_eq!(Key::MAX.next(), Key::MAX);
        let k = Key { field6: u32::MAX, ..Key::MIN };
        assert_eq!(k.next(), Key { field5: 1, field6: 0, ..Key::MIN });
    }
}
