//! The backends the suite runs on, and how to tamper with each behind the
//! storage's back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use remote_storage::fault::FaultHandle;
use remote_storage::{
    BackendConfig, GenericRemoteStorage, RemotePath, RemoteStorageConfig, S3Config, StorageMetrics,
};
use tempfile::TempDir;

use crate::moto::MotoServer;

const BUCKET: &str = "conformance";
const PREFIX_IN_BUCKET: &str = "deployment/ps";

/// How to modify a stored object without going through the storage.
enum Tamper {
    /// Edit the file under the local root.
    LocalFs(std::path::PathBuf),
    /// Overwrite through a raw S3 client (no checksum computed).
    S3(Arc<dyn ObjectStore>),
}

/// One backend under test. Keeps its server and directory alive.
pub struct TestBackend {
    config: RemoteStorageConfig,
    tamper: Tamper,
    _dir: Option<TempDir>,
    _moto: Option<MotoServer>,
}

/// Knobs for tests: quick retries, a timeout that tolerates a loaded machine.
fn test_knobs(config: &mut RemoteStorageConfig) {
    config.timeout = Duration::from_secs(20);
    config.max_retries = 3;
    config.retry_base_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(50);
}

impl TestBackend {
    /// A local directory in a fresh temporary directory.
    pub fn local_fs() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("remote");
        let mut config = RemoteStorageConfig::local_fs(&root).expect("valid config");
        test_knobs(&mut config);
        Self {
            config,
            tamper: Tamper::LocalFs(root),
            _dir: Some(dir),
            _moto: None,
        }
    }

    /// A bucket on a fresh moto server, with a prefix in the bucket.
    pub fn s3() -> Self {
        let moto = MotoServer::start().expect("starting moto_server");
        moto.create_bucket(BUCKET).expect("creating the bucket");
        let s3 = S3Config {
            bucket_name: BUCKET.into(),
            bucket_region: "us-east-1".into(),
            prefix_in_bucket: Some(PREFIX_IN_BUCKET.into()),
            endpoint: Some(moto.endpoint.clone()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            allow_http: true,
        };
        let mut config = RemoteStorageConfig::new(BackendConfig::AwsS3(s3)).expect("valid config");
        test_knobs(&mut config);
        let raw = AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&moto.endpoint)
            .with_allow_http(true)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("raw S3 client");
        Self {
            config,
            tamper: Tamper::S3(Arc::new(PrefixStore::new(raw, PREFIX_IN_BUCKET))),
            _dir: None,
            _moto: Some(moto),
        }
    }

    /// The backend's config (with the test knobs).
    pub fn config(&self) -> RemoteStorageConfig {
        self.config.clone()
    }

    /// A storage on this backend with its own metrics and no faults.
    pub fn storage(&self) -> GenericRemoteStorage {
        GenericRemoteStorage::builder(&self.config)
            .metrics(StorageMetrics::new())
            .build()
            .expect("storage from a valid config")
    }

    /// A storage on this backend with `tweak`ed knobs, its own metrics and
    /// faults controlled by the returned handle.
    pub fn faulty_storage(
        &self,
        tweak: impl FnOnce(&mut RemoteStorageConfig),
    ) -> (GenericRemoteStorage, FaultHandle) {
        let mut config = self.config.clone();
        tweak(&mut config);
        config.validate().expect("tweaked config is valid");
        let handle = FaultHandle::new();
        let storage = GenericRemoteStorage::builder(&config)
            .metrics(StorageMetrics::new())
            .faults(handle.clone())
            .build()
            .expect("storage from a valid config");
        (storage, handle)
    }

    /// Flips the bits of the byte at `offset` of the stored object, keeping
    /// its stored checksum: what bit rot or a buggy writer would leave.
    pub async fn corrupt(&self, path: &RemotePath, offset: usize) -> anyhow::Result<()> {
        match &self.tamper {
            Tamper::LocalFs(root) => {
                let file = root.join(path.as_str());
                let mut bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
                bytes[offset] ^= 0xff;
                std::fs::write(&file, bytes)?;
            }
            Tamper::S3(raw) => {
                let location = object_store::path::Path::parse(path.as_str())?;
                let current = raw.get(&location).await?;
                let attributes = current.attributes.clone();
                let mut bytes = current.bytes().await?.to_vec();
                bytes[offset] ^= 0xff;
                // Same metadata (so the old x-amz-meta-crc32c), new body.
                let opts = PutOptions {
                    attributes,
                    ..PutOptions::default()
                };
                raw.put_opts(&location, PutPayload::from(bytes), opts)
                    .await?;
            }
        }
        Ok(())
    }

    /// The checksum metadata as S3 stores it, read with a raw client
    /// (`None` on the local filesystem, which has no metadata).
    pub async fn raw_checksum_metadata(&self, path: &RemotePath) -> anyhow::Result<Option<String>> {
        match &self.tamper {
            Tamper::LocalFs(_) => Ok(None),
            Tamper::S3(raw) => {
                let location = object_store::path::Path::parse(path.as_str())?;
                let current = raw.get(&location).await?;
                Ok(current
                    .attributes
                    .get(&object_store::Attribute::Metadata("crc32c".into()))
                    .map(|v| v.to_string()))
            }
        }
    }

    /// The local root, for the filesystem-only checks.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match &self.tamper {
            Tamper::LocalFs(root) => Some(root),
            Tamper::S3(_) => None,
        }
    }
}
