//! The attached side of secondary locations: the tenant's heatmap (its
//! resident, uploaded layers with their last access), uploaded every
//! `heatmap_upload_period` and on `POST .../heatmap_upload`.

use std::sync::Arc;

use pageserver_api::models::{HeatmapUploadResponse, TenantState};
use tracing::Instrument;

use crate::metrics;
use crate::tenant::remote::heatmap::{
    list_manifest_generations, HeatMapLayer, HeatMapTenant, HeatMapTimeline, HEATMAP_VERSION,
};
use crate::tenant::remote::paths;
use crate::tenant::Tenant;

impl Tenant {
    /// The heatmap of this attachment now.
    pub fn heatmap(&self) -> HeatMapTenant {
        let timelines = self
            .list_timelines()
            .into_iter()
            .filter(|t| t.state() == TenantState::Active)
            .map(|t| {
                let mut layers: Vec<HeatMapLayer> = t
                    .all_layers()
                    .into_iter()
                    .filter(|l| l.is_resident())
                    .filter_map(|l| {
                        Some(HeatMapLayer {
                            name: l.name().to_string(),
                            metadata: l.remote()?,
                            access_time: l.last_access(),
                        })
                    })
                    .collect();
                // Hottest first: a secondary downloads in this order.
                layers.sort_by(|a, b| b.access_time.cmp(&a.access_time).then(a.name.cmp(&b.name)));
                HeatMapTimeline {
                    timeline_id: t.timeline_id,
                    layers,
                }
            })
            .collect();
        HeatMapTenant {
            version: HEATMAP_VERSION,
            generation: self.attachment.generation(),
            created_at: crate::tenant::timeline::unix_now(),
            timelines,
        }
    }

    /// Uploads the heatmap, unless this attachment must not: it is not
    /// Active, attached as stale, or a tenant manifest of a newer
    /// generation exists (another node holds the tenant now).
    pub async fn upload_heatmap(&self) -> Result<HeatmapUploadResponse, String> {
        let skipped = |reason: String| {
            metrics::HEATMAP_UPLOADS
                .with_label_values(&["skipped"])
                .inc();
            Ok(HeatmapUploadResponse {
                uploaded: false,
                layers: 0,
                reason: Some(reason),
            })
        };
        if self.state() != TenantState::Active {
            return skipped(format!("tenant is {}", self.state().name()));
        }
        let generation = self.attachment.generation();
        if self.attachment.is_stale() {
            return skipped(
                "attached as stale: only the current attachment writes the heatmap".to_string(),
            );
        }
        let storage = &self.remote.storage;
        let manifests = list_manifest_generations(storage, &self.tenant_id, &self.cancel)
            .await
            .map_err(|e| {
                self.remote.health.failure(&e.to_string());
                format!(
                    "cannot list the manifests of tenant {}: {e}",
                    self.tenant_id
                )
            })?;
        if let Some(newer) = manifests.iter().find(|g| **g > generation) {
            return skipped(format!(
                "generation {newer} exists, ours ({generation}) is stale"
            ));
        }
        let heatmap = self.heatmap();
        let layers = heatmap.layer_count() as u64;
        let path = paths::heatmap_path(&self.tenant_id);
        let body = heatmap.to_bytes();
        let size = body.len() as u64;
        storage
            .upload(&path, body.into(), &self.cancel)
            .await
            .map_err(|e| {
                self.remote.health.failure(&e.to_string());
                metrics::HEATMAP_UPLOADS.with_label_values(&["error"]).inc();
                format!(
                    "cannot upload the heatmap of tenant {}: {e}",
                    self.tenant_id
                )
            })?;
        self.remote.health.success();
        metrics::HEATMAP_UPLOADS
            .with_label_values(&["uploaded"])
            .inc();
        metrics::REMOTE_UPLOADED_BYTES.inc_by(size);
        Ok(HeatmapUploadResponse {
            uploaded: true,
            layers,
            reason: None,
        })
    }

    /// Starts the periodic heatmap upload (when `heatmap_upload_period` is
    /// not zero). The task holds the tenant's gate.
    pub(crate) fn spawn_heatmap_uploader(self: &Arc<Self>) {
        let period = self.conf.heatmap_upload_period;
        if period.is_zero() {
            return;
        }
        let Ok(guard) = self.gate.enter() else { return };
        let tenant = self.clone();
        let span = tracing::info_span!(parent: None, "heatmap_upload", tenant_id = %self.tenant_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                let mut last: Option<Vec<crate::tenant::remote::heatmap::HeatMapTimeline>> = None;
                loop {
                    tokio::select! {
                        _ = tenant.cancel.cancelled() => break,
                        _ = tokio::time::sleep(period) => {}
                    }
                    // Unchanged since the last upload: nothing to do.
                    let now = tenant.heatmap().timelines;
                    if last.as_ref() == Some(&now) {
                        continue;
                    }
                    match tenant.upload_heatmap().await {
                        Ok(r) if r.uploaded => last = Some(now),
                        Ok(r) => tracing::debug!("heatmap not uploaded: {:?}", r.reason),
                        Err(_) if tenant.cancel.is_cancelled() => break,
                        Err(e) => tracing::info!("{e}; retried at the next period"),
                    }
                }
            }
            .instrument(span),
        );
    }
}
