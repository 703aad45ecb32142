//! `pagectl layer summary` and `pagectl layer dump`: what one delta or image
//! layer file holds. Every value read is checked against its CRC; a corrupt
//! value stops the command with an error naming the file and offset.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pageserver::tenant::storage_layer::layer_file::{LayerError, LayerReader};
use pageserver::tenant::storage_layer::LayerName;
use pageserver_api::key::Key;
use pageserver_api::value::Value;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

/// Image bytes shown by `dump --values`; the rest is elided.
const MAX_IMAGE_HEX: usize = 64;

/// What `pagectl layer summary` reports about a layer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// The file.
    pub path: PathBuf,
    /// The layer name its header describes.
    pub name: LayerName,
    /// Delta layer and level 0 (a delta over the whole key space).
    pub is_l0: bool,
    /// Tenant in the header.
    pub tenant_id: TenantId,
    /// Timeline in the header.
    pub timeline_id: TimelineId,
    /// File size in bytes.
    pub file_size: u64,
    /// Number of (key, LSN) values.
    pub values: u64,
    /// Number of distinct keys.
    pub distinct_keys: u64,
    /// Sum of the values' sizes (serialized, uncompressed).
    pub value_bytes: u64,
    /// Values that are images.
    pub images: u64,
    /// Values that are records.
    pub records: u64,
    /// Values that do not decode as a [`Value`].
    pub undecodable: u64,
}

/// Opens the layer file and reads every value (checking each CRC).
pub fn summarize(path: &Path) -> Result<LayerSummary, LayerError> {
    let reader = LayerReader::open(path)?;
    let desc = reader.desc();
    let distinct_keys = reader
        .index_entries()
        .map(|(key, _)| key)
        .collect::<BTreeSet<_>>()
        .len() as u64;
    let mut summary = LayerSummary {
        path: path.to_owned(),
        name: desc.layer_name(),
        is_l0: desc.is_l0(),
        tenant_id: reader.tenant_id(),
        timeline_id: reader.timeline_id(),
        file_size: desc.file_size,
        values: 0,
        distinct_keys,
        value_bytes: 0,
        images: 0,
        records: 0,
        undecodable: 0,
    };
    for value in reader.iter_values() {
        let (_, _, bytes) = value?;
        summary.values += 1;
        summary.value_bytes += bytes.len() as u64;
        match Value::des(&bytes) {
            Ok(Value::Image(_)) => summary.images += 1,
            Ok(Value::Record(_)) => summary.records += 1,
            Err(_) => summary.undecodable += 1,
        }
    }
    Ok(summary)
}

impl fmt::Display for LayerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match (self.name.is_delta, self.is_l0) {
            (true, true) => "delta (L0)",
            (true, false) => "delta",
            (false, _) => "image",
        };
        let Range { start, end } = &self.name.lsn_range;
        let lsns = if self.name.is_delta {
            format!("{start}..{end} (end exclusive)")
        } else {
            format!("{start} (image LSN)")
        };
        writeln!(f, "file:          {}", self.path.display())?;
        writeln!(f, "layer name:    {}", self.name)?;
        writeln!(f, "kind:          {kind}")?;
        writeln!(f, "tenant:        {}", self.tenant_id)?;
        writeln!(f, "timeline:      {}", self.timeline_id)?;
        writeln!(
            f,
            "key start:     {} ({})",
            self.name.key_range.start,
            describe_key(&self.name.key_range.start)
        )?;
        writeln!(
            f,
            "key end:       {} ({}, exclusive)",
            self.name.key_range.end,
            describe_key(&self.name.key_range.end)
        )?;
        writeln!(f, "LSN range:     {lsns}")?;
        writeln!(f, "file size:     {} bytes", self.file_size)?;
        writeln!(f, "values:        {}", self.values)?;
        writeln!(f, "distinct keys: {}", self.distinct_keys)?;
        writeln!(f, "value bytes:   {}", self.value_bytes)?;
        writeln!(f, "images:        {}", self.images)?;
        writeln!(f, "records:       {}", self.records)?;
        if self.undecodable > 0 {
            writeln!(f, "undecodable:   {}", self.undecodable)?;
        }
        Ok(())
    }
}

/// Writes one line per (key, LSN) of the layer file to `out`, tab-separated:
/// key hex, decoded key kind, LSN, value summary (and with `show_values`, the
/// value itself).
pub fn dump(path: &Path, show_values: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let reader = LayerReader::open(path)?;
    for value in reader.iter_values() {
        let (key, lsn, bytes) = value?;
        writeln!(out, "{}", dump_line(&key, lsn, &bytes, show_values))
            .context("cannot write to standard output")?;
    }
    Ok(())
}

/// One line of `dump`.
fn dump_line(key: &Key, lsn: Lsn, bytes: &[u8], show_values: bool) -> String {
    let value = match Value::des(bytes) {
        Ok(Value::Image(img)) if show_values => {
            let shown = &img[..img.len().min(MAX_IMAGE_HEX)];
            let more = img.len() - shown.len();
            let elided = if more > 0 {
                format!(" (+{more} bytes)")
            } else {
                String::new()
            };
            format!("image {} bytes: {}{elided}", img.len(), hex::encode(shown))
        }
        Ok(Value::Image(img)) => format!("image {} bytes", img.len()),
        Ok(Value::Record(rec)) if show_values => format!("record {}: {rec:?}", rec.name()),
        Ok(Value::Record(rec)) => format!("record {}", rec.name()),
        Err(e) => format!("undecodable value of {} bytes: {e}", bytes.len()),
    };
    format!("{key}\t{}\t{lsn}\t{value}", describe_key(key))
}

/// The decoded kind of a key, e.g. `block 3 of relation 1663/5/16384`.
fn describe_key(key: &Key) -> String {
    if *key == Key::MAX {
        return "end of key space".to_string();
    }
    match key.kind() {
        Ok(kind) => kind.to_string(),
        Err(_) => "not a data key".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixture::{Fixture, TENANT, TIMELINE};

    #[test]
    fn summary_counts_values() {
        let fx = Fixture::new();
        let s = summarize(&fx.delta_layer).unwrap();
        assert!(s.is_l0 && s.name.is_delta);
        assert_eq!((s.tenant_id, s.timeline_id), (TENANT, TIMELINE));
        assert_eq!(s.name.lsn_range, Lsn(0x10)..Lsn(0x30));
        assert_eq!((s.values, s.distinct_keys), (5, 3));
        assert_eq!((s.images, s.records, s.undecodable), (3, 2, 0));
        // Three 8192-byte pages with a 9-byte image header, two 5-byte records.
        assert_eq!(s.value_bytes, 3 * (9 + 8192) + 2 * 5);
        assert_eq!(
            s.file_size,
            std::fs::metadata(&fx.delta_layer).unwrap().len()
        );
        let text = s.to_string();
        assert!(text.contains("kind:          delta (L0)"), "{text}");

        let s = summarize(&fx.image_layer).unwrap();
        assert!(!s.is_l0 && !s.name.is_delta);
        assert_eq!(
            (s.values, s.distinct_keys, s.images, s.records),
            (2, 2, 2, 0)
        );
        let text = s.to_string();
        assert!(text.contains("kind:          image"), "{text}");
        assert!(text.contains("block 0 of relation 1663/5/16384"), "{text}");
    }

    #[test]
    fn dump_lines() {
        let fx = Fixture::new();
        let mut out = Vec::new();
        dump(&fx.delta_layer, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let first: Vec<&str> = lines[0].split('\t').collect();
        assert_eq!(
            first,
            [
                pageserver_api::key::rel_block_key(crate::test_fixture::REL, 0)
                    .to_string()
                    .as_str(),
                "block 0 of relation 1663/5/16384",
                &Lsn(0x10).to_string(),
                "image 8192 bytes",
            ]
        );
        assert!(lines[3].ends_with("\trecord size-set"), "{text}");
        assert!(lines[4].ends_with("\trecord size-extend"), "{text}");

        let mut out = Vec::new();
        dump(&fx.delta_layer, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Page 1 is byte `i ^ 1` at offset i: 01 00 03 02 ...
        let first_bytes: Vec<u8> = (0..64u8).map(|i| i ^ 1).collect();
        let expected = format!(
            "\timage 8192 bytes: {} (+8128 bytes)",
            hex::encode(first_bytes)
        );
        assert!(lines[0].ends_with(&expected), "{}", lines[0]);
        assert!(
            lines[3].ends_with("record size-set: RelSizeSet(1)"),
            "{text}"
        );
    }

    #[test]
    fn corrupt_value_is_an_error_naming_the_file() {
        let fx = Fixture::new();
        // Inside the first value blob (the header is 99 bytes).
        fx.flip_byte(&fx.delta_layer, 120);
        let err = dump(&fx.delta_layer, false, &mut Vec::new()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&fx.delta_layer.display().to_string()), "{msg}");
        assert!(summarize(&fx.delta_layer).is_err());
    }

    #[test]
    fn undecodable_values_are_shown_not_fatal() {
        let line = dump_line(&Key::MIN, Lsn(8), &[0xee], false);
        assert!(line.contains("\tdatabase directory\t"), "{line}");
        assert!(line.contains("undecodable value of 1 bytes"), "{line}");
        assert!(dump_line(&Key::MAX, Lsn(8), &[], false).contains("end of key space"));
    }
}
