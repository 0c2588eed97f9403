//! One Qwen OAuth account while the server runs: its current token, and the
//! refresh that renews it under the token-store lock and writes it back.
//!
//! Qwen rotates refresh tokens: once the token endpoint answered, the old refresh token is
//! dead and the new one exists only in that answer. So a refresh is never cancelled by the
//! request that asked for it (it runs in a task of its own, see [`Refreshes`]), and its new
//! tokens are adopted in memory before they are written: a write that fails (full disk,
//! `ulimit -f`, read-only file system) leaves the account serving with them, and the write is
//! retried until it lands.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use auth_core::OAuthClient;
use auth_core::qwen_base_url;
use credential_pool::{Access, AccessSource, BoxFuture, RefreshFailure};

use crate::single_flight::SingleFlight;
use account_store::{AccountLock, AccountStore, FileStamp, Location, StoreError, Stored};
use time::OffsetDateTime;
use token_store::{AccountKey, STATUS_RELOGIN_REQUIRED, TokenRecord};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Wait before the first retry of a token write that failed; it doubles with each failure.
const FIRST_SAVE_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries of a failed token write.
const MAX_SAVE_RETRY: Duration = Duration::from_secs(30);
/// How many refresh tokens an account remembers as rotated away (files holding one are stale).
const RETIRED_KEPT: usize = 8;

/// The refresh work of every account of one server: one flight per account, and the tasks
/// that run refreshes and retried writes, so that shutdown can wait for them.
pub struct Refreshes {
    flights: SingleFlight<AccountKey, Access, RefreshFailure>,
    tasks: TaskTracker,
    stopping: CancellationToken,
    outcomes: RefreshOutcomes,
}

/// How the refreshes of one server ended so far, counted once per refresh (not per waiting
/// caller): for metrics.
#[derive(Debug, Default)]
pub struct RefreshOutcomes {
    /// New tokens came (or another process had renewed the token already).
    pub succeeded: AtomicU64,
    /// The refresh token is dead: the account needs a new login.
    pub relogin_required: AtomicU64,
    /// A failure worth retrying (network, 5xx, the auth dir).
    pub failed: AtomicU64,
}

impl RefreshOutcomes {
    fn count(&self, result: &Result<Access, RefreshFailure>) {
        let counter = match result {
            Ok(_) => &self.succeeded,
            Err(RefreshFailure::ReloginRequired) => &self.relogin_required,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Refreshes {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            flights: SingleFlight::new(),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            outcomes: RefreshOutcomes::default(),
        })
    }

    /// How the refreshes ended so far.
    pub fn outcomes(&self) -> &RefreshOutcomes {
        &self.outcomes
    }

    /// Lets refreshes in flight finish and retried writes try once more, until `deadline`.
    /// Returns how many were still running then (they are abandoned with the runtime).
    pub async fn drain(&self, deadline: tokio::time::Instant) -> usize {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            return self.tasks.len();
        }
        0
    }
}

/// What the account knows now; replaced whole on every change.
struct Snapshot {
    access: Access,
    record: TokenRecord,
}

/// Why a refresh was asked for. Each reason says what the caller saw, so that after taking the
/// lock the refresh is skipped only when someone else already renewed that token.
#[derive(Debug, Clone)]
pub enum RefreshReason {
    /// The upstream rejected this access token (HTTP 401).
    Rejected(Arc<str>),
    /// The scheduler found the token due: this access token, expiring at `expires`.
    Due {
        access_token: Arc<str>,
        expires: OffsetDateTime,
    },
    /// Someone asked for a refresh now (the management API): renew this access token, unless
    /// another refresh renewed it already.
    Requested(Arc<str>),
}

/// Tokens held in memory that the token file does not have yet.
#[derive(Debug, Clone)]
struct Unsaved {
    /// The last write error, as shown by `accounts list`.
    reason: String,
    /// The refresh token the file still holds (dead: it was rotated away).
    on_disk: Option<String>,
}

pub struct QwenAccount {
    pub key: AccountKey,
    pub label: Arc<str>,
    /// Where the account is kept: its token file, or its row.
    pub location: Location,
    store: AccountStore,
    oauth: OAuthClient,
    refreshes: Arc<Refreshes>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The refresh token Qwen rejected (`Some(None)`: there was none). Kept in memory as well
    /// as in the file, so a dead token is never sent again even when marking the file failed.
    dead_refresh_token: Mutex<Option<Option<String>>>,
    /// Refresh tokens this server rotated away, newest last: a file that holds one is older
    /// than what the account holds in memory.
    retired: Mutex<VecDeque<String>>,
    /// Set while the newest tokens are only in memory; a task retries the write meanwhile.
    unsaved: Mutex<Option<Unsaved>>,
    /// Set once the "re-login required" warning was logged.
    relogin_reported: AtomicBool,
    /// The file as this server last wrote it.
    written: Mutex<Option<FileStamp>>,
    /// Wakes the refresh scheduler when the token changes.
    pub changed: tokio::sync::Notify,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl QwenAccount {
    pub fn new(
        stored: Stored,
        store: AccountStore,
        oauth: OAuthClient,
        refreshes: Arc<Refreshes>,
    ) -> Self {
        let key = stored.key;
        let label: Arc<str> = stored
            .record
            .email
            .clone()
            .unwrap_or_else(|| key.to_string())
            .into();
        Self {
            key,
            label,
            location: stored.location,
            store,
            oauth,
            refreshes,
            snapshot: RwLock::new(Arc::new(snapshot_of(stored.record))),
            dead_refresh_token: Mutex::new(None),
            retired: Mutex::new(VecDeque::new()),
            unsaved: Mutex::new(None),
            relogin_reported: AtomicBool::new(false),
            written: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Whether the account needs a new login: its file is marked, or Qwen rejected the refresh
    /// token it holds.
    pub fn needs_relogin(&self) -> bool {
        self.is_dead(&self.read_snapshot().record)
    }

    /// Refreshes the token now, in the refresh task (see [`QwenAccount::refresh_for`]): what
    /// an operator's "refresh now" does.
    pub async fn refresh_now(self: &Arc<Self>) -> Result<Access, RefreshFailure> {
        let current = self.current().bearer;
        self.refresh_for(RefreshReason::Requested(current)).await
    }

    /// When the access token expires, as the account holds it (`None`: the file does not say).
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.read_snapshot().record.expired
    }

    /// When the token was last refreshed, as the account holds it.
    pub fn last_refresh(&self) -> Option<OffsetDateTime> {
        self.read_snapshot().record.last_refresh
    }

    /// Whether the account was taken out of rotation on purpose (`cliproxy accounts disable`).
    pub fn is_disabled(&self) -> bool {
        self.read_snapshot().record.is_disabled()
    }

    /// Why the newest tokens are not in the token file yet, while they are not.
    pub fn unsaved_reason(&self) -> Option<String> {
        locked(&self.unsaved)
            .as_ref()
            .map(|unsaved| unsaved.reason.clone())
    }

    /// What the scheduler plans on: when the token expires (if known), and the refresh reason
    /// that names this token.
    pub fn due(&self) -> Option<(SystemTime, RefreshReason)> {
        let snapshot = self.read_snapshot();
        let expires = snapshot.record.expired?;
        let reason = RefreshReason::Due {
            access_token: Arc::clone(&snapshot.access.bearer),
            expires,
        };
        Some((SystemTime::from(expires), reason))
    }

    /// Takes `record` read from disk (another process refreshed or re-logged in), unless it is
    /// older than what the account holds: a file that still holds a refresh token this server
    /// rotated away (its own write has not landed yet, or a read raced with it). Returns
    /// whether anything that matters changed.
    pub fn take_from_disk(&self, record: TokenRecord) -> bool {
        if self.is_stale(&record) {
            return false;
        }
        let changed = self.differs_from(&record);
        if locked(&self.unsaved).take().is_some() {
            if changed {
                tracing::warn!(
                    account = %self.label,
                    "the token file was replaced (a new login?) while this server's newer tokens were not saved yet; using the file's"
                );
            } else {
                tracing::info!(account = %self.label, "the token file is up to date again");
            }
        }
        if changed {
            self.adopt(record);
        }
        changed
    }

    /// Whether the file at this account's path is, as `stamp` shows, the one this server
    /// wrote last.
    pub fn wrote(&self, stamp: &FileStamp) -> bool {
        *locked(&self.written) == Some(*stamp)
    }

    /// Refreshes the token once, however many callers ask at the same time. The refresh runs in
    /// a task of its own: dropping this future does not cancel it.
    pub async fn refresh_for(
        self: &Arc<Self>,
        reason: RefreshReason,
    ) -> Result<Access, RefreshFailure> {
        let account = Arc::clone(self);
        let task = self.refreshes.tasks.spawn(async move {
            let flights = &account.refreshes.flights;
            flights
                .run(account.key.clone(), || async {
                    let result = account.refresh_under_lock(reason).await;
                    account.refreshes.outcomes.count(&result);
                    result
                })
                .await
        });
        task.await.unwrap_or_else(|join| {
            Err(RefreshFailure::Transient(format!(
                "the refresh task ended abnormally: {join}"
            )))
        })
    }

    /// Takes the account lock, re-reads the file (another process may have
    /// refreshed it already), refreshes over HTTP, adopts the new tokens and writes them back.
    async fn refresh_under_lock(
        self: &Arc<Self>,
        reason: RefreshReason,
    ) -> Result<Access, RefreshFailure> {
        let (lock, on_disk) = self
            .lock_and_read()
            .await
            .map_err(|error| RefreshFailure::Transient(error.to_string()))?;
        let disk_refresh_token = on_disk.refresh_token.clone();
        let newest = self.newest(on_disk);

        if self.is_dead(&newest) {
            return Err(RefreshFailure::ReloginRequired);
        }
        if !still_needs_refresh(&newest, &reason) {
            return Ok(self.current());
        }
        let Some(refresh_token) = usable_refresh_token(&newest) else {
            self.record_relogin_required(lock, newest).await;
            return Err(RefreshFailure::ReloginRequired);
        };
        let tokens = match self.oauth.refresh(&refresh_token).await {
            Ok(tokens) => {
                tokens.merged_with_previous(&refresh_token, newest.resource_url.as_deref())
            }
            Err(error) if error.needs_relogin() => {
                self.record_relogin_required(lock, newest).await;
                return Err(RefreshFailure::ReloginRequired);
            }
            Err(error) => {
                tracing::warn!(account = %self.label, "token refresh failed: {error}");
                return Err(RefreshFailure::Transient(error.to_string()));
            }
        };
        // From here on the new tokens exist nowhere else: nothing may wait before they are in
        // memory, and nothing but the write itself before they are on disk.
        let answered = Instant::now();
        let now = OffsetDateTime::now_utc();
        let mut fresh = newest;
        fresh.access_token = tokens.access_token;
        fresh.refresh_token = tokens.refresh_token;
        fresh.token_type = Some(tokens.token_type);
        fresh.resource_url = tokens.resource_url;
        fresh.expired = tokens
            .expires_in
            .and_then(|life| now.checked_add(life.try_into().ok()?));
        fresh.last_refresh = Some(now);
        fresh.set_status(None);
        if fresh.refresh_token.as_deref() != Some(refresh_token.as_str()) {
            self.retire(refresh_token);
        }
        self.adopt(fresh.clone());
        match self.write_under(lock, fresh).await {
            Ok(saved) => {
                let saved_in = saved.saturating_duration_since(answered);
                let saved_in_us = u64::try_from(saved_in.as_micros()).unwrap_or(u64::MAX);
                tracing::info!(account = %self.label, saved_in_us, "refreshed the access token");
                if locked(&self.unsaved).take().is_some() {
                    tracing::info!(account = %self.label, "the token file is up to date again");
                }
            }
            Err(error) => self.keep_unsaved(error, disk_refresh_token),
        }
        Ok(self.current())
    }

    /// The newest version of the account: `on_disk`, taken as the account's state, or what the
    /// account holds in memory when the file is older (it holds a refresh token this server
    /// rotated away).
    fn newest(&self, on_disk: TokenRecord) -> TokenRecord {
        if self.is_stale(&on_disk) {
            return self.read_snapshot().record.clone();
        }
        self.take_from_disk(on_disk.clone());
        on_disk
    }

    /// Records that the newest tokens are only in memory, logs it with the fix, and starts
    /// retrying the write unless a retry is already running.
    fn keep_unsaved(self: &Arc<Self>, error: StoreError, disk_refresh_token: Option<String>) {
        let reason = error.to_string();
        tracing::error!(
            account = %self.label,
            "{reason} The server keeps serving with the new token and retries the write; until it lands, the file holds a dead refresh token (see \"Token not saved\" in docs/troubleshooting.md)"
        );
        let mut unsaved = locked(&self.unsaved);
        match unsaved.as_mut() {
            Some(pending) => pending.reason = reason,
            None => {
                *unsaved = Some(Unsaved {
                    reason,
                    on_disk: disk_refresh_token,
                });
                let account = Arc::clone(self);
                self.refreshes.tasks.spawn(account.retry_save());
            }
        }
    }

    /// Retries the write of the in-memory tokens, with doubling waits, until it lands or the
    /// file is replaced by a newer one; at shutdown, tries once more at once.
    async fn retry_save(self: Arc<Self>) {
        let mut wait = FIRST_SAVE_RETRY;
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(wait) => false,
                () = self.refreshes.stopping.cancelled() => true,
            };
            match self.save_now().await {
                Ok(()) => return,
                Err(reason) => {
                    if stopping {
                        tracing::error!(
                            account = %self.label,
                            "stopping with the account's new token not saved ({reason}): its token file holds a dead refresh token, so it will need `cliproxy login qwen` again"
                        );
                        return;
                    }
                    if let Some(unsaved) = locked(&self.unsaved).as_mut() {
                        unsaved.reason = reason;
                    }
                }
            }
            wait = (wait * 2).min(MAX_SAVE_RETRY);
        }
    }

    /// One try at writing the in-memory tokens under the lock. `Ok` once nothing is left to
    /// save: written, or the file was replaced or removed meanwhile.
    async fn save_now(&self) -> Result<(), String> {
        let (lock, on_disk) = match self.lock_and_read().await {
            Ok(read) => read,
            Err(error) if error.is_not_found() => {
                // Logged out meanwhile: nothing to keep.
                locked(&self.unsaved).take();
                return Ok(());
            }
            Err(error) => return Err(error.to_string()),
        };
        if !self.is_stale(&on_disk) {
            // Written after all, or replaced by a newer file (a new login): nothing to save.
            self.take_from_disk(on_disk);
            return Ok(());
        }
        let record = self.read_snapshot().record.clone();
        self.write_under(lock, record)
            .await
            .map_err(|error| error.to_string())?;
        if locked(&self.unsaved).take().is_some() {
            tracing::info!(account = %self.label, "saved the account's new token: the token file is up to date again");
        }
        Ok(())
    }

    /// Remembers that the refresh token of `record` is dead, marks the file so `accounts list`
    /// shows it, and logs it once.
    async fn record_relogin_required(&self, lock: AccountLock, mut record: TokenRecord) {
        *locked(&self.dead_refresh_token) = Some(usable_refresh_token(&record));
        let first = !self.relogin_reported.swap(true, Ordering::Relaxed);
        if first {
            tracing::warn!(
                account = %self.label,
                "the refresh token was rejected: this account left rotation until you run `cliproxy login qwen` for it again"
            );
        }
        record.set_status(Some(STATUS_RELOGIN_REQUIRED));
        // Known in memory first: the scheduler must not retry a dead token, whatever the write does.
        self.adopt(record.clone());
        if let Err(error) = self.write_under(lock, record).await
            && first
        {
            tracing::error!(
                account = %self.label,
                "{error} The account stays out of rotation, but until the file can be marked, `accounts list` and other servers do not show that it needs a new login."
            );
        }
    }

    /// Takes the account lock and re-reads the account under it (the store keeps blocking
    /// file work off the async threads).
    async fn lock_and_read(&self) -> Result<(AccountLock, TokenRecord), StoreError> {
        self.store.lock(&self.key, &self.location).await
    }

    /// Writes `record` under `lock`, remembers the file's stamp as this server's own write,
    /// and returns when the write was done (renamed and flushed, or committed), as the thread
    /// that wrote it saw it: the end of the window in which a kill loses the new tokens.
    async fn write_under(
        &self,
        lock: AccountLock,
        record: TokenRecord,
    ) -> Result<Instant, StoreError> {
        let written = lock.write(&record).await?;
        *locked(&self.written) = written.stamp;
        Ok(written.at)
    }

    /// Takes `record` as the account's current state and wakes the scheduler.
    fn adopt(&self, record: TokenRecord) {
        if !self.is_dead(&record) {
            self.relogin_reported.store(false, Ordering::Relaxed);
        }
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Arc::new(snapshot_of(record));
        self.changed.notify_one();
    }

    /// Whether `record` differs from what the account holds in anything that matters.
    fn differs_from(&self, record: &TokenRecord) -> bool {
        let current = &self.read_snapshot().record;
        current.access_token != record.access_token
            || current.refresh_token != record.refresh_token
            || current.expired != record.expired
            || current.resource_url != record.resource_url
            || current.status() != record.status()
            || current.is_disabled() != record.is_disabled()
    }

    /// Remembers that `refresh_token` was rotated away.
    fn retire(&self, refresh_token: String) {
        let mut retired = locked(&self.retired);
        if retired.len() == RETIRED_KEPT {
            retired.pop_front();
        }
        retired.push_back(refresh_token);
    }

    /// Whether `record` is older than what the account holds: it holds a refresh token this
    /// server rotated away.
    fn is_stale(&self, record: &TokenRecord) -> bool {
        let Some(token) = record.refresh_token.as_deref() else {
            return false;
        };
        let retired = locked(&self.retired);
        retired.iter().any(|old| old == token)
            || locked(&self.unsaved)
                .as_ref()
                .is_some_and(|unsaved| unsaved.on_disk.as_deref() == Some(token))
    }

    /// Whether `record` is marked, or holds the refresh token Qwen rejected.
    fn is_dead(&self, record: &TokenRecord) -> bool {
        record.status() == Some(STATUS_RELOGIN_REQUIRED)
            || locked(&self.dead_refresh_token)
                .as_ref()
                .is_some_and(|dead| *dead == usable_refresh_token(record))
    }

    fn read_snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .snapshot
                .read()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }
}

/// Whether the newest version of the account still holds the token the caller saw; if not,
/// someone else already renewed it.
fn still_needs_refresh(newest: &TokenRecord, reason: &RefreshReason) -> bool {
    match reason {
        RefreshReason::Rejected(stale) | RefreshReason::Requested(stale) => {
            newest.access_token.as_str() == &**stale
        }
        RefreshReason::Due {
            access_token,
            expires,
        } => newest.access_token.as_str() == &**access_token && newest.expired == Some(*expires),
    }
}

/// The refresh token of `record`, `None` when missing or empty.
fn usable_refresh_token(record: &TokenRecord) -> Option<String> {
    record
        .refresh_token
        .clone()
        .filter(|token| !token.is_empty())
}

impl AccessSource for QwenAccount {
    fn current(&self) -> Access {
        self.read_snapshot().access.clone()
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, Result<Access, RefreshFailure>> {
        let stale = self.current().bearer;
        Box::pin(async move { self.refresh_for(RefreshReason::Rejected(stale)).await })
    }
}

fn snapshot_of(record: TokenRecord) -> Snapshot {
    let access = Access {
        bearer: record.access_token.as_str().into(),
        base_url: qwen_base_url(record.resource_url.as_deref()).into(),
    };
    Snapshot { access, record }
}
