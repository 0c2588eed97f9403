//! The configuration file and how each setting is resolved:
//! command-line flag, then environment variable, then config file, then default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Default auth dir, shared with the Go CLIProxyAPI so existing files load.
const DEFAULT_AUTH_DIR: &str = "~/.cli-proxy-api";
/// Environment variable overriding `proxy-url`.
const ENV_PROXY_URL: &str = "CLIPROXY_PROXY_URL";
/// Environment variable overriding `[qwen] oauth-base-url`.
const ENV_QWEN_OAUTH_BASE_URL: &str = "CLIPROXY_QWEN_OAUTH_BASE_URL";
/// Test-only: multiplies the login's polling waits (e.g. 0.01).
const ENV_POLL_TIME_SCALE: &str = "CLIPROXY_POLL_TIME_SCALE";

/// The TOML file as written by the user. Unknown keys are errors, to catch typos.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    pub auth_dir: Option<String>,
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub qwen: QwenSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QwenSection {
    pub oauth_base_url: Option<String>,
}

/// Settings after every source has been applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub auth_dir: PathBuf,
    pub proxy_url: Option<String>,
    pub qwen_oauth_base_url: Option<String>,
    pub poll_time_scale: f64,
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
        toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "invalid config file {}: {}",
                path.display(),
                error.to_string().trim_end()
            )
        })
    }
}

impl Settings {
    /// Applies flag > environment > file > default.
    pub fn resolve(auth_dir_flag: Option<PathBuf>, file: ConfigFile) -> anyhow::Result<Self> {
        let auth_dir = match auth_dir_flag {
            Some(dir) => expand_home(&dir.to_string_lossy()),
            None => expand_home(file.auth_dir.as_deref().unwrap_or(DEFAULT_AUTH_DIR)),
        };
        let poll_time_scale = match env_value(ENV_POLL_TIME_SCALE) {
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .with_context(|| format!("{ENV_POLL_TIME_SCALE} must be a number, not {raw:?}"))?,
            None => 1.0,
        };
        Ok(Self {
            auth_dir,
            proxy_url: env_value(ENV_PROXY_URL).or(file.proxy_url),
            qwen_oauth_base_url: env_value(ENV_QWEN_OAUTH_BASE_URL).or(file.qwen.oauth_base_url),
            poll_time_scale,
        })
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
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
        let settings = Settings::resolve(Some("/from/flag".into()), file).unwrap();
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
}
