//! One request, done patiently: a concurrency permit, a per-attempt timeout,
//! retries of transient failures with jittered exponential backoff, and
//! prompt cancellation at every wait (permit, request, backoff sleep).

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::RemoteStorageConfig;
use crate::error::{classify, AttemptClass, Op, RemoteStorageError};
use crate::metrics::StorageMetrics;

/// Timeout and backoff knobs, from [`RemoteStorageConfig`].
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl RetryPolicy {
    pub(crate) fn from_config(config: &RemoteStorageConfig) -> Self {
        Self {
            timeout: config.timeout,
            max_retries: config.max_retries,
            base_delay: config.retry_base_delay,
            max_delay: config.retry_max_delay,
        }
    }

    /// Backoff before retry number `retry` (1-based): `base * 2^(retry-1)`
    /// capped at `max_delay`, then "equal jitter": a uniform pick in
    /// `[d/2, d]`, so many clients failing at once spread out but none retries
    /// immediately.
    pub(crate) fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        let jitter_nanos = rng.gen_range(0..=(full - half).as_nanos() as u64);
        half + Duration::from_nanos(jitter_nanos)
    }
}

/// What a failed attempt left behind, for the final error.
enum LastFailure {
    TimedOut,
    Transient(object_store::Error),
}

/// Runs `attempt` until it succeeds, fails permanently, runs out of retries,
/// or `cancel` fires. `target` names the object (or prefix) in errors.
///
/// `attempt` is called once per try and must build a fresh request each time.
pub(crate) async fn with_retries<T, F, Fut>(
    op: Op,
    target: &str,
    policy: &RetryPolicy,
    permits: &Semaphore,
    metrics: &StorageMetrics,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Result<T, RemoteStorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, object_store::Error>>,
{
    let cancelled = || RemoteStorageError::Cancelled {
        op,
        path: target.to_string(),
    };
    let mut attempts: u32 = 0;
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        attempts += 1;
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(cancelled()),
            outcome = async {
                // Waiting for a permit is not part of the request's timeout.
                let _permit = permits.acquire().await.expect("the semaphore is never closed");
                tokio::time::timeout(policy.timeout, attempt()).await
            } => outcome,
        };
        let last = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => match classify(&err) {
                AttemptClass::NotFound => {
                    return Err(RemoteStorageError::NotFound {
                        path: target.to_string(),
                    })
                }
                AttemptClass::Permanent => {
                    return Err(RemoteStorageError::Permanent {
                        op,
                        path: target.to_string(),
                        source: Box::new(err),
                    })
                }
                AttemptClass::Transient => LastFailure::Transient(err),
            },
            Err(_elapsed) => LastFailure::TimedOut,
        };
        if attempts > policy.max_retries {
            return Err(match last {
                LastFailure::TimedOut => RemoteStorageError::Timeout {
                    op,
                    path: target.to_string(),
                    timeout: policy.timeout,
                    attempts,
                },
                LastFailure::Transient(err) => RemoteStorageError::Transient {
                    op,
                    path: target.to_string(),
                    attempts,
                    source: Box::new(err),
                },
            });
        }
        let delay = policy.backoff(attempts, &mut rand::thread_rng());
        match &last {
            LastFailure::TimedOut => tracing::info!(
                "{op} of {target} timed out after {:?} (attempt {attempts}), retrying in {delay:?}",
                policy.timeout
            ),
            LastFailure::Transient(err) => tracing::info!(
                "{op} of {target} failed (attempt {attempts}), retrying in {delay:?}: {err}"
            ),
        }
        metrics.retried(op);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(cancelled()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use rand::SeedableRng;

    use super::*;
    use crate::error::ErrorKind;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_millis(200),
            max_retries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn transient() -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            timeout: Duration::from_secs(1),
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (retry, full_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..50 {
                let d = p.backoff(retry, &mut rng);
                let full = Duration::from_millis(full_ms);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
                seen.insert(d);
            }
            assert!(seen.len() > 10, "retry {retry}: not jittered: {seen:?}");
        }
    }

    #[tokio::test]
    async fn retries_transient_then_succeeds() {
        let metrics = StorageMetrics::new();
        let calls = AtomicU32::new(0);
        let result = with_retries(
            Op::Head,
            "a/b",
            &policy(3),
            &Semaphore::new(1),
            &metrics,
            &CancellationToken::new(),
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(transient()),
                    _ => Ok(42),
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.retries(Op::Head), 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_and_never_retries_permanent() {
        let metrics = StorageMetrics::new();
        let calls = AtomicU32::new(0);
        let err = with_retries(
            Op::Head,
            "a/b",
            &policy(2),
            &Semaphore::new(1),
            &metrics,
            &CancellationToken::new(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(transient())
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(
            err.to_string()
                .contains("head of a/b failed after 3 attempts"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let err = with_retries(
            Op::Head,
            "a/b",
            &policy(5),
            &Semaphore::new(1),
            &metrics,
            &CancellationToken::new(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(object_store::Error::PermissionDenied {
                    path: "a/b".into(),
                    source: "denied".into(),
                })
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn times_out_each_attempt() {
        let err = with_retries(
            Op::Download,
            "slow",
            &policy(1),
            &Semaphore::new(1),
            &StorageMetrics::new(),
            &CancellationToken::new(),
            || async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.to_string().contains("2 attempts"), "{err}");
    }

    #[tokio::test]
    async fn cancellation_interrupts_backoff_sleep() {
        let cancel = CancellationToken::new();
        let slow_backoff = RetryPolicy {
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            ..policy(5)
        };
        let canceller = {
            let cancel = cancel.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                cancel.cancel();
            }
        };
        let started = std::time::Instant::now();
        let (permits, metrics) = (Semaphore::new(1), StorageMetrics::new());
        let (result, ()) = tokio::join!(
            with_retries(
                Op::List,
                "prefix",
                &slow_backoff,
                &permits,
                &metrics,
                &cancel,
                || async { Err::<(), _>(transient()) },
            ),
            canceller
        );
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(30), "not prompt");
    }
}
