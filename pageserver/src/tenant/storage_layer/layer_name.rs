//! Layer file names. Delta: `KEYSTART-KEYEND__LSNSTART-LSNEND`; image:
//! `KEYSTART-KEYEND__LSN`. Keys are 36 hex digits, LSNs 16 hex digits, so
//! names sort by key range start and can be parsed back without the file.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use pageserver_api::key::Key;
use utils::lsn::Lsn;

/// The name of a layer file (without directory or remote generation suffix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerName {
    /// Key range covered.
    pub key_range: Range<Key>,
    /// LSN range covered (`lsn..lsn + 1` for an image).
    pub lsn_range: Range<Lsn>,
    /// Delta or image.
    pub is_delta: bool,
}

/// A file name that is not a layer name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a layer file name (KEYSTART-KEYEND__LSN or KEYSTART-KEYEND__LSNSTART-LSNEND)"
)]
pub struct LayerNameError(pub String);

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}__", self.key_range.start, self.key_range.end)?;
        if self.is_delta {
            write!(
                f,
                "{:016X}-{:016X}",
                self.lsn_range.start.0, self.lsn_range.end.0
            )
        } else {
            write!(f, "{:016X}", self.lsn_range.start.0)
        }
    }
}

fn parse_lsn(s: &str) -> Option<Lsn> {
    (s.len() == 16)
        .then(|| u64::from_str_radix(s, 16).ok().map(Lsn))
        .flatten()
}

impl FromStr for LayerName {
    type Err = LayerNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LayerNameError(s.chars().take(200).collect());
        let (keys, lsns) = s.split_once("__").ok_or_else(bad)?;
        let (k0, k1) = keys.split_once('-').ok_or_else(bad)?;
        let key_range =
            k0.parse::<Key>().map_err(|_| bad())?..k1.parse::<Key>().map_err(|_| bad())?;
        if key_range.start >= key_range.end {
            return Err(bad());
        }
        let (lsn_range, is_delta) = match lsns.split_once('-') {
            Some((l0, l1)) => {
                let r = parse_lsn(l0).ok_or_else(bad)?..parse_lsn(l1).ok_or_else(bad)?;
                if r.start >= r.end {
                    return Err(bad());
                }
                (r, true)
            }
            None => {
                let lsn = parse_lsn(lsns).ok_or_else(bad)?;
                let end = lsn.checked_add(1).ok_or_else(bad)?;
                (lsn..end, false)
            }
        };
        Ok(LayerName {
            key_range,
            lsn_range,
            is_delta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let k1 = Key {
            field6: 7,
            ..Key::MIN
        };
        let delta = LayerName {
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(0x10)..Lsn(0x2000),
            is_delta: true,
        };
        let image = LayerName {
            key_range: k1..Key::MAX,
            lsn_range: Lsn(0x30)..Lsn(0x31),
            is_delta: false,
        };
        for n in [delta, image] {
            assert_eq!(n.to_string().parse::<LayerName>().unwrap(), n);
        }
        for bad in [
            "",
            "metadata",
            "x__y",
            &format!("{k1}-{k1}__0000000000000010"),
            &format!("{k1}-{}__0000000000000020-0000000000000010", Key::MAX),
            &format!("{k1}-{}__10", Key::MAX),
        ] {
            assert!(bad.parse::<LayerName>().is_err(), "{bad}");
        }
    }
}
