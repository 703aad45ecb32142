//! [`GenericRemoteStorage`]: the operations the page server uses, the same on
//! every backend.
//!
//! Each public operation is one metrics observation; underneath, each request
//! goes through [`crate::retry::with_retries`] (permit, timeout, retries,
//! cancellation). Objects are written whole and are meant to be immutable
//! (keys carry a generation); see [`crate::checksum`] for what is verified.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutOptions,
    PutPayload,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::backend;
use crate::checksum::{self, ChecksumPlacement};
use crate::config::RemoteStorageConfig;
use crate::error::{Op, RemoteStorageError};
use crate::metrics::StorageMetrics;
use crate::path::RemotePath;
use crate::retry::{with_retries, RetryPolicy};

/// Most keys deleted by one request (the S3 `DeleteObjects` limit). Larger
/// batches are split, each part with its own timeout and retries.
pub const MAX_DELETE_BATCH: usize = 1000;

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReceipt {
    /// The object written.
    pub path: RemotePath,
    /// Its size in bytes.
    pub size: u64,
    /// CRC32C of the body, also stored with the object; record it (e.g. in
    /// `index_part`) to verify later downloads end to end.
    pub crc32c: u32,
    /// The backend's entity tag of the new object, when it reports one.
    pub etag: Option<String>,
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub path: RemotePath,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag (changes when the object is rewritten), when the backend has one.
    pub etag: Option<String>,
    /// When the object was last written.
    pub last_modified: SystemTime,
}

/// A whole downloaded object.
#[derive(Debug, Clone)]
pub struct Download {
    /// The body.
    pub bytes: Bytes,
    /// The object's metadata at the time of the read.
    pub info: ObjectInfo,
    /// CRC32C of `bytes`.
    pub crc32c: u32,
    /// The checksum stored with the object, which `bytes` matched; `None` when
    /// the object has no stored checksum (written by another tool, or by a
    /// local upload interrupted before its side file), so only a caller's
    /// checksum could verify it.
    pub stored_crc32c: Option<u32>,
}

/// Part of an object. Not checksum-verified: checksums cover whole objects.
#[derive(Debug, Clone)]
pub struct RangeDownload {
    /// The bytes of `range`.
    pub bytes: Bytes,
    /// The range read (always the one requested).
    pub range: Range<u64>,
    /// The whole object's metadata.
    pub info: ObjectInfo,
}

/// How [`GenericRemoteStorage::list`] treats deeper keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// Every key under the prefix, at any depth; no common prefixes.
    Recursive,
    /// Keys directly under the prefix, and the "folders" (common prefixes, up
    /// to the next `/`) that hold deeper keys.
    Delimited,
}

/// Result of [`GenericRemoteStorage::list`], sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects found.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes ([`ListMode::Delimited`] only).
    pub prefixes: Vec<RemotePath>,
}

impl Listing {
    /// The keys of [`Self::objects`].
    pub fn keys(&self) -> Vec<RemotePath> {
        self.objects.iter().map(|o| o.path.clone()).collect()
    }
}

/// Builds a [`GenericRemoteStorage`] with optional parts; start with
/// [`GenericRemoteStorage::builder`].
#[derive(Debug)]
pub struct StorageBuilder {
    config: RemoteStorageConfig,
    metrics: Option<StorageMetrics>,
    #[cfg(feature = "testing")]
    faults: Option<crate::fault::FaultHandle>,
}

impl StorageBuilder {
    /// Records into `metrics` instead of [`StorageMetrics::global`].
    pub fn metrics(mut self, metrics: StorageMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Puts a fault-injecting wrapper, controlled by `handle`, between the
    /// storage and its backend.
    #[cfg(feature = "testing")]
    pub fn faults(mut self, handle: crate::fault::FaultHandle) -> Self {
        self.faults = Some(handle);
        self
    }

    /// Builds the client. Makes no network request; creates the local
    /// directory of a `local_fs` backend.
    pub fn build(self) -> Result<GenericRemoteStorage, RemoteStorageError> {
        let backend = backend::build(&self.config)?;
        #[cfg_attr(not(feature = "testing"), allow(unused_mut))]
        let mut store = backend.store;
        #[cfg(feature = "testing")]
        if let Some(handle) = self.faults {
            store = Arc::new(crate::fault::FaultInjectingStore::new(store, handle));
        }
        Ok(GenericRemoteStorage {
            inner: Arc::new(Inner {
                store,
                placement: backend.placement,
                description: backend.description,
                policy: RetryPolicy::from_config(&self.config),
                permits: Semaphore::new(self.config.concurrency_limit.get()),
                metrics: self
                    .metrics
                    .unwrap_or_else(|| StorageMetrics::global().clone()),
            }),
        })
    }
}

/// Remote object storage (local filesystem or S3) with timeouts, retries,
/// cancellation, checksums and metrics. Cloning is cheap and shares the client,
/// its concurrency limit and its metrics.
#[derive(Clone)]
pub struct GenericRemoteStorage {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    placement: ChecksumPlacement,
    description: String,
    policy: RetryPolicy,
    permits: Semaphore,
    metrics: StorageMetrics,
}

impl std::fmt::Debug for GenericRemoteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GenericRemoteStorage({})", self.inner.description)
    }
}

impl GenericRemoteStorage {
    /// The storage `config` describes, recording into the global metrics.
    pub fn from_config(config: &RemoteStorageConfig) -> Result<Self, RemoteStorageError> {
        Self::builder(config).build()
    }

    /// A builder for the storage `config` describes.
    pub fn builder(config: &RemoteStorageConfig) -> StorageBuilder {
        StorageBuilder {
            config: config.clone(),
            metrics: None,
            #[cfg(feature = "testing")]
            faults: None,
        }
    }

    /// Where this backend keeps checksums.
    pub fn checksum_placement(&self) -> ChecksumPlacement {
        self.inner.placement
    }

    /// The metrics this storage records into.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.inner.metrics
    }

    /// Writes `body` to `path` (replacing any object there) with its CRC32C.
    ///
    /// The body goes in one request (S3 accepts up to 5 GiB in one PUT; our
    /// layer files are far smaller), so a retry resends it whole.
    pub async fn upload(
        &self,
        path: &RemotePath,
        body: Bytes,
        cancel: &CancellationToken,
    ) -> Result<UploadReceipt, RemoteStorageError> {
        let size = body.len() as u64;
        let crc = checksum::crc32c(&body);
        let receipt = self
            .instrumented(Op::Upload, async {
                let location = path.to_object_path();
                let payload = PutPayload::from_bytes(body);
                let etag = match self.inner.placement {
                    ChecksumPlacement::ObjectMetadata => {
                        let attributes = checksum::metadata_attributes(crc);
                        self.put(path, &location, &payload, attributes, cancel)
                            .await?
                    }
                    ChecksumPlacement::SideFile => {
                        // Old side file first, side file last: an interrupted
                        // upload leaves no checksum, never a wrong one.
                        let side = checksum::side_file(path);
                        self.delete_ignoring_missing(Op::Upload, path, &side, cancel)
                            .await?;
                        let etag = self
                            .put(path, &location, &payload, Default::default(), cancel)
                            .await?;
                        let crc_text = PutPayload::from(checksum::encode(crc));
                        self.put(path, &side, &crc_text, Default::default(), cancel)
                            .await?;
                        etag
                    }
                };
                Ok(UploadReceipt {
                    path: path.clone(),
                    size,
                    crc32c: crc,
                    etag,
                })
            })
            .await?;
        self.inner.metrics.uploaded(size);
        Ok(receipt)
    }

    /// Reads the whole object at `path`, verifying it against its stored
    /// checksum when it has one.
    pub async fn download(
        &self,
        path: &RemotePath,
        cancel: &CancellationToken,
    ) -> Result<Download, RemoteStorageError> {
        self.download_checked(path, None, cancel).await
    }

    /// Like [`Self::download`], and also requires the bytes to have the CRC32C
    /// `expected_crc32c` (recorded by the caller from an [`UploadReceipt`]).
    pub async fn download_verified(
        &self,
        path: &RemotePath,
        expected_crc32c: u32,
        cancel: &CancellationToken,
    ) -> Result<Download, RemoteStorageError> {
        self.download_checked(path, Some(expected_crc32c), cancel)
            .await
    }

    async fn download_checked(
        &self,
        path: &RemotePath,
        expected: Option<u32>,
        cancel: &CancellationToken,
    ) -> Result<Download, RemoteStorageError> {
        let download = self
            .instrumented(Op::Download, async {
                let location = path.to_object_path();
                let (bytes, meta, attributes) = self
                    .retry(Op::Download, path.as_str(), cancel, || async {
                        let result = self
                            .inner
                            .store
                            .get_opts(&location, GetOptions::default())
                            .await?;
                        let (meta, attributes) = (result.meta.clone(), result.attributes.clone());
                        Ok((result.bytes().await?, meta, attributes))
                    })
                    .await?;
                let stored = match self.inner.placement {
                    ChecksumPlacement::ObjectMetadata => {
                        match checksum::from_attributes(&attributes) {
                            None => None,
                            Some(Ok(crc)) => Some(crc),
                            Some(Err(raw)) => return Err(bad_stored_checksum(path, &raw)),
                        }
                    }
                    ChecksumPlacement::SideFile => self.read_side_file(path, cancel).await?,
                };
                let crc = checksum::crc32c(&bytes);
                checksum::verify(path, crc, stored, expected)?;
                Ok(Download {
                    bytes,
                    info: object_info(path.clone(), &meta),
                    crc32c: crc,
                    stored_crc32c: stored,
                })
            })
            .await?;
        self.inner.metrics.downloaded(download.bytes.len() as u64);
        Ok(download)
    }

    /// Reads bytes `range` of the object at `path`. The range must be
    /// non-empty and lie within the object; it is not checksum-verified.
    pub async fn download_range(
        &self,
        path: &RemotePath,
        range: Range<u64>,
        cancel: &CancellationToken,
    ) -> Result<RangeDownload, RemoteStorageError> {
        let download = self
            .instrumented(Op::DownloadRange, async {
                if range.start >= range.end {
                    return Err(RemoteStorageError::InvalidRange {
                        path: path.to_string(),
                        range: range.clone(),
                    });
                }
                let location = path.to_object_path();
                let read = self
                    .retry(Op::DownloadRange, path.as_str(), cancel, || async {
                        let options = GetOptions {
                            range: Some(GetRange::Bounded(range.clone())),
                            ..GetOptions::default()
                        };
                        let result = self.inner.store.get_opts(&location, options).await?;
                        let (meta, got) = (result.meta.clone(), result.range.clone());
                        Ok((result.bytes().await?, got, meta))
                    })
                    .await;
                match read {
                    Ok((bytes, got, meta)) => {
                        // Backends clamp a range that ends past the object.
                        if got != range || bytes.len() as u64 != range.end - range.start {
                            return Err(out_of_bounds(path, &range, meta.size));
                        }
                        Ok(RangeDownload {
                            bytes,
                            range: range.clone(),
                            info: object_info(path.clone(), &meta),
                        })
                    }
                    // A range starting past the end is refused in
                    // backend-specific ways (416, "invalid range"): look at
                    // the size to give the one clear error.
                    Err(err @ RemoteStorageError::Permanent { .. }) => {
                        let info = self.head_inner(Op::DownloadRange, path, cancel).await?;
                        if range.end > info.size {
                            Err(out_of_bounds(path, &range, info.size))
                        } else {
                            Err(err)
                        }
                    }
                    Err(err) => Err(err),
                }
            })
            .await?;
        self.inner.metrics.downloaded(download.bytes.len() as u64);
        Ok(download)
    }

    /// Metadata of the object at `path`; [`RemoteStorageError::NotFound`] when absent.
    pub async fn head(
        &self,
        path: &RemotePath,
        cancel: &CancellationToken,
    ) -> Result<ObjectInfo, RemoteStorageError> {
        self.instrumented(Op::Head, self.head_inner(Op::Head, path, cancel))
            .await
    }

    /// Whether an object exists at `path` (a `head` where "not found" is `false`).
    pub async fn exists(
        &self,
        path: &RemotePath,
        cancel: &CancellationToken,
    ) -> Result<bool, RemoteStorageError> {
        self.instrumented(Op::Head, async {
            match self.head_inner(Op::Head, path, cancel).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn head_inner(
        &self,
        op: Op,
        path: &RemotePath,
        cancel: &CancellationToken,
    ) -> Result<ObjectInfo, RemoteStorageError> {
        let location = path.to_object_path();
        let meta = self
            .retry(op, path.as_str(), cancel, || {
                self.inner.store.head(&location)
            })
            .await?;
        Ok(object_info(path.clone(), &meta))
    }

    /// Lists the objects under `prefix` (whole segments: `a/b` holds `a/b/c`
    /// but not `a/bc`), or under the root when `None`. Pages of the backend
    /// are followed to the end; the result is sorted by key.
    pub async fn list(
        &self,
        prefix: Option<&RemotePath>,
        mode: ListMode,
        cancel: &CancellationToken,
    ) -> Result<Listing, RemoteStorageError> {
        let target = prefix.map_or("the storage root", RemotePath::as_str);
        self.instrumented(Op::List, async {
            let location = prefix.map(RemotePath::to_object_path);
            let store = &self.inner.store;
            let (objects, prefixes) = match mode {
                ListMode::Recursive => {
                    let objects = self
                        .retry(Op::List, target, cancel, || {
                            store.list(location.as_ref()).try_collect::<Vec<_>>()
                        })
                        .await?;
                    (objects, Vec::new())
                }
                ListMode::Delimited => {
                    let result = self
                        .retry(Op::List, target, cancel, || {
                            store.list_with_delimiter(location.as_ref())
                        })
                        .await?;
                    (result.objects, result.common_prefixes)
                }
            };
            let mut listing = Listing {
                objects: objects
                    .iter()
                    .filter_map(|meta| {
                        listed_path(&meta.location).map(|path| object_info(path, meta))
                    })
                    .collect(),
                prefixes: prefixes.iter().filter_map(listed_path).collect(),
            };
            listing.objects.sort_by(|a, b| a.path.cmp(&b.path));
            listing.prefixes.sort();
            Ok(listing)
        })
        .await
    }

    /// Deletes the objects at `paths`; keys that do not exist are skipped, not
    /// errors. Batches over [`MAX_DELETE_BATCH`] keys are split.
    pub async fn delete_objects(
        &self,
        paths: &[RemotePath],
        cancel: &CancellationToken,
    ) -> Result<(), RemoteStorageError> {
        self.instrumented(Op::Delete, async {
            for batch in paths.chunks(MAX_DELETE_BATCH) {
                let mut locations: Vec<Path> =
                    batch.iter().map(RemotePath::to_object_path).collect();
                if self.inner.placement == ChecksumPlacement::SideFile {
                    // Objects before side files: an interrupted delete leaves
                    // objects without checksums, never checksums of nothing
                    // that a later upload could be checked against.
                    locations.extend(batch.iter().map(checksum::side_file));
                }
                let target = match batch {
                    [only] => only.to_string(),
                    [first, ..] => format!("{} objects from {first}", batch.len()),
                    [] => unreachable!("chunks are never empty"),
                };
                let locations = &locations;
                self.retry(Op::Delete, &target, cancel, move || async move {
                    let keys = futures::stream::iter(locations.clone().into_iter().map(Ok));
                    let mut results = self.inner.store.delete_stream(keys.boxed());
                    while let Some(result) = results.next().await {
                        match result {
                            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Copies the object at `from` to `to` (replacing any object there),
    /// with its stored checksum. [`RemoteStorageError::NotFound`] names `from`
    /// when it does not exist.
    pub async fn copy(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        cancel: &CancellationToken,
    ) -> Result<(), RemoteStorageError> {
        let target = format!("{from} to {to}");
        self.instrumented(Op::Copy, async {
            let (src, dst) = (from.to_object_path(), to.to_object_path());
            let copy_object = self.retry(Op::Copy, &target, cancel, || {
                self.inner
                    .store
                    .copy_opts(&src, &dst, CopyOptions::default())
            });
            match self.inner.placement {
                ChecksumPlacement::ObjectMetadata => copy_object.await,
                ChecksumPlacement::SideFile => {
                    let (src_side, dst_side) = (checksum::side_file(from), checksum::side_file(to));
                    self.delete_ignoring_missing(Op::Copy, to, &dst_side, cancel)
                        .await?;
                    copy_object.await?;
                    self.retry(Op::Copy, &target, cancel, || async {
                        match self
                            .inner
                            .store
                            .copy_opts(&src_side, &dst_side, CopyOptions::default())
                            .await
                        {
                            Err(object_store::Error::NotFound { .. }) => Ok(()),
                            other => other,
                        }
                    })
                    .await
                }
            }
            .map_err(|e| match e {
                RemoteStorageError::NotFound { .. } => RemoteStorageError::NotFound {
                    path: from.to_string(),
                },
                other => other,
            })
        })
        .await
    }

    /// One PUT with retries; returns the new object's entity tag.
    async fn put(
        &self,
        path: &RemotePath,
        location: &Path,
        payload: &PutPayload,
        attributes: object_store::Attributes,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, RemoteStorageError> {
        let result = self
            .retry(Op::Upload, path.as_str(), cancel, || {
                let opts = PutOptions {
                    attributes: attributes.clone(),
                    ..PutOptions::default()
                };
                self.inner.store.put_opts(location, payload.clone(), opts)
            })
            .await?;
        Ok(result.e_tag)
    }

    async fn delete_ignoring_missing(
        &self,
        op: Op,
        path: &RemotePath,
        location: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), RemoteStorageError> {
        self.retry(op, path.as_str(), cancel, || async {
            match self.inner.store.delete(location).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        })
        .await
    }

    /// The checksum in the side file of `path`, if there is one.
    async fn read_side_file(
        &self,
        path: &RemotePath,
        cancel: &CancellationToken,
    ) -> Result<Option<u32>, RemoteStorageError> {
        let side = checksum::side_file(path);
        let text = self
            .retry(Op::Download, path.as_str(), cancel, || async {
                match self.inner.store.get(&side).await {
                    Ok(result) => Ok(Some(result.bytes().await?)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        match text {
            None => Ok(None),
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                checksum::decode(&text)
                    .map(Some)
                    .ok_or_else(|| bad_stored_checksum(path, &text))
            }
        }
    }

    async fn retry<T, F, Fut>(
        &self,
        op: Op,
        target: &str,
        cancel: &CancellationToken,
        attempt: F,
    ) -> Result<T, RemoteStorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        with_retries(
            op,
            target,
            &self.inner.policy,
            &self.inner.permits,
            &self.inner.metrics,
            cancel,
            attempt,
        )
        .await
    }

    /// Runs one public operation, recording its outcome and latency.
    async fn instrumented<T>(
        &self,
        op: Op,
        operation: impl std::future::Future<Output = Result<T, RemoteStorageError>>,
    ) -> Result<T, RemoteStorageError> {
        let started = Instant::now();
        let result = operation.await;
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.kind());
        self.inner.metrics.observe(op, started.elapsed(), outcome);
        result
    }
}

fn object_info(path: RemotePath, meta: &ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        path,
        size: meta.size,
        etag: meta.e_tag.clone(),
        last_modified: meta.last_modified.into(),
    }
}

/// A listed key as a [`RemotePath`]; `None` for our own side files and for
/// keys we could not have written (reported, since someone else writes there).
fn listed_path(location: &Path) -> Option<RemotePath> {
    if checksum::is_reserved(location) {
        return None;
    }
    match RemotePath::from_object_path(location) {
        Ok(path) => Some(path),
        Err(e) => {
            tracing::warn!("skipping a listed key this storage cannot address: {e}");
            None
        }
    }
}

fn out_of_bounds(path: &RemotePath, range: &Range<u64>, size: u64) -> RemoteStorageError {
    RemoteStorageError::RangeOutOfBounds {
        path: path.to_string(),
        range: range.clone(),
        size,
    }
}

fn bad_stored_checksum(path: &RemotePath, raw: &str) -> RemoteStorageError {
    RemoteStorageError::Permanent {
        op: Op::Download,
        path: path.to_string(),
        source: format!(
            "the stored checksum {raw:?} is not 8 hex digits; the object's metadata is corrupt"
        )
        .into(),
    }
}
