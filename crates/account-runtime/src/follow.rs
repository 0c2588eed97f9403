//! Keeps the accounts in step with a shared PostgreSQL store: the store's change feed
//! (`LISTEN`) says which account another server or a command changed, and only that account
//! is read again; after a lost connection, the whole store is.

use std::sync::Arc;

use account_store::{Change, ChangeFeed, PgStore};

use crate::accounts::{Accounts, Reconciled};

/// Keeps following; dropping it stops.
pub struct StoreFollow {
    _feed: ChangeFeed,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StoreFollow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts applying the changes of `store` (the store `accounts` are kept in) as they come.
pub fn follow(accounts: Arc<Accounts>, store: &PgStore) -> StoreFollow {
    let (feed, mut changes) = store.follow();
    let task = tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            // A resync comes first (changes made before the feed listened may have been
            // missed) and after every reconnection.
            let applied = match &change {
                Change::Resync => accounts.reconcile().await,
                Change::Account(key) => accounts.reload(key).await,
                Change::Credentials => accounts
                    .reload_disabled_keys()
                    .await
                    .map(|()| Reconciled::default()),
            };
            match applied {
                Ok(changes) if changes != Reconciled::default() => tracing::info!(
                    added = changes.added,
                    updated = changes.updated,
                    removed = changes.removed,
                    "the store changed; accounts reloaded"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!("could not re-read the store after a change: {error}"),
            }
        }
    });
    StoreFollow { _feed: feed, task }
}
