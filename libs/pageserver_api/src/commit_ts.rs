//! Commit timestamps: the value stored under
//! [`LAST_COMMIT_TS_KEY`](crate::key::LAST_COMMIT_TS_KEY), and conversions
//! between PostgreSQL's `TimestampTz` and RFC 3339 text.
//!
//! # The stored value
//!
//! Ingest writes a [`LastCommitTs`] image at the end LSN of every commit
//! record (`COMMIT` and `COMMIT PREPARED`). Reading the key at any LSN gives
//! the last commit at or below that LSN: its end LSN, its own timestamp, and
//! the running maximum of all commit timestamps seen up to it.
//!
//! Raw commit timestamps are not monotone in LSN (a backend takes its
//! timestamp before it inserts the commit record, so two concurrent commits
//! can land in the other order, and the primary's clock can step back). The
//! running maximum is monotone in LSN by construction, which is what makes a
//! binary search over LSN sound: "the largest LSN whose maximum is at or
//! before `t`" is well defined and found with O(log n) probes.
//!
//! Because it is an ordinary stored value it survives restarts, GC (within
//! the retained range: GC keeps the newest value at the cutoff) and branch
//! creation (a branch reads its parent's value below the branch point).
//!
//! Format: 24 bytes, little-endian: commit end LSN (`u64`), commit
//! timestamp (`i64`), running maximum (`i64`); timestamps are PostgreSQL
//! `TimestampTz` (microseconds since 2000-01-01 00:00:00 UTC).

use chrono::{DateTime, SecondsFormat, Utc};
use utils::lsn::Lsn;

use crate::value::ValueError;

/// Seconds from the Unix epoch (1970-01-01) to the PostgreSQL epoch
/// (2000-01-01), both UTC.
pub const PG_EPOCH_OFFSET_SECS: i64 = 946_684_800;

/// Size of an encoded [`LastCommitTs`].
pub const LAST_COMMIT_TS_SIZE: usize = 24;

/// The last commit at or below an LSN (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCommitTs {
    /// End LSN of the commit record: the value is stored at this LSN.
    pub commit_lsn: Lsn,
    /// The commit's own timestamp (`TimestampTz`).
    pub commit_ts: i64,
    /// The greatest commit timestamp at or below `commit_lsn`.
    pub max_ts: i64,
}

impl LastCommitTs {
    /// The value after a commit at `commit_lsn` with timestamp `ts`,
    /// following `prev` (the value before it, if any commit was seen).
    pub fn next(prev: Option<LastCommitTs>, commit_lsn: Lsn, ts: i64) -> LastCommitTs {
        LastCommitTs {
            commit_lsn,
            commit_ts: ts,
            max_ts: prev.map_or(ts, |p| p.max_ts.max(ts)),
        }
    }

    /// The 24-byte stored form.
    pub fn encode(&self) -> [u8; LAST_COMMIT_TS_SIZE] {
        let mut out = [0u8; LAST_COMMIT_TS_SIZE];
        out[0..8].copy_from_slice(&self.commit_lsn.0.to_le_bytes());
        out[8..16].copy_from_slice(&self.commit_ts.to_le_bytes());
        out[16..24].copy_from_slice(&self.max_ts.to_le_bytes());
        out
    }

    /// Reads [`LastCommitTs::encode`] output; anything else is an error.
    pub fn decode(b: &[u8]) -> Result<LastCommitTs, ValueError> {
        if b.len() < LAST_COMMIT_TS_SIZE {
            return Err(ValueError::Truncated {
                what: "last commit timestamp",
                need: LAST_COMMIT_TS_SIZE as u64,
                have: b.len(),
            });
        }
        if b.len() > LAST_COMMIT_TS_SIZE {
            return Err(ValueError::TrailingBytes(b.len() - LAST_COMMIT_TS_SIZE));
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(LastCommitTs {
            commit_lsn: Lsn(u(0)),
            commit_ts: u(8) as i64,
            max_ts: u(16) as i64,
        })
    }
}

/// A PostgreSQL `TimestampTz` as a UTC date-time; `None` outside the range
/// chrono can represent.
pub fn pg_timestamp_to_datetime(ts: i64) -> Option<DateTime<Utc>> {
    let secs = ts.div_euclid(1_000_000).checked_add(PG_EPOCH_OFFSET_SECS)?;
    let micros = ts.rem_euclid(1_000_000) as u32;
    DateTime::from_timestamp(secs, micros * 1000)
}

/// A UTC date-time as a PostgreSQL `TimestampTz` (microseconds since
/// 2000-01-01), truncating below a microsecond and saturating at the ends
/// of the `i64` range.
pub fn datetime_to_pg_timestamp(t: DateTime<Utc>) -> i64 {
    let secs = i128::from(t.timestamp()) - i128::from(PG_EPOCH_OFFSET_SECS);
    let micros = secs * 1_000_000 + i128::from(t.timestamp_subsec_micros());
    micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00Z`,
/// `2024-05-01T14:00:00.123456+02:00`) into a `TimestampTz`. The error
/// names the input and the expected format.
pub fn parse_rfc3339_to_pg(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| datetime_to_pg_timestamp(t.with_timezone(&Utc)))
        .map_err(|e| {
            format!(
                "invalid timestamp {s:?}: {e}; expected RFC 3339, e.g. 2024-05-01T12:00:00.000000Z"
            )
        })
}

/// A `TimestampTz` as RFC 3339 text in UTC with microseconds
/// (`2024-05-01T12:00:00.123456Z`).
pub fn format_pg_timestamp(ts: i64) -> String {
    match pg_timestamp_to_datetime(ts) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        // Only reachable for timestamps hundreds of thousands of years out.
        None => format!("<TimestampTz {ts} out of range>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_conversions() {
        assert_eq!(format_pg_timestamp(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(format_pg_timestamp(-1), "1999-12-31T23:59:59.999999Z");
        assert_eq!(parse_rfc3339_to_pg("2000-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_to_pg("2000-01-01T01:00:01.5+01:00"),
            Ok(1_500_000)
        );
        // 2024-05-01T12:00:00Z is 1714564800 s after the Unix epoch.
        assert_eq!(
            parse_rfc3339_to_pg("2024-05-01T12:00:00Z"),
            Ok((1_714_564_800 - PG_EPOCH_OFFSET_SECS) * 1_000_000)
        );
        let err = parse_rfc3339_to_pg("yesterday").unwrap_err();
        assert!(
            err.contains("RFC 3339") && err.contains("yesterday"),
            "{err}"
        );
        assert!(parse_rfc3339_to_pg("2024-05-01 12:00:00").is_err());
    }

    #[test]
    fn value_round_trip_and_errors() {
        let v = LastCommitTs {
            commit_lsn: Lsn(0x1_0000_0028),
            commit_ts: -5,
            max_ts: 77,
        };
        assert_eq!(LastCommitTs::decode(&v.encode()), Ok(v));
        assert!(matches!(
            LastCommitTs::decode(&[0; 23]),
            Err(ValueError::Truncated { .. })
        ));
        assert!(matches!(
            LastCommitTs::decode(&[0; 25]),
            Err(ValueError::TrailingBytes(1))
        ));
    }

    #[test]
    fn running_maximum_never_falls() {
        let a = LastCommitTs::next(None, Lsn(10), 100);
        assert_eq!(a.max_ts, 100);
        let b = LastCommitTs::next(Some(a), Lsn(20), 90);
        assert_eq!((b.commit_ts, b.max_ts, b.commit_lsn), (90, 100, Lsn(20)));
        let c = LastCommitTs::next(Some(b), Lsn(30), 120);
        assert_eq!(c.max_ts, 120);
    }

    proptest! {
        #[test]
        fn text_round_trip(ts in -(1i64 << 50)..(1i64 << 50)) {
            let text = format_pg_timestamp(ts);
            prop_assert_eq!(parse_rfc3339_to_pg(&text), Ok(ts));
        }
    }
}
