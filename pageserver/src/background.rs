//! Node-level background work and its health: heartbeats that `/liveness`
//! reads, node readiness that `/readiness` reads, and the housekeeping loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::PageServerConf;
use crate::metrics;
use crate::tenant::mgr::TenantManager;

/// Last progress report of each background loop.
#[derive(Debug, Default)]
pub struct Heartbeats {
    loops: Mutex<BTreeMap<&'static str, Instant>>,
}

impl Heartbeats {
    /// Records that loop `name` made progress now.
    pub fn beat(&self, name: &'static str) {
        self.loops
            .lock()
            .expect("heartbeat lock poisoned")
            .insert(name, Instant::now());
    }

    /// Age of every loop's last heartbeat.
    pub fn ages(&self) -> Vec<(&'static str, Duration)> {
        let now = Instant::now();
        self.loops
            .lock()
            .expect("heartbeat lock poisoned")
            .iter()
            .map(|(name, at)| (*name, now.saturating_duration_since(*at)))
            .collect()
    }
}

/// What `/readiness` reports.
#[derive(Debug, Default)]
pub struct NodeHealth {
    /// Every tenant found at start-up has finished loading.
    pub tenants_loaded: AtomicBool,
    /// Shutdown has begun.
    pub shutting_down: AtomicBool,
    /// The last disk check's error, if it failed.
    pub disk_error: Mutex<Option<String>>,
}

impl NodeHealth {
    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Some("shutting down".to_string());
        }
        if !self.tenants_loaded.load(Ordering::Acquire) {
            return Some("tenants are still loading".to_string());
        }
        self.disk_error
            .lock()
            .expect("health lock poisoned")
            .as_ref()
            .map(|e| format!("work directory check failed: {e}"))
    }
}

/// Name of the housekeeping loop in heartbeats and logs.
pub const HOUSEKEEPING_LOOP: &str = "housekeeping";

const DISK_PROBE_FILE: &str = ".disk_probe";

/// Writes and fsyncs a small file in the work directory, so that a full or
/// failing disk shows in `/readiness` before it corrupts anything.
fn check_disk(workdir: &Path) -> Result<(), String> {
    utils::crashsafe::overwrite(&workdir.join(DISK_PROBE_FILE), b"ok\n").map_err(|e| {
        format!(
            "cannot write {}: {e}",
            workdir.join(DISK_PROBE_FILE).display()
        )
    })
}

/// One pass of housekeeping. Returns false when the pass was skipped by a
/// failpoint (tests use it to make the heartbeat stale).
async fn housekeeping_pass(
    conf: &PageServerConf,
    tenants: &TenantManager,
    health: &NodeHealth,
    heartbeats: &Heartbeats,
) -> bool {
    fail::fail_point!("housekeeping-skip", |_| false);
    let workdir = conf.workdir.clone();
    let result = tokio::task::spawn_blocking(move || check_disk(&workdir))
        .await
        .unwrap_or_else(|e| Err(format!("disk check task failed: {e}")));
    {
        let mut disk_error = health.disk_error.lock().expect("health lock poisoned");
        match (&result, disk_error.is_some()) {
            (Err(e), false) => {
                metrics::DISK_CHECK_FAILURES.inc();
                tracing::error!("work directory check failed, reporting not ready: {e}");
            }
            (Err(_), true) => metrics::DISK_CHECK_FAILURES.inc(),
            (Ok(()), true) => tracing::info!("work directory check succeeds again"),
            (Ok(()), false) => {}
        }
        *disk_error = result.err();
    }
    tenants.update_state_metrics();
    if let Some(pct) = conf.max_disk_usage_pct {
        let (workdir, tenants) = (conf.workdir.clone(), tenants.all_timelines());
        let result = tokio::task::spawn_blocking(move || {
            crate::tenant::timeline::residence::evict_for_disk_usage(&workdir, pct, &tenants)
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!("disk usage above {pct}%: evicted {n} layers"),
            Ok(Err(e)) => tracing::warn!("disk usage eviction failed: {e}"),
            Err(e) => tracing::warn!("disk usage eviction task failed: {e}"),
        }
    }
    heartbeats.beat(HOUSEKEEPING_LOOP);
    for (name, age) in heartbeats.ages() {
        metrics::HEARTBEAT_AGE
            .with_label_values(&[name])
            .set(age.as_secs() as i64);
    }
    true
}

/// Runs housekeeping every `housekeeping_period` until cancelled.
pub async fn housekeeping_loop(
    conf: Arc<PageServerConf>,
    tenants: Arc<TenantManager>,
    health: Arc<NodeHealth>,
    heartbeats: Arc<Heartbeats>,
    cancel: CancellationToken,
) {
    heartbeats.beat(HOUSEKEEPING_LOOP);
    loop {
        if !housekeeping_pass(&conf, &tenants, &health, &heartbeats).await {
            tracing::info!("housekeeping pass skipped by failpoint");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(conf.housekeeping_period) => {}
        }
    }
}
