//! Synthetic size: what keeping a tenant's retained history costs, as one
//! number of bytes made of logical sizes and WAL (`GET /v1/tenant/{id}/size`).
//!
//! # Model
//!
//! Each timeline `T` has a retention cutoff `R(T)`: the LSN that
//! `gc_horizon` and `pitr_interval` ask GC to keep from now, never below
//! what GC already removed (the GC cutoff), never below the branch point of
//! a branch, never above the last record LSN. Everything from `R(T)` to the
//! last record LSN must stay restorable: that costs the logical size at
//! `R(T)` (a copy of the data) plus the WAL from `R(T)` to the end.
//!
//! A branch `B` of parent `P` at branch point `b`:
//!
//! * if `B` keeps its whole history (`R(B) = b`) and `b` lies in `P`'s
//!   retained range (`b >= R(P)`), the data at `b` is already paid for by
//!   `P`: `B` costs only its own WAL, `last(B) - b`;
//! * if `B` keeps its whole history but `b` is older than `P`'s retention,
//!   nothing else keeps the data at `b`: `B` costs its logical size at `b`
//!   plus its WAL;
//! * if `B`'s own retention starts later than `b` (`R(B) > b`), `B` is paid
//!   for like a root: logical size at `R(B)` plus the WAL from there.
//!
//! The synthetic size is the sum over timelines. Writing to one timeline
//! grows it by that timeline's WAL only; lowering `gc_horizon` or
//! `pitr_interval` moves cutoffs forward and (where the WAL between the old
//! and the new cutoff is larger than the change of the logical size) makes
//! it smaller.

use std::sync::Arc;
use std::time::Duration;

use pageserver_api::models::TenantState;
use pageserver_api::models::{
    SizeSegment, SizeSegmentKind, SyntheticSizeInputs, TimelineSizeInputs,
};
use utils::id::TimelineId;
use utils::lsn::Lsn;

use super::errors::TenantError;
use super::timeline::Timeline;
use super::{blocking, Tenant};

/// Default `gc_horizon` when neither the tenant nor the node sets one (the
/// same default GC uses).
const DEFAULT_GC_HORIZON: u64 = 64 << 20;

/// The segments of the synthetic size, one per timeline of `inputs`, in
/// the same order.
pub fn calculate(inputs: &SyntheticSizeInputs) -> Vec<SizeSegment> {
    let by_id = |id: TimelineId| inputs.timelines.iter().find(|t| t.timeline_id == id);
    inputs
        .timelines
        .iter()
        .map(|t| {
            let end = t.last_record_lsn;
            let r = t.retention_cutoff_lsn;
            let (kind, start, logical) = match (t.ancestor_timeline_id, t.ancestor_lsn) {
                (Some(parent_id), Some(b)) if r <= b => {
                    let parent_keeps_b =
                        by_id(parent_id).is_some_and(|p| b >= p.retention_cutoff_lsn);
                    if parent_keeps_b {
                        (SizeSegmentKind::BranchWal, b, 0)
                    } else {
                        let logical = t
                            .logical_size_at_branch_point
                            .unwrap_or(t.logical_size_at_retention_cutoff);
                        (SizeSegmentKind::LogicalAndWal, b, logical)
                    }
                }
                _ => (
                    SizeSegmentKind::LogicalAndWal,
                    r,
                    t.logical_size_at_retention_cutoff,
                ),
            };
            let wal_bytes = end.0.saturating_sub(start.0);
            SizeSegment {
                timeline_id: t.timeline_id,
                ancestor_timeline_id: t.ancestor_timeline_id,
                kind,
                start_lsn: start,
                end_lsn: end,
                logical_size: logical,
                wal_bytes,
                size: logical + wal_bytes,
            }
        })
        .collect()
}

/// Orders timelines parents first (then by id), dropping none: a timeline
/// whose parent is not in the list comes with the roots.
fn parents_first(mut timelines: Vec<Arc<Timeline>>) -> Vec<Arc<Timeline>> {
    timelines.sort_by_key(|t| t.timeline_id);
    let mut out: Vec<Arc<Timeline>> = Vec::with_capacity(timelines.len());
    let ids: Vec<TimelineId> = timelines.iter().map(|t| t.timeline_id).collect();
    let mut pending = timelines;
    while !pending.is_empty() {
        let before = pending.len();
        let (ready, rest): (Vec<_>, Vec<_>) =
            pending
                .into_iter()
                .partition(|t| match t.ancestor_timeline_id() {
                    None => true,
                    Some(a) => !ids.contains(&a) || out.iter().any(|o| o.timeline_id == a),
                });
        out.extend(ready);
        pending = rest;
        if pending.len() == before {
            // A cycle cannot happen (ancestors are older); stay total anyway.
            out.append(&mut pending);
        }
    }
    out
}

impl Timeline {
    /// This timeline's inputs to the synthetic size model. Blocking (reads
    /// relation sizes at the cutoff and branch point).
    pub fn size_inputs_blocking(
        &self,
        gc_horizon: u64,
        pitr: Duration,
    ) -> Result<TimelineSizeInputs, TenantError> {
        let m = self.metadata();
        let last = self.last_record_lsn();
        let gc_cutoff = m.latest_gc_cutoff_lsn;
        let branch_point = m.ancestor_timeline.map(|_| m.ancestor_lsn);
        let floor = gc_cutoff.max(branch_point.unwrap_or(Lsn(0)));
        let retention = self.wanted_gc_cutoff(gc_horizon, pitr).max(floor).min(last);
        let read_err = |what: &str, lsn: Lsn, e: super::timeline::pg_read::PgReadError| {
            TenantError::Internal(anyhow::anyhow!(
                "cannot compute the logical size of timeline {}/{} at {what} {lsn}: {e}; retry (GC may have moved the cutoff)",
                self.tenant_id,
                self.timeline_id
            ))
        };
        let at_retention = self
            .logical_size(retention)
            .map_err(|e| read_err("retention cutoff", retention, e))?;
        let at_branch_point = match branch_point {
            Some(b) if b == retention => Some(at_retention),
            Some(b) if b >= gc_cutoff => Some(
                self.logical_size(b)
                    .map_err(|e| read_err("branch point", b, e))?,
            ),
            // GC of the branch itself removed the data at its branch point.
            _ => None,
        };
        Ok(TimelineSizeInputs {
            timeline_id: self.timeline_id,
            ancestor_timeline_id: m.ancestor_timeline,
            ancestor_lsn: branch_point,
            last_record_lsn: last,
            gc_cutoff_lsn: gc_cutoff,
            retention_cutoff_lsn: retention,
            logical_size_at_retention_cutoff: at_retention,
            logical_size_at_branch_point: at_branch_point,
        })
    }
}

impl Tenant {
    /// The synthetic size inputs of every Active timeline, parents first.
    pub async fn size_inputs(self: &Arc<Self>) -> Result<SyntheticSizeInputs, TenantError> {
        self.check_active()?;
        let _guard = self.gate.enter().map_err(|_| TenantError::ShuttingDown)?;
        let conf = self.effective_config();
        let gc_horizon = conf.gc_horizon.unwrap_or(DEFAULT_GC_HORIZON);
        let pitr = conf.pitr_interval.unwrap_or_default();
        let timelines: Vec<_> = parents_first(self.list_timelines())
            .into_iter()
            .filter(|t| t.state() == TenantState::Active)
            .collect();
        let list = blocking(move || {
            timelines
                .iter()
                .map(|t| t.size_inputs_blocking(gc_horizon, pitr))
                .collect::<Result<Vec<_>, _>>()
        })
        .await??;
        Ok(SyntheticSizeInputs {
            gc_horizon,
            pitr_interval_secs: pitr.as_secs(),
            timelines: list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(id: TimelineId, r: u64, last: u64, logical: u64) -> TimelineSizeInputs {
        TimelineSizeInputs {
            timeline_id: id,
            ancestor_timeline_id: None,
            ancestor_lsn: None,
            last_record_lsn: Lsn(last),
            gc_cutoff_lsn: Lsn(r),
            retention_cutoff_lsn: Lsn(r),
            logical_size_at_retention_cutoff: logical,
            logical_size_at_branch_point: None,
        }
    }

    fn branch(
        id: TimelineId,
        parent: TimelineId,
        b: u64,
        r: u64,
        last: u64,
        logical_at_b: u64,
        logical_at_r: u64,
    ) -> TimelineSizeInputs {
        TimelineSizeInputs {
            timeline_id: id,
            ancestor_timeline_id: Some(parent),
            ancestor_lsn: Some(Lsn(b)),
            last_record_lsn: Lsn(last),
            gc_cutoff_lsn: Lsn(b),
            retention_cutoff_lsn: Lsn(r),
            logical_size_at_retention_cutoff: logical_at_r,
            logical_size_at_branch_point: Some(logical_at_b),
        }
    }

    fn total(inputs: &SyntheticSizeInputs) -> u64 {
        calculate(inputs).iter().map(|s| s.size).sum()
    }

    #[test]
    fn root_costs_logical_size_at_cutoff_plus_wal() {
        let main = TimelineId::generate();
        let inputs = SyntheticSizeInputs {
            gc_horizon: 0,
            pitr_interval_secs: 0,
            timelines: vec![root(main, 1000, 5000, 700)],
        };
        let seg = &calculate(&inputs)[0];
        assert_eq!(seg.kind, SizeSegmentKind::LogicalAndWal);
        assert_eq!((seg.start_lsn, seg.end_lsn), (Lsn(1000), Lsn(5000)));
        assert_eq!(
            (seg.logical_size, seg.wal_bytes, seg.size),
            (700, 4000, 4700)
        );
    }

    #[test]
    fn branches_inside_and_outside_the_parents_retention() {
        let (main, inside, outside, own) = (
            TimelineId::generate(),
            TimelineId::generate(),
            TimelineId::generate(),
            TimelineId::generate(),
        );
        let mut inputs = SyntheticSizeInputs {
            gc_horizon: 0,
            pitr_interval_secs: 0,
            timelines: vec![
                root(main, 1000, 5000, 700),
                // Branch point 3000 is retained by main: WAL only.
                branch(inside, main, 3000, 3000, 3500, 900, 900),
                // Branch point 500 is older than main's cutoff 1000.
                branch(outside, main, 500, 500, 800, 600, 600),
                // The branch's own retention starts after its branch point.
                branch(own, main, 2000, 2600, 4000, 800, 850),
            ],
        };
        let segs = calculate(&inputs);
        assert_eq!(segs[1].kind, SizeSegmentKind::BranchWal);
        assert_eq!((segs[1].logical_size, segs[1].wal_bytes), (0, 500));
        assert_eq!(segs[2].kind, SizeSegmentKind::LogicalAndWal);
        assert_eq!(
            (segs[2].start_lsn, segs[2].logical_size, segs[2].wal_bytes),
            (Lsn(500), 600, 300)
        );
        assert_eq!(
            (segs[3].start_lsn, segs[3].logical_size, segs[3].wal_bytes),
            (Lsn(2600), 850, 1400)
        );
        let before = total(&inputs);
        assert_eq!(before, 4700 + 500 + 900 + 2250);

        // Writing to one branch grows the total by that branch's WAL only.
        inputs.timelines[1].last_record_lsn = Lsn(3800);
        assert_eq!(total(&inputs), before + 300);

        // Shorter retention on main: its cutoff passes the inside branch's
        // point, which then pays for its data at the branch point.
        inputs.timelines[0].retention_cutoff_lsn = Lsn(4000);
        inputs.timelines[0].logical_size_at_retention_cutoff = 750;
        let segs = calculate(&inputs);
        assert_eq!(segs[0].size, 750 + 1000);
        assert_eq!(segs[1].kind, SizeSegmentKind::LogicalAndWal);
        assert_eq!(segs[1].size, 900 + 800);
    }

    #[test]
    fn shorter_retention_shrinks_the_size() {
        let main = TimelineId::generate();
        let mut inputs = SyntheticSizeInputs {
            gc_horizon: 0,
            pitr_interval_secs: 0,
            timelines: vec![root(main, 1000, 100_000, 50_000)],
        };
        let long = total(&inputs);
        inputs.timelines[0].retention_cutoff_lsn = Lsn(90_000);
        inputs.timelines[0].logical_size_at_retention_cutoff = 52_000;
        assert!(total(&inputs) < long);
    }

    #[test]
    fn missing_parent_makes_a_branch_pay_for_its_data() {
        let (gone, child) = (TimelineId::generate(), TimelineId::generate());
        let inputs = SyntheticSizeInputs {
            gc_horizon: 0,
            pitr_interval_secs: 0,
            timelines: vec![branch(child, gone, 100, 100, 300, 40, 40)],
        };
        let seg = &calculate(&inputs)[0];
        assert_eq!(seg.kind, SizeSegmentKind::LogicalAndWal);
        assert_eq!(seg.size, 240);
    }
}
