//! Prometheus metrics of remote storage operations.
//!
//! One [`StorageMetrics`] holds the collectors; every
//! [`crate::GenericRemoteStorage`] records into one (the process-wide
//! [`StorageMetrics::global`] unless given another). The page server calls
//! [`register`] with its registry once at start-up; tests make their own
//! [`StorageMetrics::new`] so they can read exact counts.
//!
//! Series (`op` is one of [`Op::as_str`], `kind` one of [`ErrorKind::as_str`]):
//!
//! * `remote_storage_operations_total{op, outcome="ok"|"err"}`: finished calls;
//! * `remote_storage_operation_seconds{op}`: latency of finished calls,
//!   including retries and backoff;
//! * `remote_storage_retries_total{op}`: attempts after the first;
//! * `remote_storage_errors_total{op, kind}`: failed calls by error kind;
//! * `remote_storage_bytes_uploaded_total` / `remote_storage_bytes_downloaded_total`:
//!   payload bytes of successful uploads and downloads.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::error::{ErrorKind, Op};

/// Latency buckets in seconds: a local file takes microseconds, a large S3
/// object under retries takes minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The collectors. Cloning is cheap and shares them.
#[derive(Clone)]
pub struct StorageMetrics {
    operations: IntCounterVec,
    latency: HistogramVec,
    retries: IntCounterVec,
    errors: IntCounterVec,
    bytes_uploaded: IntCounter,
    bytes_downloaded: IntCounter,
}

static GLOBAL: LazyLock<StorageMetrics> = LazyLock::new(StorageMetrics::new);

/// Registers the process-wide [`StorageMetrics::global`] into `registry`
/// (e.g. `pageserver::metrics::REGISTRY`). Call once per registry.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    StorageMetrics::global().register(registry)
}

impl StorageMetrics {
    /// New, unregistered collectors.
    pub fn new() -> Self {
        let operations = IntCounterVec::new(
            Opts::new(
                "remote_storage_operations_total",
                "Remote storage calls finished, by operation and outcome",
            ),
            &["op", "outcome"],
        )
        .expect("valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "remote_storage_operation_seconds",
                "Latency of remote storage calls including retries, by operation",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("valid metric definition");
        let retries = IntCounterVec::new(
            Opts::new(
                "remote_storage_retries_total",
                "Remote storage attempts after the first, by operation",
            ),
            &["op"],
        )
        .expect("valid metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "remote_storage_errors_total",
                "Failed remote storage calls, by operation and error kind",
            ),
            &["op", "kind"],
        )
        .expect("valid metric definition");
        let bytes_uploaded = IntCounter::new(
            "remote_storage_bytes_uploaded_total",
            "Payload bytes uploaded to remote storage",
        )
        .expect("valid metric definition");
        let bytes_downloaded = IntCounter::new(
            "remote_storage_bytes_downloaded_total",
            "Payload bytes downloaded from remote storage",
        )
        .expect("valid metric definition");
        // Pre-create the series so dashboards see zeros rather than gaps.
        for op in Op::ALL {
            operations.with_label_values(&[op.as_str(), "ok"]);
            operations.with_label_values(&[op.as_str(), "err"]);
            latency.with_label_values(&[op.as_str()]);
            retries.with_label_values(&[op.as_str()]);
        }
        Self {
            operations,
            latency,
            retries,
            errors,
            bytes_uploaded,
            bytes_downloaded,
        }
    }

    /// The process-wide collectors that storages use unless given others.
    pub fn global() -> &'static StorageMetrics {
        &GLOBAL
    }

    /// Registers these collectors into `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.operations.clone()))?;
        registry.register(Box::new(self.latency.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.bytes_uploaded.clone()))?;
        registry.register(Box::new(self.bytes_downloaded.clone()))?;
        Ok(())
    }

    /// Records a finished call.
    pub(crate) fn observe(&self, op: Op, elapsed: Duration, outcome: Result<(), ErrorKind>) {
        self.latency
            .with_label_values(&[op.as_str()])
            .observe(elapsed.as_secs_f64());
        match outcome {
            Ok(()) => self
                .operations
                .with_label_values(&[op.as_str(), "ok"])
                .inc(),
            Err(kind) => {
                self.operations
                    .with_label_values(&[op.as_str(), "err"])
                    .inc();
                self.errors
                    .with_label_values(&[op.as_str(), kind.as_str()])
                    .inc();
            }
        }
    }

    /// Records one retry of `op`.
    pub(crate) fn retried(&self, op: Op) {
        self.retries.with_label_values(&[op.as_str()]).inc();
    }

    /// Records uploaded payload bytes.
    pub(crate) fn uploaded(&self, bytes: u64) {
        self.bytes_uploaded.inc_by(bytes);
    }

    /// Records downloaded payload bytes.
    pub(crate) fn downloaded(&self, bytes: u64) {
        self.bytes_downloaded.inc_by(bytes);
    }

    /// Finished calls of `op` with `outcome` (`"ok"` or `"err"`).
    pub fn operations(&self, op: Op, outcome: &str) -> u64 {
        self.operations
            .with_label_values(&[op.as_str(), outcome])
            .get()
    }

    /// Failed calls of `op` with error `kind`.
    pub fn errors(&self, op: Op, kind: ErrorKind) -> u64 {
        self.errors
            .with_label_values(&[op.as_str(), kind.as_str()])
            .get()
    }

    /// Retries of `op`.
    pub fn retries(&self, op: Op) -> u64 {
        self.retries.with_label_values(&[op.as_str()]).get()
    }

    /// Latency observations of `op` (equals its finished calls).
    pub fn latency_samples(&self, op: Op) -> u64 {
        self.latency
            .with_label_values(&[op.as_str()])
            .get_sample_count()
    }

    /// Payload bytes uploaded so far.
    pub fn bytes_uploaded(&self) -> u64 {
        self.bytes_uploaded.get()
    }

    /// Payload bytes downloaded so far.
    pub fn bytes_downloaded(&self) -> u64 {
        self.bytes_downloaded.get()
    }
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StorageMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_registers() {
        let m = StorageMetrics::new();
        m.observe(Op::Upload, Duration::from_millis(3), Ok(()));
        m.observe(
            Op::Upload,
            Duration::from_millis(3),
            Err(ErrorKind::Timeout),
        );
        m.retried(Op::Upload);
        m.uploaded(10);
        m.downloaded(7);
        assert_eq!(m.operations(Op::Upload, "ok"), 1);
        assert_eq!(m.operations(Op::Upload, "err"), 1);
        assert_eq!(m.errors(Op::Upload, ErrorKind::Timeout), 1);
        assert_eq!(m.errors(Op::Upload, ErrorKind::NotFound), 0);
        assert_eq!(m.latency_samples(Op::Upload), 2);
        assert_eq!(m.retries(Op::Upload), 1);
        assert_eq!((m.bytes_uploaded(), m.bytes_downloaded()), (10, 7));

        let registry = Registry::new();
        m.register(&registry).unwrap();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for name in [
            "remote_storage_operations_total",
            "remote_storage_operation_seconds",
            "remote_storage_retries_total",
            "remote_storage_errors_total",
            "remote_storage_bytes_uploaded_total",
            "remote_storage_bytes_downloaded_total",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        // A second registration into the same registry is refused, not duplicated.
        assert!(m.register(&registry).is_err());
        // The global hook works once per registry.
        let other = Registry::new();
        register(&other).unwrap();
        assert!(register(&other).is_err());
    }
}
