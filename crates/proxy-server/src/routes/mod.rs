//! The routes, and the router at the bottom of the tower stack.
//!
//! | Method    | Path                   | Module   | Auth |
//! |-----------|------------------------|----------|------|
//! | GET       | `/v1/models`           | `models` | key  |
//! | POST      | `/v1/chat/completions` | `chat`   | key  |
//! | GET, HEAD | `/healthz`             | `health` | none ([`PUBLIC_PATHS`](crate::layers::auth::PUBLIC_PATHS)) |
//! | HEAD      | `/`, `/api/hello`      | `health` | none (connectivity probes of Claude Code) |
//! | POST      | `/v1/messages`         | `messages` | key |
//! | POST      | `/v1/messages/count_tokens` | `messages` | key |
//! | POST      | `/v1/responses`        | `responses` | key |
//!
//! Any other path gets 404, a known path with another method 405 (with `Allow`), both as
//! OpenAI error JSON (Anthropic error JSON under `/v1/messages`).
//!
//! The translation routes turn the client's request into a
//! [`ChatRequest`](crate::upstream::ChatRequest) for `Upstream::chat` (which does selection,
//! failover and retries) and turn its [`Answer`](crate::upstream::Answer) back into their own
//! format (streamed answers event by event, [`TranslatedBody`](crate::translated::TranslatedBody));
//! the mappings themselves live in the api-translate crate ([`api_translate`]).

mod chat;
mod health;
mod messages;
mod models;
mod responses;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Limited;
use hyper::body::Body;
use tower::Service;

use crate::api_error::{ApiError, ErrorShape};
use crate::body::ProxyBody;
use crate::client::Client;
use crate::conversation::Conversations;
use crate::layers::request_id::LoggedId;
use crate::live::Live;
use crate::request_body::{BodyReader, Charge, ReadBody};
use crate::upstream::Upstream;
use credential_pool::BoxFuture;

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) upstream: Upstream,
    /// Models from the config, listed before the pool's.
    pub(crate) models: Vec<String>,
    /// `created` of listed models: when the proxy was built, in Unix seconds.
    pub(crate) created: u64,
    /// How request bodies are read: size, time and memory bounds.
    pub(crate) bodies: Arc<BodyReader>,
    /// Whether requests of one conversation keep to one credential.
    pub(crate) session_affinity: bool,
    /// Names conversations from what requests carry.
    pub(crate) conversations: Conversations,
}

/// 403 unless `client`'s key may ask for `requested`, which its alias turned into `upstream`.
fn check_model(client: &Client, requested: &str, upstream: &str) -> Result<(), ApiError> {
    if client.allows_model(requested, upstream) {
        return Ok(());
    }
    Err(ApiError::new(
        http::StatusCode::FORBIDDEN,
        crate::api_error::PERMISSION,
        "model_not_allowed",
        format!(
            "the client key {:?} may not use the model {requested:?}; ask for one its `models` \
             allow, or ask the proxy's operator to allow this one",
            &*client.name
        ),
    ))
}

/// A POST request as its handler gets it: the body read once, by the router, within its size,
/// time and memory bounds.
pub(crate) struct Posted {
    /// The request's id, for log lines outside its span.
    pub(crate) id: LoggedId,
    /// Who sent it.
    pub(crate) client: Arc<Client>,
    /// The conversation it belongs to, when it names one ([`crate::conversation`]).
    pub(crate) conversation: Option<u64>,
    pub(crate) bytes: Bytes,
    /// The body's share of the memory budget: keep it while the request is processed.
    pub(crate) charge: Charge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Models,
    Health,
    Probe,
    /// A route whose request has a body.
    Post(Post),
}

/// The routes that take a body, which the router reads for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    ChatCompletions,
    Messages,
    CountTokens,
    Responses,
}

impl Route {
    fn find(path: &str) -> Option<Self> {
        match path {
            "/v1/models" => Some(Self::Models),
            "/v1/chat/completions" => Some(Self::Post(Post::ChatCompletions)),
            "/healthz" => Some(Self::Health),
            "/" | "/api/hello" => Some(Self::Probe),
            "/v1/messages" => Some(Self::Post(Post::Messages)),
            "/v1/messages/count_tokens" => Some(Self::Post(Post::CountTokens)),
            "/v1/responses" => Some(Self::Post(Post::Responses)),
            _ => None,
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Self::Models => method == Method::GET,
            Self::Post(_) => method == Method::POST,
            Self::Health => method == Method::GET || method == Method::HEAD,
            Self::Probe => method == Method::HEAD,
        }
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> &'static str {
        match self {
            Self::Models => "GET",
            Self::Post(_) => "POST",
            Self::Health => "GET, HEAD",
            Self::Probe => "HEAD",
        }
    }
}

/// The innermost service: dispatches to the handlers, with the state current when the
/// request arrives.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    state: Arc<Live<State>>,
}

impl Router {
    pub(crate) fn new(state: Arc<Live<State>>) -> Self {
        Self { state }
    }
}

impl<B> Service<Request<Limited<B>>> for Router
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Limited<B>>) -> Self::Future {
        let state = self.state.load();
        Box::pin(async move { Ok(dispatch(&state, request).await) })
    }
}

async fn dispatch<B>(state: &State, request: Request<Limited<B>>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path();
    let Some(route) = Route::find(path) else {
        return ApiError::unknown_route(request.method(), path)
            .into_response_as(ErrorShape::for_path(path));
    };
    if !route.allows(request.method()) {
        return ApiError::method_not_allowed(request.method(), path, route.allow())
            .into_response_as(ErrorShape::for_path(path));
    }
    let post = match route {
        Route::Models => return models::list(state, &Client::of(&request)),
        Route::Health => return health::check(state),
        Route::Probe => return health::probe(),
        Route::Post(post) => post,
    };
    let shape = ErrorShape::for_path(path);
    let id = LoggedId::of(&request);
    let client = Client::of(&request);
    if !client.name.is_empty() {
        tracing::Span::current().record("client", &*client.name);
    }
    let (parts, body) = request.into_parts();
    let posted = match state.bodies.read(body).await {
        Ok(ReadBody { bytes, charge }) => {
            // A chat-completions body is parsed by its handler, which reads the body's
            // signals in the same pass; the others are parsed here for them.
            let conversation = if !state.session_affinity {
                None
            } else if post == Post::ChatCompletions {
                state
                    .conversations
                    .named_by_headers(&client.name, &parts.headers)
            } else {
                state
                    .conversations
                    .key(&client.name, &parts.headers, &bytes)
            };
            Posted {
                id,
                client,
                conversation,
                bytes,
                charge,
            }
        }
        Err(error) => return error.into_response_as(shape),
    };
    match post {
        Post::ChatCompletions => chat::completions(state, posted).await,
        Post::Messages => messages::create(state, posted).await,
        Post::CountTokens => messages::count_tokens(posted),
        Post::Responses => responses::create(state, posted).await,
    }
}
