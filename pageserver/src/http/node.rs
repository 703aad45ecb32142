//! Node-level routes: status, the health family, metrics and failpoints.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pageserver_api::models::{HealthResponse, StatusResponse};
use serde_json::json;

use super::error::ApiError;
use super::AppState;
use crate::metrics as m;

/// `GET /v1/status`: the node id.
pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    Json(StatusResponse { id: state.conf.id })
}

fn health_response(
    problem: Option<String>,
    checks: serde_json::Map<String, serde_json::Value>,
) -> Response {
    let (code, status) = match problem {
        None => (StatusCode::OK, "ok".to_string()),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, p),
    };
    (code, Json(HealthResponse { status, checks })).into_response()
}

/// `GET /health`: the process answers HTTP.
pub async fn health() -> Response {
    health_response(None, Default::default())
}

/// `GET /liveness`: 503 naming the loop when a background loop's heartbeat is
/// older than `liveness_heartbeat_limit`.
pub async fn liveness(State(state): State<AppState>) -> Response {
    let limit = state.conf.liveness_heartbeat_limit;
    let mut checks = serde_json::Map::new();
    let mut stale = Vec::new();
    for (name, age) in state.heartbeats.ages() {
        checks.insert(
            name.to_string(),
            json!({"heartbeat_age_secs": age.as_secs_f64(), "limit_secs": limit.as_secs_f64()}),
        );
        if age > limit {
            stale.push(format!(
                "background loop '{name}' last reported {}s ago (limit {}s)",
                age.as_secs(),
                limit.as_secs()
            ));
        }
    }
    let problem = (!stale.is_empty()).then(|| stale.join("; "));
    if let Some(p) = &problem {
        tracing::warn!("liveness check failing: {p}");
    }
    health_response(problem, checks)
}

/// `GET /readiness`: 503 until tenants are loaded, while shutting down,
/// while the work directory cannot be written, and while object storage is
/// failing (consecutive remote operations failed after their retries; the
/// answer counts the tenants that wait for it to load).
pub async fn readiness(State(state): State<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    checks.insert(
        "tenants_loaded".into(),
        json!(state.health.tenants_loaded.load(Ordering::Acquire)),
    );
    checks.insert(
        "shutting_down".into(),
        json!(state.health.shutting_down.load(Ordering::Acquire)),
    );
    checks.insert(
        "disk".into(),
        json!(state
            .health
            .disk_error
            .lock()
            .expect("health lock poisoned")
            .clone()
            .unwrap_or_else(|| "ok".to_string())),
    );
    let waiting = state
        .tenants
        .list()
        .iter()
        .filter(|t| t.state() == pageserver_api::models::TenantState::Loading)
        .count();
    checks.insert("tenants_loading".into(), json!(waiting));
    let remote_problem = state.tenants.remote().health.failing().map(|p| {
        if waiting > 0 {
            format!("{p}; {waiting} tenants wait for it to load")
        } else {
            p
        }
    });
    checks.insert(
        "remote_storage".into(),
        json!(remote_problem.clone().unwrap_or_else(|| "ok".to_string())),
    );
    health_response(state.health.not_ready_reason().or(remote_problem), checks)
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics() -> Result<Response, ApiError> {
    let text = m::gather_text()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot encode metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `PUT /v1/failpoints` (test builds): sets failpoints by name.
pub async fn failpoints(
    super::extract::JsonBody(configs): super::extract::JsonBody<
        Vec<pageserver_api::models::FailpointConfig>,
    >,
) -> Result<Json<serde_json::Value>, ApiError> {
    for c in &configs {
        fail::cfg(&c.name, &c.actions)
            .map_err(|e| ApiError::BadRequest(format!("failpoint {}: {e}", c.name)))?;
        tracing::info!(failpoint = %c.name, actions = %c.actions, "failpoint set");
    }
    Ok(Json(json!({})))
}
