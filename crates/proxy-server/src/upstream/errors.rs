//! What a client is told when its request could not be served: every message says what
//! happened and what to do, names no credential (a label can be an email), and ends with the
//! request id that the server's log lines carry, with the details.

use api_translate::quote::client_text;
use credential_pool::Unavailable;
use http::StatusCode;

use super::Aliases;
use super::classify::Failure;
use crate::api_error::{
    ApiError, INVALID_REQUEST, PERMISSION, RATE_LIMIT, SERVER_ERROR, retry_after_secs,
};
use crate::client::{Client, Limited};
use crate::layers::request_id::LoggedId;

/// Where to add capacity, for messages whose remedy is more credentials.
const ADD_CREDENTIALS: &str = "add accounts with `cliproxy login qwen` or more API keys";

/// The client's body passed the quick read but not the full parse the request needs.
pub(super) fn not_json(error: serde_json::Error) -> ApiError {
    ApiError::bad_request(
        "invalid_json",
        format!(
            "the request body is not valid JSON ({error}); check the strings for lone UTF-16 \
             surrogates (\\ud800-\\udfff escapes) and the nesting depth, then send it again"
        ),
    )
}

/// The client's error when `request-retry` attempts all hit limits and another credential
/// could take the request right away: retry now.
pub(super) fn attempts_spent_error(failure: &Failure, attempts: usize) -> ApiError {
    let status = match failure {
        Failure::Quota { status, .. } => status.to_string(),
        _ => "requests-per-minute cap".to_owned(),
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        RATE_LIMIT,
        "rate_limit_exceeded",
        format!(
            "the credentials tried hit quota or rate limits ({status}), which used up this \
             request's {attempts} attempts (`request-retry`); other credentials are free now: \
             retry, or raise `request-retry`"
        ),
    )
    .with_retry_after(Some(std::time::Duration::from_secs(1)))
}

pub(super) fn unavailable_error(
    unavailable: &Unavailable,
    last: Option<Failure>,
    aliases: &Aliases,
    id: &LoggedId,
) -> ApiError {
    match unavailable {
        Unavailable::UnknownModel { known, .. } => {
            let patterns: Vec<&str> = aliases.patterns().collect();
            let aliases_part = if patterns.is_empty() {
                String::new()
            } else {
                format!(" (or an alias: {})", patterns.join(", "))
            };
            let advice = if known.is_empty() {
                String::new()
            } else {
                format!(
                    "; use one of them{aliases_part}, map this name to one with [models.aliases] \
                     in the config, or add a credential that serves it"
                )
            };
            ApiError::new(
                StatusCode::NOT_FOUND,
                INVALID_REQUEST,
                "model_not_found",
                format!("{unavailable}{advice}"),
            )
        }
        Unavailable::CoolingDown { retry_after, .. } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            RATE_LIMIT,
            "rate_limit_exceeded",
            unavailable.to_string(),
        )
        .with_retry_after(Some(*retry_after)),
        Unavailable::Disabled { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER_ERROR,
            "credentials_disabled",
            unavailable.to_string(),
        ),
        Unavailable::NotAllowed { .. } => ApiError::new(
            StatusCode::FORBIDDEN,
            PERMISSION,
            "model_not_allowed",
            unavailable.to_string(),
        ),
        Unavailable::Exhausted { .. } => match last {
            Some(failure) => failure_error(failure, id),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER_ERROR,
                "credentials_exhausted",
                unavailable.to_string(),
            ),
        },
    }
}

/// 429 for a client key past one of its own limits; nothing was sent upstream.
pub(super) fn client_limited_error(client: &Client, limited: Limited) -> ApiError {
    let (message, wait) = match limited {
        Limited::Requests { per_minute, wait } => (
            format!(
                "the client key {:?} may send {per_minute} requests a minute and has sent them; \
                 retry in {} s, or ask the proxy's operator to raise its `requests-per-minute`",
                &*client.name,
                retry_after_secs(wait)
            ),
            wait,
        ),
        Limited::Tokens { per_day, wait } => (
            format!(
                "the client key {:?} has used its {per_day} tokens of the day; they renew in {} s \
                 (or ask the proxy's operator to raise its `tokens-per-day`)",
                &*client.name,
                retry_after_secs(wait)
            ),
            wait,
        ),
    };
    tracing::info!(
        client = &*client.name,
        code = "client_limit_exceeded",
        "a client key is past its own limit; answered 429"
    );
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        RATE_LIMIT,
        "client_limit_exceeded",
        message,
    )
    .with_retry_after(Some(wait))
}

/// Where a client finds which credential failed: the log, by its request's id. Messages to
/// clients never name a credential (an account's label is its email) or say more about the
/// token store than what to run; the `upstream attempt failed` warnings carry that.
struct InLog<'a>(&'a LoggedId);

impl std::fmt::Display for InLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the proxy's log names the credential under request id {}",
            self.0
        )
    }
}

/// The client's error when the last attempt failed; `id` is the request's.
pub(super) fn failure_error(failure: Failure, id: &LoggedId) -> ApiError {
    let bad_gateway =
        |code, message: String| ApiError::new(StatusCode::BAD_GATEWAY, SERVER_ERROR, code, message);
    let in_log = InLog(id);
    match failure {
        Failure::Quota {
            status,
            retry_after,
            message,
            ..
        } => {
            let when = retry_after.map_or_else(
                || "shortly".to_owned(),
                |wait| format!("in {} s", retry_after_secs(wait)),
            );
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMIT,
                "rate_limit_exceeded",
                format!(
                    "the credential tried last hit a quota or rate limit ({status}{}) and no \
                     other credential could take the request; retry {when}, or \
                     {ADD_CREDENTIALS} ({in_log})",
                    quoted(message.as_deref())
                ),
            )
            .with_retry_after(retry_after)
        }
        Failure::Unauthorized { message, refresh } => bad_gateway(
            "upstream_auth_failed",
            format!(
                "the upstream refused the token of the credential tried last (401{}){}; run \
                 `cliproxy login qwen` for that account, or check the API key ({in_log})",
                quoted(message.as_deref()),
                if refresh.is_some() {
                    ", and refreshing the token failed"
                } else {
                    ""
                }
            ),
        ),
        Failure::Forbidden { message } => bad_gateway(
            "upstream_forbidden",
            format!(
                "the upstream refused the credential tried last (403{}); it left rotation and is \
                 probed until it works again; check the account or the API key ({in_log})",
                quoted(message.as_deref()),
            ),
        ),
        Failure::Relogin => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER_ERROR,
            "relogin_required",
            format!(
                "the account tried last needs a new login and no other credential could take \
                 the request; run `cliproxy login qwen` for it (`cliproxy accounts list` shows \
                 which; {in_log})"
            ),
        ),
        Failure::Server { status, message } => bad_gateway(
            "upstream_error",
            format!(
                "the upstream answered {status}{}, and no other credential could take the \
                 request; retry shortly ({in_log})",
                quoted(message.as_deref())
            ),
        ),
        Failure::Html { status } => bad_gateway(
            "upstream_html",
            format!(
                "the upstream answered {status} with an HTML page instead of JSON (usually a \
                 firewall or captcha page after many requests); retry later, or spread the \
                 load: {ADD_CREDENTIALS} ({in_log})"
            ),
        ),
        Failure::NotJson { status } => bad_gateway(
            "upstream_invalid_answer",
            format!(
                "the upstream answered {status} with a body that is not whole JSON (cut off, or \
                 not an OpenAI-compatible API); retry, or check the credential's base URL \
                 ({in_log})"
            ),
        ),
        Failure::Unreachable { error } => bad_gateway(
            "upstream_unreachable",
            format!(
                "could not get an answer from the upstream: {}; check the network, the upstream \
                 proxy setting and the credential's base URL ({in_log})",
                client_text(&error)
            ),
        ),
        Failure::Timeout { after } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            SERVER_ERROR,
            "upstream_timeout",
            format!(
                "the upstream sent nothing for {} s; retry, or raise the upstream idle timeout \
                 in the config ({in_log})",
                after.as_secs()
            ),
        ),
        Failure::RateCapped => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            RATE_LIMIT,
            "rate_limit_exceeded",
            format!(
                "the upstream refused the token of the credential tried last (401); it was \
                 refreshed, but the credential is at its requests-per-minute cap and no other \
                 credential could take the request; retry shortly, or {ADD_CREDENTIALS} \
                 ({in_log})"
            ),
        ),
        Failure::BadToken => bad_gateway(
            "invalid_credential",
            format!(
                "the token of the credential tried last has characters that cannot be sent in \
                 a header; log the account in again with `cliproxy login qwen` or fix the API \
                 key ({in_log})"
            ),
        ),
        Failure::BadBaseUrl { .. } => bad_gateway(
            "invalid_base_url",
            format!(
                "the base URL of the credential tried last does not make a valid request URL; \
                 fix its `base-url` in the config, or log the account in again ({in_log})"
            ),
        ),
        Failure::Oversized { limit } => bad_gateway(
            "upstream_answer_too_large",
            format!(
                "the upstream's answer is larger than {} MiB; ask for a shorter answer \
                 (`max_tokens`) or stream it (`\"stream\": true`)",
                limit / (1024 * 1024)
            ),
        ),
    }
}

fn quoted(message: Option<&str>) -> String {
    message.map_or_else(String::new, |message| format!(": {}", client_text(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_are_single_spaced_sentences() {
        let failures = [
            Failure::Forbidden { message: None },
            Failure::Unauthorized {
                message: None,
                refresh: Some("x".into()),
            },
            Failure::Relogin,
            Failure::RateCapped,
        ];
        for failure in failures {
            let error = failure_error(failure, &LoggedId::default());
            assert!(!error.message.contains("  "), "{}", error.message);
        }
    }
}
