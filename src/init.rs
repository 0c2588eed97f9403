//! `cliproxy init`: the first five minutes. Writes a commented config file (0600, never over
//! an existing one without `--force`) with a freshly generated client key, the auth dir
//! (created 0700), and the set-up of Claude Code, Codex CLI and Qwen Code filled in with that
//! key and port. Host and port come from `--port`, else `CLIPROXY_HOST` and `CLIPROXY_PORT`
//! (as a container sets them), else 127.0.0.1:8317.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cli::agents::{CODEX_KEY_VARIABLE, Endpoint, shell_script};
use token_store::AuthDir;

use crate::config::{Overrides, default_config_path, env_parsed, env_value, expand_home};

/// The auth dir `init` writes when none is given: the default, as written.
const DEFAULT_AUTH_DIR: &str = "~/.cli-proxy-api";
/// The port written when none is given.
const DEFAULT_PORT: u16 = 8317;
/// The model the snippets name.
const SNIPPET_MODEL: &str = "qwen3-coder-plus";

/// Writes the config file; prints what it did (or, with `json`, the key and paths as JSON).
pub fn run(
    config: Option<&Path>,
    overrides: Overrides,
    port: Option<u16>,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let path = match config {
        Some(path) => path.to_owned(),
        None => default_config_path().context(
            "cannot tell where the config file goes: neither XDG_CONFIG_HOME nor HOME is set; pass --config FILE",
        )?,
    };
    if !force && path.exists() {
        anyhow::bail!(
            "{} already exists; nothing was changed. Check it with `cliproxy config check`, or run `cliproxy init --force` to replace it (its client keys stop working)",
            path.display()
        );
    }
    let written_auth_dir = overrides
        .auth_dir
        .as_ref()
        .map_or_else(|| DEFAULT_AUTH_DIR.to_owned(), |dir| absolute(dir));
    let auth_dir = expand_home(&written_auth_dir);
    let store = AuthDir::open(&auth_dir)?;
    crate::permissions::enforce_private_auth_dir(&store, true)?;
    let host = overrides
        .host
        .or_else(|| env_value("CLIPROXY_HOST"))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = match port.or(overrides.port) {
        Some(port) => port,
        None => env_parsed::<u16>("CLIPROXY_PORT", "a port number from 0 to 65535")?
            .unwrap_or(DEFAULT_PORT),
    };
    let key = new_client_key();
    let text = render(&Template {
        key: &key,
        host: &host,
        port,
        auth_dir: &written_auth_dir,
    });
    crate::config::parse(&text).map_err(|problems| {
        anyhow::anyhow!(
            "the config init would write is invalid ({}); give --port and --host values serve accepts",
            problems[0]
        )
    })?;
    write_private(&path, &text, force)?;

    let base = format!("http://{}", connect_address(&host, port));
    if json {
        let report = serde_json::json!({
            "config": path,
            "auth_dir": auth_dir,
            "client_key": key,
            "base_url": base,
            "openai_base_url": format!("{base}/v1"),
        });
        println!("{report}");
        return Ok(0);
    }
    let with_config = match config {
        Some(path) => format!(
            " --config {}",
            cli::agents::shell_quote(&path.to_string_lossy())
        ),
        None => String::new(),
    };
    println!(
        "Wrote {} (mode 0600) with a new client key.",
        path.display()
    );
    println!("Auth dir: {} (mode 0700)", auth_dir.display());
    println!();
    println!("Next:");
    println!("  cliproxy{with_config} login qwen     # log a Qwen account in");
    println!("  cliproxy{with_config} serve          # serve it on {base}");
    println!("  cliproxy{with_config} run claude     # or codex, qwen: the agent, pointed at it");
    println!();
    println!(
        "The key and the set-up of Claude Code, Codex CLI and Qwen Code are in the file; `cliproxy{with_config} env claude` prints them as exports."
    );
    Ok(0)
}

/// A new client key: 32 random bytes, hex, with a prefix that secret scanners can match.
fn new_client_key() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("cliproxy-{hex}")
}

/// `dir` made absolute against the current directory (the file is read from anywhere).
fn absolute(dir: &Path) -> String {
    let text = dir.to_string_lossy();
    if text.starts_with('~') || dir.is_absolute() {
        return text.into_owned();
    }
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .to_string_lossy()
        .into_owned()
}

/// `host:port` as a client dials it: an unspecified address (`0.0.0.0`, `::`) is reached on
/// loopback; IPv6 in brackets.
pub fn connect_address(host: &str, port: u16) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => format!("[::1]:{port}"),
        Ok(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
        Ok(ip) if ip.is_ipv6() => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Writes `text` to `path` with mode 0600 from birth: a new file (failing if one appeared
/// meanwhile), or with `replace` a temp file renamed over the old one. Missing parent
/// directories are created 0700.
fn write_private(path: &Path, text: &str, replace: bool) -> anyhow::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| format!("could not create the directory {}", parent.display()))?;
    let target: PathBuf = if replace {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        parent.join(format!(".{name}.{}.tmp", std::process::id()))
    } else {
        path.to_owned()
    };
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if replace {
            std::fs::rename(&target, path)?;
        }
        Ok(())
    })();
    if written.is_err() && replace {
        let _ = std::fs::remove_file(&target);
    }
    written.with_context(|| format!("could not write the config file {}", path.display()))
}

/// What the config file is written from.
struct Template<'a> {
    key: &'a str,
    host: &'a str,
    port: u16,
    auth_dir: &'a str,
}

/// The config file: the settings a first run needs, each explained, and the agents' set-up
/// in comments.
fn render(values: &Template<'_>) -> String {
    let base = format!("http://{}", connect_address(values.host, values.port));
    let endpoint = Endpoint {
        base: base.clone(),
        key: values.key.to_owned(),
        model: SNIPPET_MODEL.to_owned(),
    };
    let commented = |text: String| -> String {
        text.lines()
            .map(|line| {
                if line.is_empty() {
                    "#\n".to_owned()
                } else {
                    format!("#   {line}\n")
                }
            })
            .collect::<String>()
    };
    let claude = commented(shell_script(&cli::agents::setup(
        cli::Agent::Claude,
        &endpoint,
    )));
    let qwen = commented(shell_script(&cli::agents::setup(
        cli::Agent::Qwen,
        &endpoint,
    )));
    let codex_toml = commented(format!(
        "model = \"{SNIPPET_MODEL}\"\nmodel_provider = \"cliproxy\"\n\n[model_providers.cliproxy]\nname = \"cliproxy\"\nbase_url = \"{base}/v1\"\nenv_key = \"{CODEX_KEY_VARIABLE}\"\nwire_api = \"responses\""
    ));
    let key = values.key;
    let host = values.host;
    let port = values.port;
    let auth_dir = values.auth_dir;
    format!(
        r#"# cliproxy configuration, written by `cliproxy init`.
# Every key, its default and its environment variable: docs/configuration.md.
# Check this file after editing it: `cliproxy config check`.
# This file holds a client key: keep it private (mode 0600).

# Where the Qwen accounts' token files are (`cliproxy login qwen` writes them there).
auth-dir = "{auth_dir}"

# Where the server listens. 127.0.0.1 serves this machine only; 0.0.0.0 serves others too.
host = "{host}"
port = {port}

# Client keys: every client sends one, as `Authorization: Bearer <key>` or `x-api-key`.
# Add one per client or person to revoke them one by one; keep each long and random.
api-keys = ["{key}"]

# Which credential serves a request: "round-robin", "fill-first", "weighted", "headroom".
routing-strategy = "round-robin"

[qwen]
# The models Qwen accounts serve; the first is what `cliproxy run` asks for.
models = ["qwen3-coder-plus", "qwen3-coder-flash", "coder-model", "vision-model"]

# Agents that ask for their own model ids land on Qwen models.
[models.aliases]
"claude-*" = "qwen3-coder-plus"
"claude-haiku-*" = "qwen3-coder-flash"
"gpt-5*" = "coder-model"

# API keys of OpenAI-compatible upstreams join the same pool, each key a credential:
# [[openai-compat]]
# name = "dashscope"
# base-url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
# api-keys = ["sk-..."]
# models = ["qwen3-coder-plus"]

# ---------------------------------------------------------------------------------------
# The coding agents. The simplest way: `cliproxy run claude` (or codex, qwen) starts the
# agent pointed at this server, and `eval "$(cliproxy env claude)"` sets up this shell.
# By hand, with this file's key and port:
#
# Claude Code (Anthropic Messages; the root without /v1, ANTHROPIC_API_KEY empty):
{claude}#
# Codex CLI (OpenAI Responses), in ~/.codex/config.toml:
{codex_toml}# and in the shell:
#   export {CODEX_KEY_VARIABLE}='{key}'
#
# Qwen Code (OpenAI chat completions):
{qwen}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_a_valid_config_with_the_key_port_and_snippets() {
        let text = render(&Template {
            key: "cliproxy-k",
            host: "127.0.0.1",
            port: 9123,
            auth_dir: "~/.cli-proxy-api",
        });
        let file = crate::config::parse(&text).unwrap_or_else(|problems| {
            panic!("{}\n{text}", problems[0]);
        });
        assert_eq!(file.port, Some(9123));
        assert_eq!(
            file.api_keys.as_deref(),
            Some(&["cliproxy-k".to_owned()][..])
        );
        for snippet in [
            "export ANTHROPIC_BASE_URL='http://127.0.0.1:9123'",
            "export ANTHROPIC_AUTH_TOKEN='cliproxy-k'",
            "base_url = \"http://127.0.0.1:9123/v1\"",
            "export CLIPROXY_CLIENT_KEY='cliproxy-k'",
            "export OPENAI_BASE_URL='http://127.0.0.1:9123/v1'",
        ] {
            assert!(text.contains(snippet), "no {snippet:?} in\n{text}");
        }
    }

    #[test]
    fn keys_are_new_each_time() {
        let (a, b) = (new_client_key(), new_client_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), "cliproxy-".len() + 64);
    }

    #[test]
    fn unspecified_hosts_are_dialled_on_loopback() {
        assert_eq!(connect_address("0.0.0.0", 1), "127.0.0.1:1");
        assert_eq!(connect_address("::", 1), "[::1]:1");
        assert_eq!(connect_address("::1", 1), "[::1]:1");
        assert_eq!(connect_address("10.0.0.2", 1), "10.0.0.2:1");
    }
}
