//! The tenant manager: the map of tenants on this node, their creation,
//! loading at start-up, deletion and shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use pageserver_api::models::TenantState;
use pageserver_api::tenant_config::TenantConfig;
use tokio_util::sync::CancellationToken;
use utils::crashsafe;
use utils::id::TenantId;

use super::errors::TenantError;
use super::remote::{self, RemoteContext, TenantAttachment};
use super::{blocking, Tenant};

mod attach;
mod secondary;
use super::secondary::SecondaryTenant;
use crate::config::PageServerConf;
use crate::metrics;
pub use attach::DETACH_UPLOAD_TIMEOUT;

/// File written into a tenant directory before its deletion starts; a
/// start-up that finds it finishes the deletion.
pub const DELETE_MARKER: &str = "deleted";

/// File in a tenant directory while an attach builds its timelines; a
/// start-up that finds it (the attach was cut short by a crash, some
/// timelines may be missing) attaches the tenant again from remote storage.
pub const ATTACH_MARKER: &str = "attaching";

enum TenantSlot {
    Attached(Arc<Tenant>),
    /// A secondary location: a warm cache, no timelines.
    Secondary(Arc<SecondaryTenant>),
    /// Being created or deleted: other operations on the id wait their turn.
    InProgress,
}

/// Owns every tenant of the node.
pub struct TenantManager {
    conf: Arc<PageServerConf>,
    remote: Arc<RemoteContext>,
    tenants: RwLock<BTreeMap<TenantId, TenantSlot>>,
    cancel: CancellationToken,
}

impl TenantManager {
    /// An empty manager; `cancel` is the node's shutdown token.
    pub fn new(
        conf: Arc<PageServerConf>,
        remote: Arc<RemoteContext>,
        cancel: CancellationToken,
    ) -> Self {
        TenantManager {
            conf,
            remote,
            tenants: RwLock::new(BTreeMap::new()),
            cancel,
        }
    }

    /// Finds the tenants on disk, removes leftovers of interrupted creates and
    /// deletes, and registers each tenant in Loading state. Returns them for
    /// [`TenantManager::load_tenants`].
    pub fn discover_blocking(&self) -> anyhow::Result<Vec<Arc<Tenant>>> {
        let dir = self.conf.tenants_path();
        crashsafe::create_dir_all(&dir)?;
        for removed in crashsafe::remove_temporaries(&dir)? {
            tracing::info!("removed unfinished tenant directory {}", removed.display());
        }
        let mut found = Vec::new();
        let mut map = self.tenants.write().expect("tenant map lock poisoned");
        for (tenant_id, _) in tenant_dirs(&dir)? {
            // The generation is read from the tenant's location file by the load.
            let tenant = Arc::new(Tenant::new(
                self.conf.clone(),
                tenant_id,
                TenantState::Loading,
                TenantConfig::default(),
                self.remote.clone(),
                Arc::new(TenantAttachment::new(
                    utils::generation::Generation::FIRST,
                    false,
                )),
                &self.cancel,
            ));
            map.insert(tenant_id, TenantSlot::Attached(tenant.clone()));
            found.push(tenant);
        }
        drop(map);
        self.discover_secondaries_blocking()?;
        Ok(found)
    }

    /// Loads the discovered tenants from disk, each becoming Active or
    /// Broken, or staying Loading while it waits for object storage in the
    /// background (`load_remote.rs`).
    pub async fn load_tenants(&self, tenants: Vec<Arc<Tenant>>) {
        let count = tenants.len();
        for tenant in tenants {
            // A tenant deleted while waiting to load has closed its gate.
            let Ok(guard) = tenant.gate.enter() else {
                continue;
            };
            let t = tenant.clone();
            let marker = tenant.path.join(DELETE_MARKER);
            if blocking(move || marker.exists()).await.unwrap_or(false) {
                drop(guard);
                self.resume_delete(tenant).await;
                continue;
            }
            let marker = tenant.path.join(ATTACH_MARKER);
            if blocking(move || marker.exists()).await.unwrap_or(false) {
                drop(guard);
                self.resume_attach(tenant).await;
                continue;
            }
            match blocking(move || t.load_blocking()).await {
                Ok(true) => tenant.finish_load().await,
                Ok(false) => {}
                Err(e) => tenant.set_state(TenantState::Broken {
                    reason: e.to_string(),
                }),
            }
            drop(guard);
        }
        self.update_state_metrics();
        tracing::info!("loaded {count} tenants");
    }

    /// Attaches again a tenant whose attach a crash interrupted (its
    /// directory has the [`ATTACH_MARKER`]), with the generation and mode it
    /// had: the local leftovers are dropped and rebuilt from remote storage.
    async fn resume_attach(&self, tenant: Arc<Tenant>) {
        let tenant_id = tenant.tenant_id;
        let Some(attachment) = read_attachment_or_break(
            &tenant,
            "cannot finish its interrupted attach, detach and attach it again",
        )
        .await
        else {
            return;
        };
        tracing::info!(%tenant_id, "an attach was interrupted; attaching the tenant again");
        tenant.gate.close().await;
        self.release(tenant_id);
        let (generation, stale) = (attachment.generation(), attachment.is_stale());
        if let Err(e) = self.attach_tenant(tenant_id, Some(generation), stale).await {
            tracing::error!(%tenant_id, "cannot attach the tenant again after an interrupted attach: {e}; attach it by hand");
        }
    }

    /// Finishes a tenant deletion interrupted by a crash (its directory has
    /// the [`DELETE_MARKER`]): queues the remote deletion again (it is
    /// idempotent) and removes the local state.
    async fn resume_delete(&self, tenant: Arc<Tenant>) {
        let tenant_id = tenant.tenant_id;
        let path = tenant.path.clone();
        let Some(attachment) =
            read_attachment_or_break(&tenant, "cannot finish its deletion, retry the delete").await
        else {
            return;
        };
        let generation = attachment.generation();
        tracing::info!(%tenant_id, "finishing a tenant deletion interrupted by a restart");
        let queued = self
            .remote
            .deletion_queue
            .push_prefix(
                tenant_id,
                generation,
                remote::paths::tenant_prefix(&tenant_id),
            )
            .await;
        let result = match queued {
            Ok(()) => blocking(move || crashsafe::remove_dir_all(&path))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(e) => Err(format!("cannot queue the remote deletion: {e}")),
        };
        match result {
            Ok(()) => {
                tenant.set_state(TenantState::Stopping);
                tenant.cancel.cancel();
                self.release(tenant_id);
                tracing::info!(%tenant_id, "tenant deleted");
            }
            Err(e) => {
                let reason = format!("deletion failed: {e}; retry the delete");
                tracing::error!(%tenant_id, "{reason}");
                tenant.set_state(TenantState::Broken { reason });
            }
        }
    }

    /// Every timeline of every tenant.
    pub fn all_timelines(&self) -> Vec<Arc<super::timeline::Timeline>> {
        self.list()
            .iter()
            .flat_map(|t| t.list_timelines())
            .collect()
    }

    /// The node's object storage.
    pub fn remote(&self) -> &Arc<RemoteContext> {
        &self.remote
    }

    /// A tenant by id.
    pub fn get(&self, tenant_id: TenantId) -> Result<Arc<Tenant>, TenantError> {
        match self
            .tenants
            .read()
            .expect("tenant map lock poisoned")
            .get(&tenant_id)
        {
            Some(TenantSlot::Attached(t)) => Ok(t.clone()),
            Some(TenantSlot::Secondary(_)) => Err(TenantError::TenantIsSecondary(tenant_id)),
            Some(TenantSlot::InProgress) => Err(TenantError::TenantBusy(tenant_id)),
            None => Err(TenantError::TenantNotFound(tenant_id)),
        }
    }

    /// Every tenant, sorted by id (tenants being created or deleted are left out).
    pub fn list(&self) -> Vec<Arc<Tenant>> {
        self.tenants
            .read()
            .expect("tenant map lock poisoned")
            .values()
            .filter_map(|slot| match slot {
                TenantSlot::Attached(t) => Some(t.clone()),
                TenantSlot::Secondary(_) | TenantSlot::InProgress => None,
            })
            .collect()
    }

    /// Creates a tenant with `config` overrides, durably, and makes it Active.
    pub async fn create_tenant(
        &self,
        tenant_id: Option<TenantId>,
        config: TenantConfig,
    ) -> Result<Arc<Tenant>, TenantError> {
        config
            .validate()
            .map_err(|e| TenantError::BadRequest(e.to_string()))?;
        if self.cancel.is_cancelled() {
            return Err(TenantError::ShuttingDown);
        }
        let tenant_id = tenant_id.unwrap_or_else(TenantId::generate);
        {
            let mut map = self.tenants.write().expect("tenant map lock poisoned");
            match map.get(&tenant_id) {
                Some(TenantSlot::Attached(_)) => {
                    return Err(TenantError::TenantAlreadyExists(tenant_id))
                }
                Some(TenantSlot::Secondary(_)) => {
                    return Err(TenantError::TenantIsSecondary(tenant_id))
                }
                Some(TenantSlot::InProgress) => return Err(TenantError::TenantBusy(tenant_id)),
                None => {}
            }
            map.insert(tenant_id, TenantSlot::InProgress);
        }
        let conf = self.conf.clone();
        let to_write = config.clone();
        // Single-node mode: a new tenant gets generation 1 and keeps it.
        let attachment = Arc::new(TenantAttachment::new(
            utils::generation::Generation::FIRST,
            false,
        ));
        let att = attachment.clone();
        let result =
            blocking(move || Tenant::create_on_disk(&conf, tenant_id, &to_write, &att, false))
                .await;
        match result {
            Ok(Ok(())) => {
                let tenant = Arc::new(Tenant::new(
                    self.conf.clone(),
                    tenant_id,
                    TenantState::Active,
                    config,
                    self.remote.clone(),
                    attachment,
                    &self.cancel,
                ));
                if let Err(e) = tenant.upload_manifest().await {
                    tracing::warn!(%tenant_id, "cannot upload the tenant manifest yet: {e}; it is uploaded at the next start");
                }
                self.tenants
                    .write()
                    .expect("tenant map lock poisoned")
                    .insert(tenant_id, TenantSlot::Attached(tenant.clone()));
                tenant.activate();
                tracing::info!(%tenant_id, "tenant created");
                self.update_state_metrics();
                Ok(tenant)
            }
            Ok(Err(e)) => {
                self.release(tenant_id);
                Err(TenantError::Internal(anyhow::anyhow!(
                    "cannot create tenant {tenant_id}: {e}"
                )))
            }
            Err(e) => {
                self.release(tenant_id);
                Err(e)
            }
        }
    }

    /// Marks an attached tenant in progress (so no other exclusive operation
    /// starts on it) and returns it; busy or unknown tenants are errors.
    pub(crate) fn take_for_exclusive_work(
        &self,
        tenant_id: TenantId,
    ) -> Result<Arc<Tenant>, TenantError> {
        let mut map = self.tenants.write().expect("tenant map lock poisoned");
        let tenant = match map.get(&tenant_id) {
            Some(TenantSlot::Attached(t)) => t.clone(),
            Some(TenantSlot::Secondary(_)) => {
                return Err(TenantError::TenantIsSecondary(tenant_id))
            }
            Some(TenantSlot::InProgress) => return Err(TenantError::TenantBusy(tenant_id)),
            None => return Err(TenantError::TenantNotFound(tenant_id)),
        };
        map.insert(tenant_id, TenantSlot::InProgress);
        Ok(tenant)
    }

    /// Stops a tenant's tasks and removes it and all its timelines from disk.
    pub async fn delete_tenant(&self, tenant_id: TenantId) -> Result<(), TenantError> {
        let tenant = self.take_for_exclusive_work(tenant_id)?;
        tenant.shutdown().await;
        for timeline in tenant.list_timelines() {
            if let Ok(Some(source)) = super::bootstrap::read_wal_source(timeline.path()) {
                crate::walreceiver::drop_slot(&timeline, &source).await;
            }
        }
        // Remote objects go through the deletion queue, persisted before the
        // local state goes, so the deletion resumes after a crash.
        // The marker first: a crash from here on finishes the deletion at
        // the next start instead of bringing the tenant back without its
        // remote objects.
        let path = self.conf.tenant_path(&tenant_id);
        let marker = path.join(DELETE_MARKER);
        let queued = match blocking(move || crashsafe::overwrite(&marker, b"")).await {
            Ok(Ok(())) => self
                .remote
                .deletion_queue
                .push_prefix(
                    tenant_id,
                    tenant.attachment.generation(),
                    remote::paths::tenant_prefix(&tenant_id),
                )
                .await
                .map_err(|e| format!("cannot queue the remote deletion: {e}")),
            Ok(Err(e)) => Err(format!("cannot write the deletion marker: {e}")),
            Err(e) => Err(e.to_string()),
        };
        let result = match queued {
            Ok(()) => {
                blocking(move || {
                    fail::fail_point!("tenant-delete-before-local-remove");
                    crashsafe::remove_dir_all(&path)
                })
                .await
            }
            Err(e) => Ok(Err(std::io::Error::other(e))),
        };
        let mut map = self.tenants.write().expect("tenant map lock poisoned");
        let outcome = match result {
            Ok(Ok(())) => {
                map.remove(&tenant_id);
                for timeline in tenant.list_timelines() {
                    crate::metrics::remove_timeline_metrics(
                        &tenant_id.to_string(),
                        &timeline.timeline_id.to_string(),
                    );
                }
                tracing::info!(%tenant_id, "tenant deleted");
                Ok(())
            }
            Ok(Err(e)) => {
                let reason = format!("deletion failed: {e}; retry the delete");
                tenant.set_state(TenantState::Broken {
                    reason: reason.clone(),
                });
                map.insert(tenant_id, TenantSlot::Attached(tenant));
                Err(TenantError::Internal(anyhow::anyhow!(
                    "cannot delete tenant {tenant_id}: {reason}"
                )))
            }
            Err(e) => {
                map.insert(tenant_id, TenantSlot::Attached(tenant));
                Err(e)
            }
        };
        drop(map);
        self.update_state_metrics();
        outcome
    }

    /// Shuts every tenant down and waits for their tasks.
    pub async fn shutdown(&self) {
        let tenants = self.list();
        let mut set = tokio::task::JoinSet::new();
        for tenant in tenants {
            set.spawn(async move { tenant.shutdown().await });
        }
        for secondary in self.list_secondaries() {
            set.spawn(async move { secondary.shutdown().await });
        }
        while set.join_next().await.is_some() {}
    }

    /// Refreshes the tenant and timeline state gauges.
    pub fn update_state_metrics(&self) {
        let mut tenant_counts: BTreeMap<&'static str, i64> =
            TenantState::NAMES.iter().map(|n| (*n, 0)).collect();
        let mut timeline_counts = tenant_counts.clone();
        for tenant in self.list() {
            *tenant_counts.entry(tenant.state().name()).or_default() += 1;
            for state in tenant.timeline_states() {
                *timeline_counts.entry(state).or_default() += 1;
            }
        }
        for (state, n) in tenant_counts {
            metrics::TENANT_STATES.with_label_values(&[state]).set(n);
        }
        for (state, n) in timeline_counts {
            metrics::TIMELINE_STATES.with_label_values(&[state]).set(n);
        }
    }
}

/// The entries of `dir` named by a tenant id, with their paths; other
/// entries are logged and skipped.
pub(super) fn tenant_dirs(dir: &Path) -> std::io::Result<Vec<(TenantId, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(|n| n.parse::<TenantId>().ok()) {
            Some(tenant_id) => found.push((tenant_id, entry.path())),
            None => tracing::warn!(
                "ignoring unexpected entry {} in {}",
                name.to_string_lossy(),
                dir.display()
            ),
        }
    }
    Ok(found)
}

/// The tenant's location file, for finishing work a crash interrupted; when
/// it cannot be read the tenant becomes Broken, the reason ending in `then`.
async fn read_attachment_or_break(tenant: &Tenant, then: &str) -> Option<TenantAttachment> {
    let dir = tenant.path.clone();
    let reason = match blocking(move || TenantAttachment::read(&dir)).await {
        Ok(Ok(a)) => return Some(a),
        Ok(Err(e)) => format!("{e}; {then}"),
        Err(e) => e.to_string(),
    };
    tenant.set_state(TenantState::Broken { reason });
    None
}
