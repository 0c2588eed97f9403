//! cliproxy's terminal front end: argument parsing, prompts, progress and output.
//!
//! The binary resolves configuration and hands each command plain settings; this
//! crate talks to the user and drives `auth-core` and `account-store` (the auth dir or the
//! shared PostgreSQL store).
//!
//! Invariants:
//! - Interactive output (instructions, prompts, the live status line) goes to
//!   stderr; results a script may want go to stdout through the binary.
//! - Nothing is written to the auth dir until a login is approved and has an
//!   email: Ctrl-C, a refused email or any flow error leave the dir untouched.
//! - No token is ever printed.

pub mod accounts;
pub mod agents;
pub mod args;
pub mod browser;
pub mod email;
pub mod error;
pub mod generate;
pub mod login;
pub mod output;
pub mod prompt;
pub mod qr;
pub mod store;
pub mod usage;

pub use args::{
    AccountsCommand, Agent, AgentOptions, Cli, Command, CompletionShell, ConfigCommand,
    ImportSource, LogFormat, LoginOptions, Provider, ServeOptions, StoreCommand, UsageGroup,
    UsageOptions,
};
pub use error::CliError;
pub use login::{LoginOutcome, LoginSettings, login_qwen};
