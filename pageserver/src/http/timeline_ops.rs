//! Timeline maintenance routes (`checkpoint`, `compact`, `do_gc`) and, in
//! test builds, direct value access (`test/values`, `test/value`) for
//! exercising the storage engine before WAL ingest.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utils::id::{TenantId, TimelineId};

use super::error::ApiError;
use super::extract::{JsonBody, PathParams};
use super::AppState;
use crate::tenant::timeline::compaction::CompactionStats;
use crate::tenant::timeline::gc::GcStats;

type ApiResult<T> = Result<T, ApiError>;

fn ids(params: &PathParams) -> ApiResult<(TenantId, TimelineId)> {
    Ok((params.parse("tenant_id")?, params.parse("timeline_id")?))
}

/// A timeline of an Active tenant (reads of a Loading or Attaching tenant
/// are refused, as on the page service).
#[cfg(feature = "testing")]
fn active_timeline(
    state: &AppState,
    tenant_id: TenantId,
    timeline_id: TimelineId,
) -> ApiResult<std::sync::Arc<crate::tenant::timeline::Timeline>> {
    let tenant = state.tenants.get(tenant_id)?;
    tenant.check_active()?;
    Ok(tenant.get_timeline(timeline_id)?)
}

/// `PUT .../checkpoint`: freezes and flushes; answers once durable.
pub async fn checkpoint(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<serde_json::Value>> {
    let (tenant_id, timeline_id) = ids(&params)?;
    let tenant = state.tenants.get(tenant_id)?;
    tenant.checkpoint_timeline(timeline_id).await?;
    let tl = tenant.get_timeline(timeline_id)?;
    Ok(Json(serde_json::json!({
        "disk_consistent_lsn": tl.disk_consistent_lsn(),
    })))
}

/// `PUT .../compact`: checkpoint, then L0 -> L1 and image layers.
pub async fn compact(
    State(state): State<AppState>,
    params: PathParams,
) -> ApiResult<Json<CompactionStats>> {
    let (tenant_id, timeline_id) = ids(&params)?;
    let tenant = state.tenants.get(tenant_id)?;
    Ok(Json(tenant.compact_timeline(timeline_id).await?))
}

/// Body of `do_gc`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Overrides the tenant's `gc_horizon` (bytes) for this run.
    #[serde(default)]
    pub gc_horizon: Option<u64>,
}

/// `PUT .../do_gc`: runs GC now.
pub async fn do_gc(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(req): JsonBody<GcRequest>,
) -> ApiResult<Json<GcStats>> {
    let (tenant_id, timeline_id) = ids(&params)?;
    let tenant = state.tenants.get(tenant_id)?;
    Ok(Json(tenant.gc_timeline(timeline_id, req.gc_horizon).await?))
}

/// `PUT .../wal_source`: changes or (with `null`) clears the timeline's
/// WAL source; the walreceiver restarts with it.
pub async fn set_wal_source(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(req): JsonBody<pageserver_api::models::WalSourceRequest>,
) -> ApiResult<Json<pageserver_api::models::TimelineInfo>> {
    let (tenant_id, timeline_id) = ids(&params)?;
    let source = req
        .wal_source_connstr
        .as_deref()
        .map(pq_proto::ConnConfig::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("wal_source_connstr: {e}")))?;
    let tenant = state.tenants.get(tenant_id)?;
    tenant.check_active()?;
    let tl = tenant.get_timeline(timeline_id)?;
    let clearing = source.is_none();
    let old = crate::tenant::bootstrap::read_wal_source(tl.path()).map_err(ApiError::Internal)?;
    let writer = tl.clone();
    tokio::task::spawn_blocking(move || writer.set_wal_source(source))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("wal source task failed: {e}")))?
        .map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "cannot store the WAL source of timeline {timeline_id}: {e}"
            ))
        })?;
    if let (true, false, Some(old)) = (clearing, req.keep_slot, old) {
        crate::walreceiver::drop_slot(&tl, &old).await;
    }
    let info = tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>(tl.info_blocking(false, false))
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("wal source task failed: {e}")))?
    .map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "cannot store the WAL source of timeline {timeline_id}: {e}"
        ))
    })?;
    Ok(Json(info))
}

#[cfg(feature = "testing")]
pub use testing::*;

#[cfg(feature = "testing")]
mod testing {
    use std::time::Duration;

    use bytes::Bytes;
    use pageserver_api::key::Key;
    use pageserver_api::value::Value;
    use serde::{Deserialize, Serialize};
    use utils::lsn::Lsn;

    use super::*;
    use crate::http::extract::QueryParams;

    /// One value to store: an image given in hex.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TestValue {
        key: Key,
        lsn: Lsn,
        image_hex: String,
    }

    /// Body of `test/values`: values in LSN order, then `finish_lsn` is published.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TestPutRequest {
        values: Vec<TestValue>,
        finish_lsn: Lsn,
    }

    /// Answer of `test/value`.
    #[derive(Debug, Serialize)]
    pub struct TestGetResponse {
        image_hex: String,
    }

    /// `PUT .../test/values` (test builds): stores page images.
    pub async fn test_put(
        State(state): State<AppState>,
        params: PathParams,
        JsonBody(req): JsonBody<TestPutRequest>,
    ) -> ApiResult<Json<serde_json::Value>> {
        let (tenant_id, timeline_id) = ids(&params)?;
        let tenant = state.tenants.get(tenant_id)?;
        tenant.check_active()?;
        let tl = tenant.get_timeline(timeline_id)?;
        let mut decoded = Vec::with_capacity(req.values.len());
        for v in req.values {
            if v.lsn > req.finish_lsn {
                return Err(ApiError::BadRequest(format!(
                    "value of key {} at {} is above finish_lsn {}",
                    v.key, v.lsn, req.finish_lsn
                )));
            }
            let bytes = hex::decode(&v.image_hex)
                .map_err(|e| ApiError::BadRequest(format!("image_hex of key {}: {e}", v.key)))?;
            decoded.push((v.key, v.lsn, Value::Image(Bytes::from(bytes))));
        }
        let finish = req.finish_lsn;
        tokio::task::spawn_blocking(move || {
            let mut w = tl.writer();
            for (key, lsn, value) in &decoded {
                w.put(*key, *lsn, value)?;
            }
            w.finish_write(finish)
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("write task failed: {e}")))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(Json(serde_json::json!({})))
    }

    /// Blocks of `rel` stored at `lsn`; 0 when the relation does not exist.
    fn stored_rel_size(
        tl: &crate::tenant::timeline::Timeline,
        rel: pageserver_api::key::RelTag,
        lsn: Lsn,
    ) -> Result<u32, crate::tenant::timeline::read::PageReconstructError> {
        use crate::tenant::timeline::read::PageReconstructError as E;
        match tl.get_blocking(pageserver_api::key::rel_size_key(rel), lsn) {
            Ok(v) => Ok(u32::from_le_bytes(v[..4].try_into().unwrap_or_default())),
            Err(E::MissingKey { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// `GET .../test/relation?spcnode&dbnode&relnode&forknum&lsn` (test
    /// builds): every page of a relation fork as of an LSN, concatenated
    /// (`application/octet-stream`; empty when the fork does not exist).
    pub async fn test_relation(
        State(state): State<AppState>,
        params: PathParams,
        query: QueryParams,
    ) -> ApiResult<axum::response::Response> {
        use axum::response::IntoResponse;
        use pageserver_api::key::{rel_block_key, RelTag};
        let (tenant_id, timeline_id) = ids(&params)?;
        let rel = RelTag {
            spcnode: query.parse("spcnode")?,
            dbnode: query.parse("dbnode")?,
            relnode: query.parse("relnode")?,
            forknum: query.parse("forknum")?,
        };
        let lsn: Lsn = query.parse("lsn")?;
        let tl = active_timeline(&state, tenant_id, timeline_id)?;
        tl.wait_lsn(lsn, Duration::from_secs(30)).await?;
        let body = tokio::task::spawn_blocking(move || {
            let size = stored_rel_size(&tl, rel, lsn)?;
            let mut out = Vec::with_capacity(size as usize * 8192);
            for blk in 0..size {
                out.extend_from_slice(&tl.get_blocking(rel_block_key(rel, blk), lsn)?);
            }
            Ok::<_, crate::tenant::timeline::read::PageReconstructError>(out)
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("read task failed: {e}")))??;
        Ok((
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            body,
        )
            .into_response())
    }

    /// What `test/compare_relation` found.
    #[derive(Debug, Serialize)]
    pub struct CompareReport {
        /// Blocks in the primary's files.
        file_blocks: u32,
        /// Blocks the timeline has at the LSN.
        stored_blocks: u32,
        /// Blocks past `stored_blocks` in the files that are all zeros:
        /// PostgreSQL extends relations by empty pages without WAL, so a
        /// physical standby lacks them too until they are used.
        extra_zero_blocks: u32,
        /// Blocks whose masked contents differ (at most 20 listed).
        mismatched: Vec<u32>,
        /// Number of differing blocks.
        mismatch_count: u32,
    }

    /// `GET .../test/compare_relation?path&spcnode&dbnode&relnode&lsn` (test
    /// builds): compares the main fork stored at `lsn` with a relation's
    /// files on this machine (`path`, `path.1`, ...), page by page after
    /// the masking PostgreSQL's `wal_consistency_checking` applies.
    pub async fn test_compare_relation(
        State(state): State<AppState>,
        params: PathParams,
        query: QueryParams,
    ) -> ApiResult<Json<CompareReport>> {
        use pageserver_api::key::{rel_block_key, RelTag};
        use postgres_ffi::page::mask_page_for_comparison;
        let (tenant_id, timeline_id) = ids(&params)?;
        let path: String = query.parse("path")?;
        let rel = RelTag {
            spcnode: query.parse("spcnode")?,
            dbnode: query.parse("dbnode")?,
            relnode: query.parse("relnode")?,
            forknum: 0,
        };
        let lsn: Lsn = query.parse("lsn")?;
        let tl = active_timeline(&state, tenant_id, timeline_id)?;
        tl.wait_lsn(lsn, Duration::from_secs(30)).await?;
        let report = tokio::task::spawn_blocking(move || -> anyhow::Result<CompareReport> {
            let mut file = Vec::new();
            for seg in 0.. {
                let p = if seg == 0 {
                    path.clone()
                } else {
                    format!("{path}.{seg}")
                };
                match std::fs::read(&p) {
                    Ok(b) => file.extend_from_slice(&b),
                    Err(_) if seg > 0 => break,
                    Err(e) => anyhow::bail!("cannot read {p}: {e}"),
                }
            }
            let stored_blocks = stored_rel_size(&tl, rel, lsn)?;
            let file_blocks = (file.len() / 8192) as u32;
            let is_zero = |b: &u32| {
                file[*b as usize * 8192..(*b as usize + 1) * 8192]
                    .iter()
                    .all(|x| *x == 0)
            };
            let extra_zero_blocks = (stored_blocks..file_blocks).take_while(is_zero).count() as u32;
            let mut report = CompareReport {
                file_blocks,
                stored_blocks,
                extra_zero_blocks,
                mismatched: Vec::new(),
                mismatch_count: 0,
            };
            for blk in 0..file_blocks.min(stored_blocks) {
                let ours = tl.get_blocking(rel_block_key(rel, blk), lsn)?;
                let theirs = &file[blk as usize * 8192..(blk as usize + 1) * 8192];
                if mask_page_for_comparison(&ours) != mask_page_for_comparison(theirs) {
                    report.mismatch_count += 1;
                    if report.mismatched.len() < 20 {
                        report.mismatched.push(blk);
                    }
                }
            }
            Ok(report)
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("compare task failed: {e}")))?
        .map_err(ApiError::Internal)?;
        Ok(Json(report))
    }

    /// `GET .../test/value?key=K&lsn=L` (test builds): a value as of an LSN.
    pub async fn test_get(
        State(state): State<AppState>,
        params: PathParams,
        query: QueryParams,
    ) -> ApiResult<Json<TestGetResponse>> {
        let (tenant_id, timeline_id) = ids(&params)?;
        let key: Key = query.parse("key")?;
        let lsn: Lsn = query.parse("lsn")?;
        let tl = active_timeline(&state, tenant_id, timeline_id)?;
        let img = tl.get(key, lsn, Duration::from_secs(5)).await?;
        Ok(Json(TestGetResponse {
            image_hex: hex::encode(&img),
        }))
    }
}
