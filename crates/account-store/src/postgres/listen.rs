//! The PostgreSQL store's change feed: one connection of its own that `LISTEN`s on the
//! store's channels, so a login, logout, disable or refresh on any server reaches every other
//! within moments, without polling rows. When the connection is lost it reconnects with
//! backoff and then says [`Change::Resync`]: whatever happened meanwhile must be read anew.

use std::future::poll_fn;
use std::time::Duration;

use token_store::AccountKey;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::error::describe_client_error;

/// The channel of account changes; the payload is `<origin> <account key>`.
pub(crate) const ACCOUNTS_CHANNEL: &str = "cliproxy_accounts";
/// The channel of changes to the disabled API keys; the payload is `<origin>`.
pub(crate) const CREDENTIALS_CHANNEL: &str = "cliproxy_credentials";

/// The first wait before reconnecting; it doubles up to [`MAX_RECONNECT_WAIT`].
const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(250);
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// What changed in the store, as another process (or another server) told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This account was written or removed: read it again.
    Account(AccountKey),
    /// The disabled API keys changed.
    Credentials,
    /// The feed (re)started: changes may have been missed, so read everything again.
    Resync,
}

/// Follows the store's channels until dropped.
pub struct ChangeFeed {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a feed listens to: its channels, how it reads their notifications, and what it says
/// after (re)connecting.
pub(crate) struct Channels<T> {
    /// The channels to `LISTEN` on.
    pub(crate) names: &'static [&'static str],
    /// The change a notification (channel, payload, this server's origin) announces.
    pub(crate) parse: fn(&str, &str, &str) -> Option<T>,
    /// What the feed says once it listens.
    pub(crate) resync: T,
    /// Whether it logs losing and regaining the connection (one feed per server does).
    pub(crate) logs: bool,
}

/// Starts following the account channels; changes made by `origin` (this server) are left
/// out.
pub(crate) fn follow(
    config: Config,
    target: String,
    origin: String,
    on_reconnect: impl Fn() + Send + Sync + 'static,
) -> (ChangeFeed, mpsc::UnboundedReceiver<Change>) {
    follow_channels(
        config,
        target,
        origin,
        Channels {
            names: &[ACCOUNTS_CHANNEL, CREDENTIALS_CHANNEL],
            parse: change_of,
            resync: Change::Resync,
            logs: true,
        },
        on_reconnect,
    )
}

/// Starts following `channels`; notifications by `origin` (this server) are left out.
pub(crate) fn follow_channels<T: Clone + Send + Sync + 'static>(
    config: Config,
    target: String,
    origin: String,
    channels: Channels<T>,
    on_reconnect: impl Fn() + Send + Sync + 'static,
) -> (ChangeFeed, mpsc::UnboundedReceiver<T>) {
    let (sender, changes) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut wait = FIRST_RECONNECT_WAIT;
        let mut outage: Option<String> = None;
        loop {
            let ended = listen(&config, &origin, &channels, &sender, || {
                wait = FIRST_RECONNECT_WAIT;
                if outage.take().is_some() {
                    if channels.logs {
                        tracing::info!(
                            "reconnected to the PostgreSQL store {target}; catching up on changes"
                        );
                    }
                    on_reconnect();
                }
            })
            .await;
            if sender.is_closed() {
                return;
            }
            if outage.is_none() {
                if channels.logs {
                    tracing::warn!(
                        "lost the connection to the PostgreSQL store {target} ({ended}); serving with the tokens held, no refresh until it is back; reconnecting"
                    );
                }
                outage = Some(ended);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RECONNECT_WAIT);
        }
    });
    (ChangeFeed { task }, changes)
}

/// One connection's life: connect, `LISTEN`, say [`Change::Resync`], then pass on
/// notifications until the connection ends. Returns why it ended.
async fn listen<T: Clone>(
    config: &Config,
    origin: &str,
    channels: &Channels<T>,
    sender: &mpsc::UnboundedSender<T>,
    on_listening: impl FnOnce(),
) -> String {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(error) => return describe_client_error(&error),
    };
    let (messages, mut received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    let _ = messages.send(Ok(note));
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    let _ = messages.send(Err(describe_client_error(&error)));
                    return;
                }
                None => return,
            }
        }
    });
    let statements: Vec<String> = channels
        .names
        .iter()
        .map(|name| format!("LISTEN {name}"))
        .collect();
    let listening = client.batch_execute(&statements.join("; ")).await;
    if let Err(error) = listening {
        driver.abort();
        return describe_client_error(&error);
    }
    on_listening();
    let _ = sender.send(channels.resync.clone());
    let ended = loop {
        match received.recv().await {
            Some(Ok(note)) => {
                if let Some(change) = (channels.parse)(note.channel(), note.payload(), origin) {
                    let _ = sender.send(change);
                }
            }
            Some(Err(error)) => break error,
            None => break "the server closed the connection".to_owned(),
        }
        if sender.is_closed() {
            break "stopped".to_owned();
        }
    };
    driver.abort();
    drop(client);
    ended
}

/// The change a notification announces; `None` for this server's own changes and for
/// payloads it does not know.
fn change_of(channel: &str, payload: &str, origin: &str) -> Option<Change> {
    let (from, rest) = payload.split_once(' ').unwrap_or((payload, ""));
    if from == origin {
        return None;
    }
    match channel {
        ACCOUNTS_CHANNEL if !rest.is_empty() => {
            Some(Change::Account(AccountKey::from_stored(rest)))
        }
        CREDENTIALS_CHANNEL => Some(Change::Credentials),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_the_change_and_skip_our_own() {
        assert_eq!(
            change_of(ACCOUNTS_CHANNEL, "other qwen-a@b.com", "me"),
            Some(Change::Account(AccountKey::from_stored("qwen-a@b.com")))
        );
        assert_eq!(change_of(ACCOUNTS_CHANNEL, "me qwen-a@b.com", "me"), None);
        assert_eq!(change_of(ACCOUNTS_CHANNEL, "other", "me"), None);
        assert_eq!(
            change_of(CREDENTIALS_CHANNEL, "other", "me"),
            Some(Change::Credentials)
        );
        assert_eq!(change_of("elsewhere", "other x", "me"), None);
    }
}
