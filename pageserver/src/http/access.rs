//! Who may call what. Every route declares an [`Access`] in the route table
//! (`routes.rs`); [`check_access`] runs before any handler and before any
//! body byte is read, and denies routes that declared nothing.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use utils::auth::{check_permission, parse_bearer};
use utils::id::{TenantId, TimelineId};

use super::error::ApiError;
use super::AppState;
use crate::metrics;

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, status and metrics.
    Public,
    /// A `pageserverapi` token: operations on the whole node.
    Node,
    /// A `tenant` token for the path's `{tenant_id}`, or a `pageserverapi` token.
    Tenant,
}

/// Header carrying the request id; generated when the client sends none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Authenticates and authorizes the request against its route's declared
/// [`Access`], then enforces the body cap on the declared length. Runs
/// before the handler, so nothing of the body is read for refused requests.
///
/// A refused request's body stays unread, so the answer carries
/// `Connection: close`: the client must not send its next request on a
/// connection with unread bytes in it.
pub async fn check_access(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    match authorize(state, req, next).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = e.into_response();
            if has_body {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

async fn authorize(state: AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let access = matched
        .as_ref()
        .and_then(|p| state.access.get(&(parts.method.clone(), p.clone())))
        .copied();
    let Some(access) = access else {
        return Err(ApiError::Forbidden(format!(
            "{} {} declares no access scope and is denied",
            parts.method,
            matched.as_deref().unwrap_or(parts.uri.path())
        )));
    };

    let params = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let span = tracing::Span::current();
    if let Some(t) = param("tenant_id") {
        span.record("tenant_id", tracing::field::display(&t));
    }
    if let Some(t) = param("timeline_id") {
        span.record("timeline_id", tracing::field::display(&t));
    }

    if let (Some(auth), false) = (&state.auth, access == Access::Public) {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("<non-ASCII header>"));
        let claims = auth.decode(parse_bearer(header)?)?;
        let tenant = match access {
            Access::Tenant => {
                let raw = param("tenant_id").unwrap_or_default();
                Some(raw.parse::<TenantId>().map_err(|e| {
                    ApiError::BadRequest(format!("invalid tenant_id {raw:?} in path: {e}"))
                })?)
            }
            Access::Node | Access::Public => None,
        };
        check_permission(&claims, tenant)?;
    }
    // Ids that do not parse are a 400 even under Trust auth, before any work.
    if let Some(raw) = param("tenant_id") {
        raw.parse::<TenantId>()
            .map_err(|e| ApiError::BadRequest(format!("invalid tenant_id {raw:?} in path: {e}")))?;
    }
    if let Some(raw) = param("timeline_id") {
        raw.parse::<TimelineId>().map_err(|e| {
            ApiError::BadRequest(format!("invalid timeline_id {raw:?} in path: {e}"))
        })?;
    }

    let cap = state.conf.max_request_body_bytes;
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::BadRequest("invalid Content-Length header".to_string()))?;
        if len > cap {
            return Err(ApiError::PayloadTooLarge(format!(
                "request body of {len} bytes is larger than the limit of {cap} bytes"
            )));
        }
    }
    Ok(next.run(Request::from_parts(parts, body)).await)
}

/// Route template for metric labels: the matched path without a trailing
/// slash, or "unmatched".
fn route_label(req: &Request) -> String {
    match req.extensions().get::<MatchedPath>() {
        Some(m) => {
            let p = m.as_str();
            if p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p.to_string()
            }
        }
        None => "unmatched".to_string(),
    }
}

/// Wraps every request in a span with a request id (echoed in the
/// response), and counts and times it by route and status.
pub async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = route_label(&req);
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_string)
        .unwrap_or_else(|| utils::id::TimelineId::generate().to_string());
    let span = tracing::info_span!(
        "http",
        %method,
        path = %req.uri().path(),
        request_id = %request_id,
        tenant_id = tracing::field::Empty,
        timeline_id = tracing::field::Empty,
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = start.elapsed();
    metrics::HTTP_REQUESTS
        .with_label_values(&[method.as_str(), &route, status.as_str()])
        .inc();
    metrics::HTTP_REQUEST_DURATION
        .with_label_values(&[method.as_str(), &route])
        .observe(elapsed.as_secs_f64());
    let _enter = span.enter();
    if route == "/metrics" || route == "/health" || route == "/liveness" || route == "/readiness" {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request done"
        );
    } else {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request done"
        );
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
