//! [`Proxy`]: built once from the config and the pool; assembles the tower stack.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use credential_pool::Pool;
use http::{HeaderMap, Request, Response};
use hyper::body::Body;
use tower::{Service, ServiceBuilder};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing::field::Empty;
use usage_ledger::Recorder;

use crate::config::ServerConfig;
use crate::conversation::Conversations;
use crate::error::BuildError;
use crate::layers::auth::{ClientAuthLayer, ClientKeys};
use crate::layers::body_limit::BodyLimitLayer;
use crate::layers::browser::{BrowserGuardLayer, BrowserPolicy};
use crate::layers::request_id::{RequestIdLayer, X_REQUEST_ID};
use crate::live::Live;
use crate::meter::UsageSink;
use crate::mount::Mount;
use crate::reload::{Fixed, Parts, Reloader};
use crate::request_body::BodyReader;
use crate::routes::{Router, State};
use crate::stream_error::StreamError;
use credential_pool::Credential;

/// The proxy: configuration, the credential pool, and the one upstream HTTP client.
pub struct Proxy {
    /// The config it was built with; what a reload cannot change comes from here.
    pub(crate) config: ServerConfig,
    pub(crate) state: Arc<Live<State>>,
    keys: Arc<Live<ClientKeys>>,
    browsers: Arc<Live<BrowserPolicy>>,
    fixed: Arc<Fixed>,
    /// Routes served beside the API ([`Proxy::mount`]).
    pub(crate) mount: Option<Arc<dyn Mount>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds the proxy: checks the config and builds the upstream HTTP client once.
    ///
    /// # Errors
    ///
    /// [`BuildError`] for an empty or twice-given client key, `request_retry == 0`, a Qwen client version that
    /// cannot go in a header, an unusable upstream proxy URL, an allowed origin that is not
    /// one, no connections, no time to read a body or too small a body memory budget, or a
    /// client that cannot be built.
    pub fn new(config: ServerConfig, pool: Arc<Pool<Credential>>) -> Result<Proxy, BuildError> {
        Self::recording(config, pool, Recorder::disabled())
    }

    /// Builds the proxy as [`Proxy::new`] does, counting every finished request with `usage`
    /// (the usage ledger's recorder).
    ///
    /// # Errors
    ///
    /// As [`Proxy::new`].
    pub fn recording(
        config: ServerConfig,
        pool: Arc<Pool<Credential>>,
        usage: Recorder,
    ) -> Result<Proxy, BuildError> {
        if config.max_connections == 0 {
            return Err(BuildError::NoConnections);
        }
        if config.body_read_timeout.is_zero() {
            return Err(BuildError::NoBodyTime);
        }
        if config.body_memory_budget < 1024 * 1024 {
            return Err(BuildError::BodyMemoryBudget {
                budget: config.body_memory_budget,
            });
        }
        let fixed = Fixed {
            usage: UsageSink::new(usage, Arc::clone(&pool)),
            pool,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            bodies: Arc::new(BodyReader::new(
                config.max_body_bytes,
                config.body_read_timeout,
                config.body_memory_budget,
            )),
            conversations: Conversations::default(),
            probe_wake: Arc::new(tokio::sync::Notify::new()),
        };
        let parts = Parts::build(&config, &fixed, None)?;
        Ok(Proxy {
            state: Live::new(parts.state),
            keys: Live::new(parts.keys),
            browsers: Live::new(parts.browsers),
            config,
            fixed: Arc::new(fixed),
            mount: None,
        })
    }

    /// Serves `mount`'s routes beside the API (see [`Mount`]).
    #[must_use]
    pub fn mount(mut self, mount: Arc<dyn Mount>) -> Self {
        self.mount = Some(mount);
        self
    }

    /// A handle that applies a new config to this proxy while it serves (see
    /// [`Reloader::reload`]).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            running: self.config.clone(),
            state: Arc::clone(&self.state),
            keys: Arc::clone(&self.keys),
            browsers: Arc::clone(&self.browsers),
            fixed: Arc::clone(&self.fixed),
        }
    }

    /// The whole tower stack as a service, for [`serve`](Proxy::serve) and for in-process
    /// tests (`tower::ServiceExt::oneshot`). Never fails: every error is an answer.
    ///
    /// Layers, outermost first:
    ///
    /// 1. `RequestIdLayer` — keeps the client's `x-request-id`, or sets a new UUID v4 on the
    ///    request, and puts the same id on the response, the inner layers' own 401/413
    ///    answers included.
    /// 2. `TraceLayer` (tower-http) — one DEBUG `request` span per request with `request_id`,
    ///    `method` and `path` (never the query: it may hold `?key=`). Inner code records
    ///    `model` (chat handler), `account` (the label of the credential tried last — never a
    ///    token), `finish_reason`, `prompt_tokens` and `completion_tokens` (from the answer
    ///    or stream); this layer records `status` and `latency_ms` (time to the response
    ///    head) and logs the response at DEBUG, a 5xx at WARN and the end of a body at DEBUG
    ///    (a stream aborted mid-way is logged at WARN by the upstream body, inside this span).
    /// 3. `BrowserGuardLayer` — what web pages may do: 403 for an `Origin` not in
    ///    `allowed_origins` (keys or not), the answer to an allowed origin's CORS preflight and
    ///    CORS headers on its answers; without keys, 403 for a `Host` that is not loopback
    ///    (DNS rebinding) and 415 for a body type a page sends without a preflight
    ///    (`text/plain`, forms).
    /// 4. `ClientAuthLayer` — 401 unless the request presents a configured client key
    ///    (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`, `?key=`; constant-time
    ///    comparison), except on the probes `/healthz`, `/` and `/api/hello`; off when no keys
    ///    are configured.
    /// 5. `BodyLimitLayer` — 413 when `Content-Length` exceeds `max_body_bytes`, before the
    ///    body is read; otherwise wraps the body in `Limited` so reading past the limit (a
    ///    chunked body) is also 413.
    /// 6. `Router` — 404 for unknown paths, 405 for wrong methods, then the handlers; the chat
    ///    handler answers 400 to a malformed JSON body and forwards the rest upstream. The
    ///    handlers read bodies with `BodyReader` (`request_body`): 408 past
    ///    `body_read_timeout`, and a share of `body_memory_budget` held while the body is
    ///    processed.
    pub fn service<B>(
        &self,
    ) -> impl Service<
        Request<B>,
        Response = Response<impl Body<Data = Bytes, Error = StreamError> + Send + 'static>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(make_span::<B>)
                    .on_response(on_response::<crate::body::ProxyBody>)
                    .on_eos(on_eos)
                    .on_failure(on_failure),
            )
            .layer(BrowserGuardLayer::new(Arc::clone(&self.browsers)))
            .layer(ClientAuthLayer::new(Arc::clone(&self.keys)))
            .layer(BodyLimitLayer::new(self.config.max_body_bytes))
            .service(Router::new(Arc::clone(&self.state)))
    }
}

fn make_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // DEBUG: at the default INFO level the span costs nothing; warnings name the account and
    // model themselves. `CLIPROXY_LOG=debug` (or `proxy_server=debug`) turns on the
    // per-request span and its line.
    tracing::debug_span!(
        "request",
        request_id,
        method = %request.method(),
        path = request.uri().path(),
        client = Empty,
        model = Empty,
        account = Empty,
        status = Empty,
        latency_ms = Empty,
        finish_reason = Empty,
        prompt_tokens = Empty,
        completion_tokens = Empty,
    )
}

fn on_response<B>(response: &Response<B>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record(
        "latency_ms",
        u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
    );
    // Per-request lines cost a formatted write each: they are DEBUG (`CLIPROXY_LOG=debug`);
    // failures are logged at WARN by the layers that see them.
    tracing::debug!("response");
}

fn on_eos(_: Option<&HeaderMap>, stream_duration: Duration, _: &Span) {
    tracing::debug!(
        stream_ms = u64::try_from(stream_duration.as_millis()).unwrap_or(u64::MAX),
        "stream complete"
    );
}

fn on_failure(failure: ServerErrorsFailureClass, _: Duration, _: &Span) {
    tracing::warn!(%failure, "request failed");
}
