//! Errors of the account store: the auth dir's own (`token_store::StoreError`) or the
//! PostgreSQL store's. Every message says what failed and what to do next; none quotes a token.

use token_store::BadFileReason;

/// Where to read more when the PostgreSQL store cannot be reached.
const UNREACHABLE_HINT: &str = "check that the database runs and that store.url (or CLIPROXY_STORE_URL) names it, with a user that may connect (see \"Store unreachable\" in docs/troubleshooting.md)";

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The auth dir failed.
    #[error(transparent)]
    Dir(#[from] token_store::StoreError),
    /// The database could not be reached, or the connection broke.
    #[error("PostgreSQL store {target}: could not {op}: {detail}; {UNREACHABLE_HINT}")]
    Unreachable {
        /// What the store was doing.
        op: &'static str,
        /// The database, without its password.
        target: String,
        /// What the client library said.
        detail: String,
    },
    /// The database answered with an error.
    #[error("PostgreSQL store {target}: could not {op}: {detail}")]
    Database {
        /// What the store was doing.
        op: &'static str,
        /// The database, without its password.
        target: String,
        /// What the database said.
        detail: String,
    },
    /// `store.url` is not a PostgreSQL connection URL.
    #[error(
        "store.url (or CLIPROXY_STORE_URL) is not a PostgreSQL URL ({detail}); write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    BadUrl {
        /// What is wrong with it (never the URL itself: it may hold a password).
        detail: String,
    },
    /// The database holds a schema from a newer cliproxy.
    #[error(
        "the PostgreSQL store {target} has schema version {found}, but this cliproxy knows only up to version {known}: upgrade cliproxy on this machine, or point it at another database (see \"Store schema is newer than this cliproxy\" in docs/troubleshooting.md)"
    )]
    SchemaTooNew {
        /// The database, without its password.
        target: String,
        /// The newest migration the database has.
        found: i32,
        /// The newest migration this binary has.
        known: i32,
    },
    /// The database has no usage ledger yet: no server with this store has run.
    #[error(
        "the PostgreSQL store {target} holds no usage yet: `cliproxy serve` with this store creates the usage table and records usage there; check store.url (or CLIPROXY_STORE_URL) if the server runs with another database"
    )]
    NoUsage {
        /// The database, without its password.
        target: String,
    },
    /// The account is not (or no longer) in the store.
    #[error("account {key} is not in the store (logged out meanwhile?); list the accounts again")]
    NotFound {
        /// The account's key.
        key: String,
    },
    /// A row cannot be used.
    #[error("account {key} in the PostgreSQL store cannot be used: {reason}")]
    BadRow {
        /// The account's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A record that would not pass validation was about to be written.
    #[error("refusing to store an account that would be invalid: {0}")]
    InvalidRecord(BadFileReason),
    /// `store.encryption-key` is not a usable key.
    #[error(
        "store.encryption-key (or CLIPROXY_STORE_ENCRYPTION_KEY) must be 32 random bytes written as base64 or as 64 hex digits ({detail}); generate one with `openssl rand -base64 32`"
    )]
    BadEncryptionKey {
        /// What is wrong with it (never the key).
        detail: &'static str,
    },
    /// A sealed token could not be sealed or opened.
    #[error("{0}")]
    Seal(String),
}

impl StoreError {
    /// Whether the account is gone from the store (logged out).
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::NotFound { .. } => true,
            StoreError::Dir(token_store::StoreError::Io { error, .. }) => {
                error.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    }

    /// Whether the store could not be reached at all (the database is down or unreachable).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }

    /// The error of a PostgreSQL operation `op` on `target`: unreachable when the connection
    /// failed or broke (also when the server said it is shutting down or cannot take
    /// connections now: SQLSTATE classes 08 and 57P), else the database's own message.
    pub(crate) fn postgres(op: &'static str, target: &str, error: &tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) if is_unavailable(db.code().code()) => StoreError::Unreachable {
                op,
                target: target.to_owned(),
                detail: format!("{} ({})", db.message(), db.code().code()),
            },
            Some(db) => StoreError::Database {
                op,
                target: target.to_owned(),
                detail: format!("{} ({})", db.message(), db.code().code()),
            },
            None => StoreError::Unreachable {
                op,
                target: target.to_owned(),
                detail: describe_client_error(error),
            },
        }
    }
}

/// Whether a SQLSTATE says the server is not there for us (connection exceptions, operator
/// intervention: shutdown, crash, not accepting connections yet), rather than refusing the
/// operation itself.
fn is_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P")
}

/// The client library's error with its cause (the `Display` of a connection error alone says
/// only "error connecting to server").
pub(crate) fn describe_client_error(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}
