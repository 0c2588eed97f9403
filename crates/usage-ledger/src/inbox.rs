//! Where request tasks leave their records for the flusher: a few vectors, each behind a lock
//! of its own, every thread always using the same one.
//!
//! A channel shared by all request threads made every record touch the same few cache lines
//! from every core (its tail index, a block's ready bits, the receiver's waker): under load
//! that cost more than the rest of recording. Here a thread's push takes a lock no other
//! request thread takes, on memory no other core writes, and the flusher swaps each vector out
//! once a fold.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::record::Record;

/// How many vectors records are spread over: more than the worker threads of a runtime on a
/// small machine, so that two of them rarely share one (sharing is correct, only slower).
const SHARDS: usize = 16;

/// The capacity the flusher keeps between folds (about 0.6 MiB of records): a burst's
/// vectors are not kept at their peak size for ever.
const KEEP_CAPACITY: usize = 4096;

/// One vector of records, on cache lines of its own (two, for the adjacent-line prefetcher),
/// so that two threads' pushes never write to the same line.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Vec<Record>>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        // A panic while pushing leaves a valid vector: keep using it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The records left since the flusher last took them.
#[derive(Default)]
pub(crate) struct Inbox {
    shards: [Shard; SHARDS],
    closed: AtomicBool,
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
        let mut records = self.shards[own_shard()].lock();
        // Read under the shard's lock: a close whose take of this shard comes later finds the
        // record, and a put after that take sees the flag the close set before it.
        if !self.closed.load(Ordering::Relaxed) {
            records.push(record);
        }
    }

    /// Refuses every later [`Inbox::put`]; what was put before is still taken.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Hands every record left so far to `each`, shard by shard. `spare` is the flusher's
    /// empty vector: it takes a shard's place and comes back empty, its capacity kept.
    pub(crate) fn take(&self, spare: &mut Vec<Record>, mut each: impl FnMut(Record)) {
        for shard in &self.shards {
            std::mem::swap(&mut *shard.lock(), spare);
            spare.drain(..).for_each(&mut each);
        }
        spare.shrink_to(KEEP_CAPACITY);
    }
}

/// The shard of the calling thread: threads take the next one in turn when they first record.
fn own_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::record::{Api, Outcome};

    fn record(attempts: u32) -> Record {
        Record {
            at: SystemTime::UNIX_EPOCH,
            credential: Arc::from("key#1"),
            client: Arc::from(""),
            model: Arc::from("m"),
            api: Api::ChatCompletions,
            outcome: Outcome::Success,
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            tokens_estimated: false,
            latency: Duration::from_millis(1),
            ttft: None,
            attempts,
        }
    }

    fn taken(inbox: &Inbox) -> Vec<u32> {
        let mut spare = Vec::new();
        let mut seen = Vec::new();
        inbox.take(&mut spare, |record| seen.push(record.attempts));
        assert!(spare.is_empty());
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
    fn the_spare_keeps_a_bounded_capacity() {
        let inbox = Inbox::default();
        for i in 0..10_000 {
            inbox.put(record(i));
        }
        let mut spare = Vec::new();
        let mut count = 0;
        inbox.take(&mut spare, |_| count += 1);
        assert_eq!(count, 10_000);
        assert!(spare.capacity() <= KEEP_CAPACITY);
    }
}
