//! `index_part.json`: the remote index of one timeline, and the tenant
//! manifest. Both are JSON, parsed with `deny_unknown_fields` (a file from a
//! newer format is refused with a clear error, never half-understood).
//!
//! ```json
//! {"version": 1,
//!  "layers": {"LAYERNAME": {"file_size": 123, "generation": 1, "crc32c": 305419896}},
//!  "metadata": {"disk_consistent_lsn": "0/16B5A50", ...}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utils::generation::Generation;
use utils::lsn::Lsn;

use crate::tenant::metadata::TimelineMetadata;
use crate::tenant::storage_layer::LayerName;

/// The `index_part.json` format version written and the only one read.
pub const INDEX_PART_VERSION: u32 = 1;
/// The tenant manifest format version.
pub const TENANT_MANIFEST_VERSION: u32 = 1;

/// What the index knows about one layer object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerFileMetadata {
    /// Size of the object in bytes.
    pub file_size: u64,
    /// Generation suffix of the object (`LAYERNAME-GEN`).
    pub generation: Generation,
    /// CRC32C of the object as uploaded; downloads are checked against it.
    pub crc32c: u32,
}

/// The remote index of a timeline: every layer it consists of, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPart {
    /// Format version ([`INDEX_PART_VERSION`]).
    pub version: u32,
    /// Layer file name -> object metadata.
    pub layers: BTreeMap<String, LayerFileMetadata>,
    /// The timeline metadata the layers are consistent with.
    pub metadata: TimelineMetadata,
    /// The timeline's WAL source (connection string, with its password if
    /// it has one), so that an attach on another node resumes ingest from
    /// it. Absent in indexes written before it existed, and for timelines
    /// without a source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_source_connstr: Option<String>,
}

/// A file that is not a valid index or manifest.
#[derive(Debug, thiserror::Error)]
#[error("{what} is invalid: {reason}")]
pub struct IndexParseError {
    /// Which object.
    pub what: String,
    /// Why.
    pub reason: String,
}

impl IndexPart {
    /// An index of `layers` with `metadata`.
    pub fn new(
        layers: impl IntoIterator<Item = (LayerName, LayerFileMetadata)>,
        metadata: TimelineMetadata,
    ) -> IndexPart {
        IndexPart {
            version: INDEX_PART_VERSION,
            layers: layers
                .into_iter()
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
            metadata,
            wal_source_connstr: None,
        }
    }

    /// The index with `wal_source_connstr` set.
    pub fn with_wal_source(mut self, connstr: Option<String>) -> IndexPart {
        self.wal_source_connstr = connstr;
        self
    }

    /// What the index makes durable remotely.
    pub fn disk_consistent_lsn(&self) -> Lsn {
        self.metadata.disk_consistent_lsn
    }

    /// JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an index serializes")
    }

    /// Parses and checks an index; `what` names the object in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<IndexPart, IndexParseError> {
        let err = |reason: String| IndexParseError {
            what: what.to_string(),
            reason,
        };
        let index: IndexPart = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if index.version != INDEX_PART_VERSION {
            return Err(err(format!(
                "format version {} is not the supported {INDEX_PART_VERSION}; upgrade the page server",
                index.version
            )));
        }
        for name in index.layers.keys() {
            name.parse::<LayerName>().map_err(|e| err(e.to_string()))?;
        }
        Ok(index)
    }

    /// The layers with parsed names.
    pub fn parsed_layers(&self) -> Vec<(LayerName, LayerFileMetadata)> {
        self.layers
            .iter()
            .map(|(n, m)| (n.parse().expect("checked when parsed"), *m))
            .collect()
    }
}

/// File in a timeline directory holding the remote index as this node last
/// uploaded or downloaded it, so a start-up while object storage is
/// unreachable can still load a timeline whose layers are all local.
pub const LOCAL_INDEX_COPY: &str = "remote_index.json";

/// The content of [`LOCAL_INDEX_COPY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalIndexCopy {
    /// The generation of the remote object (`index_part.json-GEN`).
    pub generation: Generation,
    /// The index.
    pub index: IndexPart,
}

impl LocalIndexCopy {
    /// Writes the copy into `timeline_dir`, crash safely (blocking).
    pub fn write(
        timeline_dir: &std::path::Path,
        generation: Generation,
        index: &IndexPart,
    ) -> std::io::Result<()> {
        let copy = LocalIndexCopy {
            generation,
            index: index.clone(),
        };
        let body = serde_json::to_vec(&copy).expect("an index copy serializes");
        utils::crashsafe::overwrite(&timeline_dir.join(LOCAL_INDEX_COPY), &body)
    }

    /// Reads the copy of `timeline_dir`; `None` when there is none
    /// (blocking).
    pub fn read(timeline_dir: &std::path::Path) -> Result<Option<LocalIndexCopy>, String> {
        let path = timeline_dir.join(LOCAL_INDEX_COPY);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let copy: LocalIndexCopy = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                // The same checks as a downloaded index.
                IndexPart::from_bytes(&copy.index.to_bytes(), &path.display().to_string())
                    .map_err(|e| e.to_string())?;
                Ok(Some(copy))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// `tenants/T/tenant-manifest-GEN.json`: written by each attachment, so the
/// highest generation ever used for a tenant can be found by listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantManifest {
    /// Format version ([`TENANT_MANIFEST_VERSION`]).
    pub version: u32,
    /// The generation that wrote it.
    pub generation: Generation,
    /// The tenant's configuration overrides, restored on attach.
    pub config: pageserver_api::tenant_config::TenantConfig,
}

impl TenantManifest {
    /// Parses and checks a manifest.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<TenantManifest, IndexParseError> {
        let err = |reason: String| IndexParseError {
            what: what.to_string(),
            reason,
        };
        let m: TenantManifest = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if m.version != TENANT_MANIFEST_VERSION {
            return Err(err(format!(
                "format version {} is not the supported {TENANT_MANIFEST_VERSION}",
                m.version
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pageserver_api::key::Key;

    fn layer(n: u64) -> LayerName {
        LayerName {
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(n)..Lsn(n + 0x10),
            is_delta: true,
        }
    }

    #[test]
    fn index_round_trips() {
        let mut m = TimelineMetadata::new_root(15);
        m.disk_consistent_lsn = Lsn(0x1234);
        let meta = LayerFileMetadata {
            file_size: 77,
            generation: Generation(3),
            crc32c: 0xdead_beef,
        };
        let index = IndexPart::new([(layer(0x10), meta), (layer(0x20), meta)], m);
        let bytes = index.to_bytes();
        let back = IndexPart::from_bytes(&bytes, "test").unwrap();
        assert_eq!(back, index);
        assert_eq!(back.disk_consistent_lsn(), Lsn(0x1234));
        assert_eq!(back.parsed_layers()[1].0, layer(0x20));
    }

    #[test]
    fn local_copy_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LocalIndexCopy::read(dir.path()).unwrap(), None);
        let index = IndexPart::new([], TimelineMetadata::new_root(15));
        LocalIndexCopy::write(dir.path(), Generation(4), &index).unwrap();
        let copy = LocalIndexCopy::read(dir.path()).unwrap().unwrap();
        assert_eq!((copy.generation, copy.index), (Generation(4), index));
        std::fs::write(dir.path().join(LOCAL_INDEX_COPY), b"{").unwrap();
        assert!(LocalIndexCopy::read(dir.path()).is_err());
    }

    #[test]
    fn wal_source_is_optional() {
        // An index written before the field existed parses, without a source.
        let old = br#"{"version":1,"layers":{},"metadata":{"disk_consistent_lsn":"0/16B5A50","prev_record_lsn":null,"ancestor_timeline":null,"ancestor_lsn":"0/0","latest_gc_cutoff_lsn":"0/0","initdb_lsn":"0/0","pg_version":15,"lsn_history":[]}}"#;
        let index = IndexPart::from_bytes(old, "old").unwrap();
        assert_eq!(index.wal_source_connstr, None);
        assert_eq!(index.disk_consistent_lsn(), Lsn(0x16B5A50));
        // Without a source nothing is written, so older readers still parse it.
        assert!(!String::from_utf8(index.to_bytes())
            .unwrap()
            .contains("wal_source"));
        let with = index.with_wal_source(Some("host=127.0.0.1 port=5432 user=u".into()));
        let back = IndexPart::from_bytes(&with.to_bytes(), "new").unwrap();
        assert_eq!(
            back.wal_source_connstr.as_deref(),
            Some("host=127.0.0.1 port=5432 user=u")
        );
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let index = IndexPart::new([], TimelineMetadata::new_root(15));
        let mut v: serde_json::Value = serde_json::from_slice(&index.to_bytes()).unwrap();
        v["surprise"] = serde_json::json!(1);
        let e = IndexPart::from_bytes(&serde_json::to_vec(&v).unwrap(), "idx").unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&index.to_bytes()).unwrap();
        v["version"] = serde_json::json!(99);
        let e = IndexPart::from_bytes(&serde_json::to_vec(&v).unwrap(), "idx").unwrap_err();
        assert!(e.to_string().contains("99"), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&index.to_bytes()).unwrap();
        v["layers"]["not-a-layer"] =
            serde_json::json!({"file_size": 1, "generation": 1, "crc32c": 1});
        assert!(IndexPart::from_bytes(&serde_json::to_vec(&v).unwrap(), "idx").is_err());

        let mut v: serde_json::Value = serde_json::from_slice(&index.to_bytes()).unwrap();
        v["layers"][layer(1).to_string()] =
            serde_json::json!({"file_size": 1, "generation": 1, "crc32c": 1, "extra": 2});
        let e = IndexPart::from_bytes(&serde_json::to_vec(&v).unwrap(), "idx").unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");

        let e =
            TenantManifest::from_bytes(br#"{"version":1,"generation":1,"config":{},"x":1}"#, "m")
                .unwrap_err();
        assert!(e.to_string().contains('x'), "{e}");
    }
}
