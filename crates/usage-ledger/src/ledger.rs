//! The ledger at run time: [`Ledger::open`] (or [`Ledger::start`] with any store) gives a
//! [`Recorder`], which request tasks clone and call, and a [`FlusherHandle`] for the one task
//! that folds records into rollups and writes them to the store.
//!
//! A record is left in the [`Inbox`] (a vector of the recording thread's own, behind a lock
//! another request thread rarely takes) for the flusher task. Nothing waits on it, so a record
//! wakes no task: every [`FOLD_EVERY`] the flusher takes what was left and adds it to its
//! in-memory rollups, and every `flush_every` it hands the rollups to the store on a blocking
//! thread and starts afresh; a failed write keeps them for the next try. No request task does
//! I/O, and a write in progress only lets records wait in the inbox. Should the flusher task
//! end without a close (a panic), the inbox is closed with it, so records are dropped instead
//! of piling up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::batch::{Batch, Tally};
use crate::error::LedgerError;
use crate::inbox::{ClosedOnDrop, Inbox};
use crate::record::Record;
use crate::rollup::{Rollups, hour_of};
use crate::sqlite::SqliteStore;
use crate::store::LedgerStore;

/// How often the server flushes by default: what a kill -9 can lose at most.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_secs(5);

/// How often the flusher takes the records that were left: what they may pile up in the inbox
/// for, at most. Waking the flusher for each record would cost each request a task wake-up.
pub const FOLD_EVERY: Duration = Duration::from_millis(100);

/// How many rollups (distinct hour, credential, client, model and API) the flusher keeps in
/// memory while the store cannot be written (about 0.5 KiB each): past it, the oldest hours
/// are dropped, so a store that stays away for days costs bounded memory.
pub const MAX_PENDING_ROLLUPS: usize = 50_000;

/// How often old hours are deleted, when a retention is set. The first flush deletes too.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// What the handle asks of the flusher. Records left before it are taken first.
enum Control {
    Flush(oneshot::Sender<Result<(), LedgerError>>),
    Close(oneshot::Sender<Result<(), LedgerError>>),
    Observe(Arc<dyn TallyObserver>),
}

/// Sees every record the flusher takes, counted, on the flusher's task (so never on a
/// request's), at most [`FOLD_EVERY`] after it was recorded: how metrics are fed beside the
/// ledger.
pub trait TallyObserver: Send + Sync + 'static {
    /// A fold's finished requests under one key: the same credential, client key, model, API
    /// and hour (at least one request). Called on the flusher task: it must not block.
    fn observe(&self, tally: &Tally);
}

/// The usage ledger's constructors.
pub struct Ledger;

impl Ledger {
    /// Opens (creating it when missing) the SQLite database at `path` and starts the flusher:
    /// every `flush_every`, and at [`FlusherHandle::flush_and_close`], it writes what was
    /// recorded. With a `retention`, hours older than that are deleted at the first flush and
    /// hourly after.
    ///
    /// Call it inside a Tokio runtime (the flusher is a task of it). The open itself does
    /// blocking file I/O: call it at start-up, not on a request.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open(
        path: &Path,
        retention: Option<Duration>,
        flush_every: Duration,
    ) -> Result<(Recorder, FlusherHandle), LedgerError> {
        let store = SqliteStore::open(path)?;
        Ok(Self::start(store, retention, flush_every))
    }

    /// Starts the flusher over `store`, as [`Ledger::open`] does over SQLite.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start<S: LedgerStore>(
        store: S,
        retention: Option<Duration>,
        flush_every: Duration,
    ) -> (Recorder, FlusherHandle) {
        let inbox = Arc::new(Inbox::default());
        let (control, controlled) = mpsc::unbounded_channel();
        let flusher = Flusher {
            store: Some(store),
            pending: Rollups::default(),
            retention,
            last_prune: None,
            failing: false,
            observers: Vec::new(),
            batch: Batch::default(),
        };
        let task = tokio::spawn(flusher.run(
            Arc::clone(&inbox),
            controlled,
            flush_every.max(Duration::from_millis(1)),
        ));
        (
            Recorder { inbox: Some(inbox) },
            FlusherHandle { control, task },
        )
    }
}

/// What request tasks record finished requests with. Cloning is cheap (one atomic
/// increment) and every clone feeds the same ledger.
#[derive(Debug, Clone)]
pub struct Recorder {
    inbox: Option<Arc<Inbox>>,
}

impl Recorder {
    /// A recorder that counts nothing: what the server holds with the ledger off.
    pub fn disabled() -> Self {
        Self { inbox: None }
    }

    /// Whether records go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inbox.as_ref().is_some_and(|inbox| !inbox.is_closed())
    }

    /// Counts one finished request. It takes its thread's lock in the inbox (which the flusher
    /// holds for the time of a swap, and another request thread only when there are more of
    /// them than shards), awaits nothing and does no I/O; after the ledger is closed, records
    /// are dropped.
    pub fn record(&self, record: Record) {
        if let Some(inbox) = &self.inbox {
            inbox.put(record);
        }
    }
}

/// Controls the flusher task: flush now, or flush and stop at shutdown.
///
/// Dropping it without [`FlusherHandle::flush_and_close`] leaves the task running until the
/// last [`Recorder`] is dropped too, when it flushes and ends; a runtime shut down first, or a
/// kill, loses what was recorded since the last flush.
#[derive(Debug)]
pub struct FlusherHandle {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

impl FlusherHandle {
    /// Writes everything recorded before this call, and waits until it is written.
    ///
    /// # Errors
    ///
    /// The store's error (what was recorded stays in memory for the next flush), or
    /// [`LedgerError::Closed`] when the flusher has stopped.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Flush(reply))
            .map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    /// Shows every record taken from now on to `observer` too (see [`TallyObserver`]).
    /// Records taken before the flusher got this are not shown: call it before serving.
    pub fn observe(&self, observer: Arc<dyn TallyObserver>) {
        // The flusher is gone only after close, when nothing is recorded any more.
        let _ = self.control.send(Control::Observe(observer));
    }

    /// Writes everything recorded before this call, stops the flusher and waits for it. Later
    /// records are dropped. Call it at shutdown, after the last request finished.
    ///
    /// # Errors
    ///
    /// The store's error (what was recorded since the last flush is then lost), or
    /// [`LedgerError::Closed`] when the flusher had stopped already.
    pub async fn flush_and_close(self) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Close(reply))
            .map_err(|_| LedgerError::Closed)?;
        let written = answer.await.map_err(|_| LedgerError::Closed)?;
        // The task ends right after it answered; a panic in it was reported by the runtime.
        let _ = self.task.await;
        written
    }
}

/// The flusher task's state.
struct Flusher<S> {
    /// `None` only while a write has it on a blocking thread, or after that thread panicked.
    store: Option<S>,
    /// What was recorded since the last successful write.
    pending: Rollups,
    retention: Option<Duration>,
    last_prune: Option<Instant>,
    /// The last write failed: the next failure is not logged again.
    failing: bool,
    /// What sees each fold's tallies besides the rollups.
    observers: Vec<Arc<dyn TallyObserver>>,
    /// The tallies of a fold, by key; empty between folds.
    batch: Batch,
}

impl<S: LedgerStore> Flusher<S> {
    async fn run(
        mut self,
        records: Arc<Inbox>,
        mut control: mpsc::UnboundedReceiver<Control>,
        flush_every: Duration,
    ) {
        let records = ClosedOnDrop(records);
        let start = tokio::time::Instant::now();
        let mut flush = tokio::time::interval_at(start + flush_every, flush_every);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let fold_every = FOLD_EVERY.min(flush_every);
        let mut fold = tokio::time::interval_at(start + fold_every, fold_every);
        fold.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut handle_dropped = false;
        loop {
            tokio::select! {
                asked = control.recv(), if !handle_dropped => match asked {
                    Some(Control::Flush(reply)) => {
                        self.fold(&records.0);
                        let _ = reply.send(self.write().await);
                    }
                    Some(Control::Close(reply)) => {
                        // Records left before the close are counted; later ones are refused.
                        records.0.close();
                        self.fold(&records.0);
                        let _ = reply.send(self.write().await);
                        return;
                    }
                    Some(Control::Observe(observer)) => self.observers.push(observer),
                    None => handle_dropped = true,
                },
                _ = fold.tick() => {
                    let recorders_gone = self.fold(&records.0);
                    if recorders_gone && handle_dropped {
                        // Nobody can record or flush any more: keep what was recorded.
                        let _ = self.write().await;
                        return;
                    }
                }
                _ = flush.tick() => {
                    self.fold(&records.0);
                    let _ = self.write().await;
                }
            }
        }
    }

    /// Adds every record that arrived to the pending rollups, and shows them to the observers,
    /// a key's records counted at once; whether every recorder is gone.
    fn fold(&mut self, records: &Arc<Inbox>) -> bool {
        // Only the flusher's own reference left: no recorder can put any more. Read before
        // the take, and made to see every put of the recorders dropped by then.
        let gone = Arc::strong_count(records) == 1;
        fence(Ordering::Acquire);
        let batch = &mut self.batch;
        records.take(|record| batch.add(record));
        for tally in self.batch.drain() {
            for observer in &self.observers {
                observer.observe(&tally);
            }
            self.pending.merge_one(tally.key, &tally.counters);
        }
        gone
    }

    /// Writes the pending rollups (and deletes old hours when due) on a blocking thread.
    async fn write(&mut self) -> Result<(), LedgerError> {
        let first_kept_hour = self
            .retention
            .filter(|_| {
                self.last_prune
                    .is_none_or(|last| last.elapsed() >= PRUNE_EVERY)
            })
            .map(|retention| {
                hour_of(
                    SystemTime::now()
                        .checked_sub(retention)
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                )
            });
        if self.pending.is_empty() && first_kept_hour.is_none() {
            return Ok(());
        }
        let Some(mut store) = self.store.take() else {
            return Err(LedgerError::Closed);
        };
        let batch = std::mem::take(&mut self.pending);
        let joined = tokio::task::spawn_blocking(move || {
            let added = if batch.is_empty() {
                Ok(())
            } else {
                store.add(&batch)
            };
            let pruned = first_kept_hour.map(|hour| store.prune(hour));
            (store, batch, added, pruned)
        })
        .await;
        let Ok((store, batch, added, pruned)) = joined else {
            tracing::error!(
                "the usage ledger's store panicked while writing; usage is no longer recorded until the server restarts"
            );
            return Err(LedgerError::Closed);
        };
        self.store = Some(store);
        match &added {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("usage is written to the ledger again");
            }
            Ok(()) => {}
            Err(error) => {
                // Nothing of the batch was written: keep it for the next try.
                self.pending.merge(batch);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        "{error}; the counts are kept in memory and retried at every flush"
                    );
                }
                let dropped = self.pending.shed_oldest_hours(MAX_PENDING_ROLLUPS);
                if dropped.requests > 0 {
                    tracing::error!(
                        "the usage store has been away so long that {MAX_PENDING_ROLLUPS} rollups wait in memory: dropped the oldest hours ({} requests) to stay within bounds",
                        dropped.requests
                    );
                }
            }
        }
        if let Some(pruned) = pruned {
            self.last_prune = Some(Instant::now());
            match pruned {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!("deleted {deleted} usage rollups older than usage-retention")
                }
                Err(error) => tracing::warn!("{error}; old usage is deleted again in an hour"),
            }
        }
        added
    }
}
