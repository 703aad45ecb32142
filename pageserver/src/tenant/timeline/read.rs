//! The read path: `get(key, lsn)` walks from the newest layer down,
//! collecting native records until it meets an image (or a record that
//! initialises the value), continuing in the ancestor below a branch point,
//! then applies the records oldest first.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pageserver_api::key::Key;
use pageserver_api::value::{reconstruct, ApplyError, NativeRecord, Value, ValueError};
use utils::lsn::Lsn;

use super::image_cache::IMAGE_CACHE;
use super::Timeline;
use crate::tenant::storage_layer::layer_file::LayerError;

/// Why a page version could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum PageReconstructError {
    /// The LSN has not been ingested within the wait limit.
    #[error("timed out after {waited:?} waiting for LSN {lsn} on timeline {timeline}: last record LSN is {last}; is WAL arriving?")]
    LsnTimeout {
        /// The requested LSN.
        lsn: Lsn,
        /// What has been ingested.
        last: Lsn,
        /// How long the read waited.
        waited: Duration,
        /// The timeline.
        timeline: String,
    },
    /// The LSN is below the GC cutoff: its history was removed.
    #[error("LSN {lsn} is below the GC cutoff {cutoff} of timeline {timeline}, its oldest readable LSN: older history was garbage collected or precedes the point where the timeline's initial data is consistent")]
    BelowGcCutoff {
        /// The requested LSN.
        lsn: Lsn,
        /// The cutoff.
        cutoff: Lsn,
        /// The timeline.
        timeline: String,
    },
    /// No value of the key exists at or below the LSN.
    #[error("key {key} has no value at or below LSN {lsn} in timeline {timeline}")]
    MissingKey {
        /// The key.
        key: Key,
        /// The requested LSN.
        lsn: Lsn,
        /// The timeline.
        timeline: String,
    },
    /// A layer file is unreadable or corrupt (names the file and offset).
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// An ephemeral file could not be read.
    #[error("cannot read in-memory layer: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value does not decode.
    #[error("stored value of key {key} at {lsn} is invalid: {source}")]
    Value {
        /// The key.
        key: Key,
        /// The value's LSN.
        lsn: Lsn,
        /// The cause.
        source: ValueError,
    },
    /// Records do not apply.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The timeline is shutting down.
    #[error("timeline is shutting down")]
    Cancelled,
}

/// Records collected so far, newest first, and whether the walk is done.
struct Collected {
    records: Vec<NativeRecord>,
    base: Option<Bytes>,
    done: bool,
    /// LSN of the first (newest) value taken.
    newest: Option<Lsn>,
}

impl Collected {
    /// Takes values newest first; returns true once complete.
    fn take(&mut self, key: Key, values: Vec<(Lsn, Bytes)>) -> Result<bool, PageReconstructError> {
        for (lsn, bytes) in values {
            self.newest.get_or_insert(lsn);
            let value = Value::des_shared(&bytes)
                .map_err(|source| PageReconstructError::Value { key, lsn, source })?;
            match value {
                Value::Image(img) => {
                    self.base = Some(img);
                    self.done = true;
                }
                Value::Record(rec) => {
                    self.done = rec.will_init();
                    self.records.push(rec);
                }
            }
            if self.done {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Timeline {
    /// Waits until `lsn` is ingested, at most `timeout`.
    pub async fn wait_lsn(&self, lsn: Lsn, timeout: Duration) -> Result<(), PageReconstructError> {
        let mut rx = self.last_record.subscribe();
        let waited = tokio::select! {
            r = tokio::time::timeout(timeout, rx.wait_for(|r| r.last >= lsn)) => r,
            _ = self.cancel.cancelled() => return Err(PageReconstructError::Cancelled),
        };
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(PageReconstructError::Cancelled),
            Err(_) => Err(PageReconstructError::LsnTimeout {
                lsn,
                last: self.last_record_lsn(),
                waited: timeout,
                timeline: self.name_for_errors(),
            }),
        }
    }

    pub(super) fn name_for_errors(&self) -> String {
        format!("{}/{}", self.tenant_id, self.timeline_id)
    }

    /// The value of `key` as of `lsn`, waiting (at most `timeout`) for the
    /// LSN to be ingested. File reads run off the async executor.
    pub async fn get(
        self: &Arc<Self>,
        key: Key,
        lsn: Lsn,
        timeout: Duration,
    ) -> Result<Bytes, PageReconstructError> {
        self.wait_lsn(lsn, timeout).await?;
        let tl = self.clone();
        tokio::task::spawn_blocking(move || tl.get_blocking(key, lsn))
            .await
            .map_err(|_| PageReconstructError::Cancelled)?
    }

    /// The value of `key` as of `lsn` (which must be ingested). Blocking.
    pub fn get_blocking(&self, key: Key, lsn: Lsn) -> Result<Bytes, PageReconstructError> {
        self.check_gc_cutoff(lsn)?;
        Ok(self.reconstruct(key, lsn)?.0)
    }

    /// [`Timeline::get_blocking`] through the node's image cache
    /// ([`super::image_cache`]): answered from it when it can, otherwise
    /// read and offered to it. For the page service's GetPage, whose blocks
    /// are read again and again; `lsn` must be ingested. Only relation
    /// blocks are cached (the keys ingest invalidates). Blocking.
    pub fn get_page_cached(&self, key: Key, lsn: Lsn) -> Result<Bytes, PageReconstructError> {
        self.check_gc_cutoff(lsn)?;
        if !key.is_rel_block() {
            // Ingest invalidates relation blocks only.
            return Ok(self.reconstruct(key, lsn)?.0);
        }
        if let Some(image) = IMAGE_CACHE.get(self.image_cache_id, key, lsn) {
            return Ok(image);
        }
        let (image, version) = self.reconstruct(key, lsn)?;
        IMAGE_CACHE.fill(self.image_cache_id, key, lsn, version, image.clone());
        Ok(image)
    }

    /// The image of `key` at `lsn` if the image cache answers it (`lsn`
    /// must be ingested). Never blocks on I/O.
    pub fn cached_page(&self, key: Key, lsn: Lsn) -> Option<Bytes> {
        if !key.is_rel_block() || lsn < self.gc_cutoff_lsn() {
            return None;
        }
        IMAGE_CACHE.get(self.image_cache_id, key, lsn)
    }

    /// Refuses reads below the GC cutoff.
    fn check_gc_cutoff(&self, lsn: Lsn) -> Result<(), PageReconstructError> {
        let cutoff = self.gc_cutoff_lsn();
        if lsn < cutoff {
            return Err(PageReconstructError::BelowGcCutoff {
                lsn,
                cutoff,
                timeline: self.name_for_errors(),
            });
        }
        Ok(())
    }

    /// The newest value of `key` (as of the last record LSN), for the write
    /// path: ingest reads what it wrote, even where reads by clients are
    /// refused (below the point a base backup becomes consistent). Blocking.
    pub fn get_latest_blocking(&self, key: Key) -> Result<Bytes, PageReconstructError> {
        Ok(self.reconstruct(key, self.last_record_lsn())?.0)
    }

    /// The value of `key` at `lsn` and the LSN of its newest version at or
    /// below `lsn`.
    fn reconstruct(&self, key: Key, lsn: Lsn) -> Result<(Bytes, Lsn), PageReconstructError> {
        let mut c = Collected {
            records: Vec::new(),
            base: None,
            done: false,
            newest: None,
        };
        let mut timeline = self;
        let mut cont_lsn = lsn + 1;
        loop {
            if timeline.collect(key, &mut cont_lsn, &mut c)? {
                break;
            }
            match timeline.ancestor() {
                Some(ancestor) => {
                    cont_lsn = cont_lsn.min(timeline.ancestor_lsn() + 1);
                    timeline = ancestor;
                }
                None if c.records.is_empty() => {
                    return Err(PageReconstructError::MissingKey {
                        key,
                        lsn,
                        timeline: self.name_for_errors(),
                    })
                }
                None => break,
            }
        }
        c.records.reverse();
        // Something was taken: a walk that found nothing returned above.
        let newest = c.newest.unwrap_or(lsn);
        Ok((reconstruct(key, c.base, &c.records)?, newest))
    }

    /// Collects values of `key` below `cont_lsn` from this timeline's own
    /// layers, lowering `cont_lsn` as it goes. True once complete.
    fn collect(
        &self,
        key: Key,
        cont_lsn: &mut Lsn,
        c: &mut Collected,
    ) -> Result<bool, PageReconstructError> {
        let in_memory: Vec<_> = {
            let layers = self.layers.read().expect("layers lock poisoned");
            layers
                .open
                .iter()
                .cloned()
                .chain(layers.frozen.iter().rev().map(|f| f.layer.clone()))
                .collect()
        };
        for layer in in_memory {
            if *cont_lsn <= layer.start_lsn {
                continue;
            }
            let range: Range<Lsn> = layer.start_lsn..*cont_lsn;
            *cont_lsn = layer.start_lsn;
            if c.take(key, layer.get_values_to_image(key, range)?)? {
                return Ok(true);
            }
        }
        loop {
            let found = {
                let layers = self.layers.read().expect("layers lock poisoned");
                layers
                    .map
                    .search(key, *cont_lsn)
                    .map(|r| (layers.layer(&r.layer), r.lsn_floor))
            };
            let Some((layer, floor)) = found else {
                return Ok(false);
            };
            let range = floor..*cont_lsn;
            *cont_lsn = floor;
            let values = self.read_layer(&layer, |r| r.get_values_to_image(key, range.clone()))?;
            if c.take(key, values)? {
                return Ok(true);
            }
        }
    }
}
