//! A timeline: one branch of a tenant's history.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pageserver_api::models::{LocalTimelineInfo, RemoteTimelineInfo, TenantState, TimelineInfo};
use tokio_util::sync::CancellationToken;
use utils::crashsafe;
use utils::gate::Gate;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::metadata::TimelineMetadata;
use crate::config::METADATA_FILE;

/// One timeline of a tenant. Owns a cancellation token (a child of its
/// tenant's) and a gate that every task working on it holds.
pub struct Timeline {
    /// The tenant this timeline belongs to.
    pub tenant_id: TenantId,
    /// This timeline's id.
    pub timeline_id: TimelineId,
    path: PathBuf,
    metadata: TimelineMetadata,
    state: Mutex<TenantState>,
    /// Cancelled when the timeline shuts down.
    pub cancel: CancellationToken,
    /// Held by every task working on this timeline.
    pub gate: Gate,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("tenant_id", &self.tenant_id)
            .field("timeline_id", &self.timeline_id)
            .finish()
    }
}

/// Sum of the sizes of the regular files below `path`.
pub fn dir_size(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            total += dir_size(&entry.path())?;
        } else if ft.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

impl Timeline {
    /// Writes a new timeline directory with its metadata so that a crash
    /// leaves either the whole directory or none: it is assembled under a
    /// temporary name and renamed into place.
    pub fn create_on_disk(path: &Path, metadata: &TimelineMetadata) -> io::Result<()> {
        let tmp = crashsafe::path_with_suffix(path, crashsafe::TEMP_SUFFIX);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp)?;
        crashsafe::overwrite(&tmp.join(METADATA_FILE), &metadata.to_bytes())?;
        fail::fail_point!("timeline-create-before-rename", |_| Err(io::Error::other(
            "failpoint timeline-create-before-rename"
        )));
        crashsafe::rename(&tmp, path)
    }

    /// Loads a timeline from its directory. A missing or corrupt metadata
    /// file gives a Broken timeline that says why, not an error: the tenant
    /// stays usable and the operator can see and delete the timeline.
    pub fn load(
        tenant_id: TenantId,
        timeline_id: TimelineId,
        path: PathBuf,
        parent_cancel: &CancellationToken,
    ) -> Timeline {
        let file = path.join(METADATA_FILE);
        let loaded = std::fs::read(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
            .and_then(|bytes| {
                TimelineMetadata::from_bytes(&bytes).map_err(|e| format!("{}: {e}", file.display()))
            });
        let (metadata, state) = match loaded {
            Ok(m) => (m, TenantState::Active),
            Err(reason) => {
                tracing::error!(%tenant_id, %timeline_id, "timeline is broken: {reason}");
                (Self::placeholder_metadata(), TenantState::Broken { reason })
            }
        };
        Self::new(tenant_id, timeline_id, path, metadata, state, parent_cancel)
    }

    /// A timeline object for metadata that was just written.
    pub fn new(
        tenant_id: TenantId,
        timeline_id: TimelineId,
        path: PathBuf,
        metadata: TimelineMetadata,
        state: TenantState,
        parent_cancel: &CancellationToken,
    ) -> Timeline {
        Timeline {
            tenant_id,
            timeline_id,
            path,
            metadata,
            state: Mutex::new(state),
            cancel: parent_cancel.child_token(),
            gate: Gate::new(format!("timeline {tenant_id}/{timeline_id}")),
        }
    }

    /// Metadata standing in for one that could not be read.
    fn placeholder_metadata() -> TimelineMetadata {
        TimelineMetadata {
            disk_consistent_lsn: Lsn::INVALID,
            prev_record_lsn: None,
            ancestor_timeline: None,
            ancestor_lsn: Lsn::INVALID,
            latest_gc_cutoff_lsn: Lsn::INVALID,
            initdb_lsn: Lsn::INVALID,
            pg_version: pageserver_api::models::DEFAULT_PG_VERSION,
        }
    }

    /// The timeline's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current state.
    pub fn state(&self) -> TenantState {
        self.state.lock().expect("state lock poisoned").clone()
    }

    /// Moves to `state`.
    pub fn set_state(&self, state: TenantState) {
        *self.state.lock().expect("state lock poisoned") = state;
    }

    /// The durable metadata.
    pub fn metadata(&self) -> &TimelineMetadata {
        &self.metadata
    }

    /// Parent timeline, if this is a branch.
    pub fn ancestor_timeline_id(&self) -> Option<TimelineId> {
        self.metadata.ancestor_timeline
    }

    /// End of the last record ingested. Nothing is ingested beyond what is
    /// durable yet, so this is `disk_consistent_lsn`.
    pub fn last_record_lsn(&self) -> Lsn {
        self.metadata.disk_consistent_lsn
    }

    /// Reads below this LSN are refused.
    pub fn gc_cutoff_lsn(&self) -> Lsn {
        self.metadata.latest_gc_cutoff_lsn
    }

    /// The API view of this timeline. Reads the file system for sizes, so
    /// call it from a blocking context.
    pub fn info_blocking(&self, include_non_incremental_physical: bool) -> TimelineInfo {
        let m = &self.metadata;
        let state = self.state();
        let physical = match dir_size(&self.path) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(tenant_id = %self.tenant_id, timeline_id = %self.timeline_id, "cannot size timeline directory: {e}");
                None
            }
        };
        let ancestor_lsn = m.ancestor_timeline.map(|_| m.ancestor_lsn);
        TimelineInfo {
            tenant_id: self.tenant_id,
            timeline_id: self.timeline_id,
            ancestor_timeline_id: m.ancestor_timeline,
            ancestor_lsn,
            last_record_lsn: self.last_record_lsn(),
            prev_record_lsn: m.prev_record_lsn,
            disk_consistent_lsn: m.disk_consistent_lsn,
            remote_consistent_lsn: None,
            current_logical_size: None,
            current_physical_size: physical,
            current_logical_size_non_incremental: None,
            current_physical_size_non_incremental: if include_non_incremental_physical {
                physical
            } else {
                None
            },
            wal_source_connstr: None,
            last_received_msg_lsn: None,
            last_received_msg_ts: None,
            pg_version: m.pg_version,
            awaits_download: false,
            state: state.name().to_string(),
            broken_reason: match state {
                TenantState::Broken { reason } => Some(reason),
                _ => None,
            },
            local: LocalTimelineInfo {
                ancestor_timeline_id: m.ancestor_timeline,
                ancestor_lsn,
                current_logical_size: None,
                current_physical_size: physical,
            },
            remote: RemoteTimelineInfo {
                remote_consistent_lsn: None,
            },
        }
    }

    /// Stops every task of the timeline and waits for them.
    pub async fn shutdown(&self) {
        if !matches!(self.state(), TenantState::Broken { .. }) {
            self.set_state(TenantState::Stopping);
        }
        self.cancel.cancel();
        self.gate.close().await;
    }
}
