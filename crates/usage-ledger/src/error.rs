//! Every way the ledger can fail, each saying what happened and what to do next.

use std::path::PathBuf;

/// A failure of the usage ledger or its store.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No database at the path (readers only: the server creates it).
    #[error(
        "no usage database at {} yet: `cliproxy serve` creates it and records usage there; check usage-db (or CLIPROXY_USAGE_DB) if the server runs with another config",
        .path.display()
    )]
    Missing {
        /// The database file.
        path: PathBuf,
    },

    /// The database file or its directory could not be created.
    #[error(
        "could not create the usage database {} ({source}); make its directory writable, or set usage-db to another path",
        .path.display()
    )]
    Create {
        /// The database file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },

    /// The file is there but is no SQLite database.
    #[error(
        "{} is not a SQLite database, so usage cannot be kept there; move the file away or set usage-db to another path",
        .path.display()
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },

    /// A newer cliproxy wrote the database, in a schema this one does not know.
    #[error(
        "the usage database {} has schema version {found}, newer than this cliproxy knows ({supported}); upgrade cliproxy, or set usage-db to another file",
        .path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// SQLite failed to open, read or write the database.
    #[error(
        "usage database {}: could not {action} ({source}); see \"Usage database errors\" in docs/troubleshooting.md",
        .path.display()
    )]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done: `open it`, `write usage`, `read usage`, ...
        action: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },

    /// Another store (the shared PostgreSQL one) failed; its message says what happened and
    /// what to do.
    #[error("{source}")]
    Store {
        /// The store's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The flusher has stopped: the ledger was closed, or its runtime shut down.
    #[error("the usage ledger is closed; nothing more can be flushed")]
    Closed,
}

impl LedgerError {
    /// A SQLite failure while doing `action` on `path`; a file that is no database says so.
    pub(crate) fn sqlite(
        path: &std::path::Path,
        action: &'static str,
        source: rusqlite::Error,
    ) -> Self {
        if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            return Self::NotADatabase {
                path: path.to_owned(),
            };
        }
        Self::Sqlite {
            path: path.to_owned(),
            action,
            source,
        }
    }
}
