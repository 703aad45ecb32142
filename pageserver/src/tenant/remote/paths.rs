//! The remote layout (DESIGN.md section 4):
//!
//! ```text
//! tenants/TENANT/tenant-manifest-GEN.json
//! tenants/TENANT/timelines/TIMELINE/index_part.json-GEN
//! tenants/TENANT/timelines/TIMELINE/LAYERNAME-GEN
//! ```

use remote_storage::RemotePath;
use utils::generation::Generation;
use utils::id::{TenantId, TimelineId};

use crate::tenant::storage_layer::LayerName;

/// Base name of timeline indexes (before the generation suffix).
pub const INDEX_PART_NAME: &str = "index_part.json";
/// Name of the tenant heatmap object (no generation suffix: each attached
/// node overwrites it; it is a hint, checked against the indexes).
pub const HEATMAP_NAME: &str = "heatmap-v1.json";
const MANIFEST_PREFIX: &str = "tenant-manifest-";
const MANIFEST_SUFFIX: &str = ".json";

fn path(s: String) -> RemotePath {
    RemotePath::new(&s).expect("our remote paths are valid")
}

/// `tenants/TENANT`.
pub fn tenant_prefix(tenant_id: &TenantId) -> RemotePath {
    path(format!("tenants/{tenant_id}"))
}

/// `tenants/TENANT/timelines`.
pub fn timelines_prefix(tenant_id: &TenantId) -> RemotePath {
    path(format!("tenants/{tenant_id}/timelines"))
}

/// `tenants/TENANT/timelines/TIMELINE`.
pub fn timeline_prefix(tenant_id: &TenantId, timeline_id: &TimelineId) -> RemotePath {
    path(format!("tenants/{tenant_id}/timelines/{timeline_id}"))
}

/// A layer object.
pub fn layer_path(
    tenant_id: &TenantId,
    timeline_id: &TimelineId,
    name: &LayerName,
    generation: Generation,
) -> RemotePath {
    path(format!(
        "tenants/{tenant_id}/timelines/{timeline_id}/{}",
        generation.apply(&name.to_string())
    ))
}

/// A timeline index object.
pub fn index_path(
    tenant_id: &TenantId,
    timeline_id: &TimelineId,
    generation: Generation,
) -> RemotePath {
    path(format!(
        "tenants/{tenant_id}/timelines/{timeline_id}/{}",
        generation.apply(INDEX_PART_NAME)
    ))
}

/// `tenants/TENANT/heatmap-v1.json`.
pub fn heatmap_path(tenant_id: &TenantId) -> RemotePath {
    path(format!("tenants/{tenant_id}/{HEATMAP_NAME}"))
}

/// A tenant manifest object.
pub fn manifest_path(tenant_id: &TenantId, generation: Generation) -> RemotePath {
    path(format!(
        "tenants/{tenant_id}/{MANIFEST_PREFIX}{generation}{MANIFEST_SUFFIX}"
    ))
}

/// What an object name (last path segment) in a tenant's prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteObjectKind {
    /// A tenant manifest.
    Manifest(Generation),
    /// A timeline index.
    Index(Generation),
    /// A layer file.
    Layer(LayerName, Generation),
}

/// Classifies an object's file name; `None` for names we never write.
pub fn parse_object_name(name: &str) -> Option<RemoteObjectKind> {
    if let Some(rest) = name
        .strip_prefix(MANIFEST_PREFIX)
        .and_then(|r| r.strip_suffix(MANIFEST_SUFFIX))
    {
        return rest.parse().ok().map(RemoteObjectKind::Manifest);
    }
    let (base, generation) = Generation::split_suffix(name).ok()?;
    if base == INDEX_PART_NAME {
        return Some(RemoteObjectKind::Index(generation));
    }
    base.parse()
        .ok()
        .map(|layer| RemoteObjectKind::Layer(layer, generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pageserver_api::key::Key;
    use utils::lsn::Lsn;

    #[test]
    fn names_parse_back() {
        let t = TenantId::generate();
        let tl = TimelineId::generate();
        let layer = LayerName {
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(0x10)..Lsn(0x20),
            is_delta: true,
        };
        let last = |p: RemotePath| p.as_str().rsplit('/').next().unwrap().to_string();
        assert_eq!(
            parse_object_name(&last(layer_path(&t, &tl, &layer, Generation(2)))),
            Some(RemoteObjectKind::Layer(layer, Generation(2)))
        );
        assert_eq!(
            parse_object_name(&last(index_path(&t, &tl, Generation(0x1f)))),
            Some(RemoteObjectKind::Index(Generation(0x1f)))
        );
        let m = last(manifest_path(&t, Generation(3)));
        assert_eq!(m, "tenant-manifest-00000003.json");
        assert_eq!(
            parse_object_name(&m),
            Some(RemoteObjectKind::Manifest(Generation(3)))
        );
        assert_eq!(parse_object_name("index_part.json"), None);
        assert_eq!(parse_object_name(HEATMAP_NAME), None);
        assert_eq!(
            heatmap_path(&t).as_str(),
            format!("tenants/{t}/heatmap-v1.json")
        );
        assert_eq!(parse_object_name("junk-00000001"), None);
    }
}
