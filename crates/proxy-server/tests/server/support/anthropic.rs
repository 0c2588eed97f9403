//! Anthropic Messages requests as the Anthropic SDKs send them.

use std::sync::Arc;

use bytes::Bytes;
use credential_pool::{Credential, Pool};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

use super::{Answer, MODEL, call, default_proxy};

/// A small Messages request for `model`.
pub fn message_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "system": [{ "type": "text", "text": "You are terse.", "cache_control": { "type": "ephemeral" } }],
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hello" }] }],
    })
}

/// `POST path` with `body` as JSON, with the headers every Anthropic SDK sends.
pub fn post(path: &str, body: &Value) -> Request<Full<Bytes>> {
    post_raw(path, body.to_string())
}

/// `POST path` with `body` as it is, with the headers every Anthropic SDK sends.
pub fn post_raw(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(body.into()))
        .expect("a request")
}

/// Sends [`message_body`] for [`MODEL`] through a default proxy over `pool`; reads the answer.
pub async fn send_message(pool: &Arc<Pool<Credential>>, stream: bool) -> Answer {
    let request = post("/v1/messages", &message_body(MODEL, stream));
    call(&default_proxy(pool), request).await
}
