//! Where a timeline's layers live: on-demand download of layers that are
//! only in remote storage, re-download of corrupt local copies, and
//! eviction of local files that were not read for a while.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::layer::Layer;
use super::Timeline;
use crate::tenant::remote::download;
use crate::tenant::remote::paths;
use crate::tenant::storage_layer::layer_file::{LayerError, LayerReader};

/// Attempts at downloading a layer before a read fails.
const DOWNLOAD_ATTEMPTS: u32 = 3;

impl Timeline {
    /// The open reader of `layer`, downloading the file first when it is
    /// not resident. Concurrent callers share one download. Blocking: call
    /// from a blocking thread of the runtime.
    pub fn layer_reader(&self, layer: &Arc<Layer>) -> Result<Arc<LayerReader>, LayerError> {
        if let Some(r) = layer.resident_reader() {
            return Ok(r);
        }
        let _guard = layer.lock_download();
        if let Some(r) = layer.resident_reader() {
            return Ok(r);
        }
        self.download_locked(layer)
    }

    /// Runs `read` on the reader of `layer`; when the local copy turns out
    /// corrupt and the layer is in remote storage, downloads it again and
    /// retries once: a corrupt local copy is never served.
    pub fn read_layer<T>(
        &self,
        layer: &Arc<Layer>,
        read: impl Fn(&LayerReader) -> Result<T, LayerError>,
    ) -> Result<T, LayerError> {
        match read(&*self.layer_reader(layer)?) {
            Err(LayerError::Corrupt { .. }) if layer.remote().is_some() => {
                read(&*self.redownload_corrupt(layer)?)
            }
            other => other,
        }
    }

    /// Drops a corrupt local copy and downloads the layer again.
    pub fn redownload_corrupt(&self, layer: &Arc<Layer>) -> Result<Arc<LayerReader>, LayerError> {
        let _guard = layer.lock_download();
        tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "local layer file {} is corrupt; downloading it again", layer.local_path().display());
        layer
            .drop_local()
            .map_err(|e| LayerError::io(layer.local_path(), e))?;
        self.download_locked(layer)
    }

    /// Downloads `layer` (its download lock held), checking the CRC32C
    /// from the index and the file's own checksums; a mismatch is
    /// discarded and retried, and after [`DOWNLOAD_ATTEMPTS`] the read fails
    /// naming the object.
    fn download_locked(&self, layer: &Arc<Layer>) -> Result<Arc<LayerReader>, LayerError> {
        let name = layer.name();
        let (Some(meta), Some(remote)) = (layer.remote(), self.remote_client()) else {
            return Err(LayerError::io(
                layer.local_path(),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the layer file is missing locally and is not in remote storage",
                ),
            ));
        };
        let object = paths::layer_path(&self.tenant_id, &self.timeline_id, &name, meta.generation);
        let storage = remote.storage().clone();
        let handle = tokio::runtime::Handle::current();
        self.downloads_in_progress.fetch_add(1, Ordering::Relaxed);
        let _in_progress = scopeguard(|| {
            self.downloads_in_progress.fetch_sub(1, Ordering::Relaxed);
        });
        let mut last_error = String::new();
        for attempt in 1..=DOWNLOAD_ATTEMPTS {
            if self.cancel.is_cancelled() {
                last_error = "the timeline is shutting down".to_string();
                break;
            }
            let started = std::time::Instant::now();
            let result = handle.block_on(download::download_layer(
                &storage,
                &self.tenant_id,
                &self.timeline_id,
                &name,
                &meta,
                layer.local_path(),
                &self.cancel,
            ));
            match result {
                Ok(len) => match LayerReader::open(layer.local_path()) {
                    Ok(reader) => {
                        let reader = Arc::new(reader);
                        layer.set_resident(reader.clone());
                        remote.health().success();
                        crate::metrics::LAYER_DOWNLOADS.inc();
                        tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "downloaded layer {name} ({len} bytes) in {:?}", started.elapsed());
                        return Ok(reader);
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(layer.local_path());
                        last_error = e.to_string();
                    }
                },
                Err(e) => {
                    last_error = e.to_string();
                    if self.cancel.is_cancelled() {
                        break;
                    }
                    remote.health().failure(&last_error);
                }
            }
            tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "download of layer {name} failed (attempt {attempt} of {DOWNLOAD_ATTEMPTS}): {last_error}");
        }
        Err(LayerError::Download {
            layer: name.to_string(),
            object: object.to_string(),
            reason: last_error,
        })
    }

    /// Evicts every resident layer that is in remote storage; returns
    /// (evicted, not resident). Blocking.
    pub fn evict_all_blocking(&self) -> std::io::Result<(usize, usize)> {
        let (mut evicted, mut not_resident) = (0, 0);
        for layer in self.all_layers() {
            if !layer.is_resident() {
                not_resident += 1;
            } else if layer.evict()? {
                evicted += 1;
            }
        }
        Ok((evicted, not_resident))
    }

    /// Evicts resident, uploaded layers not read for `threshold`. Blocking.
    pub fn evict_cold_blocking(&self, threshold: Duration) -> std::io::Result<usize> {
        let now = super::unix_now();
        let mut evicted = 0;
        for layer in self.all_layers() {
            if layer.is_resident()
                && now.saturating_sub(layer.last_access()) >= threshold.as_secs()
                && layer.evict()?
            {
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "evicted {evicted} layers not read for {threshold:?}");
        }
        Ok(evicted)
    }
}

/// Test builds: a simulated disk of this many bytes replaces the file
/// system's figures; its used bytes are the resident layer files' bytes
/// (`PUT /v1/testing/disk_usage`), so disk-usage eviction is deterministic.
#[cfg(feature = "testing")]
pub static DISK_USAGE_OVERRIDE: std::sync::Mutex<Option<u64>> = std::sync::Mutex::new(None);

/// Percentage of the disk that is used: the file system holding `path`, or
/// in test builds the simulated disk when one is set.
fn measured_usage_pct(path: &std::path::Path, timelines: &[Arc<Timeline>]) -> std::io::Result<f64> {
    #[cfg(feature = "testing")]
    if let Some(total) = *DISK_USAGE_OVERRIDE.lock().expect("lock poisoned") {
        let used: u64 = timelines
            .iter()
            .flat_map(|t| t.all_layers())
            .filter(|l| l.is_resident())
            .map(|l| l.desc.file_size)
            .sum();
        return Ok(100.0 * used as f64 / total.max(1) as f64);
    }
    let _ = timelines;
    disk_usage_pct(path)
}

/// Percentage of the file system holding `path` that is used.
fn disk_usage_pct(path: &std::path::Path) -> std::io::Result<f64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let total = st.blocks() as f64 * st.fragment_size() as f64;
    let avail = st.blocks_available() as f64 * st.fragment_size() as f64;
    if total <= 0.0 {
        return Ok(0.0);
    }
    Ok(100.0 * (total - avail) / total)
}

/// While the file system of `workdir` is fuller than `max_pct`, evicts
/// resident uploaded layers of `timelines`, least recently read first.
/// Returns how many were evicted. Blocking.
pub fn evict_for_disk_usage(
    workdir: &std::path::Path,
    max_pct: u8,
    timelines: &[Arc<Timeline>],
) -> std::io::Result<usize> {
    if measured_usage_pct(workdir, timelines)? <= f64::from(max_pct) {
        return Ok(0);
    }
    let mut candidates: Vec<Arc<Layer>> = timelines
        .iter()
        .flat_map(|t| t.all_layers())
        .filter(|l| l.is_resident() && l.remote().is_some())
        .collect();
    candidates.sort_by_key(|l| l.last_access());
    let mut evicted = 0;
    for layer in candidates {
        if measured_usage_pct(workdir, timelines)? <= f64::from(max_pct) {
            break;
        }
        if layer.evict()? {
            evicted += 1;
        }
    }
    Ok(evicted)
}

/// Runs `f` when dropped.
struct ScopeGuard<F: FnMut()>(F);

impl<F: FnMut()> Drop for ScopeGuard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn scopeguard<F: FnMut()>(f: F) -> ScopeGuard<F> {
    ScopeGuard(f)
}
