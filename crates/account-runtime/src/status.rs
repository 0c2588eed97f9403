//! The running server's live account state for `cliproxy accounts list`: what no token file
//! can show (tokens not saved yet, accounts out of rotation and why).
//!
//! Each server listens on a Unix socket `<auth dir>/.run/serve-<pid>.sock`. The auth dir is
//! 0700 and the socket 0600, so only the accounts' owner can connect, and there is no key to
//! manage. A connection gets one JSON report and is closed. The report names accounts by
//! their key and never holds a token.

use std::collections::HashMap;
use std::io::Read as _;
use std::num::NonZeroU64;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credential_pool::{Allowance, Credential, DayStatus, Flavor, Pool};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;

use crate::accounts::Accounts;

/// The directory of the sockets, inside the auth dir.
const RUN_DIR: &str = ".run";
/// How long `accounts list` waits for a server's report.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Which kind of credential a report line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// A Qwen OAuth account (a token file).
    QwenOauth,
    /// An API key of an `[[openai-compat]]` upstream (the config).
    ApiKey,
}

/// Where a credential stands, as a running server sees it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LiveState {
    /// In rotation.
    Ok,
    /// The server holds newer tokens than the file, because writing them failed.
    TokenNotSaved { reason: String },
    /// Its refresh token is dead: only a new login brings it back.
    ReloginRequired,
    /// Taken out of rotation (`cliproxy accounts disable`, or another reason).
    Disabled { reason: String },
    /// The upstream refused it; it is probed until it works again.
    Refused {
        status: u16,
        since: i64,
        next_probe: i64,
    },
    /// Its quota for the day is used up, until it resets.
    Exhausted { until: i64 },
    /// At its own `requests-per-day` or `tokens-per-day`, until the quota reset.
    DayLimit {
        /// `requests-per-day` or `tokens-per-day`.
        limit: String,
        used: u64,
        cap: u64,
        until: i64,
    },
    /// At its requests-per-minute cap, until a slot frees.
    Capped { used: u32, cap: u32, until: i64 },
    /// Cooling down for a model after a quota or rate limit answer.
    Cooling { model: String, until: i64 },
}

/// One credential as a running server sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCredential {
    /// The pool's key (an account key such as `qwen-you@example.com`, or
    /// `openai-compat:<name>#<n>`).
    pub key: String,
    /// What logs call it: the account's email, or `<name>#<n>`.
    pub label: String,
    pub kind: CredentialKind,
    #[serde(flatten)]
    pub state: LiveState,
    pub weight: u32,
    pub priority: i32,
    #[serde(default)]
    pub group: Option<String>,
    /// Requests in the current minute, when it has a cap.
    pub requests_in_window: u32,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// At its requests-per-minute cap: when a slot frees.
    #[serde(default)]
    pub window_frees_at: Option<i64>,
    /// Its requests and tokens of the day.
    #[serde(default)]
    pub day: LiveDay,
    /// What the upstream last said about its limits.
    #[serde(default)]
    pub upstream: Option<LiveUpstream>,
}

/// A credential's requests and tokens since the last quota reset, against its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDay {
    pub requests: u64,
    pub tokens: u64,
    #[serde(default)]
    pub requests_per_day: Option<u64>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// When the day ends; `None` before the credential's first request.
    #[serde(default)]
    pub resets_at: Option<i64>,
}

/// What the upstream last said about a credential's limits, and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveUpstream {
    pub seen_at: i64,
    #[serde(default)]
    pub requests: Option<LiveAllowance>,
    #[serde(default)]
    pub tokens: Option<LiveAllowance>,
    /// Its `Retry-After`, as the time it pointed at.
    #[serde(default)]
    pub retry_at: Option<i64>,
    /// The message of its quota or rate-limit error.
    #[serde(default)]
    pub quota_error: Option<String>,
}

/// One allowance (`x-ratelimit-*-requests` or `-tokens`) as the upstream stated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveAllowance {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub remaining: Option<u64>,
    #[serde(default)]
    pub resets_at: Option<i64>,
}

/// What one connection to the socket receives.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    pid: u32,
    credentials: Vec<LiveCredential>,
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

/// The JSON report of every credential in the pool.
fn report(accounts: &Accounts, pool: &Pool<Credential>) -> Vec<u8> {
    serde_json::to_vec(&Report {
        pid: std::process::id(),
        credentials: live_credentials(accounts, pool),
    })
    .unwrap_or_default()
}

/// Every credential in the pool as this server sees it now, in the pool's order: what the
/// status socket reports, and what the management API and metrics start from.
pub fn live_credentials(accounts: &Accounts, pool: &Pool<Credential>) -> Vec<LiveCredential> {
    let instant = Instant::now();
    let wall = SystemTime::now();
    let at = |after: std::time::Duration| whole_second(wall + after);
    // A day's end (and an exhaustion until `quota-reset`) is a whole second of wall time,
    // reached here through the monotonic clock: rounding finds that second again.
    let at_day_end = |after: std::time::Duration| nearest_second(wall + after);
    let ago = |before: std::time::Duration| whole_second(wall.checked_sub(before).unwrap_or(wall));
    let accounts: HashMap<String, Arc<crate::QwenAccount>> = accounts
        .accounts()
        .into_iter()
        .map(|account| (account.key.to_string(), account))
        .collect();
    pool.snapshot(instant)
        .into_iter()
        .map(|(status, credential)| {
            let account = accounts.get(&*status.key);
            let state = if let Some(reason) = account.and_then(|a| a.unsaved_reason()) {
                LiveState::TokenNotSaved { reason }
            } else if account.is_some_and(|a| a.needs_relogin()) {
                LiveState::ReloginRequired
            } else if let Some(reason) = &status.disabled {
                LiveState::Disabled {
                    reason: reason.clone(),
                }
            } else if let Some(refused) = &status.refused {
                LiveState::Refused {
                    status: refused.status,
                    since: ago(refused.since),
                    next_probe: at(refused.next_probe_in),
                }
            } else if let Some(left) = status.exhausted_for {
                LiveState::Exhausted {
                    until: at_day_end(left),
                }
            } else if let Some(left) = status.day.limited_for {
                day_limit_state(&status.day, at_day_end(left))
            } else if let (Some(left), Some(cap)) = (status.capped_for, status.requests_per_minute)
            {
                LiveState::Capped {
                    used: status.requests_in_window,
                    cap: cap.get(),
                    until: at(left),
                }
            } else if let Some(cooling) = status.cooling.first() {
                LiveState::Cooling {
                    model: cooling.model.clone(),
                    until: at(cooling.remaining),
                }
            } else {
                LiveState::Ok
            };
            LiveCredential {
                key: status.key.to_string(),
                label: credential.label.to_string(),
                kind: match credential.flavor {
                    Flavor::QwenOAuth => CredentialKind::QwenOauth,
                    Flavor::OpenAiCompatible(_) => CredentialKind::ApiKey,
                },
                state,
                weight: status.routing.weight.get(),
                priority: status.routing.priority,
                group: status.routing.group.as_deref().map(str::to_owned),
                requests_in_window: status.requests_in_window,
                requests_per_minute: status.requests_per_minute.map(std::num::NonZeroU32::get),
                window_frees_at: status.capped_for.map(at),
                day: LiveDay {
                    requests: status.day.requests,
                    tokens: status.day.tokens,
                    requests_per_day: status.day.limits.requests.map(NonZeroU64::get),
                    tokens_per_day: status.day.limits.tokens.map(NonZeroU64::get),
                    resets_at: status.day.resets_in.map(at_day_end),
                },
                upstream: status.upstream.as_ref().map(|heard| {
                    let seen = wall.checked_sub(heard.ago).unwrap_or(wall);
                    let from_seen = |after: Duration| whole_second(seen + after);
                    let allowance = |allowance: &Allowance| LiveAllowance {
                        limit: allowance.limit,
                        remaining: allowance.remaining,
                        resets_at: allowance.resets_after.map(from_seen),
                    };
                    LiveUpstream {
                        seen_at: whole_second(seen),
                        requests: heard.said.requests.as_ref().map(allowance),
                        tokens: heard.said.tokens.as_ref().map(allowance),
                        retry_at: heard.said.retry_after.map(from_seen),
                        quota_error: heard.said.quota_error.clone(),
                    }
                }),
            }
        })
        .collect()
}

/// `moment` in whole Unix seconds, rounded down: a moment in the past never shows as future.
fn whole_second(moment: SystemTime) -> i64 {
    OffsetDateTime::from(moment).unix_timestamp()
}

/// `moment` in whole Unix seconds, rounded to the nearest: a whole second of wall time reached
/// through the monotonic clock lands a hair before or after it, and flooring would show
/// 05:02:59 for a day that ends at 05:03.
fn nearest_second(moment: SystemTime) -> i64 {
    OffsetDateTime::from(moment + std::time::Duration::from_millis(500)).unix_timestamp()
}

/// The state of a credential at a limit of its day.
fn day_limit_state(day: &DayStatus, until: i64) -> LiveState {
    let (limit, used, cap) = match (day.limits.requests, day.limits.tokens) {
        (Some(cap), _) if day.requests >= cap.get() => ("requests-per-day", day.requests, cap),
        (_, Some(cap)) => ("tokens-per-day", day.tokens, cap),
        (Some(cap), None) => ("requests-per-day", day.requests, cap),
        (None, None) => ("requests-per-day", day.requests, NonZeroU64::MIN),
    };
    LiveState::DayLimit {
        limit: limit.to_owned(),
        used,
        cap: cap.get(),
        until,
    }
}

/// What the servers running on `auth_dir` report of each credential, by pool key (the first
/// server's word on a credential wins). Servers that do not answer are skipped.
pub fn query(auth_dir: &Path) -> HashMap<String, LiveCredential> {
    let mut live: HashMap<String, LiveCredential> = HashMap::new();
    for path in sockets_in(&auth_dir.join(RUN_DIR)) {
        let Some(report) = read_report(&path) else {
            continue;
        };
        for credential in report.credentials {
            live.entry(credential.key.clone()).or_insert(credential);
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

#[cfg(test)]
mod tests {
    use super::nearest_second;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn a_moment_a_hair_off_its_second_shows_that_second() {
        let reset = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let just_before: SystemTime = reset - Duration::from_micros(40);
        let just_after = reset + Duration::from_micros(40);
        assert_eq!(nearest_second(just_before), 1_800_000_000);
        assert_eq!(nearest_second(just_after), 1_800_000_000);
        assert_eq!(
            nearest_second(reset + Duration::from_millis(600)),
            1_800_000_001
        );
    }
}
