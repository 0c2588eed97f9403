//! The running server's live account state for `cliproxy accounts list`: what no token file
//! can show (tokens not saved yet, accounts out of rotation and why).
//!
//! Each server listens on a Unix socket `<auth dir>/.run/serve-<pid>.sock`. The auth dir is
//! 0700 and the socket 0600, so only the accounts' owner can connect, and there is no key to
//! manage. A connection gets one JSON report and is closed. The report names accounts by
//! their key and never holds a token.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credential_pool::{Credential, Pool};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;

use crate::accounts::Accounts;

/// The directory of the sockets, inside the auth dir.
const RUN_DIR: &str = ".run";
/// How long `accounts list` waits for a server's report.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What a running server knows of one account that its file cannot show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStatus {
    /// The server holds newer tokens than the file, because writing them failed: why.
    pub unsaved: Option<String>,
    /// Out of rotation for this reason (e.g. re-login required).
    pub disabled: Option<String>,
    /// Out of rotation because the upstream refused the account even with a fresh token: the
    /// HTTP status, and when it rejoins.
    pub refused: Option<(u16, OffsetDateTime)>,
}

/// One account as a running server sees it, on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct AccountReport {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsaved: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused: Option<Refused>,
}

/// Out of rotation after the upstream refused the account: its status, and until when (unix
/// seconds).
#[derive(Debug, Serialize, Deserialize)]
struct Refused {
    status: u16,
    until: i64,
}

/// What one connection to the socket receives.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    pid: u32,
    accounts: Vec<AccountReport>,
}

/// The listening socket; dropping it stops answering and removes the socket file.
pub struct StatusSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts answering on this server's socket in `auth_dir`. Without it the server still serves;
/// only `accounts list` shows less, so a failure is a warning.
pub fn listen(
    auth_dir: &Path,
    accounts: Arc<Accounts>,
    pool: Arc<Pool<Credential>>,
) -> Option<StatusSocket> {
    match bind(auth_dir) {
        Ok((path, listener)) => {
            let task = tokio::spawn(answer(listener, accounts, pool));
            Some(StatusSocket { path, task })
        }
        Err(error) => {
            tracing::warn!(
                "could not open the status socket in {}/{RUN_DIR} ({error}); the server runs, but `cliproxy accounts list` cannot show its live state",
                auth_dir.display()
            );
            None
        }
    }
}

fn bind(auth_dir: &Path) -> std::io::Result<(PathBuf, tokio::net::UnixListener)> {
    let dir = auth_dir.join(RUN_DIR);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(error),
        _ => {}
    }
    remove_stale_sockets(&dir);
    let path = dir.join(format!("serve-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((path, listener))
}

/// Removes the sockets of servers that are gone (killed before they could remove their own).
fn remove_stale_sockets(dir: &Path) {
    for path in sockets_in(dir) {
        if let Err(error) = UnixStream::connect(&path)
            && error.kind() == std::io::ErrorKind::ConnectionRefused
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sock"))
        .collect()
}

async fn answer(
    listener: tokio::net::UnixListener,
    accounts: Arc<Accounts>,
    pool: Arc<Pool<Credential>>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let report = report(&accounts, &pool);
        tokio::spawn(async move {
            // The reader may have given up; nothing to do then.
            let _ = stream.write_all(&report).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The JSON report of every live account.
fn report(accounts: &Accounts, pool: &Pool<Credential>) -> Vec<u8> {
    let instant = Instant::now();
    let wall = SystemTime::now();
    let pool_states: HashMap<String, credential_pool::CredentialStatus> = pool
        .statuses(instant)
        .into_iter()
        .map(|status| (status.key.to_string(), status))
        .collect();
    let accounts = accounts
        .accounts()
        .into_iter()
        .map(|account| {
            let key = account.key.to_string();
            let state = pool_states.get(&key);
            AccountReport {
                unsaved: account.unsaved_reason(),
                disabled: state.and_then(|state| state.disabled.clone()),
                refused: state
                    .and_then(|state| state.refused.as_ref())
                    .map(|refused| {
                        let until = wall + refused.remaining;
                        Refused {
                            status: refused.status,
                            until: OffsetDateTime::from(until).unix_timestamp(),
                        }
                    }),
                key,
            }
        })
        .collect();
    serde_json::to_vec(&Report {
        pid: std::process::id(),
        accounts,
    })
    .unwrap_or_default()
}

/// What the servers running on `auth_dir` report, merged by account key (a later server's
/// word on the same account adds to an earlier one's). Servers that do not answer are skipped.
pub fn query(auth_dir: &Path) -> HashMap<String, LiveStatus> {
    let mut live: HashMap<String, LiveStatus> = HashMap::new();
    for path in sockets_in(&auth_dir.join(RUN_DIR)) {
        let Some(report) = read_report(&path) else {
            continue;
        };
        for account in report.accounts {
            let entry = live.entry(account.key).or_default();
            entry.unsaved = entry.unsaved.take().or(account.unsaved);
            entry.disabled = entry.disabled.take().or(account.disabled);
            if let Some(refused) = account.refused
                && let Ok(until) = OffsetDateTime::from_unix_timestamp(refused.until)
            {
                entry.refused = Some((refused.status, until));
            }
        }
    }
    live
}

fn read_report(path: &Path) -> Option<Report> {
    let mut stream = UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}
