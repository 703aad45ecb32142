//! The walreceiver: streams WAL from a PostgreSQL 15 primary over physical
//! replication into a timeline (DESIGN.md section 1).
//!
//! One task per timeline with a WAL source. It connects, makes sure a
//! physical replication slot exists (named after the timeline, so the
//! primary keeps WAL until we report it durable), starts streaming at the
//! timeline's last record LSN, decodes and ingests records, and sends
//! standby status updates: write = received, flush = apply =
//! `disk_consistent_lsn`. Errors reconnect with backoff; an ingest error
//! that retrying cannot fix (a record without a page image) makes the
//! timeline Broken and stops the task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pageserver_api::models::TenantState;
use postgres_ffi::pg_constants::{WAL_SEGMENT_SIZE, XLOG_BLCKSZ};
use postgres_ffi::waldecoder::WalStreamDecoder;
use postgres_ffi::xlog_utils::{XLOG_SIZE_OF_XLOG_LONG_PHD, XLOG_SIZE_OF_XLOG_SHORT_PHD};
use pq_proto::{ConnConfig, ReplicationConnection, ReplicationMessage, ReplicationStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utils::lsn::Lsn;

use crate::tenant::timeline::Timeline;
use crate::walingest::{IngestError, WalIngest};

/// How often status updates go out while WAL flows or not.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// After this long without new WAL, ingested data is flushed so that the
/// reported flush position reaches the primary's end of WAL.
const IDLE_FLUSH_AFTER: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What `TimelineInfo` shows of the walreceiver.
#[derive(Debug, Clone, Default)]
pub struct WalReceiverStatus {
    /// The source's connection string with the password masked.
    pub connstr_masked: String,
    /// Whether a replication stream is open.
    pub streaming: bool,
    /// End of the WAL in the last message received.
    pub last_received_msg_lsn: Option<Lsn>,
    /// When the last message arrived, microseconds since the Unix epoch.
    pub last_received_msg_ts: Option<u64>,
    /// The last connection or streaming error.
    pub last_error: Option<String>,
}

/// A running walreceiver task.
pub struct WalReceiver {
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Shared status.
    pub status: Arc<Mutex<WalReceiverStatus>>,
}

/// Physical slot name for a timeline: `pageserver_` and the timeline id.
pub fn slot_name(tl: &Timeline) -> String {
    format!("pageserver_{}", tl.timeline_id)
}

impl WalReceiver {
    /// Starts streaming `cfg` into `tl` until `cancel` (a child of the
    /// timeline's token) fires. The task holds the timeline's gate.
    pub fn spawn(
        tl: Arc<Timeline>,
        cfg: ConnConfig,
        cancel: CancellationToken,
    ) -> Option<WalReceiver> {
        let guard = tl.gate.enter().ok()?;
        let status = Arc::new(Mutex::new(WalReceiverStatus {
            connstr_masked: cfg.masked(),
            ..Default::default()
        }));
        let (task_status, task_cancel) = (status.clone(), cancel.clone());
        let span = tracing::info_span!("walreceiver", tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                run(tl, cfg, task_status, task_cancel).await;
            }
            .instrument(span),
        );
        Some(WalReceiver { cancel, status })
    }
}

/// Drops the timeline's replication slot on `cfg`'s primary, so that it
/// stops keeping WAL for us: when the timeline is deleted or its source
/// cleared. Best effort, bounded in time; failures are logged.
pub async fn drop_slot(tl: &Timeline, cfg: &ConnConfig) {
    const LIMIT: Duration = Duration::from_secs(10);
    let slot = slot_name(tl);
    let cancel = CancellationToken::new();
    let work = async {
        let mut conn = ReplicationConnection::connect(cfg, &cancel).await?;
        conn.drop_slot_if_exists(&slot).await
    };
    match tokio::time::timeout(LIMIT, work).await {
        Ok(Ok(true)) => {
            tracing::info!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "dropped replication slot {slot} on {}", cfg.masked())
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "cannot drop replication slot {slot} on {}: {e}; drop it by hand", cfg.masked())
        }
        Err(_) => {
            tracing::warn!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "dropping replication slot {slot} on {} took over {LIMIT:?}; drop it by hand", cfg.masked())
        }
    }
}

fn set_status(status: &Mutex<WalReceiverStatus>, f: impl FnOnce(&mut WalReceiverStatus)) {
    f(&mut status.lock().expect("walreceiver status lock poisoned"));
}

async fn run(
    tl: Arc<Timeline>,
    cfg: ConnConfig,
    status: Arc<Mutex<WalReceiverStatus>>,
    cancel: CancellationToken,
) {
    let ingest = Arc::new(Mutex::new(WalIngest::default()));
    let mut backoff = MIN_BACKOFF;
    let source = cfg.masked();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let result = stream_once(&tl, &cfg, &status, &ingest, &cancel).await;
        set_status(&status, |s| s.streaming = false);
        match result {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(StreamError::Cancelled) => break,
            Err(StreamError::Ingest(e)) if !e.is_transient() => {
                let reason = format!("WAL ingest from {source} stopped: {e}");
                tracing::error!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "{reason}");
                tl.set_state(TenantState::Broken { reason });
                break;
            }
            Err(e) => {
                tracing::warn!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "WAL streaming from {source} failed, reconnecting in {backoff:?}: {e}");
                set_status(&status, |s| s.last_error = Some(e.to_string()));
                crate::metrics::WALRECEIVER_RECONNECTS
                    .with_label_values(&[&tl.tenant_id.to_string(), &tl.timeline_id.to_string()])
                    .inc();
                ingest.lock().expect("ingest lock poisoned").reset();
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Repl(#[from] pq_proto::ReplError),
    #[error("{0}")]
    Ingest(#[from] IngestError),
    #[error("cancelled")]
    Cancelled,
}

/// Where to ask the primary to stream from: the last record LSN, or the
/// start of its page when it lies just after a page header. Ingest
/// publishes that LSN when a record ends on a page boundary (it is what
/// `pg_current_wal_lsn()` reports), but a primary that has not written the
/// next page yet refuses a start point inside it ("requested starting point
/// is ahead of the WAL flush position"). The decoder reads the page header.
fn streaming_start(last_record: Lsn) -> Lsn {
    let in_page = last_record.0 % XLOG_BLCKSZ as u64;
    let page_start = last_record.0 - in_page;
    let header = if page_start.is_multiple_of(WAL_SEGMENT_SIZE as u64) {
        XLOG_SIZE_OF_XLOG_LONG_PHD
    } else {
        XLOG_SIZE_OF_XLOG_SHORT_PHD
    };
    if in_page == header as u64 {
        Lsn(page_start)
    } else {
        last_record
    }
}

async fn stream_once(
    tl: &Arc<Timeline>,
    cfg: &ConnConfig,
    status: &Mutex<WalReceiverStatus>,
    ingest: &Arc<Mutex<WalIngest>>,
    cancel: &CancellationToken,
) -> Result<(), StreamError> {
    let mut conn = ReplicationConnection::connect(cfg, cancel).await?;
    let system = conn.identify_system().await?;
    let slot = slot_name(tl);
    if conn.create_physical_slot_if_missing(&slot).await? {
        tracing::info!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "created replication slot {slot}");
    }
    let start = streaming_start(tl.last_record_lsn());
    let mut stream = conn
        .start_physical(Some(&slot), start, system.timeline)
        .await?;
    tracing::info!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, %start, "streaming WAL from {}", cfg.masked());
    set_status(status, |s| {
        s.streaming = true;
        s.last_error = None;
    });
    let mut decoder = WalStreamDecoder::new(start);
    let mut received = start;
    let mut next_status = tokio::time::Instant::now();
    let mut last_data = tokio::time::Instant::now();
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Err(StreamError::Cancelled),
            m = stream.next_message() => m?,
            _ = tokio::time::sleep_until(next_status) => {
                if last_data.elapsed() >= IDLE_FLUSH_AFTER && tl.disk_consistent_lsn() < tl.last_record_lsn() {
                    // The primary went quiet: make what we have durable, so
                    // the flush position we report catches up (a primary
                    // shutting down waits for that).
                    let flushing = tl.clone();
                    tokio::task::spawn_blocking(move || flushing.checkpoint_blocking())
                        .await
                        .map_err(|e| IngestError::Wal(format!("flush task failed: {e}")))?
                        .map_err(|e| IngestError::Corrupt(format!("flush failed: {e:#}")))?;
                }
                send_status(&mut stream, tl, received, false).await?;
                next_status = tokio::time::Instant::now() + STATUS_INTERVAL;
                continue;
            }
        };
        let Some(msg) = msg else {
            tracing::info!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "primary ended the replication stream");
            return Ok(());
        };
        match msg {
            ReplicationMessage::XLogData {
                wal_start, data, ..
            } => {
                let end = wal_start + data.len() as u64;
                last_data = tokio::time::Instant::now();
                crate::walingest::ingest_bytes(tl, ingest, &mut decoder, &data).await?;
                received = received.max(end);
                set_status(status, |s| {
                    s.last_received_msg_lsn = Some(end);
                    s.last_received_msg_ts = Some(now_micros());
                });
            }
            ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                set_status(status, |s| {
                    s.last_received_msg_lsn = Some(wal_end.max(received));
                    s.last_received_msg_ts = Some(now_micros());
                });
                if reply_requested {
                    send_status(&mut stream, tl, received, false).await?;
                }
            }
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn send_status(
    stream: &mut ReplicationStream,
    tl: &Timeline,
    received: Lsn,
    reply: bool,
) -> Result<(), StreamError> {
    // With remote storage, WAL is durable once an uploaded index covers it:
    // the primary keeps it (through the slot) until then.
    let durable = match tl.remote_client() {
        Some(remote) => remote
            .remote_consistent_lsn()
            .unwrap_or(Lsn::INVALID)
            .min(tl.disk_consistent_lsn()),
        None => tl.disk_consistent_lsn(),
    };
    stream
        .send_standby_status(received, durable, durable, reply)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_starts_at_the_page_when_just_past_its_header() {
        // Segment start: long header.
        assert_eq!(streaming_start(Lsn(0x4200_0028)), Lsn(0x4200_0000));
        // Other pages: short header.
        assert_eq!(streaming_start(Lsn(0x4200_2018)), Lsn(0x4200_2000));
        // Anywhere else, including a short header's size on a segment's
        // first page and the page boundary itself: unchanged.
        for lsn in [
            0x4200_0018,
            0x4200_2000,
            0x4200_2020,
            0x4200_0030,
            0x4200_1ff8,
        ] {
            assert_eq!(streaming_start(Lsn(lsn)), Lsn(lsn));
        }
    }
}
