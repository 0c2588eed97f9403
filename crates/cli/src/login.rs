//! `cliproxy login qwen`: the device flow as the user sees it, from the code on
//! screen to the saved token file.

use std::time::{Duration, SystemTime};

use account_store::AccountStore;
use auth_core::{
    Clock as _, DeviceAuthorization, HttpSettings, OAuthClient, PollEvent, ProviderProfile,
    TokenSet, TokioClock,
};
use token_store::TokenRecord;

use crate::args::LoginOptions;
use crate::browser::{BrowserOutcome, Opener, open_browser};
use crate::email::{EmailFor, validate_email};
use crate::error::CliError;
use crate::output::{Terminal, format_countdown};
use crate::prompt::prompt_email;
use crate::qr::render_qr;

/// Everything a login needs, resolved from flags, environment and config by the binary.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Where the login is saved: the auth dir, or the shared database.
    pub store: AccountStore,
    pub profile: ProviderProfile,
    pub http: HttpSettings,
    pub options: LoginOptions,
    /// Time for the polling loop: real time, or scaled in tests.
    pub clock: TokioClock,
}

/// A finished login.
#[derive(Debug)]
pub struct LoginOutcome {
    pub email: String,
    /// The new token file (or row).
    pub saved_to: String,
    /// The account's older files (or row) that the new one replaced.
    pub replaced: Vec<String>,
}

/// How often the live wait indicator redraws.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// Runs the whole login: device code, approval, email, token file.
pub async fn login_qwen(settings: LoginSettings) -> Result<LoginOutcome, CliError> {
    let mut terminal = Terminal::stderr();
    let store = &settings.store;
    if let AccountStore::Dir(dir) = store {
        dir.check_writable()?;
    }
    let email_given = settings
        .options
        .email
        .as_deref()
        .map(validate_email)
        .transpose()
        .map_err(|problem| CliError::InvalidEmail {
            problem,
            purpose: EmailFor::Login,
        })?;
    if settings.options.oauth_callback_port.is_some() {
        terminal.line(
            "Note: --oauth-callback-port is not needed: Qwen's device login has no callback, so the port is not used.",
        );
    }

    let client = OAuthClient::new(settings.profile.clone(), &settings.http)?;
    let authorization = with_interrupt(client.start_device_login(&settings.clock)).await??;
    let opener = show_instructions(&mut terminal, &authorization, settings.options.no_browser);

    let tokens = wait_for_approval(
        &mut terminal,
        &client,
        &authorization,
        &settings.clock,
        opener,
    )
    .await?;
    // The token's lifetime counts from now, not from whenever the email is typed.
    let received_at = SystemTime::now();
    terminal.line("Authorization approved.");

    let email = match email_given {
        Some(email) => email,
        None => with_interrupt(ask_email()).await??,
    };
    let record = token_record(email.clone(), tokens, received_at);
    let saved = store
        .save_login(&record, time::OffsetDateTime::now_utc())
        .await?;
    Ok(LoginOutcome {
        email,
        saved_to: saved.saved_to,
        replaced: saved.replaced,
    })
}

/// Prints the URL, the code and (on a terminal) the QR code, and tries to open a browser.
/// Returns the system opener when it is still running, so its failure can be reported.
fn show_instructions(
    terminal: &mut Terminal,
    authorization: &DeviceAuthorization,
    no_browser: bool,
) -> Option<Opener> {
    terminal
        .line("To log in your Qwen account, open this URL in any browser (phone, laptop, ...),");
    terminal.line("signed in to the Qwen account you want to add:");
    terminal.line(format!(
        "\n    {}\n",
        authorization.verification_uri_complete
    ));
    terminal.line(format!(
        "and confirm the code {} (expires in {}).",
        authorization.user_code,
        format_countdown(authorization.expires_in)
    ));
    if terminal.is_interactive()
        && let Some(qr) = render_qr(&authorization.verification_uri_complete)
    {
        terminal.line(format!("Or scan it with your phone:\n{qr}"));
    }
    match open_browser(&authorization.verification_uri_complete, no_browser) {
        BrowserOutcome::Started => {
            terminal.line(BROWSER_OPENED);
            None
        }
        BrowserOutcome::Opening(opener) => Some(opener),
        BrowserOutcome::Disabled => {
            terminal.line("No browser was opened (--no-browser): open the URL on any device.");
            None
        }
        BrowserOutcome::NoDisplay => {
            terminal
                .line("No display found, so no browser was opened: open the URL on any device.");
            None
        }
        BrowserOutcome::Failed(reason) => {
            terminal.line(browser_failed(&reason));
            None
        }
    }
}

const BROWSER_OPENED: &str = "Opened the URL in your browser (pass --no-browser to stop this).";

fn browser_failed(reason: &str) -> String {
    format!("Could not open a browser ({reason}): open the URL yourself, on this or any device.")
}

/// Polls until approval, showing the countdown on a terminal and reporting poll problems and
/// how the system opener (if one runs) ended. Ctrl-C cancels.
async fn wait_for_approval(
    terminal: &mut Terminal,
    client: &OAuthClient,
    authorization: &DeviceAuthorization,
    clock: &TokioClock,
    mut opener: Option<Opener>,
) -> Result<TokenSet, CliError> {
    let deadline = authorization.deadline();
    let mut opener_running = opener.is_some();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut on_event = move |event| {
        let _ = events.send(event);
    };
    let poll = client.poll_for_token(authorization, clock, &mut on_event);
    tokio::pin!(poll);
    // Registered before the wait is announced, so a Ctrl-C right after it is caught (the
    // `ctrl_c()` future would register only when first polled).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(CliError::Terminal)?;
    if !terminal.is_interactive() {
        terminal.line("Waiting for you to approve the login...");
    }
    let mut ticker = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            result = &mut poll => {
                terminal.clear_status();
                while let Ok(event) = received.try_recv() {
                    report(terminal, event);
                }
                return result.map_err(CliError::from);
            }
            _ = interrupt.recv() => {
                terminal.clear_status();
                return Err(CliError::Cancelled);
            }
            Some(event) = received.recv() => report(terminal, event),
            opened = opener_exit(&mut opener), if opener_running => {
                opener_running = false;
                match opened {
                    Ok(()) => terminal.line(BROWSER_OPENED),
                    Err(reason) => terminal.line(browser_failed(&reason)),
                }
            }
            _ = ticker.tick() => {
                let left = deadline.saturating_duration_since(clock.now());
                terminal.status(format!(
                    "Waiting for approval... code expires in {} (Ctrl-C to cancel)",
                    format_countdown(left)
                ));
            }
        }
    }
}

fn report(terminal: &mut Terminal, event: PollEvent) {
    match event {
        PollEvent::Waiting { .. } => {}
        PollEvent::SlowDown { new_interval } => terminal.line(format!(
            "Qwen asked to slow down; now checking every {} s.",
            new_interval.as_secs()
        )),
        PollEvent::Retrying { reason, retry_in } => terminal.line(format!(
            "Checking for approval failed ({reason}); retrying in {} s.",
            retry_in.as_secs().max(1)
        )),
    }
}

/// How the system opener ended; never completes when there is none.
async fn opener_exit(opener: &mut Option<Opener>) -> Result<(), String> {
    match opener {
        Some(opener) => opener.wait().await,
        None => std::future::pending().await,
    }
}

/// Reads the email from the terminal or piped stdin on a blocking thread.
async fn ask_email() -> Result<String, CliError> {
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut output = std::io::stderr();
        prompt_email(&mut input, &mut output, EmailFor::Login)
    })
    .await
    .map_err(|join| CliError::Terminal(std::io::Error::other(join)))?
}

/// Races `work` against Ctrl-C.
async fn with_interrupt<T>(work: impl Future<Output = T>) -> Result<T, CliError> {
    tokio::select! {
        done = work => Ok(done),
        _ = tokio::signal::ctrl_c() => {
            eprintln!();
            Err(CliError::Cancelled)
        }
    }
}

/// The token file's content for tokens that arrived at `received_at`.
pub fn token_record(email: String, tokens: TokenSet, received_at: SystemTime) -> TokenRecord {
    let expired = tokens
        .expires_at(received_at)
        .map(time::OffsetDateTime::from);
    TokenRecord {
        provider: "qwen".to_owned(),
        email: Some(email),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        token_type: Some(tokens.token_type),
        resource_url: tokens.resource_url,
        expired,
        last_refresh: Some(received_at.into()),
        extra: Default::default(),
    }
}
