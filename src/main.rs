//! The `cliproxy` binary: a thin composition root. It parses arguments, resolves
//! configuration, and hands each command to the crate that owns it.

mod config;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use auth_core::{HttpSettings, ProviderProfile, TokioClock};
use cli::{AccountsCommand, Cli, CliError, Command, ImportSource, LoginOptions, Provider};

use crate::config::{ConfigFile, Settings};

/// Timeout of one OAuth HTTP request.
const OAUTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    init_tracing();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            let code = error
                .downcast_ref::<CliError>()
                .map_or(1, CliError::exit_code);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLIPROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = ConfigFile::load(cli.config.as_deref())?;
    let settings = Settings::resolve(cli.auth_dir, file)?;
    match cli.command {
        Some(Command::Login {
            provider: Provider::Qwen,
            options,
        }) => login(&settings, options).await,
        None if cli.qwen_login => login(&settings, cli.legacy_login).await,
        Some(Command::Accounts {
            command: AccountsCommand::List,
        }) => {
            print!("{}", cli::accounts::list_accounts(&settings.auth_dir)?);
            Ok(())
        }
        Some(Command::Logout { email }) => {
            for path in cli::accounts::logout(&settings.auth_dir, &email)? {
                println!("Removed {}", path.display());
            }
            Ok(())
        }
        Some(Command::Import {
            source: ImportSource::QwenCode,
            path,
            email,
        }) => {
            let (email, path) =
                cli::accounts::import_qwen_code(&settings.auth_dir, path, email.as_deref())?;
            println!("Imported Qwen Code's login as {email}: {}", path.display());
            Ok(())
        }
        None => {
            use clap::CommandFactory as _;
            Cli::command().print_help()?;
            Ok(())
        }
    }
}

async fn login(settings: &Settings, options: LoginOptions) -> anyhow::Result<()> {
    let mut profile = ProviderProfile::qwen();
    if let Some(base) = &settings.qwen_oauth_base_url {
        let url = url::Url::parse(base).with_context(|| {
            format!("invalid Qwen OAuth base URL {base:?} (from [qwen] oauth-base-url or CLIPROXY_QWEN_OAUTH_BASE_URL); give a URL like https://chat.qwen.ai")
        })?;
        profile = profile.with_base_url(url);
    }
    let http = HttpSettings {
        proxy_url: settings.proxy_url.clone(),
        timeout: OAUTH_REQUEST_TIMEOUT,
        user_agent: format!("cliproxy/{}", env!("CARGO_PKG_VERSION")),
    };
    let outcome = cli::login_qwen(cli::LoginSettings {
        auth_dir: settings.auth_dir.clone(),
        profile,
        http,
        options,
        clock: TokioClock::scaled(settings.poll_time_scale)?,
    })
    .await?;
    for old in &outcome.replaced {
        println!("Replaced the previous login {}", old.display());
    }
    println!(
        "Logged in {} — token saved to {}",
        outcome.email,
        outcome.path.display()
    );
    Ok(())
}
