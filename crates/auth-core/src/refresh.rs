//! Refreshing an access token with a refresh token (RFC 6749 §6), sorting failures into "log
//! in again", "try again later" and "something else is wrong".

use crate::answer::{self, Answer};
use crate::client::OAuthClient;
use crate::error::{RefreshError, TransientCause};
use crate::token::TokenSet;

impl OAuthClient {
    /// Trades `refresh_token` for new tokens: POST form `grant_type=refresh_token,
    /// refresh_token, client_id`.
    ///
    /// The answer may leave out `refresh_token` and `resource_url`; merge with
    /// [`TokenSet::merged_with_previous`] before storing.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, RefreshError> {
        let request = self.http.post(self.token_url.clone()).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", self.profile.client_id.as_str()),
        ]);
        let answer = answer::send(request, self.via_proxy)
            .await
            .map_err(|error| RefreshError::Transient {
                cause: TransientCause::Unreachable {
                    reason: error.reason,
                },
            })?;
        let result = match answer {
            Answer::Json { status, body } => TokenSet::from_answer(&body, &self.profile.name)
                .map_err(|detail| RefreshError::UnexpectedAnswer { status, detail }),
            Answer::OAuthError {
                status,
                code,
                description,
            } => Err(oauth_error(status, code, description)),
            Answer::ServerError { status } => Err(RefreshError::Transient {
                cause: TransientCause::ServerError { status },
            }),
            Answer::Blocked { status } => Err(RefreshError::Transient {
                cause: TransientCause::Blocked { status },
            }),
            Answer::Unexpected { status, detail } => {
                Err(RefreshError::UnexpectedAnswer { status, detail })
            }
            Answer::Redirect { status, target } => Err(RefreshError::Redirected { status, target }),
            Answer::TooLarge { status } => Err(RefreshError::AnswerTooLarge { status }),
        };
        match &result {
            Ok(_) => tracing::debug!(provider = %self.profile.name, "token refreshed"),
            Err(error) => {
                tracing::debug!(provider = %self.profile.name, %error, "token refresh failed")
            }
        }
        result
    }
}

fn oauth_error(status: u16, code: String, description: Option<String>) -> RefreshError {
    match (status, code.as_str()) {
        (400 | 401, "invalid_grant" | "invalid_request") => RefreshError::ReloginRequired {
            status,
            code,
            description,
        },
        (429, _) => RefreshError::Transient {
            cause: TransientCause::Throttled { status, code },
        },
        _ => RefreshError::Rejected {
            status,
            code,
            description,
        },
    }
}
