//! What a store hands out: an account with where it is kept, a listing, a saved login.

use std::fmt;
use std::path::PathBuf;

use token_store::{AccountKey, TokenRecord};

/// Where one account is kept inside its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A token file of the auth dir.
    File(PathBuf),
    /// A row of the PostgreSQL store, named by the account key.
    Row,
}

/// An account and its content, as read from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The account it is (`qwen-<email>`).
    pub key: AccountKey,
    /// Where it is kept.
    pub location: Location,
    /// Its tokens and fields.
    pub record: TokenRecord,
}

impl Stored {
    /// An account of the auth dir.
    pub fn from_file(account: token_store::StoredAccount) -> Stored {
        Stored {
            key: account.key(),
            location: Location::File(account.path),
            record: account.record,
        }
    }

    /// What `accounts list` shows as where it is: the file name, or `(postgres)`.
    pub fn place(&self) -> String {
        match &self.location {
            Location::File(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            ),
            Location::Row => "(postgres)".to_owned(),
        }
    }
}

/// An account the store holds but cannot use, and why; listing goes on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file name, or the row's account key.
    pub name: String,
    /// Why it cannot be used (never its content).
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

impl From<token_store::BadFile> for Problem {
    fn from(bad: token_store::BadFile) -> Problem {
        let text = bad.to_string();
        let (name, reason) = text.split_once(": ").unwrap_or((&text, ""));
        Problem {
            name: name.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// Every account of a store.
#[derive(Debug, Default)]
pub struct Listing {
    /// Usable accounts, sorted by where they are kept.
    pub accounts: Vec<Stored>,
    /// Accounts that cannot be used.
    pub problems: Vec<Problem>,
    /// Token files that were readable by others and have been tightened to 0600.
    pub tightened: Vec<PathBuf>,
}

/// A login (or an import) the store saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Where it went: the token file's path, or the database and the account key.
    pub saved_to: String,
    /// What it replaced: the account's older token files, or its previous row.
    pub replaced: Vec<String>,
}

/// What copying one account into a store did (`cliproxy store migrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The destination did not have it.
    Added,
    /// The destination had an older or different version; it was replaced.
    Updated,
    /// The destination had exactly this.
    Unchanged,
    /// The destination's copy was refreshed later than the source's: kept.
    KeptNewer,
}

/// Whether `ours` was refreshed after `theirs`, so copying `theirs` over it would bring back a
/// refresh token Qwen has rotated away.
pub(crate) fn refreshed_later(ours: &TokenRecord, theirs: &TokenRecord) -> bool {
    match (ours.last_refresh, theirs.last_refresh) {
        (Some(ours), Some(theirs)) => ours > theirs,
        (Some(_), None) => true,
        _ => false,
    }
}
