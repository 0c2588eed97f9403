//! Sending one OAuth request and sorting the HTTP answer into the few kinds the flows care
//! about. Never panics on odd bodies, and never copies token values into its descriptions.
//!
//! Bounded: a redirect is an answer of its own, never followed (RFC 9700 §4.11: a 307 would
//! re-POST the refresh token or device code to wherever it points), and no more than
//! [`MAX_ANSWER_BYTES`] of a body are read.

use std::error::Error as _;

use serde_json::{Map, Value};

/// The most of an OAuth answer's body that is read. Real answers are well under 1 KiB.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// What an OAuth endpoint answered.
pub(crate) enum Answer {
    /// A JSON object that is not an OAuth error.
    Json {
        status: u16,
        body: Map<String, Value>,
    },
    /// An OAuth error object `{"error": ..., "error_description": ...}` (any status).
    OAuthError {
        status: u16,
        code: String,
        description: Option<String>,
    },
    /// A 5xx answer that is not a firewall page: worth retrying.
    ServerError { status: u16 },
    /// A firewall/captcha page or any other answer that is not JSON.
    Blocked { status: u16 },
    /// JSON, but not an object, or a non-2xx object without an error code.
    Unexpected { status: u16, detail: String },
    /// A 3xx answer, not followed; `target` is where it pointed (see [`redirect_target`]).
    Redirect { status: u16, target: String },
    /// A body longer than [`MAX_ANSWER_BYTES`]; reading stopped there.
    TooLarge { status: u16 },
}

/// The request never got an answer (connection, TLS, proxy, timeout, cut-off body).
pub(crate) struct TransportError {
    /// A description safe to show: no URL query, no body.
    pub(crate) reason: String,
}

/// Sends `request` with `Accept: application/json` and sorts the answer; `via_proxy` says
/// whether a configured proxy is in the way, for the failure description.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    via_proxy: bool,
) -> Result<Answer, TransportError> {
    let mut response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| describe(&error, via_proxy))?;
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        let target = redirect_target(
            response.url(),
            response.headers().get(reqwest::header::LOCATION),
        );
        return Ok(Answer::Redirect { status, target });
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Ok(Answer::TooLarge { status });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| describe(&error, via_proxy))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(Answer::TooLarge { status });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(classify(status, &body))
}

/// Where a redirect pointed, for the error message: the origin (`scheme://host:port`) of its
/// `Location` resolved against the request URL, without path or query (which could carry
/// anything); or a phrase when there is no usable `Location`.
pub(crate) fn redirect_target(
    request_url: &url::Url,
    location: Option<&reqwest::header::HeaderValue>,
) -> String {
    let Some(location) = location.and_then(|value| value.to_str().ok()) else {
        return "no valid Location".to_owned();
    };
    match request_url.join(location) {
        Ok(target) if target.origin() == request_url.origin() => {
            format!(
                "{} (same server, another path)",
                target.origin().ascii_serialization()
            )
        }
        Ok(target) if target.has_host() => target.origin().ascii_serialization(),
        _ => "an invalid Location".to_owned(),
    }
}

/// Sorts an answer by status and body.
///
/// A body that is not JSON is `Blocked` (a firewall page, whatever its status) unless it is a
/// 5xx without firewall markers, which is a retryable `ServerError` like any other 5xx.
pub(crate) fn classify(status: u16, body: &[u8]) -> Answer {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        if status >= 500 && !looks_like_firewall_page(body) {
            return Answer::ServerError { status };
        }
        return Answer::Blocked { status };
    };
    if status >= 500 {
        return Answer::ServerError { status };
    }
    let Value::Object(object) = value else {
        return Answer::Unexpected {
            status,
            detail: "the answer is JSON but not an object".to_owned(),
        };
    };
    if let Some(code) = object.get("error").and_then(Value::as_str)
        && !object.contains_key("access_token")
    {
        return Answer::OAuthError {
            status,
            code: code.to_owned(),
            description: object
                .get("error_description")
                .and_then(Value::as_str)
                .map(printable),
        };
    }
    if (200..300).contains(&status) {
        Answer::Json {
            status,
            body: object,
        }
    } else {
        Answer::Unexpected {
            status,
            detail: "an error answer without an OAuth error code".to_owned(),
        }
    }
}

/// Alibaba Cloud WAF interstitials carry `aliyun_waf_` markers and a captcha.
fn looks_like_firewall_page(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("aliyun_waf_") || text.contains("captcha")
}

/// A server-supplied description, shortened and stripped of control characters so it fits on
/// one line of an error message.
fn printable(text: &str) -> String {
    const LIMIT: usize = 200;
    let mut shown: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(LIMIT)
        .collect();
    if text.chars().count() > LIMIT {
        shown.push('…');
    }
    shown
}

/// What went wrong, from the kind of error and its innermost cause (an I/O or protocol
/// message); the URL is left out.
fn describe(error: &reqwest::Error, via_proxy: bool) -> TransportError {
    let kind = if error.is_timeout() {
        "the request timed out"
    } else if error.is_connect() {
        "the connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    let mut innermost = None;
    let mut source = error.source();
    while let Some(cause) = source {
        innermost = Some(cause);
        source = cause.source();
    }
    let route = if via_proxy {
        " through the configured proxy"
    } else {
        ""
    };
    let reason = match innermost {
        Some(cause) => format!("{kind}{route}: {cause}"),
        None => format!("{kind}{route}"),
    };
    TransportError { reason }
}

/// Reads a field that should be a non-empty string.
pub(crate) fn string_field(body: &Map<String, Value>, name: &str) -> Option<String> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// Reads a field that should be a whole number of seconds; numeric strings are accepted.
pub(crate) fn seconds_field(body: &Map<String, Value>, name: &str) -> Option<u64> {
    match body.get(name)? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(answer: &Answer) -> String {
        match answer {
            Answer::Json { status, .. } => format!("json {status}"),
            Answer::OAuthError { status, code, .. } => format!("oauth {status} {code}"),
            Answer::ServerError { status } => format!("server {status}"),
            Answer::Blocked { status } => format!("blocked {status}"),
            Answer::Unexpected { status, .. } => format!("unexpected {status}"),
            Answer::Redirect { status, target } => format!("redirect {status} {target}"),
            Answer::TooLarge { status } => format!("too large {status}"),
        }
    }

    #[test]
    fn redirect_targets_show_only_the_origin() {
        let base = url::Url::parse("https://chat.qwen.ai/api/v1/oauth2/token").expect("url");
        let target = |location: &str| {
            redirect_target(
                &base,
                Some(&reqwest::header::HeaderValue::from_str(location).expect("header")),
            )
        };
        assert_eq!(
            target("https://evil.example:8443/steal?refresh_token=x"),
            "https://evil.example:8443"
        );
        assert_eq!(
            target("/elsewhere"),
            "https://chat.qwen.ai (same server, another path)"
        );
        assert_eq!(target("http://[::1"), "an invalid Location");
        assert_eq!(redirect_target(&base, None), "no valid Location");
    }

    #[test]
    fn answers_are_sorted() {
        let cases: [(u16, &str, &str); 9] = [
            (200, r#"{"access_token":"a"}"#, "json 200"),
            (
                400,
                r#"{"error":"authorization_pending"}"#,
                "oauth 400 authorization_pending",
            ),
            (200, r#"{"error":"slow_down"}"#, "oauth 200 slow_down"),
            (503, "<html>Service Unavailable</html>", "server 503"),
            (500, r#"{"error":"server_error"}"#, "server 500"),
            (
                503,
                "<html><script>aliyun_waf_aa</script></html>",
                "blocked 503",
            ),
            (200, "<html>please solve the CAPTCHA</html>", "blocked 200"),
            (403, "Forbidden", "blocked 403"),
            (400, r#"{"message":"nope"}"#, "unexpected 400"),
        ];
        for (status, body, expected) in cases {
            assert_eq!(kind(&classify(status, body.as_bytes())), expected, "{body}");
        }
        assert_eq!(kind(&classify(200, b"[1,2]")), "unexpected 200");
        assert_eq!(kind(&classify(200, b"")), "blocked 200");
    }

    #[test]
    fn descriptions_are_kept_to_one_short_line() {
        let long = format!(
            r#"{{"error":"x","error_description":"a\nb{}"}}"#,
            "c".repeat(500)
        );
        let Answer::OAuthError { description, .. } = classify(400, long.as_bytes()) else {
            panic!("an OAuth error");
        };
        let description = description.expect("a description");
        assert!(!description.contains('\n'));
        assert!(description.chars().count() <= 201);
    }

    #[test]
    fn numbers_may_come_as_strings() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"a": 5, "b": "7", "c": -1, "d": "x"}"#).expect("json");
        assert_eq!(seconds_field(&body, "a"), Some(5));
        assert_eq!(seconds_field(&body, "b"), Some(7));
        assert_eq!(seconds_field(&body, "c"), None);
        assert_eq!(seconds_field(&body, "d"), None);
        assert_eq!(seconds_field(&body, "e"), None);
    }
}
