//! Tenants: the unit of placement, configuration and authorization. A tenant
//! owns its timelines (`timeline.rs`); the manager (`mgr.rs`) owns tenants.
//!
//! On disk (DESIGN.md section 3): `WORKDIR/tenants/TENANT/config` and
//! `.../timelines/TIMELINE/metadata`. Both tenant and timeline directories are
//! created under a temporary name and renamed into place, so a crash leaves
//! either the whole object or nothing.

pub mod attach;
pub mod bootstrap;
pub mod errors;
pub mod load_remote;
pub mod maintenance;
pub mod metadata;
pub mod mgr;
pub mod remote;
pub mod secondary;
pub mod size;
pub mod storage_layer;
pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use pageserver_api::models::{TenantInfo, TenantState, TimelineCreateRequest, DEFAULT_PG_VERSION};
use pageserver_api::tenant_config::TenantConfig;
use tokio_util::sync::CancellationToken;
use utils::crashsafe;
use utils::gate::Gate;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use crate::config::{PageServerConf, TENANT_CONFIG_FILE, TIMELINES_DIR};
use errors::TenantError;
use metadata::TimelineMetadata;
use timeline::Timeline;

/// Runs blocking file work off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TenantError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TenantError::Internal(anyhow::anyhow!("blocking task failed: {e}")))
}

#[derive(Default)]
struct Timelines {
    active: HashMap<TimelineId, Arc<Timeline>>,
    /// Being created, with their ancestor and branch point (so a delete of
    /// the ancestor waits and its GC keeps the branch point).
    creating: HashMap<TimelineId, Option<(TimelineId, Lsn)>>,
    deleting: HashSet<TimelineId>,
}

/// One tenant on this node.
pub struct Tenant {
    /// The tenant's id.
    pub tenant_id: TenantId,
    conf: Arc<PageServerConf>,
    path: PathBuf,
    state: Mutex<TenantState>,
    overrides: RwLock<TenantConfig>,
    /// Overrides merged over the node's defaults, shared with the timelines.
    effective: timeline::SharedTenantConf,
    timelines: Mutex<Timelines>,
    /// The node's object storage.
    remote: Arc<remote::RemoteContext>,
    /// Generation and mode of this node's attachment.
    pub attachment: Arc<remote::TenantAttachment>,
    /// Cancelled when the tenant shuts down; timelines' tokens are children.
    pub cancel: CancellationToken,
    /// Held by every task working on this tenant.
    pub gate: Gate,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

fn write_config(dir: &Path, config: &TenantConfig) -> io::Result<()> {
    let body = toml::to_string(config).map_err(io::Error::other)?;
    let text = format!("# Tenant configuration overrides; written by the page server.\n{body}");
    crashsafe::overwrite(&dir.join(TENANT_CONFIG_FILE), text.as_bytes())
}

fn read_config(dir: &Path) -> Result<TenantConfig, String> {
    let file = dir.join(TENANT_CONFIG_FILE);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let config: TenantConfig =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    config
        .validate()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(config)
}

impl Tenant {
    fn new(
        conf: Arc<PageServerConf>,
        tenant_id: TenantId,
        state: TenantState,
        overrides: TenantConfig,
        remote: Arc<remote::RemoteContext>,
        attachment: Arc<remote::TenantAttachment>,
        parent_cancel: &CancellationToken,
    ) -> Tenant {
        Tenant {
            remote,
            attachment,
            tenant_id,
            path: conf.tenant_path(&tenant_id),
            state: Mutex::new(state),
            effective: Arc::new(RwLock::new(
                overrides.merged_over(&conf.default_tenant_config),
            )),
            overrides: RwLock::new(overrides),
            conf,
            timelines: Mutex::new(Timelines::default()),
            cancel: parent_cancel.child_token(),
            gate: Gate::new(format!("tenant {tenant_id}")),
        }
    }

    /// Writes a new tenant directory (config and an empty timelines
    /// directory) under a temporary name, then renames it into place.
    fn create_on_disk(
        conf: &PageServerConf,
        tenant_id: TenantId,
        config: &TenantConfig,
        attachment: &remote::TenantAttachment,
        attaching: bool,
    ) -> io::Result<()> {
        let path = conf.tenant_path(&tenant_id);
        let tmp = crashsafe::path_with_suffix(&path, crashsafe::TEMP_SUFFIX);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        crashsafe::create_dir_all(&tmp.join(TIMELINES_DIR))?;
        write_config(&tmp, config)?;
        attachment.write(&tmp)?;
        if attaching {
            // Until the attach has built every timeline (see `mgr::ATTACH_MARKER`).
            crashsafe::overwrite(&tmp.join(mgr::ATTACH_MARKER), b"")?;
        }
        fail::fail_point!("tenant-create-before-rename", |_| Err(io::Error::other(
            "failpoint tenant-create-before-rename"
        )));
        crashsafe::rename(&tmp, &path)
    }

    /// Reads config and timelines from disk into a Loading tenant, which
    /// stays Loading (the remote state comes next, `load_remote.rs`), or
    /// becomes Broken with the reason. Returns whether it loaded.
    fn load_blocking(&self) -> bool {
        fail::fail_point!("tenant-load", |_| false);
        match self.try_load() {
            Ok(()) => true,
            Err(reason) => {
                tracing::error!(tenant_id = %self.tenant_id, "tenant is broken: {reason}");
                self.set_state(TenantState::Broken { reason });
                false
            }
        }
    }

    fn try_load(&self) -> Result<(), String> {
        let config = read_config(&self.path)?;
        self.install_config(config);
        let location = remote::TenantAttachment::read(&self.path)?;
        self.attachment
            .set(location.generation(), location.is_stale());
        let dir = self.path.join(TIMELINES_DIR);
        for removed in crashsafe::remove_temporaries(&dir)
            .map_err(|e| format!("cannot clean {}: {e}", dir.display()))?
        {
            tracing::info!(tenant_id = %self.tenant_id, "removed unfinished timeline directory {}", removed.display());
        }
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut loaded = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = entry.file_name();
            let Some(timeline_id) = name.to_str().and_then(|n| n.parse::<TimelineId>().ok()) else {
                tracing::warn!(tenant_id = %self.tenant_id, "ignoring unexpected entry {} in {}", name.to_string_lossy(), dir.display());
                continue;
            };
            let timeline = Timeline::load(
                self.tenant_id,
                timeline_id,
                entry.path(),
                self.effective.clone(),
                &self.cancel,
            );
            loaded.insert(timeline_id, Arc::new(timeline));
        }
        for timeline in loaded.values() {
            if let Some(ancestor) = timeline.ancestor_timeline_id() {
                match loaded.get(&ancestor) {
                    Some(a) => timeline.set_ancestor(a.clone()),
                    None => {
                        let reason = format!("ancestor timeline {ancestor} is missing");
                        tracing::error!(tenant_id = %self.tenant_id, timeline_id = %timeline.timeline_id, "timeline is broken: {reason}");
                        timeline.set_state(TenantState::Broken { reason });
                    }
                }
            }
        }
        self.timelines
            .lock()
            .expect("timelines lock poisoned")
            .active = loaded;
        Ok(())
    }

    /// Current state.
    pub fn state(&self) -> TenantState {
        self.state.lock().expect("state lock poisoned").clone()
    }

    fn set_state(&self, state: TenantState) {
        *self.state.lock().expect("state lock poisoned") = state;
    }

    /// Succeeds only for an Active tenant.
    pub fn check_active(&self) -> Result<(), TenantError> {
        match self.state() {
            TenantState::Active => Ok(()),
            TenantState::Broken { reason } => Err(TenantError::TenantBroken {
                tenant_id: self.tenant_id,
                reason,
            }),
            other => Err(TenantError::TenantNotActive {
                tenant_id: self.tenant_id,
                state: other.name(),
            }),
        }
    }

    /// The tenant's own overrides.
    pub fn overrides(&self) -> TenantConfig {
        self.overrides.read().expect("config lock poisoned").clone()
    }

    /// The settings in force: overrides over the node's defaults.
    pub fn effective_config(&self) -> TenantConfig {
        self.effective.read().expect("config lock poisoned").clone()
    }

    fn install_config(&self, config: TenantConfig) {
        *self.effective.write().expect("config lock poisoned") =
            config.merged_over(&self.conf.default_tenant_config);
        *self.overrides.write().expect("config lock poisoned") = config;
    }

    /// Replaces the tenant's overrides, durably.
    pub async fn set_config(&self, config: TenantConfig) -> Result<(), TenantError> {
        config
            .validate()
            .map_err(|e| TenantError::BadRequest(e.to_string()))?;
        self.check_active()?;
        let _guard = self.gate.enter().map_err(|_| TenantError::ShuttingDown)?;
        let path = self.path.clone();
        let to_write = config.clone();
        blocking(move || write_config(&path, &to_write))
            .await?
            .map_err(|e| {
                anyhow::anyhow!("cannot write config of tenant {}: {e}", self.tenant_id)
            })?;
        self.install_config(config);
        tracing::info!(tenant_id = %self.tenant_id, "tenant config updated");
        // The manifest carries the config to the next attachment.
        if let Err(e) = self.upload_manifest().await {
            tracing::warn!(tenant_id = %self.tenant_id, "cannot upload the tenant manifest with the new config: {e}; it is uploaded at the next start");
        }
        Ok(())
    }

    /// A timeline by id.
    pub fn get_timeline(&self, timeline_id: TimelineId) -> Result<Arc<Timeline>, TenantError> {
        let timelines = self.timelines.lock().expect("timelines lock poisoned");
        if timelines.deleting.contains(&timeline_id) {
            return Err(TenantError::TimelineBusy(self.tenant_id, timeline_id));
        }
        timelines
            .active
            .get(&timeline_id)
            .cloned()
            .ok_or(TenantError::TimelineNotFound(self.tenant_id, timeline_id))
    }

    /// Every timeline, sorted by id.
    pub fn list_timelines(&self) -> Vec<Arc<Timeline>> {
        let mut list: Vec<_> = self
            .timelines
            .lock()
            .expect("timelines lock poisoned")
            .active
            .values()
            .cloned()
            .collect();
        list.sort_by_key(|t| t.timeline_id);
        list
    }

    /// Counts of timelines by state name.
    pub fn timeline_states(&self) -> Vec<&'static str> {
        self.timelines
            .lock()
            .expect("timelines lock poisoned")
            .active
            .values()
            .map(|t| t.state().name())
            .collect()
    }

    fn check_new_timeline_id(
        &self,
        timelines: &Timelines,
        timeline_id: TimelineId,
    ) -> Result<(), TenantError> {
        if timelines.active.contains_key(&timeline_id)
            || timelines.creating.contains_key(&timeline_id)
        {
            return Err(TenantError::TimelineAlreadyExists(
                self.tenant_id,
                timeline_id,
            ));
        }
        if timelines.deleting.contains(&timeline_id) {
            return Err(TenantError::TimelineBusy(self.tenant_id, timeline_id));
        }
        Ok(())
    }

    /// Claims `timeline_id` for a creation under way.
    fn register_creation(
        &self,
        timeline_id: TimelineId,
        branch: Option<(TimelineId, Lsn)>,
    ) -> Result<(), TenantError> {
        let mut timelines = self.timelines.lock().expect("timelines lock poisoned");
        self.check_new_timeline_id(&timelines, timeline_id)?;
        timelines.creating.insert(timeline_id, branch);
        Ok(())
    }

    /// Branch points of `timeline_id`'s children (and children being created).
    pub fn retain_lsns(&self, timeline_id: TimelineId) -> Vec<Lsn> {
        let timelines = self.timelines.lock().expect("timelines lock poisoned");
        let mut lsns: Vec<Lsn> = timelines
            .active
            .values()
            .filter(|t| t.ancestor_timeline_id() == Some(timeline_id))
            .map(|t| t.ancestor_lsn())
            .chain(
                timelines
                    .creating
                    .values()
                    .filter_map(|b| b.filter(|(a, _)| *a == timeline_id).map(|(_, l)| l)),
            )
            .collect();
        lsns.sort();
        lsns.dedup();
        lsns
    }

    /// Creates a timeline: a root (empty until data is imported) or a branch
    /// of `ancestor_timeline_id` at `ancestor_start_lsn`. Costs O(1): a
    /// branch shares its parent's data below the branch point.
    pub async fn create_timeline(
        &self,
        req: TimelineCreateRequest,
    ) -> Result<Arc<Timeline>, TenantError> {
        self.check_active()?;
        let _guard = self.gate.enter().map_err(|_| TenantError::ShuttingDown)?;
        let timeline_id = req.new_timeline_id.unwrap_or_else(TimelineId::generate);
        let pg_version = req.pg_version.unwrap_or(DEFAULT_PG_VERSION);
        if pg_version != DEFAULT_PG_VERSION {
            return Err(TenantError::BadRequest(format!(
                "pg_version {pg_version} is not supported: this page server stores PostgreSQL {DEFAULT_PG_VERSION} only"
            )));
        }
        let source = req
            .wal_source_connstr
            .as_deref()
            .map(pq_proto::ConnConfig::parse)
            .transpose()
            .map_err(|e| TenantError::BadRequest(format!("wal_source_connstr: {e}")))?;
        if source.is_some() && req.ancestor_timeline_id.is_some() {
            return Err(TenantError::BadRequest(
                "wal_source_connstr starts a timeline from a base backup and cannot go with ancestor_timeline_id; create the branch, then PUT its wal_source".to_string(),
            ));
        }
        let metadata = match req.ancestor_timeline_id {
            Some(ancestor_id) => {
                let ancestor = self.get_timeline(ancestor_id).map_err(|_| {
                    TenantError::BadRequest(format!(
                        "ancestor timeline {ancestor_id} not found in tenant {}",
                        self.tenant_id
                    ))
                })?;
                // The branch point is checked and registered (in `creating`)
                // with the parent's GC paused, so GC keeps it from then on.
                tokio::task::block_in_place(|| {
                    ancestor.with_gc_paused(|| {
                        let metadata = branch_metadata(&ancestor, req.ancestor_start_lsn)?;
                        self.register_creation(
                            timeline_id,
                            Some((ancestor_id, metadata.ancestor_lsn)),
                        )?;
                        Ok::<_, TenantError>(metadata)
                    })
                })?
            }
            None => {
                if let Some(lsn) = req.ancestor_start_lsn {
                    return Err(TenantError::BadRequest(format!(
                        "ancestor_start_lsn {lsn} given without ancestor_timeline_id"
                    )));
                }
                self.register_creation(timeline_id, None)?;
                TimelineMetadata::new_root(pg_version)
            }
        };

        let root = match (req.ancestor_timeline_id, source) {
            (Some(_), _) => None,
            (None, Some(cfg)) => Some(RootSource::WalSource(cfg)),
            (None, None) => Some(RootSource::Initdb),
        };
        self.create_registered(timeline_id, metadata, req.ancestor_timeline_id, root)
            .await
    }

    /// Creates a root timeline from a data directory unpacked from a base
    /// backup tar (see `walingest::import_stream`): its data is imported
    /// at `start`, and reads below `end` are refused until WAL up to `end`
    /// has been imported.
    pub async fn import_basebackup(
        &self,
        timeline_id: TimelineId,
        datadir: std::path::PathBuf,
        start: Lsn,
        end: Lsn,
    ) -> Result<Arc<Timeline>, TenantError> {
        self.check_active()?;
        let _guard = self.gate.enter().map_err(|_| TenantError::ShuttingDown)?;
        self.register_creation(timeline_id, None)?;
        let metadata = TimelineMetadata::new_root(DEFAULT_PG_VERSION);
        let root = RootSource::Datadir {
            path: datadir,
            start,
            end,
        };
        self.create_registered(timeline_id, metadata, None, Some(root))
            .await
    }

    /// Creates the timeline registered in `creating`: a branch (`root` is
    /// `None`) or a root from `root`; then loads and activates it.
    async fn create_registered(
        &self,
        timeline_id: TimelineId,
        metadata: TimelineMetadata,
        ancestor_timeline_id: Option<TimelineId>,
        root: Option<RootSource>,
    ) -> Result<Arc<Timeline>, TenantError> {
        let path = self.conf.timeline_path(&self.tenant_id, &timeline_id);
        let write_path = path.clone();
        let (conf, tenant_conf, tenant_id) =
            (self.conf.clone(), self.effective.clone(), self.tenant_id);
        let result = blocking(move || match &root {
            Some(root) => {
                let initial = match root {
                    RootSource::WalSource(cfg) => bootstrap::InitialData::BaseBackup(cfg),
                    RootSource::Initdb => bootstrap::InitialData::Initdb,
                    RootSource::Datadir { path, start, end } => bootstrap::InitialData::Datadir {
                        path,
                        start: *start,
                        end: *end,
                    },
                };
                bootstrap::bootstrap_timeline(
                    &conf.pg_distrib_dir,
                    (tenant_id, timeline_id),
                    &write_path,
                    tenant_conf,
                    metadata.pg_version,
                    initial,
                )
            }
            None => Timeline::create_on_disk(&write_path, &metadata).map_err(anyhow::Error::from),
        })
        .await;
        let result = match result {
            Ok(Ok(())) => {
                let (load_path, tenant_conf, cancel) =
                    (path.clone(), self.effective.clone(), self.cancel.clone());
                blocking(move || {
                    Timeline::load(tenant_id, timeline_id, load_path, tenant_conf, &cancel)
                })
                .await
            }
            Ok(Err(e)) => Err(TenantError::Internal(anyhow::anyhow!(
                "cannot create timeline {timeline_id} of tenant {}: {e:#}",
                self.tenant_id
            ))),
            Err(e) => Err(e),
        };
        let result = result.map(Arc::new);
        if let Ok(timeline) = &result {
            if timeline.state() == TenantState::Active {
                self.connect_new_timeline(timeline);
            }
        }
        let mut timelines = self.timelines.lock().expect("timelines lock poisoned");
        timelines.creating.remove(&timeline_id);
        let timeline = result?;
        if let Some(ancestor) = ancestor_timeline_id.and_then(|a| timelines.active.get(&a)) {
            timeline.set_ancestor(ancestor.clone());
        }
        timelines.active.insert(timeline_id, timeline.clone());
        drop(timelines);
        timeline.spawn_background();
        tracing::info!(tenant_id = %self.tenant_id, %timeline_id, ancestor = ?ancestor_timeline_id, "timeline created");
        Ok(timeline)
    }

    /// Deletes a timeline that has no branches: stops its tasks, then removes
    /// its directory (durably, resumable after a crash).
    pub async fn delete_timeline(&self, timeline_id: TimelineId) -> Result<(), TenantError> {
        match self.state() {
            TenantState::Active | TenantState::Broken { .. } => {}
            other => {
                return Err(TenantError::TenantNotActive {
                    tenant_id: self.tenant_id,
                    state: other.name(),
                })
            }
        }
        let _guard = self.gate.enter().map_err(|_| TenantError::ShuttingDown)?;
        let timeline = {
            let mut timelines = self.timelines.lock().expect("timelines lock poisoned");
            if timelines.deleting.contains(&timeline_id) {
                return Err(TenantError::TimelineBusy(self.tenant_id, timeline_id));
            }
            if !timelines.active.contains_key(&timeline_id) {
                return Err(TenantError::TimelineNotFound(self.tenant_id, timeline_id));
            }
            let mut children: Vec<TimelineId> = timelines
                .active
                .values()
                .filter(|t| t.ancestor_timeline_id() == Some(timeline_id))
                .map(|t| t.timeline_id)
                .chain(
                    timelines
                        .creating
                        .iter()
                        .filter(|(_, a)| a.is_some_and(|(a, _)| a == timeline_id))
                        .map(|(id, _)| *id),
                )
                .collect();
            if !children.is_empty() {
                children.sort();
                return Err(TenantError::TimelineHasChildren {
                    timeline_id,
                    children,
                });
            }
            timelines.deleting.insert(timeline_id);
            timelines
                .active
                .remove(&timeline_id)
                .expect("checked above")
        };
        timeline.shutdown(false).await;
        if let Ok(Some(source)) = bootstrap::read_wal_source(timeline.path()) {
            crate::walreceiver::drop_slot(&timeline, &source).await;
        }
        crate::metrics::remove_timeline_metrics(
            &self.tenant_id.to_string(),
            &timeline_id.to_string(),
        );
        // Remote objects go through the deletion queue (persisted first, so
        // the deletion resumes after a crash).
        if let Err(e) = self
            .remote
            .deletion_queue
            .push_prefix(
                self.tenant_id,
                self.attachment.generation(),
                remote::paths::timeline_prefix(&self.tenant_id, &timeline_id),
            )
            .await
        {
            return Err(TenantError::Internal(anyhow::anyhow!(
                "cannot queue the remote deletion of timeline {timeline_id}: {e}; retry the delete"
            )));
        }
        let path = timeline.path().to_path_buf();
        let result = blocking(move || crashsafe::remove_dir_all(&path)).await;
        let mut timelines = self.timelines.lock().expect("timelines lock poisoned");
        timelines.deleting.remove(&timeline_id);
        match result {
            Ok(Ok(())) => {
                tracing::info!(tenant_id = %self.tenant_id, %timeline_id, "timeline deleted");
                Ok(())
            }
            Ok(Err(e)) => {
                let reason = format!("deletion failed: {e}; retry the delete");
                timeline.set_state(TenantState::Broken {
                    reason: reason.clone(),
                });
                timelines.active.insert(timeline_id, timeline);
                Err(TenantError::Internal(anyhow::anyhow!(
                    "cannot delete timeline {timeline_id}: {reason}"
                )))
            }
            Err(e) => {
                timelines.active.insert(timeline_id, timeline);
                Err(e)
            }
        }
    }

    /// The API view. Reads the file system for sizes: call from a blocking
    /// context.
    pub fn info_blocking(&self) -> TenantInfo {
        let size = match timeline::dir_size(&self.path) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, "cannot size tenant directory: {e}");
                None
            }
        };
        let state = self.state();
        TenantInfo {
            id: self.tenant_id,
            background_jobs_running: state == TenantState::Active,
            state,
            current_physical_size: size,
            has_in_progress_downloads: self
                .list_timelines()
                .iter()
                .any(|t| t.has_downloads_in_progress()),
            timeline_count: self
                .timelines
                .lock()
                .expect("timelines lock poisoned")
                .active
                .len(),
        }
    }

    /// Stops every task of the tenant and its timelines, and waits for them.
    pub async fn shutdown(&self) {
        if !matches!(self.state(), TenantState::Broken { .. }) {
            self.set_state(TenantState::Stopping);
        }
        self.cancel.cancel();
        self.gate.close().await;
        for timeline in self.list_timelines() {
            timeline.shutdown(true).await;
        }
    }
}

/// Metadata of a branch of `ancestor` at `start_lsn` (default: its last
/// record LSN), after checking the LSN is inside the readable range.
/// Where a new root timeline's data comes from.
enum RootSource {
    /// A fresh `initdb` cluster.
    Initdb,
    /// A base backup of a running primary, which then streams WAL.
    WalSource(pq_proto::ConnConfig),
    /// An unpacked base backup tar.
    Datadir {
        path: std::path::PathBuf,
        start: Lsn,
        end: Lsn,
    },
}

fn branch_metadata(
    ancestor: &Timeline,
    start_lsn: Option<Lsn>,
) -> Result<TimelineMetadata, TenantError> {
    if let TenantState::Broken { reason } = ancestor.state() {
        return Err(TenantError::TimelineNotActive {
            tenant_id: ancestor.tenant_id,
            timeline_id: ancestor.timeline_id,
            state: "Broken",
            detail: reason,
        });
    }
    let last = ancestor.last_record_lsn();
    let start = start_lsn.unwrap_or(last);
    if start > last {
        return Err(TenantError::BadRequest(format!(
            "ancestor_start_lsn {start} is above the last record LSN {last} of ancestor timeline {}",
            ancestor.timeline_id
        )));
    }
    let cutoff = ancestor.gc_cutoff_lsn();
    if start < cutoff {
        return Err(TenantError::BadRequest(format!(
            "ancestor_start_lsn {start} is below the GC cutoff {cutoff} of ancestor timeline {}: that history is gone",
            ancestor.timeline_id
        )));
    }
    let m = ancestor.metadata();
    Ok(TimelineMetadata {
        lsn_history: Vec::new(),
        disk_consistent_lsn: start,
        prev_record_lsn: if start == last {
            ancestor.record_lsn().prev
        } else {
            None
        },
        ancestor_timeline: Some(ancestor.timeline_id),
        ancestor_lsn: start,
        latest_gc_cutoff_lsn: start,
        initdb_lsn: m.initdb_lsn,
        pg_version: m.pg_version,
    })
}
