//! The set of live Qwen accounts, kept in step with the store (the auth dir or the shared
//! database): loading, adding, replacing and removing accounts in the pool, and each
//! account's refresh schedule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroU64};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use account_store::{AccountStore, FileStamp, Location, Problem, StoreError, Stored};
use auth_core::OAuthClient;
use credential_pool::{Credential, DailyLimits, Flavor, Models, Pool, Routing};
use token_store::AccountKey;

use crate::qwen_account::{QwenAccount, Refreshes};
use crate::reasons::{DISABLED_REASON, RELOGIN_REASON};
use crate::schedule;

/// How accounts enter the pool.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub models: Vec<String>,
    pub requests_per_minute: Option<NonZeroU32>,
    /// Each account's `requests-per-day` and `tokens-per-day`.
    pub daily: DailyLimits,
    pub refresh_lead: Duration,
    /// Routing and caps of single accounts, by lowercased email.
    pub overrides: HashMap<String, AccountOverride>,
}

/// How one account is routed, unlike the others (`[accounts."EMAIL"]`).
#[derive(Debug, Clone)]
pub struct AccountOverride {
    pub routing: Routing,
    /// Its own requests-per-minute cap (`Some(None)`: none) instead of the common one.
    pub requests_per_minute: Option<Option<NonZeroU32>>,
    /// Its own requests-per-day (`Some(None)`: no limit) instead of the common one.
    pub requests_per_day: Option<Option<NonZeroU64>>,
    /// Its own tokens-per-day (`Some(None)`: no limit) instead of the common one.
    pub tokens_per_day: Option<Option<NonZeroU64>>,
}

impl AccountSettings {
    /// The daily limits of the account whose override is `custom`.
    fn daily_limits(&self, custom: Option<&AccountOverride>) -> DailyLimits {
        DailyLimits {
            requests: custom
                .and_then(|custom| custom.requests_per_day)
                .unwrap_or(self.daily.requests),
            tokens: custom
                .and_then(|custom| custom.tokens_per_day)
                .unwrap_or(self.daily.tokens),
        }
    }
}

struct Live {
    account: Arc<QwenAccount>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

/// Every account loaded from the store.
pub struct Accounts {
    store: AccountStore,
    oauth: OAuthClient,
    pool: Arc<Pool<Credential>>,
    settings: AccountSettings,
    refreshes: Arc<Refreshes>,
    live: Mutex<HashMap<AccountKey, Live>>,
    /// Bad files (or rows) already reported, so each is logged once until it changes.
    reported: Mutex<HashSet<(String, String)>>,
}

/// What one pass over the store changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

impl Accounts {
    pub fn new(
        store: AccountStore,
        oauth: OAuthClient,
        pool: Arc<Pool<Credential>>,
        settings: AccountSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            oauth,
            pool,
            settings,
            refreshes: Refreshes::new(),
            live: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashSet::new()),
        })
    }

    pub fn store(&self) -> &AccountStore {
        &self.store
    }

    /// Reads the whole store and brings the pool in line with it. Must run inside the Tokio
    /// runtime (it starts refresh schedulers).
    pub async fn reconcile(self: &Arc<Self>) -> Result<Reconciled, StoreError> {
        let listing = self.store.list().await?;
        let disabled_keys = self.store.disabled_credentials().await?;
        self.report_problems(&listing.problems);
        for path in &listing.tightened {
            tracing::warn!(file = %path.display(), "token file was readable by others; tightened it to 0600");
        }
        let mut seen: BTreeMap<AccountKey, Stored> = BTreeMap::new();
        for stored in listing.accounts {
            if stored.record.provider == token_store::QWEN {
                seen.insert(stored.key.clone(), stored);
            }
        }
        self.apply_disabled_keys(&disabled_keys);
        let mut changes = Reconciled::default();
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        live.retain(|key, _| {
            let keep = seen.contains_key(key);
            if !keep {
                self.pool.remove(key.as_str());
                tracing::info!(account = %key, "{}", removed_message(&self.store));
                changes.removed += 1;
            }
            keep
        });
        for (key, stored) in seen {
            self.take(&mut live, key, stored, &mut changes);
        }
        Ok(changes)
    }

    /// Re-reads one account (another server changed it) and brings the pool in line with it:
    /// takes its new tokens or state, adds it, or removes it when it is gone.
    pub async fn reload(self: &Arc<Self>, key: &AccountKey) -> Result<Reconciled, StoreError> {
        let current = match &self.store {
            AccountStore::Postgres(pg) => pg.load(key).await?,
            AccountStore::Dir(_) => return self.reconcile().await,
        };
        let mut changes = Reconciled::default();
        let mut live = self.lock_live();
        match current {
            Some(stored) if stored.record.provider == token_store::QWEN => {
                self.take(&mut live, key.clone(), stored, &mut changes);
            }
            _ => {
                if live.remove(key).is_some() {
                    self.pool.remove(key.as_str());
                    tracing::info!(account = %key, "{}", removed_message(&self.store));
                    changes.removed += 1;
                }
            }
        }
        Ok(changes)
    }

    /// Re-reads the disabled API keys (another server changed them).
    pub async fn reload_disabled_keys(&self) -> Result<(), StoreError> {
        let disabled = self.store.disabled_credentials().await?;
        self.apply_disabled_keys(&disabled);
        Ok(())
    }

    /// Brings one account of the store into the pool: updates the live one, or starts it.
    fn take(
        self: &Arc<Self>,
        live: &mut HashMap<AccountKey, Live>,
        key: AccountKey,
        stored: Stored,
        changes: &mut Reconciled,
    ) {
        match live.get(&key) {
            Some(existing) if existing.account.location == stored.location => {
                if existing.account.take_from_disk(stored.record) {
                    self.apply_status(&existing.account);
                    changes.updated += 1;
                }
            }
            Some(_) => {
                live.insert(key, self.start(stored));
                changes.updated += 1;
            }
            None => {
                let started = self.start(stored);
                tracing::info!(account = %started.account.label, "account added");
                live.insert(key, started);
                changes.added += 1;
            }
        }
    }

    /// Whether the file at `path` is exactly as this server last wrote it (a refresh's
    /// write-back), so re-reading it would change nothing.
    pub fn is_own_write(&self, path: &Path) -> bool {
        let Some(stamp) = FileStamp::of(path) else {
            return false;
        };
        let location = Location::File(path.to_owned());
        self.lock_live()
            .values()
            .any(|live| live.account.location == location && live.account.wrote(&stamp))
    }

    /// Stops every refresh schedule, then lets refreshes in flight finish and unsaved tokens be
    /// written, until `deadline`. Refreshes already started are never cut short by this server
    /// before then: their answers have rotated the account's refresh token.
    pub async fn stop(&self, deadline: tokio::time::Instant) {
        for live in self.lock_live().values() {
            live.scheduler.abort();
        }
        let left = self.refreshes.drain(deadline).await;
        if left > 0 {
            tracing::warn!(
                left,
                "token refreshes or saves still running when the shutdown grace period ended; stopping anyway"
            );
        }
    }

    /// Every live account, for status reports.
    pub fn accounts(&self) -> Vec<Arc<QwenAccount>> {
        self.lock_live()
            .values()
            .map(|live| Arc::clone(&live.account))
            .collect()
    }

    /// The live account with pool key `key`.
    pub fn account(&self, key: &str) -> Option<Arc<QwenAccount>> {
        self.lock_live()
            .iter()
            .find(|(live_key, _)| live_key.as_str() == key)
            .map(|(_, live)| Arc::clone(&live.account))
    }

    /// How this server's refreshes ended so far.
    pub fn refresh_outcomes(&self) -> &crate::RefreshOutcomes {
        self.refreshes.outcomes()
    }

    /// When an account's token is refreshed next, by the schedule: `refresh-lead` before it
    /// expires (`None`: its expiry is unknown).
    pub fn next_refresh(&self, account: &QwenAccount) -> Option<std::time::SystemTime> {
        let (expires, _) = account.due()?;
        Some(
            expires
                .checked_sub(self.settings.refresh_lead)
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH),
        )
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<AccountKey, Live>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many accounts are live.
    pub fn len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Whether no account is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn start(self: &Arc<Self>, stored: Stored) -> Live {
        let account = Arc::new(QwenAccount::new(
            stored,
            self.store.clone(),
            self.oauth.clone(),
            Arc::clone(&self.refreshes),
        ));
        let custom = self.settings.overrides.get(&account.label.to_lowercase());
        self.pool.upsert(
            account.key.as_str(),
            Arc::new(account_credential(&account)),
            Models::Only(self.settings.models.clone()),
            custom
                .and_then(|custom| custom.requests_per_minute)
                .unwrap_or(self.settings.requests_per_minute),
        );
        if let Some(custom) = custom {
            self.pool
                .set_routing(account.key.as_str(), custom.routing.clone());
        }
        self.pool
            .set_daily_limits(account.key.as_str(), self.settings.daily_limits(custom));
        self.apply_status(&account);
        let scheduler = tokio::spawn(schedule::run(
            Arc::clone(&account),
            Arc::clone(&self.pool),
            self.settings.refresh_lead,
            auth_core::TokioClock::new(),
        ));
        Live { account, scheduler }
    }

    fn apply_status(&self, account: &QwenAccount) {
        let reason = if account.needs_relogin() {
            Some(RELOGIN_REASON.to_owned())
        } else if account.is_disabled() {
            Some(DISABLED_REASON.to_owned())
        } else {
            None
        };
        let key = account.key.as_str();
        let by_operator = |reason: Option<&str>| reason == Some(DISABLED_REASON);
        let was = by_operator(self.pool.disabled_reason(key).as_deref());
        let is = by_operator(reason.as_deref());
        self.pool.set_disabled(key, reason);
        if was && !is {
            // The operator asks for it back: it is tried again, not left to the prober.
            self.pool.clear_refusal(key);
        }
        if was != is {
            tracing::info!(
                account = %account.label,
                "{}",
                if is { "taken out of rotation (`cliproxy accounts disable`)" } else { "back in rotation (`cliproxy accounts enable`)" }
            );
        }
    }

    /// Takes the API keys listed as disabled in the store (the auth dir's
    /// `disabled-credentials`) out of rotation, and puts the others back.
    fn apply_disabled_keys(&self, disabled: &std::collections::BTreeSet<String>) {
        for (status, credential) in self.pool.snapshot(std::time::Instant::now()) {
            if !matches!(credential.flavor, Flavor::OpenAiCompatible(_)) {
                continue;
            }
            let listed = disabled.contains(&*credential.label);
            if listed != status.disabled.is_some() {
                self.pool
                    .set_disabled(&status.key, listed.then(|| DISABLED_REASON.to_owned()));
                if !listed {
                    self.pool.clear_refusal(&status.key);
                }
                tracing::info!(
                    credential = %credential.label,
                    "{}",
                    if listed { "taken out of rotation (`cliproxy accounts disable`)" } else { "back in rotation (`cliproxy accounts enable`)" }
                );
            }
        }
    }

    fn report_problems(&self, problems: &[Problem]) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let current: HashSet<(String, String)> = problems
            .iter()
            .map(|bad| (bad.name.clone(), bad.reason.clone()))
            .collect();
        for problem in problems {
            let entry = (problem.name.clone(), problem.reason.clone());
            if !reported.contains(&entry) {
                match self.store {
                    AccountStore::Dir(_) => tracing::warn!(
                        "skipped token file {problem}; fix or remove it (see docs/troubleshooting.md)"
                    ),
                    AccountStore::Postgres(_) => {
                        tracing::warn!("skipped account {problem} (see docs/troubleshooting.md)")
                    }
                }
            }
        }
        *reported = current;
    }
}

/// What the log says when an account left the store.
fn removed_message(store: &AccountStore) -> &'static str {
    match store {
        AccountStore::Dir(_) => "account file removed; account left rotation",
        AccountStore::Postgres(_) => "account removed from the store; account left rotation",
    }
}

/// The pool's view of a Qwen account.
pub fn account_credential(account: &Arc<QwenAccount>) -> Credential {
    Credential {
        label: Arc::clone(&account.label),
        flavor: Flavor::QwenOAuth,
        access: Arc::clone(account) as Arc<dyn credential_pool::AccessSource>,
    }
}
