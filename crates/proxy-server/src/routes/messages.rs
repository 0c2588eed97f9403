//! `POST /v1/messages` (the Anthropic Messages API; Claude Code adds `?beta=true`, which
//! changes nothing here) and `POST /v1/messages/count_tokens`.
//!
//! A message request is checked, mapped to a chat-completions request
//! ([`api_translate::anthropic`]) and served by `Upstream::chat` like any chat request
//! (selection, failover, retries); its answer is mapped back: a whole completion to an
//! Anthropic message, a stream event by event, an upstream error to an Anthropic error with
//! the same status. `count_tokens` answers a local estimate without an upstream request.
//! Every error here is Anthropic error JSON.

use api_translate::anthropic::{self, Endpoint, MessageStream, MessagesRequest, RequestError};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Limited;
use hyper::body::Body;
use serde_json::json;
use tracing::Span;

use super::State;
use crate::api_error::{ApiError, ErrorShape, SERVER_ERROR, json_response};
use crate::body::ProxyBody;
use crate::layers::request_id::LoggedId;
use crate::request_body::{Charge, ReadBody};
use crate::translated::TranslatedBody;
use crate::upstream::{Answer, ChatRequest, record_completion};

pub(super) async fn create<B>(state: &State, request: Request<Limited<B>>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve(state, request)
        .await
        .unwrap_or_else(|error| error.into_response_as(ErrorShape::Anthropic))
}

pub(super) async fn count_tokens<B>(
    state: &State,
    request: Request<Limited<B>>,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    count(state, request)
        .await
        .unwrap_or_else(|error| error.into_response_as(ErrorShape::Anthropic))
}

async fn serve<B>(
    state: &State,
    request: Request<Limited<B>>,
) -> Result<Response<ProxyBody>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let id = LoggedId::of(&request);
    let (request, charge) = read(state, request, Endpoint::Create).await?;
    let aliases = state.upstream.aliases();
    let upstream_model = aliases
        .resolve(request.model())
        .unwrap_or(request.model())
        .to_owned();
    let chat = request.into_chat(&upstream_model).map_err(bad_request)?;
    // `message_start` comes before the upstream reports usage: it carries the estimate.
    let estimated_input_tokens = if chat.stream {
        anthropic::estimate_tokens(&chat.json)
    } else {
        0
    };
    let model = chat.model;
    let stops = chat.stop_sequences;
    let answer = state
        .upstream
        .chat(ChatRequest::from_json(
            model.clone(),
            chat.stream,
            chat.json,
            id,
        ))
        .await;
    // The request's body is gone once the upstream answered; a stream does not hold it.
    drop(charge);
    match answer? {
        Answer::Complete { status, body, .. } if status.is_success() => {
            record_completion(&body);
            let message = anthropic::message(&body, &model, &stops).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    SERVER_ERROR,
                    "upstream_invalid_answer",
                    format!(
                        "{error}; the upstream is not OpenAI-compatible or cut its answer; \
                         retry, or check the credential's base URL"
                    ),
                )
            })?;
            Ok(json_response(StatusCode::OK, &message))
        }
        Answer::Complete { status, body, .. } => Ok(json_response(
            status,
            &anthropic::upstream_error_body(status, &body),
        )),
        Answer::Stream { body, .. } => {
            let translator = MessageStream::new(model, stops, estimated_input_tokens);
            let translated = TranslatedBody::new(body, Box::new(translator), Bytes::new());
            let mut response = Response::new(ProxyBody::translated(translated));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
    }
}

async fn count<B>(
    state: &State,
    request: Request<Limited<B>>,
) -> Result<Response<ProxyBody>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (request, _charge) = read(state, request, Endpoint::CountTokens).await?;
    let model = request.model().to_owned();
    let chat = request.into_chat(&model).map_err(bad_request)?;
    let tokens = anthropic::estimate_tokens(&chat.json);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "input_tokens": tokens }),
    ))
}

/// Reads and checks the request; records its model on the request's span. The charge is the
/// body's share of the memory budget: keep it while the request is processed.
async fn read<B>(
    state: &State,
    request: Request<Limited<B>>,
    endpoint: Endpoint,
) -> Result<(MessagesRequest, Charge), ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let ReadBody { bytes, charge } = state.bodies.read(request).await?;
    let request = MessagesRequest::parse(&bytes, endpoint).map_err(bad_request)?;
    Span::current().record("model", request.model());
    Ok((request, charge))
}

fn bad_request(error: RequestError) -> ApiError {
    ApiError::bad_request(error.code(), error.to_string())
}
