//! The credentials as the management API shows them, and what it does to them: disable,
//! enable, remove, refresh now.
//!
//! Disable, enable and remove change the account store exactly as `cliproxy accounts
//! disable|enable` and `cliproxy logout` do (account-store: the auth dir or PostgreSQL), then
//! reconcile the pool with it at once (the dir watch or the change feed would within a
//! second), so the answer shows the new state. A refresh
//! runs in the account runtime's refresh task: dropping the request does not cancel it.

use std::sync::Arc;
use std::time::SystemTime;

use account_runtime::status::{CredentialKind, LiveCredential, live_credentials};
use account_runtime::{Accounts, QwenAccount};
use credential_pool::{Credential, Pool, RefreshFailure};
use serde::Serialize;
use time::OffsetDateTime;

/// A credential with what the account runtime knows of its token. Times are Unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    #[serde(flatten)]
    pub live: LiveCredential,
    /// When the access token expires (Qwen accounts whose file says).
    pub token_expires_at: Option<i64>,
    /// When the schedule refreshes it next: `refresh-lead` before expiry, up to 5 min earlier
    /// by jitter.
    pub next_refresh_at: Option<i64>,
    /// When it was last refreshed.
    pub last_refresh_at: Option<i64>,
}

fn unix(at: SystemTime) -> i64 {
    OffsetDateTime::from(at).unix_timestamp()
}

/// Every credential, in the pool's order.
pub fn list(accounts: &Accounts, pool: &Pool<Credential>) -> Vec<CredentialView> {
    live_credentials(accounts, pool)
        .into_iter()
        .map(|live| {
            let account = (live.kind == CredentialKind::QwenOauth)
                .then(|| accounts.account(&live.key))
                .flatten();
            CredentialView {
                token_expires_at: account
                    .as_ref()
                    .and_then(|a| a.expires_at())
                    .map(OffsetDateTime::unix_timestamp),
                next_refresh_at: account
                    .as_ref()
                    .and_then(|a| accounts.next_refresh(a))
                    .map(unix),
                last_refresh_at: account
                    .as_ref()
                    .and_then(|a| a.last_refresh())
                    .map(OffsetDateTime::unix_timestamp),
                live,
            }
        })
        .collect()
}

/// The credential `id` names: its pool key or its label (an email, `name#n`).
pub fn find(accounts: &Accounts, pool: &Pool<Credential>, id: &str) -> Option<LiveCredential> {
    live_credentials(accounts, pool)
        .into_iter()
        .find(|live| live.key == id || live.label == id)
}

/// Why an action on a credential failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no credential {0:?}; GET /v0/management/credentials lists them")]
    NotFound(String),
    #[error(
        "{0} is an API key from the config: remove it from [[openai-compat]] and restart, or disable it"
    )]
    FromConfig(String),
    #[error("{0} is an API key: it has no token to refresh")]
    NotRefreshable(String),
    #[error("the account store could not be changed: {0}")]
    Store(#[from] account_store::StoreError),
    #[error("the refresh failed: {0}")]
    Refresh(String),
    #[error("the account needs a new login: its refresh token is no longer valid")]
    ReloginRequired,
}

/// Takes `live` out of rotation (`disabled`) or puts it back, as `cliproxy accounts
/// disable|enable` does; returns whether anything changed.
pub async fn set_disabled(
    accounts: &Arc<Accounts>,
    live: &LiveCredential,
    disabled: bool,
) -> Result<bool, ActionError> {
    let store = accounts.store();
    let changed = match live.kind {
        CredentialKind::ApiKey => store.set_credential_disabled(&live.label, disabled).await?,
        CredentialKind::QwenOauth => store.set_account_disabled(&live.label, disabled).await? > 0,
    };
    accounts.reconcile().await?;
    Ok(changed)
}

/// Removes a Qwen account, as `cliproxy logout` does; returns what was removed (its token
/// files, or its row).
pub async fn remove(
    accounts: &Arc<Accounts>,
    live: &LiveCredential,
) -> Result<Vec<String>, ActionError> {
    if live.kind == CredentialKind::ApiKey {
        return Err(ActionError::FromConfig(live.label.clone()));
    }
    let removed = accounts.store().remove_account(&live.label).await?;
    accounts.reconcile().await?;
    Ok(removed
        .iter()
        .map(|place| {
            std::path::Path::new(place)
                .file_name()
                .map_or_else(|| place.clone(), |name| name.to_string_lossy().into_owned())
        })
        .collect())
}

/// Refreshes a Qwen account's token now; returns the account for its new expiry.
pub async fn refresh(
    accounts: &Accounts,
    live: &LiveCredential,
) -> Result<Arc<QwenAccount>, ActionError> {
    if live.kind == CredentialKind::ApiKey {
        return Err(ActionError::NotRefreshable(live.label.clone()));
    }
    let account = accounts
        .account(&live.key)
        .ok_or_else(|| ActionError::NotFound(live.label.clone()))?;
    match account.refresh_now().await {
        Ok(_) => Ok(account),
        Err(RefreshFailure::ReloginRequired) => Err(ActionError::ReloginRequired),
        Err(failure) => Err(ActionError::Refresh(failure.to_string())),
    }
}
