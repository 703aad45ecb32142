//! Tenant and timeline identifiers: 16 random bytes, 32 lowercase hex characters
//! on the wire and in file names.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text could not be read as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The text is not exactly 32 characters long.
    #[error("expected 32 hexadecimal characters, got {0} characters")]
    BadLength(usize),
    /// The text holds something other than hexadecimal digits.
    #[error("expected 32 hexadecimal characters, found non-hex character {0:?}")]
    NotHex(char),
}

/// A 16-byte identifier shown as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id([u8; 16]);

impl Id {
    /// A new random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        Id(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// An id from raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Id(bytes)
    }
}

impl FromStr for Id {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(IdParseError::NotHex(c));
        }
        if s.len() != 32 {
            return Err(IdParseError::BadLength(s.chars().count()));
        }
        let mut bytes = [0u8; 16];
        // Cannot fail: length and alphabet were checked above.
        hex::decode_to_slice(s, &mut bytes).map_err(|_| IdParseError::BadLength(s.len()))?;
        Ok(Id(bytes))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        // hex output is ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Id);

        impl $name {
            /// A new random id.
            pub fn generate() -> Self {
                $name(Id::generate())
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// An id from raw bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(Id::from_bytes(bytes))
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Id::from_str(s).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(|e| {
                    serde::de::Error::custom(format!(concat!("invalid ", $what, " {:?}: {}"), s, e))
                })
            }
        }
    };
}

id_newtype!(
    /// Identifies a tenant: one PostgreSQL database cluster and all its branches.
    TenantId,
    "tenant id"
);
id_newtype!(
    /// Identifies a timeline (branch) within a tenant.
    TimelineId,
    "timeline id"
);

/// A timeline together with its tenant, for log fields and map keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TenantTimelineId {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline inside that tenant.
    pub timeline_id: TimelineId,
}

impl fmt::Display for TenantTimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant_id, self.timeline_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_errors_are_typed() {
        assert_eq!("abc".parse::<TenantId>(), Err(IdParseError::BadLength(3)));
        assert_eq!(
            "zz000000000000000000000000000000".parse::<TenantId>(),
            Err(IdParseError::NotHex('z'))
        );
        assert_eq!(
            "ü0000000000000000000000000000000".parse::<TimelineId>(),
            Err(IdParseError::NotHex('ü'))
        );
        assert!("".parse::<TimelineId>().is_err());
    }

    #[test]
    fn uppercase_is_accepted_and_printed_lowercase() {
        let id: TenantId = "ABCDEF0123456789ABCDEF0123456789".parse().unwrap();
        assert_eq!(id.to_string(), "abcdef0123456789abcdef0123456789");
    }

    #[test]
    fn serde_uses_hex_string() {
        let id = TimelineId::from_bytes([0xab; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<TimelineId>(&json).unwrap(), id);
        let err = serde_json::from_str::<TimelineId>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("invalid timeline id"), "{err}");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(bytes in any::<[u8; 16]>()) {
            let id = TenantId::from_bytes(bytes);
            let text = id.to_string();
            prop_assert_eq!(text.len(), 32);
            prop_assert!(text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
            prop_assert_eq!(text.parse::<TenantId>().unwrap(), id);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = s.parse::<TimelineId>();
        }
    }
}
