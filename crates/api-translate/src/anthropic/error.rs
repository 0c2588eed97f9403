//! Anthropic error bodies: `{"type":"error","error":{"type","message"}}`, with the error
//! `type` Anthropic uses for each HTTP status (its "Errors" reference): 400
//! `invalid_request_error` (also any other 4xx), 401 `authentication_error`, 403
//! `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
//! `rate_limit_error`, 503 and 529 `overloaded_error`, 500, 502 and any other 5xx `api_error`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::quote::client_text;

/// The Anthropic error `type` for `status`.
pub(crate) fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        status if (400..500).contains(&status) => "invalid_request_error",
        _ => "api_error",
    }
}

/// The error body for `status` and `message`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({
        "type": "error",
        "error": { "type": error_type(status), "message": message },
    })
}

/// The error body for an upstream error answer passed through (`status`, `body` as the
/// upstream sent them): the upstream's message (OpenAI `{"error":{"message"}}`, DashScope
/// `{"message"}`, `{"error": "..."}`, else the body's text), with a hint for model errors.
pub fn upstream_error_body(status: StatusCode, body: &[u8]) -> Value {
    let mut message = upstream_message(body).unwrap_or_else(|| {
        format!(
            "the upstream answered {status} without an error message; check the request and \
             retry"
        )
    });
    if status == StatusCode::NOT_FOUND {
        message.push_str(
            " (set the model — ANTHROPIC_MODEL for Claude Code — to one of the ids GET /v1/models \
             lists)",
        );
    }
    error_body(status, &message)
}

fn upstream_message(body: &[u8]) -> Option<String> {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let nested = value.get("error");
            nested
                .and_then(|error| error.get("message"))
                .or_else(|| value.get("message"))
                .or(nested)
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        }
    }?;
    Some(client_text(&message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_anthropic_types() {
        let cases = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (405, "invalid_request_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in cases {
            let status = StatusCode::from_u16(status).expect("a status");
            assert_eq!(error_type(status), kind, "{status}");
        }
    }

    #[test]
    fn upstream_messages_are_found_in_each_shape() {
        let openai = br#"{"error":{"message":"bad thing","type":"invalid_request_error"}}"#;
        let body = upstream_error_body(StatusCode::BAD_REQUEST, openai);
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad thing"}})
        );
        let dashscope = br#"{"code":"InvalidParameter","message":"top_p out of range"}"#;
        let body = upstream_error_body(StatusCode::BAD_REQUEST, dashscope);
        assert_eq!(body["error"]["message"], "top_p out of range");
        let plain = upstream_error_body(StatusCode::BAD_REQUEST, br#"{"error":"nope"}"#);
        assert_eq!(plain["error"]["message"], "nope");
        let text = upstream_error_body(StatusCode::BAD_REQUEST, b" not json ");
        assert_eq!(text["error"]["message"], "not json");
        let empty = upstream_error_body(StatusCode::BAD_REQUEST, b"");
        assert!(
            empty["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("400"))
        );
    }

    #[test]
    fn model_errors_say_how_to_pick_a_model() {
        let body = upstream_error_body(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"model_not_found","message":"The model `x` does not exist."}}"#,
        );
        assert_eq!(body["error"]["type"], "not_found_error");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("The model `x` does not exist."),
            "{message}"
        );
        assert!(message.contains("GET /v1/models"), "{message}");
    }
}
