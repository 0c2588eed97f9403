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
use http::{Response, StatusCode};
use serde_json::json;
use tracing::Span;
use usage_ledger::Api;

use super::{Posted, State, check_model};
use crate::api_error::{ApiError, ErrorShape, SERVER_ERROR, json_response};
use crate::body::ProxyBody;
use crate::translated::TranslatedBody;
use crate::upstream::{Answer, ChatRequest, record_completion, set_event_stream_headers};

pub(super) async fn create(state: &State, posted: Posted) -> Response<ProxyBody> {
    serve(state, posted)
        .await
        .unwrap_or_else(|error| error.into_response_as(ErrorShape::Anthropic))
}

pub(super) fn count_tokens(posted: Posted) -> Response<ProxyBody> {
    count(&posted.bytes).unwrap_or_else(|error| error.into_response_as(ErrorShape::Anthropic))
}

async fn serve(state: &State, posted: Posted) -> Result<Response<ProxyBody>, ApiError> {
    let Posted {
        id,
        client,
        conversation,
        bytes,
        charge,
    } = posted;
    let request = parse(&bytes, Endpoint::Create)?;
    drop(bytes);
    let upstream_model = state.upstream.resolve_alias(request.model()).to_owned();
    check_model(&client, request.model(), &upstream_model)?;
    let chat = request.into_chat().map_err(bad_request)?;
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
        .chat(
            ChatRequest::from_json(
                Api::Messages,
                &upstream_model,
                chat.stream,
                chat.json,
                chat.reasoning,
                id,
            )
            .routed(client, conversation),
        )
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
            set_event_stream_headers(response.headers_mut());
            Ok(response)
        }
    }
}

fn count(bytes: &[u8]) -> Result<Response<ProxyBody>, ApiError> {
    let request = parse(bytes, Endpoint::CountTokens)?;
    let chat = request.into_chat().map_err(bad_request)?;
    let tokens = anthropic::estimate_tokens(&chat.json);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "input_tokens": tokens }),
    ))
}

/// Checks the request; records its model on the request's span.
fn parse(bytes: &[u8], endpoint: Endpoint) -> Result<MessagesRequest, ApiError> {
    let request = MessagesRequest::parse(bytes, endpoint).map_err(bad_request)?;
    Span::current().record("model", request.model());
    Ok(request)
}

fn bad_request(error: RequestError) -> ApiError {
    ApiError::bad_request(error.code(), error.to_string())
}
