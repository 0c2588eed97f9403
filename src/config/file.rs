//! The configuration file as the user writes it: the TOML model (unknown keys are errors, to
//! catch typos) and a `Debug` that never shows a secret. Finding, reading and checking it is
//! `validate`'s.

use proxy_server::redact_url;
use serde::Deserialize;
use std::fmt;
use std::num::NonZeroU32;

use super::client_keys::ClientKeyEntry;
use super::openai_compat::{Keys, OpenAiCompatEntry};
use super::values::{DurationSetting, RetentionSetting};

/// The TOML file as written by the user. Unknown keys are errors, to catch typos.
///
/// `Debug` shows how many keys there are, never a key, and hides proxy passwords.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    pub auth_dir: Option<String>,
    pub proxy_url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub api_keys: Option<Vec<String>>,
    pub max_body_bytes: Option<usize>,
    pub header_read_timeout: Option<DurationSetting>,
    pub upstream_idle_timeout: Option<DurationSetting>,
    pub shutdown_grace: Option<DurationSetting>,
    pub refresh_lead: Option<DurationSetting>,
    pub request_retry: Option<usize>,
    pub routing_strategy: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub strict_permissions: Option<bool>,
    // What web pages may reach, and the bounds on what clients may hold.
    pub allowed_origins: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub body_read_timeout: Option<DurationSetting>,
    pub body_memory_budget: Option<usize>,
    // Routing: conversations, probes of refused credentials, quota resets.
    pub session_affinity: Option<bool>,
    pub session_ttl: Option<DurationSetting>,
    pub probe_after: Option<DurationSetting>,
    pub quota_reset: Option<String>,
    // The usage ledger: where it is kept, and for how long.
    pub usage_db: Option<String>,
    pub usage_retention: Option<RetentionSetting>,
    // The management API, metrics and dashboard.
    pub management_key: Option<String>,
    #[serde(default)]
    pub management: ManagementSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub qwen: QwenSection,
    #[serde(default)]
    pub openai_compat: Vec<OpenAiCompatEntry>,
    /// `[[client-keys]]`: named client keys with their own scope and limits.
    #[serde(default)]
    pub client_keys: Vec<ClientKeyEntry>,
    /// `[accounts."EMAIL"]`: routing of one Qwen account.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, AccountSection>,
    #[serde(default)]
    pub models: ModelsSection,
    /// `[store]`: the auth dir, or a shared PostgreSQL database.
    #[serde(default)]
    pub store: super::store::StoreSection,
}

/// `[management]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManagementSection {
    /// Answer management requests from peers that are not loopback.
    pub allow_remote: Option<bool>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsSection {
    /// Name accounts in metrics by a hash of their email.
    pub hash_emails: Option<bool>,
}

/// `[models]`: how client model names map to served models.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelsSection {
    /// Pattern (exact, or with `*`) → served model.
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, String>,
}

/// `[qwen]`. `Debug` hides the password of `oauth-base-url`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QwenSection {
    pub oauth_base_url: Option<String>,
    pub requests_per_minute: Option<u32>,
    /// Each account's requests per day (until `quota-reset`); 0 or missing: no limit.
    pub requests_per_day: Option<u64>,
    /// Each account's prompt and completion tokens per day; 0 or missing: no limit.
    pub tokens_per_day: Option<u64>,
    pub models: Option<Vec<String>>,
    pub client_version: Option<String>,
}

/// `[accounts."EMAIL"]`: how one Qwen OAuth account is routed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccountSection {
    pub weight: Option<NonZeroU32>,
    pub priority: Option<i32>,
    pub group: Option<String>,
    /// This account's cap over a sliding minute, instead of `[qwen] requests-per-minute`; 0
    /// for no cap.
    pub requests_per_minute: Option<u32>,
    /// This account's requests per day, instead of `[qwen] requests-per-day`; 0 for no limit.
    pub requests_per_day: Option<u64>,
    /// This account's tokens per day, instead of `[qwen] tokens-per-day`; 0 for no limit.
    pub tokens_per_day: Option<u64>,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("auth_dir", &self.auth_dir)
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_keys", &self.api_keys.as_deref().map(Keys))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("upstream_idle_timeout", &self.upstream_idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("refresh_lead", &self.refresh_lead)
            .field("request_retry", &self.request_retry)
            .field("routing_strategy", &self.routing_strategy)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("strict_permissions", &self.strict_permissions)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_connections", &self.max_connections)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("body_memory_budget", &self.body_memory_budget)
            .field("session_affinity", &self.session_affinity)
            .field("session_ttl", &self.session_ttl)
            .field("probe_after", &self.probe_after)
            .field("quota_reset", &self.quota_reset)
            .field("usage_db", &self.usage_db)
            .field("usage_retention", &self.usage_retention)
            .field(
                "management_key",
                &self.management_key.as_ref().map(|_| "<redacted>"),
            )
            .field("management", &self.management)
            .field("metrics", &self.metrics)
            .field("qwen", &self.qwen)
            .field("openai_compat", &self.openai_compat)
            .field("client_keys", &self.client_keys)
            .field("accounts", &self.accounts)
            .field("models", &self.models)
            .field("store", &self.store)
            .finish()
    }
}

impl fmt::Debug for QwenSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QwenSection")
            .field(
                "oauth_base_url",
                &self.oauth_base_url.as_deref().map(redact_url),
            )
            .field("requests_per_minute", &self.requests_per_minute)
            .field("models", &self.models)
            .field("client_version", &self.client_version)
            .finish()
    }
}
