//! Every way a command can fail, each with the message the user sees and its exit code.

use std::path::PathBuf;

use crate::email::{EmailFor, EmailProblem};

/// Exit code for a missing or invalid email: the user gave the command bad input.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for Ctrl-C, as shells report a SIGINT death.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "EmailRequiredError: no email was entered, so nothing was saved. Run `{}` again and enter the Qwen account's email when asked (or pass --email EMAIL).",
        .purpose.command()
    )]
    EmailRequired { purpose: EmailFor },

    #[error(
        "invalid email format ({problem}); nothing was saved. Run `{}` again with an address like name@example.com.",
        .purpose.command()
    )]
    InvalidEmail {
        problem: EmailProblem,
        purpose: EmailFor,
    },

    #[error("login cancelled; nothing was saved.")]
    Cancelled,

    #[error(transparent)]
    Login(#[from] auth_core::DeviceFlowError),

    #[error(transparent)]
    HttpClient(#[from] auth_core::ClientBuildError),

    #[error(transparent)]
    Store(#[from] token_store::StoreError),

    #[error(transparent)]
    AccountStore(#[from] account_store::StoreError),

    #[error(
        "no account with email {email} in {place}. Run `cliproxy accounts list` to see the saved accounts."
    )]
    AccountNotFound {
        email: String,
        /// The auth dir, or the database (without its password).
        place: String,
    },

    #[error(
        "no credential is called {name:?}: give an account's email or an API key's label ({}), as `cliproxy accounts list` shows them",
        if .known.is_empty() { "neither the config nor a running server has API keys".to_owned() } else { .known.join(", ") }
    )]
    CredentialNotFound { name: String, known: Vec<String> },

    #[error(
        "no Qwen Code credentials at {path}. Log in with Qwen Code first, or pass the file: `cliproxy import qwen-code PATH`."
    )]
    ImportSourceMissing { path: PathBuf },

    #[error(transparent)]
    Usage(#[from] usage_ledger::LedgerError),

    #[error(
        "--since {text:?} is neither a span nor a date: write it like 24h, 7d, 2026-12-01 or 2026-12-01T08:00:00Z"
    )]
    InvalidSince { text: String },

    #[error(
        "the usage ledger is off (usage-db = \"off\"), so there is no usage to show; set usage-db to a file (or remove it for the default) and restart the server"
    )]
    UsageOff,

    /// Reading the email from stdin, or writing the prompt to stderr, failed.
    #[error(
        "could not ask for the email: reading stdin or writing to the terminal failed ({0}); nothing was saved. Run the command again with --email EMAIL, so nothing needs to be asked."
    )]
    Terminal(std::io::Error),
}

impl CliError {
    pub(crate) fn terminal(error: std::io::Error) -> Self {
        Self::Terminal(error)
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::EmailRequired { .. } | Self::InvalidEmail { .. } | Self::InvalidSince { .. } => {
                EXIT_USAGE
            }
            Self::Cancelled => EXIT_INTERRUPTED,
            _ => 1,
        }
    }
}
