//! `GET /v1/tenant/{t}/timeline/{tl}/basebackup`: the base backup tar
//! (see [`crate::basebackup`]), streamed as the response body.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio_stream::wrappers::ReceiverStream;
use utils::lsn::Lsn;

use super::error::ApiError;
use super::extract::{PathParams, QueryParams};
use super::AppState;
use crate::basebackup;

/// How long a base backup at a future LSN waits for it to be ingested.
const WAIT_LSN_TIMEOUT: Duration = Duration::from_secs(30);

/// Streams a base backup at `?lsn=X/Y` (default: the last record LSN),
/// gzip-compressed with `?gzip=true`. Errors found before the first byte
/// (unknown timeline, LSN below the GC cutoff or not arriving) are the
/// usual JSON errors; a failure while streaming aborts the response, so a
/// truncated archive is never mistaken for a complete one.
pub async fn basebackup(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let tenant_id = params.parse("tenant_id")?;
    let timeline_id = params.parse("timeline_id")?;
    let lsn: Option<Lsn> = query.optional("lsn")?;
    let gzip = query.flag("gzip")?;
    let tenant = state.tenants.get(tenant_id)?;
    tenant.check_active()?;
    let tl = tenant.get_timeline(timeline_id)?;
    let (lsn, prev) = basebackup::resolve_lsn(&tl, lsn, WAIT_LSN_TIMEOUT).await?;
    let rx = basebackup::stream(tl, lsn, prev, gzip);
    let content_type = if gzip {
        "application/gzip"
    } else {
        "application/x-tar"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::HeaderName::from_static("x-basebackup-lsn"),
                lsn.to_string(),
            ),
        ],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}
