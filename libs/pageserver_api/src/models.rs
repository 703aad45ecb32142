//! HTTP request and response bodies.

use serde::{Deserialize, Deserializer, Serialize};
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use crate::tenant_config::TenantConfig;

/// The only PostgreSQL major version we store.
pub const DEFAULT_PG_VERSION: u32 = 15;

/// Lifecycle of a tenant or timeline.
///
/// Serialized as a plain string (`"Active"`), except `Broken`, which is an
/// object carrying the reason: `{"Broken": {"reason": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantState {
    /// Being read from disk after start-up or creation.
    Loading,
    /// Being attached from remote storage: index files are downloaded,
    /// layer files are not (they download on demand).
    Attaching,
    /// Serving requests.
    Active,
    /// Shutting down or being deleted.
    Stopping,
    /// Cannot serve: something on disk or in a background task failed.
    Broken {
        /// What went wrong, for the operator.
        reason: String,
    },
}

impl TenantState {
    /// The state's name without details, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            TenantState::Loading => "Loading",
            TenantState::Attaching => "Attaching",
            TenantState::Active => "Active",
            TenantState::Stopping => "Stopping",
            TenantState::Broken { .. } => "Broken",
        }
    }

    /// Every state name, for metrics that report zero counts too.
    pub const NAMES: [&'static str; 5] = ["Loading", "Attaching", "Active", "Stopping", "Broken"];
}

/// Body of `POST /v1/tenant/`: an optional id (`new_tenant_id`, or
/// `tenant_id` as the seed API also lists) and the config fields at top level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantCreateRequest {
    /// The id to create; generated when absent.
    pub new_tenant_id: Option<TenantId>,
    /// Tenant configuration overrides.
    #[serde(flatten)]
    pub config: TenantConfig,
}

/// Body of `PUT /v1/tenant/config`: replaces the tenant's overrides.
#[derive(Debug, Clone, Serialize)]
pub struct TenantConfigRequest {
    /// The tenant to configure.
    pub tenant_id: TenantId,
    /// The new overrides; fields left out fall back to the node's defaults.
    #[serde(flatten)]
    pub config: TenantConfig,
}

/// Splits `id_keys` off a JSON object and reads the rest as a strict
/// [`TenantConfig`] (serde cannot combine `flatten` with
/// `deny_unknown_fields`, and unknown keys must be refused). Returns the id
/// found under any of `id_keys`; two different ids are an error.
fn split_id_and_config<
    'de,
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Display,
>(
    d: D,
    id_keys: &[&str],
) -> Result<(Option<T>, TenantConfig), D::Error> {
    use serde::de::Error;
    let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    let mut id: Option<T> = None;
    for key in id_keys {
        let Some(value) = map.remove(*key) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let parsed: T =
            serde_json::from_value(value).map_err(|e| D::Error::custom(format!("{key}: {e}")))?;
        match &id {
            Some(prev) if *prev != parsed => {
                return Err(D::Error::custom(format!(
                    "conflicting ids {prev} and {parsed} in {}",
                    id_keys.join(" and ")
                )))
            }
            _ => id = Some(parsed),
        }
    }
    let config: TenantConfig = serde_path_to_error::deserialize(serde_json::Value::Object(map))
        .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner())))?;
    Ok((id, config))
}

impl<'de> Deserialize<'de> for TenantCreateRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (new_tenant_id, config) = split_id_and_config(d, &["new_tenant_id", "tenant_id"])?;
        Ok(TenantCreateRequest {
            new_tenant_id,
            config,
        })
    }
}

impl<'de> Deserialize<'de> for TenantConfigRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (tenant_id, config) = split_id_and_config(d, &["tenant_id"])?;
        let tenant_id = tenant_id.ok_or_else(|| serde::de::Error::missing_field("tenant_id"))?;
        Ok(TenantConfigRequest { tenant_id, config })
    }
}

/// Body of `POST /v1/tenant/{tenant_id}/attach` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantAttachRequest {
    /// The generation to attach with. Without one (single-node mode), the
    /// node uses the highest generation found in remote storage plus one.
    #[serde(default)]
    pub generation: Option<u32>,
}

/// How a node holds a tenant (`PUT /v1/tenant/{tenant_id}/location_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocationMode {
    /// Attached, the only attachment: serves reads and writes, uploads, and
    /// deletes remote objects once its generation is validated.
    AttachedSingle,
    /// Attached with a generation that may be stale (a migration is under
    /// way): serves reads and uploads under its generation, never deletes
    /// remote objects.
    AttachedStale,
    /// A secondary location: a warm cache. This node downloads the tenant's
    /// heatmap and the layers it names in the background, serves no reads,
    /// ingests nothing, uploads and deletes nothing remotely; a later switch
    /// to an attached mode uses the downloaded layers.
    Secondary,
    /// Not held by this node: detached if attached.
    Detached,
}

/// Body of `PUT /v1/tenant/{tenant_id}/location_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationConfigRequest {
    /// The mode to move to.
    pub mode: LocationMode,
    /// The generation of an attached mode; without one, an attach picks the
    /// highest generation in remote storage plus one, and an attached tenant
    /// keeps its generation.
    #[serde(default)]
    pub generation: Option<u32>,
}

/// Response of `PUT /v1/tenant/{tenant_id}/location_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConfigResponse {
    /// The mode in force.
    pub mode: LocationMode,
    /// The generation in force (attached modes).
    pub generation: Option<u32>,
}

/// Response of `POST /v1/tenant/{tenant_id}/attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantAttachResponse {
    /// The generation the tenant is attached with.
    pub generation: u32,
}

/// Response of `GET /v1/tenant/{tenant_id}/timeline/{timeline_id}/evict` style
/// testing routes: how many layers changed residence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictionResponse {
    /// Layer files removed from local disk.
    pub evicted: usize,
    /// Layers that were already not resident.
    pub not_resident: usize,
}

/// Response of `GET /v1/tenant/{tenant_id}/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantConfigResponse {
    /// What the tenant sets itself.
    pub tenant_specific_overrides: TenantConfig,
    /// The overrides merged over the node's defaults: what is in force.
    pub effective_config: TenantConfig,
}

/// A tenant as listed by `GET /v1/tenant/` and `GET /v1/tenant/{tenant_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The tenant's id.
    pub id: TenantId,
    /// Lifecycle state.
    pub state: TenantState,
    /// Bytes of the tenant's files on this node's disk.
    pub current_physical_size: Option<u64>,
    /// Whether layer downloads from object storage are under way.
    pub has_in_progress_downloads: bool,
    /// Number of timelines.
    pub timeline_count: usize,
    /// Whether tenant background loops are running.
    pub background_jobs_running: bool,
}

/// Body of `POST /v1/tenant/{tenant_id}/timeline/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineCreateRequest {
    /// The id to create; generated when absent.
    #[serde(default)]
    pub new_timeline_id: Option<TimelineId>,
    /// Branch from this timeline of the same tenant.
    #[serde(default)]
    pub ancestor_timeline_id: Option<TimelineId>,
    /// Branch point; defaults to the ancestor's last record LSN.
    #[serde(default)]
    pub ancestor_start_lsn: Option<Lsn>,
    /// PostgreSQL major version of the data; only 15 is supported.
    #[serde(default)]
    pub pg_version: Option<u32>,
    /// A primary to stream WAL from (libpq URI or key=value form): the
    /// timeline starts from its base backup. Without it and without an
    /// ancestor, the timeline is bootstrapped with `initdb`.
    #[serde(default)]
    pub wal_source_connstr: Option<String>,
}

/// Body of `PUT /v1/tenant/{tenant_id}/timeline/{timeline_id}/wal_source`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalSourceRequest {
    /// The new WAL source, or `null` to stop streaming.
    pub wal_source_connstr: Option<String>,
    /// When stopping or changing the source, leave the replication slot on
    /// the old source instead of dropping it (for a source that is gone,
    /// such as a stopped compute whose data directory is discarded).
    #[serde(default)]
    pub keep_slot: bool,
}

/// Fields duplicated from [`TimelineInfo`] for older clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalTimelineInfo {
    /// See [`TimelineInfo::ancestor_timeline_id`].
    pub ancestor_timeline_id: Option<TimelineId>,
    /// See [`TimelineInfo::ancestor_lsn`].
    pub ancestor_lsn: Option<Lsn>,
    /// See [`TimelineInfo::current_logical_size`].
    pub current_logical_size: Option<u64>,
    /// See [`TimelineInfo::current_physical_size`].
    pub current_physical_size: Option<u64>,
}

/// Fields duplicated from [`TimelineInfo`] for older clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteTimelineInfo {
    /// See [`TimelineInfo::remote_consistent_lsn`].
    pub remote_consistent_lsn: Option<Lsn>,
}

/// A timeline as returned by the timeline routes.
///
/// Values that no part of the node computes yet are `null`, never invented.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineInfo {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline.
    pub timeline_id: TimelineId,
    /// Parent timeline for a branch.
    pub ancestor_timeline_id: Option<TimelineId>,
    /// Branch point in the parent.
    pub ancestor_lsn: Option<Lsn>,
    /// End of the last WAL record ingested.
    pub last_record_lsn: Lsn,
    /// Start of the last WAL record ingested.
    pub prev_record_lsn: Option<Lsn>,
    /// Everything at or below this LSN is durable on local disk.
    pub disk_consistent_lsn: Lsn,
    /// Everything at or below this LSN is durable in object storage.
    pub remote_consistent_lsn: Option<Lsn>,
    /// Sum of relation sizes at `last_record_lsn`, kept incrementally.
    pub current_logical_size: Option<u64>,
    /// Bytes of the timeline's local files.
    pub current_physical_size: Option<u64>,
    /// Logical size recomputed from scratch (on request).
    pub current_logical_size_non_incremental: Option<u64>,
    /// Physical size recomputed from the file system (on request).
    pub current_physical_size_non_incremental: Option<u64>,
    /// Where WAL is streamed from, password masked.
    pub wal_source_connstr: Option<String>,
    /// LSN of the last message from the WAL source.
    pub last_received_msg_lsn: Option<Lsn>,
    /// Time of the last message from the WAL source, microseconds since epoch.
    pub last_received_msg_ts: Option<u64>,
    /// PostgreSQL major version of the data.
    pub pg_version: u32,
    /// Whether layer files still have to be downloaded to serve reads.
    pub awaits_download: bool,
    /// Lifecycle state name (see [`TenantState`]).
    pub state: String,
    /// Why the timeline is Broken, when it is.
    pub broken_reason: Option<String>,
    /// Deprecated duplicate fields.
    pub local: LocalTimelineInfo,
    /// Deprecated duplicate fields.
    pub remote: RemoteTimelineInfo,
}

/// What `get_lsn_by_timestamp` found (`kind` in its `version=2` answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LsnByTimestampKind {
    /// A commit at or before the timestamp exists: `lsn` is the end of the
    /// last such commit record.
    Present,
    /// The timestamp precedes every retained commit: `lsn` is the earliest
    /// readable LSN.
    Past,
    /// The timestamp is after the last commit: `lsn` is the last record LSN.
    Future,
    /// The timeline has no commits at all: `lsn` is the last record LSN.
    Nodata,
}

/// Answer of `GET .../get_lsn_by_timestamp?version=2`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LsnByTimestampResponse {
    /// The LSN (see [`LsnByTimestampKind`] for which one).
    pub lsn: Lsn,
    /// How the timestamp relates to the timeline's commits.
    pub kind: LsnByTimestampKind,
}

/// Answer of `GET .../get_timestamp_of_lsn`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimestampOfLsnResponse {
    /// Commit timestamp of the last commit at or before the LSN, RFC 3339 UTC.
    pub timestamp: String,
    /// End LSN of that commit record.
    pub commit_lsn: Lsn,
}

/// Per-timeline inputs of the synthetic size model (see
/// `GET /v1/tenant/{tenant_id}/size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSizeInputs {
    /// The timeline.
    pub timeline_id: TimelineId,
    /// Parent of a branch.
    pub ancestor_timeline_id: Option<TimelineId>,
    /// Branch point in the parent (for a branch).
    pub ancestor_lsn: Option<Lsn>,
    /// End of the timeline's WAL.
    pub last_record_lsn: Lsn,
    /// Reads below this LSN are refused (history already collected).
    pub gc_cutoff_lsn: Lsn,
    /// The earliest LSN retention keeps: the cutoff `gc_horizon` and
    /// `pitr_interval` ask for now, never below `gc_cutoff_lsn` nor below
    /// the branch point, never above `last_record_lsn`.
    pub retention_cutoff_lsn: Lsn,
    /// Logical size at `retention_cutoff_lsn`, in bytes.
    pub logical_size_at_retention_cutoff: u64,
    /// Logical size at the branch point (for a branch), in bytes.
    pub logical_size_at_branch_point: Option<u64>,
}

/// Everything the synthetic size is computed from (`?inputs_only=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticSizeInputs {
    /// `gc_horizon` in force, bytes of WAL.
    pub gc_horizon: u64,
    /// `pitr_interval` in force, seconds.
    pub pitr_interval_secs: u64,
    /// Every Active timeline, parents before children.
    pub timelines: Vec<TimelineSizeInputs>,
}

/// How one timeline contributes to the synthetic size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeSegmentKind {
    /// A branch whose branch point lies in the parent's retained range:
    /// only its own WAL since the branch point.
    BranchWal,
    /// A root, or a branch not covered by its parent's retention: the
    /// logical size at `start_lsn` plus the WAL from there.
    LogicalAndWal,
}

/// One timeline's share of the synthetic size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeSegment {
    /// The timeline.
    pub timeline_id: TimelineId,
    /// Parent of a branch.
    pub ancestor_timeline_id: Option<TimelineId>,
    /// How the share is computed.
    pub kind: SizeSegmentKind,
    /// Where the counted history starts.
    pub start_lsn: Lsn,
    /// Where it ends (the last record LSN).
    pub end_lsn: Lsn,
    /// Logical size counted at `start_lsn` (0 for [`SizeSegmentKind::BranchWal`]).
    pub logical_size: u64,
    /// WAL bytes from `start_lsn` to `end_lsn`.
    pub wal_bytes: u64,
    /// `logical_size + wal_bytes`.
    pub size: u64,
}

/// Answer of `GET /v1/tenant/{tenant_id}/size` (seed 004's `id` and `size`
/// plus the breakdown).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantSizeResponse {
    /// The tenant.
    pub id: TenantId,
    /// Synthetic size in bytes: the sum of the segments' sizes.
    pub size: u64,
    /// One segment per timeline.
    pub segments: Vec<SizeSegment>,
    /// What the size was computed from.
    pub inputs: SyntheticSizeInputs,
}

/// Response of `GET /v1/tenant/{tenant_id}/secondary/status` and of
/// `POST /v1/tenant/{tenant_id}/secondary/download`: the progress of a
/// secondary location's warm cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryStatus {
    /// Generation of the attached node that wrote the heatmap in use
    /// (`None` until one was read).
    pub heatmap_generation: Option<u32>,
    /// Layers the heatmap names (and the remote index confirms).
    pub layers_total: u64,
    /// Bytes of those layers.
    pub bytes_total: u64,
    /// Of those, layers present locally and checked.
    pub layers_downloaded: u64,
    /// Bytes of the layers present locally.
    pub bytes_downloaded: u64,
    /// Download passes finished since this location started.
    pub passes: u64,
    /// Unix seconds at which the last pass finished.
    pub last_pass_at: Option<u64>,
    /// A download pass is running now.
    pub in_progress: bool,
    /// What the last pass failed on, if it failed.
    pub last_error: Option<String>,
}

/// Response of `POST /v1/tenant/{tenant_id}/heatmap_upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeatmapUploadResponse {
    /// Whether a heatmap was uploaded (`false`: skipped, see `reason`).
    pub uploaded: bool,
    /// Layers it names.
    pub layers: u64,
    /// Why nothing was uploaded.
    pub reason: Option<String>,
}

/// Response of `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The node's id from its configuration.
    pub id: u64,
}

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpErrorBody {
    /// What went wrong and, where the caller can act, what to do.
    pub msg: String,
}

/// Response of `GET /health`, `/liveness` and `/readiness`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthResponse {
    /// "ok", or what is wrong.
    pub status: String,
    /// Per-check details, e.g. the age of each background loop's heartbeat.
    #[serde(default)]
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// One failpoint setting for `PUT /v1/failpoints` (test builds only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailpointConfig {
    /// Failpoint name.
    pub name: String,
    /// Actions in the `fail` crate's syntax, e.g. `return`, `sleep(1000)`, `off`.
    pub actions: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_create_request_forms() {
        let r: TenantCreateRequest = serde_json::from_str("{}").unwrap();
        assert!(r.new_tenant_id.is_none());
        let id = TenantId::generate();
        let r: TenantCreateRequest =
            serde_json::from_str(&format!(r#"{{"new_tenant_id": "{id}", "gc_horizon": 5}}"#))
                .unwrap();
        assert_eq!(r.new_tenant_id, Some(id));
        assert_eq!(r.config.gc_horizon, Some(5));
        let r: TenantCreateRequest =
            serde_json::from_str(&format!(r#"{{"tenant_id": "{id}"}}"#)).unwrap();
        assert_eq!(r.new_tenant_id, Some(id));
        let other = TenantId::generate();
        let err = serde_json::from_str::<TenantCreateRequest>(&format!(
            r#"{{"tenant_id": "{id}", "new_tenant_id": "{other}"}}"#
        ))
        .unwrap_err();
        assert!(err.to_string().contains("conflicting"), "{err}");
        let err = serde_json::from_str::<TenantCreateRequest>(r#"{"bogus": 1}"#).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert!(serde_json::from_str::<TenantCreateRequest>(r#"[]"#).is_err());
        assert!(
            serde_json::from_str::<TenantCreateRequest>(r#"{"new_tenant_id": "xyz"}"#).is_err()
        );
    }

    #[test]
    fn tenant_config_request_needs_id() {
        let err = serde_json::from_str::<TenantConfigRequest>(r#"{"gc_horizon": 1}"#).unwrap_err();
        assert!(err.to_string().contains("tenant_id"), "{err}");
    }

    #[test]
    fn state_serialization() {
        assert_eq!(
            serde_json::to_string(&TenantState::Active).unwrap(),
            r#""Active""#
        );
        assert_eq!(
            serde_json::to_string(&TenantState::Broken { reason: "x".into() }).unwrap(),
            r#"{"Broken":{"reason":"x"}}"#
        );
    }
}
