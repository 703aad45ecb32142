//! Compaction: L0 delta layers (each over the whole key space) are merged
//! into L1 delta layers partitioned by key range, and image layers are
//! written where reads would walk too many deltas.
//!
//! Crash safety: new files are complete and durable before they enter the
//! layer map, and old files are deleted only after. A crash in between
//! leaves old and new layers side by side; they hold the same values, so
//! reads stay correct and the next compaction cleans up.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use pageserver_api::key::Key;
use pageserver_api::value::Value;
use utils::crashsafe;
use utils::lsn::Lsn;

use super::layer::Layer;
use super::read::PageReconstructError;
use super::write::stored_compressed;
use super::Timeline;
use crate::tenant::storage_layer::layer_file::{
    LayerError, LayerReader, LayerWriter, MappedLayer, RawValue,
};
use crate::tenant::storage_layer::LayerName;

/// Most threads one compaction runs on, the calling one among them.
const MAX_COMPACTION_THREADS: usize = 4;

/// Keys per image layer partition are estimated with this value size.
const ESTIMATED_VALUE_SIZE: u64 = 8192;

/// What a compaction run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompactionStats {
    /// L0 layers merged.
    pub l0_merged: usize,
    /// L1 layers written.
    pub l1_written: usize,
    /// Image layers written.
    pub images_written: usize,
    /// Seconds taken.
    pub elapsed_secs: f64,
}

type ValueIter<'a> = Box<dyn Iterator<Item = Result<(Key, Lsn, RawValue), LayerError>> + 'a>;

impl Timeline {
    /// Runs compaction: L0 -> L1 when at least `compaction_threshold` L0
    /// layers exist (or any, with `force`), then image layers where
    /// `image_creation_threshold` L1 deltas pile up over a key. Blocking.
    pub fn compact_blocking(&self, force: bool) -> anyhow::Result<CompactionStats> {
        let _guard = self
            .locks
            .compaction
            .lock()
            .expect("compaction lock poisoned");
        let _timer = crate::metrics::COMPACTION_DURATION.start_timer();
        let started = Instant::now();
        let conf = self.tenant_conf();
        let threshold = conf.compaction_threshold.unwrap_or(10) as usize;
        let mut stats = CompactionStats::default();
        let l0 = self
            .layers
            .read()
            .expect("layers lock poisoned")
            .map
            .level0_deltas();
        if !l0.is_empty() && (force || l0.len() >= threshold) {
            let target = conf.compaction_target_size.unwrap_or(128 << 20);
            stats.l1_written = self.compact_level0(&l0, target)?;
            stats.l0_merged = l0.len();
        }
        if !self.cancel.is_cancelled() {
            let image_threshold = conf.image_creation_threshold.unwrap_or(3) as usize;
            let target = conf.compaction_target_size.unwrap_or(128 << 20);
            stats.images_written = self.create_image_layers(image_threshold.max(1), target)?;
        }
        stats.elapsed_secs = started.elapsed().as_secs_f64();
        if stats.l0_merged > 0 || stats.images_written > 0 {
            tracing::info!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, ?stats, "compaction done");
        }
        Ok(stats)
    }

    fn compact_level0(
        &self,
        l0: &[Arc<crate::tenant::storage_layer::PersistentLayerDesc>],
        target_size: u64,
    ) -> anyhow::Result<usize> {
        let l0_layers: Vec<_> = {
            let layers = self.layers.read().expect("layers lock poisoned");
            l0.iter().map(|d| layers.layer(d)).collect()
        };
        let readers: Vec<Arc<LayerReader>> = l0_layers
            .iter()
            .map(|l| self.layer_reader(l))
            .collect::<Result<_, _>>()?;
        let lsn_range = l0.first().expect("non-empty").lsn_range.start
            ..l0.last().expect("non-empty").lsn_range.end;
        // Values are merged in key order, but an L0 layer stores them in
        // arrival order: mapped, the files are read without a system call
        // per value (those in the page cache, as just flushed ones are).
        let maps: Vec<Option<MappedLayer>> = readers
            .iter()
            .map(|r| r.map_cached())
            .collect::<Result<_, _>>()?;
        let partitions = plan_partitions(&readers, target_size, compaction_threads());
        // Partitions are independent files: merged on several threads.
        let results = parallel_map(partitions.len(), |i| {
            self.merge_partition(&readers, &maps, partitions[i].clone(), lsn_range.clone())
        });
        let (written, failure) = successes(results);
        let written: Vec<_> = written.into_iter().flatten().collect();
        if let Some(e) = failure {
            // Finished partitions are not in the layer map: remove them.
            for path in &written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        fail::fail_point!("compaction-after-l1-write", |_| anyhow::bail!(
            "failpoint compaction-after-l1-write"
        ));
        let new_readers = written
            .iter()
            .map(|p| LayerReader::open(p).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let count = new_readers.len();
        let old_names: Vec<LayerName> = l0.iter().map(|d| d.layer_name()).collect();
        let (added, removed) = self.replace_layer_files(&old_names, new_readers);
        if let Some(remote) = self.remote_client() {
            for layer in added {
                remote.schedule_layer_upload(layer);
            }
            remote.schedule_unlink(old_names.clone());
            remote.schedule_index_upload(self.metadata());
        }
        fail::fail_point!("compaction-before-l0-delete", |_| anyhow::bail!(
            "failpoint compaction-before-l0-delete"
        ));
        // `removed` holds the last references (but for reads in flight).
        drop((maps, readers, l0_layers));
        self.delete_layer_files(removed)?;
        Ok(count)
    }

    /// Merges the values of `keys` in the L0 layers into one L1 file, in
    /// (key, LSN) order, copying them as stored (the in-memory layer
    /// compressed what is worth compressing). `None` when the range holds no
    /// value.
    fn merge_partition(
        &self,
        readers: &[Arc<LayerReader>],
        maps: &[Option<MappedLayer>],
        keys: Range<Key>,
        lsn_range: Range<Lsn>,
    ) -> anyhow::Result<Option<std::path::PathBuf>> {
        // k-way merge in (key, lsn) order.
        let mut iters: Vec<ValueIter<'_>> = readers
            .iter()
            .zip(maps)
            .map(|(r, map)| {
                Box::new(r.iter_raw_keys_mapped(keys.clone(), map.as_ref())) as ValueIter<'_>
            })
            .collect();
        let mut heap = BinaryHeap::new();
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(v) = it.next() {
                let (k, l, b) = v?;
                heap.push(Reverse((k, l, i, b)));
            }
        }
        let mut writer: Option<LayerWriter> = None;
        while let Some(Reverse((key, lsn, i, raw))) = heap.pop() {
            if let Some(v) = iters[i].next() {
                let (k, l, b) = v?;
                heap.push(Reverse((k, l, i, b)));
            }
            if self.cancel.is_cancelled() {
                anyhow::bail!("compaction cancelled by shutdown");
            }
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(LayerWriter::new(
                    &self.path,
                    self.tenant_id,
                    self.timeline_id,
                    true,
                    keys.start,
                    lsn_range.clone(),
                )?),
            };
            w.put_raw(key, lsn, &raw)?;
        }
        let Some(w) = writer else {
            return Ok(None);
        };
        let (_, path) = w.finish(keys.end)?;
        Ok(Some(path))
    }

    /// Removes layer files from disk (they are already out of the map).
    /// The layers are dropped on a background thread: closing the last
    /// descriptor of an unlinked file frees its page cache there and then
    /// ([`utils::deferred_drop`]).
    pub(super) fn delete_layer_files(&self, layers: Vec<Arc<Layer>>) -> anyhow::Result<()> {
        let result = self.unlink_layer_files(&layers);
        utils::deferred_drop::drop_in_background(layers);
        result
    }

    fn unlink_layer_files(&self, layers: &[Arc<Layer>]) -> anyhow::Result<()> {
        for layer in layers {
            let path = layer.local_path();
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()))
                }
            }
        }
        crashsafe::fsync_dir(&self.path)
            .with_context(|| format!("cannot fsync {}", self.path.display()))
    }

    /// Every key with a value in this timeline's own layer files.
    fn own_keys(&self) -> Result<BTreeSet<Key>, LayerError> {
        let mut keys = BTreeSet::new();
        for layer in self.all_layers() {
            let reader = self.layer_reader(&layer)?;
            keys.extend(reader.index_entries().map(|(k, _)| k));
        }
        Ok(keys)
    }

    /// Writes image layers at `disk_consistent_lsn` for key partitions whose
    /// reads walk `threshold` or more L1 delta layers above their newest
    /// image ([`Timeline::deltas_above_image`]).
    fn create_image_layers(&self, threshold: usize, target_size: u64) -> anyhow::Result<usize> {
        let lsn = self.disk_consistent_lsn();
        if !lsn.is_valid() {
            return Ok(0);
        }
        // The whole key space counts at least as many deltas as any part of
        // it: when it is under the threshold, no layer needs reading (which
        // would download every layer that is not resident).
        if self.deltas_above_image(&(Key::MIN..Key::MAX), lsn) < threshold {
            return Ok(0);
        }
        let keys: Vec<Key> = self.own_keys()?.into_iter().collect();
        let per_partition = (target_size / ESTIMATED_VALUE_SIZE).max(1) as usize;
        let chunks: Vec<&[Key]> = keys.chunks(per_partition).collect();
        // Each partition is a file of its own: written on several threads.
        let results = parallel_map(chunks.len(), |i| {
            self.write_image_layer(chunks[i], threshold, lsn)
        });
        let (done, failure) = successes(results);
        let written = done.into_iter().filter(|wrote| *wrote).count();
        if written > 0 {
            self.schedule_index_upload();
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Writes the image layer of `keys` (sorted) at `lsn` when reads there
    /// walk `threshold` or more deltas, and puts it in the layer map.
    /// Whether it wrote one.
    fn write_image_layer(&self, keys: &[Key], threshold: usize, lsn: Lsn) -> anyhow::Result<bool> {
        let range = keys[0]..keys[keys.len() - 1].next();
        if self.deltas_above_image(&range, lsn) < threshold {
            return Ok(false);
        }
        if self.cancel.is_cancelled() {
            anyhow::bail!("image layer creation cancelled by shutdown");
        }
        let mut writer = LayerWriter::new(
            &self.path,
            self.tenant_id,
            self.timeline_id,
            false,
            range.start,
            lsn..lsn + 1,
        )?;
        let mut buf = Vec::new();
        for key in keys {
            // Most keys' newest version is an image: copied as stored.
            if let Some(raw) = self.newest_stored_image(*key, lsn)? {
                writer.put_raw(*key, lsn, &raw)?;
                continue;
            }
            match self.get_blocking(*key, lsn) {
                Ok(img) => {
                    buf.clear();
                    Value::Image(img).ser_into(&mut buf);
                    writer.put(*key, lsn, &buf, stored_compressed(&buf))?;
                }
                Err(PageReconstructError::MissingKey { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if writer.num_values() == 0 {
            return Ok(false);
        }
        let (_, path) = writer.finish(range.end)?;
        let reader = Arc::new(LayerReader::open(&path)?);
        let (added, _) = self.replace_layer_files(&[], vec![reader]);
        if let Some(remote) = self.remote_client() {
            for layer in added {
                remote.schedule_layer_upload(layer);
            }
        }
        Ok(true)
    }

    /// The newest version of `key` at or below `lsn` in this timeline's
    /// layer files, as stored, when it is a page image (the value as of
    /// `lsn`); `None` when it is a record or the key has no version here.
    /// Everything at or below `disk_consistent_lsn` is in layer files.
    fn newest_stored_image(&self, key: Key, lsn: Lsn) -> Result<Option<RawValue>, LayerError> {
        let mut cont_lsn = lsn + 1;
        loop {
            let found = {
                let layers = self.layers.read().expect("layers lock poisoned");
                layers
                    .map
                    .search(key, cont_lsn)
                    .map(|r| (layers.layer(&r.layer), r.lsn_floor))
            };
            let Some((layer, floor)) = found else {
                return Ok(None);
            };
            let range = floor..cont_lsn;
            let newest = self.read_layer(&layer, |r| r.get_newest_raw(key, range.clone()))?;
            if let Some((_, raw)) = newest {
                // Only images are ever stored compressed (see `stored_compressed`).
                let image = raw.is_page_image()
                    || raw.is_compressed()
                    || Value::is_serialized_image(raw.stored());
                return Ok(image.then_some(raw));
            }
            cont_lsn = floor;
        }
    }

    /// Most L1 delta layers that a read of one key in `range` at `lsn`
    /// walks above the newest image layer covering that key: the deepest
    /// stack over any key, not the number of deltas overlapping the range
    /// (L1 layers side by side in key order are one step of a read).
    ///
    /// L0 layers do not count: L0 compaction merges them once
    /// `compaction_threshold` pile up, which bounds them apart. Counting
    /// them would rewrite every key as images whenever L0s arrive while a
    /// compaction runs, as they do under steady ingest.
    fn deltas_above_image(&self, range: &Range<Key>, lsn: Lsn) -> usize {
        let layers = self.layers.read().expect("layers lock poisoned");
        let deltas: Vec<_> = layers
            .map
            .iter_historic()
            .filter(|l| {
                l.is_delta
                    && !l.is_l0()
                    && l.key_range.start < range.end
                    && range.start < l.key_range.end
                    && l.lsn_range.start <= lsn
            })
            .collect();
        layers
            .map
            .image_coverage(range.clone(), lsn)
            .iter()
            .map(|(piece, img)| {
                let image_lsn = img.as_ref().map_or(Lsn(0), |i| i.image_lsn());
                stack_depth(
                    piece,
                    deltas
                        .iter()
                        .filter(|l| l.lsn_range.end > image_lsn + 1)
                        .map(|l| &l.key_range),
                )
            })
            .max()
            .unwrap_or(0)
    }
}

/// The most of `ranges` that cover one key of `within`.
fn stack_depth<'a>(within: &Range<Key>, ranges: impl Iterator<Item = &'a Range<Key>>) -> usize {
    // +1 where a range starts, -1 where it ends; ends sort before starts
    // at the same key (ranges are half-open).
    let mut events: Vec<(Key, i32)> = ranges
        .filter(|r| r.start < within.end && within.start < r.end)
        .flat_map(|r| [(r.start.max(within.start), 1), (r.end.min(within.end), -1)])
        .collect();
    events.sort_unstable();
    let (mut depth, mut deepest) = (0i32, 0i32);
    for (_, step) in events {
        depth += step;
        deepest = deepest.max(depth);
    }
    deepest as usize
}

/// Key ranges for the L1 files that merging `l0` writes: consecutive, in
/// key order, each starting at a key with values; the last ends just after
/// the last key. The stored bytes are cut into `n` about equal shares, `n`
/// being the fewest files of at most `target_size` rounded up to a multiple
/// of `threads` (the files are merged in parallel, and equal shares finish
/// together). Partition i starts at the first key whose preceding bytes
/// reach i shares, so one key's versions never span two files and each
/// file is within one key's values of its share.
fn plan_partitions(l0: &[Arc<LayerReader>], target_size: u64, threads: usize) -> Vec<Range<Key>> {
    // Sorted once, equal keys added up (faster than a map of every key).
    let mut all: Vec<(Key, u64)> = l0.iter().flat_map(|r| r.blob_sizes()).collect();
    all.sort_unstable_by_key(|(key, _)| *key);
    let mut sizes: Vec<(Key, u64)> = Vec::with_capacity(all.len());
    for (key, size) in all {
        match sizes.last_mut() {
            Some((last, sum)) if *last == key => *sum += size,
            _ => sizes.push((key, size)),
        }
    }
    let total: u64 = sizes.iter().map(|(_, size)| size).sum();
    let threads = threads.max(1) as u64;
    let files = total
        .div_ceil(target_size.max(1))
        .max(1)
        .next_multiple_of(threads);
    let share = total.div_ceil(files);
    // A key starts partition i when the bytes before it reach i shares.
    let mut starts = Vec::new();
    let mut before = 0;
    for (key, size) in &sizes {
        if before >= starts.len() as u64 * share {
            starts.push(*key);
        }
        before += size;
    }
    let Some((last, _)) = sizes.last() else {
        return Vec::new();
    };
    let ends = starts.iter().skip(1).copied().chain([last.next()]);
    starts
        .iter()
        .copied()
        .zip(ends)
        .map(|(s, e)| s..e)
        .collect()
}

/// The values of the results that succeeded, and the first error.
fn successes<T>(results: Vec<anyhow::Result<T>>) -> (Vec<T>, Option<anyhow::Error>) {
    let mut ok = Vec::new();
    let mut failure = None;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    (ok, failure)
}

/// Threads one compaction runs on: the cores, at most
/// [`MAX_COMPACTION_THREADS`].
fn compaction_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_COMPACTION_THREADS)
}

/// Runs `f(0..count)` on up to [`compaction_threads`] threads (the calling
/// one among them) and returns the results in order. The threads are scoped
/// to the call, and enter the caller's tokio runtime (reads may download a
/// layer on demand).
fn parallel_map<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = compaction_threads().min(count);
    if threads <= 1 {
        return (0..count).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    let runtime = tokio::runtime::Handle::try_current().ok();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            break;
        }
        let r = f(i);
        results.lock().expect("results lock poisoned")[i] = Some(r);
    };
    std::thread::scope(|s| {
        for n in 1..threads {
            let runtime = runtime.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("compaction-{n}"))
                .spawn_scoped(s, move || {
                    let _entered = runtime.as_ref().map(|r| r.enter());
                    work()
                });
            if let Err(e) = spawned {
                // The calling thread runs whatever no other takes.
                tracing::warn!("cannot start a compaction thread, compacting with fewer: {e}");
                break;
            }
        }
        work();
    });
    results
        .into_inner()
        .expect("results lock poisoned")
        .into_iter()
        .map(|r| r.expect("every index ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use utils::id::{TenantId, TimelineId};

    fn key(i: u32) -> Key {
        Key::MIN.add(i)
    }

    /// An L0 file over `lsns` with a value of `size(k)` bytes for each key
    /// in `keys`.
    fn l0(
        dir: &std::path::Path,
        keys: impl Iterator<Item = u32>,
        lsns: Range<Lsn>,
        size: impl Fn(u32) -> usize,
    ) -> Arc<LayerReader> {
        let mut w = LayerWriter::new(
            dir,
            TenantId::generate(),
            TimelineId::generate(),
            true,
            Key::MIN,
            lsns.clone(),
        )
        .unwrap();
        for k in keys {
            w.put(key(k), lsns.start, &vec![k as u8; size(k)], false)
                .unwrap();
        }
        let (_, path) = w.finish(Key::MAX).unwrap();
        Arc::new(LayerReader::open(&path).unwrap())
    }

    #[test]
    fn partitions_tile_the_keys_in_equal_shares() {
        let dir = tempfile::tempdir().unwrap();
        let size = |k: u32| 100 + (k as usize * 37) % 900;
        let a = l0(dir.path(), (0..300).step_by(2), Lsn(0x10)..Lsn(0x20), size);
        let b = l0(dir.path(), (0..300).step_by(3), Lsn(0x20)..Lsn(0x30), size);
        let readers = [a, b];
        let bytes = |r: &Range<Key>| -> u64 {
            readers
                .iter()
                .flat_map(|l| l.blob_sizes())
                .filter(|(k, _)| r.contains(k))
                .map(|(_, s)| s)
                .sum()
        };
        let all: u64 = readers
            .iter()
            .flat_map(|l| l.blob_sizes())
            .map(|(_, s)| s)
            .sum();
        // One key's values: at most one blob in each of the two layers.
        let one_key = 2 * 1009;
        let target = 20_000;
        for threads in [1, 2, 4, 7] {
            let parts = plan_partitions(&readers, target, threads);
            let files = all.div_ceil(target).next_multiple_of(threads as u64);
            let share = all.div_ceil(files);
            assert!(share <= target);
            assert!(parts.len() as u64 <= files, "{threads}: {parts:?}");
            assert!(parts.len() as u64 + 1 >= files, "{threads}: {parts:?}");
            assert_eq!(parts[0].start, key(0));
            assert_eq!(parts.last().unwrap().end, key(298).next());
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start, "partitions must be contiguous");
            }
            assert_eq!(
                parts.iter().map(bytes).sum::<u64>(),
                all,
                "every value in one partition"
            );
            for p in &parts[..parts.len() - 1] {
                let b = bytes(p);
                assert!(
                    b + one_key > share && b < share + one_key,
                    "{p:?}: {b} of {share}"
                );
            }
        }
        assert!(plan_partitions(&[], target, 2).is_empty());
        // Below the target, one file per thread.
        assert_eq!(plan_partitions(&readers, all, 1).len(), 1);
        assert!(plan_partitions(&readers, all, 2).len() >= 2);
    }

    #[test]
    fn stack_depth_counts_layers_over_one_key() {
        let r = |a: u32, b: u32| key(a)..key(b);
        let within = r(0, 100);
        // Side by side: one deep, however many.
        let side = [r(0, 10), r(10, 20), r(20, 30), r(30, 100)];
        assert_eq!(stack_depth(&within, side.iter()), 1);
        // Stacked where two overlap; a range outside does not count.
        let stacked = [r(0, 50), r(40, 60), r(45, 46), r(100, 200)];
        assert_eq!(stack_depth(&within, stacked.iter()), 3);
        // Only the part inside `within` counts.
        assert_eq!(stack_depth(&r(0, 40), stacked.iter()), 1);
        assert_eq!(stack_depth(&within, [].iter()), 0);
    }

    #[test]
    fn parallel_map_keeps_the_order() {
        let out = parallel_map(100, |i| {
            std::thread::sleep(std::time::Duration::from_micros((100 - i as u64) * 10));
            i * 2
        });
        assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert!(parallel_map(0, |i| i).is_empty());
    }
}
