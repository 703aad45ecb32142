//! Secondary locations in the tenant map: found at start-up in
//! `WORKDIR/secondary/`, made by `location_config` (from nothing, or from
//! an attached tenant, whose resident layers are kept), removed by a detach,
//! and taken over by an attach (`mgr/attach.rs`).

use std::sync::Arc;
use std::time::Duration;

use utils::crashsafe;
use utils::id::TenantId;

use super::{TenantManager, TenantSlot};
use crate::tenant::errors::TenantError;
use crate::tenant::secondary::{secondary_path, SecondaryTenant, SECONDARY_DIR};
use crate::tenant::{blocking, Tenant};

impl TenantManager {
    /// Registers and starts the secondary locations on disk; one whose
    /// tenant is also attached here (an attach interrupted by a crash) is
    /// removed: the attachment wins. Blocking, inside the runtime.
    pub(super) fn discover_secondaries_blocking(&self) -> anyhow::Result<()> {
        let dir = self.conf.workdir.join(SECONDARY_DIR);
        crashsafe::create_dir_all(&dir)?;
        crashsafe::remove_temporaries(&dir)?;
        let mut map = self.tenants.write().expect("tenant map lock poisoned");
        for (tenant_id, path) in super::tenant_dirs(&dir)? {
            if map.contains_key(&tenant_id) {
                tracing::info!(%tenant_id, "removing the secondary location of a tenant attached here");
                crashsafe::remove_dir_all(&path)?;
                continue;
            }
            let secondary = Arc::new(SecondaryTenant::new(
                &self.conf,
                tenant_id,
                self.remote.clone(),
                &self.cancel,
            )?);
            secondary.spawn();
            map.insert(tenant_id, TenantSlot::Secondary(secondary));
            tracing::info!(%tenant_id, "secondary location found");
        }
        Ok(())
    }

    /// Every secondary location.
    pub fn list_secondaries(&self) -> Vec<Arc<SecondaryTenant>> {
        self.tenants
            .read()
            .expect("tenant map lock poisoned")
            .values()
            .filter_map(|slot| match slot {
                TenantSlot::Secondary(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// A secondary location by id (409 when the tenant is attached here).
    pub fn get_secondary(&self, tenant_id: TenantId) -> Result<Arc<SecondaryTenant>, TenantError> {
        match self
            .tenants
            .read()
            .expect("tenant map lock poisoned")
            .get(&tenant_id)
        {
            Some(TenantSlot::Secondary(s)) => Ok(s.clone()),
            Some(TenantSlot::Attached(_)) => Err(TenantError::WrongMode(format!(
                "tenant {tenant_id} is attached on this node, not a secondary location"
            ))),
            Some(TenantSlot::InProgress) => Err(TenantError::TenantBusy(tenant_id)),
            None => Err(TenantError::TenantNotFound(tenant_id)),
        }
    }

    /// Registers a secondary location for a claimed (`InProgress`) id and
    /// starts its downloads. On error the id is released.
    pub(super) async fn install_secondary(&self, tenant_id: TenantId) -> Result<(), TenantError> {
        let (conf, remote, cancel) = (self.conf.clone(), self.remote.clone(), self.cancel.clone());
        let made = blocking(move || SecondaryTenant::new(&conf, tenant_id, remote, &cancel)).await;
        let secondary = match made {
            Ok(Ok(s)) => Arc::new(s),
            Ok(Err(e)) => {
                self.release(tenant_id);
                return Err(TenantError::Internal(anyhow::anyhow!(
                    "cannot create the secondary location of tenant {tenant_id}: {e}"
                )));
            }
            Err(e) => {
                self.release(tenant_id);
                return Err(e);
            }
        };
        secondary.spawn();
        self.tenants
            .write()
            .expect("tenant map lock poisoned")
            .insert(tenant_id, TenantSlot::Secondary(secondary));
        tracing::info!(%tenant_id, "tenant is a secondary location here");
        Ok(())
    }

    /// `location_config` `Secondary`: a no-op for a secondary location;
    /// an attached tenant uploads its heatmap, detaches (uploads drained)
    /// and keeps its resident layers as the secondary's cache; an absent
    /// one becomes a secondary location that starts downloading.
    pub(super) async fn make_secondary(
        &self,
        tenant_id: TenantId,
        timeout: Duration,
    ) -> Result<(), TenantError> {
        if self.cancel.is_cancelled() {
            return Err(TenantError::ShuttingDown);
        }
        let attached = {
            let mut map = self.tenants.write().expect("tenant map lock poisoned");
            match map.get(&tenant_id) {
                Some(TenantSlot::Secondary(_)) => return Ok(()),
                Some(TenantSlot::InProgress) => return Err(TenantError::TenantBusy(tenant_id)),
                Some(TenantSlot::Attached(t)) => Some(t.clone()),
                None => {
                    map.insert(tenant_id, TenantSlot::InProgress);
                    None
                }
            }
        };
        if let Some(tenant) = attached {
            // The heatmap first, so the secondary's first pass keeps the
            // layers moved over below.
            if let Err(e) = tenant.upload_heatmap().await {
                tracing::info!(%tenant_id, "{e}; the secondary location follows the previous heatmap");
            }
            self.detach_tenant_keeping(tenant_id, timeout, true).await?;
            // The detach released the id; claim it again.
            let mut map = self.tenants.write().expect("tenant map lock poisoned");
            if map.contains_key(&tenant_id) {
                return Err(TenantError::TenantBusy(tenant_id));
            }
            map.insert(tenant_id, TenantSlot::InProgress);
        }
        self.install_secondary(tenant_id).await
    }

    /// Removes a secondary location (detach, `location_config` `Detached`).
    pub(super) async fn remove_secondary(&self, tenant_id: TenantId) -> Result<(), TenantError> {
        let secondary = {
            let mut map = self.tenants.write().expect("tenant map lock poisoned");
            match map.get(&tenant_id) {
                Some(TenantSlot::Secondary(s)) => {
                    let s = s.clone();
                    map.insert(tenant_id, TenantSlot::InProgress);
                    s
                }
                Some(TenantSlot::InProgress) => return Err(TenantError::TenantBusy(tenant_id)),
                _ => return Err(TenantError::TenantNotFound(tenant_id)),
            }
        };
        secondary.shutdown().await;
        let path = secondary.dir().to_path_buf();
        let result = blocking(move || crashsafe::remove_dir_all(&path)).await;
        self.release(tenant_id);
        match result {
            Ok(Ok(())) => {
                tracing::info!(%tenant_id, "secondary location removed");
                Ok(())
            }
            Ok(Err(e)) => Err(TenantError::Internal(anyhow::anyhow!(
                "the secondary location of tenant {tenant_id} is stopped but its directory could not be removed: {e}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Whether `tenant_id` is a secondary location here.
    pub(super) fn is_secondary(&self, tenant_id: TenantId) -> bool {
        matches!(
            self.tenants
                .read()
                .expect("tenant map lock poisoned")
                .get(&tenant_id),
            Some(TenantSlot::Secondary(_))
        )
    }
}

/// Moves the resident, uploaded layer files of a stopped tenant into its
/// secondary location's directory (blocking). Returns how many moved.
pub(super) fn keep_resident_layers(
    conf: &crate::config::PageServerConf,
    tenant: &Tenant,
) -> std::io::Result<usize> {
    let dir = secondary_path(conf, &tenant.tenant_id);
    let mut moved = 0;
    for timeline in tenant.list_timelines() {
        let target = dir.join(timeline.timeline_id.to_string());
        for layer in timeline.all_layers() {
            if !layer.is_resident() || layer.remote().is_none() {
                continue;
            }
            crashsafe::create_dir_all(&target)?;
            match std::fs::rename(layer.local_path(), target.join(layer.name().to_string())) {
                Ok(()) => moved += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if target.exists() {
            crashsafe::fsync_dir(&target)?;
        }
    }
    Ok(moved)
}
