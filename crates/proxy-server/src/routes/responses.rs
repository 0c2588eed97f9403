//! `POST /v1/responses`: the OpenAI Responses API (Codex CLI's only API) served by the chat
//! upstream. The request is translated to chat completions ([`api_translate::responses`]),
//! served by `Upstream::chat` like any chat request, and its answer translated back: a whole
//! Responses object, or Responses stream events. Upstream error answers pass through as they
//! are (OpenAI error JSON, same status); errors of this route are OpenAI error JSON too.

use api_translate::responses::{self, ResponsesStream, Shell, Translated};
use http::{Response, StatusCode};
use serde_json::Value;
use tracing::Span;
use usage_ledger::Api;

use super::{Posted, State, check_model};
use crate::api_error::{ApiError, SERVER_ERROR, json_response};
use crate::body::ProxyBody;
use crate::translated::TranslatedBody;
use crate::upstream::{Answer, ChatRequest, record_completion, set_event_stream_headers};

pub(super) async fn create(state: &State, posted: Posted) -> Response<ProxyBody> {
    match serve(state, posted).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn serve(state: &State, posted: Posted) -> Result<Response<ProxyBody>, ApiError> {
    let Posted {
        id,
        client,
        conversation,
        bytes,
        charge,
    } = posted;
    let body: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "the request body is not valid JSON ({error}); send a Responses request object \
                 such as {{\"model\": \"coder-model\", \"input\": \"...\"}}"
            ),
        )
    })?;
    let requested = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !requested.is_empty() {
        Span::current().record("model", requested);
    }
    let upstream_model = state.upstream.resolve_alias(requested).to_owned();
    check_model(&client, requested, &upstream_model)?;
    let Translated {
        model: _,
        stream,
        chat,
        echo,
        namespaces,
        reasoning,
    } = responses::to_chat(&body)?;
    let shell = Shell::fresh(echo).with_namespaces(namespaces);
    let chat = ChatRequest::from_json(Api::Responses, &upstream_model, stream, chat, reasoning, id)
        .routed(client, conversation);
    drop((bytes, body));
    let answer = state.upstream.chat(chat).await;
    // The request's body is gone once the upstream answered; a stream does not hold it.
    drop(charge);
    match answer? {
        Answer::Complete { status, body, .. } if status.is_success() => {
            record_completion(&body);
            let completion: Value =
                serde_json::from_slice(&body).map_err(|_| not_a_completion())?;
            let object = responses::from_chat(&completion, &shell).ok_or_else(not_a_completion)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        Answer::Stream { body, .. } => {
            let (translator, opening) = ResponsesStream::start(shell);
            let body = TranslatedBody::new(body, Box::new(translator), opening);
            let mut response = Response::new(ProxyBody::translated(body));
            set_event_stream_headers(response.headers_mut());
            Ok(response)
        }
        // An upstream error the client caused: already OpenAI error JSON.
        error => Ok(error.into_response()),
    }
}

/// 502 for a successful upstream answer that is not a chat completion.
fn not_a_completion() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        SERVER_ERROR,
        "bad_upstream_answer",
        "the upstream's answer is not a chat completion, so it cannot be turned into a \
         Responses object; retry, or check the upstream's base URL",
    )
}
