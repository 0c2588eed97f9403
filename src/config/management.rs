//! The management side's settings: `management-key` (or `CLIPROXY_MANAGEMENT_KEY`; the key or
//! its Argon2 hash), `[management] allow-remote` and `[metrics] hash-emails`, resolved
//! environment > file > default.

use management::ManagementKey;

use super::env::{env_parsed, env_value};
use super::file::ConfigFile;

/// The management settings after environment > file > default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagementConfig {
    /// `None`: the management routes are off (404).
    pub key: Option<ManagementKey>,
    pub allow_remote: bool,
    pub hash_emails: bool,
}

impl ManagementConfig {
    pub(super) fn resolve(file: &ConfigFile) -> anyhow::Result<Self> {
        let key = match env_value("CLIPROXY_MANAGEMENT_KEY").or_else(|| file.management_key.clone())
        {
            Some(text) => Some(ManagementKey::parse(text.trim())?),
            None => None,
        };
        Ok(Self {
            key,
            allow_remote: env_parsed::<bool>(
                "CLIPROXY_MANAGEMENT_ALLOW_REMOTE",
                "true (answer management requests from other machines) or false",
            )?
            .or(file.management.allow_remote)
            .unwrap_or(false),
            hash_emails: env_parsed::<bool>(
                "CLIPROXY_METRICS_HASH_EMAILS",
                "true (hash account emails in metrics) or false",
            )?
            .or(file.metrics.hash_emails)
            .unwrap_or(false),
        })
    }
}
