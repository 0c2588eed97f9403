//! The knobs a test turns: how the fake answers device requests, device-code polls, refreshes
//! and chat completions.

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

/// What successful token answers (approved polls and refreshes) carry as `expires_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiresIn {
    /// A whole number of seconds, as Qwen answers (`3600` unless set otherwise).
    Seconds(u64),
    /// This JSON text, sent verbatim as the value: `-5`, `1e13`, `3600.5`, `"3600"`, `null`, or a
    /// number too large for any integer type such as `184467440737095516160000`.
    Json(String),
    /// The field is left out.
    Missing,
}

/// How the token endpoint answers `grant_type=refresh_token`.
///
/// Whatever the behaviour, a request with a bad form or wrong `client_id` is rejected first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    /// This redirect status (such as 307, which tells a client to repeat the POST there) with
    /// `Location: <location>` and a short HTML body. The refresh token stays live.
    Redirect {
        /// The 3xx status.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// Like [`RefreshBehaviour::Rotate`] (the old refresh token dies), but the 200 token answer
    /// is padded with a `padding` string to at least `bytes` bytes: sent with `Content-Length`,
    /// or, when `chunked`, in 64 KiB chunks without one.
    Oversized {
        /// The least size of the answer's body.
        bytes: usize,
        /// Whether the body goes out chunked, without `Content-Length`.
        chunked: bool,
    },
}

/// How the chat API answers one request that passed authentication (see [`crate::FakeQwen`]
/// for the checks that come first).
///
/// What an answering step says depends on the request, as with a real model:
/// - the conversation ends with `role: "tool"` results: a text `The tool returned: <result>`
///   (several results joined with ` | `), `finish_reason: "stop"`;
/// - the request offers `tools` (and `tool_choice` is not `"none"`) and its last message, after
///   any trailing `system` messages, is the user's: `content: null`, one `tool_calls` entry for
///   the first tool (or the one `tool_choice` names, or the first offered one of the tools the
///   test [prefers](crate::FakeQwen::prefer_tool)), `finish_reason: "tool_calls"`
///   ([`ChatStep::ToolCalls`] makes more calls and can put text first). Calls are `call_<n>`,
///   numbered across the fake; their `arguments` are the preferred tool's arguments, or a JSON
///   string `{"<first required property, else first property>": value}` with value
///   `"<property>-<n>"` for strings (the first `enum` value if any), `n` for numbers, `true`,
///   `[]` or `{}` by type, and `{}` for a tool without properties;
/// - otherwise: `You said: <last user text>` (streamed as N content chunks `part0 `, `part1 `, ...).
///
/// With `enable_thinking: true` the answer also has `reasoning_content` (whole) or starts with
/// two `reasoning_content` deltas whose `content` is `null` (streamed), as Qwen's thinking
/// models do; with a `reasoning_effort` other than `none` and `minimal`, the same in a
/// `reasoning` field, as vLLM and OpenRouter send it.
///
/// Usage (whole answers, and streams that set `stream_options.include_usage`) counts a token
/// per four bytes of the request as `prompt_tokens`, half of them as
/// `prompt_tokens_details.cached_tokens`.
///
/// A streamed answer is `data: {chunk}\n\n` events: the *deltas* (the first also carrying
/// `role`): reasoning, then content, then for each tool call a delta with `index`, `id`,
/// `type`, `function.name` and `function.arguments: ""`, followed by up to three deltas with only
/// `index` and an `arguments` fragment, exactly as OpenAI streams them; then the *final group*:
/// a chunk with an empty delta and the `finish_reason`, a usage chunk with empty `choices` when
/// the request set `stream_options.include_usage`, and `data: [DONE]`. N is
/// [`crate::FakeQwen::set_stream_chunks`] (default 3). Every event is its own body frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatStep {
    /// 200: a chat completion whose content echoes the last user message, with usage; streamed
    /// when the request says `"stream": true`.
    #[default]
    Answer,
    /// Like [`ChatStep::Answer`], but a stream waits before its final group until the test calls
    /// [`crate::FakeQwen::release_held_streams`] (one release per held stream). A non-streaming
    /// request is answered normally.
    HoldLast,
    /// Sends this many events of the answer, then cuts the connection (no terminating chunk): a
    /// stream breaking off. A non-streaming answer is cut halfway through its JSON.
    CutAfter(usize),
    /// Sends this many deltas, then ends the stream normally without a finish chunk or
    /// `[DONE]`. A non-streaming request is answered normally.
    EndAfter(usize),
    /// Sends this many deltas, then a chunk carrying an `error` object (code
    /// `data_inspection_failed`, as DashScope reports a content-filter hit mid-answer) and
    /// `data: [DONE]`. A non-streaming request is answered normally.
    ErrorAfter(usize),
    /// Like [`ChatStep::ErrorAfter`], but the error chunk says the model is overloaded (type
    /// `server_error`, as OpenAI words it).
    OverloadedAfter(usize),
    /// Like [`ChatStep::Answer`], but the answer ends as one cut at the request's output-token
    /// limit: `finish_reason: "length"` (whole and streamed).
    Length,
    /// Like [`ChatStep::Answer`], but when the model calls tools it makes `calls` calls in one
    /// turn (the offered tools in order, wrapping around; all the named one under a named
    /// `tool_choice`; one when `parallel_tool_calls` is false), and with `leading_text` it says
    /// `Let me call <names>.` first (as `content`, streamed before the calls).
    ToolCalls {
        /// Calls in the turn (0 counts as 1).
        calls: u8,
        /// Whether text comes before the calls.
        leading_text: bool,
    },
    /// 429 `insufficient_quota` "Free allocated quota exceeded." (the daily quota).
    QuotaExceeded,
    /// The same quota error with status 403, as the Go tool saw it.
    QuotaExceeded403,
    /// 429 `rate_limit_exceeded` with `Retry-After` in seconds.
    RateLimited {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// This status with a JSON `server_error` body.
    ServerError(u16),
    /// An Alibaba WAF captcha page (`text/html`) with this status.
    Html {
        /// HTTP status of the page.
        status: u16,
    },
}
