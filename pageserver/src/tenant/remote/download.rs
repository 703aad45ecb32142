//! Reading remote state: which generations wrote what, the index a
//! generation should load, and layer files (checked against the index).

use std::path::Path;

use remote_storage::{GenericRemoteStorage, ListMode, RemoteStorageError};
use tokio_util::sync::CancellationToken;
use utils::generation::Generation;
use utils::id::{TenantId, TimelineId};

use super::index::{IndexPart, LayerFileMetadata, TenantManifest};
use super::paths::{self, RemoteObjectKind};
use crate::tenant::storage_layer::LayerName;

/// Why remote state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Object storage failed (after its retries).
    #[error(transparent)]
    Storage(#[from] RemoteStorageError),
    /// An index or manifest does not parse.
    #[error(transparent)]
    Parse(#[from] super::index::IndexParseError),
    /// A local file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a tenant has in remote storage.
#[derive(Debug, Default, Clone)]
pub struct TenantListing {
    /// Generations of the tenant manifests.
    pub manifests: Vec<Generation>,
    /// Timelines with at least one object.
    pub timelines: Vec<TimelineId>,
    /// Highest generation of any object (manifest, index or layer).
    pub highest_generation: Option<Generation>,
}

/// Lists everything under `tenants/TENANT`.
pub async fn list_tenant(
    storage: &GenericRemoteStorage,
    tenant_id: &TenantId,
    cancel: &CancellationToken,
) -> Result<TenantListing, DownloadError> {
    let prefix = paths::tenant_prefix(tenant_id);
    let listing = storage
        .list(Some(&prefix), ListMode::Recursive, cancel)
        .await?;
    let mut out = TenantListing::default();
    for object in &listing.objects {
        let rest = object
            .path
            .as_str()
            .strip_prefix(prefix.as_str())
            .unwrap_or_default()
            .trim_start_matches('/');
        let segments: Vec<&str> = rest.split('/').collect();
        let generation = match segments.as_slice() {
            [name] => match paths::parse_object_name(name) {
                Some(RemoteObjectKind::Manifest(g)) => {
                    out.manifests.push(g);
                    Some(g)
                }
                _ => None,
            },
            ["timelines", timeline, name] => {
                if let Ok(id) = timeline.parse::<TimelineId>() {
                    if !out.timelines.contains(&id) {
                        out.timelines.push(id);
                    }
                }
                match paths::parse_object_name(name) {
                    Some(RemoteObjectKind::Index(g)) | Some(RemoteObjectKind::Layer(_, g)) => {
                        Some(g)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        out.highest_generation = out.highest_generation.max(generation);
    }
    out.manifests.sort();
    out.timelines.sort();
    Ok(out)
}

/// Generations of the indexes of one timeline.
pub async fn list_index_generations(
    storage: &GenericRemoteStorage,
    tenant_id: &TenantId,
    timeline_id: &TimelineId,
    cancel: &CancellationToken,
) -> Result<Vec<Generation>, DownloadError> {
    let prefix = paths::timeline_prefix(tenant_id, timeline_id);
    list_generations(storage, &prefix, cancel, |kind| match kind {
        RemoteObjectKind::Index(g) => Some(g),
        _ => None,
    })
    .await
}

/// Sorted generations of the objects directly under `prefix` (a delimited
/// listing) that `pick` recognises, from their names.
pub(super) async fn list_generations(
    storage: &GenericRemoteStorage,
    prefix: &remote_storage::RemotePath,
    cancel: &CancellationToken,
    pick: impl Fn(RemoteObjectKind) -> Option<Generation>,
) -> Result<Vec<Generation>, DownloadError> {
    let listing = storage
        .list(Some(prefix), ListMode::Delimited, cancel)
        .await?;
    let mut gens: Vec<Generation> = listing
        .objects
        .iter()
        .filter_map(|o| {
            pick(paths::parse_object_name(
                o.path.as_str().rsplit('/').next()?,
            )?)
        })
        .collect();
    gens.sort();
    Ok(gens)
}

/// The index a node attached with `generation` loads: the one with the
/// highest generation at or below it. `None` when the timeline has none.
pub async fn download_index(
    storage: &GenericRemoteStorage,
    tenant_id: &TenantId,
    timeline_id: &TimelineId,
    generation: Generation,
    cancel: &CancellationToken,
) -> Result<Option<(IndexPart, Generation)>, DownloadError> {
    let gens = list_index_generations(storage, tenant_id, timeline_id, cancel).await?;
    let Some(found) = generation.highest_at_or_below(gens) else {
        return Ok(None);
    };
    let path = paths::index_path(tenant_id, timeline_id, found);
    let download = storage.download(&path, cancel).await?;
    let index = IndexPart::from_bytes(&download.bytes, path.as_str())?;
    Ok(Some((index, found)))
}

/// The tenant manifest with the highest generation at or below `generation`.
pub async fn download_manifest(
    storage: &GenericRemoteStorage,
    tenant_id: &TenantId,
    manifests: &[Generation],
    generation: Generation,
    cancel: &CancellationToken,
) -> Result<Option<TenantManifest>, DownloadError> {
    let Some(found) = generation.highest_at_or_below(manifests.iter().copied()) else {
        return Ok(None);
    };
    let path = paths::manifest_path(tenant_id, found);
    let download = storage.download(&path, cancel).await?;
    Ok(Some(TenantManifest::from_bytes(
        &download.bytes,
        path.as_str(),
    )?))
}

/// Downloads one layer object to `local` (temp file, fsync, rename),
/// checking its CRC32C against the index.
pub async fn download_layer(
    storage: &GenericRemoteStorage,
    tenant_id: &TenantId,
    timeline_id: &TimelineId,
    name: &LayerName,
    meta: &LayerFileMetadata,
    local: &Path,
    cancel: &CancellationToken,
) -> Result<u64, DownloadError> {
    let path = paths::layer_path(tenant_id, timeline_id, name, meta.generation);
    let download = storage
        .download_verified(&path, meta.crc32c, cancel)
        .await?;
    let len = download.bytes.len() as u64;
    let local = local.to_path_buf();
    let bytes = download.bytes;
    tokio::task::spawn_blocking(move || {
        utils::crashsafe::overwrite(&local, &bytes).map_err(|e| (local, e))
    })
    .await
    .map_err(|e| DownloadError::Io {
        path: name.to_string(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|(p, source)| DownloadError::Io {
        path: p.display().to_string(),
        source,
    })?;
    crate::metrics::REMOTE_DOWNLOADED_BYTES.inc_by(len);
    Ok(len)
}
