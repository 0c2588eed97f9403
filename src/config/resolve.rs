//! How each setting is resolved, flag > environment > file > default, into what the commands
//! take: [`Settings`], with the server's own settings as proxy-server's [`ServerConfig`], whose
//! defaults are the only ones.

use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use cli::usage::UsageDb;
use credential_pool::{DailyLimits, Strategy};
use proxy_server::{ServerConfig, redact_url};

use super::client_keys;
use super::env::{duration, env_list, env_parsed, env_value};
use super::file::{AccountSection, ConfigFile};
use super::management::ManagementConfig;
use super::openai_compat::OpenAiCompatEntry;
use super::store::StoreSettings;
use super::validate::{parse_host, parse_strategy};
use super::values::RetentionSetting;

/// Default auth dir, shared with the Go CLIProxyAPI so existing files load.
const DEFAULT_AUTH_DIR: &str = "~/.cli-proxy-api";
/// Test-only: multiplies the login's polling waits (e.g. 0.01).
const ENV_POLL_TIME_SCALE: &str = "CLIPROXY_POLL_TIME_SCALE";
/// The port `serve` listens on by default.
const DEFAULT_PORT: u16 = 8317;
/// Refresh this long before a token expires, by default.
const DEFAULT_REFRESH_LEAD: Duration = Duration::from_secs(20 * 60);
/// How long an idle conversation keeps its credential, by default.
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(60 * 60);
/// When a refused credential is first probed, by default.
const DEFAULT_PROBE_AFTER: Duration = Duration::from_secs(60);
/// The end of the usage database's file name, beside the auth dir, by default.
const DEFAULT_USAGE_DB_SUFFIX: &str = "-usage.sqlite3";
/// The `usage-db` that turns the ledger off.
const USAGE_OFF: &str = "off";
/// How long usage is kept, by default.
const DEFAULT_USAGE_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Requests per minute of each Qwen OAuth account, by default.
const DEFAULT_QWEN_REQUESTS_PER_MINUTE: u32 = 60;

/// Models a Qwen OAuth account serves unless `[qwen] models` says otherwise.
pub const DEFAULT_QWEN_MODELS: &[&str] = &[
    "qwen3-coder-plus",
    "qwen3-coder-flash",
    "coder-model",
    "vision-model",
];

/// Settings after every source has been applied. `Debug` hides keys and proxy passwords.
#[derive(Clone)]
pub struct Settings {
    /// The auth dir: the token files when the store is the dir, and the status sockets of the
    /// servers on this machine either way.
    pub auth_dir: PathBuf,
    /// Where accounts live.
    pub store: StoreSettings,
    pub proxy_url: Option<String>,
    pub qwen_oauth_base_url: Option<String>,
    pub poll_time_scale: f64,
    /// Refuse (`true`) or only warn about (`false`) an auth dir others can write.
    pub strict_permissions: bool,
    pub usage: UsageSettings,
    pub serve: ServeSettings,
    /// The management key, remote access and metrics' labels.
    pub management: ManagementConfig,
}

/// The usage ledger: where `cliproxy serve` keeps it and `cliproxy usage` reads it, and how
/// long the server keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageSettings {
    /// Where the ledger is kept: `usage-db` (a file, or `"off"`) when set; else the
    /// PostgreSQL store's database with `[store] kind = "postgres"`; else the default file
    /// beside the auth dir.
    pub db: UsageDb,
    /// Hours older than this are deleted; `None` keeps them for ever.
    pub retention: Option<Duration>,
}

/// What `cliproxy serve` (and `accounts check`) need beyond the auth dir.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub host: IpAddr,
    pub port: u16,
    /// The proxy's own settings: client keys, limits, timeouts, models, aliases, the upstream
    /// proxy. Its `Debug` hides keys and proxy passwords.
    pub server: ServerConfig,
    pub refresh_lead: Duration,
    pub routing_strategy: Strategy,
    pub qwen_requests_per_minute: Option<NonZeroU32>,
    /// Each Qwen account's `requests-per-day` and `tokens-per-day` (`[qwen]`).
    pub qwen_daily: DailyLimits,
    pub openai_compat: Vec<OpenAiCompatEntry>,
    /// `[accounts."EMAIL"]` sections, by lowercased email.
    pub accounts: std::collections::BTreeMap<String, AccountSection>,
    /// A conversation's pin lapses after this long idle.
    pub session_ttl: Duration,
    /// The first probe of a refused credential comes this long after the refusal; then
    /// twice as long after each failed one, up to an hour.
    pub probe_after: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("auth_dir", &self.auth_dir)
            .field("store", &self.store)
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_url))
            .field(
                "qwen_oauth_base_url",
                &self.qwen_oauth_base_url.as_deref().map(redact_url),
            )
            .field("poll_time_scale", &self.poll_time_scale)
            .field("strict_permissions", &self.strict_permissions)
            .field("usage", &self.usage)
            .field("serve", &self.serve)
            .field("management", &self.management)
            .finish()
    }
}

/// Command-line values that override the config.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub auth_dir: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl Settings {
    /// Applies flag > environment > file > default.
    pub fn resolve(overrides: Overrides, file: ConfigFile) -> anyhow::Result<Self> {
        let management = ManagementConfig::resolve(&file)?;
        let auth_dir = match overrides.auth_dir {
            Some(dir) => expand_home(&dir.to_string_lossy()),
            None => expand_home(file.auth_dir.as_deref().unwrap_or(DEFAULT_AUTH_DIR)),
        };
        let store = StoreSettings::resolve(file.store)?;
        let poll_time_scale = env_parsed::<f64>(
            ENV_POLL_TIME_SCALE,
            "a number such as 0.01 (it is for tests only)",
        )?
        .unwrap_or(1.0);
        let host_text = overrides
            .host
            .or(env_value("CLIPROXY_HOST"))
            .or(file.host)
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let host = parse_host(&host_text)
            .map_err(|message| anyhow::anyhow!("{message}; use 127.0.0.1, 0.0.0.0 or ::1"))?;
        let strategy_text = env_value("CLIPROXY_ROUTING_STRATEGY")
            .or(file.routing_strategy)
            .unwrap_or_else(|| "round-robin".to_owned());
        let routing_strategy = parse_strategy(&strategy_text).map_err(|message| {
            anyhow::anyhow!(
                "{message}; use \"round-robin\", \"fill-first\", \"weighted\", \"priority\" or \"headroom\""
            )
        })?;
        let qwen_rpm = env_parsed::<u32>(
            "CLIPROXY_QWEN_REQUESTS_PER_MINUTE",
            "a whole number of requests such as 60 (0 for no cap)",
        )?
        .or(file.qwen.requests_per_minute)
        .unwrap_or(DEFAULT_QWEN_REQUESTS_PER_MINUTE);
        let qwen_daily = DailyLimits {
            requests: env_parsed::<u64>(
                "CLIPROXY_QWEN_REQUESTS_PER_DAY",
                "a whole number of requests such as 1000 (0 for no limit)",
            )?
            .or(file.qwen.requests_per_day)
            .and_then(NonZeroU64::new),
            tokens: env_parsed::<u64>(
                "CLIPROXY_QWEN_TOKENS_PER_DAY",
                "a whole number of tokens such as 1000000 (0 for no limit)",
            )?
            .or(file.qwen.tokens_per_day)
            .and_then(NonZeroU64::new),
        };
        let proxy_url = env_value("CLIPROXY_PROXY_URL").or(file.proxy_url);
        let defaults = ServerConfig::default();
        let server = ServerConfig {
            api_keys: match env_list("CLIPROXY_API_KEYS") {
                Some(keys) => without_blanks(keys).0,
                None => file_api_keys(file.api_keys.unwrap_or_default()),
            },
            client_keys: client_keys::resolve(&file.client_keys, &file.openai_compat)?,
            max_body_bytes: env_parsed(
                "CLIPROXY_MAX_BODY_BYTES",
                "a whole number of bytes such as 33554432",
            )?
            .or(file.max_body_bytes)
            .unwrap_or(defaults.max_body_bytes),
            header_read_timeout: duration(
                "CLIPROXY_HEADER_READ_TIMEOUT",
                file.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            body_read_timeout: duration(
                "CLIPROXY_BODY_READ_TIMEOUT",
                file.body_read_timeout,
                defaults.body_read_timeout,
            )?,
            body_memory_budget: env_parsed(
                "CLIPROXY_BODY_MEMORY_BUDGET",
                "a whole number of bytes such as 536870912",
            )?
            .or(file.body_memory_budget)
            .unwrap_or(defaults.body_memory_budget),
            max_connections: env_parsed(
                "CLIPROXY_MAX_CONNECTIONS",
                "a whole number of connections such as 1024",
            )?
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
            allowed_origins: env_list("CLIPROXY_ALLOWED_ORIGINS")
                .or(file.allowed_origins)
                .unwrap_or(defaults.allowed_origins),
            upstream_idle_timeout: duration(
                "CLIPROXY_UPSTREAM_IDLE_TIMEOUT",
                file.upstream_idle_timeout,
                defaults.upstream_idle_timeout,
            )?,
            shutdown_grace: duration(
                "CLIPROXY_SHUTDOWN_GRACE",
                file.shutdown_grace,
                defaults.shutdown_grace,
            )?,
            request_retry: env_parsed(
                "CLIPROXY_REQUEST_RETRY",
                "a whole number of attempts such as 3",
            )?
            .or(file.request_retry)
            .unwrap_or(defaults.request_retry)
            .max(1),
            models: env_list("CLIPROXY_QWEN_MODELS")
                .or(file.qwen.models)
                .unwrap_or_else(|| {
                    DEFAULT_QWEN_MODELS
                        .iter()
                        .map(|m| (*m).to_owned())
                        .collect()
                }),
            model_aliases: match env_value("CLIPROXY_MODEL_ALIASES") {
                Some(raw) => parse_alias_list(&raw)?,
                None => file.models.aliases.into_iter().collect(),
            },
            max_output_tokens: match env_parsed::<u32>(
                "CLIPROXY_MAX_OUTPUT_TOKENS",
                "a whole number of tokens such as 65536 (0 for no cap)",
            )?
            .or(file.max_output_tokens)
            {
                Some(0) => None,
                Some(cap) => Some(cap),
                None => defaults.max_output_tokens,
            },
            qwen_client_version: env_value("CLIPROXY_QWEN_CLIENT_VERSION")
                .or(file.qwen.client_version)
                .unwrap_or(defaults.qwen_client_version),
            upstream_proxy_url: proxy_url.clone(),
            session_affinity: env_parsed::<bool>(
                "CLIPROXY_SESSION_AFFINITY",
                "true (keep a conversation on one credential) or false",
            )?
            .or(file.session_affinity)
            .unwrap_or(defaults.session_affinity),
            quota_reset: match env_value("CLIPROXY_QUOTA_RESET").or(file.quota_reset) {
                Some(text) => text.parse()?,
                None => defaults.quota_reset,
            },
            ..defaults
        };
        let serve = ServeSettings {
            host,
            port: overrides
                .port
                .map(Ok)
                .or_else(|| {
                    env_parsed::<u16>("CLIPROXY_PORT", "a port number from 0 to 65535").transpose()
                })
                .transpose()?
                .or(file.port)
                .unwrap_or(DEFAULT_PORT),
            server,
            refresh_lead: duration(
                "CLIPROXY_REFRESH_LEAD",
                file.refresh_lead,
                DEFAULT_REFRESH_LEAD,
            )?,
            routing_strategy,
            qwen_requests_per_minute: NonZeroU32::new(qwen_rpm),
            qwen_daily,
            openai_compat: file.openai_compat,
            accounts: file
                .accounts
                .into_iter()
                .map(|(email, section)| (email.to_lowercase(), section))
                .collect(),
            session_ttl: duration(
                "CLIPROXY_SESSION_TTL",
                file.session_ttl,
                DEFAULT_SESSION_TTL,
            )?,
            probe_after: duration(
                "CLIPROXY_PROBE_AFTER",
                file.probe_after,
                DEFAULT_PROBE_AFTER,
            )?,
        };
        let usage = UsageSettings {
            db: match (env_value("CLIPROXY_USAGE_DB").or(file.usage_db), &store) {
                (Some(off), _) if off == USAGE_OFF => UsageDb::Off,
                (Some(path), _) => UsageDb::File(expand_home(&path)),
                (None, StoreSettings::Postgres { url, .. }) => UsageDb::Postgres(url.clone()),
                (None, StoreSettings::Dir { .. }) => UsageDb::File(default_usage_db(&auth_dir)),
            },
            retention: match env_value("CLIPROXY_USAGE_RETENTION") {
                Some(raw) => {
                    raw.parse::<RetentionSetting>()
                        .map_err(|e| anyhow::anyhow!("CLIPROXY_USAGE_RETENTION: {e}"))?
                        .0
                }
                None => file
                    .usage_retention
                    .map_or(Some(DEFAULT_USAGE_RETENTION), |setting| setting.0),
            },
        };
        Ok(Self {
            auth_dir,
            store,
            proxy_url,
            qwen_oauth_base_url: env_value("CLIPROXY_QWEN_OAUTH_BASE_URL")
                .or(file.qwen.oauth_base_url),
            poll_time_scale,
            strict_permissions: env_parsed::<bool>(
                "CLIPROXY_STRICT_PERMISSIONS",
                "true (refuse an auth dir others can write) or false (only warn)",
            )?
            .or(file.strict_permissions)
            .unwrap_or(true),
            usage,
            serve,
            management,
        })
    }
}

/// The config file's `api-keys`, trimmed and without blank entries, which are dropped with a
/// warning (a blank key would count as a key, and let the server listen on a public address).
fn file_api_keys(keys: Vec<String>) -> Vec<String> {
    let (keys, dropped) = without_blanks(keys);
    if dropped > 0 {
        let (entries, them) = if dropped == 1 {
            ("entry", "it")
        } else {
            ("entries", "them")
        };
        tracing::warn!(
            "ignored {dropped} empty or blank {entries} in api-keys of the config file; remove {them}, or put real keys there"
        );
    }
    keys
}

/// `keys` trimmed, without the empty ones; and how many were dropped.
fn without_blanks(keys: Vec<String>) -> (Vec<String>, usize) {
    let before = keys.len();
    let kept: Vec<String> = keys
        .into_iter()
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

/// `pattern=model,pattern=model`, as `CLIPROXY_MODEL_ALIASES` takes it.
pub(super) fn parse_alias_list(raw: &str) -> anyhow::Result<Vec<(String, String)>> {
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (pattern, target) = pair.split_once('=').filter(|(p, t)| !p.trim().is_empty() && !t.trim().is_empty()).with_context(|| {
                format!("CLIPROXY_MODEL_ALIASES: {pair:?} is not `name=model`; write e.g. claude-*=qwen3-coder-plus,gpt-5=coder-model")
            })?;
            Ok((pattern.trim().to_owned(), target.trim().to_owned()))
        })
        .collect()
}

/// `<auth dir's name>-usage.sqlite3` beside the auth dir (`~/.cli-proxy-api-usage.sqlite3`):
/// outside it, so the server's writes never wake the auth dir's watch.
fn default_usage_db(auth_dir: &std::path::Path) -> PathBuf {
    let mut name = auth_dir
        .file_name()
        .map_or_else(|| "cliproxy".into(), std::ffi::OsStr::to_os_string);
    name.push(DEFAULT_USAGE_DB_SUFFIX);
    auth_dir.with_file_name(name)
}

/// Expands a leading `~` to the home directory.
pub fn expand_home(raw: &str) -> PathBuf {
    let home = std::env::home_dir();
    match (raw.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home,
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(raw),
    }
}
