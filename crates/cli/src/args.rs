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
    /// TOML configuration file.
    #[arg(long, global = true, env = "CLIPROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory holding the token files [default: ~/.cli-proxy-api].
    #[arg(long, global = true, env = "CLIPROXY_AUTH_DIR", value_name = "DIR")]
    pub auth_dir: Option<PathBuf>,

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
/// so `cliproxy -qwen-login -no-browser -auth-dir DIR` keeps working.
pub fn normalize_legacy_args<I>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else {
                return arg;
            };
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
    /// Parses the process arguments, legacy spellings included; exits with usage on error.
    pub fn parse_args() -> Self {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|error| error.exit())
    }

    /// Parses `args` (program name first), legacy spellings included.
    pub fn try_parse_args<I>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        let cli = Self::try_parse_from(normalize_legacy_args(args))?;
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

    fn parse(args: &[&str]) -> Cli {
        let args = std::iter::once("cliproxy")
            .chain(args.iter().copied())
            .map(OsString::from);
        Cli::try_parse_args(args).expect("arguments parse")
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
        let args = ["cliproxy", "--qwen-login", "accounts", "list"].map(OsString::from);
        assert!(Cli::try_parse_args(args).is_err());
        let args = ["cliproxy", "--no-browser"].map(OsString::from);
        assert!(Cli::try_parse_args(args).is_err());
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
        let args = ["cliproxy", "--port", "1", "accounts", "list"].map(OsString::from);
        assert!(Cli::try_parse_args(args).is_err());
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
        assert!(Cli::try_parse_args(args).is_err());
    }

    #[test]
    fn no_arguments_parse_to_no_command() {
        let cli = parse(&[]);
        assert!(cli.command.is_none());
        assert!(!cli.qwen_login);
    }
}
