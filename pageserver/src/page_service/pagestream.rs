//! `pagestream_v2 TENANT TIMELINE`: page requests inside a CopyBoth stream
//! (format in `pageserver_api::pagestream` and `docs/page_service.md`).
//!
//! Requests are pipelined: the connection reads ahead and processes up to
//! `page_service_pipeline_depth` requests at once, answering strictly in
//! request order, and flushes its output whenever no further request is
//! waiting in the input buffer, so responses that are ready together leave
//! in one write. A request that fails gets an Error response (103) and the
//! stream goes on; only a broken stream (oversized or undecodable frame, a
//! message other than CopyData/CopyDone/Terminate) ends it with an
//! ErrorResponse.
//!
//! A GetPage that memory answers (the LSN is ingested, the relation size
//! and the page image are cached: [`Timeline::cached_rel_page`]) is
//! answered on the spot, on the connection's task; every other request runs
//! as a future of its own, its blocking read in place on the worker thread.

use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{self, Either};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use pageserver_api::pagestream::{
    PagestreamRequest, PagestreamResponse, RequestLsns, DEFAULT_TABLESPACE, MAX_REQUEST_SIZE,
};
use pageserver_api::value::BLCKSZ;
use pq_proto::{
    write_copy_data_with, BeMessage, ErrorFields, FrontendMessage, ServerError,
    SQLSTATE_PROTOCOL_VIOLATION,
};
use prometheus::local::LocalHistogram;
use prometheus::Histogram;
use utils::lsn::Lsn;

use super::commands::{CommandEnv, Flow, TimelineArgs};
use super::connection::PgConn;
use super::PageServiceError;
use crate::metrics;
use crate::tenant::timeline::pg_read::PgReadError;
use crate::tenant::timeline::read::PageReconstructError;
use crate::tenant::timeline::Timeline;

/// Why reading requests stopped.
enum StreamEnd {
    /// CopyDone: answer what is in flight, then CopyDone and CommandComplete.
    CopyDone,
    /// Terminate or EOF: answer what is in flight, then close.
    ClientGone,
    /// A message that does not belong in the stream (framing intact).
    Unexpected(&'static str),
}

/// Decrements the in-flight gauge when a request finishes or is dropped.
struct InFlight;

impl InFlight {
    fn start() -> Self {
        metrics::PAGE_SERVICE_IN_FLIGHT.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::PAGE_SERVICE_IN_FLIGHT.dec();
    }
}

/// Request type names, the label of the latency histogram.
const TYPE_NAMES: [&str; 6] = [
    "exists",
    "nblocks",
    "get_page",
    "db_size",
    "get_slru_segment",
    "invalid",
];

/// The latency histogram of each request type, looked up once (a label
/// lookup per request hashes and locks).
static REQUEST_SECONDS: LazyLock<[Histogram; 6]> = LazyLock::new(|| {
    TYPE_NAMES.map(|name| {
        metrics::PAGE_SERVICE_REQUEST_SECONDS
            .get_metric_with_label_values(&[name])
            .expect("one label")
    })
});

/// How often a stream publishes its latency observations.
const LATENCY_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// A stream's own latency histograms, published to the node-wide ones
/// about every [`LATENCY_PUBLISH_INTERVAL`] while there is something new
/// (also when the stream is quiet) and when the stream ends. The node-wide
/// histograms are atomics that every page service thread would otherwise
/// write for every request, moving their cache lines between cores each
/// time.
struct StreamLatency {
    local: [LocalHistogram; 6],
    published: Instant,
    /// Observations not yet published.
    pending: bool,
}

impl StreamLatency {
    fn new() -> Self {
        StreamLatency {
            local: std::array::from_fn(|i| REQUEST_SECONDS[i].local()),
            published: Instant::now(),
            pending: false,
        }
    }

    /// Records one request of `type_name` that started at `started`.
    fn observe(&mut self, type_name: &'static str, started: Instant) {
        let now = Instant::now();
        let i = TYPE_NAMES
            .iter()
            .position(|n| *n == type_name)
            .unwrap_or(TYPE_NAMES.len() - 1);
        self.local[i].observe(now.duration_since(started).as_secs_f64());
        self.pending = true;
        if now.duration_since(self.published) >= LATENCY_PUBLISH_INTERVAL {
            self.publish(now);
        }
    }

    fn publish(&mut self, now: Instant) {
        for h in &self.local {
            h.flush();
        }
        self.published = now;
        self.pending = false;
    }
}

impl Drop for StreamLatency {
    fn drop(&mut self) {
        self.publish(Instant::now());
    }
}

/// Runs the stream until CopyDone, Terminate or an error.
pub async fn handle_pagestream(
    conn: &mut PgConn,
    args: TimelineArgs,
    env: &CommandEnv<'_>,
) -> Result<Flow, PageServiceError> {
    let timeline = super::commands::active_timeline(env, args)?;
    // Held for the stream: timeline shutdown waits for it, after cancelling
    // the timeline's token, which ends the stream below.
    let _gate = timeline
        .gate
        .enter()
        .map_err(|_| PageServiceError::ShuttingDown)?;
    conn.write(&BeMessage::CopyBothResponse);
    conn.flush().await?;
    let cap = conn.max_message_size();
    conn.set_max_message_size(MAX_REQUEST_SIZE);
    let result = stream_loop(conn, &timeline, env).await;
    conn.set_max_message_size(cap);
    result
}

async fn stream_loop(
    conn: &mut PgConn,
    timeline: &Arc<Timeline>,
    env: &CommandEnv<'_>,
) -> Result<Flow, PageServiceError> {
    let depth = env.conf.page_service_pipeline_depth;
    let wait_timeout = env.conf.wait_lsn_timeout;
    let idle = env.conf.page_service_idle_timeout;
    let mut inflight = FuturesOrdered::new();
    let mut end: Option<StreamEnd> = None;
    let mut latency = StreamLatency::new();
    // This stream's own children of the node's and the timeline's tokens:
    // polling a token locks its node, and the shared parents would be
    // locked by every stream for every request.
    let node_cancel = env.cancel.child_token();
    let timeline_cancel = timeline.cancel.child_token();
    // Made once: a fresh one per turn would register with the timer wheel
    // and the tokens' waiter lists every time.
    let mut node_cancelled = pin!(node_cancel.cancelled());
    let mut timeline_cancelled = pin!(timeline_cancel.cancelled());
    let mut idle_timer = pin!(tokio::time::sleep(idle));
    // Publishes the latencies of a stream gone quiet; like the idle timer,
    // set once and moved on only when it fires.
    let mut publish_timer = pin!(tokio::time::sleep(LATENCY_PUBLISH_INTERVAL));
    let mut last_input = tokio::time::Instant::now();
    loop {
        // Without I/O: take the requests already buffered (while there is
        // room) and write the responses already done, until neither moves.
        loop {
            let mut progressed = false;
            while end.is_none() && inflight.len() < depth {
                let Some(msg) = conn.next_buffered()? else {
                    break;
                };
                progressed = true;
                match msg {
                    FrontendMessage::CopyData(frame) => {
                        let started = Instant::now();
                        match answer_from_memory(timeline, &frame) {
                            Some(response) => {
                                let done = Done {
                                    response,
                                    type_name: "get_page",
                                    started,
                                };
                                if inflight.is_empty() {
                                    // Nothing ahead of it: straight to the output.
                                    write_done(conn, &mut latency, done);
                                } else {
                                    inflight.push_back(Either::Left(future::ready(done)));
                                }
                            }
                            None => inflight.push_back(Either::Right(process(
                                timeline.clone(),
                                frame,
                                started,
                                wait_timeout,
                            ))),
                        }
                    }
                    other => end = Some(classify_end(other)),
                }
            }
            while let Some(Some(done)) = inflight.next().now_or_never() {
                progressed = true;
                write_done(conn, &mut latency, done);
            }
            if !progressed {
                break;
            }
        }
        if conn.pending_output() > 0 {
            tokio::select! {
                biased;
                r = conn.flush() => r?,
                _ = &mut node_cancelled => return Err(PageServiceError::ShuttingDown),
            }
        }
        if inflight.is_empty() {
            match end {
                None => {}
                Some(StreamEnd::CopyDone) => {
                    conn.write(&BeMessage::CopyDone);
                    conn.write(&BeMessage::CommandComplete("PAGESTREAM"));
                    return Ok(Flow::Continue);
                }
                Some(StreamEnd::ClientGone) => return Ok(Flow::Close),
                Some(StreamEnd::Unexpected(name)) => {
                    metrics::PAGE_SERVICE_ERRORS
                        .with_label_values(&["protocol"])
                        .inc();
                    let message = format!(
                        "{name} inside pagestream_v2: only CopyData, CopyDone and Terminate are allowed; the stream has ended"
                    );
                    tracing::info!("{message}");
                    conn.write(&BeMessage::ErrorResponse(ErrorFields {
                        severity: "ERROR",
                        code: SQLSTATE_PROTOCOL_VIOLATION,
                        message: &message,
                        detail: None,
                    }));
                    return Ok(Flow::Continue);
                }
            }
        }
        let can_read = end.is_none() && inflight.len() < depth;
        tokio::select! {
            biased;
            _ = &mut node_cancelled => return Err(PageServiceError::ShuttingDown),
            _ = &mut timeline_cancelled => return Err(PageServiceError::ShuttingDown),
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                write_done(conn, &mut latency, done);
            }
            more = conn.read_more(), if can_read => {
                if !more? {
                    end = Some(StreamEnd::ClientGone);
                }
                last_input = tokio::time::Instant::now();
            }
            _ = &mut publish_timer, if latency.pending => {
                latency.publish(Instant::now());
                publish_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + LATENCY_PUBLISH_INTERVAL);
            }
            _ = &mut idle_timer, if inflight.is_empty() => {
                // The timer is set once and moved on lazily: input since it
                // was set pushes the deadline instead of ending the stream.
                let deadline = last_input + idle;
                if deadline <= tokio::time::Instant::now() {
                    return Err(ServerError::IdleTimeout(idle).into());
                }
                idle_timer.as_mut().reset(deadline);
            }
        }
    }
}

fn classify_end(msg: FrontendMessage) -> StreamEnd {
    match msg {
        FrontendMessage::CopyDone => StreamEnd::CopyDone,
        FrontendMessage::Terminate => StreamEnd::ClientGone,
        other => StreamEnd::Unexpected(other.name()),
    }
}

/// The response to a GetPage that memory alone answers: the LSN to read at
/// is ingested and readable, and the relation size and the page image at
/// it are cached. `None` for anything else (which [`process`] then
/// answers, errors included).
fn answer_from_memory(timeline: &Timeline, frame: &[u8]) -> Option<PagestreamResponse> {
    let Ok(PagestreamRequest::GetPage { lsns, rel, blkno }) = PagestreamRequest::parse(frame)
    else {
        return None;
    };
    if lsns.not_modified_since > lsns.request_lsn {
        return None;
    }
    let last = timeline.last_record_lsn();
    if lsns.not_modified_since > last {
        return None;
    }
    let page = timeline.cached_rel_page(rel, blkno, read_lsn(lsns, last))?;
    Some(PagestreamResponse::GetPage(page))
}

/// A request answered: its response, and what its latency is recorded as
/// (from reading the request to writing the response, in order, to the
/// output).
struct Done {
    response: PagestreamResponse,
    type_name: &'static str,
    started: Instant,
}

/// Writes an answered request's response and records its latency.
fn write_done(conn: &mut PgConn, latency: &mut StreamLatency, done: Done) {
    latency.observe(done.type_name, done.started);
    write_copy_data_with(conn.output(), |b| done.response.encode(b));
}

/// Answers one request frame, read at `started`.
async fn process(
    timeline: Arc<Timeline>,
    frame: Bytes,
    started: Instant,
    wait_timeout: Duration,
) -> Done {
    let _inflight = InFlight::start();
    let (type_name, response) = match PagestreamRequest::parse(&frame) {
        Ok(req) => (req.type_name(), answer(&timeline, req, wait_timeout).await),
        Err(e) => ("invalid", Err(("bad_request", e.to_string()))),
    };
    let response = response.unwrap_or_else(|(kind, message)| {
        metrics::PAGE_SERVICE_ERRORS
            .with_label_values(&[kind])
            .inc();
        tracing::debug!("{type_name} request failed: {message}");
        PagestreamResponse::Error(message)
    });
    Done {
        response,
        type_name,
        started,
    }
}

/// The LSN to read a request at, once `not_modified_since` is ingested:
/// `min(request_lsn, last_record_lsn)`, but not below `not_modified_since`.
pub fn read_lsn(lsns: RequestLsns, last_record_lsn: Lsn) -> Lsn {
    lsns.request_lsn
        .min(last_record_lsn)
        .max(lsns.not_modified_since)
}

/// An error response's metrics label and message.
type Failure = (&'static str, String);

fn read_failure(e: PgReadError) -> Failure {
    let kind = match &e {
        PgReadError::NoRelation { .. } | PgReadError::NoSlruSegment { .. } => "not_found",
        PgReadError::PastEnd { .. } => "past_end",
        PgReadError::Reconstruct(PageReconstructError::BelowGcCutoff { .. }) => "below_gc_cutoff",
        PgReadError::Reconstruct(PageReconstructError::LsnTimeout { .. }) => "lsn_timeout",
        PgReadError::Reconstruct(PageReconstructError::Cancelled) => "shutting_down",
        _ => {
            tracing::error!("page read failed: {e}");
            "internal"
        }
    };
    (kind, e.to_string())
}

async fn answer(
    timeline: &Arc<Timeline>,
    req: PagestreamRequest,
    wait_timeout: Duration,
) -> Result<PagestreamResponse, Failure> {
    let lsns = req.lsns();
    if lsns.not_modified_since > lsns.request_lsn {
        return Err((
            "bad_request",
            format!(
                "not_modified_since {} is above request_lsn {}; it must be at or below it",
                lsns.not_modified_since, lsns.request_lsn
            ),
        ));
    }
    timeline
        .wait_lsn(lsns.not_modified_since, wait_timeout)
        .await
        .map_err(|e| read_failure(e.into()))?;
    let lsn = read_lsn(lsns, timeline.last_record_lsn());
    // The blocking read holds the timeline's gate: shutdown waits for it.
    let gate = timeline
        .gate
        .enter()
        .map_err(|_| ("shutting_down", "timeline is shutting down".to_string()))?;
    // In place rather than on the blocking pool: a read is mostly served
    // from the page cache and takes tens of microseconds, less than the
    // hop to another thread and back; the runtime moves this worker's
    // other tasks elsewhere meanwhile.
    let _gate = gate;
    tokio::task::block_in_place(|| read_blocking(timeline, req, lsn)).map_err(read_failure)
}

fn read_blocking(
    tl: &Timeline,
    req: PagestreamRequest,
    lsn: Lsn,
) -> Result<PagestreamResponse, PgReadError> {
    Ok(match req {
        PagestreamRequest::Exists { rel, .. } => {
            PagestreamResponse::Exists(tl.rel_exists(rel, lsn)?)
        }
        PagestreamRequest::Nblocks { rel, .. } => {
            PagestreamResponse::Nblocks(tl.rel_size(rel, lsn)?)
        }
        PagestreamRequest::GetPage { rel, blkno, .. } => {
            let page = tl.rel_page(rel, blkno, lsn)?;
            if page.len() != BLCKSZ {
                return Err(PgReadError::Corrupt {
                    key: pageserver_api::key::rel_block_key(rel, blkno),
                    reason: format!("a page is {BLCKSZ} bytes, this one {}", page.len()),
                });
            }
            PagestreamResponse::GetPage(page)
        }
        PagestreamRequest::DbSize { dbnode, .. } => {
            let size = tl.db_size(DEFAULT_TABLESPACE, dbnode, lsn)?;
            PagestreamResponse::DbSize(i64::try_from(size).unwrap_or(i64::MAX))
        }
        PagestreamRequest::GetSlruSegment { kind, segno, .. } => {
            PagestreamResponse::GetSlruSegment(tl.slru_segment(kind, segno, lsn)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsns(request_lsn: u64, not_modified_since: u64) -> RequestLsns {
        RequestLsns {
            request_lsn: Lsn(request_lsn),
            not_modified_since: Lsn(not_modified_since),
        }
    }

    #[test]
    fn read_lsn_semantics() {
        // Latest: whatever is ingested.
        assert_eq!(read_lsn(lsns(u64::MAX, 0), Lsn(500)), Lsn(500));
        // An older request LSN is honoured.
        assert_eq!(read_lsn(lsns(300, 100), Lsn(500)), Lsn(300));
        // Ingest behind the request LSN but past not_modified_since: the
        // page has not changed since, so reading at last_record is exact.
        assert_eq!(read_lsn(lsns(800, 100), Lsn(500)), Lsn(500));
        // Never below not_modified_since.
        assert_eq!(read_lsn(lsns(800, 600), Lsn(500)), Lsn(600));
    }

    #[test]
    fn read_errors_are_classified() {
        use pageserver_api::key::RelTag;
        let rel = RelTag {
            spcnode: 1663,
            dbnode: 1,
            relnode: 2,
            forknum: 0,
        };
        let (kind, msg) = read_failure(PgReadError::NoRelation { rel, lsn: Lsn(16) });
        assert_eq!(kind, "not_found");
        assert!(msg.contains("1663/1/2"), "{msg}");
        let (kind, _) = read_failure(PgReadError::PastEnd {
            rel,
            blkno: 9,
            nblocks: 1,
            lsn: Lsn(16),
        });
        assert_eq!(kind, "past_end");
        let (kind, msg) = read_failure(PgReadError::Reconstruct(
            PageReconstructError::BelowGcCutoff {
                lsn: Lsn(1),
                cutoff: Lsn(2),
                timeline: "t/tl".into(),
            },
        ));
        assert_eq!(kind, "below_gc_cutoff");
        assert!(msg.contains("GC cutoff"), "{msg}");
        let (kind, _) = read_failure(PgReadError::Reconstruct(PageReconstructError::LsnTimeout {
            lsn: Lsn(9),
            last: Lsn(1),
            waited: Duration::from_secs(1),
            timeline: "t/tl".into(),
        }));
        assert_eq!(kind, "lsn_timeout");
    }
}
