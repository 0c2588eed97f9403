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
/// Length of the random part of a temp file's name.
const TEMP_RANDOM_LEN: usize = 6;

/// The start of the name of every temp file of a write to `target`: `.<target file name>.`, so
/// a leftover of an interrupted write names the file it was for.
fn temp_prefix_for(target: &Path) -> String {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    format!("{TEMP_PREFIX}{name}.")
}

/// Whether `temp_name` is the name of a temp file of a write to `target`.
pub(crate) fn is_temp_file_of(temp_name: &str, target: &Path) -> bool {
    temp_name
        .strip_prefix(&temp_prefix_for(target))
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| random.len() == TEMP_RANDOM_LEN && !random.contains('.'))
}

/// Atomically replaces (or creates) `target` with `bytes`, mode 0600.
pub(crate) fn write_file(target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    Staged::write(target, bytes)?.commit()
}

/// The new content of a token file, written to a 0600 temp file next to it and flushed to
/// disk, but not yet in place: the target is untouched until [`Staged::commit`].
///
/// Dropping it removes the temp file. A crash before the commit leaves the old target intact
/// and a `.<target>.<random>.tmp` file that listing ignores, and removes once no process holds
/// the account's lock (or once it is stale).
pub(crate) struct Staged<'a> {
    target: &'a Path,
    temp: tempfile::NamedTempFile,
}

impl<'a> Staged<'a> {
    /// Creates the temp file in the target's directory (0600 from creation), writes `bytes`
    /// and fsyncs it.
    pub(crate) fn write(target: &'a Path, bytes: &[u8]) -> Result<Staged<'a>, StoreError> {
        let fail = |error| StoreError::io(Operation::WriteFile, target, error);
        // Created with mode 0600 (or less, if the umask removes bits), then set to exactly
        // 0600 before any content is written.
        let mut temp = tempfile::Builder::new()
            .prefix(&temp_prefix_for(target))
            .rand_bytes(TEMP_RANDOM_LEN)
            .suffix(TEMP_SUFFIX)
            .permissions(Permissions::from_mode(FILE_MODE))
            .tempfile_in(parent_dir(target))
            .map_err(|e| fail(without_temp_path(e)))?;
        // Through the `File`: `NamedTempFile`'s own methods add the temp path to their errors,
        // and the message names the target instead.
        let file = temp.as_file_mut();
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(fail)?;
        file.write_all(bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(Staged { target, temp })
    }

    /// Renames the temp file over the target and fsyncs the directory.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        let Staged { target, temp } = self;
        // On failure the returned temp file is dropped, which deletes it.
        temp.persist(target)
            .map_err(|e| StoreError::io(Operation::WriteFile, target, e.error))?;
        sync_dir(parent_dir(target))
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::{AuthDir, TokenRecord};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").mode() & 0o777
    }

    fn inode(path: &Path) -> u64 {
        fs::metadata(path).expect("metadata").ino()
    }

    fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
        fs::read_dir(dir)
            .expect("read dir")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
            })
            .collect()
    }

    #[test]
    fn every_write_renames_a_new_file_into_place() {
        let root = tempfile::tempdir().expect("temp dir");
        let target = root.path().join("qwen-a@b.com.json");
        write_file(&target, b"one").expect("write");
        let link = root.path().join("hard-link-to-the-first-version");
        fs::hard_link(&target, &link).expect("hard link");

        let mut inodes = vec![inode(&target)];
        for content in ["two", "three"] {
            write_file(&target, content.as_bytes()).expect("write");
            assert_eq!(fs::read(&target).expect("read"), content.as_bytes());
            assert_eq!(mode(&target), 0o600);
            inodes.push(inode(&target));
        }
        inodes.dedup();
        assert_eq!(inodes.len(), 3, "each write is a new inode: {inodes:?}");
        assert_eq!(
            fs::read(&link).expect("read"),
            b"one",
            "the old file was never rewritten in place"
        );
        assert!(temp_files(root.path()).is_empty());
    }

    #[test]
    fn staged_content_is_private_and_leaves_the_target_alone_until_commit() {
        let root = tempfile::tempdir().expect("temp dir");
        let target = root.path().join("qwen-a@b.com.json");
        write_file(&target, b"old").expect("write");
        let old_inode = inode(&target);

        let staged = Staged::write(&target, b"new").expect("stage");
        let temp = staged.temp.path().to_path_buf();
        assert_eq!(
            temp.parent(),
            Some(root.path()),
            "same directory as the target"
        );
        assert_eq!(mode(&temp), 0o600, "the staged file is private");
        assert_eq!(fs::read(&temp).expect("read"), b"new");
        assert_eq!(fs::read(&target).expect("read"), b"old");
        assert_eq!(inode(&target), old_inode);
        let staged_inode = inode(&temp);

        staged.commit().expect("commit");
        assert_eq!(fs::read(&target).expect("read"), b"new");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(
            inode(&target),
            staged_inode,
            "the staged file was renamed into place"
        );
        assert!(!temp.exists());
    }

    #[test]
    fn temp_files_name_their_target() {
        let root = tempfile::tempdir().expect("temp dir");
        let target = root.path().join("qwen-a@b.com.json");
        let staged = Staged::write(&target, b"new").expect("stage");
        let name = staged.temp.path().file_name().unwrap().to_string_lossy();
        assert!(is_temp_file_of(&name, &target), "{name}");
        assert!(!is_temp_file_of(&name, &root.path().join("qwen-a@b.com")));
        let other = root.path().join("qwen-a@b.com.json.x.json");
        assert!(!is_temp_file_of(
            ".qwen-a@b.com.json.x.json.abcdef.tmp",
            &target
        ));
        assert!(is_temp_file_of(
            ".qwen-a@b.com.json.x.json.abcdef.tmp",
            &other
        ));
        assert!(
            !is_temp_file_of(".abcdef.tmp", &target),
            "a probe's temp file"
        );
    }

    #[test]
    fn a_crash_before_the_rename_keeps_the_old_file_and_listing_ignores_the_leftover() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = AuthDir::open(root.path()).expect("open");
        let mut record = TokenRecord::new("qwen", "old-token");
        record.email = Some("a@b.com".into());
        let now = time::macros::datetime!(2025-08-20 07:04:05 UTC);
        let path = dir.save_login(&record, now).expect("save").path;
        let before = fs::read(&path).expect("read");

        record.access_token = "new-token".into();
        let bytes = record.to_json_pretty().expect("encodes");
        let staged = Staged::write(&path, &bytes).expect("stage");
        // A crash runs no destructors: the temp file stays behind, and no rename happens.
        std::mem::forget(staged);

        assert_eq!(fs::read(&path).expect("read"), before);
        let leftovers = temp_files(root.path());
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert_eq!(mode(&leftovers[0]), 0o600);
        let listing = dir.list().expect("list");
        assert!(listing.problems.is_empty(), "{:?}", listing.problems);
        let tokens: Vec<&str> = listing
            .accounts
            .iter()
            .map(|account| account.record.access_token.as_str())
            .collect();
        assert_eq!(tokens, ["old-token"]);
        assert!(
            !leftovers[0].exists(),
            "no one holds the account's lock, so no write is in progress: the leftover goes"
        );
    }

    #[test]
    fn listing_keeps_the_temp_file_of_a_write_in_progress() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = AuthDir::open(root.path()).expect("open");
        let mut record = TokenRecord::new("qwen", "old-token");
        record.email = Some("a@b.com".into());
        let now = time::macros::datetime!(2025-08-20 07:04:05 UTC);
        let path = dir.save_login(&record, now).expect("save").path;
        let account = dir.load(&path).expect("load").key();

        let lock = dir.lock_account(&account).expect("lock");
        let staged = Staged::write(&path, b"{}").expect("stage");
        dir.list().expect("list");
        assert_eq!(
            temp_files(root.path()).len(),
            1,
            "the writer holds the lock"
        );
        staged.commit().expect("the write completes");
        drop(lock);
        assert!(temp_files(root.path()).is_empty());
    }
}
