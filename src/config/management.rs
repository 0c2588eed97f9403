//! The management side's settings: `management-key` (or `CLIPROXY_MANAGEMENT_KEY`; the key or
//! its Argon2 hash), `[management] allow-remote` and `[metrics] hash-emails`; and the effective
//! config `GET /v0/management/config` shows, every secret left out.

use management::ManagementKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::env::{env_parsed, env_value};
use super::file::ConfigFile;
use super::resolve::Settings;
use proxy_server::redact_url;

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

/// The management settings after environment > file > default.
#[derive(Debug, Clone, Default)]
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

/// The settings as `GET /v0/management/config` shows them: keys counted or named, never
/// given; proxy passwords hidden.
pub fn effective_config(settings: &Settings) -> Value {
    let serve = &settings.serve;
    let server = &serve.server;
    let seconds = |duration: std::time::Duration| duration.as_secs_f64();
    json!({
        "auth-dir": settings.auth_dir,
        "proxy-url": settings.proxy_url.as_deref().map(redact_url),
        "host": serve.host,
        "port": serve.port,
        "api-keys": format!("{} key(s), not shown", server.api_keys.len()),
        "client-keys": server.client_keys.iter().map(|key| json!({
            "name": key.name,
            "models": key.models,
            "requests-per-minute": key.requests_per_minute,
            "tokens-per-day": key.tokens_per_day,
        })).collect::<Vec<_>>(),
        "max-body-bytes": server.max_body_bytes,
        "header-read-timeout-s": seconds(server.header_read_timeout),
        "body-read-timeout-s": seconds(server.body_read_timeout),
        "body-memory-budget": server.body_memory_budget,
        "max-connections": server.max_connections,
        "allowed-origins": server.allowed_origins,
        "upstream-idle-timeout-s": seconds(server.upstream_idle_timeout),
        "shutdown-grace-s": seconds(server.shutdown_grace),
        "request-retry": server.request_retry,
        "session-affinity": server.session_affinity,
        "session-ttl-s": seconds(serve.session_ttl),
        "probe-after-s": seconds(serve.probe_after),
        "max-output-tokens": server.max_output_tokens,
        "refresh-lead-s": seconds(serve.refresh_lead),
        "routing-strategy": format!("{:?}", serve.routing_strategy).to_lowercase(),
        "strict-permissions": settings.strict_permissions,
        "usage-db": settings.usage.db,
        "usage-retention-s": settings.usage.retention.map(seconds),
        "qwen": {
            "oauth-base-url": settings.qwen_oauth_base_url,
            "requests-per-minute": serve.qwen_requests_per_minute,
            "models": server.models,
            "client-version": server.qwen_client_version,
        },
        "models": {
            "aliases": server.model_aliases.iter().map(|(pattern, model)| json!([pattern, model])).collect::<Vec<_>>(),
        },
        "openai-compat": serve.openai_compat.iter().map(|entry| json!({
            "name": entry.name,
            "base-url": redact_url(&entry.base_url),
            "api-keys": format!("{} key(s), not shown", entry.api_keys.len()),
            "models": entry.models,
            "requests-per-minute": entry.requests_per_minute,
            "weight": entry.weight,
            "priority": entry.priority,
            "group": entry.group,
            "reasoning": entry.reasoning.0.name(),
        })).collect::<Vec<_>>(),
        "accounts": serve.accounts.iter().map(|(email, section)| (email.clone(), json!({
            "weight": section.weight,
            "priority": section.priority,
            "group": section.group,
            "requests-per-minute": section.requests_per_minute,
        }))).collect::<serde_json::Map<String, Value>>(),
        "management": {
            "management-key": match &settings.management.key {
                None => "not set: the management API is off",
                Some(key) if key.is_hash() => "set (an Argon2 hash), not shown",
                Some(_) => "set, not shown",
            },
            "allow-remote": settings.management.allow_remote,
        },
        "metrics": {
            "hash-emails": settings.management.hash_emails,
        },
    })
}
