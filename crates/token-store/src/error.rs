//! Errors of the store.
//!
//! Every message names the path and the operation and, for I/O failures,
//! tells the user what to do next. No message ever contains file content,
//! so a token can never leak through an error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::bad_file::{BadFile, BadFileReason};
use crate::key::AccountKey;

/// Where a user can read more when tokens cannot be saved.
const TROUBLESHOOTING: &str = "see \"Token not saving\" in docs/troubleshooting.md";

/// What the store was doing when an I/O error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Creating the auth dir (or its parents, or `.locks`).
    CreateDir,
    /// Checking an existing auth dir.
    OpenDir,
    /// Listing the auth dir.
    ReadDir,
    /// Reading one token file.
    ReadFile,
    /// Writing one token file (temp file, fsync, rename).
    WriteFile,
    /// Removing one token file.
    RemoveFile,
    /// Flushing the directory entry after a rename or removal.
    SyncDir,
    /// Opening or locking an account lock file.
    Lock,
    /// Reading Qwen Code's own credentials file.
    ReadQwenCodeCreds,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::CreateDir => "create directory",
            Operation::OpenDir => "open the auth dir",
            Operation::ReadDir => "list the auth dir",
            Operation::ReadFile => "read token file",
            Operation::WriteFile => "write token file",
            Operation::RemoveFile => "remove token file",
            Operation::SyncDir => "flush directory",
            Operation::Lock => "lock account file",
            Operation::ReadQwenCodeCreds => "read Qwen Code credentials",
        })
    }
}

impl Operation {
    fn writes(self) -> bool {
        matches!(
            self,
            Operation::CreateDir
                | Operation::WriteFile
                | Operation::RemoveFile
                | Operation::SyncDir
                | Operation::Lock
        )
    }
}

/// Tells the user what to do about `error` while doing `op`.
fn hint(op: &Operation, error: &io::Error) -> String {
    use io::ErrorKind as K;
    let op = *op;
    match error.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem if op.writes() => format!(
            "Make sure the auth dir is writable by this user, or choose another with --auth-dir ({TROUBLESHOOTING})."
        ),
        K::PermissionDenied if op == Operation::ReadQwenCodeCreds => {
            "Make sure this user can read the file, or pass its path explicitly.".to_owned()
        }
        K::PermissionDenied => {
            "Make sure the auth dir and its files are readable by this user, or choose another with --auth-dir."
                .to_owned()
        }
        K::StorageFull | K::QuotaExceeded => format!(
            "The disk is full: free some space and try again; the previous token file is unchanged ({TROUBLESHOOTING})."
        ),
        K::FileTooLarge => format!(
            "A file size limit (ulimit -f) stops the write: lift it for this process; the previous token file is unchanged ({TROUBLESHOOTING})."
        ),
        K::NotADirectory => {
            "Part of this path is a regular file, not a directory: choose another --auth-dir.".to_owned()
        }
        K::NotFound if op == Operation::ReadQwenCodeCreds => {
            "Log in with Qwen Code first, or pass the path of its oauth_creds.json.".to_owned()
        }
        K::NotFound if op == Operation::ReadFile => {
            "The file was removed meanwhile (another login may have replaced it): list the auth dir again."
                .to_owned()
        }
        _ if op.writes() => format!("Check the auth dir and try again ({TROUBLESHOOTING})."),
        _ => "Check the path and try again.".to_owned(),
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on `path` failed.
    #[error("could not {op} {}: {error}. {}", .path.display(), hint(.op, .error))]
    Io {
        /// What the store was doing.
        op: Operation,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error (already part of the message, so not a `source`).
        error: io::Error,
    },
    /// A token file exists but is not a usable token file.
    #[error(
        "invalid token file {}: {}. Move it out of the auth dir, or log the account in again to replace it.",
        .0.path.display(),
        .0.reason
    )]
    Invalid(BadFile),
    /// Qwen Code's credentials file, read for an import, is not usable.
    #[error(
        "cannot import Qwen Code's credentials {}: {}. Log in with Qwen Code again so it rewrites the file, or log in here with `cliproxy login qwen`.",
        .0.path.display(),
        .0.reason
    )]
    InvalidQwenCodeCreds(BadFile),
    /// A record that would not pass validation was about to be written.
    #[error("refusing to write a token file that would be invalid: {0}")]
    InvalidRecord(BadFileReason),
    /// A login cannot be saved without an email, because the file name is built from it.
    #[error(
        "cannot save a login without an email address: the token file name is built from it. Give the account's email (--email EMAIL) and run the command again."
    )]
    MissingEmail,
    /// The email cannot safely become part of a file name.
    #[error(
        "the email {email:?} cannot be used in a token file name because it contains {problem}. Use the email as `cliproxy accounts list` shows it."
    )]
    UnsafeEmail {
        /// The email as given.
        email: String,
        /// What makes it unsafe, e.g. "`/`".
        problem: &'static str,
    },
    /// A write was attempted while holding the lock of a different account.
    #[error("cannot write {} while holding the lock of {held}: the record belongs to {needed}", .path.display())]
    WrongLock {
        /// The token file to be written.
        path: PathBuf,
        /// The account whose lock is held.
        held: AccountKey,
        /// The account the record belongs to.
        needed: AccountKey,
    },
    /// The auth dir can be written by its group or by others (see
    /// [`crate::AuthDir::check_private`]).
    #[error(
        "the auth dir {} is writable by {} (mode {mode:04o}), so another user could plant or replace token files. Make it private with `chmod 700 {}` (see \"Auth dir permissions\" in docs/troubleshooting.md).",
        .path.display(),
        writers(*.mode),
        shell_word(.path)
    )]
    WritableByOthers {
        /// The auth dir.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file changed account between reading it and taking the lock.
    #[error("token file {} now belongs to another account than when it was read: list the auth dir and try again", .path.display())]
    AccountChanged {
        /// The token file.
        path: PathBuf,
    },
}

/// Who besides the owner may write a directory of this mode.
fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        _ => "all users",
    }
}

/// `path` as one shell word: as is when it has only safe characters, else in single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+@%:,=~".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

impl StoreError {
    pub(crate) fn io(op: Operation, path: &Path, error: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    }
}
