//! Why a Responses request cannot be translated ([`Refusal`]), shared by the request and its
//! input items.

use http::StatusCode;

/// Why a request cannot be translated: what cliproxy cannot send upstream without changing
/// the request's meaning. The message says what to change; a value from the request (an item
/// or part type, a role, a tool name) is quoted through [`client_text`](crate::quote::client_text),
/// so the message is one line of bounded length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The OpenAI error `code`, e.g. `invalid_input_item`.
    pub code: &'static str,
    /// What was refused and what to send instead.
    pub message: String,
}

impl Refusal {
    /// The HTTP status every refusal is answered with: the request is at fault.
    pub const STATUS: StatusCode = StatusCode::BAD_REQUEST;
    /// The OpenAI error `type` every refusal is answered with.
    pub const ERROR_TYPE: &'static str = "invalid_request_error";

    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
