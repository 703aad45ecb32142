//! A tenant's maintenance: the background loop that compacts and garbage
//! collects its timelines, and the on-demand forms behind the HTTP routes
//! `checkpoint`, `compact` and `do_gc`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use utils::id::TimelineId;

use super::errors::TenantError;
use super::timeline::compaction::CompactionStats;
use super::timeline::gc::GcStats;
use super::timeline::Timeline;
use super::{blocking, Tenant};
use crate::metrics;

/// How often the loop looks for work when compaction and GC periods are long
/// (at once after a compaction that left its threshold of L0 layers behind).
const LOOP_TICK: Duration = Duration::from_millis(200);
/// How often layers are checked against `evictions_low_residence`.
const EVICTION_CHECK_PERIOD: Duration = Duration::from_secs(1);

impl Tenant {
    /// Starts the tenant's background work: each timeline's flush loop, the
    /// heatmap upload and the maintenance loop. Tasks hold the gates, so shutdown waits for them.
    pub fn activate(self: &Arc<Self>) {
        for timeline in self.list_timelines() {
            if timeline.state() == pageserver_api::models::TenantState::Active {
                timeline.spawn_background();
            }
        }
        self.spawn_heatmap_uploader();
        let Ok(guard) = self.gate.enter() else { return };
        let tenant = self.clone();
        let span = tracing::info_span!("maintenance_loop", tenant_id = %self.tenant_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                tenant.maintenance_loop().await;
            }
            .instrument(span),
        );
    }

    async fn maintenance_loop(self: Arc<Self>) {
        let mut since_compaction = Duration::ZERO;
        let mut since_gc = Duration::ZERO;
        let mut since_eviction = Duration::ZERO;
        let mut last_pass = Instant::now();
        // A timeline whose L0 layers reached the threshold again while it was
        // being compacted: its writers are about to be throttled, so the
        // next pass starts at once instead of a tick later.
        let mut behind = false;
        loop {
            let pause = if behind { Duration::ZERO } else { LOOP_TICK };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            behind = false;
            let elapsed = last_pass.elapsed();
            last_pass = Instant::now();
            since_compaction += elapsed;
            since_gc += elapsed;
            since_eviction += elapsed;
            let conf = self.effective_config();
            let threshold = conf.compaction_threshold.unwrap_or(10) as usize;
            for timeline in self.list_timelines() {
                if timeline.state() != pageserver_api::models::TenantState::Active {
                    continue;
                }
                let l0 = timeline.l0_count();
                metrics::record_layer_stats(&timeline);
                metrics::record_timeline_stats(&timeline);
                let period = conf.compaction_period.unwrap_or_default();
                // A zero period disables background compaction; otherwise L0
                // piling up past the threshold compacts at once, not at the next period.
                let due = !period.is_zero() && (since_compaction >= period || l0 >= threshold);
                if due && !self.cancel.is_cancelled() {
                    let id = timeline.timeline_id;
                    match self.on_timeline(id, |tl| tl.compact_blocking(false)).await {
                        // Only a run that merged something: no spinning on one that cannot.
                        Ok(stats) => {
                            behind |= stats.l0_merged > 0 && timeline.l0_count() >= threshold
                        }
                        Err(e) if self.cancel.is_cancelled() => {
                            tracing::info!(tenant_id = %self.tenant_id, timeline_id = %id, "compaction stopped: {e}")
                        }
                        Err(e) => {
                            tracing::error!(tenant_id = %self.tenant_id, timeline_id = %id, "compaction failed: {e}")
                        }
                    }
                }
                let gc_period = conf.gc_period.unwrap_or_default();
                if !gc_period.is_zero() && since_gc >= gc_period && !self.cancel.is_cancelled() {
                    if let Err(e) = self.gc_timeline(timeline.timeline_id, None).await {
                        tracing::error!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "gc failed: {e}");
                    }
                }
            }
            if since_eviction >= EVICTION_CHECK_PERIOD {
                since_eviction = Duration::ZERO;
                if let Some(threshold) = conf.evictions_low_residence.filter(|d| !d.is_zero()) {
                    for timeline in self.list_timelines() {
                        let Ok(guard) = timeline.gate.enter() else {
                            continue;
                        };
                        let tl = timeline.clone();
                        let result = blocking(move || tl.evict_cold_blocking(threshold)).await;
                        drop(guard);
                        if let Ok(Err(e)) = result {
                            tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "eviction failed: {e}");
                        }
                    }
                }
            }
            let conf = self.effective_config();
            if since_compaction >= conf.compaction_period.unwrap_or_default() {
                since_compaction = Duration::ZERO;
            }
            if since_gc >= conf.gc_period.unwrap_or_default() {
                since_gc = Duration::ZERO;
            }
        }
    }

    fn active_timeline(&self, timeline_id: TimelineId) -> Result<Arc<Timeline>, TenantError> {
        self.check_active()?;
        let timeline = self.get_timeline(timeline_id)?;
        match timeline.state() {
            pageserver_api::models::TenantState::Active => Ok(timeline),
            other => Err(TenantError::TimelineNotActive {
                tenant_id: self.tenant_id,
                timeline_id,
                state: other.name(),
                detail: match other {
                    pageserver_api::models::TenantState::Broken { reason } => reason,
                    _ => "retry shortly".to_string(),
                },
            }),
        }
    }

    /// Runs blocking `f` on an Active timeline, inside its gate.
    async fn on_timeline<T: Send + 'static>(
        &self,
        timeline_id: TimelineId,
        f: impl FnOnce(&Timeline) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, TenantError> {
        let timeline = self.active_timeline(timeline_id)?;
        let guard = timeline
            .gate
            .enter()
            .map_err(|_| TenantError::ShuttingDown)?;
        let result = blocking(move || f(&timeline)).await?;
        drop(guard);
        Ok(result?)
    }

    /// Makes everything the timeline has ingested durable.
    pub async fn checkpoint_timeline(&self, timeline_id: TimelineId) -> Result<(), TenantError> {
        self.on_timeline(timeline_id, |tl| tl.checkpoint_blocking())
            .await
    }

    /// Checkpoints, then compacts the timeline (merging any L0 layers).
    pub async fn compact_timeline(
        &self,
        timeline_id: TimelineId,
    ) -> Result<CompactionStats, TenantError> {
        self.checkpoint_timeline(timeline_id).await?;
        self.on_timeline(timeline_id, |tl| tl.compact_blocking(true))
            .await
    }

    /// Garbage collects the timeline, keeping its children's branch points;
    /// `horizon` overrides the tenant's `gc_horizon` for this run.
    pub async fn gc_timeline(
        self: &Arc<Self>,
        timeline_id: TimelineId,
        horizon: Option<u64>,
    ) -> Result<GcStats, TenantError> {
        let timeline = self.active_timeline(timeline_id)?;
        let _guard = timeline
            .gate
            .enter()
            .map_err(|_| TenantError::ShuttingDown)?;
        let tenant = self.clone();
        let stats =
            blocking(move || timeline.gc_blocking(|| tenant.retain_lsns(timeline_id), horizon))
                .await??;
        Ok(stats)
    }
}
