//! The timeline `metadata` file: what a timeline must know about itself to
//! load, in a checksummed envelope.
//!
//! Format: magic `PSTLMETA` (8 bytes), format version (u16 LE), body length
//! (u32 LE), the body as JSON, CRC32C (u32 LE) of everything before it. A
//! torn or altered file fails the checksum and the timeline goes Broken naming
//! the file, instead of loading wrong values.

use serde::{Deserialize, Serialize};
use utils::id::TimelineId;
use utils::lsn::Lsn;

const MAGIC: &[u8; 8] = b"PSTLMETA";
const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 8 + 2 + 4;
/// A metadata body is a few hundred bytes; anything near this is corruption.
const MAX_BODY_LEN: usize = 64 * 1024;

/// Durable facts about a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineMetadata {
    /// Everything at or below this LSN is in durable local files.
    pub disk_consistent_lsn: Lsn,
    /// Start of the last record at `disk_consistent_lsn`, when known.
    pub prev_record_lsn: Option<Lsn>,
    /// Parent timeline of a branch.
    pub ancestor_timeline: Option<TimelineId>,
    /// Branch point in the parent (0/0 for a root timeline).
    pub ancestor_lsn: Lsn,
    /// Reads below this LSN are refused: GC may have removed their data.
    pub latest_gc_cutoff_lsn: Lsn,
    /// LSN at which the timeline's initial data was imported.
    pub initdb_lsn: Lsn,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// `(unix seconds, disk_consistent_lsn)` samples taken at flushes, oldest
    /// first, thinned to a bounded count: maps `pitr_interval` to an LSN.
    #[serde(default)]
    pub lsn_history: Vec<(u64, Lsn)>,
}

/// Most samples kept in [`TimelineMetadata::lsn_history`].
const MAX_LSN_HISTORY: usize = 512;

impl TimelineMetadata {
    /// Metadata of a new root timeline with no data yet.
    pub fn new_root(pg_version: u32) -> TimelineMetadata {
        TimelineMetadata {
            disk_consistent_lsn: Lsn::INVALID,
            prev_record_lsn: None,
            ancestor_timeline: None,
            ancestor_lsn: Lsn::INVALID,
            latest_gc_cutoff_lsn: Lsn::INVALID,
            initdb_lsn: Lsn::INVALID,
            pg_version,
            lsn_history: Vec::new(),
        }
    }

    /// Records that `lsn` was durable at `now` (unix seconds). Samples less
    /// than a second apart replace each other; when the list is full every
    /// second older sample is dropped, so the covered span never shrinks.
    pub fn record_lsn_time(&mut self, now: u64, lsn: Lsn) {
        match self.lsn_history.last_mut() {
            Some(last) if last.0 == now => last.1 = lsn,
            _ => self.lsn_history.push((now, lsn)),
        }
        if self.lsn_history.len() > MAX_LSN_HISTORY {
            let mut i = 0;
            self.lsn_history.retain(|_| {
                i += 1;
                i % 2 == 1 || i > MAX_LSN_HISTORY / 2
            });
        }
    }

    /// The newest LSN known durable at or before `time` (unix seconds).
    pub fn lsn_at_time(&self, time: u64) -> Option<Lsn> {
        let idx = self.lsn_history.partition_point(|(t, _)| *t <= time);
        idx.checked_sub(1).map(|i| self.lsn_history[i].1)
    }
}

/// The metadata file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Wrong magic, version, length or checksum.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The checksummed body is not a valid metadata document.
    #[error("metadata body does not parse: {0}")]
    Body(#[from] serde_json::Error),
}

impl TimelineMetadata {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("metadata serializes");
        let mut buf = Vec::with_capacity(HEADER_LEN + body.len() + 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(&body);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Parses and verifies the file's bytes.
    pub fn from_bytes(buf: &[u8]) -> Result<Self, MetadataError> {
        let corrupt = |m: String| Err(MetadataError::Corrupt(m));
        if buf.len() < HEADER_LEN + 4 {
            return corrupt(format!("file is {} bytes, too short", buf.len()));
        }
        if &buf[..8] != MAGIC {
            return corrupt("bad magic".to_string());
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version != FORMAT_VERSION {
            return corrupt(format!(
                "format version {version}, this build reads version {FORMAT_VERSION}"
            ));
        }
        let len = u32::from_le_bytes(buf[10..14].try_into().expect("4 bytes")) as usize;
        if len > MAX_BODY_LEN || buf.len() != HEADER_LEN + len + 4 {
            return corrupt(format!(
                "body length {len} does not match file size {}",
                buf.len()
            ));
        }
        let (content, crc_bytes) = buf.split_at(HEADER_LEN + len);
        let stored = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
        let actual = crc32c::crc32c(content);
        if stored != actual {
            return corrupt(format!(
                "checksum mismatch: stored {stored:08x}, computed {actual:08x}"
            ));
        }
        Ok(serde_json::from_slice(&content[HEADER_LEN..])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TimelineMetadata {
        TimelineMetadata {
            disk_consistent_lsn: Lsn(0x1234),
            prev_record_lsn: Some(Lsn(0x1200)),
            ancestor_timeline: Some(TimelineId::generate()),
            ancestor_lsn: Lsn(0x1000),
            latest_gc_cutoff_lsn: Lsn(0x800),
            initdb_lsn: Lsn(0x100),
            pg_version: 15,
            lsn_history: vec![(100, Lsn(0x1000)), (200, Lsn(0x1234))],
        }
    }

    #[test]
    fn lsn_history_is_bounded_and_keeps_its_span() {
        let mut m = sample();
        m.lsn_history.clear();
        for t in 0..5000u64 {
            m.record_lsn_time(1000 + t, Lsn(t * 8));
        }
        assert!(m.lsn_history.len() <= MAX_LSN_HISTORY);
        assert_eq!(m.lsn_history[0], (1000, Lsn(0)));
        assert_eq!(m.lsn_history.last().unwrap().1, Lsn(4999 * 8));
        assert!(m.lsn_history.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(m.lsn_at_time(999), None);
        assert_eq!(m.lsn_at_time(1000), Some(Lsn(0)));
        assert_eq!(m.lsn_at_time(u64::MAX), Some(Lsn(4999 * 8)));
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(TimelineMetadata::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_detected() {
        let bytes = sample().to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(
                TimelineMetadata::from_bytes(&b).is_err(),
                "flip at {i} undetected"
            );
        }
        for len in 0..bytes.len() {
            assert!(TimelineMetadata::from_bytes(&bytes[..len]).is_err());
        }
    }
}
