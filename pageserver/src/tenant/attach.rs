//! A tenant and its remote storage: connecting timelines to their upload
//! queues after a local load (scheduling whatever the remote index lacks),
//! building timelines from remote indexes on attach (no layer downloads),
//! the tenant manifest, and waiting for uploads before a detach.

use std::sync::Arc;
use std::time::Duration;

use pageserver_api::models::TenantState;
use utils::id::TimelineId;

use super::errors::TenantError;
use super::load_remote::RemoteInitError;
use super::remote::index::{IndexPart, LocalIndexCopy, TenantManifest, TENANT_MANIFEST_VERSION};
use super::remote::{paths, RemoteTimelineClient};
use super::timeline::Timeline;
use super::{blocking, Tenant};

impl Tenant {
    /// Uploads the tenant manifest of this node's generation (so a node
    /// with an older generation learns that it is stale).
    pub async fn upload_manifest(&self) -> Result<(), String> {
        let generation = self.attachment.generation();
        let manifest = TenantManifest {
            version: TENANT_MANIFEST_VERSION,
            generation,
            config: self.overrides(),
        };
        let path = paths::manifest_path(&self.tenant_id, generation);
        let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
        self.remote
            .storage
            .upload(&path, body.into(), &self.cancel)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Connects a timeline to an upload queue whose remote state is
    /// `index`, and schedules the upload of every layer the index does not
    /// name (a crash or shutdown before they went up), then an index.
    pub(super) fn connect_timeline(&self, timeline: &Arc<Timeline>, index: Option<&IndexPart>) {
        if let Some(index) = index {
            timeline.add_remote_layers(&index.parsed_layers());
        }
        let client = RemoteTimelineClient::new(
            self.tenant_id,
            timeline.timeline_id,
            self.remote.clone(),
            self.attachment.clone(),
            index,
        );
        timeline.set_remote_client(client.clone());
        client.keep_local_copy(timeline.path().to_path_buf());
        let source = match super::bootstrap::read_wal_source(timeline.path()) {
            Ok(s) => s.map(|c| c.to_connstr()),
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "{e:#}; the remote index keeps the WAL source it has");
                index.and_then(|i| i.wal_source_connstr.clone())
            }
        };
        let source_changed = client.set_wal_source(source);
        let mut scheduled = 0;
        for layer in timeline.all_layers() {
            if layer.remote().is_none() {
                client.schedule_layer_upload(layer);
                scheduled += 1;
            }
        }
        let behind = index.is_none_or(|i| {
            i.disk_consistent_lsn() < timeline.disk_consistent_lsn()
                || i.metadata.latest_gc_cutoff_lsn < timeline.gc_cutoff_lsn()
        });
        if scheduled > 0 || behind || source_changed {
            if scheduled > 0 {
                tracing::info!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "{scheduled} local layers are not in the remote index; uploading them");
            }
            client.schedule_index_upload(timeline.metadata());
        }
    }

    /// Connects a timeline that was just created here (no remote state).
    pub(super) fn connect_new_timeline(&self, timeline: &Arc<Timeline>) {
        self.connect_timeline(timeline, None);
    }

    /// Builds the timelines of an attaching tenant from their remote
    /// indexes: directories and metadata are written locally, layers stay
    /// remote until read.
    ///
    /// `warm` is a secondary location's directory (`secondary/TENANT`):
    /// its layers that the index names, with matching size and CRC32C, are
    /// moved in and start resident.
    pub(super) async fn attach_timelines(
        &self,
        timeline_ids: Vec<TimelineId>,
        warm: Option<std::path::PathBuf>,
    ) -> Result<(), String> {
        let generation = self.attachment.generation();
        let found_all = self
            .retry_remote("cannot read the remote indexes", || {
                self.download_indexes(&timeline_ids)
            })
            .await?;
        let mut loaded = Vec::new();
        for (timeline_id, found) in found_all {
            let Some((index, index_generation)) = found else {
                tracing::info!(tenant_id = %self.tenant_id, %timeline_id, "timeline has no index at or below generation {generation}; skipping it");
                continue;
            };
            let path = self.conf.timeline_path(&self.tenant_id, &timeline_id);
            let (tenant_id, tenant_conf, cancel) =
                (self.tenant_id, self.effective.clone(), self.cancel.clone());
            let metadata = index.metadata.clone();
            let source = match index
                .wal_source_connstr
                .as_deref()
                .map(pq_proto::ConnConfig::parse)
            {
                Some(Ok(cfg)) => Some(cfg),
                Some(Err(e)) => {
                    tracing::warn!(tenant_id = %self.tenant_id, %timeline_id, "the WAL source in the remote index does not parse ({e}); set it with PUT .../wal_source");
                    None
                }
                None => None,
            };
            let warm_dir = warm.as_ref().map(|w| w.join(timeline_id.to_string()));
            let adopt_index = index.clone();
            let copy_index = index.clone();
            let (timeline, adopted) = blocking(move || {
                Timeline::create_on_disk(&path, &metadata)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                LocalIndexCopy::write(&path, index_generation, &copy_index)
                    .map_err(|e| format!("cannot write into {}: {e}", path.display()))?;
                if let Some(cfg) = &source {
                    super::bootstrap::write_wal_source(&path, Some(cfg)).map_err(|e| {
                        format!("cannot write the WAL source into {}: {e}", path.display())
                    })?;
                }
                let adopted = match &warm_dir {
                    Some(w) => {
                        super::secondary::downloader::adopt_warm_layers(w, &path, &adopt_index)
                            .map_err(|e| {
                                format!("cannot take the layers of {}: {e}", w.display())
                            })?
                    }
                    None => (0, 0),
                };
                Ok::<_, String>((
                    Timeline::load(tenant_id, timeline_id, path, tenant_conf, &cancel),
                    adopted,
                ))
            })
            .await
            .map_err(|e| e.to_string())??;
            if adopted.0 > 0 {
                crate::metrics::SECONDARY_LAYERS_ADOPTED.inc_by(adopted.0);
                tracing::info!(tenant_id = %self.tenant_id, %timeline_id, "{} layers ({} bytes) of the secondary location are resident at once", adopted.0, adopted.1);
            }
            let timeline = Arc::new(timeline);
            tracing::info!(tenant_id = %self.tenant_id, %timeline_id, layers = index.layers.len(), disk_consistent_lsn = %index.disk_consistent_lsn(), "attached timeline from index generation {index_generation}");
            self.connect_timeline(&timeline, Some(&index));
            loaded.push(timeline);
            // Tests stop here to crash an attach halfway.
            let _ = blocking(|| fail::fail_point!("attach-after-timeline")).await;
        }
        {
            let mut timelines = self.timelines.lock().expect("timelines lock poisoned");
            for t in &loaded {
                timelines.active.insert(t.timeline_id, t.clone());
            }
            for t in &loaded {
                if let Some(ancestor) = t.ancestor_timeline_id() {
                    match timelines.active.get(&ancestor) {
                        Some(a) => t.set_ancestor(a.clone()),
                        None => t.set_state(TenantState::Broken {
                            reason: format!(
                                "ancestor timeline {ancestor} is missing in remote storage"
                            ),
                        }),
                    }
                }
            }
        }
        self.retry_remote("cannot upload the tenant manifest", || async {
            self.upload_manifest()
                .await
                .map_err(RemoteInitError::Storage)
        })
        .await?;
        Ok(())
    }

    /// Makes everything ingested durable locally, then waits (at most
    /// `timeout`) until every timeline's upload queue is empty.
    pub async fn flush_and_wait_uploads(&self, timeout: Duration) -> Result<(), TenantError> {
        for timeline in self.list_timelines() {
            if timeline.state() != TenantState::Active {
                continue;
            }
            let tl = timeline.clone();
            blocking(move || tl.checkpoint_blocking()).await??;
            if let Some(remote) = timeline.remote_client() {
                remote
                    .wait_drained(timeout, &self.cancel)
                    .await
                    .map_err(|e| TenantError::Unavailable(e.to_string()))?;
            }
        }
        Ok(())
    }
}
