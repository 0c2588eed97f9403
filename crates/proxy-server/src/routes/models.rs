//! `GET /v1/models`: the configured models, every model a credential names, and the exact
//! model aliases, in OpenAI's list shape. Glob aliases (`claude-*`) are not models a client
//! can ask for by that name, so they are not listed. A client key limited to some `models`
//! sees only those.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::State;
use crate::api_error::json_response;
use crate::body::ProxyBody;
use crate::client::Client;

pub(super) fn list(state: &State, client: &Client) -> Response<ProxyBody> {
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
        let upstream = state.upstream.resolve_alias(&id);
        if !ids.contains(&id) && client.allows_model(&id, upstream) {
            ids.push(id);
        }
    }
    let data: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({ "id": id, "object": "model", "created": state.created, "owned_by": "cliproxy" }))
        .collect();
    json_response(StatusCode::OK, &json!({ "object": "list", "data": data }))
}
