//! Tenant placement routes: attach, detach, `location_config`; and the
//! remote-storage testing routes (fault injection, eviction).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
#[cfg(feature = "testing")]
use pageserver_api::models::EvictionResponse;
use pageserver_api::models::{
    LocationConfigRequest, LocationConfigResponse, TenantAttachRequest, TenantAttachResponse,
};
use serde_json::json;
use utils::generation::Generation;
use utils::id::TenantId;

use super::error::ApiError;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::AppState;
#[cfg(feature = "testing")]
use crate::tenant::blocking;
use crate::tenant::mgr::DETACH_UPLOAD_TIMEOUT;

type ApiResult<T> = Result<T, ApiError>;

/// `POST /v1/tenant/{tenant_id}/attach`: 202; the tenant is Attaching,
/// then Active.
pub async fn attach(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(req): JsonBody<TenantAttachRequest>,
) -> ApiResult<(StatusCode, Json<TenantAttachResponse>)> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let generation = state
        .tenants
        .attach_tenant(tenant_id, req.generation.map(Generation), false)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TenantAttachResponse {
            generation: generation.0,
        }),
    ))
}

/// `POST /v1/tenant/{tenant_id}/detach`: flush, wait for uploads, remove
/// local state. `?timeout_secs=N` bounds the wait (default 60).
pub async fn detach(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let timeout = query
        .optional::<u64>("timeout_secs")?
        .map_or(DETACH_UPLOAD_TIMEOUT, std::time::Duration::from_secs);
    state.tenants.detach_tenant(tenant_id, timeout).await?;
    Ok(Json(json!({})))
}

/// `PUT /v1/tenant/{tenant_id}/location_config`.
pub async fn location_config(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(req): JsonBody<LocationConfigRequest>,
) -> ApiResult<Json<LocationConfigResponse>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let generation = state
        .tenants
        .set_location(tenant_id, req.mode, req.generation.map(Generation))
        .await?;
    Ok(Json(LocationConfigResponse {
        mode: req.mode,
        generation: generation.map(|g| g.0),
    }))
}

/// `PUT /v1/remote_storage/faults` (test builds): sets the faults injected
/// into every object storage call.
#[cfg(feature = "testing")]
pub async fn set_faults(
    State(state): State<AppState>,
    JsonBody(config): JsonBody<remote_storage::fault::FaultConfig>,
) -> ApiResult<Json<serde_json::Value>> {
    tracing::info!(?config, "remote storage faults set");
    state
        .tenants
        .remote()
        .faults
        .set(config)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(json!({})))
}

/// `PUT /v1/tenant/{tenant_id}/timeline/{timeline_id}/evict` (test builds):
/// evicts every resident layer that is in remote storage.
#[cfg(feature = "testing")]
pub async fn evict(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<EvictionResponse>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let timeline_id: utils::id::TimelineId = params.parse("timeline_id")?;
    let tenant = state.tenants.get(tenant_id)?;
    let timeline = tenant.get_timeline(timeline_id)?;
    let (evicted, not_resident) = blocking(move || timeline.evict_all_blocking())
        .await?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("eviction failed: {e}")))?;
    Ok(Json(EvictionResponse {
        evicted,
        not_resident,
    }))
}

/// Body of `PUT /v1/testing/disk_usage`.
#[cfg(feature = "testing")]
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUsageOverride {
    /// Size of the simulated disk; `null` measures the file system again.
    pub total_bytes: Option<u64>,
}

/// `PUT /v1/testing/disk_usage` (test builds): disk-usage eviction measures
/// a simulated disk of `total_bytes` whose used bytes are the resident
/// layer files.
#[cfg(feature = "testing")]
pub async fn set_disk_usage(
    JsonBody(req): JsonBody<DiskUsageOverride>,
) -> ApiResult<Json<serde_json::Value>> {
    if req.total_bytes == Some(0) {
        return Err(ApiError::BadRequest(
            "total_bytes must be greater than 0 (or null to measure the file system)".to_string(),
        ));
    }
    *crate::tenant::timeline::residence::DISK_USAGE_OVERRIDE
        .lock()
        .expect("lock poisoned") = req.total_bytes;
    tracing::info!(total_bytes = ?req.total_bytes, "simulated disk for disk-usage eviction set");
    Ok(Json(json!({})))
}
