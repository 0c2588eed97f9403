//! Step two of the device login: polling the token endpoint (RFC 8628 §3.4–3.5) until the user
//! approves, the server ends the flow, or the device code's lifetime runs out.
//!
//! Timing rules: wait `interval` before every poll; each `slow_down` (HTTP 400 or 429) adds 5 s
//! to the interval for all later polls; transport errors and 5xx answers are retried after an
//! exponential backoff (from twice the interval, capped at 60 s); no wait reaches past the
//! deadline, and no poll request may take longer than the time left before it (the cap is
//! real time, as HTTP timeouts are, even under a scaled clock). The future holds no resources
//! besides its in-flight request and sleep, so dropping it at any `.await` cancels the login
//! cleanly.

use std::time::Duration;

use crate::answer::{self, Answer};
use crate::client::OAuthClient;
use crate::clock::Clock;
use crate::device::DeviceAuthorization;
use crate::error::DeviceFlowError;
use crate::token::TokenSet;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// What each `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Longest wait between retries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Progress reports from [`OAuthClient::poll_for_token`], for showing the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollEvent {
    /// About to wait before the next poll; `remaining` is the device code's time left.
    Waiting {
        /// Time left until the device code expires.
        remaining: Duration,
    },
    /// The server asked to poll less often; all later polls use `new_interval`.
    SlowDown {
        /// The interval from now on.
        new_interval: Duration,
    },
    /// A poll failed in a way worth retrying; the next try is in `retry_in`.
    Retrying {
        /// What went wrong, without secrets.
        reason: String,
        /// The wait before the next try.
        retry_in: Duration,
    },
}

/// What one poll came to.
enum Outcome {
    Tokens(TokenSet),
    Pending,
    SlowDown,
    Retry(String),
    Fail(DeviceFlowError),
}

impl OAuthClient {
    /// Polls until the login is approved and returns its tokens.
    ///
    /// `clock`, the one the login was started with, measures the deadline
    /// ([`DeviceAuthorization::deadline`]: `expires_in` after the device answer arrived) and
    /// does the waiting; `on_event` hears about every wait, slow-down and retry. Cancel-safe:
    /// drop the future to abandon the login.
    pub async fn poll_for_token(
        &self,
        auth: &DeviceAuthorization,
        clock: &dyn Clock,
        on_event: &mut (dyn FnMut(PollEvent) + Send),
    ) -> Result<TokenSet, DeviceFlowError> {
        let deadline = auth.deadline();
        let mut interval = auth.interval;
        let mut wait = interval;
        let mut failures: u32 = 0;
        let mut last_problem = None;
        loop {
            let remaining = deadline.saturating_duration_since(clock.now());
            if remaining.is_zero() {
                return Err(DeviceFlowError::TimedOut { last_problem });
            }
            on_event(PollEvent::Waiting { remaining });
            clock.sleep(wait.min(remaining)).await;
            if clock.now() >= deadline {
                return Err(DeviceFlowError::TimedOut { last_problem });
            }

            let left = deadline.saturating_duration_since(clock.now());
            match self.poll_once(auth, left).await {
                Outcome::Tokens(tokens) => {
                    tracing::debug!(provider = %self.profile.name, "device login approved");
                    return Ok(tokens);
                }
                Outcome::Pending => {
                    failures = 0;
                    last_problem = None;
                    wait = interval;
                }
                Outcome::SlowDown => {
                    failures = 0;
                    last_problem = None;
                    interval = interval.saturating_add(SLOW_DOWN_STEP);
                    wait = interval;
                    on_event(PollEvent::SlowDown {
                        new_interval: interval,
                    });
                }
                Outcome::Retry(reason) => {
                    failures = failures.saturating_add(1);
                    wait = backoff(interval, failures);
                    let remaining = deadline.saturating_duration_since(clock.now());
                    tracing::debug!(provider = %self.profile.name, %reason, "device poll failed, retrying");
                    on_event(PollEvent::Retrying {
                        reason: reason.clone(),
                        retry_in: wait.min(remaining),
                    });
                    last_problem = Some(reason);
                }
                Outcome::Fail(error) => return Err(error),
            }
        }
    }

    /// One poll, given up as timed out when it takes longer than `left` (real time, like every
    /// HTTP timeout) or the client's own timeout, whichever is shorter.
    async fn poll_once(&self, auth: &DeviceAuthorization, left: Duration) -> Outcome {
        let timeout = self.timeout.min(left);
        let request = self
            .http
            .post(self.token_url.clone())
            .timeout(timeout)
            .form(&[
                ("grant_type", DEVICE_GRANT),
                ("client_id", self.profile.client_id.as_str()),
                ("device_code", auth.device_code.as_str()),
                ("code_verifier", auth.pkce.verifier()),
            ]);
        let answer = match answer::send(request, self.via_proxy).await {
            Ok(answer) => answer,
            Err(error) => {
                return Outcome::Retry(format!(
                    "could not reach the login server: {}",
                    error.reason
                ));
            }
        };
        match answer {
            Answer::Json { status, body } => match TokenSet::from_answer(&body, &self.profile.name)
            {
                Ok(tokens) => Outcome::Tokens(tokens),
                Err(detail) => Outcome::Fail(DeviceFlowError::UnexpectedAnswer { status, detail }),
            },
            Answer::OAuthError {
                status,
                code,
                description,
            } => match code.as_str() {
                "authorization_pending" => Outcome::Pending,
                "slow_down" => Outcome::SlowDown,
                "expired_token" => Outcome::Fail(DeviceFlowError::Expired),
                "access_denied" => Outcome::Fail(DeviceFlowError::Denied),
                _ => Outcome::Fail(DeviceFlowError::Rejected {
                    status,
                    code,
                    description,
                }),
            },
            Answer::ServerError { status } => {
                Outcome::Retry(format!("the login server failed with HTTP {status}"))
            }
            Answer::Blocked { status } => Outcome::Fail(DeviceFlowError::Blocked { status }),
            Answer::Unexpected { status, detail } => {
                Outcome::Fail(DeviceFlowError::UnexpectedAnswer { status, detail })
            }
            Answer::Redirect { status, target } => {
                Outcome::Fail(DeviceFlowError::Redirected { status, target })
            }
            Answer::TooLarge { status } => {
                Outcome::Fail(DeviceFlowError::AnswerTooLarge { status })
            }
        }
    }
}

/// The wait after `failures` failures in a row: `interval * 2^failures`, capped at
/// [`MAX_BACKOFF`] but never below `interval`.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 1_u32 << failures.min(16);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF)
        .max(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let five = Duration::from_secs(5);
        let waits: Vec<u64> = (1..=6).map(|n| backoff(five, n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert_eq!(backoff(Duration::from_secs(90), 3), Duration::from_secs(90));
    }
}
