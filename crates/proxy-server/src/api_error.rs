//! Errors as clients see them: an HTTP status and an OpenAI error body
//! `{"error":{"message","type","code"}}` whose message says what happened and what to do —
//! or, for Anthropic clients ([`ErrorShape::Anthropic`], paths under `/v1/messages`), the
//! Anthropic body `{"type":"error","error":{"type","message"}}` with the same status,
//! message and headers.

use std::time::Duration;

use api_translate::anthropic;
use api_translate::responses::Refusal;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::ProxyBody;

/// `type` of errors caused by the request or its credentials.
pub(crate) const INVALID_REQUEST: &str = "invalid_request_error";
/// `type` of errors caused by quota and rate limits.
pub(crate) const RATE_LIMIT: &str = "rate_limit_error";
/// `type` of errors about what the client's key may not do.
pub(crate) const PERMISSION: &str = "permission_error";
/// `type` of errors caused by the proxy or the upstream.
pub(crate) const SERVER_ERROR: &str = "server_error";

/// An error answer for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Sent as `Retry-After` in whole seconds, rounded up.
    pub(crate) retry_after: Option<Duration>,
    /// Extra header (e.g. `Allow` on 405, `WWW-Authenticate` on 401); boxed, since most
    /// errors have none and the error travels in every handler's `Result`.
    pub(crate) header: Option<Box<(header::HeaderName, HeaderValue)>>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
            header: None,
        }
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub(crate) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.header = Some(Box::new((name, value)));
        self
    }

    /// 404 for a path the proxy does not serve.
    pub(crate) fn unknown_route(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "unknown_url",
            format!(
                "unknown URL: {method} {path}; this proxy serves GET /v1/models, \
                 POST /v1/chat/completions, POST /v1/responses and POST /v1/messages (point \
                 OpenAI clients at http://<host>:<port>/v1, Anthropic clients at \
                 http://<host>:<port>)"
            ),
        )
    }

    /// 405 for a known path with another method; `allow` lists the methods it takes.
    pub(crate) fn method_not_allowed(
        method: &http::Method,
        path: &str,
        allow: &'static str,
    ) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID_REQUEST,
            "method_not_allowed",
            format!("{path} does not take {method}; use {allow}"),
        )
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
    }

    /// 413 for a body over `max` bytes.
    pub(crate) fn body_too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            "request_too_large",
            format!(
                "the request body is larger than the {} this proxy accepts; send a smaller \
                 request (fewer or smaller messages and images) or raise `max-body-bytes` in \
                 the proxy's config",
                human_bytes(max)
            ),
        )
    }

    /// 400 for a body that is not what the route expects.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, code, message)
    }

    /// The answer to send, as OpenAI error JSON.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        self.into_response_as(ErrorShape::OpenAi)
    }

    /// The answer to send, with the error body `shape` (headers are the same in both).
    pub(crate) fn into_response_as(self, shape: ErrorShape) -> Response<ProxyBody> {
        let body = match shape {
            ErrorShape::OpenAi => json!({
                "error": { "message": self.message, "type": self.kind, "code": self.code }
            }),
            ErrorShape::Anthropic => anthropic::error_body(self.status, &self.message),
        };
        let mut response = json_response(self.status, &body);
        if let Some(retry_after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(retry_after).into());
        }
        if let Some(extra) = self.header {
            let (name, value) = *extra;
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// A Responses request cliproxy cannot translate: the status and `type` api-translate
/// documents for every refusal, with its code and message.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::new(
            Refusal::STATUS,
            Refusal::ERROR_TYPE,
            refusal.code,
            refusal.message,
        )
    }
}

/// The error body format a client expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorShape {
    /// `{"error":{"message","type","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`, with Anthropic's error types.
    Anthropic,
}

impl ErrorShape {
    /// Anthropic under `/v1/messages` (the Messages API), OpenAI everywhere else.
    pub(crate) fn for_path(path: &str) -> Self {
        let rest = path.strip_prefix("/v1/messages");
        if rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
            Self::Anthropic
        } else {
            Self::OpenAi
        }
    }
}

/// `status` with `body` serialized as JSON.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After: 0` invites a hot loop).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// A size for people: whole MiB or KiB when exact, else MiB with one decimal from 1 MiB up,
/// else bytes.
pub(crate) fn human_bytes(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else if bytes >= MIB {
        #[allow(clippy::cast_precision_loss, reason = "one decimal is shown")]
        let mib = bytes as f64 / MIB as f64;
        format!("{mib:.1} MiB")
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(41_200)), 42);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn only_messages_paths_get_the_anthropic_shape() {
        for path in ["/v1/messages", "/v1/messages/", "/v1/messages/count_tokens"] {
            assert_eq!(ErrorShape::for_path(path), ErrorShape::Anthropic, "{path}");
        }
        for path in [
            "/v1/messagesx",
            "/v1/chat/completions",
            "/v1/models",
            "/messages",
        ] {
            assert_eq!(ErrorShape::for_path(path), ErrorShape::OpenAi, "{path}");
        }
    }

    #[test]
    fn both_shapes_keep_status_and_headers() {
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            RATE_LIMIT,
            "rate",
            "slow down",
        )
        .with_retry_after(Some(Duration::from_millis(2500)));
        for shape in [ErrorShape::OpenAi, ErrorShape::Anthropic] {
            let response = error.clone().into_response_as(shape);
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        }
    }

    #[test]
    fn refusals_are_bad_requests_with_their_code_and_message() {
        let refused = api_translate::responses::to_chat(
            &json!({ "model": "m", "input": "hi", "previous_response_id": "resp_1" }),
        )
        .expect_err("cliproxy stores no responses");
        let error = ApiError::from(refused.clone());
        assert_eq!(
            error,
            ApiError::bad_request(refused.code, refused.message.clone())
        );
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.kind, INVALID_REQUEST);
    }

    #[test]
    fn sizes_are_readable() {
        assert_eq!(human_bytes(64 * 1024 * 1024), "64 MiB");
        assert_eq!(human_bytes(2048), "2 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 100), "3.0 MiB");
    }
}
