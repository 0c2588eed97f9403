//! End-to-end tests: the real `cliproxy` binary (`CARGO_BIN_EXE_cliproxy`) driven as a user
//! would, against the fake Qwen, each test in a sandbox of its own (`support`). One binary for
//! all of them, so the shared support code is compiled and linked once.

mod accounts;
mod agents;
mod config_check;
mod dashboard;
mod durability;
mod guard;
mod init;
mod login;
mod management;
mod operator;
mod quota;
mod reload;
mod routing;
mod run;
mod sdk;
mod serve;
mod serve_guards;
mod shared_limits;
mod store;
mod support;
mod upstream_network;
mod usage;
mod usage_postgres;
