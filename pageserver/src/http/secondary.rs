//! Secondary location routes: download now, progress, and the attached
//! side's heatmap upload (`docs/remote_storage.md`, "Secondary locations").

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pageserver_api::models::{HeatmapUploadResponse, SecondaryStatus};
use utils::id::TenantId;

use super::error::ApiError;
use super::extract::{PathParams, QueryParams};
use super::AppState;

type ApiResult<T> = Result<T, ApiError>;

/// Default wait of `POST .../secondary/download`.
const DEFAULT_DOWNLOAD_WAIT: Duration = Duration::from_secs(30);
/// Longest accepted `wait_ms`.
const MAX_DOWNLOAD_WAIT_MS: u64 = 600_000;

/// `POST /v1/tenant/{tenant_id}/secondary/download`: runs a download pass
/// now; 200 with the progress when it finished within `?wait_ms=` (default
/// 30 s), 202 when it goes on in the background, 503 when it failed.
pub async fn download(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> ApiResult<(StatusCode, Json<SecondaryStatus>)> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let wait = match query.optional::<u64>("wait_ms")? {
        None => DEFAULT_DOWNLOAD_WAIT,
        Some(ms) if ms > MAX_DOWNLOAD_WAIT_MS => {
            return Err(ApiError::BadRequest(format!(
                "wait_ms {ms} is above the limit of {MAX_DOWNLOAD_WAIT_MS}"
            )))
        }
        Some(ms) => Duration::from_millis(ms),
    };
    let secondary = state.tenants.get_secondary(tenant_id)?;
    let finished = secondary.download_now(wait).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "download pass of secondary tenant {tenant_id} failed: {e}; it is retried at the next pass"
        ))
    })?;
    let code = if finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(secondary.status())))
}

/// `GET /v1/tenant/{tenant_id}/secondary/status`: the warm cache's progress.
pub async fn status(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<SecondaryStatus>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    Ok(Json(state.tenants.get_secondary(tenant_id)?.status()))
}

/// `POST /v1/tenant/{tenant_id}/heatmap_upload`: the attached tenant
/// uploads its heatmap now (or says why it must not).
pub async fn heatmap_upload(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<HeatmapUploadResponse>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let tenant = state.tenants.get(tenant_id)?;
    tenant.check_active()?;
    let response = tenant
        .upload_heatmap()
        .await
        .map_err(|e| ApiError::Unavailable(format!("{e}; retry later")))?;
    Ok(Json(response))
}
