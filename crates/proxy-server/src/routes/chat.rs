//! `POST /v1/chat/completions`: reads and checks the client's JSON (without building it into
//! a `Value`), then lets the upstream module serve it (streamed or not) and hands the answer
//! back untouched.

use bytes::Bytes;
use http::Response;
use tracing::Span;

use super::{Posted, State, check_model};
use crate::api_error::ApiError;
use crate::body::ProxyBody;
use crate::client::Client;
use crate::conversation::BodySignals;
use crate::layers::request_id::LoggedId;
use crate::upstream::{Answer, ChatRequest, Malformed, record_completion};

pub(super) async fn completions(state: &State, posted: Posted) -> Response<ProxyBody> {
    let Posted {
        id,
        client,
        conversation,
        bytes,
        charge,
    } = posted;
    // The headers' conversation comes first; the body is looked at only without one.
    let by_body = |signals: &BodySignals<'_>| {
        (state.session_affinity && conversation.is_none())
            .then(|| state.conversations.named_by_body(&client.name, signals))
            .flatten()
    };
    let chat = match parse(state, &client, bytes, id, by_body) {
        Ok(chat) => chat.routed(client, conversation),
        Err(error) => return error.into_response(),
    };
    let answer = state.upstream.chat(chat).await;
    // The request's body is gone once the upstream answered; a stream does not hold it.
    drop(charge);
    match answer {
        Ok(answer) => {
            if let Answer::Complete { status, body, .. } = &answer
                && status.is_success()
            {
                record_completion(body);
            }
            answer.into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The client's request, checked, with its model alias resolved and allowed for `client`.
fn parse(
    state: &State,
    client: &Client,
    bytes: Bytes,
    id: LoggedId,
    conversation: impl FnOnce(&BodySignals<'_>) -> Option<u64>,
) -> Result<ChatRequest, ApiError> {
    let mut chat =
        ChatRequest::from_client(bytes, id, conversation).map_err(|malformed| match malformed {
            Malformed::NotAnObject => ApiError::bad_request(
                "invalid_json",
                "the request body must be a JSON object with `model` and `messages`",
            ),
            Malformed::Json(error) => ApiError::bad_request(
                "invalid_json",
                format!(
                    "the request body is not valid JSON ({error}); send a chat-completions request \
                 object such as {{\"model\": \"coder-model\", \"messages\": [...]}}"
                ),
            ),
            Malformed::NoModel => ApiError::bad_request(
                "missing_model",
                "the request has no `model`; set it to one of the ids GET /v1/models lists",
            ),
        })?;
    Span::current().record("model", chat.model.as_str());
    check_model(
        client,
        &chat.model,
        state.upstream.resolve_alias(&chat.model),
    )?;
    state.upstream.apply_alias(&mut chat)?;
    Ok(chat)
}
