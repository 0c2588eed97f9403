//! The tokens a successful device login or refresh yields, and the helpers callers need to
//! store them: merging with the previous refresh answer and computing the absolute expiry.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::answer::{seconds_field, string_field};

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
    /// Lifetime of `access_token` from the moment of the answer.
    pub expires_in: Option<Duration>,
    /// Host (sometimes a URL) of the model API for this account, such as `portal.qwen.ai`.
    pub resource_url: Option<String>,
}

impl TokenSet {
    /// Reads a 2xx token answer. The error says what was missing, never a value.
    pub(crate) fn from_answer(body: &Map<String, Value>) -> Result<Self, String> {
        let access_token = string_field(body, "access_token")
            .ok_or_else(|| "the token answer has no access_token".to_owned())?;
        Ok(Self {
            access_token,
            refresh_token: string_field(body, "refresh_token"),
            token_type: string_field(body, "token_type").unwrap_or_else(|| "Bearer".to_owned()),
            expires_in: seconds_field(body, "expires_in").map(Duration::from_secs),
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

    /// When `access_token` expires, given the time the answer arrived; `None` when the server
    /// gave no lifetime (or an absurd one).
    pub fn expires_at(&self, received_at: SystemTime) -> Option<SystemTime> {
        received_at.checked_add(self.expires_in?)
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
        TokenSet::from_answer(&body)
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
    fn minimal_answer_and_merge() {
        let tokens = parse(r#"{"access_token":"acc"}"#).expect("valid");
        assert_eq!(tokens.token_type, "Bearer");
        assert_eq!(tokens.expires_at(SystemTime::now()), None);
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
