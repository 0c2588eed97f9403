//! The store of one server: [`AccountStore`], the auth dir or the database behind one async
//! interface, and [`AccountLock`], an account's lock in either.

use std::collections::BTreeSet;
use std::path::PathBuf;

use time::OffsetDateTime;
use token_store::{AccountKey, AuthDir, TokenRecord};

use crate::dir::{self, Written};
use crate::error::StoreError;
use crate::place::{Copied, Listing, Location, Saved, Stored};
use crate::postgres::{PgStore, RowLock};

/// The accounts of one server: its auth dir, or a shared PostgreSQL database. Cheap to clone.
#[derive(Debug, Clone)]
pub enum AccountStore {
    /// Token files in the auth dir.
    Dir(AuthDir),
    /// Rows of a PostgreSQL database.
    Postgres(PgStore),
}

/// An account's lock, with what it needs to write the account back. Dropping it releases the
/// lock without writing.
#[derive(Debug)]
pub enum AccountLock {
    /// The account's `flock` in the auth dir, and the file it guards.
    File {
        lock: token_store::AccountLock,
        path: PathBuf,
    },
    /// The account's row lock.
    Row(RowLock),
}

impl AccountStore {
    /// Where the accounts are, for messages: the auth dir's path, or the database without
    /// its password.
    pub fn describe(&self) -> String {
        match self {
            AccountStore::Dir(dir) => dir.path().display().to_string(),
            AccountStore::Postgres(pg) => pg.target().to_owned(),
        }
    }

    /// Every account; accounts that cannot be used are reported in the listing, not fatal.
    pub async fn list(&self) -> Result<Listing, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let auth_dir = auth_dir.clone();
                dir::blocking(move || dir::list(&auth_dir)).await
            }
            AccountStore::Postgres(pg) => pg.list().await,
        }
    }

    /// Takes the lock of the account `key` kept at `location` and re-reads it under the lock.
    pub async fn lock(
        &self,
        key: &AccountKey,
        location: &Location,
    ) -> Result<(AccountLock, TokenRecord), StoreError> {
        match (self, dir::path_of(location)) {
            (AccountStore::Dir(auth_dir), Some(path)) => {
                let (auth_dir, key, path) = (auth_dir.clone(), key.clone(), path.to_owned());
                dir::blocking(move || {
                    let (lock, record) = dir::lock(&auth_dir, &key, &path)?;
                    Ok((AccountLock::File { lock, path }, record))
                })
                .await
            }
            (AccountStore::Postgres(pg), _) => {
                let (lock, record) = pg.lock(key).await?;
                Ok((AccountLock::Row(lock), record))
            }
            (AccountStore::Dir(_), None) => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    /// Saves a fresh login (or an import), replacing the account's older login.
    pub async fn save_login(
        &self,
        record: &TokenRecord,
        now: OffsetDateTime,
    ) -> Result<Saved, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let (auth_dir, record) = (auth_dir.clone(), record.clone());
                dir::blocking(move || dir::save_login(&auth_dir, &record, now)).await
            }
            AccountStore::Postgres(pg) => pg.save_login(record, now).await,
        }
    }

    /// Copies an account of another store into this one (see [`migrate`]).
    pub async fn copy_in(
        &self,
        stored: &Stored,
        now: OffsetDateTime,
    ) -> Result<Copied, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let (auth_dir, stored) = (auth_dir.clone(), stored.clone());
                dir::blocking(move || dir::copy_in(&auth_dir, &stored, now)).await
            }
            AccountStore::Postgres(pg) => pg.copy_in(stored).await,
        }
    }

    /// Removes the account with this email (`cliproxy logout`); returns what was removed,
    /// empty when there was none.
    pub async fn remove_account(&self, email: &str) -> Result<Vec<String>, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let (auth_dir, email) = (auth_dir.clone(), email.to_owned());
                dir::blocking(move || {
                    Ok(auth_dir
                        .remove_account(&email)?
                        .iter()
                        .map(|path| path.display().to_string())
                        .collect())
                })
                .await
            }
            AccountStore::Postgres(pg) => pg.remove_account(email).await,
        }
    }

    /// Takes the account with this email out of rotation or puts it back; returns how many
    /// files or rows it found for it (0: no such account).
    pub async fn set_account_disabled(
        &self,
        email: &str,
        disabled: bool,
    ) -> Result<usize, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let (auth_dir, email) = (auth_dir.clone(), email.to_owned());
                dir::blocking(move || Ok(auth_dir.set_account_disabled(&email, disabled)?.len()))
                    .await
            }
            AccountStore::Postgres(pg) => pg.set_account_disabled(email, disabled).await,
        }
    }

    /// The API keys taken out of rotation, by label.
    pub async fn disabled_credentials(&self) -> Result<BTreeSet<String>, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let auth_dir = auth_dir.clone();
                dir::blocking(move || Ok(auth_dir.disabled_credentials()?)).await
            }
            AccountStore::Postgres(pg) => pg.disabled_credentials().await,
        }
    }

    /// Takes the API key `label` out of rotation (`true`) or puts it back; `Ok(false)` when
    /// it already was so.
    pub async fn set_credential_disabled(
        &self,
        label: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        match self {
            AccountStore::Dir(auth_dir) => {
                let (auth_dir, label) = (auth_dir.clone(), label.to_owned());
                dir::blocking(move || Ok(auth_dir.set_credential_disabled(&label, disabled)?)).await
            }
            AccountStore::Postgres(pg) => pg.set_credential_disabled(label, disabled).await,
        }
    }
}

impl AccountLock {
    /// Writes `record` as the locked account and releases the lock. For a token file, returns
    /// its stamp taken under the lock, so the dir watch can recognise the server's own write.
    pub async fn write(self, record: &TokenRecord) -> Result<Written, StoreError> {
        match self {
            AccountLock::File { lock, path } => {
                let record = record.clone();
                dir::blocking(move || dir::write(&lock, &path, &record)).await
            }
            AccountLock::Row(lock) => {
                lock.write(record).await?;
                Ok(Written {
                    at: std::time::Instant::now(),
                    stamp: None,
                })
            }
        }
    }

    /// Releases the lock without writing.
    pub async fn release(self) {
        match self {
            AccountLock::File { lock, .. } => drop(lock),
            AccountLock::Row(lock) => lock.release().await,
        }
    }
}
