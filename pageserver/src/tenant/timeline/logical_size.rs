//! The incrementally kept logical size of a timeline (`current_logical_size`
//! in `TimelineInfo`): the bytes of every relation at the last record LSN.
//!
//! Ingest adds the change of each record (relations created, extended,
//! truncated, dropped; databases dropped) under the write lock, just before
//! it publishes the record's LSN. The starting value is computed once, in
//! the background after the timeline is loaded, by
//! [`Timeline::logical_size`] at an LSN `L` taken under the write lock
//! together with the sum of the changes added so far `D(L)`; from then on
//! the size is `logical_size(L) - D(L) + D(now)`, which is exact whatever
//! ingest did while the starting value was computed. Until then the size is
//! unknown and reported as `null`, never guessed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::Instrument;

use super::pg_read::PgReadError;
use super::read::PageReconstructError;
use super::Timeline;

/// The incremental logical size of one timeline.
#[derive(Debug, Default)]
pub struct LogicalSize {
    /// Sum of the changes ingest added since the timeline object was made.
    delta: AtomicI64,
    /// `logical_size(L) - D(L)` once computed (see the module doc).
    base: OnceLock<i64>,
}

impl LogicalSize {
    /// Adds the change (in bytes) of one ingested record or import.
    pub fn add_delta(&self, bytes: i64) {
        if bytes != 0 {
            self.delta.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The size in bytes, once the starting value is known.
    pub fn current(&self) -> Option<u64> {
        let base = *self.base.get()?;
        Some(u64::try_from(base + self.delta.load(Ordering::Relaxed)).unwrap_or(0))
    }
}

impl Timeline {
    /// The incremental logical size (ingest adds to it).
    pub fn logical_size_tracker(&self) -> &LogicalSize {
        &self.logical_size
    }

    /// The logical size kept incrementally, `None` until computed.
    pub fn current_logical_size(&self) -> Option<u64> {
        self.logical_size.current()
    }

    /// Computes the starting value of the incremental size (see the module
    /// doc). The last record LSN must be readable (at or above the GC
    /// cutoff). Blocking.
    pub fn init_logical_size_blocking(&self) -> Result<u64, PgReadError> {
        let (lsn, delta_at_lsn) = {
            let _write = self.locks.write.lock().expect("write lock poisoned");
            (
                self.last_record_lsn(),
                self.logical_size.delta.load(Ordering::Relaxed),
            )
        };
        let size = self.logical_size(lsn)?;
        let base = i64::try_from(size).unwrap_or(i64::MAX) - delta_at_lsn;
        let _ = self.logical_size.base.set(base);
        Ok(size)
    }

    /// Computes the starting value in the background, once the timeline's
    /// last record LSN is readable (a timeline made from a base backup
    /// first ingests up to the backup's end). The task holds the gate.
    pub(super) fn spawn_logical_size_init(self: &Arc<Self>) {
        if self.logical_size.base.get().is_some() {
            return;
        }
        let Ok(guard) = self.gate.enter() else { return };
        let tl = self.clone();
        let span = tracing::info_span!("logical_size_init", tenant_id = %self.tenant_id, timeline_id = %self.timeline_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                const WAIT_STEP: Duration = Duration::from_secs(60);
                loop {
                    match tl.wait_lsn(tl.gc_cutoff_lsn(), WAIT_STEP).await {
                        Ok(()) => break,
                        Err(PageReconstructError::LsnTimeout { .. }) => continue,
                        Err(_) => return,
                    }
                }
                let computing = tl.clone();
                let started = std::time::Instant::now();
                match tokio::task::spawn_blocking(move || computing.init_logical_size_blocking())
                    .await
                {
                    Ok(Ok(size)) => {
                        tracing::info!(size, elapsed_ms = started.elapsed().as_millis() as u64, "initial logical size computed")
                    }
                    Ok(Err(e)) if tl.cancel.is_cancelled() => {
                        tracing::info!("initial logical size not computed, shutting down: {e}")
                    }
                    Ok(Err(e)) => tracing::warn!(
                        "cannot compute the initial logical size; current_logical_size stays null until the timeline is loaded again: {e}"
                    ),
                    Err(e) => tracing::warn!("logical size task failed: {e}"),
                }
            }
            .instrument(span),
        );
    }
}
