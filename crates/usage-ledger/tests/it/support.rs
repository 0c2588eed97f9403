//! What the tests share: records made to order, a temporary database, and a store in memory
//! that reports each write and can be told to fail.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use usage_ledger::{
    Api, Counters, GroupBy, LedgerError, LedgerStore, Outcome, Record, RollupKey, Rollups,
    UsageQuery, UsageReport, format_day, format_hour,
};

/// 2026-12-05 14:00:00 UTC, the start of an hour.
pub const HOUR: u64 = 1_796_479_200;

/// `seconds` after [`HOUR`].
pub fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(HOUR + seconds)
}

/// A successful chat request at [`HOUR`] by `credential` for `model`, 100 prompt and 20
/// completion tokens, 300 ms, first byte at 100 ms.
pub fn record(credential: &str, model: &str) -> Record {
    Record {
        at: at(60),
        credential: Arc::from(credential),
        client: Arc::from("laptop"),
        model: Arc::from(model),
        api: Api::ChatCompletions,
        outcome: Outcome::Success,
        prompt_tokens: 100,
        completion_tokens: 20,
        cached_tokens: 0,
        tokens_estimated: false,
        latency: Duration::from_millis(300),
        ttft: Some(Duration::from_millis(100)),
        attempts: 1,
    }
}

/// A fresh directory and the database path in it (not created).
pub fn db_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("usage.sqlite3");
    (dir, path)
}

/// What [`MemoryStore`] tells the test.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A write of this many rollups succeeded.
    Added(usize),
    /// A write failed, as the test asked.
    Failed,
    /// Hours before this one were deleted.
    Pruned(i64),
}

/// A store in memory, shared with the test.
#[derive(Clone)]
pub struct MemoryStore {
    pub rollups: Arc<Mutex<Rollups>>,
    /// How many of the next writes fail.
    pub failures_ahead: Arc<Mutex<usize>>,
    events: mpsc::Sender<Event>,
}

impl MemoryStore {
    pub fn new() -> (Self, mpsc::Receiver<Event>) {
        let (events, received) = mpsc::channel();
        let store = Self {
            rollups: Arc::default(),
            failures_ahead: Arc::default(),
            events,
        };
        (store, received)
    }

    pub fn total(&self) -> Counters {
        self.rollups.lock().unwrap().total()
    }
}

impl LedgerStore for MemoryStore {
    fn add(&mut self, rollups: &Rollups) -> Result<(), LedgerError> {
        let mut failures = self.failures_ahead.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            let _ = self.events.send(Event::Failed);
            return Err(LedgerError::Closed);
        }
        self.rollups.lock().unwrap().merge(rollups.clone());
        let _ = self.events.send(Event::Added(rollups.len()));
        Ok(())
    }

    fn prune(&mut self, first_kept_hour: i64) -> Result<u64, LedgerError> {
        let mut stored = self.rollups.lock().unwrap();
        let mut kept = Rollups::default();
        let mut deleted = 0;
        for (key, counters) in stored.iter() {
            if key.hour >= first_kept_hour {
                kept.merge_one(key.clone(), counters);
            } else {
                deleted += 1;
            }
        }
        *stored = kept;
        let _ = self.events.send(Event::Pruned(first_kept_hour));
        Ok(deleted)
    }

    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError> {
        let mut groups: std::collections::BTreeMap<String, Counters> = Default::default();
        for (key, counters) in self.rollups.lock().unwrap().iter() {
            if key.hour >= query.first_hour() {
                groups
                    .entry(group_key(key, query.by))
                    .or_default()
                    .merge(counters);
            }
        }
        Ok(UsageReport::new(query, groups.into_iter().collect()))
    }

    fn rollups_since(&self, first_hour: i64) -> Result<Rollups, LedgerError> {
        let mut since = Rollups::default();
        for (key, counters) in self.rollups.lock().unwrap().iter() {
            if key.hour >= first_hour {
                since.merge_one(key.clone(), counters);
            }
        }
        Ok(since)
    }
}

/// A store that reports each successful write of the store it wraps.
pub struct Notifying<S> {
    pub inner: S,
    pub events: mpsc::Sender<Event>,
}

impl<S: LedgerStore> LedgerStore for Notifying<S> {
    fn add(&mut self, rollups: &Rollups) -> Result<(), LedgerError> {
        self.inner.add(rollups)?;
        let _ = self.events.send(Event::Added(rollups.len()));
        Ok(())
    }

    fn prune(&mut self, first_kept_hour: i64) -> Result<u64, LedgerError> {
        self.inner.prune(first_kept_hour)
    }

    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError> {
        self.inner.usage(query)
    }

    fn rollups_since(&self, first_hour: i64) -> Result<Rollups, LedgerError> {
        self.inner.rollups_since(first_hour)
    }
}

/// The group `key` falls in.
pub fn group_key(key: &RollupKey, by: GroupBy) -> String {
    match by {
        GroupBy::Credential => key.credential.to_string(),
        GroupBy::Model => key.model.to_string(),
        GroupBy::ClientKey => key.client.to_string(),
        GroupBy::Day => format_day(key.hour),
        GroupBy::Hour => format_hour(key.hour),
    }
}

/// The next event, or a failure after a generous wait (the flusher runs on its own task).
pub fn next_event(events: &mpsc::Receiver<Event>) -> Event {
    events
        .recv_timeout(Duration::from_secs(30))
        .expect("the flusher reported within 30 s")
}
