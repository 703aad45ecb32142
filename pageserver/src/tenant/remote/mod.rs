//! Remote storage of timelines (DESIGN.md section 4, `docs/remote_storage.md`):
//!
//! * `index.rs`: `index_part.json` and the tenant manifest;
//! * `paths.rs`: the remote layout, with generation suffixes;
//! * `client.rs`: the per-timeline upload queue (layers, then the index,
//!   then deletions of what the index no longer names);
//! * `download.rs`: listing generations, downloading indexes and layers;
//! * `deletion_queue.rs`: the node's persisted deletion queue, which deletes
//!   only after the tenant's generation is validated;
//! * `heatmap.rs`: the tenant heatmap that secondary locations follow.
//!
//! [`RemoteContext`] is the node-wide part, shared by every tenant.

pub mod client;
pub mod deletion_queue;
pub mod download;
pub mod heatmap;
pub mod index;
pub mod paths;
#[cfg(all(test, feature = "testing"))]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use remote_storage::GenericRemoteStorage;

pub use client::RemoteTimelineClient;
pub use deletion_queue::DeletionQueue;

/// Consecutive failed remote operations (each after the storage's own
/// retries) that make `/readiness` report object storage as failing.
pub const FAILING_AFTER: u64 = 2;

/// Whether object storage answers: fed by every upload, download and
/// deletion; read by `/readiness`.
#[derive(Debug, Default)]
pub struct RemoteHealth {
    consecutive_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RemoteHealth {
    /// Records a successful remote operation.
    pub fn success(&self) {
        if self.consecutive_failures.swap(0, Ordering::AcqRel) >= FAILING_AFTER {
            tracing::info!("object storage answers again");
        }
        *self.last_error.lock().expect("health lock poisoned") = None;
    }

    /// Records a failed remote operation (already retried by the storage).
    pub fn failure(&self, error: &str) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        crate::metrics::REMOTE_OP_FAILURES.inc();
        *self.last_error.lock().expect("health lock poisoned") = Some(error.to_string());
        if n == FAILING_AFTER {
            tracing::warn!("object storage is failing ({n} operations in a row): {error}");
        }
    }

    /// `Some(reason)` while object storage is failing.
    pub fn failing(&self) -> Option<String> {
        let n = self.consecutive_failures.load(Ordering::Acquire);
        (n >= FAILING_AFTER).then(|| {
            let last = self
                .last_error
                .lock()
                .expect("health lock poisoned")
                .clone()
                .unwrap_or_default();
            format!("object storage failing: {n} operations in a row failed, last: {last}")
        })
    }
}

/// The node's object storage, its deletion queue and its health.
pub struct RemoteContext {
    /// The client.
    pub storage: GenericRemoteStorage,
    /// Injected faults (test builds), settable over HTTP.
    #[cfg(feature = "testing")]
    pub faults: remote_storage::fault::FaultHandle,
    /// Remote deletions, persisted and validated.
    pub deletion_queue: Arc<DeletionQueue>,
    /// Whether remote operations succeed.
    pub health: Arc<RemoteHealth>,
}

impl std::fmt::Debug for RemoteContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteContext")
            .field("storage", &self.storage)
            .finish()
    }
}

impl RemoteContext {
    /// Builds the client for `conf.remote_storage` and opens the deletion
    /// queue in the work directory (its worker starts with
    /// [`DeletionQueue::run`]).
    pub fn new(conf: &crate::config::PageServerConf) -> anyhow::Result<Arc<RemoteContext>> {
        #[cfg(feature = "testing")]
        let faults = remote_storage::fault::FaultHandle::default();
        #[cfg(feature = "testing")]
        if let Some(config) = &conf.remote_storage_faults {
            tracing::info!(?config, "remote storage faults set from the configuration");
            faults.set(config.clone())?;
        }
        #[cfg_attr(not(feature = "testing"), allow(unused_mut))]
        let mut builder = GenericRemoteStorage::builder(&conf.remote_storage);
        #[cfg(feature = "testing")]
        {
            builder = builder.faults(faults.clone());
        }
        let storage = builder.build()?;
        let health = Arc::new(RemoteHealth::default());
        let deletion_queue = Arc::new(DeletionQueue::open(
            conf.workdir.join(crate::config::DELETION_QUEUE_DIR),
            storage.clone(),
            health.clone(),
        )?);
        Ok(Arc::new(RemoteContext {
            storage,
            #[cfg(feature = "testing")]
            faults,
            deletion_queue,
            health,
        }))
    }
}

/// Exponential backoff for the queues' own retries (after the storage's).
pub(crate) fn backoff(attempt: u32) -> std::time::Duration {
    let ms = 200u64.saturating_mul(1 << attempt.min(6));
    std::time::Duration::from_millis(ms.min(10_000))
}

/// How this node holds a tenant: its generation and whether it is attached
/// as stale (then it never deletes remote objects). Shared by the tenant's
/// upload queues; persisted in `WORKDIR/tenants/T/location.json`.
#[derive(Debug)]
pub struct TenantAttachment {
    generation: std::sync::atomic::AtomicU32,
    stale: std::sync::atomic::AtomicBool,
}

/// The persisted form of a [`TenantAttachment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationFile {
    /// The generation.
    pub generation: utils::generation::Generation,
    /// Attached as stale.
    #[serde(default)]
    pub stale: bool,
}

/// The tenant's location file.
pub const LOCATION_FILE: &str = "location.json";

impl TenantAttachment {
    /// An attachment with `generation`.
    pub fn new(generation: utils::generation::Generation, stale: bool) -> TenantAttachment {
        TenantAttachment {
            generation: generation.0.into(),
            stale: stale.into(),
        }
    }

    /// The generation objects are written under.
    pub fn generation(&self) -> utils::generation::Generation {
        utils::generation::Generation(self.generation.load(Ordering::Acquire))
    }

    /// Whether remote deletions are forbidden.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Changes mode and generation (location_config).
    pub fn set(&self, generation: utils::generation::Generation, stale: bool) {
        self.generation.store(generation.0, Ordering::Release);
        self.stale.store(stale, Ordering::Release);
    }

    /// The persisted form.
    pub fn to_file(&self) -> LocationFile {
        LocationFile {
            generation: self.generation(),
            stale: self.is_stale(),
        }
    }

    /// Writes the location file into the tenant directory (blocking).
    pub fn write(&self, tenant_dir: &std::path::Path) -> std::io::Result<()> {
        let body = serde_json::to_vec(&self.to_file()).expect("serializes");
        utils::crashsafe::overwrite(&tenant_dir.join(LOCATION_FILE), &body)
    }

    /// Reads the location file; a tenant from before generations existed
    /// gets generation 1 (single-node mode).
    pub fn read(tenant_dir: &std::path::Path) -> Result<TenantAttachment, String> {
        let path = tenant_dir.join(LOCATION_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let f: LocationFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(TenantAttachment::new(f.generation, f.stale))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TenantAttachment::new(
                utils::generation::Generation::FIRST,
                false,
            )),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}
