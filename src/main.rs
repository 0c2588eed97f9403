//! The `cliproxy` binary: a thin composition root. It parses arguments, resolves
//! configuration, and hands each command to the crate that owns it.

mod agent;
mod check;
mod client_limits;
mod config_check;
mod init;
mod management_routes;
mod permissions;
mod reload;
mod serve;
mod store;
mod upstreams;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use auth_core::{HttpSettings, OAuthClient, ProviderProfile, TokioClock};
use cli::{
    AccountsCommand, Cli, CliError, Command, ConfigCommand, ImportSource, LogFormat, LoginOptions,
    Provider, StoreCommand,
};
use cliproxy::config;

use crate::config::{ConfigFile, Overrides, Settings};
use crate::store::Trust;

/// What `cliproxy --version` prints after the name: the version and the commit built from
/// (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CLIPROXY_COMMIT"),
    ")"
);

/// Timeout of one OAuth HTTP request.
const OAUTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse_args(VERSION);
    if let Some(generated) = print_generated(&cli) {
        return generated;
    }
    let serving = cli.command.is_none() && !cli.qwen_login
        || matches!(cli.command, Some(Command::Serve(_) | Command::Run { .. }));
    init_tracing(if serving { "info" } else { "warn" }, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let log_format = cli.log_format;
    let outcome = runtime.block_on(run(cli));
    // A cancelled prompt may leave a thread blocked reading stdin: don't wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            match log_format {
                LogFormat::Text => eprintln!("error: {error:#}"),
                // One more JSON line for the shipper, not a line of text among them.
                LogFormat::Json => tracing::error!("{error:#}"),
            }
            let code = error
                .downcast_ref::<CliError>()
                .map_or(1, CliError::exit_code);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// Malloc arenas glibc may keep. A thread that allocates while the other arenas are busy gets
/// one of its own, up to eight per core, and keeps its memory: blocking threads come and go
/// with every refresh storm, and `cargo xtask soak` saw RSS creep up 15 % in ten minutes with
/// the default, 5 % with two arenas (docs/benchmarks.md). A few allocations per request do not
/// contend for two arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`], unless `MALLOC_ARENA_MAX` chose already.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a malloc tunable; called first thing in main, before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// `completions` and `man`: written from the argument grammar alone, before any
/// configuration is read.
fn print_generated(cli: &Cli) -> Option<ExitCode> {
    let mut out = std::io::stdout().lock();
    let written = match cli.command {
        Some(Command::Completions { shell }) => {
            cli::generate::completions(shell, VERSION, &mut out);
            std::io::Write::flush(&mut out)
        }
        Some(Command::Man { out_dir: None }) => cli::generate::man_page(VERSION, &mut out)
            .and_then(|()| std::io::Write::flush(&mut out)),
        Some(Command::Man {
            out_dir: Some(ref dir),
        }) => std::fs::create_dir_all(dir).and_then(|()| cli::generate::man_pages_to(VERSION, dir)),
        _ => return None,
    };
    Some(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: could not write the output: {error}");
            ExitCode::FAILURE
        }
    })
}

/// Log lines to stderr at `CLIPROXY_LOG`'s level (else `default_level`): text, or one JSON
/// object per line with the same fields (`--log-format json`).
fn init_tracing(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLIPROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Runs the command; its exit code on success.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    survive_file_size_limits();
    let serve_flags = match &cli.command {
        Some(Command::Serve(options)) => options.clone(),
        _ => cli.serve.clone(),
    };
    let overrides = Overrides {
        auth_dir: cli.auth_dir,
        host: serve_flags.host,
        port: serve_flags.port,
    };
    match cli.command {
        Some(Command::Config {
            command: ConfigCommand::Check,
        }) => return config_check::run(cli.config.as_deref(), overrides),
        Some(Command::Init { force, json, port }) => {
            return init::run(cli.config.as_deref(), overrides, port, force, json);
        }
        _ => {}
    }
    let file = ConfigFile::load(cli.config.as_deref())?;
    let settings = Settings::resolve(overrides.clone(), file)?;
    let done = match cli.command {
        Some(Command::Env { options }) => return agent::print_env(&settings, &options),
        Some(Command::Run { options, args }) => {
            return agent::run(
                &settings,
                cli.config.as_deref(),
                cli.log_format,
                &options,
                args,
            )
            .await;
        }
        Some(
            Command::Config { .. }
            | Command::Init { .. }
            | Command::Completions { .. }
            | Command::Man { .. },
        ) => unreachable!("handled before the config is loaded"),
        Some(Command::Login {
            provider: Provider::Qwen,
            options,
        }) => login(&settings, options).await,
        None if cli.qwen_login => login(&settings, cli.legacy_login).await,
        Some(Command::Accounts {
            command: AccountsCommand::List,
        }) => {
            let store = store::open(&settings, Trust::ReadOnly).await?;
            print!(
                "{}",
                cli::accounts::list_accounts(&store, &settings.auth_dir).await?
            );
            Ok(())
        }
        Some(Command::Logout { email }) => {
            let store = store::open(&settings, Trust::ReadOnly).await?;
            for removed in cli::accounts::logout(&store, &email).await? {
                println!("Removed {removed}");
            }
            Ok(())
        }
        Some(Command::Import {
            source: ImportSource::QwenCode,
            path,
            email,
        }) => {
            let store = store::open(&settings, Trust::TokenFiles).await?;
            let imported = cli::accounts::import_qwen_code(&store, path, email.as_deref()).await?;
            print_replaced(&imported.replaced);
            println!(
                "Imported Qwen Code's login as {}: {}",
                imported.email, imported.saved_to
            );
            Ok(())
        }
        Some(Command::Store {
            command: StoreCommand::Migrate { from, to },
        }) => migrate(&settings, &from, &to).await,
        Some(Command::Accounts {
            command: AccountsCommand::Check,
        }) => check::check_accounts(&settings, oauth_client(&settings)?).await,
        Some(Command::Accounts {
            command: AccountsCommand::Disable { name },
        }) => set_disabled(&settings, &name, true).await,
        Some(Command::Accounts {
            command: AccountsCommand::Enable { name },
        }) => set_disabled(&settings, &name, false).await,
        Some(Command::Usage(options)) => {
            // Reading the ledger blocks (SQLite, or PostgreSQL on a runtime of its own).
            let db = settings.usage.db.clone();
            let report = tokio::task::spawn_blocking(move || {
                cli::usage::usage(&db, &options, std::time::SystemTime::now())
            })
            .await
            .context("reading the usage ledger stopped abnormally")??;
            print!("{report}");
            Ok(())
        }
        Some(Command::Serve(_)) | None => {
            let config_path = ConfigFile::path(cli.config.as_deref());
            let load: reload::Load = {
                let path = config_path.clone();
                Box::new(move || {
                    Settings::resolve(overrides.clone(), ConfigFile::load(path.as_deref())?)
                })
            };
            serve::run(&settings, oauth_client(&settings)?, load, config_path).await
        }
    };
    done.map(|()| 0)
}

/// `accounts disable|enable NAME`: the API keys the config names are the labels it knows.
async fn set_disabled(settings: &Settings, name: &str, disabled: bool) -> anyhow::Result<()> {
    let labels: Vec<String> = upstreams::api_key_credentials(&settings.serve.openai_compat)
        .iter()
        .map(|key| key.credential.label.to_string())
        .collect();
    let store = store::open(settings, Trust::ReadOnly).await?;
    println!(
        "{}",
        cli::accounts::set_disabled(&store, &settings.auth_dir, name, disabled, &labels).await?
    );
    Ok(())
}

/// `store migrate --from A --to B`: copies A's accounts and disabled API keys into B.
async fn migrate(settings: &Settings, from: &str, to: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        from != to,
        "--from and --to name the same store; give the auth dir on one side and the postgres:// URL on the other"
    );
    let source = store::open_end(from, settings).await?;
    let destination = store::open_end(to, settings).await?;
    let migrated =
        account_store::migrate(&source, &destination, time::OffsetDateTime::now_utc()).await?;
    print!(
        "{}",
        cli::store::migrate_report(&migrated, &source.describe(), &destination.describe())
    );
    Ok(())
}

/// A write past `ulimit -f` raises SIGXFSZ, whose default action kills the process, and a
/// refresh's new tokens with it. With a handler installed (Tokio keeps it for the life of the
/// process) the write fails with EFBIG instead: an ordinary error the token store reports and
/// the server retries.
fn survive_file_size_limits() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Err(error) = signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        tracing::warn!(
            "cannot catch SIGXFSZ ({error}): a file size limit (ulimit -f) would kill the process when it writes a token"
        );
    }
}

fn oauth_client(settings: &Settings) -> anyhow::Result<OAuthClient> {
    let profile = qwen_profile(settings)?;
    Ok(OAuthClient::new(profile, &http_settings(settings))?)
}

fn qwen_profile(settings: &Settings) -> anyhow::Result<ProviderProfile> {
    let mut profile = ProviderProfile::qwen();
    if let Some(base) = &settings.qwen_oauth_base_url {
        let url = url::Url::parse(base).with_context(|| {
            format!("invalid Qwen OAuth base URL {base:?} (from [qwen] oauth-base-url or CLIPROXY_QWEN_OAUTH_BASE_URL); give a URL like https://chat.qwen.ai")
        })?;
        profile = profile.with_base_url(url);
    }
    Ok(profile)
}

fn http_settings(settings: &Settings) -> HttpSettings {
    HttpSettings {
        proxy_url: settings.proxy_url.clone(),
        timeout: OAUTH_REQUEST_TIMEOUT,
        user_agent: format!("cliproxy/{}", env!("CARGO_PKG_VERSION")),
    }
}

async fn login(settings: &Settings, options: LoginOptions) -> anyhow::Result<()> {
    let store = store::open(settings, Trust::TokenFiles).await?;
    let outcome = cli::login_qwen(cli::LoginSettings {
        store,
        profile: qwen_profile(settings)?,
        http: http_settings(settings),
        options,
        clock: TokioClock::scaled(settings.poll_time_scale)?,
    })
    .await?;
    print_replaced(&outcome.replaced);
    println!(
        "Logged in {} — token saved to {}",
        outcome.email, outcome.saved_to
    );
    Ok(())
}

/// One line per older token file (or row) of the account that a new login or import replaced.
fn print_replaced(replaced: &[String]) {
    for old in replaced {
        println!("Replaced the previous login {old}");
    }
}
