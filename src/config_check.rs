//! `cliproxy config check`: parses and validates the config file and the `CLIPROXY_*`
//! environment as `serve` would, without starting anything, and lists every problem as
//! `FILE:LINE: KEY: what is wrong; the fix`. No value is ever printed: values may be keys.

use std::path::Path;

use anyhow::Context as _;

use crate::config::{
    ConfigFile, Overrides, Problem, Settings, default_config_path, env_value, line_of,
};

/// Checks, prints the verdict, and returns the exit code: 0 when all is well, 1 otherwise.
pub fn run(config: Option<&Path>, overrides: Overrides) -> anyhow::Result<u8> {
    let path = match config {
        Some(path) => Some(path.to_owned()),
        None => default_config_path().filter(|path| path.is_file()),
    };
    let mut text = String::new();
    let (shown, file) = match &path {
        Some(path) => {
            text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "could not read the config file {}; check the path given to --config or CLIPROXY_CONFIG",
                    path.display()
                )
            })?;
            match crate::config::parse(&text) {
                Ok(file) => (path.display().to_string(), file),
                Err(problems) => return Ok(report(&path.display().to_string(), &problems)),
            }
        }
        None => {
            let looked = default_config_path().map_or_else(
                || "~/.config/cliproxy/config.toml".to_owned(),
                |p| p.display().to_string(),
            );
            println!(
                "No config file at {looked}: cliproxy runs on its defaults (`cliproxy init` writes one)."
            );
            ("the environment".to_owned(), ConfigFile::default())
        }
    };
    let settings = match Settings::resolve(overrides, file) {
        Ok(settings) => settings,
        Err(error) => {
            let problem = Problem {
                key: "environment or flags".to_owned(),
                line: None,
                message: format!("{error:#}"),
                fix: "correct or unset the variable (`env | grep CLIPROXY_`)".to_owned(),
            };
            return Ok(report(&shown, &[problem]));
        }
    };
    let serve = &settings.serve;
    let address = std::net::SocketAddr::new(serve.host, serve.port);
    if serve.server.check_bind(&address).is_err() {
        let line = line_of(&text, "host").filter(|_| env_value("CLIPROXY_HOST").is_none());
        let problem = Problem {
            key: if line.is_some() { "host" } else { "host (from CLIPROXY_HOST or --host)" }.to_owned(),
            line,
            message: format!(
                "serve would refuse to listen on {} (not loopback) without client keys, and there are none",
                serve.host
            ),
            fix: "add api-keys = [\"<a long random key>\"] (`cliproxy init` makes one), or listen on host = \"127.0.0.1\"".to_owned(),
        };
        return Ok(report(&shown, &[problem]));
    }
    let upstream_keys: usize = serve
        .openai_compat
        .iter()
        .map(|entry| entry.api_keys.len())
        .sum();
    println!(
        "{shown}: ok. Serves http://{} with {} client key(s), {} upstream key(s) and {} model alias(es); auth dir {}",
        crate::init::connect_address(&serve.host.to_string(), serve.port),
        serve.server.api_keys.len(),
        upstream_keys,
        serve.server.model_aliases.len(),
        settings.auth_dir.display()
    );
    Ok(0)
}

/// Prints each problem as `FILE:LINE: ...` on stderr, and returns exit code 1.
fn report(shown: &str, problems: &[Problem]) -> u8 {
    for problem in problems {
        let at = problem
            .line
            .map_or_else(|| shown.to_owned(), |line| format!("{shown}:{line}"));
        eprintln!(
            "error: {at}: {}: {}; {}",
            problem.key, problem.message, problem.fix
        );
    }
    let count = problems.len();
    eprintln!(
        "{count} problem{} in {shown}; nothing was started",
        if count == 1 { "" } else { "s" }
    );
    1
}
