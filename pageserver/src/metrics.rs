//! Prometheus metrics of the page server, served as text at `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
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
            Opts::new("pageserver_tenant_states", "Tenants on this node by state"),
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
                "pageserver_timeline_states",
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
                "pageserver_layers",
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

/// GetPage images served from the reconstructed image cache.
pub static IMAGE_CACHE_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "pageserver_image_cache_hits_total",
            "Page images served from the reconstructed image cache",
        )
        .expect("valid metric"),
    )
});

/// GetPage images the reconstructed image cache did not hold.
pub static IMAGE_CACHE_MISSES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "pageserver_image_cache_misses_total",
            "Page image lookups the reconstructed image cache could not answer",
        )
        .expect("valid metric"),
    )
});

/// Fills of the image cache refused because ingest wrote meanwhile.
pub static IMAGE_CACHE_FILLS_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "pageserver_image_cache_fills_refused_total",
            "Reconstructed images not cached because ingest wrote a newer version meanwhile",
        )
        .expect("valid metric"),
    )
});

/// Bytes of images the reconstructed image cache holds.
pub static IMAGE_CACHE_BYTES_HELD: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "pageserver_image_cache_bytes",
            "Bytes of page images held by the reconstructed image cache",
        )
        .expect("valid metric"),
    )
});

/// Values served from the page cache.
pub static PAGE_CACHE_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "pageserver_page_cache_hits_total",
            "Layer file values served from the page cache",
        )
        .expect("valid metric"),
    )
});

/// Values the page cache did not have.
pub static PAGE_CACHE_MISSES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "pageserver_page_cache_misses_total",
            "Layer file values read from disk (then cached)",
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

fn timeline_gauge(name: &str, help: &str) -> IntGaugeVec {
    register(
        IntGaugeVec::new(Opts::new(name, help), &["tenant_id", "timeline_id"])
            .expect("valid metric"),
    )
}

fn timeline_counter(name: &str, help: &str) -> IntCounterVec {
    register(
        IntCounterVec::new(Opts::new(name, help), &["tenant_id", "timeline_id"])
            .expect("valid metric"),
    )
}

fn duration_histogram(name: &str, help: &str) -> Histogram {
    register(
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(vec![
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ]))
        .expect("valid metric"),
    )
}

/// Bytes of WAL received from a timeline's WAL source and ingested.
pub static WAL_INGEST_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    timeline_counter(
        "pageserver_wal_ingest_bytes_total",
        "Bytes of WAL streamed into a timeline",
    )
});

/// WAL records ingested into a timeline.
pub static WAL_INGEST_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    timeline_counter(
        "pageserver_wal_ingest_records_total",
        "WAL records ingested into a timeline",
    )
});

/// End of the last record ingested (an LSN as a number).
pub static LAST_RECORD_LSN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_last_record_lsn",
        "End of the last WAL record ingested into a timeline (LSN as a number)",
    )
});

/// LSN up to which a timeline is durable on local disk.
pub static DISK_CONSISTENT_LSN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_disk_consistent_lsn",
        "LSN up to which a timeline is durable on local disk (LSN as a number)",
    )
});

/// Bytes of ingested WAL not yet durable on local disk.
pub static DISK_CONSISTENT_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_disk_consistent_lag_bytes",
        "Last record LSN minus disk consistent LSN of a timeline",
    )
});

/// Last record LSN minus remote consistent LSN (what the latest uploaded
/// index covers), for timelines backed by remote storage.
pub static REMOTE_CONSISTENT_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_remote_consistent_lag_bytes",
        "Last record LSN minus remote consistent LSN of a timeline",
    )
});

/// The incremental logical size, when known.
pub static LOGICAL_SIZE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_current_logical_size_bytes",
        "Logical size (bytes of all relations) of a timeline at its last record LSN",
    )
});

/// Whether a timeline's walreceiver has a replication stream open.
pub static WALRECEIVER_CONNECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_walreceiver_connected",
        "1 while a timeline's walreceiver streams from its WAL source, else 0",
    )
});

/// WAL the source has announced that is not ingested yet.
pub static WALRECEIVER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    timeline_gauge(
        "pageserver_walreceiver_lag_bytes",
        "WAL end last announced by the source minus the last record LSN ingested",
    )
});

/// Reconnects of a timeline's walreceiver after errors.
pub static WALRECEIVER_RECONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    timeline_counter(
        "pageserver_walreceiver_reconnects_total",
        "Times a timeline's walreceiver reconnected after an error",
    )
});

/// Time to flush frozen in-memory layers to L0 files.
pub static FLUSH_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    duration_histogram(
        "pageserver_flush_duration_seconds",
        "Time to write frozen in-memory layers to L0 layer files",
    )
});

/// Time of compaction runs.
pub static COMPACTION_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    duration_histogram(
        "pageserver_compaction_duration_seconds",
        "Time of compaction runs (L0 to L1 and image layers)",
    )
});

/// Time of GC runs.
pub static GC_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    duration_histogram(
        "pageserver_gc_duration_seconds",
        "Time of garbage collection runs",
    )
});

/// Publishes a timeline's LSN gauges, logical size and walreceiver state.
pub fn record_timeline_stats(timeline: &crate::tenant::timeline::Timeline) {
    let (t, tl) = (
        timeline.tenant_id.to_string(),
        timeline.timeline_id.to_string(),
    );
    let labels = [t.as_str(), tl.as_str()];
    let last = timeline.last_record_lsn();
    let durable = timeline.disk_consistent_lsn();
    let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    LAST_RECORD_LSN
        .with_label_values(&labels)
        .set(as_gauge(last.0));
    DISK_CONSISTENT_LSN
        .with_label_values(&labels)
        .set(as_gauge(durable.0));
    DISK_CONSISTENT_LAG
        .with_label_values(&labels)
        .set(as_gauge(last.0.saturating_sub(durable.0)));
    if let Some(remote) = timeline.remote_consistent_lsn() {
        REMOTE_CONSISTENT_LAG
            .with_label_values(&labels)
            .set(as_gauge(last.0.saturating_sub(remote.0)));
    }
    if let Some(size) = timeline.current_logical_size() {
        LOGICAL_SIZE.with_label_values(&labels).set(as_gauge(size));
    }
    if let Some(status) = timeline.wal_receiver_status() {
        WALRECEIVER_CONNECTED
            .with_label_values(&labels)
            .set(i64::from(status.streaming));
        let announced = status.last_received_msg_lsn.unwrap_or(last);
        WALRECEIVER_LAG
            .with_label_values(&labels)
            .set(as_gauge(announced.0.saturating_sub(last.0)));
    }
}

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
    for gauge in [
        &LAST_RECORD_LSN,
        &DISK_CONSISTENT_LSN,
        &DISK_CONSISTENT_LAG,
        &REMOTE_CONSISTENT_LAG,
        &LOGICAL_SIZE,
        &WALRECEIVER_CONNECTED,
        &WALRECEIVER_LAG,
    ] {
        let _ = gauge.remove_label_values(&[tenant_id, timeline_id]);
    }
    for counter in [
        &WAL_INGEST_BYTES,
        &WAL_INGEST_RECORDS,
        &WALRECEIVER_RECONNECTS,
    ] {
        let _ = counter.remove_label_values(&[tenant_id, timeline_id]);
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

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"))
}

/// Heatmap uploads of attached tenants, by outcome (uploaded, skipped, error).
pub static HEATMAP_UPLOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "pageserver_heatmap_uploads_total",
        "Heatmap uploads of attached tenants, by outcome (uploaded, skipped, error)",
        "outcome",
    )
});

/// Download passes of secondary locations, by result (ok, error).
pub static SECONDARY_DOWNLOAD_PASSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "pageserver_secondary_download_passes_total",
        "Download passes of secondary locations, by result (ok, error)",
        "result",
    )
});

/// Layer files downloaded by secondary locations (not on demand).
pub static SECONDARY_LAYERS_DOWNLOADED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_secondary_layers_downloaded_total",
        "Layer files downloaded ahead of time by secondary locations",
    )
});

/// Bytes of layer files downloaded by secondary locations.
pub static SECONDARY_BYTES_DOWNLOADED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_secondary_bytes_downloaded_total",
        "Bytes of layer files downloaded ahead of time by secondary locations",
    )
});

/// Layers of a secondary location used by an attach (no download needed).
pub static SECONDARY_LAYERS_ADOPTED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "pageserver_secondary_layers_adopted_total",
        "Layer files of a secondary location that an attach used as resident layers",
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
    LazyLock::force(&PAGE_CACHE_HITS);
    LazyLock::force(&PAGE_CACHE_MISSES);
    LazyLock::force(&IMAGE_CACHE_HITS);
    LazyLock::force(&IMAGE_CACHE_MISSES);
    LazyLock::force(&IMAGE_CACHE_FILLS_REFUSED);
    LazyLock::force(&IMAGE_CACHE_BYTES_HELD);
    LazyLock::force(&WAL_INGEST_BYTES);
    LazyLock::force(&WAL_INGEST_RECORDS);
    LazyLock::force(&LAST_RECORD_LSN);
    LazyLock::force(&DISK_CONSISTENT_LSN);
    LazyLock::force(&DISK_CONSISTENT_LAG);
    LazyLock::force(&REMOTE_CONSISTENT_LAG);
    LazyLock::force(&LOGICAL_SIZE);
    LazyLock::force(&WALRECEIVER_CONNECTED);
    LazyLock::force(&WALRECEIVER_LAG);
    LazyLock::force(&WALRECEIVER_RECONNECTS);
    LazyLock::force(&FLUSH_DURATION);
    LazyLock::force(&COMPACTION_DURATION);
    LazyLock::force(&GC_DURATION);
    LazyLock::force(&REMOTE_UPLOAD_QUEUE_DEPTH);
    LazyLock::force(&REMOTE_UPLOAD_OPS);
    LazyLock::force(&REMOTE_UPLOADED_BYTES);
    LazyLock::force(&REMOTE_DOWNLOADED_BYTES);
    LazyLock::force(&LAYER_DOWNLOADS);
    LazyLock::force(&LAYER_EVICTIONS);
    LazyLock::force(&REMOTE_OP_FAILURES);
    LazyLock::force(&DELETION_QUEUE_OBJECTS);
    LazyLock::force(&HEATMAP_UPLOADS);
    LazyLock::force(&SECONDARY_DOWNLOAD_PASSES);
    LazyLock::force(&SECONDARY_LAYERS_DOWNLOADED);
    LazyLock::force(&SECONDARY_BYTES_DOWNLOADED);
    LazyLock::force(&SECONDARY_LAYERS_ADOPTED);
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

// ---------------------------------------------------------------------------
// Page service (libpq, pagestream_v2)
// ---------------------------------------------------------------------------

/// Time to answer one pagestream request, by request type (from reading it
/// to its response going to the output in request order, LSN wait
/// included). Each stream publishes its observations at least once a second.
pub static PAGE_SERVICE_REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "pageserver_page_service_request_seconds",
                "Time to answer pagestream requests, by request type",
            )
            .buckets(vec![
                0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
            ]),
            &["request_type"],
        )
        .expect("valid metric"),
    )
});

/// Pagestream requests being processed on this node.
pub static PAGE_SERVICE_IN_FLIGHT: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "pageserver_page_service_requests_in_flight",
            "Pagestream requests read and not yet answered",
        )
        .expect("valid metric"),
    )
});

/// Open page service connections.
pub static PAGE_SERVICE_CONNECTIONS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "pageserver_page_service_connections",
            "Open libpq connections of the page service",
        )
        .expect("valid metric"),
    )
});

/// Page service errors by kind: per-request Error responses
/// (`not_found`, `past_end`, `lsn_timeout`, `below_gc_cutoff`,
/// `bad_request`, `internal`) and connection-level ones (`auth`,
/// `permission`, `protocol`, `command`).
pub static PAGE_SERVICE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "pageserver_page_service_errors_total",
                "Page service errors, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric"),
    )
});

/// Registers the page service metrics so `/metrics` lists them before use.
pub fn init_page_service_metrics() {
    LazyLock::force(&PAGE_SERVICE_REQUEST_SECONDS);
    LazyLock::force(&PAGE_SERVICE_IN_FLIGHT);
    LazyLock::force(&PAGE_SERVICE_CONNECTIONS);
    LazyLock::force(&PAGE_SERVICE_ERRORS);
}
