//! Per-account advisory locks.
//!
//! An atomic rename swaps a token file's inode, so token files are never
//! locked; each account has a stable lock file `<auth dir>/.locks/<key>.lock`
//! that is never deleted. `flock` locks belong to an open file description
//! and every lock call opens the file anew, so the lock excludes other
//! threads of this process as well as other processes.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use fs2::FileExt as _;

use crate::atomic::{self, DIR_MODE, FILE_MODE};
use crate::error::{Operation, StoreError};
use crate::key::AccountKey;
use crate::read::read_record;
use crate::record::TokenRecord;

/// Name of the lock directory inside the auth dir.
pub(crate) const LOCKS_DIR: &str = ".locks";

/// The exclusive lock of one account, released on drop.
///
/// Only write an account's files while holding its lock; [`AccountLock::write`]
/// refuses records of other accounts.
#[derive(Debug)]
pub struct AccountLock {
    file: File,
    key: AccountKey,
    lock_path: PathBuf,
}

impl AccountLock {
    /// Blocks until the lock of `key` is taken.
    pub(crate) fn acquire(auth_dir: &Path, key: &AccountKey) -> Result<AccountLock, StoreError> {
        let (file, lock_path) = open_lock_file(auth_dir, key)?;
        loop {
            match file.lock_exclusive() {
                Ok(()) => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(StoreError::io(Operation::Lock, &lock_path, error)),
            }
        }
        Ok(AccountLock {
            file,
            key: key.clone(),
            lock_path,
        })
    }

    /// Takes the lock of `key` if no one holds it; `Ok(None)` when someone does.
    pub(crate) fn try_acquire(
        auth_dir: &Path,
        key: &AccountKey,
    ) -> Result<Option<AccountLock>, StoreError> {
        let (file, lock_path) = open_lock_file(auth_dir, key)?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(Some(AccountLock {
                file,
                key: key.clone(),
                lock_path,
            })),
            Err(error) if error.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {
                Ok(None)
            }
            Err(error) => Err(StoreError::io(Operation::Lock, &lock_path, error)),
        }
    }

    /// The account this lock is for.
    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    /// Path of the lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Reads and validates the token file at `path`.
    pub fn read(&self, path: &Path) -> Result<TokenRecord, StoreError> {
        read_record(path)
    }

    /// Atomically writes `record` to `path` (temp file, fsync, rename, fsync
    /// of the directory; mode 0600). Refuses invalid records and records that
    /// belong to another account than this lock's.
    pub fn write(&self, path: &Path, record: &TokenRecord) -> Result<(), StoreError> {
        record.validate().map_err(StoreError::InvalidRecord)?;
        let needed = AccountKey::for_record(record, path);
        if needed != self.key {
            return Err(StoreError::WrongLock {
                path: path.to_path_buf(),
                held: self.key.clone(),
                needed,
            });
        }
        let bytes = record.to_json_pretty().map_err(StoreError::InvalidRecord)?;
        atomic::write_file(path, &bytes)
    }
}

impl Drop for AccountLock {
    fn drop(&mut self) {
        // Closing the file would release the lock too; unlocking explicitly
        // also covers a copy of the descriptor briefly shared with a child
        // process between fork and exec. A failure leaves nothing to do.
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

fn open_lock_file(auth_dir: &Path, key: &AccountKey) -> Result<(File, PathBuf), StoreError> {
    let dir = auth_dir.join(LOCKS_DIR);
    match DirBuilder::new().mode(DIR_MODE).create(&dir) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
            return Err(StoreError::io(Operation::CreateDir, &dir, error));
        }
        _ => {}
    }
    let path = dir.join(key.lock_file_name());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|error| StoreError::io(Operation::Lock, &path, error))?;
    Ok((file, path))
}
