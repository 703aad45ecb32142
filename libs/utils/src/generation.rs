//! Generations (DESIGN.md section 4): a number that grows each time a tenant
//! is attached somewhere. Every object a node writes to remote storage carries
//! the generation it was attached with as a suffix (`-{:08x}`), so two nodes
//! never overwrite each other's objects, and a reader picks the newest object
//! written by a generation at or below its own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A tenant's attachment generation. Generation 0 is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u32);

/// A name without a valid `-XXXXXXXX` generation suffix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} does not end in a generation suffix (-XXXXXXXX, 8 lowercase hex digits)")]
pub struct GenerationSuffixError(pub String);

impl Generation {
    /// The generation single-node mode gives a newly created tenant.
    pub const FIRST: Generation = Generation(1);

    /// The suffix objects written under this generation carry: `-0000000a`.
    pub fn suffix(self) -> String {
        format!("-{:08x}", self.0)
    }

    /// The next generation.
    pub fn next(self) -> Generation {
        Generation(self.0.checked_add(1).expect("generation overflow"))
    }

    /// `name` with this generation's suffix.
    pub fn apply(self, name: &str) -> String {
        format!("{name}{}", self.suffix())
    }

    /// Splits `name-XXXXXXXX` into `name` and its generation.
    pub fn split_suffix(name: &str) -> Result<(&str, Generation), GenerationSuffixError> {
        let bad = || GenerationSuffixError(name.chars().take(200).collect());
        if name.len() < 9 || !name.is_char_boundary(name.len() - 9) {
            return Err(bad());
        }
        let (base, suffix) = name.split_at(name.len() - 9);
        let hex = suffix.strip_prefix('-').ok_or_else(bad)?;
        if hex.len() != 8
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let value = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
        Ok((base, Generation(value)))
    }

    /// The highest of `candidates` at or below `self` (a reader never looks at
    /// what a newer attachment wrote).
    pub fn highest_at_or_below(
        self,
        candidates: impl IntoIterator<Item = Generation>,
    ) -> Option<Generation> {
        candidates.into_iter().filter(|g| *g <= self).max()
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl FromStr for Generation {
    type Err = GenerationSuffixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Generation::split_suffix(&format!("-{s}")).map(|(_, g)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_round_trips() {
        for g in [0u32, 1, 10, 0xdead_beef, u32::MAX] {
            let name = Generation(g).apply("index_part.json");
            assert_eq!(name.len(), "index_part.json".len() + 9);
            let (base, parsed) = Generation::split_suffix(&name).unwrap();
            assert_eq!((base, parsed), ("index_part.json", Generation(g)));
        }
        assert_eq!(Generation(10).suffix(), "-0000000a");
    }

    #[test]
    fn bad_suffixes_are_refused() {
        for name in [
            "",
            "x",
            "index_part.json",
            "a-0000000A",
            "a-000000001",
            "a_00000001",
            "a-0000000g",
        ] {
            assert!(Generation::split_suffix(name).is_err(), "{name}");
        }
        // The base may itself contain dashes.
        let (base, g) = Generation::split_suffix("A-B__C-D-00000003").unwrap();
        assert_eq!((base, g), ("A-B__C-D", Generation(3)));
    }

    #[test]
    fn highest_at_or_below_ignores_newer() {
        let gens = [Generation(1), Generation(3), Generation(7)];
        assert_eq!(Generation(5).highest_at_or_below(gens), Some(Generation(3)));
        assert_eq!(Generation(7).highest_at_or_below(gens), Some(Generation(7)));
        assert_eq!(Generation(0).highest_at_or_below(gens), None);
        assert_eq!(Generation(9).highest_at_or_below([]), None);
    }
}
