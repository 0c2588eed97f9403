//! What happens to cliproxy while the clients run: access tokens the fake
//! expires (the next request gets a 401 and the server must refresh), 401
//! storms (every account at once) with a burst of clients that hang up
//! during the refreshes, quota errors, and hot reloads of the auth dir (a
//! `cliproxy login` of a new account and of an existing one, `cliproxy
//! logout`, and a token file dropped in by another tool).
//!
//! Each kind of event has its own period; they run one after the other
//! from one task, and the first failure of each kind is kept for the report.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    accounts::{self, Accounts},
    traffic::Clients,
};
use crate::bench::{
    cliproxy::{self, Layout},
    fake_qwen::FakeProcess,
};

/// Every this often, the newest access token of [`EXPIRE_SHARE`] of the accounts expires.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
const EXPIRE_SHARE: f64 = 0.1;
/// Every this often, [`QUOTA_SHARE`] of the accounts get [`QUOTA_ANSWERS`] quota errors.
const QUOTA_EVERY: Duration = Duration::from_secs(7);
const QUOTA_SHARE: f64 = 0.1;
const QUOTA_ANSWERS: u64 = 2;
/// The first 401 storm (every account's access token expires at once) and the period after it.
const STORM_FIRST: Duration = Duration::from_secs(25);
const STORM_EVERY: Duration = Duration::from_secs(60);
/// Clients that hang up early sent right after a storm: one per this many accounts, at least 4.
const STORM_CLIENTS_PER_ACCOUNTS: usize = 4;
/// Every this often, one hot reload of the auth dir ([`RELOADS`], in turn).
const RELOAD_FIRST: Duration = Duration::from_secs(5);
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// Every this often, the fake drops the requests it recorded.
const FORGET_EVERY: Duration = Duration::from_secs(30);
/// Longest time one `cliproxy login` or `logout` may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// `CLIPROXY_POLL_TIME_SCALE` of the logins: the fake's 600 s device code
/// lasts 6 s, its poll interval 50 ms.
const POLL_TIME_SCALE: &str = "0.01";

/// The hot reloads, in the order they take turns: as many accounts come as go.
const RELOADS: [Reload; 6] = [
    Reload::LoginNew,
    Reload::Relogin,
    Reload::Logout,
    Reload::DropIn,
    Reload::Logout,
    Reload::Relogin,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    /// `cliproxy login` of a new account.
    LoginNew,
    /// `cliproxy login` of an account that is already there: its file is replaced.
    Relogin,
    /// `cliproxy logout` of the oldest account.
    Logout,
    /// A new account's token file written into the auth dir by another tool.
    DropIn,
}

/// What was injected, and what failed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChaosLog {
    /// Access tokens expired, outside storms.
    pub(crate) expired: u64,
    /// 401 storms, and the access tokens they expired.
    pub(crate) storms: u64,
    pub(crate) storm_expired: u64,
    /// Clients that hung up early, sent right after storms.
    pub(crate) storm_clients: u64,
    /// Access tokens scripted to get quota errors.
    pub(crate) quota_scripted: u64,
    pub(crate) logins: u64,
    pub(crate) relogins: u64,
    pub(crate) logouts: u64,
    pub(crate) drop_ins: u64,
    /// Hot reloads or fake controls that failed (the first of each kind).
    pub(crate) failures: Vec<String>,
    pub(crate) failed: u64,
}

/// What the events act on.
pub(crate) struct Chaos<'a> {
    pub(crate) fake: &'a FakeProcess,
    pub(crate) clients: Clients,
    pub(crate) binary: &'a Path,
    pub(crate) layout: &'a Layout,
    pub(crate) accounts: Accounts,
    /// Life of the access tokens in dropped-in files.
    pub(crate) token_life: Duration,
}

impl Chaos<'_> {
    /// Runs the events from `start` until `until`, or until `stop` turns
    /// true; returns the log and the accounts.
    pub(crate) async fn run(
        mut self,
        start: Instant,
        until: Instant,
        mut stop: watch::Receiver<bool>,
    ) -> (ChaosLog, Accounts) {
        let mut log = ChaosLog::default();
        let mut bursts: Vec<JoinHandle<()>> = Vec::new();
        let mut next = [
            start + EXPIRE_EVERY,
            start + QUOTA_EVERY,
            start + STORM_FIRST,
            start + RELOAD_FIRST,
            start + FORGET_EVERY,
        ];
        let periods = [
            EXPIRE_EVERY,
            QUOTA_EVERY,
            STORM_EVERY,
            RELOAD_EVERY,
            FORGET_EVERY,
        ];
        let mut reloads = RELOADS.iter().cycle();
        let mut new_accounts = 0_usize;
        let mut relogin_turn = 0_usize;
        loop {
            let (which, at) = next
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|&(_, at)| at)
                .expect("there are events");
            if at >= until {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                // An error means the sender is gone: nobody can stop the run any more.
                Ok(_) = stop.wait_for(|stop| *stop) => break,
            }
            next[which] += periods[which];
            let result = match which {
                0 => self.fake.expire(EXPIRE_SHARE).await.map(|n| {
                    log.expired += n;
                }),
                1 => self
                    .fake
                    .quota(QUOTA_SHARE, QUOTA_ANSWERS)
                    .await
                    .map(|n| log.quota_scripted += n),
                2 => match self.fake.expire(1.0).await {
                    Ok(n) => {
                        log.storms += 1;
                        log.storm_expired += n;
                        let count =
                            (self.accounts.active().len() / STORM_CLIENTS_PER_ACCOUNTS).max(4);
                        log.storm_clients += count as u64;
                        let seed = seed_now() ^ log.storms;
                        bursts.push(tokio::spawn(
                            self.clients.clone().impatient_burst(count, seed),
                        ));
                        Ok(())
                    }
                    Err(error) => Err(error),
                },
                3 => {
                    let reload = *reloads.next().expect("the cycle never ends");
                    self.reload(reload, &mut log, &mut new_accounts, &mut relogin_turn)
                        .await
                        .with_context(|| format!("{reload:?}"))
                }
                _ => self.fake.forget().await,
            };
            if let Err(error) = result {
                log.failed += 1;
                let message = format!("{error:#}");
                let kind = message.split(':').next().unwrap_or_default().to_owned();
                if !log.failures.iter().any(|f| f.starts_with(&kind)) {
                    log.failures.push(message);
                }
            }
        }
        for burst in bursts {
            let _ = burst.await;
        }
        (log, self.accounts)
    }

    async fn reload(
        &mut self,
        reload: Reload,
        log: &mut ChaosLog,
        new_accounts: &mut usize,
        relogin_turn: &mut usize,
    ) -> Result<()> {
        match reload {
            Reload::LoginNew => {
                *new_accounts += 1;
                let email = format!("soak-login-{new_accounts}@example.com");
                self.login(&email).await?;
                log.logins += 1;
            }
            Reload::Relogin => {
                let active = self.accounts.active();
                if active.is_empty() {
                    return Ok(());
                }
                // Not the oldest while there are others: it is the next to be logged out.
                *relogin_turn += 1;
                let index = match active.len() {
                    1 => 0,
                    n => 1 + *relogin_turn % (n - 1),
                };
                let email = active[index].to_owned();
                self.login(&email).await?;
                log.relogins += 1;
            }
            Reload::Logout => {
                let active = self.accounts.active();
                if active.len() <= 1 {
                    return Ok(());
                }
                let email = active[0].to_owned();
                self.cli(&["logout", &email]).await?;
                self.accounts.logged_out(&email);
                log.logouts += 1;
            }
            Reload::DropIn => {
                *new_accounts += 1;
                let email = format!("soak-drop-in-{new_accounts}@example.com");
                let pair = self.fake.mint().await?;
                let now = unix_now();
                cliproxy::write_token_file(
                    &self.layout.auth_dir,
                    &email,
                    &pair,
                    &self.fake.chat_base_url,
                    now,
                    now + self.token_life.as_secs(),
                )?;
                self.accounts.logged_in(&email, pair.refresh_token);
                log.drop_ins += 1;
            }
        }
        Ok(())
    }

    /// `cliproxy login qwen --no-browser --email EMAIL` against the fake,
    /// then records the refresh token it saved.
    async fn login(&mut self, email: &str) -> Result<()> {
        self.cli(&["login", "qwen", "--no-browser", "--email", email])
            .await?;
        let files = accounts::scan(&self.layout.auth_dir)?;
        let token = accounts::refresh_token_of(&files, email)
            .with_context(|| format!("no token file for {email} after its login"))?;
        self.accounts.logged_in(email, token);
        Ok(())
    }

    /// Runs the cliproxy binary with `args`, the soak's config and the fake as OAuth server.
    async fn cli(&self, args: &[&str]) -> Result<()> {
        let mut command =
            tokio::process::Command::from(cliproxy::command(self.binary, self.layout));
        command
            .args(args)
            .env("CLIPROXY_QWEN_OAUTH_BASE_URL", &self.fake.oauth_base_url)
            .env("CLIPROXY_POLL_TIME_SCALE", POLL_TIME_SCALE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
            .await
            .with_context(|| format!("cliproxy {} took over {CLI_TIMEOUT:?}", args[0]))?
            .with_context(|| format!("cannot run cliproxy {}", args[0]))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or_default();
            bail!("cliproxy {} failed ({}): {last}", args[0], output.status);
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A seed from the clock.
pub(crate) fn seed_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
