//! Size routes: `GET /v1/tenant/{tenant_id}/size` (synthetic size with its
//! per-timeline breakdown, or only its inputs) and
//! `GET /v1/tenant/{tenant_id}/synthetic_size` (the same, or the branch tree
//! drawn as SVG / an HTML page). The model is in `tenant/size.rs`.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pageserver_api::models::TenantSizeResponse;
use utils::id::TenantId;

use super::error::ApiError;
use super::extract::{PathParams, QueryParams};
use super::size_svg;
use super::AppState;
use crate::tenant::size::calculate;

async fn tenant_size_response(
    state: &AppState,
    params: &PathParams,
) -> Result<TenantSizeResponse, ApiError> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let tenant = state.tenants.get(tenant_id)?;
    let inputs = tenant.size_inputs().await?;
    let segments = calculate(&inputs);
    Ok(TenantSizeResponse {
        id: tenant_id,
        size: segments.iter().map(|s| s.size).sum(),
        segments,
        inputs,
    })
}

/// `GET /v1/tenant/{tenant_id}/size[?inputs_only=true]`: seed 004's
/// `{"id", "size"}` with `segments` and `inputs`; with `inputs_only` the
/// same without `size` (what the size would be computed from).
pub async fn tenant_size(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> Result<Json<serde_json::Value>, ApiError> {
    let inputs_only = query.flag("inputs_only")?;
    let size = tenant_size_response(&state, &params).await?;
    let mut body = serde_json::to_value(&size)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot encode the size: {e}")))?;
    if inputs_only {
        if let Some(obj) = body.as_object_mut() {
            obj.remove("size");
        }
    }
    Ok(Json(body))
}

/// `GET /v1/tenant/{tenant_id}/synthetic_size[?format=svg|json]`: JSON as
/// `/size`, an SVG of the branch tree with `format=svg`, or an HTML page
/// embedding it when the client accepts `text/html` (and sets no format).
pub async fn synthetic_size(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = match query.optional::<String>("format")?.as_deref() {
        None => {
            let wants_html = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            if wants_html {
                "html"
            } else {
                "json"
            }
        }
        Some("svg") => "svg",
        Some("json") => "json",
        Some("html") => "html",
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "query parameter format must be svg, html or json, got {other:?}"
            )))
        }
    };
    let size = tenant_size_response(&state, &params).await?;
    Ok(match format {
        "svg" => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            size_svg::render_svg(&size),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            size_svg::render_html(&size),
        )
            .into_response(),
        _ => Json(size).into_response(),
    })
}
