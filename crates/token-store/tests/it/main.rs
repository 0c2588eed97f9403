//! token-store's integration tests, one binary: the auth dir's behaviour (`store`), locking
//! across threads and processes (`concurrency`) and files of other tools (`compat`), on the
//! helpers in `support`.

mod compat;
mod concurrency;
mod store;
mod support;
