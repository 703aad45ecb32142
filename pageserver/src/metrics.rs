//! Prometheus metrics of the page server, served as text at `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The registry every page server metric lives in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    REGISTRY
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

/// HTTP requests by method, route template and status code.
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pageserver_http_requests_total",
                "HTTP requests served, by method, route template and status code",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric"),
    )
});

/// HTTP request latency by method and route template.
pub static HTTP_REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "pageserver_http_request_duration_seconds",
                "Time to answer HTTP requests, by method and route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric"),
    )
});

/// Tenants on this node by state.
pub static TENANT_STATES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pageserver_tenant_states_count",
                "Tenants on this node by state",
            ),
            &["state"],
        )
        .expect("valid metric"),
    )
});

/// Timelines on this node by state.
pub static TIMELINE_STATES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pageserver_timeline_states_count",
                "Timelines on this node by state",
            ),
            &["state"],
        )
        .expect("valid metric"),
    )
});

/// Seconds since each background loop's last heartbeat.
pub static HEARTBEAT_AGE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pageserver_background_loop_heartbeat_age_seconds",
                "Seconds since each background loop last reported progress",
            ),
            &["loop"],
        )
        .expect("valid metric"),
    )
});

/// Failed work-directory write checks.
pub static DISK_CHECK_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "pageserver_disk_check_failures_total",
            "Failed write+fsync probes of the work directory",
        )
        .expect("valid metric"),
    )
});

/// Layer files per timeline by level (`l0`, `l1`, `image`): count and bytes.
pub static LAYER_COUNT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pageserver_layer_count",
                "Layer files of a timeline by level (l0 is the compaction backlog)",
            ),
            &["tenant_id", "timeline_id", "level"],
        )
        .expect("valid metric"),
    )
});

/// Bytes of layer files per timeline by level.
pub static LAYER_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "pageserver_layer_bytes",
                "Bytes of layer files of a timeline by level",
            ),
            &["tenant_id", "timeline_id", "level"],
        )
        .expect("valid metric"),
    )
});

/// Time writers waited because L0 layers piled up (compaction behind).
pub static INGEST_THROTTLE_SECONDS: LazyLock<prometheus::Counter> = LazyLock::new(|| {
    register(
        prometheus::Counter::new(
            "pageserver_ingest_throttle_seconds_total",
            "Seconds writers waited for compaction because L0 layers piled up",
        )
        .expect("valid metric"),
    )
});

/// Publishes a timeline's layer counts and bytes.
pub fn record_layer_stats(timeline: &crate::tenant::timeline::Timeline) {
    let s = timeline.layer_stats();
    let (t, tl) = (
        timeline.tenant_id.to_string(),
        timeline.timeline_id.to_string(),
    );
    for (level, count, bytes) in [
        ("l0", s.l0_count, s.l0_bytes),
        ("l1", s.l1_count, s.l1_bytes),
        ("image", s.image_count, s.image_bytes),
    ] {
        LAYER_COUNT
            .with_label_values(&[&t, &tl, level])
            .set(count as i64);
        LAYER_BYTES
            .with_label_values(&[&t, &tl, level])
            .set(bytes as i64);
    }
}

/// Drops a timeline's per-timeline series (on delete or detach).
pub fn remove_timeline_metrics(tenant_id: &str, timeline_id: &str) {
    for level in ["l0", "l1", "image"] {
        let _ = LAYER_COUNT.remove_label_values(&[tenant_id, timeline_id, level]);
        let _ = LAYER_BYTES.remove_label_values(&[tenant_id, timeline_id, level]);
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).expect("valid metric"))
}

/// Operations waiting in (or running from) every timeline's upload queue.
pub static REMOTE_UPLOAD_QUEUE_DEPTH: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "pageserver_remote_upload_queue_depth",
            "Operations queued in the upload queues of all timelines",
        )
        .expect("valid metric"),
    )
});

/// Operations finished by upload queues, by kind.
pub static REMOTE_UPLOAD_OPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pageserver_remote_upload_queue_ops_total",
                "Upload queue operations finished, by kind (layer, index)",
            ),
            &["kind"],
        )
        .expect("valid metric"),
    )
});

/// Bytes of layer files and indexes uploaded by the upload queues.
pub static REMOTE_UPLOADED_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_remote_uploaded_bytes_total",
        "Bytes of layers and indexes uploaded by the upload queues",
    )
});

/// Bytes of layer files downloaded on demand.
pub static REMOTE_DOWNLOADED_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_remote_downloaded_bytes_total",
        "Bytes of layer files downloaded on demand",
    )
});

/// Layer files downloaded on demand.
pub static LAYER_DOWNLOADS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_layer_downloads_total",
        "Layer files downloaded on demand",
    )
});

/// Layer files evicted from local disk.
pub static LAYER_EVICTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_layer_evictions_total",
        "Layer files evicted from local disk (they stay in remote storage)",
    )
});

/// Remote operations that failed after the storage's retries.
pub static REMOTE_OP_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_remote_operation_failures_total",
        "Remote operations (upload queue, deletion queue) that failed after retries",
    )
});

/// Objects deleted by the deletion queue, and deletions refused because the
/// generation was not current.
pub static DELETION_QUEUE_OBJECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pageserver_deletion_queue_objects_total",
                "Remote objects handled by the deletion queue, by outcome (deleted, refused)",
            ),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

/// Registers every metric so that `/metrics` lists them before first use.
pub fn init() {
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_REQUEST_DURATION);
    LazyLock::force(&TENANT_STATES);
    LazyLock::force(&TIMELINE_STATES);
    LazyLock::force(&HEARTBEAT_AGE);
    LazyLock::force(&DISK_CHECK_FAILURES);
    LazyLock::force(&LAYER_COUNT);
    LazyLock::force(&LAYER_BYTES);
    LazyLock::force(&INGEST_THROTTLE_SECONDS);
    LazyLock::force(&REMOTE_UPLOAD_QUEUE_DEPTH);
    LazyLock::force(&REMOTE_UPLOAD_OPS);
    LazyLock::force(&REMOTE_UPLOADED_BYTES);
    LazyLock::force(&REMOTE_DOWNLOADED_BYTES);
    LazyLock::force(&LAYER_DOWNLOADS);
    LazyLock::force(&LAYER_EVICTIONS);
    LazyLock::force(&REMOTE_OP_FAILURES);
    LazyLock::force(&DELETION_QUEUE_OBJECTS);
    if let Err(e) = remote_storage::StorageMetrics::global().register(&REGISTRY) {
        tracing::warn!("cannot register remote storage metrics: {e}");
    }
}

/// The Prometheus text exposition of every metric.
pub fn gather_text() -> Result<String, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&REGISTRY.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
