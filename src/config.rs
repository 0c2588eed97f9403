//! The configuration file and how each setting is resolved:
//! command-line flag, then environment variable, then config file, then default.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// Default auth dir, shared with the Go CLIProxyAPI so existing files load.
const DEFAULT_AUTH_DIR: &str = "~/.cli-proxy-api";
/// Test-only: multiplies the login's polling waits (e.g. 0.01).
const ENV_POLL_TIME_SCALE: &str = "CLIPROXY_POLL_TIME_SCALE";

/// Models a Qwen OAuth account serves unless `[qwen] models` says otherwise.
pub const DEFAULT_QWEN_MODELS: &[&str] = &[
    "qwen3-coder-plus",
    "qwen3-coder-flash",
    "coder-model",
    "vision-model",
];

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
    pub max_body_bytes: Option<u64>,
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
    pub body_memory_budget: Option<u64>,
    #[serde(default)]
    pub qwen: QwenSection,
    #[serde(default)]
    pub openai_compat: Vec<OpenAiCompatEntry>,
    #[serde(default)]
    pub models: ModelsSection,
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
    pub models: Option<Vec<String>>,
    pub client_version: Option<String>,
}

/// One `[[openai-compat]]` upstream: each of its keys is a credential of its own.
///
/// `Debug` shows how many keys there are, never a key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpenAiCompatEntry {
    pub name: String,
    pub base_url: String,
    pub api_keys: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    /// Per-key cap over a sliding minute; missing: no cap (0 is refused when parsing).
    pub requests_per_minute: Option<NonZeroU32>,
}

/// A duration written as seconds (`30`) or with a unit (`"250ms"`, `"30s"`, `"5m"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(pub Duration);

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Ok(Self(Duration::from_secs(seconds))),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl FromStr for DurationSetting {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let text = raw.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let invalid = || format!("invalid duration {raw:?}; write it like 250ms, 30s, 5m or 1h");
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let duration = match unit.trim() {
            "ms" => Duration::from_millis(number),
            "" | "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            _ => return Err(invalid()),
        };
        Ok(Self(duration))
    }
}

/// Settings after every source has been applied. `Debug` hides keys and proxy passwords.
#[derive(Clone)]
pub struct Settings {
    pub auth_dir: PathBuf,
    pub proxy_url: Option<String>,
    pub qwen_oauth_base_url: Option<String>,
    pub poll_time_scale: f64,
    /// Refuse (`true`) or only warn about (`false`) an auth dir others can write.
    pub strict_permissions: bool,
    pub serve: ServeSettings,
}

/// What `cliproxy serve` needs beyond the auth dir. `Debug` hides the keys.
#[derive(Clone)]
pub struct ServeSettings {
    pub host: IpAddr,
    pub port: u16,
    pub api_keys: Vec<String>,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub refresh_lead: Duration,
    pub request_retry: usize,
    pub routing_strategy: credential_pool::Strategy,
    /// `None`: requests keep whatever output token limit they ask for.
    pub max_output_tokens: Option<u32>,
    pub allowed_origins: Vec<String>,
    pub max_connections: usize,
    pub body_read_timeout: Duration,
    pub body_memory_budget: u64,
    pub qwen_requests_per_minute: Option<NonZeroU32>,
    pub qwen_models: Vec<String>,
    pub qwen_client_version: String,
    pub openai_compat: Vec<OpenAiCompatEntry>,
    pub model_aliases: Vec<(String, String)>,
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
            .field("qwen", &self.qwen)
            .field("openai_compat", &self.openai_compat)
            .field("models", &self.models)
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

impl fmt::Debug for OpenAiCompatEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatEntry")
            .field("name", &self.name)
            .field("base_url", &redact_url(&self.base_url))
            .field("api_keys", &Keys(&self.api_keys))
            .field("models", &self.models)
            .field("requests_per_minute", &self.requests_per_minute)
            .finish()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("auth_dir", &self.auth_dir)
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_url))
            .field(
                "qwen_oauth_base_url",
                &self.qwen_oauth_base_url.as_deref().map(redact_url),
            )
            .field("poll_time_scale", &self.poll_time_scale)
            .field("strict_permissions", &self.strict_permissions)
            .field("serve", &self.serve)
            .finish()
    }
}

impl fmt::Debug for ServeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_keys", &Keys(&self.api_keys))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("upstream_idle_timeout", &self.upstream_idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("refresh_lead", &self.refresh_lead)
            .field("request_retry", &self.request_retry)
            .field("routing_strategy", &self.routing_strategy)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_connections", &self.max_connections)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("body_memory_budget", &self.body_memory_budget)
            .field("qwen_requests_per_minute", &self.qwen_requests_per_minute)
            .field("qwen_models", &self.qwen_models)
            .field("qwen_client_version", &self.qwen_client_version)
            .field("openai_compat", &self.openai_compat)
            .field("model_aliases", &self.model_aliases)
            .finish()
    }
}

/// `Debug` stand-in for a list of keys: how many, never which.
struct Keys<'a>(&'a [String]);

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

/// A URL with its password, if any, replaced by `***`; text that is not a URL with a host but
/// may hold credentials (an `@`) is hidden. (`user:password@host` parses as a URL of scheme
/// `user` without a host, whose password `Url` does not see.)
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.has_host() => {
            if url.password().is_some() {
                // Fails only for URLs that cannot have credentials, which this one has.
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        _ if raw.contains('@') => "[unparsable, hidden]".to_owned(),
        _ => raw.to_owned(),
    }
}

/// Command-line values that override the config.
#[derive(Debug, Default)]
pub struct Overrides {
    pub auth_dir: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl ConfigFile {
    /// Reads `path`, or the default `~/.config/cliproxy/config.toml` when it exists.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(path) => path.to_owned(),
            None => match default_config_path().filter(|p| p.is_file()) {
                Some(path) => path,
                None => return Ok(Self::default()),
            },
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "could not read the config file {}; check the path given to --config or CLIPROXY_CONFIG",
                path.display()
            )
        })?;
        let file: Self = toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "invalid config file {}: {}",
                path.display(),
                error.to_string().trim_end()
            )
        })?;
        file.check()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(file)
    }

    /// The checks `load` makes after parsing: aliases, and `[[openai-compat]]` names, keys
    /// and URLs.
    pub fn check(&self) -> anyhow::Result<()> {
        for (pattern, target) in &self.models.aliases {
            anyhow::ensure!(
                !pattern.is_empty() && !target.trim().is_empty(),
                "[models.aliases] {pattern:?} = {target:?}: both the name and the model it maps to must be non-empty"
            );
        }
        let mut names = std::collections::HashSet::new();
        for entry in &self.openai_compat {
            anyhow::ensure!(
                !entry.name.trim().is_empty(),
                "an [[openai-compat]] entry has an empty name; give it one, such as name = \"dashscope\""
            );
            anyhow::ensure!(
                !entry.name.contains('#'),
                "[[openai-compat]] {:?}: the name may not contain `#`, because its keys are labelled <name>#1, <name>#2, ...; rename the entry",
                entry.name
            );
            anyhow::ensure!(
                names.insert(entry.name.as_str()),
                "[[openai-compat]] {:?} appears more than once; give each entry its own name, or merge their api-keys into one entry",
                entry.name
            );
            anyhow::ensure!(
                !entry.api_keys.is_empty(),
                "[[openai-compat]] {:?} has no api-keys; add at least one key or remove the entry",
                entry.name
            );
            url::Url::parse(&entry.base_url).with_context(|| {
                format!(
                    "[[openai-compat]] {:?}: base-url {:?} is not a URL; write it like https://dashscope.aliyuncs.com/compatible-mode/v1",
                    entry.name, entry.base_url
                )
            })?;
        }
        Ok(())
    }
}

impl Settings {
    /// Applies flag > environment > file > default.
    pub fn resolve(overrides: Overrides, file: ConfigFile) -> anyhow::Result<Self> {
        let auth_dir = match overrides.auth_dir {
            Some(dir) => expand_home(&dir.to_string_lossy()),
            None => expand_home(file.auth_dir.as_deref().unwrap_or(DEFAULT_AUTH_DIR)),
        };
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
        let host = host_text.parse::<IpAddr>().map_err(|_| {
            anyhow::anyhow!(
                "host {host_text:?} is not an IP address; use 127.0.0.1, 0.0.0.0 or ::1"
            )
        })?;
        let strategy_text = env_value("CLIPROXY_ROUTING_STRATEGY")
            .or(file.routing_strategy)
            .unwrap_or_else(|| "round-robin".to_owned());
        let routing_strategy = match strategy_text.as_str() {
            "round-robin" => credential_pool::Strategy::RoundRobin,
            "fill-first" => credential_pool::Strategy::FillFirst,
            other => anyhow::bail!(
                "routing-strategy {other:?} is not known; use \"round-robin\" or \"fill-first\""
            ),
        };
        let qwen_rpm = env_parsed::<u32>(
            "CLIPROXY_QWEN_REQUESTS_PER_MINUTE",
            "a whole number of requests such as 60 (0 for no cap)",
        )?
        .or(file.qwen.requests_per_minute)
        .unwrap_or(60);
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
                .unwrap_or(8317),
            api_keys: match env_list("CLIPROXY_API_KEYS") {
                Some(keys) => without_blanks(keys).0,
                None => file_api_keys(file.api_keys.unwrap_or_default()),
            },
            max_body_bytes: env_parsed(
                "CLIPROXY_MAX_BODY_BYTES",
                "a whole number of bytes such as 33554432",
            )?
            .or(file.max_body_bytes)
            .unwrap_or(32 * 1024 * 1024),
            header_read_timeout: duration(
                "CLIPROXY_HEADER_READ_TIMEOUT",
                file.header_read_timeout,
                30,
            )?,
            upstream_idle_timeout: duration(
                "CLIPROXY_UPSTREAM_IDLE_TIMEOUT",
                file.upstream_idle_timeout,
                300,
            )?,
            shutdown_grace: duration("CLIPROXY_SHUTDOWN_GRACE", file.shutdown_grace, 30)?,
            refresh_lead: duration("CLIPROXY_REFRESH_LEAD", file.refresh_lead, 20 * 60)?,
            request_retry: env_parsed(
                "CLIPROXY_REQUEST_RETRY",
                "a whole number of attempts such as 3",
            )?
            .or(file.request_retry)
            .unwrap_or(3)
            .max(1),
            routing_strategy,
            max_output_tokens: Some(
                env_parsed::<u32>(
                    "CLIPROXY_MAX_OUTPUT_TOKENS",
                    "a whole number of tokens such as 65536 (0 for no cap)",
                )?
                .or(file.max_output_tokens)
                .unwrap_or(65_536),
            )
            .filter(|cap| *cap > 0),
            allowed_origins: env_list("CLIPROXY_ALLOWED_ORIGINS")
                .or(file.allowed_origins)
                .unwrap_or_default(),
            max_connections: env_parsed(
                "CLIPROXY_MAX_CONNECTIONS",
                "a whole number of connections such as 1024",
            )?
            .or(file.max_connections)
            .unwrap_or(1024),
            body_read_timeout: duration("CLIPROXY_BODY_READ_TIMEOUT", file.body_read_timeout, 60)?,
            body_memory_budget: env_parsed(
                "CLIPROXY_BODY_MEMORY_BUDGET",
                "a whole number of bytes such as 536870912",
            )?
            .or(file.body_memory_budget)
            .unwrap_or(512 * 1024 * 1024),
            qwen_requests_per_minute: NonZeroU32::new(qwen_rpm),
            qwen_models: env_list("CLIPROXY_QWEN_MODELS")
                .or(file.qwen.models)
                .unwrap_or_else(|| {
                    DEFAULT_QWEN_MODELS
                        .iter()
                        .map(|m| (*m).to_owned())
                        .collect()
                }),
            qwen_client_version: env_value("CLIPROXY_QWEN_CLIENT_VERSION")
                .or(file.qwen.client_version)
                .unwrap_or_else(|| "0.14.2".to_owned()),
            openai_compat: file.openai_compat,
            model_aliases: match env_value("CLIPROXY_MODEL_ALIASES") {
                Some(raw) => parse_alias_list(&raw)?,
                None => file.models.aliases.into_iter().collect(),
            },
        };
        Ok(Self {
            auth_dir,
            proxy_url: env_value("CLIPROXY_PROXY_URL").or(file.proxy_url),
            qwen_oauth_base_url: env_value("CLIPROXY_QWEN_OAUTH_BASE_URL")
                .or(file.qwen.oauth_base_url),
            poll_time_scale,
            strict_permissions: env_parsed::<bool>(
                "CLIPROXY_STRICT_PERMISSIONS",
                "true (refuse an auth dir others can write) or false (only warn)",
            )?
            .or(file.strict_permissions)
            .unwrap_or(true),
            serve,
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
fn parse_alias_list(raw: &str) -> anyhow::Result<Vec<(String, String)>> {
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

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A comma-separated list from the environment.
fn env_list(name: &str) -> Option<Vec<String>> {
    env_value(name).map(|raw| raw.split(',').map(|item| item.trim().to_owned()).collect())
}

/// A number from the environment; `expected` describes a valid value for the error.
fn env_parsed<T: FromStr>(name: &str, expected: &str) -> anyhow::Result<Option<T>> {
    env_value(name)
        .map(|raw| parse_env_value(name, &raw, expected))
        .transpose()
}

fn parse_env_value<T: FromStr>(name: &str, raw: &str, expected: &str) -> anyhow::Result<T> {
    raw.trim().parse::<T>().map_err(|_| {
        anyhow::anyhow!(
            "environment variable {name}={raw:?} is not valid: give {expected}, or unset it"
        )
    })
}

fn duration(
    env: &str,
    file: Option<DurationSetting>,
    default_secs: u64,
) -> anyhow::Result<Duration> {
    let from_env = env_value(env)
        .map(|raw| {
            raw.parse::<DurationSetting>()
                .map_err(|e| anyhow::anyhow!("{env}: {e}"))
        })
        .transpose()?;
    Ok(from_env
        .or(file)
        .map_or(Duration::from_secs(default_secs), |setting| setting.0))
}

fn default_config_path() -> Option<PathBuf> {
    let base = env_value("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".config")))?;
    Some(base.join("cliproxy").join("config.toml"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "auth-dri = \"/x\"\n").unwrap();
        let message = ConfigFile::load(Some(&path)).unwrap_err().to_string();
        assert!(message.contains("auth-dri"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn file_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "auth-dir = \"/srv/auth\"\nproxy-url = \"socks5://127.0.0.1:1080\"\n[qwen]\noauth-base-url = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        let file = ConfigFile::load(Some(&path)).unwrap();
        assert_eq!(file.auth_dir.as_deref(), Some("/srv/auth"));
        assert_eq!(file.proxy_url.as_deref(), Some("socks5://127.0.0.1:1080"));
        assert_eq!(
            file.qwen.oauth_base_url.as_deref(),
            Some("http://127.0.0.1:9")
        );
    }

    #[test]
    fn flag_beats_file_for_auth_dir() {
        let file = ConfigFile {
            auth_dir: Some("/from/file".into()),
            ..ConfigFile::default()
        };
        let overrides = Overrides {
            auth_dir: Some("/from/flag".into()),
            ..Overrides::default()
        };
        let settings = Settings::resolve(overrides, file).unwrap();
        assert_eq!(settings.auth_dir, PathBuf::from("/from/flag"));
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = std::env::home_dir().unwrap();
        assert_eq!(expand_home("~/.cli-proxy-api"), home.join(".cli-proxy-api"));
        assert_eq!(expand_home("~"), home);
        assert_eq!(expand_home("/abs"), PathBuf::from("/abs"));
        assert_eq!(expand_home("~other/x"), PathBuf::from("~other/x"));
    }

    #[test]
    fn durations_take_units_or_seconds() {
        let parse = |raw: &str| raw.parse::<DurationSetting>().map(|d| d.0);
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert!(parse("5 minutes").is_err());
        assert!(parse("m").is_err());
    }

    #[test]
    fn serve_defaults() {
        let settings = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
        let serve = settings.serve;
        assert_eq!(serve.host.to_string(), "127.0.0.1");
        assert_eq!(serve.port, 8317);
        assert_eq!(serve.max_body_bytes, 32 * 1024 * 1024);
        assert!(serve.allowed_origins.is_empty());
        assert_eq!(serve.max_connections, 1024);
        assert_eq!(serve.body_read_timeout, Duration::from_secs(60));
        assert_eq!(serve.body_memory_budget, 512 * 1024 * 1024);
        assert_eq!(serve.header_read_timeout, Duration::from_secs(30));
        assert_eq!(serve.upstream_idle_timeout, Duration::from_secs(300));
        assert_eq!(serve.shutdown_grace, Duration::from_secs(30));
        assert_eq!(serve.refresh_lead, Duration::from_secs(1200));
        assert_eq!(serve.request_retry, 3);
        assert_eq!(serve.max_output_tokens, Some(65_536));
        assert_eq!(serve.qwen_requests_per_minute, NonZeroU32::new(60));
        assert_eq!(serve.qwen_models, DEFAULT_QWEN_MODELS);
    }

    #[test]
    fn serve_keys_are_read_from_the_file() {
        let text = r#"
            host = "0.0.0.0"
            port = 9000
            api-keys = ["k1"]
            header-read-timeout = "5s"
            refresh-lead = 600
            routing-strategy = "fill-first"
            allowed-origins = ["http://localhost:3000"]
            max-connections = 64
            body-read-timeout = "10s"
            body-memory-budget = 1048576
            [qwen]
            requests-per-minute = 0
            models = ["coder-model"]
            [[openai-compat]]
            name = "dashscope"
            base-url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
            api-keys = ["sk-1", "sk-2"]
            models = ["qwen-max"]
            requests-per-minute = 30
        "#;
        let file: ConfigFile = toml::from_str(text).unwrap();
        file.check().unwrap();
        let serve = Settings::resolve(Overrides::default(), file).unwrap().serve;
        assert_eq!(serve.host.to_string(), "0.0.0.0");
        assert_eq!(serve.port, 9000);
        assert_eq!(serve.api_keys, ["k1"]);
        assert_eq!(serve.header_read_timeout, Duration::from_secs(5));
        assert_eq!(serve.refresh_lead, Duration::from_secs(600));
        assert_eq!(serve.routing_strategy, credential_pool::Strategy::FillFirst);
        assert_eq!(serve.allowed_origins, ["http://localhost:3000"]);
        assert_eq!(serve.max_connections, 64);
        assert_eq!(serve.body_read_timeout, Duration::from_secs(10));
        assert_eq!(serve.body_memory_budget, 1_048_576);
        assert_eq!(serve.qwen_requests_per_minute, None, "0 means no cap");
        assert_eq!(serve.openai_compat[0].api_keys.len(), 2);
    }

    #[test]
    fn model_aliases_come_from_the_file_or_the_environment() {
        let text =
            "[models.aliases]\n\"claude-*\" = \"qwen3-coder-plus\"\n\"gpt-5\" = \"coder-model\"\n";
        let file: ConfigFile = toml::from_str(text).unwrap();
        file.check().unwrap();
        let serve = Settings::resolve(Overrides::default(), file).unwrap().serve;
        assert_eq!(
            serve.model_aliases,
            [
                ("claude-*".to_owned(), "qwen3-coder-plus".to_owned()),
                ("gpt-5".to_owned(), "coder-model".to_owned())
            ]
        );
        assert_eq!(
            parse_alias_list("a*=b, c = d").unwrap(),
            [
                ("a*".to_owned(), "b".to_owned()),
                ("c".to_owned(), "d".to_owned())
            ]
        );
        assert!(parse_alias_list("nonsense").is_err());
    }

    #[test]
    fn openai_compat_without_keys_is_refused() {
        let text =
            "[[openai-compat]]\nname = \"x\"\nbase-url = \"https://x.example/v1\"\napi-keys = []\n";
        let file: ConfigFile = toml::from_str(text).unwrap();
        assert!(
            file.check()
                .unwrap_err()
                .to_string()
                .contains("no api-keys")
        );
    }

    #[test]
    fn openai_compat_entries_need_unique_plain_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let entry = |name: &str| {
            format!(
                "[[openai-compat]]\nname = \"{name}\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\n"
            )
        };
        let refusal = |text: String| {
            std::fs::write(&path, text).unwrap();
            format!("{:#}", ConfigFile::load(Some(&path)).unwrap_err())
        };

        let twice = refusal(entry("dashscope") + &entry("coding") + &entry("dashscope"));
        assert!(
            twice.contains("[[openai-compat]] \"dashscope\" appears more than once"),
            "{twice}"
        );
        assert!(twice.contains(&path.display().to_string()), "{twice}");
        let hash = refusal(entry("a") + &entry("a#1"));
        assert!(
            hash.contains("\"a#1\": the name may not contain `#`"),
            "{hash}"
        );
        let blank = refusal(entry(" "));
        assert!(blank.contains("has an empty name"), "{blank}");
        std::fs::write(&path, entry("a") + &entry("ab")).unwrap();
        ConfigFile::load(Some(&path)).expect("distinct names are fine");
    }

    #[test]
    fn openai_compat_requests_per_minute_of_zero_is_refused() {
        let text = "[[openai-compat]]\nname = \"x\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\nrequests-per-minute = 0\n";
        let error = toml::from_str::<ConfigFile>(text).unwrap_err().to_string();
        assert!(error.contains("expected a nonzero u32"), "{error}");
        let capped: ConfigFile = toml::from_str(&text.replace("= 0", "= 5")).unwrap();
        assert_eq!(
            capped.openai_compat[0].requests_per_minute,
            NonZeroU32::new(5)
        );
    }

    #[test]
    fn blank_api_keys_in_the_file_are_dropped_and_the_others_trimmed() {
        let file: ConfigFile = toml::from_str("api-keys = [\"\", \"   \", \" k1 \"]\n").unwrap();
        let serve = Settings::resolve(Overrides::default(), file).unwrap().serve;
        assert_eq!(serve.api_keys, ["k1"]);
        let only_blank: ConfigFile = toml::from_str("api-keys = [\"  \"]\n").unwrap();
        let serve = Settings::resolve(Overrides::default(), only_blank)
            .unwrap()
            .serve;
        assert!(serve.api_keys.is_empty(), "a blank key is no key");
    }

    #[test]
    fn debug_never_shows_keys_or_proxy_passwords() {
        let text = r#"
            proxy-url = "http://alice:proxy-secret@127.0.0.1:3128"
            api-keys = ["client-secret-1", "client-secret-2"]
            [[openai-compat]]
            name = "dashscope"
            base-url = "https://bob:url-secret@dashscope.example/v1"
            api-keys = ["sk-upstream-secret"]
        "#;
        let file: ConfigFile = toml::from_str(text).unwrap();
        let file_debug = format!("{file:?} {file:#?}");
        let settings = Settings::resolve(Overrides::default(), file).unwrap();
        let shown = [
            file_debug,
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{:?}", settings.serve),
            format!("{:?}", settings.serve.openai_compat[0]),
        ];
        for text in &shown {
            assert!(!text.contains("secret"), "{text}");
        }
        assert!(shown[1].contains("api_keys: [2 redacted]"), "{}", shown[1]);
        assert!(shown[1].contains("alice:***@127.0.0.1"), "{}", shown[1]);
        assert!(shown[1].contains("dashscope"), "{}", shown[1]);
    }

    /// Found by the property test of `config_properties`: `Debug` showed a password written
    /// without a scheme (`user:password@host` is a URL of scheme `user` without a host).
    #[test]
    fn debug_hides_a_password_in_a_url_without_a_scheme() {
        let file: ConfigFile =
            toml::from_str("proxy-url = \"alice:proxy-secret@127.0.0.1:3128\"\n").unwrap();
        let shown = format!("{file:?}");
        assert!(!shown.contains("proxy-secret"), "{shown}");
        assert!(shown.contains("[unparsable, hidden]"), "{shown}");
    }

    /// Found by the property test of `config_properties`: `Debug` showed the password of
    /// `[qwen] oauth-base-url`.
    #[test]
    fn debug_hides_the_password_of_the_oauth_base_url() {
        let text = "[qwen]\noauth-base-url = \"https://carol:oauth-secret@qwen.example/\"\n";
        let file: ConfigFile = toml::from_str(text).unwrap();
        let file_debug = format!("{file:?}");
        let settings = Settings::resolve(Overrides::default(), file).unwrap();
        for shown in [file_debug, format!("{settings:?}")] {
            assert!(!shown.contains("oauth-secret"), "{shown}");
            assert!(shown.contains("carol:***@qwen.example"), "{shown}");
        }
    }

    #[test]
    fn strict_permissions_is_on_unless_the_file_turns_it_off() {
        let defaults = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
        assert!(defaults.strict_permissions);
        let file: ConfigFile = toml::from_str("strict-permissions = false\n").unwrap();
        let relaxed = Settings::resolve(Overrides::default(), file).unwrap();
        assert!(!relaxed.strict_permissions);
        let error = parse_env_value::<bool>("CLIPROXY_STRICT_PERMISSIONS", "no", "true or false")
            .expect_err("not a bool");
        assert!(error.to_string().contains("give true or false"), "{error}");
    }

    #[test]
    fn a_bad_number_in_the_environment_says_what_is_expected() {
        let error = parse_env_value::<u16>("CLIPROXY_PORT", "80a", "a port number from 0 to 65535")
            .expect_err("not a port");
        let message = error.to_string();
        assert!(
            message.starts_with("environment variable CLIPROXY_PORT=\"80a\" is not valid"),
            "{message}"
        );
        assert!(
            message.contains("give a port number from 0 to 65535, or unset it"),
            "{message}"
        );
    }

    #[test]
    fn example_config_parses() {
        let file: ConfigFile = toml::from_str(include_str!("../config.example.toml")).unwrap();
        file.check().unwrap();
        let defaults = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
        let example = Settings::resolve(Overrides::default(), file).unwrap();
        assert_eq!(
            format!("{:?}", example.serve),
            format!("{:?}", defaults.serve),
            "the example file shows the defaults"
        );
        assert_eq!(example.strict_permissions, defaults.strict_permissions);
    }
}
