//! The layers of one timeline: the open in-memory layer, frozen layers
//! waiting for the flush, and the layer files with their map.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::layer::Layer;
use crate::config::METADATA_FILE;
use crate::tenant::remote::index::LayerFileMetadata;
use crate::tenant::storage_layer::inmemory_layer::InMemoryLayer;
use crate::tenant::storage_layer::layer_file::LayerReader;
use crate::tenant::storage_layer::layer_map::LayerMap;
use crate::tenant::storage_layer::{LayerName, PersistentLayerDesc};

/// A frozen in-memory layer and the record LSNs at its end.
#[derive(Clone)]
pub struct FrozenLayer {
    /// The layer; its end LSN is set.
    pub layer: Arc<InMemoryLayer>,
    /// Start of the last record in it, for the metadata after the flush.
    pub prev_record_lsn: Option<Lsn>,
}

/// Layer counts and bytes by level.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LayerStats {
    /// L0 delta layers.
    pub l0_count: usize,
    /// Bytes of L0 delta layers.
    pub l0_bytes: u64,
    /// L1 delta layers.
    pub l1_count: usize,
    /// Bytes of L1 delta layers.
    pub l1_bytes: u64,
    /// Image layers.
    pub image_count: usize,
    /// Bytes of image layers.
    pub image_bytes: u64,
}

/// Everything that holds a timeline's values.
#[derive(Default)]
pub struct LayerManager {
    /// Receives new values.
    pub open: Option<Arc<InMemoryLayer>>,
    /// Frozen, oldest first, waiting for the flush.
    pub frozen: Vec<FrozenLayer>,
    /// Finds layer files by key and LSN.
    pub map: LayerMap,
    /// Every layer in `map`, resident or not.
    pub files: HashMap<LayerName, Arc<Layer>>,
    /// Local layer files found corrupt by the load, with the error; not in
    /// the map until remote storage replaces them.
    pub corrupt_at_load: Vec<(LayerName, String)>,
}

impl LayerManager {
    /// Opens the layer files of a timeline directory. Unfinished files are
    /// removed, and so are layers holding data above `disk_consistent_lsn`
    /// (written by a flush whose metadata update did not happen).
    pub fn load(
        dir: &Path,
        tenant_id: TenantId,
        timeline_id: TimelineId,
        disk_consistent_lsn: Lsn,
    ) -> Result<LayerManager, String> {
        for removed in crashsafe::remove_temporaries(dir)
            .map_err(|e| format!("cannot clean {}: {e}", dir.display()))?
        {
            tracing::info!(%tenant_id, %timeline_id, "removed unfinished file {}", removed.display());
        }
        let mut mgr = LayerManager::default();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                tracing::warn!(%tenant_id, %timeline_id, "ignoring file with a non-UTF-8 name in {}", dir.display());
                continue;
            };
            if name == METADATA_FILE
                || name == crate::tenant::bootstrap::WAL_SOURCE_FILE
                || name == crate::tenant::remote::index::LOCAL_INDEX_COPY
            {
                continue;
            }
            let Ok(layer_name) = name.parse::<LayerName>() else {
                tracing::warn!(%tenant_id, %timeline_id, "ignoring unexpected file {name} in {}", dir.display());
                continue;
            };
            let path = entry.path();
            // An image at the disk consistent LSN is complete; a delta must end at or below it.
            if layer_name.lsn_range.end > disk_consistent_lsn + 1 {
                tracing::info!(%tenant_id, %timeline_id, "removing layer {name} above disk consistent LSN {disk_consistent_lsn}");
                std::fs::remove_file(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                continue;
            }
            let reader = match LayerReader::open(&path) {
                Ok(r) => r,
                Err(e @ crate::tenant::storage_layer::layer_file::LayerError::Corrupt { .. }) => {
                    // Never served: left out of the map. When the remote
                    // index names the layer it is downloaded again;
                    // otherwise the timeline is Broken (see
                    // `tenant/load_remote.rs`).
                    mgr.corrupt_at_load.push((layer_name, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            if reader.tenant_id() != tenant_id || reader.timeline_id() != timeline_id {
                return Err(format!(
                    "layer file {} belongs to {}/{}, not to this timeline",
                    path.display(),
                    reader.tenant_id(),
                    reader.timeline_id()
                ));
            }
            mgr.insert_file(Arc::new(reader));
        }
        crashsafe::fsync_dir(dir).map_err(|e| format!("cannot fsync {}: {e}", dir.display()))?;
        Ok(mgr)
    }

    /// Adds a new local layer file to the map.
    pub fn insert_file(&mut self, reader: Arc<LayerReader>) -> Arc<Layer> {
        let layer = Arc::new(Layer::resident(reader));
        self.files.insert(layer.name(), layer.clone());
        self.map.insert(layer.desc.clone());
        layer
    }

    /// Adds a layer known from the remote index, not resident locally
    /// (when it is not already in the map). Returns whether it was added.
    pub fn insert_remote(&mut self, dir: &Path, name: &LayerName, meta: LayerFileMetadata) -> bool {
        if let Some(existing) = self.files.get(name) {
            existing.set_remote(meta);
            return false;
        }
        let layer = Arc::new(Layer::remote_only(dir, name, meta));
        self.files.insert(name.clone(), layer.clone());
        self.map.insert(layer.desc.clone());
        true
    }

    /// Swaps layer files in one step (compaction, GC); returns the new
    /// layers and the removed ones.
    pub fn replace_files(
        &mut self,
        remove: &[LayerName],
        add: Vec<Arc<LayerReader>>,
    ) -> (Vec<Arc<Layer>>, Vec<Arc<Layer>>) {
        let removed = remove
            .iter()
            .filter_map(|name| self.files.remove(name))
            .collect();
        let added: Vec<Arc<Layer>> = add
            .into_iter()
            .map(|r| {
                let layer = Arc::new(Layer::resident(r));
                self.files.insert(layer.name(), layer.clone());
                layer
            })
            .collect();
        self.map
            .replace(remove, added.iter().map(|l| l.desc.clone()).collect());
        (added, removed)
    }

    /// A layer in the map.
    pub fn layer(&self, desc: &PersistentLayerDesc) -> Arc<Layer> {
        self.files
            .get(&desc.layer_name())
            .cloned()
            .expect("every layer in the map is in files")
    }

    /// Whether some layer is not resident locally.
    pub fn awaits_download(&self) -> bool {
        self.files.values().any(|l| !l.is_resident())
    }

    /// Counts and bytes by level.
    pub fn stats(&self) -> LayerStats {
        let mut s = LayerStats::default();
        for l in self.map.iter_historic() {
            let (count, bytes) = if l.is_l0() {
                (&mut s.l0_count, &mut s.l0_bytes)
            } else if l.is_delta {
                (&mut s.l1_count, &mut s.l1_bytes)
            } else {
                (&mut s.image_count, &mut s.image_bytes)
            };
            *count += 1;
            *bytes += l.file_size;
        }
        s
    }
}
