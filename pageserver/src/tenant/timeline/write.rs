//! The write path: values arrive in LSN order through a [`TimelineWriter`]
//! into the open in-memory layer, which is frozen at `checkpoint_distance`
//! bytes or `checkpoint_timeout` and flushed to an L0 delta layer file.
//! `disk_consistent_lsn` moves only after the layer file and then the
//! metadata are durable.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use pageserver_api::key::Key;
use pageserver_api::value::Value;
use utils::lsn::Lsn;

use super::image_cache::IMAGE_CACHE;
use super::layer::Layer;
use super::layers::FrozenLayer;
use super::{unix_now, RecordLsn, Timeline};
use crate::tenant::storage_layer::inmemory_layer::InMemoryLayer;
use crate::tenant::storage_layer::layer_file::LayerReader;
use crate::tenant::storage_layer::LayerName;

/// Longest a writer waits for compaction per frozen layer.
pub const L0_THROTTLE_LIMIT: Duration = Duration::from_secs(10);

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// LSNs must increase: a value at or below what is already ingested.
    #[error("LSN {lsn} is not above the last record LSN {last} of timeline {timeline}")]
    LsnOrder {
        /// The LSN of the refused write.
        lsn: Lsn,
        /// What the timeline has ingested.
        last: Lsn,
        /// The timeline.
        timeline: String,
    },
    /// `finish_write` below the LSN of a value already put.
    #[error("cannot finish at LSN {lsn} on timeline {timeline}: a value was put at {pending}")]
    FinishBelowPut {
        /// The LSN given to `finish_write`.
        lsn: Lsn,
        /// The highest LSN put.
        pending: Lsn,
        /// The timeline.
        timeline: String,
    },
    /// The ephemeral file could not be written.
    #[error("cannot write to the in-memory layer of timeline {timeline}: {source}")]
    Io {
        /// The timeline.
        timeline: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Exclusive access to a timeline's write path. Values of one record share
/// an LSN; [`TimelineWriter::finish_write`] then publishes it. A writer
/// dropped with values put but not published publishes them (with a
/// warning), so the open layer never holds values above its end.
pub struct TimelineWriter<'a> {
    tl: &'a Timeline,
    _guard: MutexGuard<'a, ()>,
    /// Highest LSN put since the last `finish_write`.
    pending: Option<Lsn>,
}

impl Timeline {
    /// The writer; waits for another writer or a freeze to finish.
    pub fn writer(&self) -> TimelineWriter<'_> {
        TimelineWriter {
            tl: self,
            _guard: self.locks.write.lock().expect("write lock poisoned"),
            pending: None,
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.tenant_id, self.timeline_id)
    }

    /// Freezes the open layer at the last record LSN, if it holds values.
    /// The caller holds the write lock.
    fn freeze_locked(&self) -> bool {
        let record = self.record_lsn();
        let mut layers = self.layers.write().expect("layers lock poisoned");
        let Some(open) = layers.open.take() else {
            return false;
        };
        open.freeze(record.last + 1);
        layers.frozen.push(FrozenLayer {
            layer: open,
            prev_record_lsn: record.prev,
        });
        true
    }

    /// The open layer, opened now if there is none: it starts where the
    /// newest frozen layer ends, or at `first_lsn`.
    fn open_layer(&self, first_lsn: Lsn) -> std::io::Result<Arc<InMemoryLayer>> {
        let mut layers = self.layers.write().expect("layers lock poisoned");
        if let Some(open) = &layers.open {
            return Ok(open.clone());
        }
        let start = layers
            .frozen
            .last()
            .and_then(|f| f.layer.end_lsn())
            .unwrap_or(first_lsn);
        let open = Arc::new(InMemoryLayer::create(&self.path, start)?);
        layers.open = Some(open.clone());
        Ok(open)
    }

    /// Freezes the open layer now (for checkpoints and shutdown).
    pub fn freeze(&self) -> bool {
        let _guard = self.locks.write.lock().expect("write lock poisoned");
        self.freeze_locked()
    }

    /// Freezes the open layer when it is older than `checkpoint_timeout`.
    pub(super) fn freeze_if_old(&self) {
        let timeout = self
            .tenant_conf()
            .checkpoint_timeout
            .unwrap_or(Duration::MAX);
        let old = {
            let layers = self.layers.read().expect("layers lock poisoned");
            layers
                .open
                .as_ref()
                .is_some_and(|l| l.opened_at.elapsed() >= timeout)
        };
        if old && self.freeze() {
            tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "froze the open layer after checkpoint_timeout");
        }
    }

    /// Writes every frozen layer to an L0 delta layer file, oldest first,
    /// then advances `disk_consistent_lsn` durably. Blocking.
    pub fn flush_frozen_blocking(&self) -> anyhow::Result<()> {
        let _guard = self.locks.flush.lock().expect("flush lock poisoned");
        loop {
            let Some(frozen) = self
                .layers
                .read()
                .expect("layers lock poisoned")
                .frozen
                .first()
                .cloned()
            else {
                break;
            };
            let _timer = crate::metrics::FLUSH_DURATION.start_timer();
            let layer = &frozen.layer;
            let end = layer.end_lsn().expect("frozen layers have an end");
            fail::fail_point!("flush-before-layer-write", |_| anyhow::bail!(
                "failpoint flush-before-layer-write"
            ));
            let reader = if layer.num_values() > 0 {
                let reader = self.write_l0(layer)?;
                fail::fail_point!("flush-after-layer-write", |_| anyhow::bail!(
                    "failpoint flush-after-layer-write"
                ));
                Some(reader)
            } else {
                None
            };
            let new_layer = {
                let mut layers = self.layers.write().expect("layers lock poisoned");
                let new_layer = reader.map(|reader| layers.insert_file(Arc::new(reader)));
                layers.frozen.remove(0);
                new_layer
            };
            let disk_consistent = end - 1;
            self.update_metadata(|m| {
                m.disk_consistent_lsn = disk_consistent;
                m.prev_record_lsn = frozen.prev_record_lsn;
                m.record_lsn_time(unix_now(), disk_consistent);
            })
            .with_context(|| format!("cannot write metadata of timeline {}", self.name()))?;
            // The flush never waits for uploads: the queue runs on its own.
            if let Some(remote) = self.remote_client() {
                if let Some(layer) = new_layer {
                    remote.schedule_layer_upload(layer);
                }
                remote.schedule_index_upload(self.metadata());
            }
            fail::fail_point!("flush-after-metadata", |_| anyhow::bail!(
                "failpoint flush-after-metadata"
            ));
            tracing::debug!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, %disk_consistent, "flushed layer");
        }
        Ok(())
    }

    /// Swaps layer files in the map in one step (compaction, GC) and wakes
    /// writers waiting for fewer L0 layers. Returns the new layers and the
    /// removed ones.
    pub(super) fn replace_layer_files(
        &self,
        remove: &[LayerName],
        add: Vec<Arc<LayerReader>>,
    ) -> (Vec<Arc<Layer>>, Vec<Arc<Layer>>) {
        let swapped = self
            .layers
            .write()
            .expect("layers lock poisoned")
            .replace_files(remove, add);
        if !remove.is_empty() {
            let _announcing = self.locks.l0_wait.lock().expect("L0 wait lock poisoned");
            self.locks.layers_removed.notify_all();
        }
        swapped
    }

    /// Makes a frozen layer's ephemeral file its L0 delta layer file, in
    /// place: the values, page images already compressed, are not copied.
    pub(super) fn write_l0(&self, layer: &InMemoryLayer) -> anyhow::Result<LayerReader> {
        let path = layer.finish(&self.path, self.tenant_id, self.timeline_id)?;
        Ok(LayerReader::open(&path)?)
    }

    /// Backpressure: while L0 layers pile up to twice `compaction_threshold`
    /// (background compaction is on and not keeping up), the writer waits, at most
    /// [`L0_THROTTLE_LIMIT`] per frozen layer. Compaction itself never takes
    /// the write lock, so it always makes progress.
    fn throttle_for_l0(&self) {
        let conf = self.tenant_conf();
        if conf.compaction_period.unwrap_or_default().is_zero() {
            // Background compaction is off: nothing would bring L0 down.
            return;
        }
        let limit = 2 * conf.compaction_threshold.unwrap_or(10) as usize;
        let started = std::time::Instant::now();
        let mut waiting = self.locks.l0_wait.lock().expect("L0 wait lock poisoned");
        while self.l0_count() >= limit.max(2) && started.elapsed() < L0_THROTTLE_LIMIT {
            if self.cancel.is_cancelled() {
                break;
            }
            // Woken as soon as compaction replaces L0 layers; the timeout
            // notices cancellation.
            waiting = self
                .locks
                .layers_removed
                .wait_timeout(waiting, Duration::from_millis(20))
                .expect("L0 wait lock poisoned")
                .0;
        }
        drop(waiting);
        let waited = started.elapsed();
        if waited >= Duration::from_millis(20) {
            crate::metrics::INGEST_THROTTLE_SECONDS.inc_by(waited.as_secs_f64());
            tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "ingest waited {waited:?} for compaction: {} L0 layers", self.l0_count());
        }
    }

    /// Makes everything ingested so far durable: freezes the open layer,
    /// flushes, and records `disk_consistent_lsn` even when no value arrived
    /// since the last flush. Blocking.
    pub fn checkpoint_blocking(&self) -> anyhow::Result<()> {
        self.freeze();
        self.flush_frozen_blocking()?;
        // Hold the write lock so that no value arrives between the check and the update.
        let _guard = self.locks.write.lock().expect("write lock poisoned");
        let record = self.record_lsn();
        let nothing_open = {
            let layers = self.layers.read().expect("layers lock poisoned");
            layers.open.is_none() && layers.frozen.is_empty()
        };
        if nothing_open && record.last > self.disk_consistent_lsn() {
            self.update_metadata(|m| {
                m.disk_consistent_lsn = record.last;
                m.prev_record_lsn = record.prev;
                m.record_lsn_time(unix_now(), record.last);
            })
            .with_context(|| format!("cannot write metadata of timeline {}", self.name()))?;
            self.schedule_index_upload();
        }
        Ok(())
    }
}

impl TimelineWriter<'_> {
    /// Stores `value` under `key` at `lsn`, which must be above the last
    /// record LSN. Not visible to readers until `finish_write`.
    pub fn put(&mut self, key: Key, lsn: Lsn, value: &Value) -> Result<(), WriteError> {
        let tl = self.tl;
        let last = tl.last_record_lsn();
        if lsn <= last {
            return Err(WriteError::LsnOrder {
                lsn,
                last,
                timeline: tl.name(),
            });
        }
        let io_err = |source| WriteError::Io {
            timeline: tl.name(),
            source,
        };
        // The layer map is locked for writing only to open a layer: a put
        // does not hold up the reads that lock it meanwhile.
        let open = tl.layers.read().expect("layers lock poisoned").open.clone();
        let open = match open {
            Some(open) => open,
            None => tl.open_layer(last + 1).map_err(io_err)?,
        };
        // Only page images are stored compressed (see `stored_compressed`);
        // the layer holds an image's page without copying it.
        match value {
            Value::Image(page) => open.put_image(key, lsn, page.clone(), true),
            Value::Record(_) => open.put_with(key, lsn, false, |buf| value.ser_into(buf)),
        }
        .map_err(io_err)?;
        if key.is_rel_block() {
            // Before `lsn` is published: no read at `lsn` or later may use
            // an image from before it (see `image_cache`).
            IMAGE_CACHE.invalidate(tl.image_cache_id, key, lsn);
        }
        self.pending = self.pending.max(Some(lsn));
        Ok(())
    }

    /// Publishes everything put at or below `lsn`: readers waiting for it
    /// wake up. Freezes the open layer at `checkpoint_distance` and wakes the
    /// flush loop.
    pub fn finish_write(&mut self, lsn: Lsn) -> Result<(), WriteError> {
        let tl = self.tl;
        let prev = tl.record_lsn();
        if lsn < prev.last {
            return Err(WriteError::LsnOrder {
                lsn,
                last: prev.last,
                timeline: tl.name(),
            });
        }
        if let Some(pending) = self.pending.filter(|p| *p > lsn) {
            return Err(WriteError::FinishBelowPut {
                lsn,
                pending,
                timeline: tl.name(),
            });
        }
        self.pending = None;
        if lsn > prev.last {
            // Waking waiters costs more than the rest of publishing a small
            // record, so with no receiver (nobody in `wait_lsn`) the value
            // changes without a wake-up. The count, read under the value's
            // write lock, cannot miss a waiter: one subscribes before it
            // reads the value under the read lock, so it is either counted
            // here or reads the new value.
            tl.last_record.send_if_modified(|record| {
                *record = RecordLsn {
                    last: lsn,
                    prev: Some(prev.last),
                };
                tl.last_record.receiver_count() > 0
            });
        }
        let distance = tl.tenant_conf().checkpoint_distance.unwrap_or(u64::MAX);
        let full = {
            let layers = tl.layers.read().expect("layers lock poisoned");
            layers.open.as_ref().is_some_and(|l| l.size() >= distance)
        };
        if full && tl.freeze_locked() {
            tl.flush_requested.notify_one();
            tl.throttle_for_l0();
        }
        Ok(())
    }
}

impl Drop for TimelineWriter<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending {
            tracing::warn!(tenant_id = %self.tl.tenant_id, timeline_id = %self.tl.timeline_id, "writer dropped with values up to {pending} unpublished; publishing them");
            if let Err(e) = self.finish_write(pending) {
                tracing::error!(tenant_id = %self.tl.tenant_id, timeline_id = %self.tl.timeline_id, "cannot publish dropped writes: {e}");
            }
        }
    }
}

/// Whether a serialized value is stored zstd-compressed in this timeline's
/// layer files: page images are (when that makes them smaller), native
/// records never are. Every writer of layer files decides with this (the
/// write path by the same rule before serializing: an image serializes with
/// [`Value::IMAGE_TAG`] first), so a compressed stored value is always an
/// image: image layer creation copies such values without decoding them.
pub(super) fn stored_compressed(value: &[u8]) -> bool {
    Value::is_serialized_image(value)
}
