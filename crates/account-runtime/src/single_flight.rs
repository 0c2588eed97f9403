//! Single flight per key: one run of an async operation (e.g. a token
//! refresh) per key at a time, shared by every concurrent caller.
//!
//! # Cancellation
//!
//! The first caller for a key (the leader) runs its own `f`; later callers
//! for that key (followers) wait for the leader's result. If the leader's
//! future is dropped before it finishes (or `f` panics), its flight ends
//! without a result and **a waiting follower takes over**: it becomes the new
//! leader and runs its own `f` (any other followers then wait for it). So a
//! follower never hangs on a cancelled leader and never sees an error that
//! the operation itself did not return.
//!
//! Results are not cached: a call after a flight finished starts a new one.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// The channel of one flight: `None` until the leader publishes its result.
type Flight<T, E> = watch::Sender<Option<Result<T, E>>>;

/// Deduplicates concurrent runs of an async operation per key.
pub struct SingleFlight<K, T, E> {
    /// In-flight keys. The map owns each flight's sender; removing the entry
    /// closes the channel, which wakes followers.
    flights: Mutex<HashMap<K, Flight<T, E>>>,
}

impl<K, T, E> Default for SingleFlight<K, T, E> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, T, E> fmt::Debug for SingleFlight<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

enum Role<T, E> {
    Leader,
    Follower(watch::Receiver<Option<Result<T, E>>>),
}

/// Held by the leader while it runs; ends the flight when dropped, so a
/// cancelled or panicking leader releases its followers.
struct LeaderGuard<'a, K: Eq + Hash, T, E> {
    flights: &'a Mutex<HashMap<K, Flight<T, E>>>,
    key: Option<K>,
}

impl<K: Eq + Hash, T, E> LeaderGuard<'_, K, T, E> {
    /// Ends the flight and hands back its sender to publish the result.
    fn finish(mut self) -> Option<Flight<T, E>> {
        let key = self.key.take()?;
        lock(self.flights).remove(&key)
    }
}

impl<K: Eq + Hash, T, E> Drop for LeaderGuard<'_, K, T, E> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Dropping the sender closes the channel: followers wake up with
            // no result and take over.
            drop(lock(self.flights).remove(&key));
        }
    }
}

fn lock<M>(mutex: &Mutex<M>) -> MutexGuard<'_, M> {
    // Nothing panics while the map is locked; a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K, T, E> SingleFlight<K, T, E>
where
    K: Eq + Hash + Clone,
    T: Clone,
    E: Clone,
{
    /// No flights yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` for `key` unless a run for `key` is already in flight, in
    /// which case this waits for that run's result (`Ok` or `Err`) instead.
    /// `f` is called at most once per call of `run`, and only if this call
    /// leads a flight (see the module docs for cancellation).
    ///
    /// # Errors
    ///
    /// The error returned by the flight's `f`.
    pub async fn run<F, Fut>(&self, key: K, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        loop {
            let role = {
                let mut flights = lock(&self.flights);
                match flights.get(&key) {
                    Some(flight) => Role::Follower(flight.subscribe()),
                    None => {
                        flights.insert(key.clone(), watch::Sender::new(None));
                        Role::Leader
                    }
                }
            };
            match role {
                Role::Leader => {
                    let guard = LeaderGuard {
                        flights: &self.flights,
                        key: Some(key),
                    };
                    let result = f().await;
                    if let Some(flight) = guard.finish() {
                        flight.send_replace(Some(result.clone()));
                    }
                    return result;
                }
                Role::Follower(mut receiver) => {
                    // `Ok` once the leader published (even if it then closed
                    // the channel); `Err` when it ended without a result.
                    if receiver.changed().await.is_ok()
                        && let Some(result) = receiver.borrow_and_update().clone()
                    {
                        return result;
                    }
                }
            }
        }
    }

    /// Followers currently waiting on `key`'s flight.
    #[cfg(test)]
    fn followers(&self, key: &K) -> usize {
        lock(&self.flights)
            .get(key)
            .map_or(0, watch::Sender::receiver_count)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::{Notify, oneshot};

    use super::*;

    /// Lets other tasks run until `done` holds (no sleeping, no timing).
    async fn until(mut done: impl FnMut() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let flight: Arc<SingleFlight<&'static str, u32, String>> = Arc::new(SingleFlight::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());

        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (flight, runs, release) =
                (Arc::clone(&flight), Arc::clone(&runs), Arc::clone(&release));
            tasks.push(tokio::spawn(async move {
                flight
                    .run("alice", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok(42)
                    })
                    .await
            }));
        }
        until(|| runs.load(Ordering::SeqCst) == 1 && flight.followers(&"alice") == 9).await;
        release.notify_one();
        for task in tasks {
            assert_eq!(task.await.expect("task"), Ok(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flight.followers(&"alice"), 0);
    }

    #[tokio::test]
    async fn errors_are_shared_and_not_cached() {
        let flight: Arc<SingleFlight<u8, u32, String>> = Arc::new(SingleFlight::new());
        let (started_tx, started_rx) = oneshot::channel();
        let (finish_tx, finish_rx) = oneshot::channel::<()>();
        let leader = tokio::spawn({
            let flight = Arc::clone(&flight);
            async move {
                flight
                    .run(1, || async move {
                        let _ = started_tx.send(());
                        let _ = finish_rx.await;
                        Err("refresh token revoked".to_owned())
                    })
                    .await
            }
        });
        started_rx.await.expect("leader started");
        let follower = tokio::spawn({
            let flight = Arc::clone(&flight);
            async move { flight.run(1, || async { Ok(7) }).await }
        });
        until(|| flight.followers(&1) == 1).await;
        finish_tx.send(()).expect("leader waiting");
        assert_eq!(
            leader.await.expect("leader"),
            Err("refresh token revoked".to_owned())
        );
        assert_eq!(
            follower.await.expect("follower"),
            Err("refresh token revoked".to_owned())
        );
        // The flight is over: the next call runs again.
        assert_eq!(flight.run(1, || async { Ok(9) }).await, Ok(9));
    }

    #[tokio::test]
    async fn follower_takes_over_when_leader_is_cancelled() {
        let flight: Arc<SingleFlight<u8, u32, String>> = Arc::new(SingleFlight::new());
        let (started_tx, started_rx) = oneshot::channel();
        let leader = tokio::spawn({
            let flight = Arc::clone(&flight);
            async move {
                flight
                    .run(1, || async move {
                        let _ = started_tx.send(());
                        std::future::pending::<Result<u32, String>>().await
                    })
                    .await
            }
        });
        started_rx.await.expect("leader started");

        let follower_runs = Arc::new(AtomicUsize::new(0));
        let follower = tokio::spawn({
            let (flight, follower_runs) = (Arc::clone(&flight), Arc::clone(&follower_runs));
            async move {
                flight
                    .run(1, || async move {
                        follower_runs.fetch_add(1, Ordering::SeqCst);
                        Ok(2)
                    })
                    .await
            }
        });
        until(|| flight.followers(&1) == 1).await;
        assert_eq!(follower_runs.load(Ordering::SeqCst), 0, "still following");

        leader.abort();
        assert!(leader.await.expect_err("aborted").is_cancelled());
        assert_eq!(follower.await.expect("follower"), Ok(2));
        assert_eq!(follower_runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn single_flight_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SingleFlight<String, u32, String>>();
    }

    #[test]
    fn run_future_is_send_so_it_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let flight: SingleFlight<String, u32, String> = SingleFlight::new();
        assert_send(&flight.run("k".to_owned(), || async { Ok(1) }));
    }

    #[tokio::test]
    async fn different_keys_run_independently() {
        let flight: SingleFlight<&'static str, &'static str, ()> = SingleFlight::new();
        let (a, b) = tokio::join!(
            flight.run("a", || async { Ok("a") }),
            flight.run("b", || async { Ok("b") })
        );
        assert_eq!((a, b), (Ok("a"), Ok("b")));
    }
}
