//! Credentials in memory: the credential interface the server pools, selection, rotation,
//! cooldown, failover bookkeeping and per-credential request-rate caps.
//!
//! The crate is provider-agnostic: it never does HTTP, never reads files and
//! stores the server's own credential type `C` behind an [`Arc`](std::sync::Arc).
//! All time comes in as parameters (`now`), and jitter is an explicit
//! value, so behaviour is deterministic and testable without sleeping.
//!
//! # Invariants
//!
//! - **Eligibility.** [`Pool::select`] only returns a credential that serves
//!   the model, is not disabled, is not cooling down for that model, is below
//!   its request-rate cap, is not at its `requests-per-day` or `tokens-per-day`, and is not among the keys already tried for the
//!   request.
//! - **One slot per lease.** A successful `select` records exactly one send
//!   in the chosen credential's sliding-minute window and one request of its
//!   day; a failed `select` records nothing.
//! - **Cooldown is per (credential, model).** A quota report for one model
//!   never blocks the same credential for another model.
//!   [`Outcome::Success`] clears the cooldown and the backoff counter of that
//!   pair; [`Outcome::Failed`] changes nothing.
//! - **A refusal benches the whole credential.** [`Outcome::Refused`] (the upstream refused
//!   the credential itself, e.g. a 401 a token refresh did not cure) takes it out of rotation
//!   for every model until a probe or a request succeeds; probes come 1 min after the refusal,
//!   then twice as long after each failed one, up to 60 min by default.
//! - **Replacing keeps history.** [`Pool::upsert`] of an existing key keeps
//!   its insertion position, cooldowns, backoff counters and rate window; it
//!   re-enables the credential (new credential material, e.g. after a
//!   re-login).
//! - **Fair rotation.** With [`Strategy::RoundRobin`], successive selections
//!   for a model cycle through its candidates in insertion order, skipping
//!   unavailable ones; with [`Strategy::FillFirst`] the first eligible
//!   candidate in insertion order is always chosen.
//! - **Short critical sections.** Every method takes the pool's internal
//!   mutex briefly, never calls back into caller code while holding it, and
//!   returns owned data, so no lock is ever held across an upstream call.
//! - **A day ends at the quota reset.** A credential's requests (one per slot taken) and
//!   tokens ([`Pool::spend_tokens`]) count toward the day that ends at the pool's
//!   [`QuotaReset`]; at its [`DailyLimits`] it leaves rotation until then, and a success
//!   report does not bring it back early.
//! - **Shared limits are opt-in.** Until [`Pool::share_limits`] turns sharing on, no
//!   credential holds slot leases and no state change is noted: a pick costs what it did.
//!   With it on, a capped credential sends only with a slot of a lease ([`SlotGrant`]) besides
//!   room in its own window, and states applied from other servers
//!   ([`Pool::apply_shared_state`]) are never noted again.
//! - **Time is a parameter.** Nothing in this crate reads the clock: instants drive windows,
//!   cooldowns and probes; the wall clock, where given, decides which day it is.
//!
//! # Failover loop
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//! use credential_pool::{Models, Outcome, Pool, PoolConfig};
//!
//! let pool: Pool<&str> = Pool::new(PoolConfig::default());
//! pool.upsert("qwen:alice", Arc::new("token-a"), Models::Only(vec!["qwen3-coder-plus".into()]), None);
//! pool.upsert("qwen:bob", Arc::new("token-b"), Models::Only(vec!["qwen3-coder-plus".into()]), None);
//!
//! let mut tried = Vec::new();
//! let answer = loop {
//!     let lease = match pool.select("qwen3-coder-plus", &tried, Instant::now(), SystemTime::now()) {
//!         Ok(lease) => lease,
//!         Err(unavailable) => break Err(unavailable.to_string()),
//!     };
//!     // ... send the request upstream with `lease.credential`, no lock held ...
//!     let status = if *lease.key == *"qwen:alice" { 429 } else { 200 };
//!     let outcome = match status {
//!         200 => Outcome::Success,
//!         429 => Outcome::QuotaExceeded { retry_after: None },
//!         _ => Outcome::Failed,
//!     };
//!     pool.report(&lease.key, "qwen3-coder-plus", outcome, Instant::now());
//!     if outcome == Outcome::Success {
//!         break Ok(lease.key);
//!     }
//!     tried.push(lease.key);
//! };
//! assert_eq!(answer.as_deref(), Ok("qwen:bob"));
//! ```

mod affinity;
mod candidates;
mod client_caps;
mod config;
mod credential;
mod day;
mod entry;
mod error;
mod lease;
mod pool;
mod quota_reset;
mod rate;
mod upstream_said;

pub use affinity::Affinity;
pub use candidates::Scope;
pub use config::{Models, PoolConfig, Strategy};
pub use credential::{
    Access, AccessSource, BoxFuture, Credential, Flavor, ReasoningStyle, RefreshFailure,
    StaticAccess,
};
pub use day::{Counts, DailyLimits, DayStatus};
pub use entry::Routing;
pub use error::Unavailable;
pub use lease::{SlotGrant, SlotNeed, Unused, batch_size};
pub use pool::{
    CredentialStatus, Lease, ModelCooldown, Outcome, Pool, RefusedStatus, Selection, SharedState,
    Slot, StateChange,
};
pub use quota_reset::{InvalidQuotaReset, QuotaReset};
pub use rate::RateWindow;
pub use upstream_said::{Allowance, UpstreamSaid, UpstreamStatus, parse_reset};
