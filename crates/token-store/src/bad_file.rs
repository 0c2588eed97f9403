//! Why a single token file is rejected: the file and the reason, for listings
//! and errors. Messages describe the problem without quoting file content.

use std::fmt;
use std::path::PathBuf;

/// A token file the listing could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    /// Full path of the file.
    pub path: PathBuf,
    /// Why it was rejected.
    pub reason: BadFileReason,
}

impl fmt::Display for BadFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(f, "{name}: {}", self.reason)
    }
}

/// Why a token file (or a record about to be written) is not usable.
///
/// Messages describe the problem without quoting file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFileReason {
    /// Not JSON, or not a JSON object. The message has a position, never content.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The `type` key is missing or empty.
    #[error("missing \"type\"")]
    MissingType,
    /// The `type` is not one of [`crate::KNOWN_PROVIDERS`].
    #[error("unknown type {0:?}")]
    UnknownType(String),
    /// A known key holds a value of the wrong shape.
    #[error("\"{field}\" is not {expected}")]
    InvalidField {
        /// The JSON key.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// Neither `access_token` nor `refresh_token` is a non-empty string.
    #[error("no access_token or refresh_token")]
    MissingToken,
    /// The file could not be read.
    #[error("unreadable: {0}")]
    Unreadable(String),
}
