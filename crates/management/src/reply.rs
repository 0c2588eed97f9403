//! Answers of the management routes: JSON, text and their errors, each a whole buffer.
//!
//! Errors are `{"error":{"message","code"}}`, the message saying what to do; every answer is
//! `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS};
use http::{Response, StatusCode};
use serde::Serialize;

/// A whole answer of `content_type`.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `value` as JSON.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Bytes> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    with_type(status, "application/json", Bytes::from(body))
}

/// An error answer.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Bytes> {
    json(
        status,
        &serde_json::json!({"error": {"message": message.into(), "code": code}}),
    )
}

/// 404, as for any path the server does not have.
pub fn not_found() -> Response<Bytes> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see docs/management.md",
    )
}

/// 429 for an address locked out after wrong keys, with `Retry-After`.
pub fn locked_out(seconds: u64) -> Response<Bytes> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "locked_out",
        format!(
            "too many wrong management keys from this address; try again in {} min with the right key",
            seconds.div_ceil(60)
        ),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}
