//! token-store's integration tests, one binary: the auth dir's behaviour (`store`), locking
//! across threads and processes (`concurrency`), files of other tools (`compat`) and the
//! token-file mapping's properties (`record_properties`), on the helpers in `support`.

mod compat;
mod concurrency;
mod record_properties;
mod store;
mod support;
