//! Secondary locations: a warm cache of a tenant attached elsewhere
//! (`docs/remote_storage.md`, "Secondary locations").
//!
//! * `heatmap_uploader.rs`: the attached side, which uploads the tenant's
//!   heatmap (its resident layers) on a period;
//! * `downloader.rs`: the secondary side's download pass (heatmap, indexes,
//!   layers, local clean-up) and the adoption of its layers when the
//!   location becomes attached.
//!
//! A [`SecondaryTenant`] keeps its layers in `WORKDIR/secondary/TENANT/
//! TIMELINE/LAYERNAME`. It has no timelines: it does not ingest, serves no
//! reads, uploads nothing and deletes nothing remotely. A background loop
//! runs a download pass every `secondary_download_interval`, and
//! [`SecondaryTenant::download_now`] asks for one at once.

pub mod downloader;
pub mod heatmap_uploader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pageserver_api::models::SecondaryStatus;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utils::gate::Gate;
use utils::id::{TenantId, TimelineId};

use super::remote::index::LayerFileMetadata;
use super::remote::RemoteContext;
use super::storage_layer::LayerName;
use crate::config::PageServerConf;

/// Directory of secondary locations inside the work directory.
pub const SECONDARY_DIR: &str = "secondary";

/// Outcome of the last finished pass: (request number it served, error).
type PassOutcome = (u64, Option<String>);

/// A tenant held here as a secondary location; see the module documentation.
pub struct SecondaryTenant {
    /// The tenant.
    pub tenant_id: TenantId,
    /// `WORKDIR/secondary/TENANT`.
    dir: PathBuf,
    remote: Arc<RemoteContext>,
    interval: Duration,
    status: Mutex<SecondaryStatus>,
    /// Layers present locally and checked, with the metadata they match.
    verified: Mutex<HashMap<(TimelineId, LayerName), LayerFileMetadata>>,
    /// Download requests so far ([`Self::download_now`]).
    requested: AtomicU64,
    /// Wakes the loop for a requested pass.
    wakeup: Notify,
    /// The last finished pass.
    done: watch::Sender<PassOutcome>,
    /// Cancelled when the location is stopped.
    pub cancel: CancellationToken,
    /// Held by the download loop.
    pub gate: Gate,
}

impl std::fmt::Debug for SecondaryTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondaryTenant")
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// `WORKDIR/secondary/TENANT`.
pub fn secondary_path(conf: &PageServerConf, tenant_id: &TenantId) -> PathBuf {
    conf.workdir.join(SECONDARY_DIR).join(tenant_id.to_string())
}

impl SecondaryTenant {
    /// A secondary location whose directory exists (blocking: creates it
    /// when missing). Call [`Self::spawn`] to start downloading.
    pub fn new(
        conf: &PageServerConf,
        tenant_id: TenantId,
        remote: Arc<RemoteContext>,
        parent_cancel: &CancellationToken,
    ) -> std::io::Result<SecondaryTenant> {
        let dir = secondary_path(conf, &tenant_id);
        utils::crashsafe::create_dir_all(&dir)?;
        Ok(SecondaryTenant {
            tenant_id,
            dir,
            remote,
            interval: conf.secondary_download_interval,
            status: Mutex::new(SecondaryStatus::default()),
            verified: Mutex::new(HashMap::new()),
            requested: AtomicU64::new(0),
            wakeup: Notify::new(),
            done: watch::channel((0, None)).0,
            cancel: parent_cancel.child_token(),
            gate: Gate::new(format!("secondary tenant {tenant_id}")),
        })
    }

    /// The directory holding the downloaded layers.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts the download loop (a pass at once, then every interval).
    pub fn spawn(self: &Arc<Self>) {
        let Ok(guard) = self.gate.enter() else { return };
        let this = self.clone();
        let span =
            tracing::info_span!(parent: None, "secondary_download", tenant_id = %self.tenant_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                this.run().await;
            }
            .instrument(span),
        );
    }

    async fn run(self: Arc<Self>) {
        loop {
            let serving = self.requested.load(Ordering::Acquire);
            self.status_mut(|s| s.in_progress = true);
            let started = std::time::Instant::now();
            let result = self.download_pass().await;
            if self.cancel.is_cancelled() {
                self.status_mut(|s| s.in_progress = false);
                break;
            }
            let error = result.err();
            crate::metrics::SECONDARY_DOWNLOAD_PASSES
                .with_label_values(&[if error.is_none() { "ok" } else { "error" }])
                .inc();
            match &error {
                None => tracing::debug!("download pass finished in {:?}", started.elapsed()),
                Some(e) => tracing::info!("download pass failed, retried at the next one: {e}"),
            }
            self.status_mut(|s| {
                s.in_progress = false;
                s.passes += 1;
                s.last_pass_at = Some(crate::tenant::timeline::unix_now());
                s.last_error = error.clone();
            });
            self.done.send_replace((serving, error));
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Runs a download pass that starts after this call and waits (at most
    /// `timeout`) for it. `Ok(true)`: it finished; `Ok(false)`: still
    /// running; `Err`: it failed (the message says on what).
    pub async fn download_now(&self, timeout: Duration) -> Result<bool, String> {
        let mut rx = self.done.subscribe();
        let request = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wakeup.notify_one();
        let wait = rx.wait_for(|(served, _)| *served >= request);
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, wait) => r,
            _ = self.cancel.cancelled() => return Err(format!("secondary location of tenant {} is shutting down", self.tenant_id)),
        };
        match outcome {
            Err(_) => Ok(false),
            Ok(Err(_)) => Err(format!(
                "secondary location of tenant {} is shutting down",
                self.tenant_id
            )),
            Ok(Ok(done)) => match &done.1 {
                None => Ok(true),
                Some(e) => Err(e.clone()),
            },
        }
    }

    /// Progress of the warm cache.
    pub fn status(&self) -> SecondaryStatus {
        self.status.lock().expect("status lock poisoned").clone()
    }

    fn status_mut(&self, f: impl FnOnce(&mut SecondaryStatus)) {
        f(&mut self.status.lock().expect("status lock poisoned"))
    }

    /// Stops the download loop and waits for it. Local files stay.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.gate.close().await;
    }
}
