//! The usage ledger in the shared database: [`PgLedger`], a [`LedgerStore`] over the table
//! `cliproxy_usage_hourly` (migration 3), with the columns of the embedded SQLite ledger
//! ([`KEY_COLUMNS`], [`counter_columns`]). Every server adds its rollups to the same rows, in
//! one transaction per flush: `INSERT ... ON CONFLICT DO UPDATE SET n =
//! cliproxy_usage_hourly.n + EXCLUDED.n`, rows in key order so that two servers adding to the
//! same rows at once wait for each other instead of deadlocking.
//!
//! Why it has a runtime of its own: [`LedgerStore`]'s methods block (the flusher calls them on
//! a blocking thread, and so do `cliproxy usage` and the management API), while tokio-postgres
//! is async. A `PgLedger` owns a small current-thread Tokio runtime (no thread of its own) and
//! one connection driven on it; each method is one `block_on` there, and the connection makes
//! progress only during such a call, which is all it needs. It borrows nothing from the
//! server's runtime: `Handle::block_on` of that from a blocking thread would hang on a
//! current-thread runtime and would compete with requests for the workers of a multi-thread
//! one. The synchronous `postgres` crate does the same internally; this way needs no second
//! client library. Dropped inside async code (where the flusher's task ends), the runtime is
//! shut down in the background, as a runtime must be there.
//!
//! The connection is made on first use and made again after it broke: a database that is
//! away fails a flush (which the flusher keeps in memory and retries), never the server.

use std::cell::Cell;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config};
use usage_ledger::{
    Counters, GroupBy, KEY_COLUMNS, LedgerError, LedgerStore, RollupKey, Rollups, UsageQuery,
    UsageReport, counter_columns, format_day, format_hour,
};

use super::{parse_url, pool, schema};
use crate::error::StoreError;

/// The first schema version with the usage table.
const USAGE_SCHEMA_VERSION: i32 = 3;

/// How long one call (connecting, and the statements of one flush or query) may take before
/// the database counts as unreachable: a database that stops answering without closing the
/// connection must not hold the flusher (and the records queued behind it) for ever. A flush
/// cut off while its commit was under way may have been committed: the retry then counts it
/// twice, the one case where the shared ledger can over-count.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Rollups per `INSERT` statement: 49 parameters each, well below PostgreSQL's 65 535.
const ROWS_PER_STATEMENT: usize = 500;

/// The usage ledger in a PostgreSQL database that several servers share.
pub struct PgLedger {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    config: Config,
    /// The database, as messages name it (without a password).
    target: String,
    /// The connection, once made; taken out during a call.
    client: Cell<Option<Client>>,
    /// Whether the schema is known to hold the usage table.
    schema_ready: Cell<bool>,
    /// Whether a connection may bring the schema up to date (a server), or only reads its
    /// version (a reader).
    migrates: bool,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgLedger {
    /// The ledger of the database at `url`, as a server writes it: it connects on first use,
    /// then applies missing schema migrations (as [`super::PgStore::open`] does), and
    /// reconnects after a broken connection. Blocks only to build its runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadUrl`] for a URL that is no PostgreSQL URL; [`StoreError::Unreachable`]
    /// when its runtime cannot be built.
    pub fn new(url: &str) -> Result<PgLedger, StoreError> {
        PgLedger::build(url, true)
    }

    /// The ledger of the database at `url`, as `cliproxy usage` reads it: connects now, and
    /// changes nothing in the database.
    ///
    /// Blocks: call it on a blocking thread (not inside async code).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unreachable`] when the database cannot be reached,
    /// [`StoreError::NoUsage`] when no server has created the usage table there yet,
    /// [`StoreError::SchemaTooNew`] for a newer cliproxy's database.
    pub fn open_existing(url: &str) -> Result<PgLedger, StoreError> {
        let ledger = PgLedger::build(url, false)?;
        ledger.call("read usage", async |_| Ok(()))?;
        Ok(ledger)
    }

    fn build(url: &str, migrates: bool) -> Result<PgLedger, StoreError> {
        let (mut config, target) = parse_url(url)?;
        config
            .connect_timeout(pool::CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("cliproxy");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Unreachable {
                op: "start the usage ledger's connection runtime",
                target: target.clone(),
                detail: error.to_string(),
            })?;
        Ok(PgLedger {
            runtime: Some(runtime),
            config,
            target,
            client: Cell::new(None),
            schema_ready: Cell::new(false),
            migrates,
        })
    }

    /// The database, as messages name it (without a password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `work` on the connection (made, and the schema checked, first when needed). A
    /// reused connection that turns out broken is replaced once: after the database
    /// restarted, every old connection is dead, and the first try should not fail for that.
    fn call<T>(
        &self,
        op: &'static str,
        mut work: impl AsyncFnMut(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime is there until the ledger is dropped");
        let attempts = async {
            let mut retried = false;
            loop {
                let reused = self.client.take().filter(|client| !client.is_closed());
                let was_reused = reused.is_some();
                let mut client = match reused {
                    Some(client) => client,
                    None => pool::connect(&self.config)
                        .await
                        .map_err(|error| StoreError::postgres("connect", &self.target, &error))?,
                };
                if !self.schema_ready.get() {
                    self.check_schema(&mut client).await?;
                    self.schema_ready.set(true);
                }
                match work(&mut client).await {
                    Ok(value) => {
                        self.client.set(Some(client));
                        return Ok(value);
                    }
                    Err(error) => {
                        let error = StoreError::postgres(op, &self.target, &error);
                        if !error.is_unreachable() {
                            // The connection is fine: the statement failed.
                            self.client.set(Some(client));
                            return Err(error);
                        }
                        if !was_reused || retried {
                            return Err(error);
                        }
                        retried = true;
                    }
                }
            }
        };
        // A connection that was taken out lives in `attempts`: when the time is up, it is
        // dropped with it, and the next call connects afresh.
        runtime.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, attempts)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unreachable {
                        op,
                        target: self.target.clone(),
                        detail: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                    })
                })
        })
    }

    /// Brings the schema up to date (a server) or checks that it has the usage table and is
    /// not newer than this build (a reader).
    async fn check_schema(&self, client: &mut Client) -> Result<(), StoreError> {
        if self.migrates {
            schema::migrate(client, &self.target).await?;
            return Ok(());
        }
        let found = schema::version(client, &self.target).await?;
        let known = schema::known_version();
        if found > known {
            return Err(StoreError::SchemaTooNew {
                target: self.target.clone(),
                found,
                known,
            });
        }
        if found < USAGE_SCHEMA_VERSION {
            return Err(StoreError::NoUsage {
                target: self.target.clone(),
            });
        }
        Ok(())
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        // Its tasks are the connection's: nothing to wait for. Dropping a runtime blocks,
        // which panics inside async code; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A store error as the ledger reports it.
fn ledger_error(error: StoreError) -> LedgerError {
    LedgerError::Store {
        source: Box::new(error),
    }
}

/// `INSERT` of `rows` rollups that adds each to the stored one.
fn upsert_statement(rows: usize) -> String {
    let columns: Vec<&str> = KEY_COLUMNS
        .iter()
        .copied()
        .chain(counter_columns().iter().map(String::as_str))
        .collect();
    let width = columns.len();
    let values = (0..rows)
        .map(|row| {
            let row = (1..=width)
                .map(|column| format!("${}", row * width + column))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let additions = counter_columns()
        .iter()
        .map(|column| format!("{column} = cliproxy_usage_hourly.{column} + EXCLUDED.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO cliproxy_usage_hourly ({}) VALUES {values} ON CONFLICT ({}) DO UPDATE SET {additions}",
        columns.join(", "),
        KEY_COLUMNS.join(", ")
    )
}

/// One rollup as the statement's parameters take it.
struct RowValues<'a> {
    key: &'a RollupKey,
    credential: &'a str,
    client: &'a str,
    model: &'a str,
    api: &'static str,
    counters: Vec<i64>,
}

impl<'a> RowValues<'a> {
    fn of(key: &'a RollupKey, counters: &Counters) -> Self {
        RowValues {
            key,
            credential: &key.credential,
            client: &key.client,
            model: &key.model,
            api: key.api.as_str(),
            counters: counters.to_columns(),
        }
    }
}

/// Adds `rows` (in key order) to the table in one transaction.
async fn add_rows(
    client: &mut Client,
    rows: &[RowValues<'_>],
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for row in chunk {
            params.push(&row.key.hour);
            params.push(&row.credential);
            params.push(&row.client);
            params.push(&row.model);
            params.push(&row.api);
            params.extend(
                row.counters
                    .iter()
                    .map(|value| value as &(dyn ToSql + Sync)),
            );
        }
        transaction
            .execute(upsert_statement(chunk.len()).as_str(), &params)
            .await?;
    }
    transaction.commit().await
}

/// The SQL expression rows are grouped by, and whether it is an hour number (else text).
fn group_expression(by: GroupBy) -> (&'static str, bool) {
    match by {
        GroupBy::Credential => ("credential", false),
        GroupBy::Model => ("model", false),
        GroupBy::ClientKey => ("client", false),
        GroupBy::Day => ("hour - hour % 86400", true),
        GroupBy::Hour => ("hour", true),
    }
}

/// Counters from the columns of `row` that start at `first`.
fn counters_of(row: &tokio_postgres::Row, first: usize) -> Result<Counters, tokio_postgres::Error> {
    let values = (first..first + counter_columns().len())
        .map(|index| row.try_get::<_, Option<i64>>(index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Counters::from_columns(values))
}

impl LedgerStore for PgLedger {
    fn add(&mut self, rollups: &Rollups) -> Result<(), LedgerError> {
        let mut rows: Vec<RowValues<'_>> = rollups
            .iter()
            .map(|(key, counters)| RowValues::of(key, counters))
            .collect();
        rows.sort_by(|a, b| a.key.cmp(b.key));
        self.call("write usage", async |client| add_rows(client, &rows).await)
            .map_err(ledger_error)
    }

    fn prune(&mut self, first_kept_hour: i64) -> Result<u64, LedgerError> {
        self.call("delete old usage", async |client| {
            client
                .execute(
                    "DELETE FROM cliproxy_usage_hourly WHERE hour < $1",
                    &[&first_kept_hour],
                )
                .await
        })
        .map_err(ledger_error)
    }

    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError> {
        let (group, numeric) = group_expression(query.by);
        let sums = counter_columns()
            .iter()
            .map(|column| format!("SUM({column})::bigint"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {group} AS grouped, {sums} FROM cliproxy_usage_hourly WHERE hour >= $1 GROUP BY grouped ORDER BY grouped"
        );
        let first_hour = query.first_hour();
        let rows = self
            .call("read usage", async |client| {
                client.query(sql.as_str(), &[&first_hour]).await
            })
            .map_err(ledger_error)?;
        let read =
            |row: &tokio_postgres::Row| -> Result<(String, Counters), tokio_postgres::Error> {
                let key = if numeric {
                    let at: i64 = row.try_get(0)?;
                    match query.by {
                        GroupBy::Day => format_day(at),
                        _ => format_hour(at),
                    }
                } else {
                    row.try_get(0)?
                };
                Ok((key, counters_of(row, 1)?))
            };
        let groups = rows
            .iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                ledger_error(StoreError::postgres("read usage", &self.target, &error))
            })?;
        Ok(UsageReport::new(query, groups))
    }

    fn rollups_since(&self, first_hour: i64) -> Result<Rollups, LedgerError> {
        let sql = format!(
            "SELECT {}, {} FROM cliproxy_usage_hourly WHERE hour >= $1",
            KEY_COLUMNS.join(", "),
            counter_columns().join(", ")
        );
        let rows = self
            .call("read usage", async |client| {
                client.query(sql.as_str(), &[&first_hour]).await
            })
            .map_err(ledger_error)?;
        let mut rollups = Rollups::default();
        let fail = |error| ledger_error(StoreError::postgres("read usage", &self.target, &error));
        for row in &rows {
            let text = |index| row.try_get::<_, &str>(index).map_err(fail);
            let Some(key) = RollupKey::from_columns(
                row.try_get(0).map_err(fail)?,
                text(1)?,
                text(2)?,
                text(3)?,
                text(4)?,
            ) else {
                continue;
            };
            let counters = counters_of(row, KEY_COLUMNS.len()).map_err(fail)?;
            rollups.merge_one(key, &counters);
        }
        Ok(rollups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_numbers_every_parameter_once_and_adds_every_counter() {
        let sql = upsert_statement(2);
        let width = KEY_COLUMNS.len() + counter_columns().len();
        assert!(sql.contains(&format!("${width}), (${}, ", width + 1)));
        assert!(sql.contains(&format!("${})", 2 * width)));
        assert!(!sql.contains(&format!("${}", 2 * width + 1)));
        assert!(sql.contains("requests = cliproxy_usage_hourly.requests + EXCLUDED.requests"));
        assert!(
            sql.contains("ttft_sum_us = cliproxy_usage_hourly.ttft_sum_us + EXCLUDED.ttft_sum_us")
        );
        assert!(width * ROWS_PER_STATEMENT < 65_535);
    }
}
