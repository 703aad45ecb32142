//! Moving tenants between nodes: attach from remote storage, detach after
//! the uploads drained, and `location_config` (DESIGN.md section 4,
//! `docs/remote_storage.md`).

use std::sync::Arc;
use std::time::Duration;

use pageserver_api::models::{LocationMode, TenantState};
use utils::crashsafe;
use utils::generation::Generation;
use utils::id::TenantId;

use super::{TenantManager, TenantSlot};
use crate::tenant::errors::TenantError;
use crate::tenant::remote::{download, TenantAttachment};
use crate::tenant::secondary::SecondaryTenant;
use crate::tenant::{blocking, Tenant};

/// How long a detach waits for the upload queues to drain.
pub const DETACH_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);

impl TenantManager {
    /// Claims `tenant_id` for an attach; 409 when attached, 503 when busy.
    /// A secondary location is claimed too and returned: its layers warm
    /// the attach.
    fn claim_for_attach(
        &self,
        tenant_id: TenantId,
    ) -> Result<Option<Arc<SecondaryTenant>>, TenantError> {
        let mut map = self.tenants.write().expect("tenant map lock poisoned");
        let warm = match map.get(&tenant_id) {
            Some(TenantSlot::Attached(_)) => {
                return Err(TenantError::TenantAlreadyExists(tenant_id))
            }
            Some(TenantSlot::InProgress) => return Err(TenantError::TenantBusy(tenant_id)),
            Some(TenantSlot::Secondary(s)) => Some(s.clone()),
            None => None,
        };
        map.insert(tenant_id, TenantSlot::InProgress);
        Ok(warm)
    }

    pub(super) fn release(&self, tenant_id: TenantId) {
        self.tenants
            .write()
            .expect("tenant map lock poisoned")
            .remove(&tenant_id);
    }

    /// Attaches a tenant from remote storage with `generation` (single-node
    /// mode without one: the highest generation found remotely plus one).
    /// Returns the generation once the tenant is registered as Attaching;
    /// the indexes download in a task holding the tenant's gate, and the
    /// tenant becomes Active (or Broken, saying why). Layers are not
    /// downloaded: reads fetch them on demand.
    pub async fn attach_tenant(
        &self,
        tenant_id: TenantId,
        generation: Option<Generation>,
        stale: bool,
    ) -> Result<Generation, TenantError> {
        if self.cancel.is_cancelled() {
            return Err(TenantError::ShuttingDown);
        }
        if generation == Some(Generation(0)) {
            return Err(TenantError::BadRequest(
                "generation 0 is never handed out; use 1 or more".to_string(),
            ));
        }
        let warm = self.claim_for_attach(tenant_id)?;
        if let Some(secondary) = &warm {
            // Its downloads stop; its files stay for the attach to take.
            secondary.shutdown().await;
        }
        let warm_dir = warm.as_ref().map(|s| s.dir().to_path_buf());
        match self
            .attach_claimed(tenant_id, generation, stale, warm_dir)
            .await
        {
            Ok(g) => Ok(g),
            Err(e) if warm.is_some() => {
                // Nothing changed: the secondary location resumes.
                if let Err(restore) = self.install_secondary(tenant_id).await {
                    tracing::error!(%tenant_id, "cannot resume the secondary location after a failed attach: {restore}");
                }
                Err(e)
            }
            Err(e) => {
                self.release(tenant_id);
                Err(e)
            }
        }
    }

    async fn attach_claimed(
        &self,
        tenant_id: TenantId,
        generation: Option<Generation>,
        stale: bool,
        warm: Option<std::path::PathBuf>,
    ) -> Result<Generation, TenantError> {
        let storage = &self.remote.storage;
        let listing = download::list_tenant(storage, &tenant_id, &self.cancel)
            .await
            .map_err(|e| {
                TenantError::Unavailable(format!(
                    "cannot list tenant {tenant_id} in remote storage: {e}; retry later"
                ))
            })?;
        if listing.manifests.is_empty() && listing.timelines.is_empty() {
            return Err(TenantError::NoRemoteData(tenant_id));
        }
        let generation = generation.unwrap_or_else(|| {
            listing
                .highest_generation
                .map_or(Generation::FIRST, Generation::next)
        });
        let manifest = download::download_manifest(
            storage,
            &tenant_id,
            &listing.manifests,
            generation,
            &self.cancel,
        )
        .await
        .map_err(|e| {
            TenantError::Unavailable(format!(
                "cannot read the manifest of tenant {tenant_id}: {e}; retry later"
            ))
        })?;
        let config = manifest.map(|m| m.config).unwrap_or_default();
        let attachment = Arc::new(TenantAttachment::new(generation, stale));
        let (conf, att, cfg) = (self.conf.clone(), attachment.clone(), config.clone());
        let path = self.conf.tenant_path(&tenant_id);
        blocking(move || {
            if path.exists() {
                // Leftovers of a detach interrupted by a crash.
                crashsafe::remove_dir_all(&path)?;
            }
            Tenant::create_on_disk(&conf, tenant_id, &cfg, &att, true)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("cannot create the directory of tenant {tenant_id}: {e}"))?;
        let tenant = Arc::new(Tenant::new(
            self.conf.clone(),
            tenant_id,
            TenantState::Attaching,
            config,
            self.remote.clone(),
            attachment,
            &self.cancel,
        ));
        self.tenants
            .write()
            .expect("tenant map lock poisoned")
            .insert(tenant_id, TenantSlot::Attached(tenant.clone()));
        let guard = tenant.gate.enter().map_err(|_| TenantError::ShuttingDown)?;
        let timelines = listing.timelines.clone();
        let t = tenant.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let started = std::time::Instant::now();
            let mut result = t.attach_timelines(timelines, warm.clone()).await;
            if result.is_ok() {
                let marker = t.path.join(super::ATTACH_MARKER);
                result = match blocking(move || crashsafe::remove_file_durably(&marker)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("cannot remove the attach marker: {e}")),
                    Err(e) => Err(e.to_string()),
                };
            }
            if let Some(dir) = warm {
                // What the attach did not take is of no further use.
                match blocking(move || crashsafe::remove_dir_all(&dir)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(%tenant_id, "cannot remove the rest of the secondary location: {e}; it is removed at the next start")
                    }
                    Err(e) => {
                        tracing::warn!(%tenant_id, "cannot remove the rest of the secondary location: {e}")
                    }
                }
            }
            match result {
                Ok(()) => {
                    t.set_state(TenantState::Active);
                    t.activate();
                    tracing::info!(%tenant_id, %generation, "tenant attached in {:?}", started.elapsed());
                }
                Err(reason) if t.cancel.is_cancelled() => {
                    tracing::info!(%tenant_id, "attach stopped by shutdown: {reason}");
                }
                Err(reason) => {
                    tracing::error!(%tenant_id, "attach failed, tenant is broken: {reason}");
                    t.set_state(TenantState::Broken { reason });
                }
            }
        });
        self.update_state_metrics();
        tracing::info!(%tenant_id, %generation, stale, "attaching tenant");
        Ok(generation)
    }

    /// Detaches a tenant: flushes, waits (at most `timeout`) for every upload
    /// queue to drain, then stops it and removes its local state. Remote
    /// state stays; another node (or this one) can attach it again. When
    /// the queues do not drain, nothing changes and the error says so.
    /// A secondary location is removed.
    pub async fn detach_tenant(
        &self,
        tenant_id: TenantId,
        timeout: Duration,
    ) -> Result<(), TenantError> {
        if self.is_secondary(tenant_id) {
            return self.remove_secondary(tenant_id).await;
        }
        self.detach_tenant_keeping(tenant_id, timeout, false).await
    }

    /// Detaches an attached tenant; with `keep_warm` its resident uploaded
    /// layers move to its secondary location's directory first.
    pub(super) async fn detach_tenant_keeping(
        &self,
        tenant_id: TenantId,
        timeout: Duration,
        keep_warm: bool,
    ) -> Result<(), TenantError> {
        let tenant = self.take_for_exclusive_work(tenant_id)?;
        if tenant.state() == TenantState::Active {
            if let Err(e) = tenant.flush_and_wait_uploads(timeout).await {
                self.tenants
                    .write()
                    .expect("tenant map lock poisoned")
                    .insert(tenant_id, TenantSlot::Attached(tenant));
                return Err(TenantError::Unavailable(format!(
                    "cannot detach tenant {tenant_id}: {e}; nothing was changed, retry the detach"
                )));
            }
        }
        tenant.shutdown().await;
        for timeline in tenant.list_timelines() {
            crate::metrics::remove_timeline_metrics(
                &tenant_id.to_string(),
                &timeline.timeline_id.to_string(),
            );
        }
        let path = self.conf.tenant_path(&tenant_id);
        let (conf, t) = (self.conf.clone(), tenant.clone());
        let result = blocking(move || {
            if keep_warm {
                match super::secondary::keep_resident_layers(&conf, &t) {
                    Ok(n) => tracing::info!(%tenant_id, "{n} resident layers kept for the secondary location"),
                    Err(e) => tracing::warn!(%tenant_id, "cannot keep the resident layers for the secondary location: {e}; it downloads them"),
                }
            }
            crashsafe::remove_dir_all(&path)
        })
        .await;
        self.release(tenant_id);
        self.update_state_metrics();
        match result {
            Ok(Ok(())) => {
                tracing::info!(%tenant_id, "tenant detached");
                Ok(())
            }
            Ok(Err(e)) => Err(TenantError::Internal(anyhow::anyhow!(
                "tenant {tenant_id} is stopped but its directory could not be removed: {e}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// `PUT location_config`: moves the tenant to `mode`. Attached modes
    /// attach when the tenant is not here (or is a secondary location, whose
    /// layers warm the attach), or change generation and mode in place;
    /// `Secondary` makes a secondary location (from an attached tenant, after
    /// its uploads drained, keeping its resident layers); `Detached` detaches
    /// either. Returns the generation in force (attached modes).
    pub async fn set_location(
        &self,
        tenant_id: TenantId,
        mode: LocationMode,
        generation: Option<Generation>,
    ) -> Result<Option<Generation>, TenantError> {
        let stale = match mode {
            LocationMode::AttachedSingle => false,
            LocationMode::AttachedStale => true,
            LocationMode::Secondary => {
                if generation.is_some() {
                    return Err(TenantError::BadRequest(
                        "a Secondary location has no generation; leave generation out".to_string(),
                    ));
                }
                return self
                    .make_secondary(tenant_id, DETACH_UPLOAD_TIMEOUT)
                    .await
                    .map(|()| None);
            }
            LocationMode::Detached => {
                return match self.detach_tenant(tenant_id, DETACH_UPLOAD_TIMEOUT).await {
                    Ok(()) | Err(TenantError::TenantNotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                };
            }
        };
        if generation == Some(Generation(0)) {
            return Err(TenantError::BadRequest(
                "generation 0 is never handed out; use 1 or more".to_string(),
            ));
        }
        if self.is_secondary(tenant_id) {
            return self
                .attach_tenant(tenant_id, generation, stale)
                .await
                .map(Some);
        }
        let tenant = match self.get(tenant_id) {
            Ok(t) => t,
            Err(TenantError::TenantNotFound(_)) => {
                return self
                    .attach_tenant(tenant_id, generation, stale)
                    .await
                    .map(Some)
            }
            Err(e) => return Err(e),
        };
        let current = tenant.attachment.generation();
        let new_generation = generation.unwrap_or(current);
        if new_generation < current {
            return Err(TenantError::BadRequest(format!(
                "tenant {tenant_id} is attached with generation {current}; generation {new_generation} is older"
            )));
        }
        tenant.attachment.set(new_generation, stale);
        let (att, path) = (tenant.attachment.clone(), self.conf.tenant_path(&tenant_id));
        blocking(move || att.write(&path))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot write the location of tenant {tenant_id}: {e}"))?;
        if new_generation != current && !stale {
            tenant.upload_manifest().await.map_err(|e| {
                TenantError::Unavailable(format!(
                    "cannot upload the manifest of tenant {tenant_id}: {e}"
                ))
            })?;
        }
        tracing::info!(%tenant_id, ?mode, generation = %new_generation, "location changed");
        Ok(Some(new_generation))
    }
}
