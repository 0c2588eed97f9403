//! The management routes of `cliproxy serve` (the management crate), built from the settings:
//! the key, remote access, the usage database, the effective config and the device login's
//! OAuth client and clock.

use std::sync::Arc;

use account_runtime::Accounts;
use auth_core::{OAuthClient, TokioClock};
use credential_pool::{Credential, Pool};
use management::{Management, ManagementSettings, Metrics};

use proxy_server::redact_url;
use serde_json::{Value, json};

use crate::config::{Settings, UsageDb};

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

/// The settings as `GET /v0/management/config` shows them: keys counted or named, never
/// given; proxy passwords hidden.
fn effective_config(settings: &Settings) -> Value {
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
        "usage-db": match &settings.usage.db {
            UsageDb::Off => Value::Null,
            UsageDb::File(path) => json!(path),
            UsageDb::Postgres(url) => json!(redact_url(url)),
        },
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
