//! Qwen OAuth accounts while the server runs: each account's current token, the refresh that
//! renews it (single-flight, in a task of its own that no caller can cancel, adopted in memory
//! before it is written), the refresh schedule, the auth dir watch (or the PostgreSQL store's
//! change feed) that keeps the pool in step with the store, and the status socket
//! `accounts list` reads live state from.
//!
//! This crate joins account-store (token files or rows, and their locks), auth-core (OAuth)
//! and credential-pool (the pool and the credential interface) for serving. It knows nothing of HTTP serving: the
//! proxy uses accounts only through [`credential_pool::AccessSource`].
//!
//! Invariants:
//! - A refresh is never cancelled between Qwen's answer and the saved file: it runs in a task
//!   of [`Refreshes`], which [`Accounts::stop`] waits for within the shutdown grace period.
//! - New tokens are adopted in memory before they are written; a failed write is retried until
//!   it lands, and [`QwenAccount::unsaved_reason`] says why meanwhile.
//! - An account is written only under its account lock (file lock or row lock), after
//!   re-reading it under that lock.
//! - Time, waits and jitter come from an [`auth_core::Clock`], so schedules run in virtual time
//!   in tests.

mod accounts;
mod follow;
mod qwen_account;
mod reasons;
mod refresh_due;
mod schedule;
mod shared_limits;
mod single_flight;
pub mod status;
mod watch;

pub use account_store::FileStamp;
pub use accounts::{AccountOverride, AccountSettings, Accounts, Reconciled, account_credential};
pub use follow::{StoreFollow, follow};
pub use qwen_account::{QwenAccount, RefreshOutcomes, RefreshReason, Refreshes};
pub use reasons::{DISABLED_REASON, RELOGIN_REASON};
pub use refresh_due::refresh_due;
pub use shared_limits::{SharedLimits, share_limits};
pub use single_flight::SingleFlight;
pub use watch::{DirWatch, WatchError, watch};
