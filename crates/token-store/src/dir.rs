//! The auth dir: opening it, listing and loading token files, saving
//! logins, read-modify-write updates and removal of accounts.

use std::fs::{self, DirBuilder, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Map;
use time::OffsetDateTime;

use crate::atomic::{self, DIR_MODE, FILE_MODE, TEMP_PREFIX, TEMP_SUFFIX};
use crate::bad_file::{BadFile, BadFileReason};
use crate::disabled;
use crate::error::{Operation, StoreError};
use crate::key::{self, AccountKey};
use crate::lock::AccountLock;
use crate::naming;
use crate::read::read_record;
use crate::record::{KNOWN_PROVIDERS, TokenRecord};

/// Leftover temp files older than this are removed by [`AuthDir::list`].
const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// A directory of token files, one account per file.
#[derive(Debug, Clone)]
pub struct AuthDir {
    path: PathBuf,
}

/// Result of [`AuthDir::list`].
#[derive(Debug, Default)]
pub struct Listing {
    /// Valid token files, sorted by path.
    pub accounts: Vec<StoredAccount>,
    /// Files that look like token files but cannot be used, sorted by path.
    pub problems: Vec<BadFile>,
    /// Files that were readable by others and have been tightened to 0600.
    pub tightened: Vec<PathBuf>,
}

/// Result of [`AuthDir::save_login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLogin {
    /// The new token file.
    pub path: PathBuf,
    /// The account's older files that were removed, sorted by path.
    pub replaced: Vec<PathBuf>,
}

/// A valid token file and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAccount {
    /// Full path of the file.
    pub path: PathBuf,
    /// Its content.
    pub record: TokenRecord,
}

impl StoredAccount {
    /// The account this file belongs to.
    pub fn key(&self) -> AccountKey {
        AccountKey::for_record(&self.record, &self.path)
    }
}

/// Directory entries of interest, from one pass over the auth dir.
struct Scan {
    /// Candidate token files: regular, not hidden, ending in `.json`.
    token_files: Vec<(PathBuf, Metadata)>,
    /// Leftover temp files from interrupted writes.
    temp_files: Vec<(PathBuf, Metadata)>,
}

impl AuthDir {
    /// Opens the dir, creating it (and missing parents) with mode 0700 when
    /// missing. An existing dir keeps its mode.
    pub fn open(path: impl Into<PathBuf>) -> Result<AuthDir, StoreError> {
        let path = path.into();
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => return Ok(AuthDir { path }),
            Ok(_) => {
                let error = io::Error::from(io::ErrorKind::NotADirectory);
                return Err(StoreError::io(Operation::OpenDir, &path, error));
            }
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::io(Operation::OpenDir, &path, error));
            }
            Err(_) => {}
        }
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&path)
            .map_err(|error| StoreError::io(Operation::CreateDir, &path, error))?;
        Ok(AuthDir { path })
    }

    /// The directory's path, as given to [`AuthDir::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that no one but its owner can write the directory, as ssh's `StrictModes` does
    /// for `~/.ssh`: whoever can write it can plant a token file (an account of theirs that
    /// requests would then use) or replace one. Fails with [`StoreError::WritableByOthers`]
    /// when the group or others may write it (the sticky bit does not help: creating files is
    /// enough). Follows a symlink to the directory it names.
    pub fn check_private(&self) -> Result<(), StoreError> {
        let meta = fs::metadata(&self.path)
            .map_err(|error| StoreError::io(Operation::OpenDir, &self.path, error))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 == 0 {
            return Ok(());
        }
        Err(StoreError::WritableByOthers {
            path: self.path.clone(),
            mode,
        })
    }

    /// Checks that a token file can be created here, by creating and removing
    /// a temp file, so a login fails before the user approves it rather than after.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        crate::atomic::probe_writable(&self.path)
    }

    /// Loads every valid token file. Invalid ones (bad JSON, missing token,
    /// unknown type, unreadable) are reported in `problems` without stopping.
    /// Files more open than 0600 are tightened to 0600 and reported in
    /// `tightened`; one that cannot be tightened is logged (path only).
    /// Dotfiles, temp and lock files, non-`.json` files and subdirectories
    /// are ignored. Temp files that a crash left behind are removed: those of
    /// a listed token file whose account lock no one holds (so no write is
    /// in progress), and any more than an hour old.
    ///
    /// Fails only if the directory itself cannot be read.
    pub fn list(&self) -> Result<Listing, StoreError> {
        let scan = self.scan()?;
        remove_stale_temp_files(&scan.temp_files);
        let mut listing = Listing::default();
        for (path, meta) in scan.token_files {
            if meta.permissions().mode() & 0o077 != 0 {
                match fs::set_permissions(&path, Permissions::from_mode(FILE_MODE)) {
                    // Reported in `tightened`; the caller says it in its own words.
                    Ok(()) => listing.tightened.push(path.clone()),
                    Err(error) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "token file is accessible to other users and could not be tightened to 0600"
                    ),
                }
            }
            match read_record(&path) {
                Ok(record) => {
                    let account = StoredAccount { path, record };
                    self.remove_interrupted_writes(&account, &scan.temp_files);
                    listing.accounts.push(account);
                }
                Err(StoreError::Invalid(bad)) => listing.problems.push(bad),
                Err(error) => {
                    let reason = BadFileReason::Unreadable(match error {
                        StoreError::Io { error, .. } => error.to_string(),
                        other => other.to_string(),
                    });
                    listing.problems.push(BadFile { path, reason });
                }
            }
        }
        Ok(listing)
    }

    /// Reads and validates one token file.
    pub fn load(&self, path: &Path) -> Result<StoredAccount, StoreError> {
        Ok(StoredAccount {
            path: path.to_path_buf(),
            record: read_record(path)?,
        })
    }

    /// Saves a fresh login as `<type>-<email lowercased>-<unix seconds>.json`
    /// and removes every other file of the same account (same type, same
    /// email ignoring case, including Go-style `qwen-<email>.json`), all under
    /// the account lock. Unknown fields of replaced files are carried over
    /// (the record's own `extra` wins), except the account status, which a
    /// fresh login clears. Returns the new path and the removed ones.
    ///
    /// The new file is written before old ones are removed, so a crash can
    /// leave two files of one account (the next login cleans up) but never none.
    pub fn save_login(
        &self,
        record: &TokenRecord,
        now: OffsetDateTime,
    ) -> Result<SavedLogin, StoreError> {
        record.validate().map_err(StoreError::InvalidRecord)?;
        let email = record.email.as_deref().ok_or(StoreError::MissingEmail)?;
        let target = self
            .path
            .join(naming::file_name(&record.provider, email, now)?);
        let lock = self.lock_account(&AccountKey::for_email(&record.provider, email))?;
        let email_lower = email.to_lowercase();
        let mut replaced: Vec<(SystemTime, PathBuf, TokenRecord)> = self
            .scan()?
            .token_files
            .into_iter()
            .filter_map(|(path, meta)| {
                let old = read_record(&path).ok()?;
                key::belongs_to(&old, &path, &record.provider, &email_lower).then(|| {
                    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    (modified, path, old)
                })
            })
            .collect();
        replaced.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut extra = Map::new();
        for (_, _, old) in &replaced {
            extra.extend(old.extra.clone());
        }
        extra.remove(crate::record::STATUS_KEY);
        extra.extend(record.extra.clone());
        let mut fresh = record.clone();
        fresh.extra = extra;
        lock.write(&target, &fresh)?;
        let mut removed: Vec<PathBuf> = replaced
            .into_iter()
            .map(|(_, path, _)| path)
            .filter(|path| *path != target)
            .collect();
        removed.sort();
        for path in &removed {
            atomic::remove_file(path)?;
        }
        if !removed.is_empty() {
            atomic::sync_dir(&self.path)?;
        }
        Ok(SavedLogin {
            path: target,
            replaced: removed,
        })
    }

    /// Read-modify-write of one file under its account lock: re-reads the
    /// file once the lock is held, applies `f`, writes the result atomically
    /// to the same path and returns it. `f` must not change the account
    /// (type or email): such a write is refused with [`StoreError::WrongLock`].
    pub fn update<F>(&self, path: &Path, f: F) -> Result<TokenRecord, StoreError>
    where
        F: FnOnce(&mut TokenRecord),
    {
        let key = AccountKey::for_record(&read_record(path)?, path);
        let lock = self.lock_account(&key)?;
        let mut record = lock.read(path)?;
        if AccountKey::for_record(&record, path) != key {
            return Err(StoreError::AccountChanged {
                path: path.to_path_buf(),
            });
        }
        f(&mut record);
        lock.write(path, &record)?;
        Ok(record)
    }

    /// Takes the account with this email out of rotation (`true`) or puts it back, in its
    /// token file(s), under its lock. Returns the files it changed (empty when none has that
    /// email).
    pub fn set_account_disabled(
        &self,
        email: &str,
        disabled: bool,
    ) -> Result<Vec<PathBuf>, StoreError> {
        naming::check_email(email)?;
        let email_lower = email.to_lowercase();
        let mut changed = Vec::new();
        for (path, _) in self.scan()?.token_files {
            let Ok(record) = read_record(&path) else {
                continue;
            };
            if key::belongs_to(&record, &path, &record.provider, &email_lower) {
                self.update(&path, |record| record.set_disabled(disabled))?;
                changed.push(path);
            }
        }
        Ok(changed)
    }

    /// The API keys taken out of rotation ([`crate::DISABLED_CREDENTIALS`]), by label.
    pub fn disabled_credentials(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        disabled::read(&self.path)
    }

    /// Takes the API key `label` out of rotation (`true`) or puts it back; `Ok(false)` when it
    /// already was so.
    pub fn set_credential_disabled(&self, label: &str, disabled: bool) -> Result<bool, StoreError> {
        let _lock =
            self.lock_account(&AccountKey::for_shared_file(disabled::DISABLED_CREDENTIALS))?;
        let mut labels = disabled::read(&self.path)?;
        let changed = if disabled {
            labels.insert(label.to_owned())
        } else {
            labels.remove(label)
        };
        if changed {
            disabled::write(&self.path, &labels)?;
        }
        Ok(changed)
    }

    /// Blocks until the exclusive lock of the account is held. Hold it across
    /// read, refresh and write so no other thread or process writes the
    /// account meanwhile.
    pub fn lock_account(&self, key: &AccountKey) -> Result<AccountLock, StoreError> {
        AccountLock::acquire(&self.path, key)
    }

    /// Removes every file of the account with this email (ignoring case),
    /// under the account lock. Returns the removed paths, sorted (empty if none).
    pub fn remove_account(&self, email: &str) -> Result<Vec<PathBuf>, StoreError> {
        naming::check_email(email)?;
        let _locks = KNOWN_PROVIDERS
            .iter()
            .map(|provider| self.lock_account(&AccountKey::for_email(provider, email)))
            .collect::<Result<Vec<_>, _>>()?;
        let email_lower = email.to_lowercase();
        let mut removed = Vec::new();
        for (path, _) in self.scan()?.token_files {
            let Ok(record) = read_record(&path) else {
                continue;
            };
            if key::belongs_to(&record, &path, &record.provider, &email_lower) {
                atomic::remove_file(&path)?;
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            atomic::sync_dir(&self.path)?;
        }
        Ok(removed)
    }

    /// Removes the temp files of `account`'s file that interrupted writes left, when no one
    /// holds the account's lock: every write happens under it, so then none is in progress.
    /// Best effort: a failure only means the files stay (and are ignored).
    fn remove_interrupted_writes(
        &self,
        account: &StoredAccount,
        temp_files: &[(PathBuf, Metadata)],
    ) {
        let leftovers: Vec<&Path> = temp_files
            .iter()
            .map(|(path, _)| path.as_path())
            .filter(|temp| {
                temp.file_name().is_some_and(|name| {
                    atomic::is_temp_file_of(&name.to_string_lossy(), &account.path)
                })
            })
            .collect();
        if leftovers.is_empty() {
            return;
        }
        let Ok(Some(_lock)) = AccountLock::try_acquire(&self.path, &account.key()) else {
            return;
        };
        for temp in leftovers {
            match fs::remove_file(temp) {
                Ok(()) => {
                    tracing::debug!(path = %temp.display(), "removed the temp file of an interrupted write")
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::debug!(path = %temp.display(), %error, "could not remove the temp file of an interrupted write");
                }
            }
        }
    }

    /// One pass over the directory, sorted by path.
    fn scan(&self) -> Result<Scan, StoreError> {
        let entries = fs::read_dir(&self.path)
            .map_err(|error| StoreError::io(Operation::ReadDir, &self.path, error))?;
        let mut scan = Scan {
            token_files: Vec::new(),
            temp_files: Vec::new(),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::warn!(dir = %self.path.display(), %error, "skipping an unreadable directory entry");
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_temp = name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX);
            let is_token = !name.starts_with('.') && name.ends_with(".json");
            if !is_temp && !is_token {
                continue;
            }
            let path = entry.path();
            // Follows symlinks: a link to a token file is a token file.
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            if is_token {
                scan.token_files.push((path, meta));
            } else {
                scan.temp_files.push((path, meta));
            }
        }
        scan.token_files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(scan)
    }
}

/// Removes temp files that an interrupted write left behind over an hour
/// ago. Best effort: a failure only means the file stays (and is ignored).
fn remove_stale_temp_files(temp_files: &[(PathBuf, Metadata)]) {
    let now = SystemTime::now();
    for (path, meta) in temp_files {
        let stale = meta
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if stale {
            match fs::remove_file(path) {
                Ok(()) => tracing::debug!(path = %path.display(), "removed a stale temp file"),
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "could not remove a stale temp file");
                }
            }
        }
    }
}
