//! Object storage for the page server: where layer files and `index_part`
//! files go to be durable (DESIGN.md section 4).
//!
//! [`GenericRemoteStorage`] wraps the `object_store` crate behind one set of
//! operations (upload, download, ranged download, list, batch delete, copy,
//! head) that behave the same on every backend:
//!
//! * backends: a local directory (the embedded default, [`BackendConfig::LocalFs`])
//!   and S3 or an S3-compatible server ([`BackendConfig::AwsS3`]), chosen by a
//!   validated [`RemoteStorageConfig`];
//! * keys are [`RemotePath`]s, validated relative paths;
//! * every request has a timeout, transient failures are retried with
//!   jittered exponential backoff, and every call takes a
//!   `CancellationToken` and returns [`RemoteStorageError::Cancelled`]
//!   promptly when it fires (even while waiting to retry);
//! * uploads store a CRC32C that downloads verify (see [`checksum`] for what
//!   is checked where);
//! * errors are one enum with coarse [`ErrorKind`]s, naming the object;
//! * Prometheus metrics per operation ([`metrics`]);
//! * with the `testing` feature, a fault-injecting wrapper settable at run
//!   time (the `fault` module).
//!
//! ```no_run
//! # async fn example() -> Result<(), remote_storage::RemoteStorageError> {
//! use remote_storage::{GenericRemoteStorage, RemotePath, RemoteStorageConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = RemoteStorageConfig::local_fs("/tmp/remote").expect("valid config");
//! let storage = GenericRemoteStorage::from_config(&config)?;
//! let cancel = CancellationToken::new();
//! let key = RemotePath::new("tenants/t/timelines/tl/index_part.json-00000001")?;
//! let receipt = storage.upload(&key, bytes::Bytes::from_static(b"{}"), &cancel).await?;
//! let read = storage.download_verified(&key, receipt.crc32c, &cancel).await?;
//! assert_eq!(&read.bytes[..], b"{}");
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod backend;
pub mod checksum;
mod config;
mod error;
#[cfg(feature = "testing")]
pub mod fault;
pub mod metrics;
mod path;
mod retry;
mod storage;

pub use checksum::ChecksumPlacement;
pub use config::{
    BackendConfig, ConfigError, RemoteStorageConfig, S3Config, DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_MAX_RETRIES, DEFAULT_RETRY_BASE_DELAY, DEFAULT_RETRY_MAX_DELAY, DEFAULT_TIMEOUT,
    MAX_RETRIES_LIMIT,
};
pub use error::{BoxError, ChecksumSource, ErrorKind, Op, RemoteStorageError};
pub use metrics::StorageMetrics;
pub use path::{InvalidPathError, RemotePath, MAX_PATH_LEN, RESERVED_PREFIX};
pub use storage::{
    Download, GenericRemoteStorage, ListMode, Listing, ObjectInfo, RangeDownload, StorageBuilder,
    UploadReceipt, MAX_DELETE_BATCH,
};
