//! The upload queue of one timeline.
//!
//! Operations run strictly in the order they were scheduled:
//!
//! * `UploadLayer`: the layer file goes up as `LAYERNAME-GEN`; its size and
//!   CRC32C join the *remote view* (the layers the next index will name);
//! * `Unlink`: layers leave the remote view (compaction and GC replaced
//!   them); their objects are remembered for deletion;
//! * `UploadIndex`: the remote view and the metadata go up as
//!   `index_part.json-GEN`; then `remote_consistent_lsn` advances and the
//!   unlinked objects go to the deletion queue.
//!
//! So an index never names a layer that is not uploaded, and an object is
//! deleted only once an uploaded index no longer names it. Consecutive layer
//! uploads run concurrently (they are independent); an index waits for all
//! of them. Each operation is retried with backoff until it succeeds or the
//! timeline shuts down; the flush never waits for the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utils::generation::Generation;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::index::{IndexPart, LayerFileMetadata};
use super::{paths, RemoteContext, TenantAttachment};
use crate::metrics;
use crate::tenant::metadata::TimelineMetadata;
use crate::tenant::storage_layer::LayerName;
use crate::tenant::timeline::layer::Layer;

/// Most layer uploads of one queue in flight at once.
const MAX_CONCURRENT_LAYER_UPLOADS: usize = 8;

enum QueueOp {
    UploadLayer(Arc<Layer>),
    Unlink(Vec<LayerName>),
    UploadIndex(Box<TimelineMetadata>),
}

#[derive(Default)]
struct QueueState {
    ops: VecDeque<QueueOp>,
    /// Ops taken by the task and not finished yet.
    running: usize,
    /// Layers the next index names, with their objects' metadata.
    remote_view: HashMap<LayerName, LayerFileMetadata>,
    /// Objects no longer named, to delete once an index without them is up.
    unlinked: Vec<(LayerName, LayerFileMetadata)>,
    /// What the latest uploaded index covers.
    remote_consistent_lsn: Option<Lsn>,
    /// The WAL source the next index carries.
    wal_source: Option<String>,
}

/// The upload queue of one timeline; see the module documentation.
pub struct RemoteTimelineClient {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline.
    pub timeline_id: TimelineId,
    ctx: Arc<RemoteContext>,
    attachment: Arc<TenantAttachment>,
    state: Mutex<QueueState>,
    /// Woken when ops are scheduled.
    scheduled: Notify,
    /// Woken when an op finishes.
    progressed: Notify,
    /// The timeline directory, where each uploaded index is copied.
    local_dir: std::sync::OnceLock<std::path::PathBuf>,
}

impl std::fmt::Debug for RemoteTimelineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RemoteTimelineClient({}/{})",
            self.tenant_id, self.timeline_id
        )
    }
}

/// Why waiting for the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The queue did not drain in time.
    #[error("the upload queue of timeline {timeline} still has {depth} operations after {waited:?}; object storage may be failing")]
    Timeout {
        /// The timeline.
        timeline: String,
        /// Operations left.
        depth: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// Shutdown.
    #[error("shutting down")]
    Cancelled,
}

impl RemoteTimelineClient {
    /// A queue for a timeline whose remote index is `index` (`None`: no index
    /// uploaded yet).
    pub fn new(
        tenant_id: TenantId,
        timeline_id: TimelineId,
        ctx: Arc<RemoteContext>,
        attachment: Arc<TenantAttachment>,
        index: Option<&IndexPart>,
    ) -> Arc<RemoteTimelineClient> {
        let mut state = QueueState::default();
        if let Some(index) = index {
            state.remote_view = index.parsed_layers().into_iter().collect();
            state.remote_consistent_lsn = Some(index.disk_consistent_lsn());
            state.wal_source = index.wal_source_connstr.clone();
        }
        Arc::new(RemoteTimelineClient {
            tenant_id,
            timeline_id,
            ctx,
            attachment,
            state: Mutex::new(state),
            scheduled: Notify::new(),
            progressed: Notify::new(),
            local_dir: std::sync::OnceLock::new(),
        })
    }

    /// Copies every uploaded index into `timeline_dir`
    /// ([`super::index::LOCAL_INDEX_COPY`]).
    pub fn keep_local_copy(&self, timeline_dir: std::path::PathBuf) {
        let _ = self.local_dir.set(timeline_dir);
    }

    /// The node's object storage.
    pub fn storage(&self) -> &remote_storage::GenericRemoteStorage {
        &self.ctx.storage
    }

    /// The node's object storage health.
    pub fn health(&self) -> &super::RemoteHealth {
        &self.ctx.health
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().expect("upload queue lock poisoned")
    }

    fn push(&self, op: QueueOp) {
        self.lock().ops.push_back(op);
        metrics::REMOTE_UPLOAD_QUEUE_DEPTH.inc();
        self.scheduled.notify_one();
    }

    /// Whether the remote view names `name`.
    pub fn is_uploaded(&self, name: &LayerName) -> bool {
        self.lock().remote_view.contains_key(name)
    }

    /// Schedules the upload of a new layer file.
    pub fn schedule_layer_upload(&self, layer: Arc<Layer>) {
        self.push(QueueOp::UploadLayer(layer));
    }

    /// Schedules removing layers from the remote view (and, after the next
    /// index upload, deleting their objects).
    pub fn schedule_unlink(&self, names: Vec<LayerName>) {
        if !names.is_empty() {
            self.push(QueueOp::Unlink(names));
        }
    }

    /// Schedules an index upload with `metadata`.
    pub fn schedule_index_upload(&self, metadata: TimelineMetadata) {
        self.push(QueueOp::UploadIndex(Box::new(metadata)));
    }

    /// Sets the WAL source that indexes carry from now on; returns whether
    /// it changed (then the caller schedules an index upload).
    pub fn set_wal_source(&self, connstr: Option<String>) -> bool {
        let mut s = self.lock();
        let changed = s.wal_source != connstr;
        s.wal_source = connstr;
        changed
    }

    /// What the latest uploaded index covers.
    pub fn remote_consistent_lsn(&self) -> Option<Lsn> {
        self.lock().remote_consistent_lsn
    }

    /// Operations queued or running.
    pub fn queue_depth(&self) -> usize {
        let s = self.lock();
        s.ops.len() + s.running
    }

    /// Waits until every operation scheduled so far has finished, at most `timeout`.
    pub async fn wait_drained(
        &self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), WaitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.progressed.notified();
            let depth = self.queue_depth();
            if depth == 0 {
                return Ok(());
            }
            tokio::select! {
                _ = notified => {}
                _ = cancel.cancelled() => return Err(WaitError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(WaitError::Timeout {
                        timeline: format!("{}/{}", self.tenant_id, self.timeline_id),
                        depth: self.queue_depth(),
                        waited: timeout,
                    })
                }
            }
        }
    }

    /// Runs the queue until `cancel` fires. The caller holds the timeline's gate.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let notified = self.scheduled.notified();
            let batch = self.take_batch();
            if batch.is_empty() {
                tokio::select! {
                    _ = notified => continue,
                    _ = cancel.cancelled() => break,
                }
            }
            let n = batch.len();
            let done = self.execute(batch, &cancel).await;
            {
                let mut s = self.lock();
                s.running -= n;
            }
            metrics::REMOTE_UPLOAD_QUEUE_DEPTH.sub(n as i64);
            self.progressed.notify_waiters();
            if !done {
                break;
            }
        }
        // Whatever is left is re-derived from local state at the next start.
        let left = {
            let mut s = self.lock();
            let left = s.ops.len();
            s.ops.clear();
            left
        };
        metrics::REMOTE_UPLOAD_QUEUE_DEPTH.sub(left as i64);
        self.progressed.notify_waiters();
    }

    /// The next ops to run: consecutive layer uploads (up to a limit), or
    /// one index upload; unlinks are applied at once, in order.
    fn take_batch(&self) -> Vec<QueueOp> {
        let mut s = self.lock();
        let mut batch = Vec::new();
        loop {
            match s.ops.front() {
                None => break,
                Some(QueueOp::Unlink(_)) if batch.is_empty() => {
                    let Some(QueueOp::Unlink(names)) = s.ops.pop_front() else {
                        unreachable!()
                    };
                    for name in names {
                        if let Some(meta) = s.remote_view.remove(&name) {
                            s.unlinked.push((name, meta));
                        }
                    }
                    metrics::REMOTE_UPLOAD_QUEUE_DEPTH.dec();
                }
                Some(QueueOp::UploadLayer(_)) if batch.len() < MAX_CONCURRENT_LAYER_UPLOADS => {
                    batch.push(s.ops.pop_front().expect("front exists"));
                }
                Some(QueueOp::UploadIndex(_)) if batch.is_empty() => {
                    batch.push(s.ops.pop_front().expect("front exists"));
                    break;
                }
                _ => break,
            }
        }
        s.running += batch.len();
        batch
    }

    /// Runs a batch to success; false when cancelled first.
    async fn execute(&self, batch: Vec<QueueOp>, cancel: &CancellationToken) -> bool {
        let uploads = batch.iter().map(|op| self.retry(op, cancel));
        futures::future::join_all(uploads)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    async fn retry(&self, op: &QueueOp, cancel: &CancellationToken) -> bool {
        let mut attempt = 0u32;
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let result = match op {
                QueueOp::UploadLayer(layer) => self.upload_layer(layer, cancel).await,
                QueueOp::UploadIndex(metadata) => self.upload_index(metadata, cancel).await,
                QueueOp::Unlink(_) => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.ctx.health.success();
                    return true;
                }
                Err(_) if cancel.is_cancelled() => return false,
                Err(e) => {
                    self.ctx.health.failure(&e);
                    let delay = super::backoff(attempt);
                    tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "upload failed (attempt {}), retrying in {delay:?}: {e}", attempt + 1);
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return false,
                    }
                }
            }
        }
    }

    fn generation(&self) -> Generation {
        self.attachment.generation()
    }

    async fn upload_layer(
        &self,
        layer: &Arc<Layer>,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let name = layer.name();
        if let Some(meta) = layer.remote() {
            // Already uploaded (scheduled again after a restart).
            self.lock().remote_view.insert(name, meta);
            return Ok(());
        }
        let body = match tokio::fs::read(layer.local_path()).await {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Replaced by compaction or removed by GC before it went
                // up: the layers replacing it are scheduled after it.
                tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "layer {name} is gone locally before its upload; skipping it");
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "cannot read layer file {}: {e}",
                    layer.local_path().display()
                ))
            }
        };
        fail::fail_point!("remote-layer-upload", |_| Err(
            "failpoint remote-layer-upload".to_string()
        ));
        let generation = self.generation();
        let path = paths::layer_path(&self.tenant_id, &self.timeline_id, &name, generation);
        let receipt = self
            .ctx
            .storage
            .upload(&path, body, cancel)
            .await
            .map_err(|e| e.to_string())?;
        let meta = LayerFileMetadata {
            file_size: receipt.size,
            generation,
            crc32c: receipt.crc32c,
        };
        layer.set_remote(meta);
        self.lock().remote_view.insert(name, meta);
        metrics::REMOTE_UPLOADED_BYTES.inc_by(receipt.size);
        metrics::REMOTE_UPLOAD_OPS
            .with_label_values(&["layer"])
            .inc();
        Ok(())
    }

    async fn upload_index(
        &self,
        metadata: &TimelineMetadata,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        fail::fail_point!("remote-index-upload", |_| Err(
            "failpoint remote-index-upload".to_string()
        ));
        let (index, unlinked) = {
            let s = self.lock();
            (
                IndexPart::new(
                    s.remote_view.iter().map(|(n, m)| (n.clone(), *m)),
                    metadata.clone(),
                )
                .with_wal_source(s.wal_source.clone()),
                s.unlinked.len(),
            )
        };
        let generation = self.generation();
        let path = paths::index_path(&self.tenant_id, &self.timeline_id, generation);
        let body = Bytes::from(index.to_bytes());
        let size = body.len() as u64;
        self.ctx
            .storage
            .upload(&path, body, cancel)
            .await
            .map_err(|e| e.to_string())?;
        metrics::REMOTE_UPLOADED_BYTES.inc_by(size);
        metrics::REMOTE_UPLOAD_OPS
            .with_label_values(&["index"])
            .inc();
        if let Some(dir) = self.local_dir.get().cloned() {
            let written = tokio::task::spawn_blocking(move || {
                super::index::LocalIndexCopy::write(&dir, generation, &index)
            })
            .await;
            if let Ok(Err(e)) | Err(e) = written.map_err(std::io::Error::other) {
                // Only a start-up without object storage needs it.
                tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "cannot keep a local copy of the index: {e}");
            }
        }
        let doomed: Vec<(LayerName, LayerFileMetadata)> = {
            let mut s = self.lock();
            s.remote_consistent_lsn = Some(
                s.remote_consistent_lsn
                    .map_or(metadata.disk_consistent_lsn, |l| {
                        l.max(metadata.disk_consistent_lsn)
                    }),
            );
            s.unlinked.drain(..unlinked).collect()
        };
        if !doomed.is_empty() {
            let objects = doomed
                .iter()
                .map(|(n, m)| {
                    paths::layer_path(&self.tenant_id, &self.timeline_id, n, m.generation)
                })
                .collect();
            if let Err(e) = self
                .ctx
                .deletion_queue
                .push_objects(self.tenant_id, &self.attachment, objects)
                .await
            {
                // The objects leak (they are no longer named); nothing is lost.
                tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "cannot queue deletion of {} unlinked layers: {e}", doomed.len());
            }
        }
        Ok(())
    }
}
