//! Fault injection for tests (cargo feature `testing`).
//!
//! [`FaultInjectingStore`] wraps the backend's `ObjectStore` underneath
//! [`crate::GenericRemoteStorage`], so injected faults go through the same
//! timeouts, retries, cancellation and metrics as real ones. Its behaviour is
//! read from a shared [`FaultHandle`] on every call and can be changed at any
//! time (the page server will expose [`FaultConfig`] over HTTP):
//!
//! ```json
//! {"fail_percent": 30, "delay_ms": 500, "unreachable_for_ms": 20000, "seed": 7}
//! ```
//!
//! * `delay_ms`: every call first sleeps this long (a delay above the request
//!   timeout makes every attempt time out);
//! * `fail_percent`: then fails this share of calls with a transient error,
//!   decided by an RNG seeded with `seed` (random when unset), so a seeded run
//!   fails the same calls every time;
//! * `unreachable_for_ms`: for this long after the config is set, every call
//!   fails with a transient "unreachable" error.
//!
//! Faults are injected before the call reaches the backend, so a failed call
//! has no effect on the stored objects.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Longest accepted `delay_ms` / `unreachable_for_ms` (one hour).
pub const MAX_FAULT_MS: u64 = 3_600_000;

/// What to inject; see the module documentation. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Share of calls, 0 to 100, that fail with a transient error.
    #[serde(default)]
    pub fail_percent: u8,
    /// Delay added before every call, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Every call fails for this many milliseconds after the config is set.
    #[serde(default)]
    pub unreachable_for_ms: u64,
    /// Seed of the RNG deciding which calls fail; random when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// A [`FaultConfig`] was out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault config: {0}")]
pub struct FaultConfigError(String);

impl FaultConfig {
    /// Checks the ranges of the fields.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        if self.fail_percent > 100 {
            return Err(FaultConfigError(format!(
                "fail_percent is {}, it must be 0 to 100",
                self.fail_percent
            )));
        }
        for (name, value) in [
            ("delay_ms", self.delay_ms),
            ("unreachable_for_ms", self.unreachable_for_ms),
        ] {
            if value > MAX_FAULT_MS {
                return Err(FaultConfigError(format!(
                    "{name} is {value}, the limit is {MAX_FAULT_MS} (one hour)"
                )));
            }
        }
        Ok(())
    }
}

/// The error an injected failure carries; classified as transient.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InjectedFault {
    /// A `fail_percent` failure.
    #[error("injected failure of {op} ({fail_percent}% of calls fail)")]
    Failure {
        /// The `ObjectStore` method.
        op: &'static str,
        /// The configured share.
        fail_percent: u8,
    },
    /// An `unreachable_for_ms` failure.
    #[error("injected fault: storage unreachable for another {remaining:?} ({op})")]
    Unreachable {
        /// The `ObjectStore` method.
        op: &'static str,
        /// Time until the storage is reachable again.
        remaining: Duration,
    },
}

struct FaultState {
    config: FaultConfig,
    rng: StdRng,
    unreachable_until: Option<Instant>,
    injected: u64,
    calls: u64,
    in_flight: u64,
    max_in_flight: u64,
}

/// Marks one call in flight (for [`FaultHandle::max_concurrent_calls`]) until dropped.
#[derive(Debug)]
struct CallGuard {
    handle: FaultHandle,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.handle.lock().in_flight -= 1;
    }
}

/// Shared, runtime-settable fault settings. Clones share the settings.
#[derive(Clone)]
pub struct FaultHandle {
    state: Arc<Mutex<FaultState>>,
}

impl Default for FaultHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultHandle {
    /// A handle that injects nothing until [`Self::set`] is called.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(FaultState {
                config: FaultConfig::default(),
                rng: StdRng::from_entropy(),
                unreachable_until: None,
                injected: 0,
                calls: 0,
                in_flight: 0,
                max_in_flight: 0,
            })),
        }
    }

    /// Replaces the settings (validated first; an invalid config changes
    /// nothing). Reseeds the RNG and restarts the unreachable window.
    pub fn set(&self, config: FaultConfig) -> Result<(), FaultConfigError> {
        config.validate()?;
        let mut state = self.lock();
        state.rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        state.unreachable_until = (config.unreachable_for_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(config.unreachable_for_ms));
        state.config = config;
        Ok(())
    }

    /// Stops injecting faults.
    pub fn clear(&self) {
        self.set(FaultConfig::default())
            .expect("the default fault config is valid");
    }

    /// The current settings.
    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Calls that reached the wrapper so far.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Most calls that were in flight at once so far (from the fault decision
    /// to the end of the backend's answer), to check concurrency limits.
    pub fn max_concurrent_calls(&self) -> u64 {
        self.lock().max_in_flight
    }

    /// Failures injected so far.
    pub fn injected_failures(&self) -> u64 {
        self.lock().injected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A panic while holding this lock cannot leave the state inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides the fate of one call: sleeps the delay, then fails or not. The
    /// call counts as in flight until the returned guard is dropped.
    async fn before_call(&self, op: &'static str) -> object_store::Result<CallGuard> {
        let guard = CallGuard {
            handle: self.clone(),
        };
        let (delay, fault) = {
            let mut state = self.lock();
            state.calls += 1;
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
            let delay = Duration::from_millis(state.config.delay_ms);
            let now = Instant::now();
            let fault = match state.unreachable_until {
                Some(until) if until > now => Some(InjectedFault::Unreachable {
                    op,
                    remaining: until - now,
                }),
                _ => {
                    let fail_percent = state.config.fail_percent;
                    (fail_percent > 0 && state.rng.gen_range(0..100u8) < fail_percent)
                        .then_some(InjectedFault::Failure { op, fail_percent })
                }
            };
            if fault.is_some() {
                state.injected += 1;
            }
            (delay, fault)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match fault {
            Some(fault) => Err(object_store::Error::Generic {
                store: "FaultInjection",
                source: Box::new(fault),
            }),
            None => Ok(guard),
        }
    }
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle")
            .field("config", &self.config())
            .finish()
    }
}

/// An `ObjectStore` that consults a [`FaultHandle`] before every call and then
/// passes it to the wrapped store.
#[derive(Debug)]
pub struct FaultInjectingStore {
    inner: Arc<dyn ObjectStore>,
    handle: FaultHandle,
}

impl FaultInjectingStore {
    /// Wraps `inner`, injecting what `handle` says.
    pub fn new(inner: Arc<dyn ObjectStore>, handle: FaultHandle) -> Self {
        Self { inner, handle }
    }
}

impl fmt::Display for FaultInjectingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultInjecting({})", self.inner)
    }
}

/// A stream that first runs the fault decision, then yields `make()`'s items.
fn faulty_stream<T: Send + 'static>(
    handle: FaultHandle,
    op: &'static str,
    make: impl FnOnce() -> BoxStream<'static, object_store::Result<T>> + Send + 'static,
) -> BoxStream<'static, object_store::Result<T>> {
    futures::stream::once(async move {
        match handle.before_call(op).await {
            // The guard lives as long as the stream.
            Ok(guard) => make()
                .map(move |item| {
                    let _in_flight = &guard;
                    item
                })
                .boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    })
    .flatten()
    .boxed()
}

#[async_trait]
impl ObjectStore for FaultInjectingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let _call = self.handle.before_call("put").await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let _call = self.handle.before_call("put_multipart").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        let _call = self.handle.before_call(op).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let _call = self.handle.before_call("get_ranges").await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        faulty_stream(self.handle.clone(), "delete", move || {
            inner.delete_stream(locations)
        })
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        faulty_stream(self.handle.clone(), "list", move || {
            inner.list(prefix.as_ref())
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let _call = self.handle.before_call("list_with_delimiter").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let _call = self.handle.before_call("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_json_with_defaults_and_validated() {
        let c: FaultConfig = serde_json::from_str(
            r#"{"fail_percent": 30, "delay_ms": 500, "unreachable_for_ms": 20000}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            FaultConfig {
                fail_percent: 30,
                delay_ms: 500,
                unreachable_for_ms: 20000,
                seed: None
            }
        );
        assert_eq!(
            serde_json::from_str::<FaultConfig>("{}").unwrap(),
            FaultConfig::default()
        );
        assert!(serde_json::from_str::<FaultConfig>(r#"{"fail_pct": 3}"#).is_err());
        let handle = FaultHandle::new();
        let too_much = FaultConfig {
            fail_percent: 101,
            ..FaultConfig::default()
        };
        assert!(handle
            .set(too_much)
            .unwrap_err()
            .to_string()
            .contains("fail_percent"));
        assert_eq!(
            handle.config(),
            FaultConfig::default(),
            "rejected config changed nothing"
        );
    }

    async fn outcomes(handle: &FaultHandle, n: usize) -> Vec<bool> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(handle.before_call("get").await.is_err());
            assert_eq!(handle.lock().in_flight, 0, "guards are dropped");
        }
        out
    }

    #[tokio::test]
    async fn seeded_failures_are_reproducible_and_near_the_rate() {
        let handle = FaultHandle::new();
        let config = FaultConfig {
            fail_percent: 30,
            seed: Some(42),
            ..FaultConfig::default()
        };
        handle.set(config.clone()).unwrap();
        let first = outcomes(&handle, 1000).await;
        handle.set(config).unwrap();
        let second = outcomes(&handle, 1000).await;
        assert_eq!(first, second);
        let failed = first.iter().filter(|f| **f).count();
        assert!(
            (220..=380).contains(&failed),
            "{failed} of 1000 failed at 30%"
        );
        assert_eq!(handle.injected_failures(), 2 * failed as u64);
        assert_eq!(handle.calls(), 2000);
        handle.clear();
        assert!(outcomes(&handle, 100).await.iter().all(|f| !f));
    }

    #[tokio::test]
    async fn unreachable_window_ends() {
        let handle = FaultHandle::new();
        handle
            .set(FaultConfig {
                unreachable_for_ms: 100,
                ..FaultConfig::default()
            })
            .unwrap();
        let err = handle.before_call("put").await.unwrap_err();
        assert!(err.to_string().contains("unreachable"), "{err}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        handle.before_call("put").await.unwrap();
    }

    #[tokio::test]
    async fn counts_concurrent_calls() {
        let handle = FaultHandle::new();
        let a = handle.before_call("get").await.unwrap();
        let b = handle.before_call("get").await.unwrap();
        drop(a);
        let c = handle.before_call("get").await.unwrap();
        assert_eq!(handle.max_concurrent_calls(), 2);
        drop((b, c));
        let _d = handle.before_call("get").await.unwrap();
        assert_eq!(handle.max_concurrent_calls(), 2);
        assert_eq!(handle.calls(), 4);
    }
}
