//! The flusher: it writes on its own every `flush_every`, on `flush`, and at
//! `flush_and_close`; keeps a failed write for the next; deletes old hours; and keeps what was
//! recorded when every recorder is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use usage_ledger::{
    GroupBy, Ledger, LedgerError, LedgerStore as _, Recorder, Rollups, SqliteStore, Tally,
    TallyObserver, UsageQuery,
};

use crate::support::{Event, MemoryStore, at, db_path, next_event, record};

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_writes_what_was_recorded_before_it_and_close_the_rest() {
    let (_dir, path) = db_path();
    let (recorder, flusher) = Ledger::open(&path, None, LONG).unwrap();
    assert!(recorder.is_enabled());
    for _ in 0..3 {
        recorder.record(record("a@example.com", "coder-model"));
    }
    flusher.flush().await.unwrap();
    let reader = SqliteStore::open_existing(&path).unwrap();
    let requests = |reader: &SqliteStore| reader.rollups_since(0).unwrap().total().requests;
    assert_eq!(requests(&reader), 3);
    recorder.record(record("dashscope#1", "qwen-max"));
    assert_eq!(requests(&reader), 3, "not flushed yet");
    flusher.flush_and_close().await.unwrap();
    assert_eq!(requests(&reader), 4);
    recorder.record(record("dashscope#1", "qwen-max"));
    assert!(
        !recorder.is_enabled(),
        "a closed ledger takes no more records"
    );
    assert_eq!(requests(&reader), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flusher_writes_on_its_own_every_interval() {
    let (store, events) = MemoryStore::new();
    let (recorder, flusher) = Ledger::start(store.clone(), None, Duration::from_millis(20));
    recorder.record(record("a@example.com", "coder-model"));
    assert_eq!(next_event(&events), Event::Added(1));
    assert_eq!(store.total().requests, 1);
    recorder.record(record("a@example.com", "coder-model"));
    recorder.record(record("a@example.com", "qwen-max"));
    // Records may arrive on either side of a tick: wait until both were written.
    let mut written = 0;
    while store.total().requests < 3 {
        if let Event::Added(rollups) = next_event(&events) {
            written += rollups;
        }
    }
    assert!(written >= 2);
    flusher.flush_and_close().await.unwrap();
    assert_eq!(store.total().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_kept_and_written_by_the_next_flush() {
    let (store, events) = MemoryStore::new();
    *store.failures_ahead.lock().unwrap() = 1;
    let (recorder, flusher) = Ledger::start(store.clone(), None, LONG);
    recorder.record(record("a@example.com", "coder-model"));
    assert!(matches!(flusher.flush().await, Err(LedgerError::Closed)));
    assert_eq!(next_event(&events), Event::Failed);
    assert_eq!(store.total().requests, 0);
    recorder.record(record("a@example.com", "coder-model"));
    flusher.flush().await.unwrap();
    assert_eq!(next_event(&events), Event::Added(1));
    assert_eq!(
        store.total().requests,
        2,
        "the failed batch and the new one, once each"
    );
    flusher.flush_and_close().await.unwrap();
    assert_eq!(store.total().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_recorder_gone_flushes_what_it_recorded() {
    let (store, events) = MemoryStore::new();
    let (recorder, flusher) = Ledger::start(store.clone(), None, LONG);
    drop(flusher);
    let clone = recorder.clone();
    recorder.record(record("a@example.com", "coder-model"));
    clone.record(record("a@example.com", "coder-model"));
    drop(recorder);
    assert_eq!(store.total().requests, 0);
    drop(clone);
    assert_eq!(next_event(&events), Event::Added(1));
    assert_eq!(store.total().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_hours_at_the_first_flush() {
    let (_dir, path) = db_path();
    let mut seeded = SqliteStore::open(&path).unwrap();
    let mut old = Rollups::default();
    let mut a_year_in = record("a@example.com", "coder-model");
    a_year_in.at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(365 * 86_400);
    old.add(&a_year_in);
    seeded.add(&old).unwrap();
    drop(seeded);

    let day = Duration::from_secs(86_400);
    let (recorder, flusher) = Ledger::open(&path, Some(day), LONG).unwrap();
    let mut recent = record("a@example.com", "coder-model");
    recent.at = std::time::SystemTime::now();
    recorder.record(recent);
    flusher.flush_and_close().await.unwrap();

    let store = SqliteStore::open_existing(&path).unwrap();
    let stored = store.rollups_since(0).unwrap();
    assert_eq!(
        stored.total().requests,
        1,
        "only the recent request is left"
    );
    let report = store
        .usage(&UsageQuery {
            since: at(0),
            by: GroupBy::Credential,
        })
        .unwrap();
    assert_eq!(report.total.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retention_nothing_is_deleted() {
    let (store, events) = MemoryStore::new();
    let (recorder, flusher) = Ledger::start(store.clone(), None, LONG);
    recorder.record(record("a@example.com", "coder-model"));
    flusher.flush_and_close().await.unwrap();
    assert_eq!(next_event(&events), Event::Added(1));
    assert!(events.try_recv().is_err(), "no prune without a retention");
}

#[test]
fn a_disabled_recorder_takes_records_and_keeps_none() {
    let recorder = Recorder::disabled();
    assert!(!recorder.is_enabled());
    recorder.record(record("a@example.com", "coder-model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_handle_the_flusher_keeps_writing_for_the_recorders() {
    let (store, events) = MemoryStore::new();
    let (recorder, flusher) = Ledger::start(store.clone(), None, Duration::from_millis(20));
    drop(flusher);
    recorder.record(record("a@example.com", "coder-model"));
    assert_eq!(next_event(&events), Event::Added(1));
    assert!(recorder.is_enabled());
    recorder.record(record("a@example.com", "coder-model"));
    drop(recorder);
    assert_eq!(next_event(&events), Event::Added(1));
    assert_eq!(store.total().requests, 2);
}

/// Keeps the credential and requests of each tally it is shown.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(String, u64)>>);

impl TallyObserver for Seen {
    fn observe(&self, tally: &Tally) {
        self.0
            .lock()
            .unwrap()
            .push((tally.key.credential.to_string(), tally.counters.requests));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_see_every_record_the_flusher_takes_once() {
    let (store, _events) = MemoryStore::new();
    let (recorder, flusher) = Ledger::start(store.clone(), None, LONG);
    let seen = std::sync::Arc::new(Seen::default());
    flusher.observe(seen.clone());
    // Two records of one key, sharing their names as a server's do, and one of another.
    let first = record("a@example.com", "coder-model");
    recorder.record(first.clone());
    recorder.record(record("dashscope#1", "qwen-max"));
    recorder.record(first);
    flusher.flush().await.unwrap();
    let mut shown = seen.0.lock().unwrap().clone();
    shown.sort();
    assert_eq!(
        shown,
        [
            ("a@example.com".to_owned(), 2),
            ("dashscope#1".to_owned(), 1)
        ],
        "a key's records of a fold in one tally"
    );
    flusher.flush_and_close().await.unwrap();
    assert_eq!(seen.0.lock().unwrap().len(), 2, "each tally is shown once");
    assert_eq!(store.total().requests, 3);
}

/// Panics on the first records it is shown.
struct Panicking;

impl TallyObserver for Panicking {
    fn observe(&self, _: &Tally) {
        panic!("an observer's bug");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flusher_that_panics_turns_recording_off_instead_of_piling_records_up() {
    let (store, _events) = MemoryStore::new();
    let (recorder, flusher) = Ledger::start(store, None, LONG);
    flusher.observe(Arc::new(Panicking));
    recorder.record(record("a@example.com", "coder-model"));
    assert!(matches!(flusher.flush().await, Err(LedgerError::Closed)));
    // The task's unwinding closes the inbox after the flush's reply is dropped: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder.is_enabled() {
        assert!(Instant::now() < deadline, "recording stayed on");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
