//! Dropping values on a background thread, for drops that are slow and need
//! not be waited for.
//!
//! Closing the last descriptor of an unlinked file makes the kernel free
//! its page cache and blocks there and then: 30-60 ms for the few hundred
//! MiB of layer files one compaction replaces, time the compaction (and the
//! writes it throttles) would otherwise wait for.

use std::sync::{mpsc, OnceLock};

type Job = Box<dyn Send>;

/// Sends to the dropping thread; `None` when it could not be started.
static QUEUE: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

/// Drops `value` on the process's dropping thread, in the order given (on
/// this thread when that thread cannot be started).
pub fn drop_in_background<T: Send + 'static>(value: T) {
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("deferred-drop".to_string())
            .spawn(move || rx.into_iter().for_each(drop));
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("cannot start the deferred-drop thread, dropping in place: {e}");
                None
            }
        }
    });
    let job: Job = Box::new(value);
    match queue {
        // The receiving thread never ends, so sending fails only if it
        // panicked; the job comes back and is dropped here.
        Some(tx) => {
            if let Err(mpsc::SendError(job)) = tx.send(job) {
                drop(job);
            }
        }
        None => drop(job),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;
    use std::time::Duration;

    /// Reports the name of the thread that drops it.
    struct Reporter(Sender<Option<String>>);

    impl Drop for Reporter {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn values_are_dropped_on_the_background_thread_in_order() {
        let (tx, rx) = mpsc::channel();
        let (order_tx, order_rx) = mpsc::channel();
        for i in 0..3 {
            drop_in_background((Reporter(tx.clone()), Sequenced(i, order_tx.clone())));
        }
        for _ in 0..3 {
            let name = rx.recv_timeout(Duration::from_secs(10)).expect("dropped");
            assert_eq!(name.as_deref(), Some("deferred-drop"));
        }
        let order: Vec<u32> = (0..3)
            .map(|_| {
                order_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("dropped")
            })
            .collect();
        assert_eq!(order, vec![0, 1, 2]);
    }

    /// Reports its number when dropped.
    struct Sequenced(u32, Sender<u32>);

    impl Drop for Sequenced {
        fn drop(&mut self) {
            let _ = self.1.send(self.0);
        }
    }
}
