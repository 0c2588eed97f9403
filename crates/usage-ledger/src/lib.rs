//! The usage ledger: what the server served, per hour, credential, client key, model and API,
//! kept across restarts.
//!
//! The server reports each finished request as a [`Record`] to a [`Recorder`]; one flusher
//! task folds records into hourly [`Rollups`] (counters and latency / time-to-first-token
//! [`Histogram`]s) and adds them to a [`LedgerStore`] every few seconds and at shutdown.
//! [`SqliteStore`] is the embedded store (account-store's `PgLedger` the shared one, over the
//! same [`KEY_COLUMNS`] and [`counter_columns`]); `cliproxy usage` and the management API read it
//! with [`LedgerStore::usage`], whose [`UsageReport`] serializes to the JSON they show.
//!
//! Wiring it into a server:
//!
//! ```no_run
//! # async fn serve() -> Result<(), usage_ledger::LedgerError> {
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use usage_ledger::{Api, DEFAULT_FLUSH_EVERY, Ledger, Outcome, Record};
//!
//! let retention = Some(Duration::from_secs(90 * 86_400));
//! let (recorder, flusher) = Ledger::open("usage.sqlite3".as_ref(), retention, DEFAULT_FLUSH_EVERY)?;
//! // Each request task holds a clone, and records once when the request has ended:
//! recorder.record(Record {
//!     at: SystemTime::now(),
//!     credential: Arc::from("dashscope#1"),
//!     client: Arc::from("laptop"),
//!     model: Arc::from("qwen3-coder-plus"),
//!     api: Api::ChatCompletions,
//!     outcome: Outcome::Success,
//!     prompt_tokens: 1200,
//!     completion_tokens: 300,
//!     cached_tokens: 1000,
//!     tokens_estimated: false,
//!     latency: Duration::from_millis(2400),
//!     ttft: Some(Duration::from_millis(350)),
//!     attempts: 1,
//! });
//! // At shutdown, after the last request:
//! flusher.flush_and_close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Invariants:
//! - [`Recorder::record`] never blocks, takes no lock shared by requests and does no I/O.
//! - Rollups only ever add: a flush adds its counters to the stored ones in one transaction,
//!   so a failed flush is retried whole and a kill loses at most what was not flushed yet.
//! - The database file is 0600 from its creation; a newer schema is refused, never changed.

mod batch;
mod columns;
mod error;
mod histogram;
mod inbox;
mod ledger;
mod record;
mod report;
mod rollup;
mod sqlite;
mod store;

pub use batch::{MOST_ATTEMPTS_COUNTED, Tally};
pub use columns::{KEY_COLUMNS, counter_columns};
pub use error::LedgerError;
pub use histogram::{
    BUCKET_COUNT, Histogram, LATENCY_BUCKETS, LATENCY_BUCKETS_MS, LATENCY_BUCKETS_SECONDS,
};
pub use ledger::{
    DEFAULT_FLUSH_EVERY, FOLD_EVERY, FlusherHandle, Ledger, MAX_PENDING_ROLLUPS, Recorder,
    TallyObserver,
};
pub use record::{Api, FailureClass, Outcome, Record};
pub use report::{
    FailureCounts, GroupBy, LatencySummary, UsageQuery, UsageReport, UsageRow, UsageTotals,
    format_day, format_hour,
};
pub use rollup::{Counters, HOUR_SECONDS, RollupKey, Rollups, hour_of};
pub use sqlite::SqliteStore;
pub use store::LedgerStore;
