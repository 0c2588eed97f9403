//! Where request tasks leave their records for the flusher: two vectors per core, each behind
//! a lock of its own, every thread always using the same one.
//!
//! A channel shared by all request threads made every record touch the same few cache lines
//! from every core (its tail index, a block's ready bits, the receiver's waker): under load
//! that cost more than the rest of recording. Here a thread's push takes a lock another request
//! thread takes only when there are more threads than shards, on memory no other core writes,
//! and the flusher swaps each vector out once a fold.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::record::Record;

/// The fewest vectors records are spread over; a machine with more cores gets two per core,
/// so that the runtime's worker threads (one per core) rarely share one (sharing is correct,
/// only slower).
const MIN_SHARDS: usize = 16;

/// The capacity a shard's vectors keep between folds (about 130 KiB of records each, what
/// 100 ms of 10,000 requests a second on one thread fill): a burst's vectors are not kept at
/// their peak size for ever, and a busier thread only grows its vector once a fold.
const KEEP_CAPACITY: usize = 1024;

/// One vector of records, on cache lines of its own (two, for the adjacent-line prefetcher),
/// so that two threads' pushes never write to the same line; and the vector that takes its
/// place at a fold. Each shard swaps its own two, so their capacity settles at what the shard
/// needs instead of wandering from shard to shard and being grown again.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    records: Mutex<Vec<Record>>,
    /// Taken by the flusher only.
    spare: Mutex<Vec<Record>>,
}

/// A lock's vector; a panic while pushing leaves a valid one, so a poisoned lock is used on.
fn lock(vector: &Mutex<Vec<Record>>) -> MutexGuard<'_, Vec<Record>> {
    vector.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The records left since the flusher last took them.
pub(crate) struct Inbox {
    shards: Box<[Shard]>,
    closed: AtomicBool,
}

impl Default for Inbox {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            // A power of two: a thread finds its shard with a mask, not a division.
            shards: (0..MIN_SHARDS.max(2 * cores).next_power_of_two())
                .map(|_| Shard::default())
                .collect(),
            closed: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Leaves `record` for the flusher; after [`Inbox::close`] it is dropped.
    pub(crate) fn put(&self, record: Record) {
        let mut records = lock(&self.own_shard().records);
        // Read under the shard's lock: a close whose take of this shard comes later finds the
        // record, and a put after that take sees the flag the close set before it.
        if !self.closed.load(Ordering::Relaxed) {
            records.push(record);
        }
    }

    /// The calling thread's shard.
    fn own_shard(&self) -> &Shard {
        &self.shards[thread_number() & (self.shards.len() - 1)]
    }

    /// Refuses every later [`Inbox::put`]; what was put before is still taken.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Hands every record left so far to `each`, shard by shard. Called by one task at a time
    /// (the flusher).
    pub(crate) fn take(&self, mut each: impl FnMut(Record)) {
        for shard in &*self.shards {
            let mut spare = lock(&shard.spare);
            std::mem::swap(&mut *lock(&shard.records), &mut *spare);
            spare.drain(..).for_each(&mut each);
            spare.shrink_to(KEEP_CAPACITY);
        }
    }
}

/// The flusher's hold on the inbox: when the flusher ends for any reason, a panic or a
/// runtime shut down included, the inbox is closed and emptied, so that recorders see the
/// ledger off instead of piling records up with nobody to take them.
pub(crate) struct ClosedOnDrop(pub(crate) Arc<Inbox>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.close();
        self.0.take(drop);
    }
}

/// The calling thread's number, which picks its shard: threads take the next one in turn
/// when they first record.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|shard| *shard)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn record(attempts: u32) -> Record {
        let (credential, client, model) = (Arc::from("key#1"), Arc::from(""), Arc::from("m"));
        Record {
            attempts,
            ..Record::success(&credential, &client, &model, SystemTime::UNIX_EPOCH)
        }
    }

    fn taken(inbox: &Inbox) -> Vec<u32> {
        let mut seen = Vec::new();
        inbox.take(|record| seen.push(record.attempts));
        seen.sort_unstable();
        seen
    }

    #[test]
    fn every_thread_s_records_are_taken_once() {
        let inbox = Arc::new(Inbox::default());
        let threads: Vec<_> = (0..40)
            .map(|thread| {
                let inbox = Arc::clone(&inbox);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        inbox.put(record(thread * 25 + i));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a recording thread");
        }
        assert_eq!(taken(&inbox), (0..1000).collect::<Vec<_>>());
        assert!(taken(&inbox).is_empty());
    }

    #[test]
    fn a_close_keeps_what_was_put_before_and_refuses_the_rest() {
        let inbox = Inbox::default();
        inbox.put(record(1));
        assert!(!inbox.is_closed());
        inbox.close();
        assert!(inbox.is_closed());
        inbox.put(record(2));
        assert_eq!(taken(&inbox), vec![1]);
    }

    #[test]
    fn a_burst_s_vectors_do_not_stay_at_their_peak() {
        let inbox = Inbox::default();
        for i in 0..10_000 {
            inbox.put(record(i));
        }
        let mut count = 0;
        inbox.take(|_| count += 1);
        assert_eq!(count, 10_000);
        let shard = inbox.own_shard();
        assert!(lock(&shard.spare).capacity() <= KEEP_CAPACITY);
        // The next fold swaps the small vector in and shrinks the burst's one.
        inbox.take(|_| count += 1);
        assert_eq!(count, 10_000);
        assert!(lock(&shard.records).capacity() <= KEEP_CAPACITY);
        assert!(lock(&shard.spare).capacity() <= KEEP_CAPACITY);
    }
}
