//! Watches the auth dir (the directory, not the files: an atomic rename ends a
//! per-file watch) and re-reads it after a burst of events settles.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};

use super::accounts::Accounts;

/// Quiet time after the last event before the dir is re-read.
const SETTLE: Duration = Duration::from_millis(150);
/// Longest a steady stream of events can delay a re-read.
const MAX_DELAY: Duration = Duration::from_millis(800);

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

/// Starts watching `accounts`' auth dir; changes are applied within a second.
pub fn watch(accounts: Arc<Accounts>) -> anyhow::Result<DirWatch> {
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(event) => !event.kind.is_access(),
            Err(_) => true,
        };
        if relevant {
            let _ = events.send(());
        }
    })
    .context("could not start watching the auth dir for changes")?;
    let dir = accounts.store().path().to_owned();
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| {
            format!(
                "could not watch {} for changes; check that it exists and is readable",
                dir.display()
            )
        })?;
    let task = tokio::spawn(async move {
        while received.recv().await.is_some() {
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let settle = tokio::time::sleep(SETTLE);
                tokio::select! {
                    more = received.recv() => if more.is_none() { return },
                    () = settle => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            let accounts = Arc::clone(&accounts);
            let handle = tokio::runtime::Handle::current();
            let reconciled = tokio::task::spawn_blocking(move || {
                let _runtime = handle.enter();
                accounts.reconcile()
            })
            .await;
            match reconciled {
                Ok(Ok(changes)) if changes != Default::default() => {
                    tracing::info!(
                        added = changes.added,
                        updated = changes.updated,
                        removed = changes.removed,
                        "auth dir changed; accounts reloaded"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!("could not re-read the auth dir: {error}"),
                Err(join) => tracing::error!("auth dir reload failed: {join}"),
            }
        }
    });
    Ok(DirWatch {
        _watcher: watcher,
        task,
    })
}
