//! The flush's value pipeline: the values of a frozen in-memory layer are
//! read from its ephemeral file and put in their stored form (page images
//! compressed) by several threads, batch by batch, while the flushing
//! thread appends the finished batches to the L0 layer file in order.
//!
//! Compression is most of a flush's CPU time. Run on one thread, it made
//! the flush the ingest bottleneck: a 64 MiB layer took about 115 ms to
//! write, of which 50 ms were zstd, while the other core had nothing to do
//! once ingest waited for the flush.
//!
//! Work sharing: every thread, the flushing one included, takes the next
//! batch not yet taken and encodes it; the flushing thread writes each
//! batch as soon as it and every earlier one are done, and encodes only
//! when the next batch to write is not ready. At most [`AHEAD`] batches wait
//! encoded, which bounds the memory a flush holds to a few MiB. The helper
//! threads are scoped to the flush: none outlives it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use pageserver_api::key::Key;
use utils::lsn::Lsn;

use super::write::stored_compressed;
use crate::tenant::storage_layer::inmemory_layer::{InMemoryLayer, ValueRef};
use crate::tenant::storage_layer::layer_file::{RawValue, ValueCompressor};

/// Values per batch: 1 MiB of 8 KiB pages.
const BATCH: usize = 128;
/// Encoded batches that may wait for the writer.
const AHEAD: usize = 4;
/// Most threads a flush encodes with, the flushing one included.
const MAX_THREADS: usize = 4;

type Batch = Vec<(Key, Lsn, RawValue)>;

/// What the threads share.
struct Shared<'a> {
    layer: &'a InMemoryLayer,
    refs: &'a [ValueRef],
    batches: usize,
    /// The next batch no thread has taken.
    next: AtomicUsize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Encoded batches (or the error encoding met), by batch number.
    done: BTreeMap<usize, std::io::Result<Batch>>,
    /// Batches written so far: encoders stay within [`AHEAD`] of it.
    written: usize,
    /// The flush gave up: helpers stop.
    stopped: bool,
}

impl Shared<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("flush pipeline lock poisoned")
    }

    /// Reads and encodes batch `i`.
    fn encode(
        &self,
        i: usize,
        compressor: &mut ValueCompressor,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<Batch> {
        let refs = &self.refs[i * BATCH..((i + 1) * BATCH).min(self.refs.len())];
        let mut batch = Vec::with_capacity(refs.len());
        for r in refs {
            self.layer.read_value(r, buf)?;
            let stored = compressor.stored_form(buf, stored_compressed(buf));
            batch.push((r.key, r.lsn(), stored));
        }
        Ok(batch)
    }

    /// Takes the next batch and encodes it; a helper (`is_writer` false)
    /// first waits while [`AHEAD`] batches are ahead of the writer. False
    /// when none is left or the flush stopped.
    fn encode_next(
        &self,
        is_writer: bool,
        compressor: &mut ValueCompressor,
        buf: &mut Vec<u8>,
    ) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.batches {
            return false;
        }
        if !is_writer {
            let mut st = self.lock();
            while i >= st.written + AHEAD && !st.stopped {
                st = self.changed.wait(st).expect("flush pipeline lock poisoned");
            }
            if st.stopped {
                return false;
            }
        }
        let result = self.encode(i, compressor, buf);
        self.lock().done.insert(i, result);
        self.changed.notify_all();
        true
    }
}

/// Calls `write` with every value of the frozen `layer`, in (key, LSN)
/// order, in its stored form, encoding on up to [`MAX_THREADS`] threads.
/// Stops at the first error (reading the ephemeral file, or from `write`).
pub(super) fn for_each_stored_value(
    layer: &InMemoryLayer,
    mut write: impl FnMut(Key, Lsn, &RawValue) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let refs = layer.value_refs();
    let batches = refs.len().div_ceil(BATCH);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(batches);
    let shared = Shared {
        layer,
        refs: &refs,
        batches,
        next: AtomicUsize::new(0),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    };
    std::thread::scope(|s| {
        for n in 1..threads {
            let shared = &shared;
            let spawned = std::thread::Builder::new()
                .name(format!("flush-encode-{n}"))
                .spawn_scoped(s, move || {
                    let (mut compressor, mut buf) = (ValueCompressor::default(), Vec::new());
                    while shared.encode_next(false, &mut compressor, &mut buf) {}
                });
            if let Err(e) = spawned {
                // The flushing thread encodes whatever no helper takes.
                tracing::warn!("cannot start a flush encoder thread, flushing with fewer: {e}");
                break;
            }
        }
        let _stop = StopHelpers(&shared);
        write_in_order(&shared, &mut write)
    })
}

/// Stops the helpers when the writer is done, fails or panics.
struct StopHelpers<'a, 'b>(&'a Shared<'b>);

impl Drop for StopHelpers<'_, '_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stopped = true;
        drop(st);
        self.0.changed.notify_all();
    }
}

/// The flushing thread: writes batches in order, encoding one itself
/// whenever the next to write is not ready (it never waits on the window:
/// only it moves the window on).
fn write_in_order(
    shared: &Shared<'_>,
    write: &mut impl FnMut(Key, Lsn, &RawValue) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (mut compressor, mut buf) = (ValueCompressor::default(), Vec::new());
    for i in 0..shared.batches {
        let batch = loop {
            let mut st = shared.lock();
            if let Some(done) = st.done.remove(&i) {
                break done?;
            }
            let can_take =
                shared.next.load(Ordering::Relaxed) < shared.batches.min(st.written + AHEAD);
            if can_take {
                drop(st);
                shared.encode_next(true, &mut compressor, &mut buf);
            } else {
                // Batch `i` is being encoded by a helper.
                drop(
                    shared
                        .changed
                        .wait(st)
                        .expect("flush pipeline lock poisoned"),
                );
            }
        };
        for (key, lsn, value) in &batch {
            write(*key, *lsn, value)?;
        }
        shared.lock().written = i + 1;
        shared.changed.notify_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pageserver_api::value::{NativeRecord, Value};
    use rand::{Rng, RngCore, SeedableRng};

    /// A frozen layer of `n` values of 8 KiB images (half compressible,
    /// half random) and small records, spread over keys and LSNs.
    fn layer(dir: &std::path::Path, n: usize) -> (InMemoryLayer, Vec<(Key, Lsn, Vec<u8>)>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let layer = InMemoryLayer::create(dir, Lsn(0x10)).unwrap();
        let mut want = Vec::new();
        for i in 0..n {
            let key = Key {
                field6: rng.gen_range(0..200),
                ..Key::MIN
            };
            let lsn = Lsn(0x10 + i as u64);
            let value = if rng.gen_bool(0.8) {
                let mut page = vec![i as u8; 8192];
                if rng.gen_bool(0.5) {
                    rng.fill_bytes(&mut page);
                }
                Value::Image(Bytes::from(page))
            } else {
                Value::Record(NativeRecord::RelSizeSet(i as u32))
            };
            let mut buf = Vec::new();
            value.ser_into(&mut buf);
            layer.put(key, lsn, &buf).unwrap();
            want.push((key, lsn, buf));
        }
        layer.freeze(Lsn(0x10 + n as u64));
        want.sort_by_key(|(k, l, _)| (*k, *l));
        (layer, want)
    }

    fn decoded(raw: &RawValue) -> Vec<u8> {
        if raw.is_compressed() {
            zstd::bulk::decompress(raw.stored(), 1 << 20).unwrap()
        } else {
            raw.stored().to_vec()
        }
    }

    #[test]
    fn every_value_comes_once_in_order_in_its_stored_form() {
        let dir = tempfile::tempdir().unwrap();
        // Many batches, so that every thread encodes some.
        let (layer, want) = layer(dir.path(), 20 * BATCH + 7);
        let mut got = Vec::new();
        let mut compressed = 0;
        for_each_stored_value(&layer, |key, lsn, raw| {
            compressed += usize::from(raw.is_compressed());
            got.push((key, lsn, decoded(raw)));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "values differ from what was put");
        // Compressible images are stored compressed, records never.
        assert!(compressed > 0 && compressed < got.len(), "{compressed}");
    }

    #[test]
    fn a_writer_error_stops_the_flush_and_its_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let (layer, _) = layer(dir.path(), 30 * BATCH);
        let mut seen = 0;
        let err = for_each_stored_value(&layer, |_, _, _| {
            seen += 1;
            if seen == 3 * BATCH + 1 {
                anyhow::bail!("disk full");
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(seen, 3 * BATCH + 1);
    }

    #[test]
    fn an_empty_or_tiny_layer_needs_no_helper() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, BATCH - 1] {
            let (layer, want) = layer(dir.path(), n);
            let mut got = 0;
            for_each_stored_value(&layer, |_, _, _| {
                got += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(got, want.len());
        }
    }
}
