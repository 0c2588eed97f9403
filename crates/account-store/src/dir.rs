//! The auth dir behind the store's async interface: token-store's blocking file work, run on
//! the blocking pool, and the file stamps that let a server recognise its own writes.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use time::OffsetDateTime;
use token_store::{AccountKey, AccountLock, AuthDir, TokenRecord};

use crate::error::StoreError;
use crate::place::{Copied, Listing, Location, Problem, Saved, Stored, refreshed_later};

/// Identifies one version of a file on disk (inode, size, mtime), to recognise a server's
/// own writes when the dir watch reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    /// The stamp of the file at `path` now, if it exists.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// A finished write of an account.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// When the write was done (the file renamed and flushed, or the row committed), as the
    /// thread that wrote it saw it: the end of the window in which a kill loses new tokens.
    pub at: Instant,
    /// The token file's stamp, taken under the lock (none for a row).
    pub stamp: Option<FileStamp>,
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|join| {
        StoreError::Seal(format!(
            "the token-store task ended abnormally ({join}); the previous token file is unchanged"
        ))
    })?
}

pub(crate) fn list(dir: &AuthDir) -> Result<Listing, StoreError> {
    let listing = dir.list()?;
    Ok(Listing {
        accounts: listing
            .accounts
            .into_iter()
            .map(Stored::from_file)
            .collect(),
        problems: listing.problems.into_iter().map(Problem::from).collect(),
        tightened: listing.tightened,
    })
}

/// Takes the account lock and reads the file under it.
pub(crate) fn lock(
    dir: &AuthDir,
    key: &AccountKey,
    path: &Path,
) -> Result<(AccountLock, TokenRecord), StoreError> {
    let lock = dir.lock_account(key)?;
    let record = lock.read(path)?;
    Ok((lock, record))
}

/// Writes `record` under `lock`; the stamp is taken while the lock is held, so no other
/// cliproxy writer can come in between.
pub(crate) fn write(
    lock: &AccountLock,
    path: &Path,
    record: &TokenRecord,
) -> Result<Written, StoreError> {
    lock.write(path, record)?;
    let at = Instant::now();
    Ok(Written {
        at,
        stamp: FileStamp::of(path),
    })
}

pub(crate) fn save_login(
    dir: &AuthDir,
    record: &TokenRecord,
    now: OffsetDateTime,
) -> Result<Saved, StoreError> {
    let saved = dir.save_login(record, now)?;
    Ok(Saved {
        saved_to: saved.path.display().to_string(),
        replaced: saved
            .replaced
            .iter()
            .map(|path| path.display().to_string())
            .collect(),
    })
}

/// Copies `stored` into the dir: added when the dir has no file of the account, replaced when
/// different, unless the dir's copy was refreshed later.
pub(crate) fn copy_in(
    dir: &AuthDir,
    stored: &Stored,
    now: OffsetDateTime,
) -> Result<Copied, StoreError> {
    let key = match stored.record.email.as_deref() {
        Some(email) => AccountKey::for_email(&stored.record.provider, email),
        None => stored.key.clone(),
    };
    let existing: Vec<token_store::StoredAccount> = dir
        .list()?
        .accounts
        .into_iter()
        .filter(|account| account.key() == key)
        .collect();
    let outcome = match existing.as_slice() {
        [] => Copied::Added,
        [only] if only.record == stored.record => Copied::Unchanged,
        [only] if refreshed_later(&only.record, &stored.record) => Copied::KeptNewer,
        _ => Copied::Updated,
    };
    if matches!(outcome, Copied::Added | Copied::Updated) {
        if stored.record.email.is_some() {
            dir.save_login(&stored.record, now)?;
        } else {
            // No email to name the file by: it keeps the name its key came from.
            let path: PathBuf = dir.path().join(format!("{key}.json"));
            dir.lock_account(&key)?.write(&path, &stored.record)?;
        }
    }
    Ok(outcome)
}

/// The location of an account read from the dir.
pub(crate) fn path_of(location: &Location) -> Option<&Path> {
    match location {
        Location::File(path) => Some(path),
        Location::Row => None,
    }
}
