//! One Qwen OAuth account while the server runs: its current token, and the
//! refresh that renews it under the token-store lock and writes it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

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

/// Why a refresh was asked for.
#[derive(Debug, Clone)]
pub enum RefreshReason {
    /// The upstream rejected this access token (HTTP 401).
    Rejected(Arc<str>),
    /// The token expires within the refresh lead.
    Expiring,
}

pub struct QwenAccount {
    pub key: AccountKey,
    pub label: Arc<str>,
    pub path: std::path::PathBuf,
    store: AuthDir,
    oauth: OAuthClient,
    flights: Arc<Flights>,
    refresh_lead: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Set once the "re-login required" warning was logged.
    relogin_reported: AtomicBool,
    /// Wakes the refresh scheduler when the token changes.
    pub changed: tokio::sync::Notify,
}

impl QwenAccount {
    pub fn new(
        stored: StoredAccount,
        store: AuthDir,
        oauth: OAuthClient,
        flights: Arc<Flights>,
        refresh_lead: Duration,
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
            refresh_lead,
            snapshot: RwLock::new(Arc::new(snapshot_of(stored.record))),
            relogin_reported: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }

    pub fn needs_relogin(&self) -> bool {
        self.read_snapshot().record.status() == Some(STATUS_RELOGIN_REQUIRED)
    }

    /// When the access token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.read_snapshot().record.expired.map(SystemTime::from)
    }

    /// Takes a record read from disk (another process refreshed or re-logged in).
    pub fn adopt(&self, record: TokenRecord) {
        if record.status() != Some(STATUS_RELOGIN_REQUIRED) {
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

        if on_disk.status() == Some(STATUS_RELOGIN_REQUIRED) {
            self.adopt(on_disk);
            return Err(RefreshFailure::ReloginRequired);
        }
        if !self.still_needs_refresh(&on_disk, &reason) {
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
        let written = self.write_under(lock, fresh).await?;
        tracing::info!(account = %self.label, "refreshed the access token");
        self.adopt(written);
        Ok(self.current())
    }

    fn still_needs_refresh(&self, on_disk: &TokenRecord, reason: &RefreshReason) -> bool {
        match reason {
            RefreshReason::Rejected(stale) => on_disk.access_token.as_str() == &**stale,
            RefreshReason::Expiring => {
                let horizon = OffsetDateTime::now_utc() + self.refresh_lead;
                on_disk.expired.is_none_or(|expires| expires <= horizon)
            }
        }
    }

    /// Marks the file so `accounts list` shows it and logs it once.
    async fn record_relogin_required(
        &self,
        lock: token_store::AccountLock,
        mut record: TokenRecord,
    ) {
        if !self.relogin_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                account = %self.label,
                "the refresh token was rejected: this account left rotation until you run `cliproxy login qwen` for it again"
            );
        }
        record.set_status(Some(STATUS_RELOGIN_REQUIRED));
        match self.write_under(lock, record).await {
            Ok(written) => self.adopt(written),
            Err(error) => tracing::warn!(account = %self.label, "{error}"),
        }
    }

    async fn write_under(
        &self,
        lock: token_store::AccountLock,
        record: TokenRecord,
    ) -> Result<TokenRecord, RefreshFailure> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || lock.write(&path, &record).map(|()| record))
            .await
            .map_err(|join| RefreshFailure::Transient(join.to_string()))?
            .map_err(|error| {
                tracing::error!("{error}");
                RefreshFailure::Transient(error.to_string())
            })
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
