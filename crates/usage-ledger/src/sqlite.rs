//! The embedded store: one SQLite file (bundled SQLite, WAL mode) with one table of hourly
//! rollups, `usage_hourly`, whose counters are added to in place (`INSERT ... ON CONFLICT DO
//! UPDATE SET n = n + excluded.n`).
//!
//! The file is created 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files
//! the same mode), and a file others may read is tightened. The schema's version is SQLite's
//! `user_version`; a newer one than [`SqliteStore::SCHEMA_VERSION`] is refused, never
//! touched. In WAL mode with `synchronous = NORMAL` a committed flush survives the process
//! being killed; readers (`cliproxy usage`) never wait for the writer, nor it for them.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::columns::{KEY_COLUMNS, counter_columns};
use crate::error::LedgerError;
use crate::report::{GroupBy, UsageQuery, UsageReport, format_day, format_hour};
use crate::rollup::{Counters, RollupKey, Rollups};
use crate::store::LedgerStore;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters from the columns of `row` that start at `first`.
fn counters_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Counters> {
    let values = (first..first + counter_columns().len())
        .map(|index| row.get::<_, Option<i64>>(index))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Counters::from_columns(values))
}

/// The schema of version 1.
fn create_schema_v1(connection: &Connection) -> rusqlite::Result<()> {
    let counters = counter_columns()
        .iter()
        .map(|column| format!("{column} INTEGER NOT NULL DEFAULT 0"))
        .collect::<Vec<_>>()
        .join(", ");
    connection.execute_batch(&format!(
        "CREATE TABLE usage_hourly (
            hour INTEGER NOT NULL,
            credential TEXT NOT NULL,
            client TEXT NOT NULL,
            model TEXT NOT NULL,
            api TEXT NOT NULL,
            {counters},
            PRIMARY KEY (hour, credential, client, model, api)
        ) WITHOUT ROWID;
        PRAGMA user_version = 1;"
    ))
}

/// The statement that adds one rollup to the stored one.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = KEY_COLUMNS
        .iter()
        .copied()
        .chain(counter_columns().iter().map(String::as_str))
        .collect();
    let placeholders = (1..=columns.len())
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let additions = counter_columns()
        .iter()
        .map(|column| format!("{column} = {column} + excluded.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO usage_hourly ({}) VALUES ({placeholders}) ON CONFLICT ({}) DO UPDATE SET {additions}",
        columns.join(", "),
        KEY_COLUMNS.join(", ")
    )
});

/// `SUM(column)` of every counter column.
static COUNTER_SUMS: LazyLock<String> = LazyLock::new(|| {
    counter_columns()
        .iter()
        .map(|column| format!("SUM({column})"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// The usage ledger in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// The newest schema this build reads and writes.
    pub const SCHEMA_VERSION: i64 = 1;

    /// Opens the database at `path`, creating it (0600, and missing directories 0700) and its
    /// schema when missing. This is how the server opens it.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Create`] when the file cannot be created, [`LedgerError::NotADatabase`]
    /// for another kind of file, [`LedgerError::NewerSchema`] for a newer cliproxy's database,
    /// [`LedgerError::Sqlite`] when SQLite fails.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        create_private_file(path)?;
        Self::connect(path)
    }

    /// Opens the database at `path` only if it exists: how `cliproxy usage` opens it, so a
    /// mistyped path is reported instead of created.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Missing`] when there is no file, otherwise as [`SqliteStore::open`].
    pub fn open_existing(path: &Path) -> Result<Self, LedgerError> {
        match std::fs::metadata(path) {
            Ok(_) => Self::connect(path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(LedgerError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(source) => Err(LedgerError::Create {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(path: &Path) -> Result<Self, LedgerError> {
        let fail = |action| move |source| LedgerError::sqlite(path, action, source);
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail("open it"))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(fail("open it"))?;
        let found = user_version(&connection).map_err(fail("read its schema version"))?;
        refuse_newer(path, found)?;
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(fail("switch it to WAL mode"))?;
        connection
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(fail("set its sync mode"))?;
        if found < Self::SCHEMA_VERSION {
            // IMMEDIATE: of two processes creating the schema at once, the second waits and
            // then sees it there.
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(fail("create its tables"))?;
            let version = user_version(&transaction).map_err(fail("create its tables"))?;
            refuse_newer(path, version)?;
            if version == 0 {
                create_schema_v1(&transaction).map_err(fail("create its tables"))?;
            }
            transaction.commit().map_err(fail("create its tables"))?;
        }
        Ok(Self {
            connection,
            path: path.to_owned(),
        })
    }
}

fn user_version(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row("PRAGMA user_version", [], |row| row.get(0))
}

fn refuse_newer(path: &Path, found: i64) -> Result<(), LedgerError> {
    if found > SqliteStore::SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SqliteStore::SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Creates `path` empty and 0600 (its missing directories 0700) unless it exists; tightens an
/// existing file that its group or others may use.
fn create_private_file(path: &Path) -> Result<(), LedgerError> {
    let failed = |source| LedgerError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(failed)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)
                .map_err(failed)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(failed)?;
                tracing::warn!(
                    "the usage database {} could be read by others (mode {:o}); it is 0600 now",
                    path.display(),
                    mode & 0o777
                );
            }
            Ok(())
        }
        Err(error) => Err(failed(error)),
    }
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

impl LedgerStore for SqliteStore {
    fn add(&mut self, rollups: &Rollups) -> Result<(), LedgerError> {
        let fail = |source| LedgerError::sqlite(&self.path, "write usage", source);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        {
            let mut upsert = transaction.prepare(&UPSERT).map_err(fail)?;
            for (key, counters) in rollups.iter() {
                let mut values: Vec<rusqlite::types::Value> = vec![
                    key.hour.into(),
                    key.credential.to_string().into(),
                    key.client.to_string().into(),
                    key.model.to_string().into(),
                    key.api.as_str().to_owned().into(),
                ];
                values.extend(counters.to_columns().into_iter().map(Into::into));
                upsert
                    .execute(rusqlite::params_from_iter(values))
                    .map_err(fail)?;
            }
        }
        transaction.commit().map_err(fail)
    }

    fn prune(&mut self, first_kept_hour: i64) -> Result<u64, LedgerError> {
        let deleted = self
            .connection
            .execute(
                "DELETE FROM usage_hourly WHERE hour < ?1",
                params![first_kept_hour],
            )
            .map_err(|source| LedgerError::sqlite(&self.path, "delete old usage", source))?;
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }

    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError> {
        let fail = |source| LedgerError::sqlite(&self.path, "read usage", source);
        let (group, numeric) = group_expression(query.by);
        let sql = format!(
            "SELECT {group} AS grouped, {} FROM usage_hourly WHERE hour >= ?1 GROUP BY grouped ORDER BY grouped",
            *COUNTER_SUMS
        );
        let mut statement = self.connection.prepare(&sql).map_err(fail)?;
        let rows = statement
            .query_map(params![query.first_hour()], |row| {
                let key = if numeric {
                    let at: i64 = row.get(0)?;
                    match query.by {
                        GroupBy::Day => format_day(at),
                        _ => format_hour(at),
                    }
                } else {
                    row.get(0)?
                };
                Ok((key, counters_from_row(row, 1)?))
            })
            .map_err(fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(fail)?;
        Ok(UsageReport::new(query, rows))
    }

    fn rollups_since(&self, first_hour: i64) -> Result<Rollups, LedgerError> {
        let fail = |source| LedgerError::sqlite(&self.path, "read usage", source);
        let sql = format!(
            "SELECT {}, {} FROM usage_hourly WHERE hour >= ?1",
            KEY_COLUMNS.join(", "),
            counter_columns().join(", ")
        );
        let mut statement = self.connection.prepare(&sql).map_err(fail)?;
        let mut rows = statement.query(params![first_hour]).map_err(fail)?;
        let mut rollups = Rollups::default();
        while let Some(row) = rows.next().map_err(fail)? {
            let text = |index| row.get::<_, String>(index).map_err(fail);
            let Some(key) = RollupKey::from_columns(
                row.get(0).map_err(fail)?,
                &text(1)?,
                &text(2)?,
                &text(3)?,
                &text(4)?,
            ) else {
                continue;
            };
            let counters = counters_from_row(row, KEY_COLUMNS.len()).map_err(fail)?;
            rollups.merge_one(key, &counters);
        }
        Ok(rollups)
    }
}
