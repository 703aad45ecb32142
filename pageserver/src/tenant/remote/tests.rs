//! The upload queue against a local-fs storage with injected failures: an
//! index never names a layer that is not uploaded, and unlinked layers are
//! deleted only after an index without them is up.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pageserver_api::key::Key;
use remote_storage::fault::{FaultConfig, FaultHandle};
use remote_storage::{GenericRemoteStorage, RemoteStorageConfig};
use tokio_util::sync::CancellationToken;
use utils::generation::Generation;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::index::IndexPart;
use super::*;
use crate::tenant::metadata::TimelineMetadata;
use crate::tenant::storage_layer::layer_file::{LayerReader, LayerWriter};
use crate::tenant::timeline::layer::Layer;

fn write_layer(dir: &Path, t: TenantId, tl: TimelineId, lsn: u64) -> Arc<Layer> {
    let mut w = LayerWriter::new(dir, t, tl, true, Key::MIN, Lsn(lsn)..Lsn(lsn + 0x10)).unwrap();
    let mut buf = Vec::new();
    pageserver_api::value::Value::Image(bytes::Bytes::from(vec![lsn as u8; 8192]))
        .ser_into(&mut buf);
    w.put(Key::MIN.next(), Lsn(lsn), &buf, false).unwrap();
    let (_, path) = w.finish(Key::MAX).unwrap();
    Arc::new(Layer::resident(Arc::new(LayerReader::open(&path).unwrap())))
}

fn context(root: &Path, faults: FaultHandle) -> Arc<RemoteContext> {
    let mut config = RemoteStorageConfig::local_fs(root.join("remote")).unwrap();
    config.max_retries = 0;
    let storage = GenericRemoteStorage::builder(&config)
        .faults(faults.clone())
        .build()
        .unwrap();
    let health = Arc::new(RemoteHealth::default());
    let deletion_queue = Arc::new(
        DeletionQueue::open(root.join("deletion"), storage.clone(), health.clone()).unwrap(),
    );
    Arc::new(RemoteContext {
        storage,
        faults,
        deletion_queue,
        health,
    })
}

fn metadata(dcl: u64) -> TimelineMetadata {
    let mut m = TimelineMetadata::new_root(15);
    m.disk_consistent_lsn = Lsn(dcl);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_never_names_a_missing_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, tl) = (TenantId::generate(), TimelineId::generate());
    let faults = FaultHandle::default();
    faults
        .set(FaultConfig {
            fail_percent: 15,
            delay_ms: 2,
            seed: Some(11),
            ..Default::default()
        })
        .unwrap();
    let ctx = context(tmp.path(), faults.clone());
    let attachment = Arc::new(TenantAttachment::new(Generation(1), false));
    let client = RemoteTimelineClient::new(t, tl, ctx.clone(), attachment, None);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(client.clone().run(cancel.clone()));

    // A checker that keeps reading the latest index and asserting that every
    // layer it names exists, while the queue runs with failures.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (storage, stop) = (ctx.storage.clone(), stop.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            let c = CancellationToken::new();
            while !stop.load(Ordering::Acquire) {
                let found = storage
                    .download(&paths::index_path(&t, &tl, Generation(1)), &c)
                    .await;
                if let Ok(d) = found {
                    let index = IndexPart::from_bytes(&d.bytes, "index").unwrap();
                    for (name, meta) in index.parsed_layers() {
                        let p = paths::layer_path(&t, &tl, &name, meta.generation);
                        // Reads fail too (injected): only a successful "no" counts.
                        if let Ok(exists) = storage.exists(&p, &c).await {
                            assert!(exists, "index names missing layer {name}");
                        }
                    }
                    checks += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            checks
        })
    };

    let dir = tmp.path().join("local");
    std::fs::create_dir_all(&dir).unwrap();
    let mut layers: Vec<Arc<Layer>> = Vec::new();
    for round in 0..4u64 {
        let a = write_layer(&dir, t, tl, 0x100 + round * 0x100);
        let b = write_layer(&dir, t, tl, 0x180 + round * 0x100);
        client.schedule_layer_upload(a.clone());
        client.schedule_layer_upload(b.clone());
        client.schedule_index_upload(metadata(0x200 + round * 0x100));
        if let Some(old) = layers.pop() {
            client.schedule_unlink(vec![old.name()]);
            client.schedule_index_upload(metadata(0x200 + round * 0x100));
        }
        layers.push(a);
        layers.push(b);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .wait_drained(Duration::from_secs(60), &CancellationToken::new())
        .await
        .unwrap();
    stop.store(true, Ordering::Release);
    let checks = checker.await.unwrap();
    assert!(checks > 0, "the checker never saw an index");
    assert!(faults.injected_failures() > 0, "no failure was injected");
    assert_eq!(client.remote_consistent_lsn(), Some(Lsn(0x500)));

    // The final index names exactly the layers not unlinked.
    faults.clear();
    let c = CancellationToken::new();
    let d = ctx
        .storage
        .download(&paths::index_path(&t, &tl, Generation(1)), &c)
        .await
        .unwrap();
    let index = IndexPart::from_bytes(&d.bytes, "index").unwrap();
    let mut named: Vec<_> = index.parsed_layers().into_iter().map(|(n, _)| n).collect();
    named.sort_by_key(|n| n.lsn_range.start);
    let mut want: Vec<_> = layers.iter().map(|l| l.name()).collect();
    want.sort_by_key(|n| n.lsn_range.start);
    assert_eq!(named, want);
    // Unlinked layers went to the deletion queue; they are gone once it ran.
    ctx.deletion_queue.process_all(&c).await.unwrap();
    let listing = ctx
        .storage
        .list(
            Some(&paths::timeline_prefix(&t, &tl)),
            remote_storage::ListMode::Recursive,
            &c,
        )
        .await
        .unwrap();
    let layer_objects = listing
        .objects
        .iter()
        .filter(|o| o.path.as_str().contains("__"))
        .count();
    assert_eq!(layer_objects, want.len());
    cancel.cancel();
    task.await.unwrap();
}
