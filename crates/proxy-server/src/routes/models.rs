//! `GET /v1/models`: the configured models, every model a credential names, and the model
//! aliases (as their patterns), in OpenAI's list shape.

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
        .chain(state.upstream.aliases().patterns().map(str::to_owned))
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
