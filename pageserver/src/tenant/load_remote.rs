//! A tenant's remote state after the local load at start-up, and retries
//! while object storage does not answer.
//!
//! After the local load, each timeline's index is read (the highest
//! generation at or below ours) and the upload queues are connected. When
//! object storage fails:
//!
//! * a tenant whose local state is complete (every timeline has a local copy
//!   of its index from our generation, and every layer it names is on local
//!   disk) goes Active from local disk; its upload queues retry until
//!   object storage answers;
//! * any other tenant stays `Loading` and retries in the background with
//!   backoff (stopped by shutdown, detach or delete), and goes Active when
//!   the indexes can be read. Each failure counts in the node's remote
//!   health, so `/readiness` reports the outage.
//!
//! Attach (`attach.rs`) retries its reads the same way, staying `Attaching`.

use std::future::Future;
use std::sync::Arc;

use pageserver_api::models::TenantState;
use tracing::Instrument;
use utils::generation::Generation;
use utils::id::TimelineId;

use super::remote::download::{self, DownloadError};
use super::remote::index::{IndexPart, LocalIndexCopy};
use super::timeline::Timeline;
use super::{blocking, Tenant};

/// Why a tenant's remote state could not be read.
#[derive(Debug)]
pub(crate) enum RemoteInitError {
    /// Object storage failed (after its own retries): retried.
    Storage(String),
    /// Something read is invalid, or a local file could not be written:
    /// the tenant is Broken.
    Invalid(String),
}

impl RemoteInitError {
    fn from_download(e: DownloadError, what: &str) -> RemoteInitError {
        match e {
            DownloadError::Storage(e) => RemoteInitError::Storage(format!("{what}: {e}")),
            other => RemoteInitError::Invalid(format!("{what}: {other}")),
        }
    }
}

/// Each active timeline with its remote index (and the index's generation).
type TimelineIndexes = Vec<(Arc<Timeline>, Option<(IndexPart, Generation)>)>;

impl Tenant {
    /// Runs `f` until it succeeds, fails with an invalid result, or the
    /// tenant shuts down; storage failures are retried with backoff.
    pub(super) async fn retry_remote<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RemoteInitError>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(tenant_id = %self.tenant_id, "object storage answers again after {attempt} failed attempts");
                    }
                    return Ok(v);
                }
                Err(RemoteInitError::Invalid(reason)) => return Err(reason),
                Err(RemoteInitError::Storage(e)) => {
                    if self.cancel.is_cancelled() {
                        return Err(format!("{what}: shutting down"));
                    }
                    self.remote.health.failure(&e);
                    let delay = super::remote::backoff(attempt);
                    attempt += 1;
                    if attempt == 1 {
                        tracing::warn!(tenant_id = %self.tenant_id, "{what}: {e}; retrying until object storage answers");
                    } else {
                        tracing::info!(tenant_id = %self.tenant_id, "{what} (attempt {attempt}): {e}; retrying in {delay:?}");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => return Err(format!("{what}: shutting down")),
                    }
                }
            }
        }
    }

    /// The remote indexes of `timeline_ids` (highest generation at or below ours).
    pub(super) async fn download_indexes(
        &self,
        timeline_ids: &[TimelineId],
    ) -> Result<Vec<(TimelineId, Option<(IndexPart, Generation)>)>, RemoteInitError> {
        let mut out = Vec::new();
        for timeline_id in timeline_ids {
            let found = download::download_index(
                &self.remote.storage,
                &self.tenant_id,
                timeline_id,
                self.attachment.generation(),
                &self.cancel,
            )
            .await
            .map_err(|e| {
                RemoteInitError::from_download(
                    e,
                    &format!("cannot read the remote index of timeline {timeline_id}"),
                )
            })?;
            out.push((*timeline_id, found));
        }
        self.remote.health.success();
        Ok(out)
    }

    fn active_timelines(&self) -> Vec<Arc<Timeline>> {
        self.list_timelines()
            .into_iter()
            .filter(|t| t.state() == TenantState::Active)
            .collect()
    }

    /// The remote indexes of the loaded timelines; each is also kept as the
    /// timeline's local copy.
    async fn fetch_remote_indexes(&self) -> Result<TimelineIndexes, RemoteInitError> {
        let timelines = self.active_timelines();
        let ids: Vec<TimelineId> = timelines.iter().map(|t| t.timeline_id).collect();
        let found = self.download_indexes(&ids).await?;
        let mut out = Vec::new();
        for (timeline, (_, index)) in timelines.into_iter().zip(found) {
            if let Some((index, generation)) = &index {
                let (dir, index, generation) =
                    (timeline.path().to_path_buf(), index.clone(), *generation);
                blocking(move || LocalIndexCopy::write(&dir, generation, &index))
                    .await
                    .map_err(|e| RemoteInitError::Invalid(e.to_string()))?
                    .map_err(|e| {
                        RemoteInitError::Invalid(format!(
                            "cannot keep a local copy of the index of timeline {}: {e}",
                            timeline.timeline_id
                        ))
                    })?;
            }
            out.push((timeline, index));
        }
        Ok(out)
    }

    /// The local copies of the indexes, when the local state is complete
    /// (see the module documentation); otherwise why not. Blocking.
    fn local_indexes(&self) -> Result<TimelineIndexes, String> {
        let ours = self.attachment.generation();
        let mut out = Vec::new();
        for timeline in self.active_timelines() {
            let id = timeline.timeline_id;
            let copy = LocalIndexCopy::read(timeline.path())?
                .ok_or_else(|| format!("timeline {id} has no local copy of its index"))?;
            if copy.generation != ours {
                return Err(format!(
                    "the local index of timeline {id} is from generation {}, not ours ({ours})",
                    copy.generation
                ));
            }
            let local: std::collections::HashSet<String> = timeline
                .all_layers()
                .iter()
                .map(|l| l.name().to_string())
                .collect();
            let missing = copy
                .index
                .layers
                .keys()
                .filter(|n| !local.contains(*n))
                .count();
            if missing > 0 {
                return Err(format!(
                    "{missing} layers of timeline {id} are only in remote storage"
                ));
            }
            out.push((timeline, Some((copy.index, copy.generation))));
        }
        Ok(out)
    }

    /// Connects the upload queues to `indexes` (local layers the index lacks
    /// are scheduled for upload; corrupt local layers the index does not
    /// name break their timeline), then goes Active.
    fn connect_and_activate(self: &Arc<Self>, indexes: TimelineIndexes) {
        for (timeline, found) in indexes {
            let index = found.as_ref().map(|(i, _)| i);
            let corrupt = timeline.take_corrupt_at_load();
            let unrecoverable: Vec<String> = corrupt
                .iter()
                .filter(|(name, _)| {
                    !index.is_some_and(|i| i.layers.contains_key(&name.to_string()))
                })
                .map(|(_, e)| e.clone())
                .collect();
            if !unrecoverable.is_empty() {
                let reason = format!(
                    "{}; the layer is not in remote storage, so it cannot be downloaded again",
                    unrecoverable.join("; ")
                );
                tracing::error!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "timeline is broken: {reason}");
                timeline.set_state(TenantState::Broken { reason });
                continue;
            }
            for (name, e) in &corrupt {
                tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "local layer {name} is corrupt ({e}); it downloads again from remote storage on the next read");
            }
            self.connect_timeline(&timeline, index);
        }
        self.set_state(TenantState::Active);
        self.activate();
    }

    /// After a successful local load: the remote state as described in the
    /// module documentation. Returns once the tenant is Active or Broken,
    /// or waits for object storage in a background task.
    pub(super) async fn finish_load(self: &Arc<Self>) {
        let error = match self.fetch_remote_indexes().await {
            Ok(indexes) => {
                self.connect_and_activate(indexes);
                if let Err(e) = self.upload_manifest().await {
                    tracing::warn!(tenant_id = %self.tenant_id, "cannot upload the tenant manifest: {e}");
                }
                return;
            }
            Err(RemoteInitError::Invalid(reason)) => {
                tracing::error!(tenant_id = %self.tenant_id, "tenant is broken: {reason}");
                self.set_state(TenantState::Broken { reason });
                return;
            }
            Err(RemoteInitError::Storage(e)) => e,
        };
        self.remote.health.failure(&error);
        let t = self.clone();
        match blocking(move || t.local_indexes()).await {
            Ok(Ok(indexes)) => {
                tracing::warn!(tenant_id = %self.tenant_id, "{error}; every layer is on local disk: loading from it, uploads wait for object storage");
                self.connect_and_activate(indexes);
            }
            Ok(Err(why)) => {
                tracing::warn!(tenant_id = %self.tenant_id, "{error}, and {why}: the tenant stays Loading until object storage answers");
                self.spawn_load_retry();
            }
            Err(e) => self.set_state(TenantState::Broken {
                reason: e.to_string(),
            }),
        }
    }

    /// Retries [`Self::fetch_remote_indexes`] in a task holding the gate.
    fn spawn_load_retry(self: &Arc<Self>) {
        let Ok(guard) = self.gate.enter() else { return };
        let tenant = self.clone();
        let span = tracing::info_span!(parent: None, "load_retry", tenant_id = %self.tenant_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                let first_delay = super::remote::backoff(0);
                tokio::select! {
                    _ = tokio::time::sleep(first_delay) => {}
                    _ = tenant.cancel.cancelled() => return,
                }
                let result = tenant
                    .retry_remote("cannot read the remote indexes", || {
                        tenant.fetch_remote_indexes()
                    })
                    .await;
                match result {
                    Ok(indexes) => {
                        tenant.connect_and_activate(indexes);
                        tracing::info!("tenant loaded once object storage answered");
                        if let Err(e) = tenant.upload_manifest().await {
                            tracing::warn!("cannot upload the tenant manifest: {e}");
                        }
                    }
                    Err(_) if tenant.cancel.is_cancelled() => {
                        tracing::info!("load stopped by shutdown or detach")
                    }
                    Err(reason) => {
                        tracing::error!("tenant is broken: {reason}");
                        tenant.set_state(TenantState::Broken { reason });
                    }
                }
            }
            .instrument(span),
        );
    }
}
