//! Sending a chat-completions request upstream with credentials from the pool: selection,
//! per-flavor headers and body shape, classification of the answer, token refresh, failover,
//! and the streamed pass-through.
//!
//! Invariants:
//! - One [`HttpClient`](client::HttpClient) (one connection pool, with the configured or
//!   environment's proxy) serves every request.
//! - Retrying and failover happen only before the first byte reaches the client; once an
//!   [`Answer`] is returned, it is final.
//! - At most `request_retry` upstream requests are sent per client request.
//! - Every upstream answer is reported to the pool, except errors passed through to the
//!   client (the request was wrong, not the credential).

mod aliases;
mod answer;
mod classify;
mod client;
mod errors;
mod forward;
mod headers;
pub(crate) mod observe;
mod probe;
mod request;
pub(crate) mod scan;
mod shape;
mod splice;
pub(crate) mod stream;
mod usage_json;

use std::sync::Arc;
use std::time::Duration;

use credential_pool::Pool;

use crate::api_error::ApiError;
use crate::config::ServerConfig;
use crate::error::BuildError;
use crate::meter::UsageSink;
use credential_pool::Credential;

pub(crate) use aliases::Aliases;
pub(crate) use answer::{Answer, set_event_stream_headers};
pub(crate) use observe::record_completion;
pub(crate) use request::{ChatRequest, Malformed};

use headers::UpstreamHeaders;

/// Everything needed to send requests upstream; shared by all requests.
#[derive(Debug)]
pub(crate) struct Upstream {
    client: client::HttpClient,
    headers: UpstreamHeaders,
    pool: Arc<Pool<Credential>>,
    idle_timeout: Duration,
    attempts: usize,
    aliases: Aliases,
    max_output_tokens: Option<u32>,
    /// When a credential whose quota of the day is used up comes back, without `Retry-After`.
    quota_reset: crate::QuotaReset,
    /// Models a probe may ask for when its credential names none.
    probe_models: Vec<String>,
    /// Wakes the prober when a credential is refused.
    pub(crate) probe_wake: Arc<tokio::sync::Notify>,
    /// Where finished requests are counted.
    usage: UsageSink,
}

impl Upstream {
    pub(crate) fn new(
        config: &ServerConfig,
        pool: Arc<Pool<Credential>>,
        usage: UsageSink,
        probe_wake: Arc<tokio::sync::Notify>,
    ) -> Result<Self, BuildError> {
        if config.request_retry == 0 {
            return Err(BuildError::NoAttempts);
        }
        Ok(Self {
            client: client::HttpClient::new(
                config.upstream_proxy_url.as_deref(),
                config.upstream_proxy_from_env,
                config.upstream_connect_timeout,
            )?,
            headers: UpstreamHeaders::new(&config.qwen_client_version)?,
            pool,
            idle_timeout: config.upstream_idle_timeout,
            attempts: config.request_retry,
            aliases: Aliases::new(&config.model_aliases),
            max_output_tokens: config.max_output_tokens,
            quota_reset: config.quota_reset,
            probe_models: config.models.clone(),
            probe_wake,
            usage,
        })
    }

    pub(crate) fn pool(&self) -> &Pool<Credential> {
        &self.pool
    }

    pub(crate) fn aliases(&self) -> &Aliases {
        &self.aliases
    }

    /// The model `requested` stands for: its alias's target, else itself. Routes resolve it
    /// once, and [`Upstream::chat`] takes requests whose model is final (Qwen's thinking
    /// switch, written per credential, depends on it).
    pub(crate) fn resolve_alias<'a>(&'a self, requested: &'a str) -> &'a str {
        self.aliases.resolve(requested).unwrap_or(requested)
    }

    /// Points a client's chat request at its alias's target, when it names one.
    ///
    /// # Errors
    ///
    /// 400 for a body only the quick read accepted, which must now be parsed.
    pub(crate) fn apply_alias(&self, request: &mut ChatRequest) -> Result<(), ApiError> {
        if let Some(target) = self.aliases.resolve(&request.model)
            && target != request.model
        {
            tracing::debug!(requested = %request.model, model = %target, "model alias applied");
            request.set_model(target).map_err(errors::not_json)?;
        }
        Ok(())
    }
}

/// An error and its sources, joined with `: `.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
