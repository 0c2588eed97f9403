//! The OpenAI-compatible HTTP proxy: one endpoint in front of a pool of credentials (Qwen
//! OAuth accounts and API keys of OpenAI-compatible upstreams), with client auth, rotation,
//! failover and streaming pass-through. Built on hyper and tower.
//!
//! Use: build a [`Proxy`] from a [`ServerConfig`] and a `credential_pool::Pool<Credential>`
//! (the binary fills the pool with [`Credential`]s whose [`AccessSource`] it implements), check
//! the address with [`ServerConfig::check_bind`], then [`Proxy::serve`] a `TcpListener` (from
//! [`bind`], whose listen backlog holds the connections past `max_connections`). Tests
//! drive [`Proxy::service`] in-process.
//!
//! Invariants:
//! - Tokens never reach logs, error messages or panics: spans and log lines name a credential
//!   by its label; [`Access`] and the config redact their secrets in `Debug`; the client's
//!   `?key=` query is never logged. Messages to clients name no credential (a label can be an
//!   email), file or token-store detail: they carry the request id the log lines have.
//! - Web pages are refused unless their origin is allowed; without keys also requests to a
//!   non-loopback `Host` and bodies a page can send without a CORS preflight.
//! - What clients can hold is bounded: connections, each body's size and time, and the memory
//!   of all bodies in flight.
//! - Client auth fails closed: when keys are configured, every path needs one except the
//!   probes `/healthz`, `/` and `/api/hello`, which reveal nothing; without keys the server
//!   refuses non-loopback addresses.
//! - Every error a client sees is OpenAI error JSON `{"error":{"message","type","code"}}` whose
//!   message says what happened and what to do.
//! - Retries and failover happen only before the first byte of an answer reaches the client,
//!   within `request_retry` upstream requests; an upstream stream is passed through chunk by
//!   chunk, and one that breaks off reaches the client as broken (aborted), never as a clean
//!   end.
//! - A client that goes away drops its response body, which drops the upstream request.
//! - Header values, the upstream HTTP client and the Qwen identity are built once, in
//!   [`Proxy::new`].

mod api_error;
mod body;
mod client;
mod config;
mod conversation;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod glob;
mod layers;
mod live;
mod meter;
mod mount;
mod proxy;
mod recent;
mod redact;
mod reload;
mod request_body;
mod routes;
mod serve;
mod stream_error;
mod translated;
mod upstream;

pub use body::ProxyBody;
pub use config::{ClientKeyConfig, ConfigError, ServerConfig};
pub use credential_pool::{InvalidQuotaReset, QuotaReset};
pub use error::{BuildError, ServeError};
pub use mount::Mount;
pub use proxy::Proxy;
pub use redact::redact_url;
pub use reload::{Reloaded, Reloader};
pub use serve::bind;
pub use stream_error::StreamError;
