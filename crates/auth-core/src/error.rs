//! The errors of the device login and of refreshing, each a distinct variant a caller can act
//! on. Every message says what happened and what to do next; none contains a token, device
//! code or PKCE verifier (server-supplied descriptions are shortened to one line).

use crate::pkce::RandomnessError;

/// Why a device login did not produce tokens.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFlowError {
    /// The device request got no answer (network, DNS, TLS, proxy, timeout).
    #[error(
        "could not reach the login server ({reason}). Check your network connection and \
         firewall, or set proxy-url in the config, then start the login again."
    )]
    Unreachable {
        /// What failed, without URLs or secrets.
        reason: String,
    },
    /// The device request got a 5xx answer.
    #[error(
        "the login server failed with HTTP {status}. It is probably a temporary outage: start \
         the login again in a few minutes."
    )]
    ServerUnavailable {
        /// The HTTP status.
        status: u16,
    },
    /// A web page (firewall or captcha) or other non-JSON answer came back instead of JSON.
    #[error(
        "Qwen's firewall answered with a web page (HTTP {status}) instead of JSON. Wait a few \
         minutes and retry, or try another network or set proxy-url in the config."
    )]
    Blocked {
        /// The HTTP status of the page.
        status: u16,
    },
    /// The server refused with an OAuth error other than the ones the flow handles itself,
    /// such as `invalid_grant` for an unknown device code or a failed PKCE check.
    #[error(
        "the login server refused the request: {}. Start the login again; if this keeps \
         happening, cliproxy may need an update.",
        oauth_summary(*status, code, description.as_deref())
    )]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code.
        code: String,
        /// The server's `error_description`, shortened to one line.
        description: Option<String>,
    },
    /// The answer was JSON but not of the expected shape.
    #[error(
        "the login server sent an unexpected answer (HTTP {status}: {detail}). Try again \
         later; if it persists, cliproxy may need an update."
    )]
    UnexpectedAnswer {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it, without any values.
        detail: String,
    },
    /// The server answered with a redirect, which is not followed (RFC 9700).
    #[error(
        "the login server answered with a redirect (HTTP {status}, to {target}) instead of an \
         answer. cliproxy follows no redirects of OAuth requests, so nothing was sent there. \
         Check the Qwen OAuth base URL and proxy-url settings: a proxy or captive portal may be \
         answering in Qwen's place."
    )]
    Redirected {
        /// The HTTP status (3xx).
        status: u16,
        /// The origin the redirect pointed to, or a phrase when it named none.
        target: String,
    },
    /// The answer's body was longer than 1 MiB; reading stopped there.
    #[error(
        "the login server's answer (HTTP {status}) is larger than 1 MiB, which no OAuth answer \
         is, so cliproxy stopped reading it. Check the Qwen OAuth base URL and proxy-url \
         settings: something other than Qwen's login server may be answering."
    )]
    AnswerTooLarge {
        /// The HTTP status.
        status: u16,
    },
    /// The server said `expired_token`.
    #[error(
        "the device code expired before the login was approved. Start the login again and \
         approve it within the time shown."
    )]
    Expired,
    /// The server said `access_denied`.
    #[error(
        "the login was denied on the approval page. Start the login again and approve it to \
         use this account."
    )]
    Denied,
    /// The device code's lifetime ran out while polling (by the injected clock).
    #[error(
        "the login was not approved before the device code ran out of time{}. Start the login \
         again and approve it within the time shown.",
        last_problem.as_deref().map(|problem| format!(" (last problem: {problem})")).unwrap_or_default()
    )]
    TimedOut {
        /// Why the last poll failed, when polls were failing rather than pending.
        last_problem: Option<String>,
    },
    /// No PKCE verifier could be made.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

/// Why a refresh did not produce tokens.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The refresh token is dead (400/401 with `invalid_grant` or `invalid_request`).
    #[error(
        "the refresh token was rejected ({}); this account must log in again.",
        oauth_summary(*status, code, description.as_deref())
    )]
    ReloginRequired {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code.
        code: String,
        /// The server's `error_description`, shortened to one line.
        description: Option<String>,
    },
    /// A failure that may pass: see [`TransientCause`].
    #[error("refreshing the token failed for now: {cause}. It can be retried in a little while.")]
    Transient {
        /// What kind of temporary failure it was.
        cause: TransientCause,
    },
    /// Another OAuth error, which retrying will not fix.
    #[error(
        "the login server refused the refresh: {}. Log in again; if this keeps happening, \
         cliproxy may need an update.",
        oauth_summary(*status, code, description.as_deref())
    )]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code.
        code: String,
        /// The server's `error_description`, shortened to one line.
        description: Option<String>,
    },
    /// The server answered with a redirect, which is not followed (RFC 9700): the refresh
    /// token was sent to the token endpoint only.
    #[error(
        "the login server answered the refresh with a redirect (HTTP {status}, to {target}). \
         cliproxy follows no redirects of OAuth requests, so the refresh token was not sent \
         there. Check the Qwen OAuth base URL and proxy-url settings: a proxy or captive portal \
         may be answering in Qwen's place."
    )]
    Redirected {
        /// The HTTP status (3xx).
        status: u16,
        /// The origin the redirect pointed to, or a phrase when it named none.
        target: String,
    },
    /// The answer's body was longer than 1 MiB; reading stopped there.
    #[error(
        "the login server's refresh answer (HTTP {status}) is larger than 1 MiB, which no OAuth \
         answer is, so cliproxy stopped reading it. Check the Qwen OAuth base URL and proxy-url \
         settings: something other than Qwen's login server may be answering. If it was Qwen, \
         the refresh token may be spent and the account need a new login."
    )]
    AnswerTooLarge {
        /// The HTTP status.
        status: u16,
    },
    /// The answer was JSON but not of the expected shape.
    #[error(
        "the login server sent an unexpected refresh answer (HTTP {status}: {detail}). Try \
         again later; if it persists, cliproxy may need an update."
    )]
    UnexpectedAnswer {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it, without any values.
        detail: String,
    },
}

impl RefreshError {
    /// Whether the same refresh may succeed later (only [`RefreshError::Transient`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Whether the account needs a new device login (only [`RefreshError::ReloginRequired`]).
    pub fn needs_relogin(&self) -> bool {
        matches!(self, Self::ReloginRequired { .. })
    }
}

/// The kinds of temporary refresh failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransientCause {
    /// No answer (network, DNS, TLS, proxy, timeout).
    #[error(
        "could not reach the login server ({reason}); check the network, firewall or proxy-url"
    )]
    Unreachable {
        /// What failed, without URLs or secrets.
        reason: String,
    },
    /// A 5xx answer.
    #[error("the login server failed with HTTP {status}")]
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// A firewall/captcha page or other non-JSON answer.
    #[error(
        "Qwen's firewall answered with a web page (HTTP {status}) instead of JSON; refreshing \
         many accounts at once can cause this"
    )]
    Blocked {
        /// The HTTP status of the page.
        status: u16,
    },
    /// HTTP 429 with an OAuth error code.
    #[error("the login server asked to slow down (HTTP {status}, {code})")]
    Throttled {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code.
        code: String,
    },
}

/// `invalid_grant, HTTP 400: PKCE verification failed`.
fn oauth_summary(status: u16, code: &str, description: Option<&str>) -> String {
    match description {
        Some(description) => format!("{code}, HTTP {status}: {description}"),
        None => format!("{code}, HTTP {status}"),
    }
}
