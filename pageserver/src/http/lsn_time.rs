//! Wall-clock time and LSN: `get_lsn_by_timestamp` and
//! `get_timestamp_of_lsn` of a timeline (the search is in
//! `tenant/timeline/lsn_by_ts.rs`).

use axum::extract::State;
use axum::Json;
use pageserver_api::commit_ts::{format_pg_timestamp, parse_rfc3339_to_pg};
use pageserver_api::models::{LsnByTimestampKind, LsnByTimestampResponse, TimestampOfLsnResponse};
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::error::ApiError;
use super::extract::{PathParams, QueryParams};
use super::AppState;
use crate::tenant::blocking;
use crate::tenant::timeline::lsn_by_ts::LsnForTimestamp;

fn timeline(
    state: &AppState,
    params: &PathParams,
) -> Result<std::sync::Arc<crate::tenant::timeline::Timeline>, ApiError> {
    let tenant_id: TenantId = params.parse("tenant_id")?;
    let timeline_id: TimelineId = params.parse("timeline_id")?;
    let tenant = state.tenants.get(tenant_id)?;
    tenant.check_active()?;
    Ok(tenant.get_timeline(timeline_id)?)
}

/// `GET .../get_lsn_by_timestamp?timestamp=RFC3339[&version=2]`: the LSN
/// right after the last commit at or before the timestamp. Seed 004's
/// answer is the LSN as a JSON string; `version=2` answers
/// `{"lsn", "kind"}` with kind present, past, future or nodata.
pub async fn get_lsn_by_timestamp(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> Result<Json<serde_json::Value>, ApiError> {
    let raw: String = query.parse("timestamp")?;
    let ts = parse_rfc3339_to_pg(&raw)
        .map_err(|e| ApiError::BadRequest(format!("query parameter timestamp: {e}")))?;
    let version: u32 = query.optional("version")?.unwrap_or(1);
    if version != 1 && version != 2 {
        return Err(ApiError::BadRequest(format!(
            "query parameter version must be 1 or 2, got {version}"
        )));
    }
    let tl = timeline(&state, &params)?;
    let found = blocking(move || tl.find_lsn_for_timestamp(ts)).await??;
    let (lsn, kind) = match found {
        LsnForTimestamp::Present(l) => (l, LsnByTimestampKind::Present),
        LsnForTimestamp::Past(l) => (l, LsnByTimestampKind::Past),
        LsnForTimestamp::Future(l) => (l, LsnByTimestampKind::Future),
        LsnForTimestamp::NoData(l) => (l, LsnByTimestampKind::Nodata),
    };
    let body = if version == 2 {
        serde_json::to_value(LsnByTimestampResponse { lsn, kind })
    } else {
        serde_json::to_value(lsn)
    };
    body.map(Json)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot encode the answer: {e}")))
}

/// `GET .../get_timestamp_of_lsn?lsn=X/Y`: the commit timestamp of the last
/// commit at or before the LSN; 404 when there is none.
pub async fn get_timestamp_of_lsn(
    State(state): State<AppState>,
    params: PathParams,
    query: QueryParams,
) -> Result<Json<TimestampOfLsnResponse>, ApiError> {
    let raw: String = query.parse("lsn")?;
    let lsn: Lsn = raw.parse().map_err(|e| {
        ApiError::BadRequest(format!(
            "query parameter lsn {raw:?}: {e}; expected an LSN like 0/16B3748"
        ))
    })?;
    let tl = timeline(&state, &params)?;
    let last = tl.last_record_lsn();
    if lsn > last {
        return Err(ApiError::BadRequest(format!(
            "LSN {lsn} is above the last record LSN {last} of timeline {}/{}",
            tl.tenant_id, tl.timeline_id
        )));
    }
    let name = format!("{}/{}", tl.tenant_id, tl.timeline_id);
    match blocking(move || tl.last_commit_at(lsn)).await?? {
        Some(c) => Ok(Json(TimestampOfLsnResponse {
            timestamp: format_pg_timestamp(c.commit_ts),
            commit_lsn: c.commit_lsn,
        })),
        None => Err(ApiError::NotFound(format!(
            "timeline {name} has no commit at or before LSN {lsn}"
        ))),
    }
}
