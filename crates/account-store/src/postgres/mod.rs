//! The PostgreSQL store: one row per account in `cliproxy_accounts`, shared by every server
//! that names the same database. A refresh holds the account's row lock (`SELECT ... FOR
//! UPDATE` in a transaction) from the re-read to the commit of the new tokens, so servers
//! refresh an account once between them; a server that dies meanwhile loses its connection,
//! the database rolls its transaction back, and the old row is there for the next one. Every
//! write announces itself with `NOTIFY` in its transaction, so others hear of it only once
//! it is committed.

mod ledger;
mod limits;
mod listen;
mod pool;
mod row;
mod schema;
mod seal;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use token_store::{AccountKey, KNOWN_PROVIDERS, STATUS_KEY, TokenRecord};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config};

pub use ledger::PgLedger;
pub use limits::{
    CredentialState, DayCount, Held, LimitsChange, SLOT_LEASE, SlotAnswer, SlotAsk, StateKind,
};
pub use listen::{Change, ChangeFeed};
pub use schema::known_version;
pub use seal::EncryptionKey;

use self::pool::{Pool, Pooled};
use self::row::{COLUMNS, RowValues};
use crate::error::StoreError;
use crate::place::{Copied, Listing, Location, Problem, Saved, Stored, refreshed_later};

/// How long a transaction holding an account's row lock may sit idle (waiting for Qwen's
/// answer) before the database ends it: longer than any OAuth request may take, and the
/// bound on how long a hung server can keep others from refreshing the account.
const LOCK_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The default number of connections of one server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;

/// A PostgreSQL database holding accounts. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    /// The database, as messages name it: `postgres://USER@HOST:PORT/DB`, never a password.
    target: String,
    seal_key: Option<EncryptionKey>,
    /// Names this process in notifications, so it can skip its own.
    origin: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .field("encrypted", &self.inner.seal_key.is_some())
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url`, applies missing schema migrations and returns the
    /// store. Fails when the database cannot be reached or its schema is newer than this
    /// binary's.
    pub async fn open(
        url: &str,
        seal_key: Option<EncryptionKey>,
        max_connections: usize,
    ) -> Result<PgStore, StoreError> {
        let (config, target) = parse_url(url)?;
        let pool = Pool::new(config, max_connections);
        let mut client = pool::connect(pool.config())
            .await
            .map_err(|error| StoreError::postgres("connect", &target, &error))?;
        let applied = schema::migrate(&mut client, &target).await?;
        if !applied.is_empty() {
            tracing::info!(
                ?applied,
                "applied schema migrations to the PostgreSQL store {target}"
            );
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                target,
                seal_key,
                origin: uuid::Uuid::new_v4().simple().to_string(),
            }),
        })
    }

    /// The database, as messages name it (without a password).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Starts following the store's changes (see [`Change`]); changes this store made itself
    /// are left out. Must run inside the Tokio runtime.
    pub fn follow(&self) -> (ChangeFeed, mpsc::UnboundedReceiver<Change>) {
        let pool = Arc::clone(&self.inner.pool);
        listen::follow(
            self.inner.pool.config().clone(),
            self.inner.target.clone(),
            self.inner.origin.clone(),
            move || pool.clear(),
        )
    }

    /// Every account; rows that cannot be used are reported, not fatal.
    pub async fn list(&self) -> Result<Listing, StoreError> {
        let op = "list the accounts";
        let connection = self.connection(op).await?;
        let rows = connection
            .client()
            .query(
                &format!("SELECT {COLUMNS} FROM cliproxy_accounts ORDER BY key"),
                &[],
            )
            .await
            .map_err(|error| self.fail(op, &error))?;
        let mut listing = Listing::default();
        for row in rows {
            let key = row::key_column(&row);
            match row::record_of(&row, self.inner.seal_key.as_ref()) {
                Ok(record) => listing.accounts.push(Stored {
                    key,
                    location: Location::Row,
                    record,
                }),
                Err(reason) => listing.problems.push(Problem {
                    name: key.to_string(),
                    reason,
                }),
            }
        }
        Ok(listing)
    }

    /// One account, `None` when the store has none with this key.
    pub async fn load(&self, key: &AccountKey) -> Result<Option<Stored>, StoreError> {
        let op = "read an account";
        let connection = self.connection(op).await?;
        let row = connection
            .client()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM cliproxy_accounts WHERE key = $1"),
                &[&key.as_str()],
            )
            .await
            .map_err(|error| self.fail(op, &error))?;
        row.map(|row| self.stored_of(&row)).transpose()
    }

    /// Takes the account's row lock and reads the row under it. The lock holds until the
    /// returned [`RowLock`] is written or dropped.
    pub async fn lock(&self, key: &AccountKey) -> Result<(RowLock, TokenRecord), StoreError> {
        let op = "lock an account";
        let connection = self.connection(op).await?;
        let begin = format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}",
            LOCK_IDLE_TIMEOUT.as_millis()
        );
        if let Err(error) = connection.client().batch_execute(&begin).await {
            connection.discard();
            return Err(self.fail(op, &error));
        }
        let lock = RowLock {
            open: Open {
                connection: Some(connection),
                store: self.clone(),
            },
            key: key.clone(),
        };
        let row = lock
            .open
            .client()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM cliproxy_accounts WHERE key = $1 FOR UPDATE"),
                &[&key.as_str()],
            )
            .await
            .map_err(|error| self.fail(op, &error))?;
        let Some(row) = row else {
            lock.release().await;
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        };
        let record = self.stored_of(&row)?.record;
        Ok((lock, record))
    }

    /// Saves a fresh login: the account's row is created or replaced, keeping the unknown
    /// fields of the row it replaces except the status, which a fresh login clears.
    pub async fn save_login(
        &self,
        record: &TokenRecord,
        _now: OffsetDateTime,
    ) -> Result<Saved, StoreError> {
        record.validate().map_err(StoreError::InvalidRecord)?;
        let email = record
            .email
            .as_deref()
            .ok_or(token_store::StoreError::MissingEmail)?;
        check_email(email)?;
        let key = AccountKey::for_email(&record.provider, email);
        let op = "save a login";
        let transaction = self.begin(op).await?;
        let old = transaction.select_for_update(&key).await?;
        let mut fresh = record.clone();
        if let Some(Ok(old)) = &old {
            let mut extra = old.extra.clone();
            extra.remove(STATUS_KEY);
            extra.extend(record.extra.clone());
            fresh.extra = extra;
        }
        transaction.upsert(&key, &fresh).await?;
        transaction.commit().await?;
        let target = self.target();
        Ok(Saved {
            saved_to: format!("{target} (account {key})"),
            replaced: old
                .map(|_| vec![format!("{target} (account {key})")])
                .unwrap_or_default(),
        })
    }

    /// Copies `stored` into this store (`cliproxy store migrate`): added when missing,
    /// replaced when different, unless this store's copy was refreshed later.
    pub async fn copy_in(&self, stored: &Stored) -> Result<Copied, StoreError> {
        let key = row::key_of(&stored.record, &stored.key);
        if let Some(email) = stored.record.email.as_deref() {
            check_email(email)?;
        }
        let transaction = self.begin("copy an account").await?;
        let outcome = match transaction.select_for_update(&key).await? {
            None => Copied::Added,
            Some(Ok(old)) if old == stored.record && !transaction.needs_sealing(&key).await? => {
                Copied::Unchanged
            }
            Some(Ok(old)) if refreshed_later(&old, &stored.record) => Copied::KeptNewer,
            Some(_) => Copied::Updated,
        };
        if matches!(outcome, Copied::Added | Copied::Updated) {
            transaction.upsert(&key, &stored.record).await?;
        }
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Removes the account with this email; returns what was removed (empty when none).
    pub async fn remove_account(&self, email: &str) -> Result<Vec<String>, StoreError> {
        check_email(email)?;
        let transaction = self.begin("remove an account").await?;
        let mut removed = Vec::new();
        for key in keys_of_email(email) {
            let deleted = transaction
                .client()
                .execute(
                    "DELETE FROM cliproxy_accounts WHERE key = $1",
                    &[&key.as_str()],
                )
                .await
                .map_err(|error| self.fail("remove an account", &error))?;
            if deleted > 0 {
                transaction.notify_account(&key).await?;
                removed.push(format!("{} (account {key})", self.target()));
            }
        }
        transaction.commit().await?;
        Ok(removed)
    }

    /// Takes the account with this email out of rotation or puts it back; returns how many
    /// rows it changed (0 when the store has no such account).
    pub async fn set_account_disabled(
        &self,
        email: &str,
        disabled: bool,
    ) -> Result<usize, StoreError> {
        check_email(email)?;
        let mut found = 0;
        for key in keys_of_email(email) {
            let transaction = self.begin("disable an account").await?;
            match transaction.select_for_update(&key).await? {
                None => {}
                Some(Err(error)) => return Err(error),
                Some(Ok(mut record)) => {
                    found += 1;
                    if record.is_disabled() != disabled {
                        record.set_disabled(disabled);
                        transaction.upsert(&key, &record).await?;
                    }
                }
            }
            transaction.commit().await?;
        }
        Ok(found)
    }

    /// The API keys taken out of rotation, by label.
    pub async fn disabled_credentials(&self) -> Result<BTreeSet<String>, StoreError> {
        let op = "read the disabled API keys";
        let connection = self.connection(op).await?;
        let rows = connection
            .client()
            .query("SELECT label FROM cliproxy_disabled_credentials", &[])
            .await
            .map_err(|error| self.fail(op, &error))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Takes the API key `label` out of rotation (`true`) or puts it back; `Ok(false)` when
    /// it already was so.
    pub async fn set_credential_disabled(
        &self,
        label: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let op = "disable an API key";
        let statement = if disabled {
            "INSERT INTO cliproxy_disabled_credentials (label) VALUES ($1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM cliproxy_disabled_credentials WHERE label = $1"
        };
        let transaction = self.begin(op).await?;
        let changed = transaction
            .client()
            .execute(statement, &[&label])
            .await
            .map_err(|error| self.fail(op, &error))?
            > 0;
        if changed {
            transaction
                .notify(listen::CREDENTIALS_CHANNEL, &self.inner.origin)
                .await?;
        }
        transaction.commit().await?;
        Ok(changed)
    }

    fn fail(&self, op: &'static str, error: &tokio_postgres::Error) -> StoreError {
        StoreError::postgres(op, &self.inner.target, error)
    }

    async fn connection(&self, op: &'static str) -> Result<Pooled, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|error| self.fail(op, &error))
    }

    async fn begin(&self, op: &'static str) -> Result<Transaction, StoreError> {
        let connection = self.connection(op).await?;
        if let Err(error) = connection.client().batch_execute("BEGIN").await {
            connection.discard();
            return Err(self.fail(op, &error));
        }
        Ok(Transaction {
            open: Open {
                connection: Some(connection),
                store: self.clone(),
            },
            op,
        })
    }

    fn stored_of(&self, row: &tokio_postgres::Row) -> Result<Stored, StoreError> {
        let key = row::key_column(row);
        let record = row::record_of(row, self.inner.seal_key.as_ref()).map_err(|reason| {
            StoreError::BadRow {
                key: key.to_string(),
                reason,
            }
        })?;
        Ok(Stored {
            key,
            location: Location::Row,
            record,
        })
    }
}

/// An open transaction on a pooled connection: committed explicitly, rolled back when dropped
/// (on a task of its own, or by closing the connection).
struct Open {
    connection: Option<Pooled>,
    store: PgStore,
}

impl Open {
    fn client(&self) -> &Client {
        self.connection
            .as_ref()
            .expect("present until committed or released")
            .client()
    }

    async fn commit(&mut self, op: &'static str) -> Result<(), StoreError> {
        let connection = self
            .connection
            .take()
            .expect("present until committed or released");
        match connection.client().batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(error) => {
                connection.discard();
                Err(self.store.fail(op, &error))
            }
        }
    }

    async fn rollback(&mut self) {
        if let Some(connection) = self.connection.take()
            && connection.client().batch_execute("ROLLBACK").await.is_err()
        {
            connection.discard();
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if connection.client().batch_execute("ROLLBACK").await.is_err() {
                        connection.discard();
                    }
                });
            }
            // No runtime to roll back on: closing the connection rolls back too.
            Err(_) => connection.discard(),
        }
    }
}

/// An account's row lock: an open transaction that read the row `FOR UPDATE`. Writing commits
/// it; dropping it rolls it back.
pub struct RowLock {
    open: Open,
    key: AccountKey,
}

impl std::fmt::Debug for RowLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowLock").field("key", &self.key).finish()
    }
}

impl RowLock {
    /// Writes `record` to the locked row and commits, announcing the change. Refuses a record
    /// of another account.
    pub async fn write(mut self, record: &TokenRecord) -> Result<(), StoreError> {
        let needed = row::key_of(record, &self.key);
        if needed != self.key {
            return Err(StoreError::BadRow {
                key: self.key.to_string(),
                reason: format!("the record to write belongs to {needed}"),
            });
        }
        let store = self.open.store.clone();
        let values = row::values_of(record, &self.key, store.inner.seal_key.as_ref())?;
        let op = "save an account's tokens";
        let updated = self
            .open
            .client()
            .execute(
                "UPDATE cliproxy_accounts SET provider = $2, email = $3, access_token = $4, \
                 refresh_token = $5, fields = $6::text::json, expires_at = $7::text::timestamptz, \
                 version = version + 1, updated_at = now() WHERE key = $1",
                &params(&values),
            )
            .await
            .map_err(|error| store.fail(op, &error))?;
        if updated == 0 {
            return Err(StoreError::NotFound {
                key: self.key.to_string(),
            });
        }
        let payload = format!("{} {}", store.inner.origin, self.key);
        self.open
            .client()
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&listen::ACCOUNTS_CHANNEL, &payload],
            )
            .await
            .map_err(|error| store.fail(op, &error))?;
        self.open.commit(op).await
    }

    /// Rolls the transaction back and returns the connection to the pool.
    pub async fn release(mut self) {
        self.open.rollback().await;
    }
}

/// A transaction of one of the store's own operations (login, copy, disable).
struct Transaction {
    open: Open,
    op: &'static str,
}

impl Transaction {
    fn client(&self) -> &Client {
        self.open.client()
    }

    /// The account's record under its row lock: `None` when there is no row, `Some(Err)`
    /// when it cannot be read.
    async fn select_for_update(
        &self,
        key: &AccountKey,
    ) -> Result<Option<Result<TokenRecord, StoreError>>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM cliproxy_accounts WHERE key = $1 FOR UPDATE"),
                &[&key.as_str()],
            )
            .await
            .map_err(|error| self.open.store.fail(self.op, &error))?;
        Ok(row.map(|row| self.open.store.stored_of(&row).map(|stored| stored.record)))
    }

    /// Whether the row of `key` holds a plain token while this store seals them.
    async fn needs_sealing(&self, key: &AccountKey) -> Result<bool, StoreError> {
        if self.open.store.inner.seal_key.is_none() {
            return Ok(false);
        }
        let row = self
            .client()
            .query_one(
                &format!("SELECT {COLUMNS} FROM cliproxy_accounts WHERE key = $1"),
                &[&key.as_str()],
            )
            .await
            .map_err(|error| self.open.store.fail(self.op, &error))?;
        Ok(!row::is_sealed(&row))
    }

    /// Creates or replaces the row of `key` with `record`, and announces it.
    async fn upsert(&self, key: &AccountKey, record: &TokenRecord) -> Result<(), StoreError> {
        let store = &self.open.store;
        let values = row::values_of(record, key, store.inner.seal_key.as_ref())?;
        self.client()
            .execute(
                "INSERT INTO cliproxy_accounts \
                 (key, provider, email, access_token, refresh_token, fields, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::json, $7::text::timestamptz) \
                 ON CONFLICT (key) DO UPDATE SET provider = EXCLUDED.provider, \
                 email = EXCLUDED.email, access_token = EXCLUDED.access_token, \
                 refresh_token = EXCLUDED.refresh_token, fields = EXCLUDED.fields, \
                 expires_at = EXCLUDED.expires_at, version = cliproxy_accounts.version + 1, \
                 updated_at = now()",
                &params(&values),
            )
            .await
            .map_err(|error| store.fail(self.op, &error))?;
        self.notify_account(key).await
    }

    async fn notify_account(&self, key: &AccountKey) -> Result<(), StoreError> {
        let payload = format!("{} {key}", self.open.store.inner.origin);
        self.notify(listen::ACCOUNTS_CHANNEL, &payload).await
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        self.client()
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .map_err(|error| self.open.store.fail(self.op, &error))?;
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        let op = self.op;
        self.open.commit(op).await
    }
}

/// The parameters `$1`..`$7` of a row's write.
fn params(values: &RowValues) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
    [
        &values.key,
        &values.provider,
        &values.email,
        &values.access_token,
        &values.refresh_token,
        &values.fields,
        &values.expires_at,
    ]
}

/// The keys an email's account may have, one per provider.
fn keys_of_email(email: &str) -> Vec<AccountKey> {
    KNOWN_PROVIDERS
        .iter()
        .map(|provider| AccountKey::for_email(provider, email))
        .collect()
}

/// The auth dir's rule for emails, kept here too, so every account can move back to files.
fn check_email(email: &str) -> Result<(), StoreError> {
    match token_store::email_file_name_problem(email) {
        None => Ok(()),
        Some(problem) => Err(token_store::StoreError::UnsafeEmail {
            email: email.to_owned(),
            problem,
        }
        .into()),
    }
}

/// `postgres://USER@HOST:PORT/DB` for messages: never the password.
/// The connection settings of `url`, and the database as messages name it.
fn parse_url(url: &str) -> Result<(Config, String), StoreError> {
    let config: Config = url.parse().map_err(|_| StoreError::BadUrl {
        detail: "it does not parse as a connection URL".to_owned(),
    })?;
    if config.get_hosts().is_empty() {
        return Err(StoreError::BadUrl {
            detail: "it names no host".to_owned(),
        });
    }
    let target = describe(&config);
    Ok((config, target))
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "?".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}
