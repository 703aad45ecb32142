//! The conformance suite: every operation of `GenericRemoteStorage`, the same
//! assertions on every backend. `conformance_tests!` (in `main.rs`) turns each
//! `pub async fn` here into one test per backend.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};
use remote_storage::fault::FaultConfig;
use remote_storage::GenericRemoteStorage;
use remote_storage::{
    checksum, ChecksumSource, ErrorKind, ListMode, Op, RemotePath, RemoteStorageError,
};
use tokio_util::sync::CancellationToken;

use crate::backends::TestBackend;

fn key(s: &str) -> RemotePath {
    RemotePath::new(s).unwrap_or_else(|e| panic!("test key {s:?}: {e}"))
}

fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    Bytes::from(bytes)
}

fn never() -> CancellationToken {
    CancellationToken::new()
}

/// Uploads `body` at each key, up to 32 at a time.
async fn upload_all(storage: &GenericRemoteStorage, keys: &[RemotePath], body: Bytes) {
    let cancel = never();
    futures::stream::iter(keys)
        .map(|k| storage.upload(k, body.clone(), &cancel))
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("uploads");
}

/// Arbitrary binary bodies survive a round trip, with their checksum.
pub async fn round_trip(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let bodies = [
        Bytes::new(),
        Bytes::from_static(b"\0"),
        Bytes::from(all_bytes),
        random_bytes(1 << 20, 1),
        random_bytes(4097, 2),
    ];
    let mut uploaded = 0;
    for (i, body) in bodies.iter().enumerate() {
        let path = key(&format!("tenants/t/timelines/tl/layer-{i}-00000001"));
        let receipt = storage.upload(&path, body.clone(), &cancel).await.unwrap();
        uploaded += body.len() as u64;
        assert_eq!(receipt.size, body.len() as u64);
        assert_eq!(receipt.crc32c, checksum::crc32c(body));
        assert_eq!(receipt.path, path);

        let read = storage.download(&path, &cancel).await.unwrap();
        assert_eq!(read.bytes, *body, "body {i}");
        assert_eq!(read.crc32c, receipt.crc32c);
        assert_eq!(
            read.stored_crc32c,
            Some(receipt.crc32c),
            "stored checksum verified"
        );
        assert_eq!(read.info.size, body.len() as u64);
        assert_eq!(read.info.path, path);

        let verified = storage
            .download_verified(&path, receipt.crc32c, &cancel)
            .await
            .unwrap();
        assert_eq!(verified.bytes, *body);
        let err = storage
            .download_verified(&path, receipt.crc32c ^ 1, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RemoteStorageError::ChecksumMismatch {
                    source_of_expected: ChecksumSource::Caller,
                    ..
                }
            ),
            "{err}"
        );

        let head = storage.head(&path, &cancel).await.unwrap();
        assert_eq!(head.size, body.len() as u64);
        assert!(storage.exists(&path, &cancel).await.unwrap());
    }

    // Overwriting replaces body and checksum.
    let path = key("tenants/t/overwritten");
    storage
        .upload(&path, Bytes::from_static(b"first"), &cancel)
        .await
        .unwrap();
    let second = storage
        .upload(&path, Bytes::from_static(b"second version"), &cancel)
        .await
        .unwrap();
    let read = storage.download(&path, &cancel).await.unwrap();
    assert_eq!(&read.bytes[..], b"second version");
    assert_eq!(read.stored_crc32c, Some(second.crc32c));

    // Keys with unusual but allowed characters are stored as given.
    let odd = key("odd keys/a b+c=d,e;f@g!h'(i)*j$k&l:m/üñí");
    storage
        .upload(&odd, Bytes::from_static(b"odd"), &cancel)
        .await
        .unwrap();
    assert_eq!(
        &storage.download(&odd, &cancel).await.unwrap().bytes[..],
        b"odd"
    );
    let listed = storage
        .list(Some(&key("odd keys")), ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(listed.keys(), vec![odd]);

    let m = storage.metrics();
    assert_eq!(m.operations(Op::Upload, "ok"), bodies.len() as u64 + 3);
    assert_eq!(m.bytes_uploaded(), uploaded + 5 + 14 + 3);
    assert_eq!(
        m.errors(Op::Download, ErrorKind::Corrupt),
        bodies.len() as u64
    );
    assert_eq!(
        m.latency_samples(Op::Upload),
        m.operations(Op::Upload, "ok")
    );
    assert!(m.bytes_downloaded() >= 2 * uploaded);
}

/// Ranges at the start, middle and end; past the end is an error naming the size.
pub async fn range_reads(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let body = random_bytes(1000, 3);
    let path = key("ranges/object");
    storage.upload(&path, body.clone(), &cancel).await.unwrap();

    for range in [0..10, 400..600, 990..1000, 0..1000, 999..1000] {
        let read = storage
            .download_range(&path, range.clone(), &cancel)
            .await
            .unwrap();
        assert_eq!(
            read.bytes,
            body.slice(range.start as usize..range.end as usize)
        );
        assert_eq!(read.range, range);
        assert_eq!(read.info.size, 1000);
    }
    for range in [990..1001, 0..5000, 1000..1010, 2000..2001] {
        let err = storage
            .download_range(&path, range.clone(), &cancel)
            .await
            .unwrap_err();
        match &err {
            RemoteStorageError::RangeOutOfBounds { path: p, size, .. } => {
                assert_eq!((p.as_str(), *size), ("ranges/object", 1000), "{err}")
            }
            other => panic!("{range:?}: expected RangeOutOfBounds, got {other}"),
        }
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    #[allow(clippy::reversed_empty_ranges)]
    for range in [5..5, 10..3] {
        let err = storage
            .download_range(&path, range, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RemoteStorageError::InvalidRange { .. }),
            "{err}"
        );
    }
    let err = storage
        .download_range(&key("ranges/missing"), 0..1, &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Prefixes are whole segments; the delimiter gives folders; checksum side
/// files never show.
pub async fn list_prefix_and_delimiter(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let keys: Vec<RemotePath> = ["a/1", "a/2", "a/b/3", "a/b/c/4", "ab/5", "top"]
        .into_iter()
        .map(key)
        .collect();
    for (i, k) in keys.iter().enumerate() {
        storage
            .upload(k, Bytes::from(vec![b'x'; i + 1]), &cancel)
            .await
            .unwrap();
    }
    let names =
        |paths: Vec<RemotePath>| -> Vec<String> { paths.into_iter().map(String::from).collect() };

    let all = storage
        .list(None, ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(
        names(all.keys()),
        ["a/1", "a/2", "a/b/3", "a/b/c/4", "ab/5", "top"]
    );
    assert!(all.prefixes.is_empty());
    assert_eq!(
        all.objects.iter().map(|o| o.size).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );

    let under_a = storage
        .list(Some(&key("a")), ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(names(under_a.keys()), ["a/1", "a/2", "a/b/3", "a/b/c/4"]);

    let folder_a = storage
        .list(Some(&key("a")), ListMode::Delimited, &cancel)
        .await
        .unwrap();
    assert_eq!(names(folder_a.keys()), ["a/1", "a/2"]);
    assert_eq!(names(folder_a.prefixes), ["a/b"]);

    let root = storage
        .list(None, ListMode::Delimited, &cancel)
        .await
        .unwrap();
    assert_eq!(names(root.keys()), ["top"]);
    assert_eq!(names(root.prefixes), ["a", "ab"]);

    for mode in [ListMode::Recursive, ListMode::Delimited] {
        let none = storage
            .list(Some(&key("no/such/prefix")), mode, &cancel)
            .await
            .unwrap();
        assert_eq!(none, Default::default(), "{mode:?}");
    }
    assert_eq!(storage.metrics().operations(Op::List, "ok"), 6);
}

/// More keys than one S3 list page (1000) and one delete request.
pub async fn pagination(backend: &TestBackend) {
    const N: usize = 1100;
    let storage = backend.storage();
    let cancel = never();
    let keys: Vec<RemotePath> = (0..N)
        .map(|i| {
            key(&format!(
                "many/{}/k{i:05}",
                if i % 2 == 0 { "even" } else { "odd" }
            ))
        })
        .collect();
    upload_all(&storage, &keys, Bytes::from_static(b"v")).await;

    let mut sorted = keys.clone();
    sorted.sort();
    let all = storage
        .list(Some(&key("many")), ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(all.keys(), sorted);

    let even = storage
        .list(Some(&key("many/even")), ListMode::Delimited, &cancel)
        .await
        .unwrap();
    assert_eq!(even.objects.len(), N / 2);
    assert!(even.prefixes.is_empty());
    let folders = storage
        .list(Some(&key("many")), ListMode::Delimited, &cancel)
        .await
        .unwrap();
    assert!(folders.objects.is_empty());
    assert_eq!(folders.prefixes, [key("many/even"), key("many/odd")]);

    storage.delete_objects(&keys, &cancel).await.unwrap();
    let after = storage
        .list(Some(&key("many")), ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert!(after.objects.is_empty(), "{} left", after.objects.len());
}

/// Batch delete removes what exists and ignores what does not.
pub async fn delete_batch_with_missing_keys(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let [k1, k2, k3] = [key("del/1"), key("del/2"), key("del/sub/3")];
    for k in [&k1, &k2, &k3] {
        storage
            .upload(k, Bytes::from_static(b"data"), &cancel)
            .await
            .unwrap();
    }
    let batch = [
        k1.clone(),
        key("del/missing"),
        k3.clone(),
        key("nowhere/at/all"),
    ];
    storage.delete_objects(&batch, &cancel).await.unwrap();
    assert!(!storage.exists(&k1, &cancel).await.unwrap());
    assert!(storage.exists(&k2, &cancel).await.unwrap());
    assert!(!storage.exists(&k3, &cancel).await.unwrap());
    // Again, all missing now; and an empty batch.
    storage.delete_objects(&batch, &cancel).await.unwrap();
    storage.delete_objects(&[], &cancel).await.unwrap();
    let left = storage
        .list(None, ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(left.keys(), vec![k2.clone()]);
    // A deleted key can be written again and reads back with its new checksum.
    let again = storage
        .upload(&k1, Bytes::from_static(b"reborn"), &cancel)
        .await
        .unwrap();
    let read = storage.download(&k1, &cancel).await.unwrap();
    assert_eq!(read.stored_crc32c, Some(again.crc32c));
}

/// Copy duplicates body and checksum, replaces the target, and reports a
/// missing source by name.
pub async fn copy(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let (src, dst) = (key("copy/src"), key("copy/elsewhere/dst"));
    let body = random_bytes(10_000, 4);
    let receipt = storage.upload(&src, body.clone(), &cancel).await.unwrap();
    storage
        .upload(&dst, Bytes::from_static(b"old target"), &cancel)
        .await
        .unwrap();
    storage.copy(&src, &dst, &cancel).await.unwrap();
    let read = storage.download(&dst, &cancel).await.unwrap();
    assert_eq!(read.bytes, body);
    assert_eq!(
        read.stored_crc32c,
        Some(receipt.crc32c),
        "checksum follows the copy"
    );
    assert_eq!(storage.download(&src, &cancel).await.unwrap().bytes, body);

    let err = storage
        .copy(&key("copy/missing"), &dst, &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("copy/missing"), "{err}");
    assert_eq!(storage.download(&dst, &cancel).await.unwrap().bytes, body);
}

/// Every operation on a missing object says "not found" and names it.
pub async fn not_found(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let missing = key("nothing/here");
    let errors = [
        storage.download(&missing, &cancel).await.unwrap_err(),
        storage
            .download_verified(&missing, 0, &cancel)
            .await
            .unwrap_err(),
        storage.head(&missing, &cancel).await.unwrap_err(),
        storage
            .download_range(&missing, 0..1, &cancel)
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.is_not_found());
        assert_eq!(err.to_string(), "remote object nothing/here not found");
    }
    assert!(!storage.exists(&missing, &cancel).await.unwrap());
    let m = storage.metrics();
    assert_eq!(m.errors(Op::Download, ErrorKind::NotFound), 2);
    assert_eq!(m.errors(Op::Head, ErrorKind::NotFound), 1);
    assert_eq!(
        m.operations(Op::Head, "ok"),
        1,
        "exists() of a missing key is a success"
    );
    assert_eq!(m.retries(Op::Download), 0, "not found is never retried");
}

/// Invalid keys are refused before any request; reserved keys stay hidden.
pub async fn path_validation(backend: &TestBackend) {
    for bad in [
        "",
        "/abs",
        "a/../b",
        "a//b",
        "dir/",
        "a/./b",
        ".crc32c/x",
        "a#1",
        "bad\u{7}",
    ] {
        let err: RemoteStorageError = RemotePath::new(bad).unwrap_err().into();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    let storage = backend.storage();
    let cancel = never();
    let k = key("valid/key");
    storage
        .upload(&k, Bytes::from_static(b"x"), &cancel)
        .await
        .unwrap();
    let root = storage
        .list(None, ListMode::Delimited, &cancel)
        .await
        .unwrap();
    assert_eq!(
        root.prefixes,
        [key("valid")],
        "no bookkeeping prefixes visible"
    );
    let all = storage
        .list(None, ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(all.keys(), [k]);
}

/// A byte changed behind the storage's back is caught on download.
pub async fn checksum_detects_corruption(backend: &TestBackend) {
    let storage = backend.storage();
    let cancel = never();
    let path = key("tenants/t/timelines/tl/corrupted-layer");
    let body = random_bytes(64 * 1024, 5);
    let receipt = storage.upload(&path, body.clone(), &cancel).await.unwrap();
    if let Some(stored) = backend.raw_checksum_metadata(&path).await.unwrap() {
        assert_eq!(
            stored,
            format!("{:08x}", receipt.crc32c),
            "S3 metadata holds the CRC32C"
        );
    }
    backend.corrupt(&path, 1234).await.unwrap();

    let err = storage.download(&path, &cancel).await.unwrap_err();
    match &err {
        RemoteStorageError::ChecksumMismatch {
            path: p,
            expected,
            actual,
            source_of_expected,
        } => {
            assert_eq!(p, path.as_str());
            assert_eq!(*expected, receipt.crc32c);
            assert_ne!(*actual, receipt.crc32c);
            assert_eq!(*source_of_expected, ChecksumSource::Stored);
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains(path.as_str()));
    let err = storage
        .download_verified(&path, receipt.crc32c, &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    // Ranges are not verified: they show the flipped byte.
    let range = storage
        .download_range(&path, 1234..1235, &cancel)
        .await
        .unwrap();
    assert_eq!(range.bytes[0], body[1234] ^ 0xff);
    assert_eq!(
        storage.metrics().errors(Op::Download, ErrorKind::Corrupt),
        2
    );
}

/// A call slower than the timeout times out on every attempt.
pub async fn timeout(backend: &TestBackend) {
    let (storage, faults) = backend.faulty_storage(|c| {
        c.timeout = Duration::from_millis(300);
        c.max_retries = 1;
    });
    let cancel = never();
    let path = key("slow/object");
    // Written with the patient storage: a loaded machine may need more than 300 ms.
    backend
        .storage()
        .upload(&path, Bytes::from_static(b"x"), &cancel)
        .await
        .unwrap();
    faults
        .set(FaultConfig {
            delay_ms: 5_000,
            ..FaultConfig::default()
        })
        .unwrap();
    let calls_before = faults.calls();
    let err = storage.download(&path, &cancel).await.unwrap_err();
    match &err {
        RemoteStorageError::Timeout {
            op,
            path: p,
            attempts,
            ..
        } => assert_eq!(
            (*op, p.as_str(), *attempts),
            (Op::Download, "slow/object", 2)
        ),
        other => panic!("expected a timeout, got {other}"),
    }
    assert_eq!(
        faults.calls() - calls_before,
        2,
        "first attempt and one retry"
    );
    let m = storage.metrics();
    assert_eq!(m.errors(Op::Download, ErrorKind::Timeout), 1);
    assert_eq!(m.retries(Op::Download), 1);
    // Back to normal once the delay is gone (the same fault handle, on a
    // storage whose timeout a loaded machine always meets).
    faults.clear();
    let patient = GenericRemoteStorage::builder(&backend.config())
        .faults(faults.clone())
        .build()
        .unwrap();
    assert_eq!(
        &patient.download(&path, &cancel).await.unwrap().bytes[..],
        b"x"
    );
}

/// Under 30% injected failures every operation still succeeds, each failure
/// costing exactly one retry.
pub async fn retries_under_failures(backend: &TestBackend) {
    let (storage, faults) = backend.faulty_storage(|c| c.max_retries = 12);
    faults
        .set(FaultConfig {
            fail_percent: 30,
            seed: Some(3),
            ..FaultConfig::default()
        })
        .unwrap();
    let cancel = never();
    let keys: Vec<RemotePath> = (0..20).map(|i| key(&format!("flaky/{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        let body = random_bytes(100 + i, i as u64);
        let receipt = storage.upload(k, body.clone(), &cancel).await.unwrap();
        let read = storage
            .download_verified(k, receipt.crc32c, &cancel)
            .await
            .unwrap();
        assert_eq!(read.bytes, body);
        assert_eq!(
            storage
                .download_range(k, 0..10, &cancel)
                .await
                .unwrap()
                .bytes,
            body.slice(0..10)
        );
        assert!(storage.exists(k, &cancel).await.unwrap());
    }
    let listed = storage
        .list(Some(&key("flaky")), ListMode::Recursive, &cancel)
        .await
        .unwrap();
    assert_eq!(listed.objects.len(), keys.len());
    storage
        .copy(&keys[0], &key("flaky-copy/0"), &cancel)
        .await
        .unwrap();
    storage.delete_objects(&keys, &cancel).await.unwrap();

    let m = storage.metrics();
    let retries: u64 = Op::ALL.iter().map(|op| m.retries(*op)).sum();
    let injected = faults.injected_failures();
    assert!(
        injected > 10,
        "only {injected} failures injected in {} calls",
        faults.calls()
    );
    assert_eq!(retries, injected, "each injected failure is retried once");
    for op in Op::ALL {
        assert_eq!(m.operations(op, "err"), 0, "{op} failed");
    }
}

/// Unreachable storage fails transiently, then recovers when the window ends.
pub async fn unreachable_then_recovers(backend: &TestBackend) {
    let (storage, faults) = backend.faulty_storage(|c| {
        c.max_retries = 2;
        c.retry_base_delay = Duration::from_millis(1);
        c.retry_max_delay = Duration::from_millis(2);
    });
    let cancel = never();
    let path = key("unreachable/object");
    faults
        .set(FaultConfig {
            unreachable_for_ms: 60_000,
            ..FaultConfig::default()
        })
        .unwrap();
    let err = storage
        .upload(&path, Bytes::from_static(b"x"), &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    // A short window: patient retries outlast it.
    let (patient, faults) = backend.faulty_storage(|c| {
        c.max_retries = 100;
        c.retry_base_delay = Duration::from_millis(20);
        c.retry_max_delay = Duration::from_millis(50);
    });
    faults
        .set(FaultConfig {
            unreachable_for_ms: 300,
            ..FaultConfig::default()
        })
        .unwrap();
    patient
        .upload(&path, Bytes::from_static(b"x"), &cancel)
        .await
        .unwrap();
    assert!(patient.metrics().retries(Op::Upload) > 0);
    assert_eq!(
        &patient.download(&path, &cancel).await.unwrap().bytes[..],
        b"x"
    );
}

/// Cancellation ends a call promptly: before it starts, during a slow
/// request, and during a backoff sleep.
pub async fn cancellation(backend: &TestBackend) {
    let (storage, faults) = backend.faulty_storage(|c| {
        c.timeout = Duration::from_secs(120);
        c.retry_base_delay = Duration::from_secs(60);
        c.retry_max_delay = Duration::from_secs(60);
    });
    let path = key("cancel/object");
    storage
        .upload(&path, Bytes::from_static(b"x"), &never())
        .await
        .unwrap();

    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let calls = faults.calls();
    let err = storage.download(&path, &cancelled).await.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(faults.calls(), calls, "no request after cancellation");

    for config in [
        // A request that would take a minute.
        FaultConfig {
            delay_ms: 60_000,
            ..FaultConfig::default()
        },
        // A failure followed by a minute of backoff.
        FaultConfig {
            unreachable_for_ms: 600_000,
            ..FaultConfig::default()
        },
    ] {
        faults.set(config.clone()).unwrap();
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let (result, ()) = tokio::join!(storage.download(&path, &cancel), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel.cancel();
        });
        let err = result.unwrap_err();
        match &err {
            RemoteStorageError::Cancelled { op, path: p } => {
                assert_eq!((*op, p.as_str()), (Op::Download, "cancel/object"))
            }
            other => panic!("{config:?}: expected cancelled, got {other}"),
        }
        // Far below the minute the call would otherwise take.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{config:?}: not prompt"
        );
    }
    assert_eq!(
        storage.metrics().errors(Op::Download, ErrorKind::Cancelled),
        3
    );
}

/// No more requests are in flight than `concurrency_limit`, and calls
/// waiting for a turn still complete.
pub async fn concurrency_limit(backend: &TestBackend) {
    let (storage, faults) = backend.faulty_storage(|c| {
        c.concurrency_limit = std::num::NonZeroUsize::new(2).expect("non-zero");
    });
    let cancel = never();
    let keys: Vec<RemotePath> = (0..6).map(|i| key(&format!("limited/{i}"))).collect();
    upload_all(&storage, &keys, Bytes::from_static(b"v")).await;
    assert!(faults.max_concurrent_calls() <= 2);
    faults
        .set(FaultConfig {
            delay_ms: 300,
            ..FaultConfig::default()
        })
        .unwrap();
    let infos = futures::future::try_join_all(keys.iter().map(|k| storage.head(k, &cancel)))
        .await
        .unwrap();
    assert_eq!(infos.len(), keys.len());
    assert_eq!(faults.max_concurrent_calls(), 2, "six heads, two at a time");
}
