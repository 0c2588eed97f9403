//! Where rollups are kept: the [`LedgerStore`] trait. [`crate::SqliteStore`] is the embedded
//! one; another database (PostgreSQL, say) implements the same four methods.

use crate::error::LedgerError;
use crate::report::{UsageQuery, UsageReport};
use crate::rollup::Rollups;

/// A database of hourly rollups.
///
/// Methods block: the flusher calls them on a blocking thread (`spawn_blocking`), never on a
/// request's task, and a reader (`cliproxy usage`, the management API) should do the same.
pub trait LedgerStore: Send + 'static {
    /// Adds every rollup to the one stored under its key (a new key starts at zero), all in
    /// one transaction: on an error nothing was added, and the caller may add them again.
    ///
    /// # Errors
    ///
    /// When the database cannot be written.
    fn add(&mut self, rollups: &Rollups) -> Result<(), LedgerError>;

    /// Deletes the rollups of hours that start before `first_kept_hour` (Unix seconds); returns
    /// how many were deleted.
    ///
    /// # Errors
    ///
    /// When the database cannot be written.
    fn prune(&mut self, first_kept_hour: i64) -> Result<u64, LedgerError>;

    /// Usage since `query.since`, grouped by `query.by`.
    ///
    /// # Errors
    ///
    /// When the database cannot be read.
    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError>;

    /// The rollups stored under each key, from hour `first_hour` on: what [`Self::add`] added,
    /// for checks and exports.
    ///
    /// # Errors
    ///
    /// When the database cannot be read.
    fn rollups_since(&self, first_hour: i64) -> Result<Rollups, LedgerError>;
}
