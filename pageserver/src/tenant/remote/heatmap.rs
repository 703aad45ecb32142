//! `tenants/TENANT/heatmap-v1.json`: which layers the attached node keeps
//! resident, so that secondary locations can download the same ones ahead
//! of a migration (`docs/remote_storage.md`, "Secondary locations").
//!
//! ```json
//! {"version": 1, "generation": 3, "created_at": 1700000000,
//!  "timelines": [{"timeline_id": "...", "layers": [
//!     {"name": "LAYERNAME", "metadata": {"file_size": 8192, "generation": 3, "crc32c": 1},
//!      "access_time": 1700000000}]}]}
//! ```
//!
//! Only an attached node that is not stale, and that finds no tenant manifest
//! of a newer generation, writes it. It is a hint: secondaries check every
//! layer against the timeline's index before downloading it.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utils::generation::Generation;
use utils::id::{TenantId, TimelineId};

use super::download::DownloadError;
use super::index::{IndexParseError, LayerFileMetadata};
use super::paths;
use crate::tenant::storage_layer::LayerName;

/// The heatmap format version written and the only one read.
pub const HEATMAP_VERSION: u32 = 1;

/// One resident layer of the attached node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatMapLayer {
    /// Layer file name.
    pub name: String,
    /// The remote object (size, generation, CRC32C), as in the index.
    pub metadata: LayerFileMetadata,
    /// Unix seconds of the layer's last read on the attached node.
    pub access_time: u64,
}

/// The resident layers of one timeline, most recently read first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatMapTimeline {
    /// The timeline.
    pub timeline_id: TimelineId,
    /// Its resident, uploaded layers.
    pub layers: Vec<HeatMapLayer>,
}

/// A tenant's heatmap; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatMapTenant {
    /// Format version ([`HEATMAP_VERSION`]).
    pub version: u32,
    /// Generation of the attachment that wrote it.
    pub generation: Generation,
    /// Unix seconds when it was made.
    pub created_at: u64,
    /// Every active timeline.
    pub timelines: Vec<HeatMapTimeline>,
}

impl HeatMapTenant {
    /// JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a heatmap serializes")
    }

    /// Parses and checks a heatmap; `what` names the object in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<HeatMapTenant, IndexParseError> {
        let err = |reason: String| IndexParseError {
            what: what.to_string(),
            reason,
        };
        let h: HeatMapTenant = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if h.version != HEATMAP_VERSION {
            return Err(err(format!(
                "format version {} is not the supported {HEATMAP_VERSION}",
                h.version
            )));
        }
        for t in &h.timelines {
            for l in &t.layers {
                l.name
                    .parse::<LayerName>()
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(h)
    }

    /// Number of layers named.
    pub fn layer_count(&self) -> usize {
        self.timelines.iter().map(|t| t.layers.len()).sum()
    }
}

/// The tenant's heatmap; `None` when no attached node wrote one yet.
pub async fn download_heatmap(
    storage: &remote_storage::GenericRemoteStorage,
    tenant_id: &TenantId,
    cancel: &CancellationToken,
) -> Result<Option<HeatMapTenant>, DownloadError> {
    let path = paths::heatmap_path(tenant_id);
    match storage.download(&path, cancel).await {
        Ok(d) => Ok(Some(HeatMapTenant::from_bytes(&d.bytes, path.as_str())?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Generations of the tenant manifests (a delimited listing of the
/// tenant's top level only, cheaper than [`super::download::list_tenant`]).
pub async fn list_manifest_generations(
    storage: &remote_storage::GenericRemoteStorage,
    tenant_id: &TenantId,
    cancel: &CancellationToken,
) -> Result<Vec<Generation>, DownloadError> {
    let prefix = paths::tenant_prefix(tenant_id);
    super::download::list_generations(storage, &prefix, cancel, |kind| match kind {
        paths::RemoteObjectKind::Manifest(g) => Some(g),
        _ => None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use pageserver_api::key::Key;
    use utils::lsn::Lsn;

    fn sample() -> HeatMapTenant {
        let name = LayerName {
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(0x10)..Lsn(0x20),
            is_delta: true,
        };
        HeatMapTenant {
            version: HEATMAP_VERSION,
            generation: Generation(3),
            created_at: 1_700_000_000,
            timelines: vec![HeatMapTimeline {
                timeline_id: TimelineId::generate(),
                layers: vec![HeatMapLayer {
                    name: name.to_string(),
                    metadata: LayerFileMetadata {
                        file_size: 10,
                        generation: Generation(2),
                        crc32c: 7,
                    },
                    access_time: 1_700_000_001,
                }],
            }],
        }
    }

    #[test]
    fn heatmap_round_trips_and_checks() {
        let h = sample();
        assert_eq!(HeatMapTenant::from_bytes(&h.to_bytes(), "h").unwrap(), h);
        assert_eq!(h.layer_count(), 1);

        let mut v: serde_json::Value = serde_json::from_slice(&h.to_bytes()).unwrap();
        v["version"] = serde_json::json!(2);
        let e = HeatMapTenant::from_bytes(&serde_json::to_vec(&v).unwrap(), "h").unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&h.to_bytes()).unwrap();
        v["timelines"][0]["layers"][0]["name"] = serde_json::json!("nope");
        assert!(HeatMapTenant::from_bytes(&serde_json::to_vec(&v).unwrap(), "h").is_err());

        let mut v: serde_json::Value = serde_json::from_slice(&h.to_bytes()).unwrap();
        v["surprise"] = serde_json::json!(true);
        let e = HeatMapTenant::from_bytes(&serde_json::to_vec(&v).unwrap(), "h").unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");
    }
}
