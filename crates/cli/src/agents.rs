//! How `cliproxy run` and `cliproxy env` point a coding agent at cliproxy: the environment
//! and arguments each agent reads (docs/clients.md has the same set-up for people), and the
//! shell form `env` prints.

use crate::args::Agent;

/// Where the agent's requests go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server root, without `/v1`: `http://127.0.0.1:8317`.
    pub base: String,
    /// A client key the server accepts (any placeholder when it takes none).
    pub key: String,
    /// The model the agent asks for.
    pub model: String,
}

/// The agent's program, and what it is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The program's name, looked up on `PATH`.
    pub program: &'static str,
    /// Variables set for it.
    pub env: Vec<(&'static str, String)>,
    /// Arguments that come before the user's own.
    pub args: Vec<String>,
}

/// The variable Codex reads the client key from (its provider's `env_key`).
pub const CODEX_KEY_VARIABLE: &str = "CLIPROXY_CLIENT_KEY";

impl Agent {
    /// The program's name.
    pub fn program(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Qwen => "qwen",
        }
    }

    /// How to install it, for an error when it is missing.
    pub fn install_hint(self) -> &'static str {
        match self {
            Self::Claude => "npm install -g @anthropic-ai/claude-code",
            Self::Codex => "npm install -g @openai/codex",
            Self::Qwen => "npm install -g @qwen-code/qwen-code",
        }
    }
}

/// The set-up of `agent` against `endpoint`.
pub fn setup(agent: Agent, endpoint: &Endpoint) -> Setup {
    let base = endpoint.base.trim_end_matches('/');
    let model = endpoint.model.clone();
    match agent {
        // Anthropic clients take the root and add /v1/messages; the key as a bearer token,
        // with ANTHROPIC_API_KEY empty, or Claude Code would send that instead.
        Agent::Claude => Setup {
            program: agent.program(),
            env: vec![
                ("ANTHROPIC_BASE_URL", base.to_owned()),
                ("ANTHROPIC_AUTH_TOKEN", endpoint.key.clone()),
                ("ANTHROPIC_API_KEY", String::new()),
                ("ANTHROPIC_MODEL", model.clone()),
                ("ANTHROPIC_DEFAULT_HAIKU_MODEL", model),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
            ],
            args: Vec::new(),
        },
        // Codex takes a provider block; `-c` overrides add it without touching the user's
        // ~/.codex/config.toml, and its key comes from the variable the block names.
        Agent::Codex => {
            let provider = "model_providers.cliproxy";
            let overrides = [
                format!("model_provider={}", toml_string("cliproxy")),
                format!("model={}", toml_string(&model)),
                format!("{provider}.name={}", toml_string("cliproxy")),
                format!("{provider}.base_url={}", toml_string(&format!("{base}/v1"))),
                format!("{provider}.env_key={}", toml_string(CODEX_KEY_VARIABLE)),
                format!("{provider}.wire_api={}", toml_string("responses")),
            ];
            Setup {
                program: agent.program(),
                env: vec![(CODEX_KEY_VARIABLE, endpoint.key.clone())],
                args: overrides
                    .into_iter()
                    .flat_map(|value| ["-c".to_owned(), value])
                    .collect(),
            }
        }
        // Qwen Code speaks chat completions with its OpenAI settings; `--auth-type openai`
        // wins over a Qwen OAuth login chosen in its settings.
        Agent::Qwen => Setup {
            program: agent.program(),
            env: vec![
                ("OPENAI_BASE_URL", format!("{base}/v1")),
                ("OPENAI_API_KEY", endpoint.key.clone()),
                ("OPENAI_MODEL", model),
            ],
            args: vec!["--auth-type".to_owned(), "openai".to_owned()],
        },
    }
}

/// The set-up as POSIX shell commands (bash, zsh, sh): an `export` per variable and, when the
/// agent takes arguments too, a function of its name that adds them.
pub fn shell_script(setup: &Setup) -> String {
    let mut script = String::new();
    for (name, value) in &setup.env {
        script.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    if !setup.args.is_empty() {
        let args: Vec<String> = setup.args.iter().map(|arg| shell_quote(arg)).collect();
        script.push_str(&format!(
            "{program}() {{ command {program} {} \"$@\"; }}\n",
            args.join(" "),
            program = setup.program
        ));
    }
    script
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `text` in single quotes for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            base: "http://127.0.0.1:8317/".to_owned(),
            key: "k'ey".to_owned(),
            model: "coder-model".to_owned(),
        }
    }

    #[test]
    fn claude_gets_the_root_a_bearer_token_and_an_empty_api_key() {
        let setup = setup(Agent::Claude, &endpoint());
        assert_eq!(setup.program, "claude");
        assert!(setup.args.is_empty());
        let get = |name: &str| {
            setup
                .env
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:8317"));
        assert_eq!(get("ANTHROPIC_AUTH_TOKEN"), Some("k'ey"));
        assert_eq!(get("ANTHROPIC_API_KEY"), Some(""));
        assert_eq!(get("ANTHROPIC_MODEL"), Some("coder-model"));
    }

    #[test]
    fn codex_gets_a_responses_provider_by_overrides() {
        let setup = setup(Agent::Codex, &endpoint());
        assert_eq!(setup.env, [(CODEX_KEY_VARIABLE, "k'ey".to_owned())]);
        let overrides: Vec<&str> = setup
            .args
            .iter()
            .skip(1)
            .step_by(2)
            .map(String::as_str)
            .collect();
        assert!(setup.args.iter().step_by(2).all(|flag| flag == "-c"));
        assert!(
            overrides.contains(&"model_providers.cliproxy.base_url=\"http://127.0.0.1:8317/v1\"")
        );
        assert!(overrides.contains(&"model_providers.cliproxy.wire_api=\"responses\""));
        assert!(overrides.contains(&"model_provider=\"cliproxy\""));
        assert!(overrides.contains(&"model=\"coder-model\""));
    }

    #[test]
    fn the_shell_form_quotes_and_wraps_the_arguments() {
        let script = shell_script(&setup(Agent::Codex, &endpoint()));
        assert!(
            script.starts_with("export CLIPROXY_CLIENT_KEY='k'\\''ey'\n"),
            "{script}"
        );
        assert!(
            script.contains("codex() { command codex '-c' 'model_provider=\"cliproxy\"'"),
            "{script}"
        );
        assert!(script.ends_with(" \"$@\"; }\n"), "{script}");
        let script = shell_script(&setup(Agent::Qwen, &endpoint()));
        assert!(
            script.contains("export OPENAI_BASE_URL='http://127.0.0.1:8317/v1'\n"),
            "{script}"
        );
        assert!(
            script.contains("qwen() { command qwen '--auth-type' 'openai' \"$@\"; }"),
            "{script}"
        );
    }
}
