//! proxy-server's integration tests, one binary: the proxy against the fake Qwen, in-process
//! through `Proxy::service` where no socket is needed and on real sockets for timeouts,
//! disconnects and shutdown; per API (chat completions, Anthropic Messages, Responses) and
//! for what it logs. The set-ups and readers they share live in `support`. No sleeps for
//! synchronisation and no timing assertions: waits are on signals, bounded by a hang guard.

mod anthropic;
mod logs;
mod proxy;
mod responses;
mod support;
