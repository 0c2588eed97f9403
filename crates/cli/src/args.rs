//! Command-line grammar: the subcommands, the global options, and the Go tool's
//! single-dash spellings that old scripts still use.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Serve Qwen accounts as an OpenAI- and Anthropic-compatible API.
#[derive(Debug, Parser)]
#[command(
    name = "cliproxy",
    version,
    about = "Serve Qwen accounts as an OpenAI- and Anthropic-compatible API",
    long_about = None
)]
pub struct Cli {
    /// TOML configuration file [default: ~/.config/cliproxy/config.toml].
    #[arg(long, global = true, env = "CLIPROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory holding the token files [default: ~/.cli-proxy-api].
    #[arg(long, global = true, env = "CLIPROXY_AUTH_DIR", value_name = "DIR")]
    pub auth_dir: Option<PathBuf>,

    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log shippers.
    #[arg(
        long,
        global = true,
        env = "CLIPROXY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log in a Qwen account (same as `cliproxy login qwen`).
    #[arg(long)]
    pub qwen_login: bool,

    /// Options of `--qwen-login`.
    #[command(flatten)]
    pub legacy_login: LoginOptions,

    /// Options of the server, which runs when no command is given.
    #[command(flatten)]
    pub serve: ServeOptions,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log an account in with the OAuth device flow and save its token file.
    Login {
        #[arg(value_enum)]
        provider: Provider,
        #[command(flatten)]
        options: LoginOptions,
    },
    /// Copy an account from another tool's credentials into the auth dir.
    Import {
        #[arg(value_enum)]
        source: ImportSource,
        /// Credentials file [default: ~/.qwen/oauth_creds.json].
        path: Option<PathBuf>,
        /// The account's email; asked for when missing.
        #[arg(long)]
        email: Option<String>,
    },
    /// Inspect the saved accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Remove an account's token file.
    Logout {
        /// The account's email.
        email: String,
    },
    /// Requests, failures, tokens and latency the server recorded, from the usage database
    /// (`usage-db`); works while a server runs and without one.
    Usage(UsageOptions),
    /// Run the API server (the default when no command is given).
    Serve(ServeOptions),
    /// Move accounts between an auth dir and a PostgreSQL store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Write a commented config file with a new client key, and the set-up of each coding
    /// agent filled in.
    Init {
        /// Replace an existing config file (its client keys are lost).
        #[arg(long)]
        force: bool,
        /// Print what was written, the key included, as JSON on stdout (for scripts).
        #[arg(long)]
        json: bool,
        /// The port the server will listen on [default: 8317].
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
    },
    /// Check the config file (and the CLIPROXY_* environment) without starting anything.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a coding agent pointed at cliproxy: at the running server, or at one started for
    /// the agent's lifetime. The agent's exit code is cliproxy's.
    Run {
        #[command(flatten)]
        options: AgentOptions,
        /// Arguments for the agent, passed on as they are.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "AGENT ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Print the shell commands that point a coding agent at cliproxy:
    /// `eval "$(cliproxy env claude)"`.
    Env {
        #[command(flatten)]
        options: AgentOptions,
    },
    /// Print a shell completion script: `cliproxy completions bash > /etc/bash_completion.d/cliproxy`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff): `cliproxy man | man -l -`; or write it and a page per
    /// subcommand (`cliproxy-init.1`, ...) into a directory.
    Man {
        /// Write every page into DIR instead of printing the main one.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every account and disabled API key from one store into another. The source is only
    /// read; running it again changes nothing; an account the destination refreshed later is
    /// kept. Tokens written to PostgreSQL are sealed when store.encryption-key is set.
    Migrate {
        /// Where the accounts are: an auth dir, or a postgres:// URL.
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// Where they go: an auth dir, or a postgres:// URL.
        #[arg(long, value_name = "DIR|URL")]
        to: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct UsageOptions {
    /// From when: a span back from now (`24h`, `7d`), a UTC date (`2026-12-01`) or an RFC 3339
    /// time (`2026-12-01T08:00:00Z`). Counted by whole hours, from the hour it falls in.
    #[arg(long, value_name = "SPAN|DATE", default_value = "24h")]
    pub since: String,

    /// What each row counts.
    #[arg(long, value_enum, value_name = "GROUP", default_value_t = UsageGroup::Credential)]
    pub by: UsageGroup,

    /// Print JSON (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--by` of `cliproxy usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageGroup {
    /// The credential: an account's email, an API key's label.
    Credential,
    /// The model served.
    Model,
    /// The client key's name.
    ClientKey,
    /// The UTC day.
    Day,
    /// The UTC hour.
    Hour,
}

/// Which agent `run` and `env` set up, and with which model.
#[derive(Debug, Clone, Args)]
pub struct AgentOptions {
    /// The model the agent asks for [default: the first of `[qwen] models`].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    #[arg(value_enum)]
    pub agent: Agent,
}

/// The coding agents `run` and `env` know how to point at cliproxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Agent {
    /// Claude Code (`claude`): Anthropic Messages.
    Claude,
    /// Codex CLI (`codex`): OpenAI Responses.
    Codex,
    /// Qwen Code (`qwen`): OpenAI chat completions.
    Qwen,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate the config file and the environment as `serve` would; every
    /// problem names the key, the line and the fix. Exits 1 when there is any.
    Check,
}

/// Shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line, with the same fields, for log shippers.
    Json,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeOptions {
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,

    /// Port to listen on [default: 8317].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Every account and API key: its state (live from a running server), weight, priority,
    /// group, requests in the current minute, expiry, last refresh and file.
    List,
    /// Take a credential out of rotation, live and across restarts: an account by its email,
    /// an API key by its label (`<name>#<n>`, as `accounts list` shows it).
    Disable {
        /// The account's email, or the API key's label.
        name: String,
    },
    /// Put a credential `accounts disable` took out back into rotation.
    Enable {
        /// The account's email, or the API key's label.
        name: String,
    },
    /// Sends each account and API key a minimal request (refreshing tokens as the
    /// server would) and reports whether it works; exits 1 when any does not.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    Qwen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportSource {
    /// Qwen Code's `~/.qwen/oauth_creds.json`.
    QwenCode,
}

#[derive(Debug, Clone, Default, Args)]
pub struct LoginOptions {
    /// Do not open a browser; only print the URL and code.
    #[arg(long)]
    pub no_browser: bool,

    /// The account's email; asked for after authorization when missing.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,

    /// Accepted for scripts written for the Go tool; the device flow needs no callback.
    #[arg(long, value_name = "PORT")]
    pub oauth_callback_port: Option<u16>,
}

/// Options the Go tool spelled with a single dash (`-qwen-login`, `-auth-dir DIR`).
const LEGACY_LONG_OPTIONS: &[&str] = &[
    "qwen-login",
    "no-browser",
    "auth-dir",
    "config",
    "oauth-callback-port",
    "email",
];

/// Rewrites the Go tool's single-dash long options to their double-dash form,
/// so `cliproxy -qwen-login -no-browser -auth-dir DIR` keeps working. Nothing after `run` is
/// touched: those are the agent's arguments.
pub fn normalize_legacy_args<I>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    let mut agent_args = false;
    args.into_iter()
        .map(|arg| {
            if agent_args {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            if text == "run" {
                agent_args = true;
                return arg;
            }
            let Some(rest) = text.strip_prefix('-') else {
                return arg;
            };
            let name = rest.split('=').next().unwrap_or(rest);
            if rest.starts_with('-') || !LEGACY_LONG_OPTIONS.contains(&name) {
                return arg;
            }
            OsString::from(format!("-{text}"))
        })
        .collect()
}

impl Cli {
    /// The command-line grammar, with `version` as what `--version` prints after the name.
    pub fn command_with_version(version: &'static str) -> clap::Command {
        use clap::CommandFactory as _;
        Self::command().version(version)
    }

    /// Parses the process arguments, legacy spellings included; exits with usage on error.
    /// `version` is what `--version` prints after the name.
    pub fn parse_args(version: &'static str) -> Self {
        Self::try_parse_args(std::env::args_os(), version).unwrap_or_else(|error| error.exit())
    }

    /// Parses `args` (program name first), legacy spellings included.
    pub fn try_parse_args<I>(args: I, version: &'static str) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        use clap::FromArgMatches as _;
        let matches = Self::command_with_version(version)
            .try_get_matches_from(normalize_legacy_args(args))?;
        let cli = Self::from_arg_matches(&matches)?;
        let legacy = &cli.legacy_login;
        let legacy_used = cli.qwen_login
            || legacy.no_browser
            || legacy.email.is_some()
            || legacy.oauth_callback_port.is_some();
        let serve_used = cli.serve.host.is_some() || cli.serve.port.is_some();
        if cli.command.is_some() && serve_used {
            use clap::CommandFactory as _;
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--host and --port belong to the server: use `cliproxy serve --host ... --port ...` or no command",
            ));
        }
        if cli.command.is_some() && legacy_used {
            use clap::CommandFactory as _;
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--qwen-login and its options go without a subcommand; use `cliproxy login qwen [OPTIONS]`",
            ));
        }
        if cli.qwen_login && serve_used {
            use clap::CommandFactory as _;
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--host and --port do not apply to --qwen-login",
            ));
        }
        if !cli.qwen_login && legacy_used {
            use clap::CommandFactory as _;
            return Err(Self::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--no-browser, --email and --oauth-callback-port need `login qwen` or --qwen-login",
            ));
        }
        Ok(cli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: &str = "0.0.0 (commit test)";

    fn parse(args: &[&str]) -> Cli {
        try_parse(args).expect("arguments parse")
    }

    fn try_parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = std::iter::once("cliproxy")
            .chain(args.iter().copied())
            .map(OsString::from);
        Cli::try_parse_args(args, VERSION)
    }

    #[test]
    fn legacy_single_dash_spellings_parse() {
        let cli = parse(&["-qwen-login", "-no-browser", "-auth-dir", "/tmp/a"]);
        assert!(cli.qwen_login);
        assert!(cli.legacy_login.no_browser);
        assert_eq!(cli.auth_dir, Some(PathBuf::from("/tmp/a")));
    }

    #[test]
    fn legacy_equals_form_parses() {
        let cli = parse(&[
            "-qwen-login",
            "-auth-dir=/tmp/b",
            "-oauth-callback-port=8085",
        ]);
        assert_eq!(cli.auth_dir, Some(PathBuf::from("/tmp/b")));
        assert_eq!(cli.legacy_login.oauth_callback_port, Some(8085));
    }

    #[test]
    fn login_subcommand_parses() {
        let cli = parse(&["login", "qwen", "--no-browser", "--email", "a@b.co"]);
        let Some(Command::Login { provider, options }) = cli.command else {
            panic!("expected login");
        };
        assert_eq!(provider, Provider::Qwen);
        assert!(options.no_browser);
        assert_eq!(options.email.as_deref(), Some("a@b.co"));
    }

    #[test]
    fn global_options_follow_subcommands() {
        let cli = parse(&["accounts", "list", "--auth-dir", "/x"]);
        assert_eq!(cli.auth_dir, Some(PathBuf::from("/x")));
    }

    #[test]
    fn short_flags_and_values_are_left_alone() {
        let args = ["cliproxy", "-h", "-", "-5", "--no-browser"].map(OsString::from);
        let normalized = normalize_legacy_args(args.clone());
        assert_eq!(normalized, args.to_vec());
    }

    #[test]
    fn legacy_flags_do_not_mix_with_subcommands() {
        assert!(try_parse(&["--qwen-login", "accounts", "list"]).is_err());
        assert!(try_parse(&["--no-browser"]).is_err());
    }

    #[test]
    fn server_options_parse_with_or_without_serve() {
        let cli = parse(&["--port", "9000"]);
        assert_eq!(cli.serve.port, Some(9000));
        let cli = parse(&["serve", "--host", "0.0.0.0"]);
        let Some(Command::Serve(options)) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(options.host.as_deref(), Some("0.0.0.0"));
        assert!(try_parse(&["--port", "1", "accounts", "list"]).is_err());
    }

    #[test]
    fn usage_parses_with_defaults_and_options() {
        let Some(Command::Usage(options)) = parse(&["usage"]).command else {
            panic!("expected usage");
        };
        assert_eq!(options.since, "24h");
        assert_eq!(options.by, UsageGroup::Credential);
        assert!(!options.json);
        let cli = parse(&["usage", "--since", "7d", "--by", "client-key", "--json"]);
        let Some(Command::Usage(options)) = cli.command else {
            panic!("expected usage");
        };
        assert_eq!(options.since, "7d");
        assert_eq!(options.by, UsageGroup::ClientKey);
        assert!(options.json);
        let args = ["cliproxy", "usage", "--by", "account"].map(OsString::from);
        assert!(Cli::try_parse_args(args, VERSION).is_err());
    }

    #[test]
    fn no_arguments_parse_to_no_command() {
        let cli = parse(&[]);
        assert!(cli.command.is_none());
        assert!(!cli.qwen_login);
        assert_eq!(cli.log_format, LogFormat::Text);
    }

    #[test]
    fn everything_after_the_agent_is_the_agent_s() {
        let cli = parse(&[
            "--config", "c.toml", "run", "--model", "m", "codex", "exec", "--model", "x",
            "-config", "--config", "y", "-c", "k=v",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("c.toml")));
        let Some(Command::Run { options, args }) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(options.agent, Agent::Codex);
        assert_eq!(options.model.as_deref(), Some("m"));
        let args: Vec<&str> = args.iter().map(|arg| arg.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "exec", "--model", "x", "-config", "--config", "y", "-c", "k=v"
            ]
        );
    }

    #[test]
    fn init_config_check_completions_and_log_format_parse() {
        let cli = parse(&["init", "--force", "--json", "--log-format", "json"]);
        assert!(matches!(
            cli.command,
            Some(Command::Init {
                force: true,
                json: true,
                port: None
            })
        ));
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = parse(&["config", "check", "--config", "x.toml"]);
        assert!(matches!(
            cli.command,
            Some(Command::Config {
                command: ConfigCommand::Check
            })
        ));
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        let cli = parse(&["completions", "zsh"]);
        assert!(matches!(
            cli.command,
            Some(Command::Completions {
                shell: CompletionShell::Zsh
            })
        ));
        assert!(try_parse(&["completions", "tcsh"]).is_err());
        assert!(try_parse(&["--log-format", "xml"]).is_err());
    }

    #[test]
    fn version_names_the_commit() {
        let error = try_parse(&["--version"]).expect_err("--version exits");
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(error.to_string(), "cliproxy 0.0.0 (commit test)\n");
    }
}
