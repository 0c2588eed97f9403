//! Tests of the proxy against the fake Qwen server: in-process through `Proxy::service` where
//! no socket is needed, on real sockets for timeouts, disconnects and shutdown. No sleeps for
//! synchronisation and no timing assertions: waits are on signals, bounded by a hang guard.

mod auth;
mod chat;
mod failover;
mod routes;
mod sockets;
mod upstream_proxy;
