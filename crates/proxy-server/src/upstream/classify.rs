//! What an upstream answer means for the request, decided before anything reaches the client:
//! success, an error to pass to the client as it is, or a failure of this credential that
//! another credential (or a refreshed token) may not have.

use std::fmt;
use std::time::Duration;

use api_translate::quote::client_text;
use credential_pool::UpstreamSaid;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Why one attempt with one credential failed. None of these carries a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Quota or rate limit: the credential cools down for this model, or, for a quota of the
    /// day (`daily`: `insufficient_quota` and the like), leaves rotation until it resets.
    Quota {
        status: StatusCode,
        retry_after: Option<Duration>,
        message: Option<String>,
        daily: bool,
    },
    /// 403 that is not about quota: the upstream refuses the credential.
    Forbidden { message: Option<String> },
    /// 401 from the upstream (after a refresh, when one was possible).
    Unauthorized {
        message: Option<String>,
        /// Why no fresh token could be had, when a refresh was tried and failed.
        refresh: Option<String>,
    },
    /// The refresh token is dead; the credential was taken out of rotation.
    Relogin,
    /// 5xx, or a status the proxy cannot use (e.g. a redirect).
    Server {
        status: StatusCode,
        message: Option<String>,
    },
    /// An HTML page (WAF, captcha, proxy error page) instead of JSON.
    Html { status: StatusCode },
    /// A success whose body is not whole JSON (cut off when the connection closed).
    NotJson { status: StatusCode },
    /// No answer: connection refused, reset, TLS failure, broken body.
    Unreachable { error: String },
    /// No answer headers, or no body chunk, within the idle timeout.
    Timeout { after: Duration },
    /// The token was refreshed after a 401, but the credential is at its rate cap.
    RateCapped,
    /// The token cannot be put in a header.
    BadToken,
    /// The credential's base URL does not make a request URL.
    BadBaseUrl { base_url: String },
    /// A non-streaming answer larger than the proxy holds in memory.
    Oversized { limit: usize },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quota {
                status,
                message,
                daily,
                ..
            } => write!(
                f,
                "{} ({status}{})",
                if *daily {
                    "quota of the day used up"
                } else {
                    "quota or rate limit"
                },
                said(message.as_deref())
            ),
            Self::Forbidden { message } => {
                write!(f, "credential refused (403{})", said(message.as_deref()))
            }
            Self::Unauthorized { message, refresh } => {
                write!(f, "token refused (401{})", said(message.as_deref()))?;
                match refresh {
                    Some(refresh) => write!(f, "; {refresh}"),
                    None => Ok(()),
                }
            }
            Self::Relogin => f.write_str("the account needs a new login"),
            Self::Server { status, message } => {
                write!(f, "upstream error ({status}{})", said(message.as_deref()))
            }
            Self::Html { status } => write!(f, "an HTML page instead of JSON ({status})"),
            Self::NotJson { status } => write!(f, "a body that is not whole JSON ({status})"),
            Self::Unreachable { error } => write!(f, "no answer: {error}"),
            Self::Timeout { after } => write!(f, "no answer within {} s", after.as_secs()),
            Self::RateCapped => {
                f.write_str("token refreshed, but the credential is at its requests-per-minute cap")
            }
            Self::BadToken => f.write_str("the token has characters a header cannot carry"),
            Self::BadBaseUrl { base_url } => write!(f, "the base URL `{base_url}` is not usable"),
            Self::Oversized { limit } => write!(f, "an answer larger than {limit} bytes"),
        }
    }
}

fn said(message: Option<&str>) -> String {
    message.map_or_else(String::new, |message| format!(": {message}"))
}

/// What a complete upstream answer with a non-success status means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The request itself is wrong; the client gets the answer as it is.
    PassThrough,
    /// A failure of this credential; see [`Failure`].
    Fail(Failure),
}

/// Classifies an error answer from its status, headers and (bounded) body.
pub(crate) fn error_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
    if is_html(headers, body) {
        return Verdict::Fail(Failure::Html { status });
    }
    let error = ErrorBody::parse(body);
    let message = error.message.clone();
    let daily = error.is_quota();
    if status == StatusCode::TOO_MANY_REQUESTS || (status == StatusCode::FORBIDDEN && daily) {
        return Verdict::Fail(Failure::Quota {
            status,
            retry_after: retry_after(headers),
            message,
            daily,
        });
    }
    if status == StatusCode::FORBIDDEN {
        return Verdict::Fail(Failure::Forbidden { message });
    }
    if status == StatusCode::UNAUTHORIZED {
        return Verdict::Fail(Failure::Unauthorized {
            message,
            refresh: None,
        });
    }
    if status.is_client_error() {
        return Verdict::PassThrough;
    }
    Verdict::Fail(Failure::Server { status, message })
}

/// Whether an answer is an HTML page: by its content type, or by a body starting with `<`.
pub(crate) fn is_html(headers: &HeaderMap, body: &[u8]) -> bool {
    let html_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .get(..9)
                .is_some_and(|start| start.eq_ignore_ascii_case("text/html"))
        });
    html_type || body.trim_ascii_start().first() == Some(&b'<')
}

/// What an answer's headers say about the credential's limits (`x-ratelimit-*`,
/// `Retry-After`), when they say anything.
pub(crate) fn upstream_said(headers: &HeaderMap) -> Option<UpstreamSaid> {
    // One pass over the few headers an answer has, before seven lookups by name.
    let says_anything = headers
        .keys()
        .any(|name| name == RETRY_AFTER || name.as_str().starts_with("x-ratelimit-"));
    if !says_anything {
        return None;
    }
    UpstreamSaid::from_headers(|name| headers.get(name)?.to_str().ok())
}

/// `Retry-After` in delta-seconds (an HTTP date is not used by these upstreams and is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// The parts of an error body that matter: OpenAI's `{"error":{"code","message"}}` or
/// DashScope's top-level `{"code","message"}`.
#[derive(Debug, Default)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        let source = match value.get("error") {
            Some(error @ Value::Object(_)) => error,
            _ => &value,
        };
        // Quoted to clients and logs: one line, cut to a few hundred characters.
        let text = |field: &str| source.get(field).and_then(Value::as_str).map(client_text);
        Self {
            code: text("code"),
            message: text("message")
                .or_else(|| value.get("error").and_then(Value::as_str).map(client_text)),
        }
    }

    fn is_quota(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("insufficient_quota" | "quota_exceeded")
        ) || self.message.as_deref().is_some_and(|message| {
            message
                .to_ascii_lowercase()
                .contains("free allocated quota exceeded")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_translate::quote::MAX_QUOTED_CHARS;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    fn classify(status: u16, pairs: &[(&'static str, &'static str)], body: &str) -> Verdict {
        let status = StatusCode::from_u16(status).expect("a status");
        error_answer(status, &headers(pairs), body.as_bytes())
    }

    const QUOTA: &str = r#"{"error":{"code":"insufficient_quota","message":"Free allocated quota exceeded.","type":"insufficient_quota"}}"#;

    #[test]
    fn quota_errors_cool_the_credential_down() {
        let Verdict::Fail(Failure::Quota {
            retry_after,
            message,
            ..
        }) = classify(429, &[("retry-after", "17")], QUOTA)
        else {
            panic!("429 is a quota failure");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(17)));
        assert_eq!(message.as_deref(), Some("Free allocated quota exceeded."));
        assert!(matches!(
            classify(403, &[], QUOTA),
            Verdict::Fail(Failure::Quota { .. })
        ));
        assert!(matches!(
            classify(
                403,
                &[],
                r#"{"error":{"code":"quota_exceeded","message":"x"}}"#
            ),
            Verdict::Fail(Failure::Quota { .. })
        ));
        assert!(matches!(
            classify(
                403,
                &[],
                r#"{"code":"x","message":"FREE ALLOCATED QUOTA EXCEEDED"}"#
            ),
            Verdict::Fail(Failure::Quota { .. })
        ));
        assert!(matches!(
            classify(429, &[], "not json"),
            Verdict::Fail(Failure::Quota { .. })
        ));
    }

    #[test]
    fn a_forbidden_answer_that_is_not_quota_refuses_the_credential() {
        assert!(matches!(
            classify(
                403,
                &[],
                r#"{"error":{"code":"access_denied","message":"no"}}"#
            ),
            Verdict::Fail(Failure::Forbidden { message: Some(m) }) if m == "no"
        ));
    }

    #[test]
    fn other_client_errors_pass_through() {
        assert_eq!(
            classify(400, &[], r#"{"error":{"message":"bad"}}"#),
            Verdict::PassThrough
        );
        assert_eq!(classify(404, &[], ""), Verdict::PassThrough);
    }

    #[test]
    fn unauthorized_server_errors_and_html() {
        assert!(matches!(
            classify(
                401,
                &[],
                r#"{"error":{"code":"invalid_api_key","message":"m"}}"#
            ),
            Verdict::Fail(Failure::Unauthorized { .. })
        ));
        assert!(matches!(
            classify(503, &[], "{}"),
            Verdict::Fail(Failure::Server { .. })
        ));
        assert!(matches!(
            classify(302, &[], ""),
            Verdict::Fail(Failure::Server { .. })
        ));
        assert!(matches!(
            classify(403, &[("content-type", "text/html; charset=utf-8")], "x"),
            Verdict::Fail(Failure::Html { .. })
        ));
        assert!(matches!(
            classify(429, &[("content-type", "application/json")], "\n  <html>"),
            Verdict::Fail(Failure::Html { .. })
        ));
    }

    #[test]
    fn retry_after_is_delta_seconds_only() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", " 5 ")])),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
    }

    #[test]
    fn long_messages_are_cut_and_control_characters_removed() {
        let long = "x".repeat(1000);
        for body in [
            format!(r#"{{"error":{{"message":"{long}"}}}}"#),
            format!(r#"{{"error":"{long}"}}"#),
        ] {
            let Verdict::Fail(Failure::Server { message, .. }) = classify(500, &[], &body) else {
                panic!("500 is a server failure");
            };
            let message = message.expect("a message");
            assert_eq!(message.chars().count(), MAX_QUOTED_CHARS + 1, "{body}");
            assert!(message.ends_with('…'));
        }
        let Verdict::Fail(Failure::Server { message, .. }) = classify(
            500,
            &[],
            r#"{"error":{"message":"line one\nINFO forged log line\u001b[2J"}}"#,
        ) else {
            panic!("500 is a server failure");
        };
        assert_eq!(
            message.as_deref(),
            Some("line one INFO forged log line [2J")
        );
    }
}
