//! The management side of `cliproxy serve`: the JSON API under `/v0/management/`, `GET
//! /metrics` (Prometheus) and `GET /dashboard` (one embedded page), served beside the API
//! through proxy-server's [`Mount`], behind their own key.
//!
//! Use: build [`Metrics`] first (the usage ledger's flusher feeds it,
//! `FlusherHandle::observe`), then [`Management::new`] with the accounts, the pool and
//! [`ManagementSettings`], and mount it on the proxy (`Proxy::mount`).
//!
//! Invariants:
//! - Without a management key every route here is 404, except `/metrics` for loopback
//!   clients. With one, each needs it (`access`), compared in constant time; five wrong keys
//!   lock an address out for 15 minutes; peers that are not loopback are refused unless
//!   `allow-remote` is on; requests from other web pages (`Origin`) are refused.
//! - No answer holds a token, a refresh token or a client key. Emails and file names are
//!   shown: they are the operator's data, behind the key.
//! - Changes go through the code the commands use (account-store for the auth dir or database, the account
//!   runtime's refresh task, auth-core's device grant), never around it.
//! - Nothing here is on the request path of the API: metrics are fed by the ledger's flusher.
//!
//! Module order: `lib.rs` → `routes.rs` → `credentials.rs`, `logins.rs`, `dashboard.rs`,
//! `access.rs` → `metrics.rs`, `key.rs`, `lockout.rs`, `reply.rs`; `metrics.rs` →
//! `bucket_histogram.rs`.

mod access;
mod bucket_histogram;
mod credentials;
mod dashboard;
mod key;
mod lockout;
mod logins;
mod metrics;
mod reply;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use account_runtime::Accounts;
use auth_core::{OAuthClient, TokioClock};
use bytes::Bytes;
use credential_pool::{BoxFuture, Credential, Pool};
use http::{Request, Response};
use hyper::body::Incoming;
use proxy_server::Mount;

pub use access::KEY_HEADER;
pub use key::{KeyError, ManagementKey};
pub use lockout::{LOCKOUT, MAX_FAILURES};
pub use metrics::Metrics;

/// What the management side needs from the config.
#[derive(Debug, Clone)]
pub struct ManagementSettings {
    /// `management-key`; `None` turns the management routes off (404).
    pub key: Option<ManagementKey>,
    /// `[management] allow-remote`: answer peers that are not loopback.
    pub allow_remote: bool,
    /// The usage ledger's database, which `/v0/management/usage` reads.
    pub usage_db: cli::usage::UsageDb,
    /// The effective config, secrets already redacted, for `/v0/management/config`.
    pub effective_config: serde_json::Value,
    /// The Qwen OAuth client device logins use.
    pub oauth: OAuthClient,
    /// The clock their polls wait on.
    pub clock: TokioClock,
}

/// The management routes, mounted beside the API.
pub struct Management {
    state: Arc<routes::State>,
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management").finish_non_exhaustive()
    }
}

impl Management {
    /// The management routes over `accounts` and `pool`, reporting `metrics`.
    pub fn new(
        settings: ManagementSettings,
        accounts: Arc<Accounts>,
        pool: Arc<Pool<Credential>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            state: routes::State::new(settings, accounts, pool, metrics),
        }
    }
}

impl Mount for Management {
    fn claims(&self, path: &str) -> bool {
        routes::claims(path)
    }

    fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, Response<Bytes>> {
        let state = Arc::clone(&self.state);
        Box::pin(async move { routes::serve(&state, request, peer).await })
    }
}
