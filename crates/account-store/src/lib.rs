//! Where accounts live: the auth dir (token files, the embedded default) or a PostgreSQL
//! database that several servers share (`[store] kind = "postgres"`). [`AccountStore`] gives
//! both one async interface: list, lock-and-re-read, write under the lock, save a login, copy
//! an account in (`cliproxy store migrate`), log out, disable. The database also holds what
//! its servers share of their limits (`postgres::limits`): rate-cap slots, credential states
//! and the counts of the day.
//!
//! Invariants:
//! - An account is written only under its lock, after re-reading it under that lock: the
//!   auth dir's `flock`, or the row lock of an open transaction (`SELECT ... FOR UPDATE`).
//! - A row lock ends with its transaction: a write commits it, anything else (a dropped lock,
//!   a dead server, a broken connection) rolls it back and leaves the old row as it was.
//! - The auth dir behaves byte for byte as token-store makes it behave: this crate only moves
//!   its blocking work off the async threads.
//! - No error or log line quotes a token, a password or an encryption key.

mod dir;
mod error;
mod migrate;
mod place;
pub mod postgres;
mod store;

pub use dir::{FileStamp, Written};
pub use error::StoreError;
pub use migrate::{Migrated, migrate};
pub use place::{Copied, Listing, Location, Problem, Saved, Stored};
pub use postgres::{
    Change, ChangeFeed, CredentialState, DayCount, EncryptionKey, Held, LimitsChange, PgLedger,
    PgStore, RowLock, SLOT_LEASE, SlotAnswer, SlotAsk, StateKind,
};
pub use store::{AccountLock, AccountStore};
