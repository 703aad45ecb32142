//! Conformance tests of `remote_storage`: one suite (`suite.rs`), run on the
//! local filesystem (a temporary directory) and on a real S3-compatible
//! server (`moto_server` on loopback, started per test; see `moto.rs`).
//!
//! The S3 tests fail, never skip, when moto is missing; `scripts/test.sh`
//! installs it into the repository's `.venv`.

mod backends;
mod moto;
mod suite;

/// One `#[tokio::test]` per suite function, on the backend `$make` returns.
macro_rules! conformance_tests {
    ($make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $make;
                crate::suite::$case(&backend).await;
            }
        )+
    };
}

macro_rules! all_conformance_tests {
    ($make:expr) => {
        conformance_tests!($make;
            round_trip,
            range_reads,
            list_prefix_and_delimiter,
            pagination,
            delete_batch_with_missing_keys,
            copy,
            not_found,
            path_validation,
            checksum_detects_corruption,
            timeout,
            retries_under_failures,
            unreachable_then_recovers,
            cancellation,
            concurrency_limit,
        );
    };
}

mod local_fs {
    use bytes::Bytes;
    use remote_storage::{checksum, ListMode, RemotePath};
    use tokio_util::sync::CancellationToken;

    use crate::backends::TestBackend;

    all_conformance_tests!(TestBackend::local_fs());

    /// Checksums live in side files that follow uploads and deletes, and a
    /// missing side file means "unverified", not an error.
    #[tokio::test]
    async fn side_files_follow_objects() {
        let backend = TestBackend::local_fs();
        let storage = backend.storage();
        let root = backend.local_root().expect("local backend").to_path_buf();
        let cancel = CancellationToken::new();
        let key = RemotePath::new("t/layer").unwrap();
        let receipt = storage
            .upload(&key, Bytes::from_static(b"layer bytes"), &cancel)
            .await
            .unwrap();
        let side = root.join(".crc32c/t/layer");
        assert_eq!(
            std::fs::read_to_string(&side).unwrap(),
            format!("{:08x}", receipt.crc32c)
        );
        assert_eq!(receipt.crc32c, checksum::crc32c(b"layer bytes"));

        // An object without a side file (an interrupted upload, or written by
        // another tool) downloads unverified.
        std::fs::remove_file(&side).unwrap();
        let read = storage.download(&key, &cancel).await.unwrap();
        assert_eq!(read.stored_crc32c, None);
        // The caller's checksum still catches corruption.
        std::fs::write(root.join("t/layer"), b"layer bytez").unwrap();
        let err = storage
            .download_verified(&key, receipt.crc32c, &cancel)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), remote_storage::ErrorKind::Corrupt);

        // A garbled side file is reported, not trusted.
        std::fs::write(&side, b"not hex!").unwrap();
        let err = storage.download(&key, &cancel).await.unwrap_err();
        assert!(err.to_string().contains("not 8 hex digits"), "{err}");

        storage
            .delete_objects(std::slice::from_ref(&key), &cancel)
            .await
            .unwrap();
        assert!(!side.exists(), "side file deleted with its object");
        assert!(!root.join("t/layer").exists());
        let listing = storage
            .list(None, ListMode::Recursive, &cancel)
            .await
            .unwrap();
        assert!(listing.objects.is_empty());
    }
}

mod s3 {
    use crate::backends::TestBackend;

    all_conformance_tests!(TestBackend::s3());

    /// A bucket that does not exist is a clear, permanent error, not retried.
    #[tokio::test]
    async fn missing_bucket_is_permanent() {
        let backend = TestBackend::s3();
        let mut config = backend.config();
        if let remote_storage::BackendConfig::AwsS3(s3) = &mut config.backend {
            s3.bucket_name = "no-such-bucket".into();
        }
        let storage = remote_storage::GenericRemoteStorage::builder(&config)
            .metrics(remote_storage::StorageMetrics::new())
            .build()
            .unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let key = remote_storage::RemotePath::new("k").unwrap();
        let err = storage
            .upload(&key, bytes::Bytes::from_static(b"x"), &cancel)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), remote_storage::ErrorKind::Permanent, "{err}");
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
        assert_eq!(storage.metrics().retries(remote_storage::Op::Upload), 0);
    }
}
