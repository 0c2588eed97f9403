//! The knobs a test turns: how the fake answers device requests, device-code polls and refreshes.

/// What the device endpoint answers (besides the `device_code` it makes up).
///
/// `verification_uri` is always `<base_url>/authorize`; `verification_uri_complete` is
/// `<base_url>/authorize?user_code=<user_code>` unless `include_verification_uri_complete` is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAnswer {
    /// The code the user would type on the verification page.
    pub user_code: String,
    /// Lifetime of the device code, in seconds.
    pub expires_in: u64,
    /// Poll interval in seconds; `None` omits the field (Qwen often does).
    pub interval: Option<u64>,
    /// Whether the answer carries `verification_uri_complete`.
    pub include_verification_uri_complete: bool,
}

impl Default for DeviceAnswer {
    /// `QWEN-1234`, 600 s, no `interval`, with `verification_uri_complete`.
    fn default() -> Self {
        Self {
            user_code: "QWEN-1234".to_owned(),
            expires_in: 600,
            interval: None,
            include_verification_uri_complete: true,
        }
    }
}

/// What one device-code poll gets, once the request itself is valid.
///
/// Polls with a bad form, unknown `device_code` or wrong `code_verifier` are rejected before the
/// script is consulted and do not use up a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStep {
    /// 400 `authorization_pending`.
    Pending,
    /// 400 `slow_down` (RFC 8628 style).
    SlowDown400,
    /// 429 `slow_down` (what Qwen Code handles).
    SlowDown429,
    /// 400 `access_denied`.
    Denied,
    /// 400 `expired_token`.
    Expired,
    /// 200 with a fresh token pair; the device code is used up afterwards.
    Approve,
    /// An Alibaba WAF captcha page (`text/html`) with this status.
    Html {
        /// HTTP status of the page.
        status: u16,
    },
    /// This status with a JSON `server_error` body.
    ServerError(u16),
}

/// How the token endpoint answers `grant_type=refresh_token`.
///
/// Whatever the behaviour, a request with a bad form or wrong `client_id` is rejected first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshBehaviour {
    /// 200 with a new access token and a new refresh token; the old refresh token stops working.
    #[default]
    Rotate,
    /// 200 with a new access token only: `refresh_token` and `resource_url` are omitted and the
    /// old refresh token keeps working.
    KeepRefresh,
    /// 400 `invalid_request` "Invalid refresh token or client_id", as for a dead refresh token.
    Invalid,
    /// This status with a JSON `server_error` body.
    ServerError(u16),
    /// An Alibaba WAF captcha page (`text/html`) with this status.
    Html {
        /// HTTP status of the page.
        status: u16,
    },
}
