//! Garbage collection: removes layer files that no read at or above the GC
//! cutoff, and no read at a child branch's branch point, can need.
//!
//! The cutoff keeps what both `gc_horizon` (bytes of WAL behind the last
//! record) and `pitr_interval` (time, mapped to an LSN through the flush
//! history in the metadata) require: the lower of the two. A layer is
//! removed when it lies wholly at or below the cutoff and, for every point
//! that must stay readable (the cutoff and each branch point at or above
//! the layer's start), a newer image layer at or below that point covers
//! the layer's whole key range. The new cutoff is made durable before any
//! file is removed, so a crash never leaves readable LSNs without data.

use std::time::{Duration, Instant};

use anyhow::Context;
use utils::lsn::Lsn;

use super::{unix_now, Timeline};
use crate::tenant::storage_layer::layer_map::LayerMap;
use crate::tenant::storage_layer::{LayerName, PersistentLayerDesc};

/// What a GC run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcStats {
    /// The cutoff in force after the run.
    pub cutoff: Lsn,
    /// Layer files before the run.
    pub layers_total: usize,
    /// Layer files removed.
    pub layers_removed: usize,
    /// Layers kept because a branch point needs them.
    pub layers_needed_by_branches: usize,
    /// Seconds taken.
    pub elapsed_secs: f64,
}

/// Whether images newer than `layer` and at or below `point` cover all of
/// `layer`'s key range.
fn covered_by_newer_images(map: &LayerMap, layer: &PersistentLayerDesc, point: Lsn) -> bool {
    let newer_than = if layer.is_delta {
        // An image at the delta's last LSN already includes all its values.
        layer.lsn_range.end - 1
    } else {
        layer.lsn_range.start + 1
    };
    map.image_coverage(layer.key_range.clone(), point)
        .iter()
        .all(|(_, img)| img.as_ref().is_some_and(|i| i.image_lsn() >= newer_than))
}

impl Timeline {
    /// The cutoff that `gc_horizon` and `pitr_interval` ask for now.
    pub fn wanted_gc_cutoff(&self, horizon: u64, pitr: Duration) -> Lsn {
        let m = self.metadata();
        let last = m.disk_consistent_lsn;
        let by_horizon = Lsn(last.0.saturating_sub(horizon));
        let by_time = if pitr.is_zero() {
            last
        } else {
            // Unknown history (younger than the interval) keeps everything.
            m.lsn_at_time(unix_now().saturating_sub(pitr.as_secs()))
                .unwrap_or(Lsn(0))
        };
        by_horizon.min(by_time).min(last)
    }

    /// Runs GC keeping the LSNs `retain_lsns` gives (branch points of child
    /// timelines, asked for with the GC lock held so that no branch appears
    /// unseen). `horizon` overrides the tenant's `gc_horizon`. Blocking.
    pub fn gc_blocking(
        &self,
        retain_lsns: impl FnOnce() -> Vec<Lsn>,
        horizon: Option<u64>,
    ) -> anyhow::Result<GcStats> {
        let _guard = self.locks.gc.lock().expect("gc lock poisoned");
        self.gc_locked(&retain_lsns(), horizon)
    }

    /// [`Timeline::gc_blocking`] with the GC lock held by the caller.
    fn gc_locked(&self, retain_lsns: &[Lsn], horizon: Option<u64>) -> anyhow::Result<GcStats> {
        let started = Instant::now();
        let _timer = crate::metrics::GC_DURATION.start_timer();
        let conf = self.tenant_conf();
        let horizon = horizon.or(conf.gc_horizon).unwrap_or(64 << 20);
        let pitr = conf.pitr_interval.unwrap_or_default();
        let old_cutoff = self.gc_cutoff_lsn();
        let cutoff = self.wanted_gc_cutoff(horizon, pitr).max(old_cutoff);
        if cutoff > old_cutoff {
            self.update_metadata(|m| m.latest_gc_cutoff_lsn = cutoff)
                .with_context(|| {
                    format!(
                        "cannot write metadata of timeline {}",
                        self.name_for_errors()
                    )
                })?;
        }
        fail::fail_point!("gc-after-cutoff-update", |_| anyhow::bail!(
            "failpoint gc-after-cutoff-update"
        ));
        if cutoff > old_cutoff {
            // Other nodes attaching must not read below the new cutoff either.
            self.schedule_index_upload();
        }
        let mut stats = GcStats {
            cutoff,
            ..GcStats::default()
        };
        let doomed: Vec<LayerName> = {
            let layers = self.layers.read().expect("layers lock poisoned");
            stats.layers_total = layers.map.len();
            let mut doomed = Vec::new();
            for layer in layers.map.iter_historic() {
                if layer.lsn_range.end - 1 > cutoff {
                    continue;
                }
                if !covered_by_newer_images(&layers.map, layer, cutoff) {
                    continue;
                }
                let branch_needs = retain_lsns
                    .iter()
                    .filter(|p| **p >= layer.lsn_range.start)
                    .any(|p| !covered_by_newer_images(&layers.map, layer, *p));
                if branch_needs {
                    stats.layers_needed_by_branches += 1;
                    continue;
                }
                doomed.push(layer.layer_name());
            }
            doomed
        };
        if !doomed.is_empty() {
            let (_, removed) = self.replace_layer_files(&doomed, Vec::new());
            if let Some(remote) = self.remote_client() {
                remote.schedule_unlink(doomed.clone());
                remote.schedule_index_upload(self.metadata());
            }
            fail::fail_point!("gc-before-file-delete", |_| anyhow::bail!(
                "failpoint gc-before-file-delete"
            ));
            self.delete_layer_files(removed)?;
        }
        stats.layers_removed = doomed.len();
        stats.elapsed_secs = started.elapsed().as_secs_f64();
        if stats.layers_removed > 0 {
            tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, ?stats, "gc done");
        }
        Ok(stats)
    }

    /// Runs `f` with this timeline's GC paused, so that a branch point
    /// checked inside `f` cannot be collected before the branch exists.
    pub fn with_gc_paused<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.locks.gc.lock().expect("gc lock poisoned");
        f()
    }
}
