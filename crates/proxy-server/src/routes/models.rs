//! `GET /v1/models`: the configured models, every model a credential names, and the exact
//! model aliases, in OpenAI's list shape. Glob aliases (`claude-*`) are not models a client
//! can ask for by that name, so they are not listed.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::State;
use crate::api_error::json_response;
use crate::body::ProxyBody;

pub(super) fn list(state: &State) -> Response<ProxyBody> {
    let mut ids: Vec<String> = Vec::with_capacity(state.models.len());
    for id in state
        .models
        .iter()
        .cloned()
        .chain(state.upstream.pool().models())
        .chain(
            state
                .upstream
                .aliases()
                .patterns()
                .filter(|pattern| !pattern.contains('*'))
                .map(str::to_owned),
        )
    {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let data: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({ "id": id, "object": "model", "created": state.created, "owned_by": "cliproxy" }))
        .collect();
    json_response(StatusCode::OK, &json!({ "object": "list", "data": data }))
}
