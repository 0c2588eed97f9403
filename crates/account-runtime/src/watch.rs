//! Watches the auth dir (the directory, not the files: an atomic rename ends a
//! per-file watch) and re-reads it after a burst of events settles.
//!
//! Temp and lock files (hidden names) never cause a re-read, and neither do token files as
//! this server last wrote them: a refresh's write-back costs one `stat`, not a read of the
//! whole dir.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use crate::accounts::Accounts;

/// Quiet time after the last event before the dir is re-read.
const SETTLE: Duration = Duration::from_millis(150);
/// Longest a steady stream of events can delay a re-read.
const MAX_DELAY: Duration = Duration::from_millis(800);

/// What the inotify limits are, for the messages when a watch cannot be set up.
const INOTIFY_HINT: &str = "the usual cause is the inotify limits: raise fs.inotify.max_user_instances and fs.inotify.max_user_watches with sysctl (see \"Auth dir watch failed\" in docs/troubleshooting.md)";

/// Keeps the watch alive; dropping it stops watching.
pub struct DirWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one event says changed: these paths, or `None` when it cannot say (an error, or
/// events were lost), which means re-reading the whole dir.
type Change = Option<Vec<PathBuf>>;

/// Why the auth dir cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// No watcher could be created.
    #[error("could not start watching the auth dir for changes ({0}); {INOTIFY_HINT}")]
    Start(notify::Error),
    /// The system's limit of watches is reached.
    #[error("could not watch {} for changes: too many watches; {INOTIFY_HINT}", .0.display())]
    TooManyWatches(PathBuf),
    /// The dir cannot be watched.
    #[error("could not watch {} for changes ({error}); check that it exists and is readable", .dir.display())]
    Dir {
        /// The auth dir.
        dir: PathBuf,
        /// What the watcher said.
        error: notify::Error,
    },
}

/// Starts watching `dir`, the auth dir `accounts` are kept in; changes are applied within a
/// second.
///
/// # Errors
///
/// [`WatchError`] when the watch cannot be set up.
pub fn watch(accounts: Arc<Accounts>, dir: PathBuf) -> Result<DirWatch, WatchError> {
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<Change>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let change = match event {
            Ok(event) if event.kind.is_access() => return,
            Ok(event) if event.need_rescan() || event.paths.is_empty() => None,
            Ok(event) => Some(event.paths),
            Err(_) => None,
        };
        let _ = events.send(change);
    })
    .map_err(WatchError::Start)?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|error| match error.kind {
            notify::ErrorKind::MaxFilesWatch => WatchError::TooManyWatches(dir.clone()),
            _ => WatchError::Dir {
                dir: dir.clone(),
                error,
            },
        })?;
    let task = tokio::spawn(async move {
        while let Some(first) = received.recv().await {
            let mut touched = Touched::default();
            touched.add(first);
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let settle = tokio::time::sleep(SETTLE);
                tokio::select! {
                    more = received.recv() => match more {
                        Some(change) => touched.add(change),
                        None => return,
                    },
                    () = settle => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            let filtered = {
                let (accounts, dir) = (Arc::clone(&accounts), dir.clone());
                tokio::task::spawn_blocking(move || needs_reread(&accounts, &dir, &touched)).await
            };
            let reconciled = match filtered {
                Ok(true) => accounts.reconcile().await,
                Ok(false) => continue,
                Err(join) => {
                    tracing::error!("auth dir reload failed: {join}");
                    continue;
                }
            };
            match reconciled {
                Ok(changes) if changes != Default::default() => {
                    tracing::info!(
                        added = changes.added,
                        updated = changes.updated,
                        removed = changes.removed,
                        "auth dir changed; accounts reloaded"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("could not re-read the auth dir: {error}"),
            }
        }
    });
    Ok(DirWatch {
        _watcher: watcher,
        task,
    })
}

/// The paths one burst of events named.
#[derive(Default)]
struct Touched {
    paths: BTreeSet<PathBuf>,
    /// Some event could not say what changed.
    unknown: bool,
}

impl Touched {
    fn add(&mut self, change: Change) {
        match change {
            Some(paths) => self.paths.extend(paths),
            None => self.unknown = true,
        }
    }
}

/// Whether the dir must be re-read: not when the burst touched only hidden files and the
/// server's own writes (found with a `stat` each, hence on a blocking thread).
fn needs_reread(accounts: &Accounts, dir: &Path, touched: &Touched) -> bool {
    let visible: Vec<&Path> = touched
        .paths
        .iter()
        .map(PathBuf::as_path)
        .filter(|path| !is_hidden_child(path, dir))
        .collect();
    let (own, others): (Vec<&Path>, Vec<&Path>) = visible
        .into_iter()
        .partition(|path| accounts.is_own_write(path));
    if !touched.unknown && others.is_empty() {
        if !own.is_empty() {
            tracing::debug!(
                "auth dir: only this server's own writes changed ({}); not re-reading it",
                names(&own)
            );
        }
        return false;
    }
    tracing::debug!("auth dir changed ({}); re-reading it", names(&others));
    true
}

/// Temp files (`.*.tmp`) and the `.locks` dir: never token files.
fn is_hidden_child(path: &Path, dir: &Path) -> bool {
    path.parent() == Some(dir)
        && path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}

/// The file names of `paths`, for a log line.
fn names(paths: &[&Path]) -> String {
    if paths.is_empty() {
        return "unknown files".to_owned();
    }
    paths
        .iter()
        .map(|path| {
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
