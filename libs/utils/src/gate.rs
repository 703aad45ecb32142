//! Gates: a way to know that every task working on an object has finished.
//!
//! Each tenant and timeline owns a [`Gate`] and a cancellation token. A task
//! that works on the object holds a [`GateGuard`] for as long as it runs.
//! Shutdown cancels the token and then calls [`Gate::close`], which waits until
//! every guard is dropped and refuses new entries (DESIGN.md section 6).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MAX_UNITS: u32 = u32::MAX >> 3;

/// Tracks the tasks that work on one object; see the module docs.
#[derive(Debug)]
pub struct Gate {
    sem: Arc<Semaphore>,
    close_lock: tokio::sync::Mutex<()>,
    name: String,
}

/// Proof of being inside a [`Gate`]; dropping it leaves the gate.
#[derive(Debug)]
pub struct GateGuard(#[allow(dead_code)] OwnedSemaphorePermit);

/// The gate is closed or closing: the object is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("gate is closed: the object is shutting down")]
pub struct GateError;

impl Gate {
    /// An open gate; `name` appears in the warning logged when closing is slow.
    pub fn new(name: impl Into<String>) -> Self {
        Gate {
            sem: Arc::new(Semaphore::new(MAX_UNITS as usize)),
            close_lock: tokio::sync::Mutex::new(()),
            name: name.into(),
        }
    }

    /// Enters the gate, or fails if it is closing or closed.
    pub fn enter(&self) -> Result<GateGuard, GateError> {
        self.sem
            .clone()
            .try_acquire_owned()
            .map(GateGuard)
            .map_err(|_| GateError)
    }

    /// Number of guards currently held (meaningful while the gate is open).
    pub fn inside(&self) -> usize {
        MAX_UNITS as usize - self.sem.available_permits()
    }

    /// Whether the gate has been closed.
    pub fn is_closed(&self) -> bool {
        self.sem.is_closed()
    }

    /// Refuses new entries and waits until every guard has been dropped. A
    /// wait longer than a few seconds is logged, naming the gate.
    pub async fn close(&self) {
        let _serialise = self.close_lock.lock().await;
        if self.sem.is_closed() {
            return;
        }
        let acquire = self.sem.acquire_many(MAX_UNITS);
        tokio::pin!(acquire);
        let mut waited = Duration::ZERO;
        let step = Duration::from_secs(5);
        loop {
            match tokio::time::timeout(step, &mut acquire).await {
                Ok(Ok(permits)) => {
                    permits.forget();
                    break;
                }
                // Only close() closes the semaphore, and close() is serialised.
                Ok(Err(_)) => break,
                Err(_) => {
                    waited += step;
                    tracing::warn!(gate = %self.name, waited_secs = waited.as_secs(), "still waiting for tasks to leave the gate");
                }
            }
        }
        self.sem.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_waits_for_guards_and_refuses_new_ones() {
        let gate = Arc::new(Gate::new("test"));
        let guard = gate.enter().unwrap();
        assert_eq!(gate.inside(), 1);
        let closer = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.close().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closer.is_finished());
        drop(guard);
        closer.await.unwrap();
        assert!(gate.is_closed());
        assert_eq!(gate.enter().unwrap_err(), GateError);
    }
}
