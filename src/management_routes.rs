//! The management routes of `cliproxy serve` (the management crate), built from the settings:
//! the key, remote access, the usage database, the effective config and the device login's
//! OAuth client and clock.

use std::sync::Arc;

use account_runtime::Accounts;
use auth_core::{OAuthClient, TokioClock};
use credential_pool::{Credential, Pool};
use management::{Management, ManagementSettings, Metrics};

use crate::config::{Settings, effective_config};

/// The management routes to mount on the proxy, reporting `metrics`.
pub fn routes(
    settings: &Settings,
    oauth: OAuthClient,
    accounts: Arc<Accounts>,
    pool: Arc<Pool<Credential>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<Management>> {
    let management = &settings.management;
    if management.key.is_none() {
        tracing::debug!(
            "no management-key: the management API and dashboard are off; /metrics answers loopback only"
        );
    }
    Ok(Arc::new(Management::new(
        ManagementSettings {
            key: management.key.clone(),
            allow_remote: management.allow_remote,
            usage_db: settings.usage.db.clone(),
            effective_config: effective_config(settings),
            oauth,
            clock: TokioClock::scaled(settings.poll_time_scale)?,
        },
        accounts,
        pool,
        metrics,
    )))
}
