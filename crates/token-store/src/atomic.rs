//! Crash-safe file replacement: a 0600 temp file in the target's directory,
//! fsync, rename over the target, fsync of the directory.
//!
//! Readers see the old file or the new one, never a partial one, and the
//! token is never readable by others at any moment.

use std::fs::{self, File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::error::{Operation, StoreError};

/// Mode of every token file and lock file.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Mode of directories the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Prefix and suffix of temp files; listing skips them.
pub(crate) const TEMP_PREFIX: &str = ".";
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Atomically replaces (or creates) `target` with `bytes`, mode 0600.
pub(crate) fn write_file(target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = parent_dir(target);
    let fail = |error| StoreError::io(Operation::WriteFile, target, error);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| fail(without_temp_path(e)))?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(fail)?;
    temp.write_all(bytes).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    // On failure the returned temp file is dropped, which deletes it.
    temp.persist(target).map_err(|e| fail(e.error))?;
    sync_dir(dir)
}

/// Creates and drops a temp file in `dir`, failing as a token write would.
pub(crate) fn probe_writable(dir: &Path) -> Result<(), StoreError> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| StoreError::io(Operation::WriteFile, dir, without_temp_path(e)))
}

/// Flushes a directory so that renames and removals in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some filesystems cannot fsync a directory; nothing more can be done there.
        Err(error) if error.kind() == io::ErrorKind::InvalidInput => Ok(()),
        result => result.map_err(|error| StoreError::io(Operation::SyncDir, dir, error)),
    }
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) fn remove_file(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(StoreError::io(Operation::RemoveFile, path, error))
        }
        _ => Ok(()),
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// tempfile appends the random temp path to its errors; our message names
/// the target instead, so keep just the kind when it says enough.
fn without_temp_path(error: io::Error) -> io::Error {
    use io::ErrorKind as K;
    match error.kind() {
        kind @ (K::PermissionDenied
        | K::ReadOnlyFilesystem
        | K::StorageFull
        | K::QuotaExceeded
        | K::NotADirectory
        | K::NotFound) => io::Error::from(kind),
        _ => error,
    }
}
