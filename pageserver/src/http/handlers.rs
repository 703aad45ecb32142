//! Tenant and timeline routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pageserver_api::models::{
    TenantConfigRequest, TenantConfigResponse, TenantCreateRequest, TenantInfo,
    TimelineCreateRequest, TimelineInfo,
};
use serde_json::json;
use utils::id::{TenantId, TimelineId};

use super::error::ApiError;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::AppState;
use crate::tenant::timeline::Timeline;
use crate::tenant::{blocking, Tenant};

type ApiResult<T> = Result<T, ApiError>;

async fn tenant_info(tenant: Arc<Tenant>) -> ApiResult<TenantInfo> {
    Ok(blocking(move || tenant.info_blocking()).await?)
}

async fn timeline_info(
    timeline: Arc<Timeline>,
    non_incremental_logical: bool,
    non_incremental_physical: bool,
) -> ApiResult<TimelineInfo> {
    Ok(
        blocking(move || timeline.info_blocking(non_incremental_logical, non_incremental_physical))
            .await?,
    )
}

fn tenant_from_path(state: &AppState, params: &PathParams) -> ApiResult<Arc<Tenant>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    Ok(state.tenants.get(tenant_id)?)
}

/// `GET /v1/tenant/`
pub async fn tenant_list(State(state): State<AppState>) -> ApiResult<Json<Vec<TenantInfo>>> {
    let tenants = state.tenants.list();
    let infos = blocking(move || tenants.iter().map(|t| t.info_blocking()).collect()).await?;
    Ok(Json(infos))
}

/// `POST /v1/tenant/`: 201 with the new tenant's id as a JSON string.
pub async fn tenant_create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TenantCreateRequest>,
) -> ApiResult<(StatusCode, Json<TenantId>)> {
    let tenant = state
        .tenants
        .create_tenant(req.new_tenant_id, req.config)
        .await?;
    Ok((StatusCode::CREATED, Json(tenant.tenant_id)))
}

/// `GET /v1/tenant/{tenant_id}`
pub async fn tenant_get(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<TenantInfo>> {
    let tenant = tenant_from_path(&state, &params)?;
    Ok(Json(tenant_info(tenant).await?))
}

/// `DELETE /v1/tenant/{tenant_id}`
pub async fn tenant_delete(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    state.tenants.delete_tenant(tenant_id).await?;
    Ok(Json(json!({})))
}

/// `GET /v1/tenant/{tenant_id}/config`
pub async fn tenant_config_get(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<TenantConfigResponse>> {
    let tenant = tenant_from_path(&state, &params)?;
    Ok(Json(TenantConfigResponse {
        tenant_specific_overrides: tenant.overrides(),
        effective_config: tenant.effective_config(),
    }))
}

/// `PUT /v1/tenant/config`: replaces the tenant's overrides; answers with
/// the tenant's info (as a one-element list, as seed 004 documents).
pub async fn tenant_config_put(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TenantConfigRequest>,
) -> ApiResult<Json<Vec<TenantInfo>>> {
    let tenant = state.tenants.get(req.tenant_id)?;
    tenant.set_config(req.config).await?;
    Ok(Json(vec![tenant_info(tenant).await?]))
}

/// `GET /v1/tenant/{tenant_id}/timeline`
pub async fn timeline_list(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> ApiResult<Json<Vec<TimelineInfo>>> {
    let physical = query.flag("include-non-incremental-physical-size")?;
    let logical = query.flag("include-non-incremental-logical-size")?;
    let tenant = tenant_from_path(&state, &params)?;
    let timelines = tenant.list_timelines();
    let infos = blocking(move || {
        timelines
            .iter()
            .map(|t| t.info_blocking(logical, physical))
            .collect()
    })
    .await?;
    Ok(Json(infos))
}

/// `POST /v1/tenant/{tenant_id}/timeline/`: 201 with the new timeline.
pub async fn timeline_create(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(req): JsonBody<TimelineCreateRequest>,
) -> ApiResult<(StatusCode, Json<TimelineInfo>)> {
    let tenant = tenant_from_path(&state, &params)?;
    let timeline = tenant.create_timeline(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(timeline_info(timeline, false, false).await?),
    ))
}

/// `GET /v1/tenant/{tenant_id}/timeline/{timeline_id}`
pub async fn timeline_get(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> ApiResult<Json<TimelineInfo>> {
    let physical = query.flag("include-non-incremental-physical-size")?;
    let logical = query.flag("include-non-incremental-logical-size")?;
    let tenant = tenant_from_path(&state, &params)?;
    let timeline_id: TimelineId = params.parse("timeline_id")?;
    let timeline = tenant.get_timeline(timeline_id)?;
    Ok(Json(timeline_info(timeline, logical, physical).await?))
}

/// `DELETE /v1/tenant/{tenant_id}/timeline/{timeline_id}`
pub async fn timeline_delete(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = tenant_from_path(&state, &params)?;
    let timeline_id: TimelineId = params.parse("timeline_id")?;
    tenant.delete_timeline(timeline_id).await?;
    Ok(Json(json!({})))
}
