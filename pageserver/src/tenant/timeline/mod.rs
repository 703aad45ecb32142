//! A timeline: one branch of a tenant's history, and the versioned page
//! store behind it (DESIGN.md section 3).
//!
//! * `layers.rs`: the in-memory, frozen and on-disk layers, loaded at start-up;
//! * `write.rs`: puts in LSN order, freeze, flush to L0 delta layers;
//! * `read.rs`: `get(key, lsn)` across layers and ancestors;
//! * `compaction.rs`: L0 -> L1 and image layers; `gc.rs`: removing old layers;
//! * `pg_read.rs`: PostgreSQL objects at an LSN; `logical_size.rs`: the
//!   incrementally kept logical size; `lsn_by_ts.rs`: LSN-by-timestamp.

pub mod compaction;
pub mod gc;
pub mod image_cache;
pub mod layer;
pub mod layers;
pub mod logical_size;
pub mod lsn_by_ts;
pub mod pg_read;
pub mod read;
pub mod rel_cache;
pub mod residence;
pub mod write;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pageserver_api::models::{LocalTimelineInfo, RemoteTimelineInfo, TenantState, TimelineInfo};
use pageserver_api::tenant_config::TenantConfig;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utils::crashsafe;
use utils::gate::Gate;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::metadata::TimelineMetadata;
use crate::config::METADATA_FILE;
use layers::LayerManager;

/// The tenant's configuration in force, shared by its timelines.
pub type SharedTenantConf = Arc<RwLock<TenantConfig>>;

/// End of the last record ingested and the start of that record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLsn {
    /// End of the last record: reads at or below it are complete.
    pub last: Lsn,
    /// Start of the last record, when known.
    pub prev: Option<Lsn>,
}

/// Mutexes that order the timeline's maintenance work. Never held across
/// an await point; taken in blocking tasks.
#[derive(Default)]
struct TimelineLocks {
    /// One writer at a time; freezing takes it too.
    write: Mutex<()>,
    /// One flush at a time.
    flush: Mutex<()>,
    /// One compaction at a time.
    compaction: Mutex<()>,
    /// One GC at a time; branch creation takes the parent's to pin its point.
    gc: Mutex<()>,
    /// Held while a throttled writer checks the L0 count and while layers
    /// leaving the map are announced on `layers_removed`, so that the
    /// writer misses no wake-up.
    l0_wait: Mutex<()>,
    /// Notified when compaction or GC removed layers from the map.
    layers_removed: std::sync::Condvar,
}

/// One timeline of a tenant. Owns a cancellation token (a child of its
/// tenant's) and a gate that every task working on it holds.
pub struct Timeline {
    /// The tenant this timeline belongs to.
    pub tenant_id: TenantId,
    /// This timeline's id.
    pub timeline_id: TimelineId,
    path: PathBuf,
    tenant_conf: SharedTenantConf,
    ancestor: OnceLock<Arc<Timeline>>,
    metadata: Mutex<TimelineMetadata>,
    state: Mutex<TenantState>,
    last_record: watch::Sender<RecordLsn>,
    layers: RwLock<LayerManager>,
    locks: TimelineLocks,
    /// Woken when frozen layers wait for the flush loop.
    flush_requested: Notify,
    /// Streams WAL from the timeline's WAL source, when it has one.
    wal_receiver: Mutex<Option<crate::walreceiver::WalReceiver>>,
    /// The incrementally kept logical size.
    logical_size: logical_size::LogicalSize,
    /// Relation sizes for reads at recent LSNs.
    rel_sizes: rel_cache::RelSizeCache,
    /// This timeline object's id in the node's image cache.
    image_cache_id: u64,
    /// The upload queue, when the timeline is backed by remote storage.
    remote: OnceLock<Arc<crate::tenant::remote::RemoteTimelineClient>>,
    /// Stops the upload queue: cancelled by `shutdown` after the queue had
    /// its chance to drain (not a child of `cancel`, which fires first).
    upload_cancel: CancellationToken,
    /// Layer downloads under way.
    downloads_in_progress: std::sync::atomic::AtomicUsize,
    /// Cancelled when the timeline shuts down.
    pub cancel: CancellationToken,
    /// Held by every task working on this timeline.
    pub gate: Gate,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("tenant_id", &self.tenant_id)
            .field("timeline_id", &self.timeline_id)
            .finish()
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        image_cache::IMAGE_CACHE.forget(self.image_cache_id);
    }
}

/// Sum of the sizes of the regular files below `path`.
pub fn dir_size(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    // Files come and go while we look (flushes, compaction, GC, downloads, evictions):
    // one that vanished between the listing and the stat counts as 0.
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let ft = match entry.file_type() {
            Ok(ft) => ft,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        if ft.is_dir() {
            match dir_size(&entry.path()) {
                Ok(n) => total += n,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        } else if ft.is_file() {
            match entry.metadata() {
                Ok(m) => total += m.len(),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Timeline {
    /// Writes a new timeline directory with its metadata so that a crash
    /// leaves either the whole directory or none: it is assembled under a
    /// temporary name and renamed into place.
    pub fn create_on_disk(path: &Path, metadata: &TimelineMetadata) -> io::Result<()> {
        let tmp = crashsafe::path_with_suffix(path, crashsafe::TEMP_SUFFIX);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp)?;
        crashsafe::overwrite(&tmp.join(METADATA_FILE), &metadata.to_bytes())?;
        fail::fail_point!("timeline-create-before-rename", |_| Err(io::Error::other(
            "failpoint timeline-create-before-rename"
        )));
        crashsafe::rename(&tmp, path)
    }

    /// Loads a timeline from its directory: metadata, then layer files
    /// (removing those above `disk_consistent_lsn` and unfinished ones). A
    /// missing or corrupt file gives a Broken timeline that says why, not an
    /// error: the tenant stays usable and the operator can see and delete
    /// the timeline.
    pub fn load(
        tenant_id: TenantId,
        timeline_id: TimelineId,
        path: PathBuf,
        tenant_conf: SharedTenantConf,
        parent_cancel: &CancellationToken,
    ) -> Timeline {
        let file = path.join(METADATA_FILE);
        let loaded = std::fs::read(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
            .and_then(|bytes| {
                TimelineMetadata::from_bytes(&bytes).map_err(|e| format!("{}: {e}", file.display()))
            })
            .and_then(|m| {
                let layers =
                    LayerManager::load(&path, tenant_id, timeline_id, m.disk_consistent_lsn)?;
                Ok((m, layers))
            });
        let (metadata, layers, state) = match loaded {
            Ok((m, layers)) => (m, layers, TenantState::Active),
            Err(reason) => {
                tracing::error!(%tenant_id, %timeline_id, "timeline is broken: {reason}");
                (
                    TimelineMetadata::new_root(pageserver_api::models::DEFAULT_PG_VERSION),
                    LayerManager::default(),
                    TenantState::Broken { reason },
                )
            }
        };
        Self::new(
            tenant_id,
            timeline_id,
            path,
            metadata,
            layers,
            state,
            tenant_conf,
            parent_cancel,
        )
    }

    /// A timeline object for metadata that was just written (and no layers).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant_id: TenantId,
        timeline_id: TimelineId,
        path: PathBuf,
        metadata: TimelineMetadata,
        layers: LayerManager,
        state: TenantState,
        tenant_conf: SharedTenantConf,
        parent_cancel: &CancellationToken,
    ) -> Timeline {
        let (last_record, _) = watch::channel(RecordLsn {
            last: metadata.disk_consistent_lsn,
            prev: metadata.prev_record_lsn,
        });
        let rel_sizes = rel_cache::RelSizeCache::new(metadata.disk_consistent_lsn);
        Timeline {
            tenant_id,
            timeline_id,
            path,
            tenant_conf,
            ancestor: OnceLock::new(),
            metadata: Mutex::new(metadata),
            state: Mutex::new(state),
            last_record,
            layers: RwLock::new(layers),
            locks: TimelineLocks::default(),
            flush_requested: Notify::new(),
            wal_receiver: Mutex::new(None),
            logical_size: logical_size::LogicalSize::default(),
            rel_sizes,
            image_cache_id: image_cache::next_cache_id(),
            remote: OnceLock::new(),
            upload_cancel: CancellationToken::new(),
            downloads_in_progress: Default::default(),
            cancel: parent_cancel.child_token(),
            gate: Gate::new(format!("timeline {tenant_id}/{timeline_id}")),
        }
    }

    /// The cache of relation sizes that ingest keeps current.
    pub fn rel_size_cache(&self) -> &rel_cache::RelSizeCache {
        &self.rel_sizes
    }

    /// A root timeline that belongs to no tenant, in a new directory
    /// `dir/TIMELINE_ID`, durable from `start` on: for tools, benchmarks and
    /// tests of the storage engine.
    pub fn create_standalone(
        dir: &Path,
        start: Lsn,
        tenant_conf: SharedTenantConf,
    ) -> io::Result<Arc<Timeline>> {
        let mut m = TimelineMetadata::new_root(pageserver_api::models::DEFAULT_PG_VERSION);
        m.disk_consistent_lsn = start;
        m.initdb_lsn = start;
        let timeline_id = TimelineId::generate();
        let path = dir.join(timeline_id.to_string());
        Self::create_on_disk(&path, &m)?;
        Ok(Arc::new(Timeline::new(
            TenantId::generate(),
            timeline_id,
            path,
            m,
            LayerManager::default(),
            TenantState::Active,
            tenant_conf,
            &CancellationToken::new(),
        )))
    }

    /// Connects the timeline to its upload queue (once, before activation).
    pub fn set_remote_client(&self, client: Arc<crate::tenant::remote::RemoteTimelineClient>) {
        let _ = self.remote.set(client);
    }

    /// The upload queue, when remote storage backs the timeline.
    pub fn remote_client(&self) -> Option<&Arc<crate::tenant::remote::RemoteTimelineClient>> {
        self.remote.get()
    }

    /// What the latest uploaded index covers.
    pub fn remote_consistent_lsn(&self) -> Option<Lsn> {
        self.remote.get().and_then(|r| r.remote_consistent_lsn())
    }

    /// Adds layers named by the remote index that are not in the map (they
    /// stay remote until read). Returns how many were added.
    pub fn add_remote_layers(
        &self,
        layers: &[(
            crate::tenant::storage_layer::LayerName,
            crate::tenant::remote::index::LayerFileMetadata,
        )],
    ) -> usize {
        let mut mgr = self.layers.write().expect("layers lock poisoned");
        layers
            .iter()
            .filter(|(name, meta)| mgr.insert_remote(&self.path, name, *meta))
            .count()
    }

    /// Takes the layers found corrupt by the load.
    pub fn take_corrupt_at_load(&self) -> Vec<(crate::tenant::storage_layer::LayerName, String)> {
        std::mem::take(
            &mut self
                .layers
                .write()
                .expect("layers lock poisoned")
                .corrupt_at_load,
        )
    }

    /// Whether layer downloads are under way.
    pub fn has_downloads_in_progress(&self) -> bool {
        self.downloads_in_progress
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// Every layer of the map.
    pub fn all_layers(&self) -> Vec<Arc<layer::Layer>> {
        self.layers
            .read()
            .expect("layers lock poisoned")
            .files
            .values()
            .cloned()
            .collect()
    }

    /// Schedules an index upload with the current metadata.
    pub fn schedule_index_upload(&self) {
        if let Some(remote) = self.remote.get() {
            remote.schedule_index_upload(self.metadata());
        }
    }

    /// Links a branch to its parent (once, after both are loaded).
    pub fn set_ancestor(&self, ancestor: Arc<Timeline>) {
        debug_assert_eq!(Some(ancestor.timeline_id), self.ancestor_timeline_id());
        let _ = self.ancestor.set(ancestor);
    }

    /// The parent timeline object of a branch.
    pub fn ancestor(&self) -> Option<&Arc<Timeline>> {
        self.ancestor.get()
    }

    /// The timeline's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current state.
    pub fn state(&self) -> TenantState {
        self.state.lock().expect("state lock poisoned").clone()
    }

    /// Moves to `state`.
    pub fn set_state(&self, state: TenantState) {
        *self.state.lock().expect("state lock poisoned") = state;
    }

    /// A copy of the durable metadata.
    pub fn metadata(&self) -> TimelineMetadata {
        self.metadata
            .lock()
            .expect("metadata lock poisoned")
            .clone()
    }

    /// One field of the metadata, without copying the rest (its LSN history
    /// is a few KiB): for the read path.
    fn metadata_field<T>(&self, f: impl FnOnce(&TimelineMetadata) -> T) -> T {
        f(&self.metadata.lock().expect("metadata lock poisoned"))
    }

    /// Changes the metadata with `f` and writes it durably; the in-memory
    /// copy changes only once the file is written.
    fn update_metadata(&self, f: impl FnOnce(&mut TimelineMetadata)) -> io::Result<()> {
        let mut guard = self.metadata.lock().expect("metadata lock poisoned");
        let mut next = guard.clone();
        f(&mut next);
        crashsafe::overwrite(&self.path.join(METADATA_FILE), &next.to_bytes())?;
        *guard = next;
        Ok(())
    }

    /// Records the LSN the timeline's initial data was imported at, and the
    /// first LSN at which it is consistent (reads below are refused).
    pub fn set_initial_lsns(&self, initdb_lsn: Lsn, readable_from: Lsn) -> io::Result<()> {
        self.update_metadata(|m| {
            m.initdb_lsn = initdb_lsn;
            m.latest_gc_cutoff_lsn = m.latest_gc_cutoff_lsn.max(readable_from);
        })
    }

    /// The tenant's configuration in force.
    pub fn tenant_conf(&self) -> TenantConfig {
        self.tenant_conf
            .read()
            .expect("config lock poisoned")
            .clone()
    }

    /// Parent timeline, if this is a branch.
    pub fn ancestor_timeline_id(&self) -> Option<TimelineId> {
        self.metadata_field(|m| m.ancestor_timeline)
    }

    /// Branch point in the parent.
    pub fn ancestor_lsn(&self) -> Lsn {
        self.metadata_field(|m| m.ancestor_lsn)
    }

    /// End (and start) of the last record ingested.
    pub fn record_lsn(&self) -> RecordLsn {
        *self.last_record.borrow()
    }

    /// End of the last record ingested.
    pub fn last_record_lsn(&self) -> Lsn {
        self.record_lsn().last
    }

    /// Everything at or below this LSN is in durable local files.
    pub fn disk_consistent_lsn(&self) -> Lsn {
        self.metadata_field(|m| m.disk_consistent_lsn)
    }

    /// Reads below this LSN are refused.
    pub fn gc_cutoff_lsn(&self) -> Lsn {
        self.metadata_field(|m| m.latest_gc_cutoff_lsn)
    }

    /// Number of L0 delta layers (compaction backlog).
    pub fn l0_count(&self) -> usize {
        self.layers
            .read()
            .expect("layers lock poisoned")
            .map
            .level0_deltas()
            .len()
    }

    /// Layer files by level: (L0 count, L0 bytes, L1 count, L1 bytes, image count, image bytes).
    pub fn layer_stats(&self) -> layers::LayerStats {
        self.layers.read().expect("layers lock poisoned").stats()
    }

    /// Bytes of the layer files in the layer map, each measured on disk now
    /// (`current_physical_size_non_incremental`). Blocking.
    pub fn layer_files_size_on_disk(&self) -> io::Result<u64> {
        let names: Vec<_> = {
            let layers = self.layers.read().expect("layers lock poisoned");
            layers
                .map
                .iter_historic()
                .map(|l| l.layer_name().to_string())
                .collect()
        };
        let mut total = 0;
        for name in names {
            match std::fs::metadata(self.path.join(&name)) {
                Ok(m) => total += m.len(),
                // Removed by compaction or GC since the list was taken.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// The API view of this timeline. Reads the file system for sizes, so
    /// call it from a blocking context. The non-incremental sizes are
    /// computed only when asked for: the logical one reads every relation
    /// size at the last record LSN, the physical one measures every layer
    /// file.
    pub fn info_blocking(
        &self,
        include_non_incremental_logical: bool,
        include_non_incremental_physical: bool,
    ) -> TimelineInfo {
        let m = self.metadata();
        let state = self.state();
        // Layer file bytes as the layer map records them; the
        // non-incremental form measures the same files on disk.
        let stats = self.layer_stats();
        let physical = Some(stats.l0_bytes + stats.l1_bytes + stats.image_bytes);
        let ancestor_lsn = m.ancestor_timeline.map(|_| m.ancestor_lsn);
        let record = self.record_lsn();
        let receiver = self.wal_receiver_status();
        let logical = self.current_logical_size();
        let logical_non_incremental = if include_non_incremental_logical
            && state == TenantState::Active
            && record.last >= m.latest_gc_cutoff_lsn
        {
            match self.logical_size(record.last) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "cannot compute the logical size at {}: {e}", record.last);
                    None
                }
            }
        } else {
            None
        };
        let physical_non_incremental = if include_non_incremental_physical {
            match self.layer_files_size_on_disk() {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "cannot measure layer files: {e}");
                    None
                }
            }
        } else {
            None
        };
        TimelineInfo {
            tenant_id: self.tenant_id,
            timeline_id: self.timeline_id,
            ancestor_timeline_id: m.ancestor_timeline,
            ancestor_lsn,
            last_record_lsn: record.last,
            prev_record_lsn: record.prev,
            disk_consistent_lsn: m.disk_consistent_lsn,
            remote_consistent_lsn: self.remote_consistent_lsn(),
            current_logical_size: logical,
            current_physical_size: physical,
            current_logical_size_non_incremental: logical_non_incremental,
            current_physical_size_non_incremental: physical_non_incremental,
            wal_source_connstr: receiver.as_ref().map(|r| r.connstr_masked.clone()),
            last_received_msg_lsn: receiver.as_ref().and_then(|r| r.last_received_msg_lsn),
            last_received_msg_ts: receiver.as_ref().and_then(|r| r.last_received_msg_ts),
            pg_version: m.pg_version,
            awaits_download: self
                .layers
                .read()
                .expect("layers lock poisoned")
                .awaits_download(),
            state: state.name().to_string(),
            broken_reason: match state {
                TenantState::Broken { reason } => Some(reason),
                _ => None,
            },
            local: LocalTimelineInfo {
                ancestor_timeline_id: m.ancestor_timeline,
                ancestor_lsn,
                current_logical_size: logical,
                current_physical_size: physical,
            },
            remote: RemoteTimelineInfo {
                remote_consistent_lsn: self.remote_consistent_lsn(),
            },
        }
    }

    /// Starts the flush loop and, when the timeline has a WAL source, the
    /// walreceiver. The tasks hold the gate, so shutdown waits for them.
    pub fn spawn_background(self: &Arc<Self>) {
        match crate::tenant::bootstrap::read_wal_source(&self.path) {
            Ok(Some(cfg)) => self.start_wal_receiver(cfg),
            Ok(None) => {}
            Err(e) => {
                let reason = format!("cannot read the WAL source: {e:#}");
                tracing::error!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "{reason}");
                self.set_state(TenantState::Broken { reason });
            }
        }
        self.spawn_logical_size_init();
        let Ok(guard) = self.gate.enter() else { return };
        let tl = self.clone();
        let span = tracing::info_span!("flush_loop", tenant_id = %self.tenant_id, timeline_id = %self.timeline_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                tl.flush_loop().await;
            }
            .instrument(span),
        );
        if let Some(remote) = self.remote.get() {
            let Ok(guard) = self.gate.enter() else { return };
            let (remote, cancel) = (remote.clone(), self.upload_cancel.clone());
            let span = tracing::info_span!("upload_queue", tenant_id = %self.tenant_id, timeline_id = %self.timeline_id);
            tokio::spawn(
                async move {
                    let _guard = guard;
                    remote.run(cancel).await;
                }
                .instrument(span),
            );
        }
    }

    fn start_wal_receiver(self: &Arc<Self>, cfg: pq_proto::ConnConfig) {
        let receiver =
            crate::walreceiver::WalReceiver::spawn(self.clone(), cfg, self.cancel.child_token());
        let old = std::mem::replace(
            &mut *self.wal_receiver.lock().expect("walreceiver lock poisoned"),
            receiver,
        );
        if let Some(old) = old {
            old.cancel.cancel();
        }
    }

    /// Changes (or with `None` clears) the WAL source: stored durably, then
    /// the walreceiver restarts with it. Blocking (file write).
    pub fn set_wal_source(
        self: &Arc<Self>,
        source: Option<pq_proto::ConnConfig>,
    ) -> io::Result<()> {
        crate::tenant::bootstrap::write_wal_source(&self.path, source.as_ref())?;
        // The index carries the source to the next attachment.
        if let Some(remote) = self.remote.get() {
            if remote.set_wal_source(source.as_ref().map(|c| c.to_connstr())) {
                remote.schedule_index_upload(self.metadata());
            }
        }
        match source {
            Some(cfg) => self.start_wal_receiver(cfg),
            None => {
                if let Some(old) = self
                    .wal_receiver
                    .lock()
                    .expect("walreceiver lock poisoned")
                    .take()
                {
                    old.cancel.cancel();
                }
            }
        }
        Ok(())
    }

    /// What the walreceiver reports, if one runs.
    pub fn wal_receiver_status(&self) -> Option<crate::walreceiver::WalReceiverStatus> {
        self.wal_receiver
            .lock()
            .expect("walreceiver lock poisoned")
            .as_ref()
            .map(|r| {
                r.status
                    .lock()
                    .expect("walreceiver status lock poisoned")
                    .clone()
            })
    }

    /// Flushes frozen layers when asked and freezes the open layer when it
    /// is older than `checkpoint_timeout`, until cancelled.
    async fn flush_loop(self: Arc<Self>) {
        const TICK: Duration = Duration::from_secs(1);
        const MAX_BACKOFF: Duration = Duration::from_secs(60);
        let mut backoff = TICK;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.flush_requested.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            let tl = self.clone();
            let result = tokio::task::spawn_blocking(move || {
                tl.freeze_if_old();
                tl.flush_frozen_blocking()
            })
            .await;
            match result {
                Ok(Ok(())) => backoff = TICK,
                Ok(Err(e)) => {
                    tracing::error!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "flush failed, retrying in {backoff:?}: {e:#}");
                    tokio::select! {
                        _ = self.cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "flush task failed: {e}")
                }
            }
        }
    }

    /// Stops every task of the timeline and waits for them. With `flush`
    /// (a graceful shutdown, not a delete), ingested data is first made
    /// durable, bounded by a time limit.
    pub async fn shutdown(self: &Arc<Self>, flush: bool) {
        const FLUSH_LIMIT: Duration = Duration::from_secs(30);
        let active = self.state() == TenantState::Active;
        if !matches!(self.state(), TenantState::Broken { .. }) {
            self.set_state(TenantState::Stopping);
        }
        if flush && active {
            let tl = self.clone();
            let task = tokio::task::spawn_blocking(move || tl.checkpoint_blocking());
            match tokio::time::timeout(FLUSH_LIMIT, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::error!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "flush at shutdown failed: {e:#}")
                }
                Ok(Err(e)) => {
                    tracing::error!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "flush task at shutdown failed: {e}")
                }
                Err(_) => {
                    tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "flush at shutdown still running after {FLUSH_LIMIT:?}; data above disk_consistent_lsn must be ingested again")
                }
            }
        }
        if flush && active {
            if let Some(remote) = self.remote.get() {
                // Wait while the queue makes progress, at most 30 s in all.
                const UPLOAD_LIMIT: Duration = Duration::from_secs(30);
                const STALL_LIMIT: Duration = Duration::from_secs(3);
                let started = std::time::Instant::now();
                let mut depth = remote.queue_depth();
                loop {
                    match remote
                        .wait_drained(STALL_LIMIT, &CancellationToken::new())
                        .await
                    {
                        Ok(()) => break,
                        Err(e) => {
                            let now = remote.queue_depth();
                            if now >= depth || started.elapsed() >= UPLOAD_LIMIT {
                                tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "at shutdown: {e}; the rest is uploaded after the restart");
                                break;
                            }
                            depth = now;
                        }
                    }
                }
            }
        }
        self.cancel.cancel();
        self.upload_cancel.cancel();
        self.gate.close().await;
    }
}
