//! One Qwen OAuth account while the server runs: its current token, and the
//! refresh that renews it under the token-store lock and writes it back.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use auth_core::OAuthClient;
use credential_pool::SingleFlight;
use proxy_server::{Access, AccessSource, BoxFuture, RefreshFailure, qwen_base_url};
use time::OffsetDateTime;
use token_store::{AccountKey, AuthDir, STATUS_RELOGIN_REQUIRED, StoredAccount, TokenRecord};

/// Refreshes in flight, one per account key, shared by every account.
pub type Flights = SingleFlight<AccountKey, Access, RefreshFailure>;

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
}

/// Identifies one version of a file on disk (inode, size, mtime), to recognise the server's
/// own writes when the dir watch reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    /// The stamp of the file at `path` now, if it exists.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

pub struct QwenAccount {
    pub key: AccountKey,
    pub label: Arc<str>,
    pub path: PathBuf,
    store: AuthDir,
    oauth: OAuthClient,
    flights: Arc<Flights>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The refresh token Qwen rejected (`Some(None)`: there was none). Kept in memory as well
    /// as in the file, so a dead token is never sent again even when marking the file failed.
    dead_refresh_token: Mutex<Option<Option<String>>>,
    /// Set once the "re-login required" warning was logged.
    relogin_reported: AtomicBool,
    /// The file as this server last wrote it.
    written: Mutex<Option<FileStamp>>,
    /// Wakes the refresh scheduler when the token changes.
    pub changed: tokio::sync::Notify,
}

impl QwenAccount {
    pub fn new(
        stored: StoredAccount,
        store: AuthDir,
        oauth: OAuthClient,
        flights: Arc<Flights>,
    ) -> Self {
        let key = stored.key();
        let label: Arc<str> = stored
            .record
            .email
            .clone()
            .unwrap_or_else(|| key.to_string())
            .into();
        Self {
            key,
            label,
            path: stored.path,
            store,
            oauth,
            flights,
            snapshot: RwLock::new(Arc::new(snapshot_of(stored.record))),
            dead_refresh_token: Mutex::new(None),
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

    /// Takes a record read from disk (another process refreshed or re-logged in).
    pub fn adopt(&self, record: TokenRecord) {
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
    pub fn differs_from(&self, record: &TokenRecord) -> bool {
        let current = &self.read_snapshot().record;
        current.access_token != record.access_token
            || current.refresh_token != record.refresh_token
            || current.expired != record.expired
            || current.resource_url != record.resource_url
            || current.status() != record.status()
    }

    /// Whether the file at this account's path is, as `stamp` shows, the one this server
    /// wrote last.
    pub fn wrote(&self, stamp: &FileStamp) -> bool {
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) == Some(*stamp)
    }

    /// Refreshes the token once, however many callers ask at the same time.
    pub async fn refresh_for(&self, reason: RefreshReason) -> Result<Access, RefreshFailure> {
        let flights = Arc::clone(&self.flights);
        flights
            .run(self.key.clone(), || self.refresh_under_lock(reason))
            .await
    }

    /// Takes the account lock, re-reads the file (another process may have
    /// refreshed it already), refreshes over HTTP and writes the result back.
    async fn refresh_under_lock(&self, reason: RefreshReason) -> Result<Access, RefreshFailure> {
        let store = self.store.clone();
        let key = self.key.clone();
        let path = self.path.clone();
        let (lock, on_disk) = tokio::task::spawn_blocking(move || {
            let lock = store.lock_account(&key)?;
            let record = lock.read(&path)?;
            Ok::<_, token_store::StoreError>((lock, record))
        })
        .await
        .map_err(|join| RefreshFailure::Transient(join.to_string()))?
        .map_err(|error| RefreshFailure::Transient(error.to_string()))?;

        if self.is_dead(&on_disk) {
            self.adopt(on_disk);
            return Err(RefreshFailure::ReloginRequired);
        }
        if !still_needs_refresh(&on_disk, &reason) {
            self.adopt(on_disk);
            return Ok(self.current());
        }
        let Some(refresh_token) = on_disk.refresh_token.clone().filter(|t| !t.is_empty()) else {
            self.record_relogin_required(lock, on_disk).await;
            return Err(RefreshFailure::ReloginRequired);
        };
        let tokens = match self.oauth.refresh(&refresh_token).await {
            Ok(tokens) => {
                tokens.merged_with_previous(&refresh_token, on_disk.resource_url.as_deref())
            }
            Err(error) if error.needs_relogin() => {
                self.record_relogin_required(lock, on_disk).await;
                return Err(RefreshFailure::ReloginRequired);
            }
            Err(error) => {
                tracing::warn!(account = %self.label, "token refresh failed: {error}");
                return Err(RefreshFailure::Transient(error.to_string()));
            }
        };
        let now = OffsetDateTime::now_utc();
        let mut fresh = on_disk;
        fresh.access_token = tokens.access_token;
        fresh.refresh_token = tokens.refresh_token;
        fresh.token_type = Some(tokens.token_type);
        fresh.resource_url = tokens.resource_url;
        fresh.expired = tokens.expires_in.map(|life| now + life);
        fresh.last_refresh = Some(now);
        fresh.set_status(None);
        let written = self.write_under(lock, fresh).await.map_err(|error| {
            tracing::error!(account = %self.label, "{error}");
            RefreshFailure::Transient(error)
        })?;
        tracing::info!(account = %self.label, "refreshed the access token");
        self.adopt(written);
        Ok(self.current())
    }

    /// Remembers that the refresh token of `record` is dead, marks the file so `accounts list`
    /// shows it, and logs it once.
    async fn record_relogin_required(
        &self,
        lock: token_store::AccountLock,
        mut record: TokenRecord,
    ) {
        *self
            .dead_refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(usable_refresh_token(&record));
        let first = !self.relogin_reported.swap(true, Ordering::Relaxed);
        if first {
            tracing::warn!(
                account = %self.label,
                "the refresh token was rejected: this account left rotation until you run `cliproxy login qwen` for it again"
            );
        }
        record.set_status(Some(STATUS_RELOGIN_REQUIRED));
        match self.write_under(lock, record.clone()).await {
            Ok(written) => self.adopt(written),
            Err(error) => {
                if first {
                    tracing::error!(
                        account = %self.label,
                        "{error} The account stays out of rotation, but until the file can be marked, `accounts list` and other servers do not show that it needs a new login."
                    );
                }
                // Not on disk, but this server knows: the scheduler must not retry a dead token.
                self.adopt(record);
            }
        }
    }

    /// Writes `record` under `lock` and remembers the file's stamp as this server's own write.
    async fn write_under(
        &self,
        lock: token_store::AccountLock,
        record: TokenRecord,
    ) -> Result<TokenRecord, String> {
        let path = self.path.clone();
        let (record, stamp) = tokio::task::spawn_blocking(move || {
            lock.write(&path, &record)?;
            // Taken while the lock is held, so no other cliproxy writer can come in between.
            let stamp = FileStamp::of(&path);
            Ok::<_, token_store::StoreError>((record, stamp))
        })
        .await
        .map_err(|join| format!("writing {} failed: {join}", self.path.display()))?
        .map_err(|error| error.to_string())?;
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(record)
    }

    /// Whether `record` is marked, or holds the refresh token Qwen rejected.
    fn is_dead(&self, record: &TokenRecord) -> bool {
        record.status() == Some(STATUS_RELOGIN_REQUIRED)
            || self
                .dead_refresh_token
                .lock()
                .unwrap_or_else(|p| p.into_inner())
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

/// Whether the file read under the lock still holds the token the caller saw; if not, someone
/// else already renewed it.
fn still_needs_refresh(on_disk: &TokenRecord, reason: &RefreshReason) -> bool {
    match reason {
        RefreshReason::Rejected(stale) => on_disk.access_token.as_str() == &**stale,
        RefreshReason::Due {
            access_token,
            expires,
        } => on_disk.access_token.as_str() == &**access_token && on_disk.expired == Some(*expires),
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

    fn refresh(&self) -> BoxFuture<'_, Result<Access, RefreshFailure>> {
        let stale = self.current().bearer;
        Box::pin(self.refresh_for(RefreshReason::Rejected(stale)))
    }
}

fn snapshot_of(record: TokenRecord) -> Snapshot {
    let access = Access {
        bearer: record.access_token.as_str().into(),
        base_url: qwen_base_url(record.resource_url.as_deref()).into(),
    };
    Snapshot { access, record }
}
