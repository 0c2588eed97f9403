//! The tokens a successful device login or refresh yields, and the helpers callers need to
//! store them: merging with the previous refresh answer and computing the absolute expiry.
//!
//! The access token's lifetime is always within [`TokenSet::MIN_LIFETIME`] and
//! [`TokenSet::MAX_LIFETIME`], whatever `expires_in` said: a missing or unreadable value counts
//! as [`TokenSet::DEFAULT_LIFETIME`], and anything outside the range is clamped into it, with a
//! warning (never a token) in the log. So a caller can add the lifetime to "now" on any clock
//! and any date type (years up to 9999) without overflow, and a refresh scheduler never sees a
//! token that is already dead or that never needs a refresh.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::answer::string_field;

/// Tokens from a token-endpoint answer.
///
/// `refresh_token` and `resource_url` are `None` when the answer left them out (refresh answers
/// may); see [`TokenSet::merged_with_previous`]. `Debug` never shows either token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The bearer token for the model API.
    pub access_token: String,
    /// The token for the next refresh, when the server issued one.
    pub refresh_token: Option<String>,
    /// `Bearer` unless the server said otherwise.
    pub token_type: String,
    /// Lifetime of `access_token` from the moment of the answer. A parsed answer always has
    /// one, within [`TokenSet::MIN_LIFETIME`]..=[`TokenSet::MAX_LIFETIME`] (see the module
    /// docs); `None` only in a `TokenSet` built by hand.
    pub expires_in: Option<Duration>,
    /// Host (sometimes a URL) of the model API for this account, such as `portal.qwen.ai`.
    pub resource_url: Option<String>,
}

impl TokenSet {
    /// The shortest lifetime an access token is taken to have. A shorter, zero or negative
    /// `expires_in` is raised to it, so a scheduler that refreshes ahead of expiry cannot
    /// refresh (and rotate the refresh token) in a tight loop.
    pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
    /// The longest lifetime an access token is taken to have. A longer `expires_in` (such as
    /// 10^13 s) is lowered to it, so the token is still refreshed at least daily and its expiry
    /// is a date every caller can store and compute with.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
    /// The lifetime of a token whose answer has no usable `expires_in` (missing, `null`, or not
    /// a number): one hour, the usual lifetime of OAuth access tokens. If the token dies sooner,
    /// the API's 401 makes the caller refresh it; if it lives longer, it is refreshed early.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60 * 60);

    /// Reads a 2xx token answer from `provider`'s token endpoint. The error says what was
    /// missing, never a value. A lifetime outside the accepted range is logged (WARN) and
    /// clamped.
    pub(crate) fn from_answer(body: &Map<String, Value>, provider: &str) -> Result<Self, String> {
        let access_token = string_field(body, "access_token")
            .ok_or_else(|| "the token answer has no access_token".to_owned())?;
        let lifetime = Lifetime::read(body.get("expires_in"));
        if let Some(problem) = lifetime.problem {
            tracing::warn!(
                provider,
                used_secs = lifetime.duration.as_secs(),
                "the token answer's expires_in {problem}; taking the access token to live {} s \
                 (cliproxy accepts {} s to {} s)",
                lifetime.duration.as_secs(),
                Self::MIN_LIFETIME.as_secs(),
                Self::MAX_LIFETIME.as_secs(),
            );
        }
        Ok(Self {
            access_token,
            refresh_token: string_field(body, "refresh_token"),
            token_type: string_field(body, "token_type").unwrap_or_else(|| "Bearer".to_owned()),
            expires_in: Some(lifetime.duration),
            resource_url: string_field(body, "resource_url"),
        })
    }

    /// Fills what a refresh answer left out with the values from before: refresh tokens rotate
    /// only when a new one is returned, and the resource URL stays unless a new one is given.
    #[must_use]
    pub fn merged_with_previous(
        mut self,
        previous_refresh_token: &str,
        previous_resource_url: Option<&str>,
    ) -> Self {
        if self.refresh_token.is_none() {
            self.refresh_token = Some(previous_refresh_token.to_owned());
        }
        if self.resource_url.is_none() {
            self.resource_url = previous_resource_url.map(str::to_owned);
        }
        self
    }

    /// When `access_token` expires, given the time the answer arrived; `None` only without a
    /// lifetime (a hand-built `TokenSet`) or past the end of `SystemTime`.
    pub fn expires_at(&self, received_at: SystemTime) -> Option<SystemTime> {
        received_at.checked_add(self.expires_in?)
    }
}

/// The lifetime read from an `expires_in` value, and what was wrong with the value, if anything.
#[derive(Debug, PartialEq)]
struct Lifetime {
    duration: Duration,
    /// Completes "the token answer's expires_in ...", e.g. "is missing"; `None` when the value
    /// was a number of seconds within range.
    problem: Option<String>,
}

impl Lifetime {
    /// Whole seconds from a JSON number or numeric string (fractions are dropped), clamped to
    /// [`TokenSet::MIN_LIFETIME`]..=[`TokenSet::MAX_LIFETIME`]; anything else, or nothing, is
    /// [`TokenSet::DEFAULT_LIFETIME`].
    fn read(value: Option<&Value>) -> Self {
        let seconds = match value {
            None | Some(Value::Null) => return Self::default_because("is missing"),
            Some(Value::Number(number)) => number.as_f64(),
            Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        let Some(seconds) = seconds.filter(|seconds| seconds.is_finite()) else {
            return Self::default_because("is not a number of seconds");
        };
        let seconds = seconds.floor();
        let (min, max) = (TokenSet::MIN_LIFETIME, TokenSet::MAX_LIFETIME);
        if seconds < min.as_secs_f64() {
            Self::clamped(seconds, min)
        } else if seconds > max.as_secs_f64() {
            Self::clamped(seconds, max)
        } else {
            Self {
                // In range, so it converts exactly; the fallback is never taken.
                duration: Duration::try_from_secs_f64(seconds).unwrap_or(max),
                problem: None,
            }
        }
    }

    fn default_because(problem: &str) -> Self {
        Self {
            duration: TokenSet::DEFAULT_LIFETIME,
            problem: Some(problem.to_owned()),
        }
    }

    fn clamped(seconds: f64, duration: Duration) -> Self {
        Self {
            duration,
            problem: Some(format!("of {seconds} s is out of range")),
        }
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("resource_url", &self.resource_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TokenSet, String> {
        let body: Map<String, Value> = serde_json::from_str(json).expect("json object");
        TokenSet::from_answer(&body, "test")
    }

    /// The lifetime read from `{"expires_in": <raw>}`, or from `{}` when `raw` is empty.
    fn lifetime(raw: &str) -> Lifetime {
        let json = if raw.is_empty() {
            "{}".to_owned()
        } else {
            format!(r#"{{"expires_in":{raw}}}"#)
        };
        let body: Map<String, Value> = serde_json::from_str(&json).expect("json object");
        Lifetime::read(body.get("expires_in"))
    }

    #[test]
    fn full_answer() {
        let tokens = parse(
            r#"{"access_token":"acc","refresh_token":"ref","token_type":"Bearer",
                "expires_in":3600,"resource_url":"portal.qwen.ai"}"#,
        )
        .expect("valid");
        assert_eq!(tokens.refresh_token.as_deref(), Some("ref"));
        assert_eq!(tokens.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(tokens.resource_url.as_deref(), Some("portal.qwen.ai"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            tokens.expires_at(now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4_600))
        );
    }

    #[test]
    fn lifetimes_in_range_are_taken_as_given() {
        for (raw, secs) in [
            ("3600", 3600),
            ("60", 60),
            ("86400", 86_400),
            ("3600.9", 3600),
            (r#""7200""#, 7200),
            (r#"" 900 ""#, 900),
            (r#""1800.5""#, 1800),
            ("1.2e3", 1200),
        ] {
            assert_eq!(
                lifetime(raw),
                Lifetime {
                    duration: Duration::from_secs(secs),
                    problem: None
                },
                "{raw}"
            );
        }
    }

    #[test]
    fn absurd_lifetimes_are_clamped_and_missing_ones_defaulted() {
        let clamped = [
            ("10000000000000", TokenSet::MAX_LIFETIME),
            ("18446744073709551615", TokenSet::MAX_LIFETIME),
            ("184467440737095516160000", TokenSet::MAX_LIFETIME),
            ("1e300", TokenSet::MAX_LIFETIME),
            (r#""1e13""#, TokenSet::MAX_LIFETIME),
            ("86401", TokenSet::MAX_LIFETIME),
            ("-1", TokenSet::MIN_LIFETIME),
            ("-9223372036854775808", TokenSet::MIN_LIFETIME),
            ("-1e300", TokenSet::MIN_LIFETIME),
            ("0", TokenSet::MIN_LIFETIME),
            ("59.99", TokenSet::MIN_LIFETIME),
            (r#""-5""#, TokenSet::MIN_LIFETIME),
        ];
        for (raw, expected) in clamped {
            let read = lifetime(raw);
            assert_eq!(read.duration, expected, "{raw}");
            let problem = read.problem.expect(raw);
            assert!(problem.contains("out of range"), "{raw}: {problem}");
        }
        for raw in [
            "",
            "null",
            "true",
            "[]",
            "{}",
            r#""soon""#,
            r#""NaN""#,
            r#""inf""#,
        ] {
            let read = lifetime(raw);
            assert_eq!(read.duration, TokenSet::DEFAULT_LIFETIME, "{raw:?}");
            assert!(read.problem.is_some(), "{raw:?}");
        }
    }

    #[test]
    fn a_parsed_answer_always_has_a_lifetime_in_range() {
        for field in [
            r#","expires_in":1e13"#,
            r#","expires_in":-1"#,
            r#","expires_in":"x""#,
            "",
        ] {
            let tokens = parse(&format!(r#"{{"access_token":"a"{field}}}"#)).expect("valid");
            let life = tokens.expires_in.expect("always a lifetime");
            assert!(
                (TokenSet::MIN_LIFETIME..=TokenSet::MAX_LIFETIME).contains(&life),
                "{field}"
            );
            let now = SystemTime::now();
            assert_eq!(tokens.expires_at(now), Some(now + life), "{field}");
        }
    }

    #[test]
    fn minimal_answer_and_merge() {
        let tokens = parse(r#"{"access_token":"acc"}"#).expect("valid");
        assert_eq!(tokens.token_type, "Bearer");
        assert_eq!(tokens.expires_in, Some(TokenSet::DEFAULT_LIFETIME));
        let merged = tokens.merged_with_previous("old-ref", Some("old.host"));
        assert_eq!(merged.refresh_token.as_deref(), Some("old-ref"));
        assert_eq!(merged.resource_url.as_deref(), Some("old.host"));

        let rotated =
            parse(r#"{"access_token":"a","refresh_token":"new","resource_url":"new.host"}"#)
                .expect("valid")
                .merged_with_previous("old-ref", Some("old.host"));
        assert_eq!(rotated.refresh_token.as_deref(), Some("new"));
        assert_eq!(rotated.resource_url.as_deref(), Some("new.host"));
    }

    #[test]
    fn missing_access_token_is_described_without_values() {
        let error = parse(r#"{"access_token":"","refresh_token":"secret-ref"}"#)
            .expect_err("no access token");
        assert!(error.contains("access_token"));
        assert!(!error.contains("secret-ref"));
    }

    #[test]
    fn debug_redacts_tokens() {
        let tokens =
            parse(r#"{"access_token":"secret-acc","refresh_token":"secret-ref"}"#).expect("valid");
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
