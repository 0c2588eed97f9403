//! usage-ledger's integration tests: rollup arithmetic (with properties), the SQLite store,
//! the flusher, concurrent recorders, and a kill -9 in the middle of recording.

mod concurrency;
mod flusher;
mod kill;
mod properties;
mod store;
mod support;
