//! Step one of the device login: the device authorization request (RFC 8628 §3.1) with a PKCE
//! challenge, and the answer the user acts on.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::answer::{self, Answer, seconds_field, string_field};
use crate::client::OAuthClient;
use crate::clock::Clock;
use crate::error::DeviceFlowError;
use crate::pkce::Pkce;

/// Poll interval when the server gives none (RFC 8628 §3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Device code lifetime when the server gives none.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(600);
/// Upper bounds that keep a hostile or broken answer from stalling the flow for ever.
const MAX_INTERVAL_SECS: u64 = 300;
const MAX_EXPIRES_IN_SECS: u64 = 24 * 60 * 60;

/// A started device login: what to show the user, and what polling needs.
///
/// `device_code` and the PKCE verifier stay inside; `Debug` hides the device code.
#[derive(Clone)]
pub struct DeviceAuthorization {
    /// The code the user confirms on the verification page.
    pub user_code: String,
    /// The page where the user enters `user_code`.
    pub verification_uri: String,
    /// The page with `user_code` already filled in: the server's, or `verification_uri` plus
    /// `?user_code=...` when the server gave none.
    pub verification_uri_complete: String,
    /// How long the device code lives, counted from when the answer was received (RFC 8628
    /// §3.2), 10 min when absent (at most 24 h).
    pub expires_in: Duration,
    /// The server's poll interval, 5 s when absent or zero (at most 300 s).
    pub interval: Duration,
    /// When the answer was received plus `expires_in`, on the clock the login was started with.
    deadline: Instant,
    pub(crate) device_code: String,
    pub(crate) pkce: Pkce,
}

impl DeviceAuthorization {
    /// When the device code expires, on the clock given to
    /// [`OAuthClient::start_device_login`]: polling stops there, and a countdown counts to it.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reads a 2xx device answer received at `received_at`. The error says what was missing,
    /// never a value.
    fn from_answer(
        body: &Map<String, Value>,
        pkce: Pkce,
        received_at: Instant,
    ) -> Result<Self, String> {
        let missing = |field: &str| format!("the device answer has no {field}");
        let device_code =
            string_field(body, "device_code").ok_or_else(|| missing("device_code"))?;
        let user_code = string_field(body, "user_code").ok_or_else(|| missing("user_code"))?;
        let verification_uri =
            string_field(body, "verification_uri").ok_or_else(|| missing("verification_uri"))?;
        let verification_uri_complete = string_field(body, "verification_uri_complete")
            .unwrap_or_else(|| complete_uri(&verification_uri, &user_code));
        let expires_in = seconds_field(body, "expires_in").map_or(DEFAULT_EXPIRES_IN, |secs| {
            Duration::from_secs(secs.min(MAX_EXPIRES_IN_SECS))
        });
        let interval = seconds_field(body, "interval")
            .filter(|secs| *secs > 0)
            .map_or(DEFAULT_INTERVAL, |secs| {
                Duration::from_secs(secs.min(MAX_INTERVAL_SECS))
            });
        Ok(Self {
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in,
            interval,
            deadline: received_at + expires_in,
            device_code,
            pkce,
        })
    }
}

/// `verification_uri` with `user_code` added as a query parameter.
fn complete_uri(verification_uri: &str, user_code: &str) -> String {
    match url::Url::parse(verification_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("user_code", user_code);
            url.into()
        }
        Err(_) => format!("{verification_uri}?user_code={user_code}"),
    }
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .field("device_code", &"[redacted]")
            .field("pkce", &self.pkce)
            .finish()
    }
}

impl OAuthClient {
    /// Asks for a device code: POST form `client_id, scope, code_challenge,
    /// code_challenge_method=S256` with `Accept: application/json` and a fresh
    /// `x-request-id`.
    ///
    /// `clock` reads the time the answer arrives, from which the code's lifetime counts; poll
    /// with the same clock.
    pub async fn start_device_login(
        &self,
        clock: &dyn Clock,
    ) -> Result<DeviceAuthorization, DeviceFlowError> {
        let pkce = Pkce::generate()?;
        let request = self
            .http
            .post(self.device_url.clone())
            .header("x-request-id", uuid::Uuid::new_v4().to_string())
            .form(&[
                ("client_id", self.profile.client_id.as_str()),
                ("scope", self.profile.scope.as_str()),
                ("code_challenge", pkce.challenge()),
                ("code_challenge_method", Pkce::METHOD),
            ]);
        let answer = answer::send(request, self.via_proxy)
            .await
            .map_err(|error| DeviceFlowError::Unreachable {
                reason: error.reason,
            })?;
        match answer {
            Answer::Json { status, body } => {
                let authorization = DeviceAuthorization::from_answer(&body, pkce, clock.now())
                    .map_err(|detail| DeviceFlowError::UnexpectedAnswer { status, detail })?;
                tracing::debug!(
                    provider = %self.profile.name,
                    expires_in = ?authorization.expires_in,
                    interval = ?authorization.interval,
                    "device login started"
                );
                Ok(authorization)
            }
            Answer::OAuthError {
                status,
                code,
                description,
            } => Err(DeviceFlowError::Rejected {
                status,
                code,
                description,
            }),
            Answer::ServerError { status } => Err(DeviceFlowError::ServerUnavailable { status }),
            Answer::Blocked { status } => Err(DeviceFlowError::Blocked { status }),
            Answer::Unexpected { status, detail } => {
                Err(DeviceFlowError::UnexpectedAnswer { status, detail })
            }
            Answer::Redirect { status, target } => {
                Err(DeviceFlowError::Redirected { status, target })
            }
            Answer::TooLarge { status } => Err(DeviceFlowError::AnswerTooLarge { status }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DeviceAuthorization, String> {
        let body: Map<String, Value> = serde_json::from_str(json).expect("json object");
        DeviceAuthorization::from_answer(
            &body,
            Pkce::generate().expect("randomness"),
            Instant::now(),
        )
    }

    #[test]
    fn defaults_and_fallbacks() {
        let auth = parse(
            r#"{"device_code":"dc","user_code":"AB CD","verification_uri":"https://x/authorize"}"#,
        )
        .expect("valid");
        assert_eq!(auth.interval, DEFAULT_INTERVAL);
        assert_eq!(auth.expires_in, DEFAULT_EXPIRES_IN);
        assert!(auth.deadline() > Instant::now());
        assert_eq!(
            auth.verification_uri_complete,
            "https://x/authorize?user_code=AB+CD"
        );
    }

    #[test]
    fn zero_interval_means_default_and_huge_values_are_capped() {
        let auth = parse(
            r#"{"device_code":"dc","user_code":"u","verification_uri":"https://x/a",
                "interval":0,"expires_in":18446744073709551615}"#,
        )
        .expect("valid");
        assert_eq!(auth.interval, DEFAULT_INTERVAL);
        assert_eq!(auth.expires_in, Duration::from_secs(MAX_EXPIRES_IN_SECS));
    }

    #[test]
    fn missing_device_code_is_described_without_values() {
        let error = parse(r#"{"user_code":"u","verification_uri":"https://x/a"}"#)
            .expect_err("no device code");
        assert!(error.contains("device_code"));
    }

    #[test]
    fn debug_hides_device_code_and_verifier() {
        let auth = parse(
            r#"{"device_code":"secret-device-code","user_code":"u","verification_uri":"https://x/a"}"#,
        )
        .expect("valid");
        let shown = format!("{auth:?}");
        assert!(!shown.contains("secret-device-code"));
        assert!(!shown.contains(auth.pkce.verifier()));
    }
}
