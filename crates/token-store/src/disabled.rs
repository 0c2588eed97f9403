//! API keys taken out of rotation on purpose (`cliproxy accounts disable dashscope#2`): their
//! labels, one per line, in `<auth dir>/disabled-credentials`, written like a token file
//! (atomically, 0600). Accounts keep that flag in their own token file instead
//! ([`crate::DISABLED_KEY`]). A running server re-reads both when they change.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use crate::atomic;
use crate::error::{Operation, StoreError};

/// The file's name inside the auth dir.
pub const DISABLED_CREDENTIALS: &str = "disabled-credentials";

/// Explains the file to whoever opens it.
const HEADER: &str = "# API keys taken out of rotation with `cliproxy accounts disable`, one \
                      label per line.\n# `cliproxy accounts enable LABEL` puts one back.\n";

/// The labels in the file (none when it does not exist).
pub(crate) fn read(auth_dir: &Path) -> Result<BTreeSet<String>, StoreError> {
    let path = auth_dir.join(DISABLED_CREDENTIALS);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(error) => Err(StoreError::io(Operation::ReadFile, &path, error)),
    }
}

/// Writes `labels` as the file's content (removes the file when there are none).
pub(crate) fn write(auth_dir: &Path, labels: &BTreeSet<String>) -> Result<(), StoreError> {
    let path = auth_dir.join(DISABLED_CREDENTIALS);
    if labels.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::io(Operation::RemoveFile, &path, error))
            }
            _ => atomic::sync_dir(auth_dir),
        };
    }
    let mut text = HEADER.to_owned();
    for label in labels {
        text.push_str(label);
        text.push('\n');
    }
    atomic::write_file(&path, text.as_bytes())
}
