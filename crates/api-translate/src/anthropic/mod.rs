//! Anthropic Messages API ⇄ chat completions, for clients such as Claude Code.
//!
//! ## Request ([`request`])
//! - `model`, `max_tokens`, `temperature`, `top_p`, `stream` are copied; `metadata.user_id`
//!   → `user`; `stop_sequences` stay with cliproxy, which enforces them on the answer
//!   ([`stops`]; any number of them), and are not sent as `stop`; a stream also asks for
//!   `stream_options.include_usage`, so `message_delta` carries usage from any upstream.
//!   Unknown top-level fields (`top_k`, `service_tier`, `context_management`, ...) are
//!   ignored. `model`, a non-empty `messages` and (except for `count_tokens`) `max_tokens`
//!   are required, as by Anthropic.
//! - `system` (a string, or text blocks joined with a blank line) → one leading `system`
//!   message. `cache_control` is ignored everywhere.
//! - `role: "system"` messages in `messages` (Claude Code's mid-conversation system turns;
//!   content a string or text blocks, joined the same way) → a `system` message in the same
//!   place; an empty one is skipped. (For Qwen OAuth accounts the upstream's body shaping
//!   later merges every system message into the leading one.)
//! - User turns: `text` and `image` blocks → one user message (a plain string when it is a
//!   single text; images as `image_url` parts, base64 sources as `data:` URLs, url sources as
//!   they are). Each `tool_result` → a `tool` message (`tool_call_id` = `tool_use_id`; content
//!   the string, or the texts of its blocks joined with a blank line; `is_error: true`
//!   prefixes `Error: `; a `tool_reference` block is the text `Loaded tool: <name>`), placed
//!   before the user message, so that tool messages follow the assistant message that called
//!   them. Images inside tool results go to that following user message, ahead of the turn's
//!   own text.
//! - Assistant turns: texts joined with a blank line → `content` (`""` when there is none),
//!   `tool_use` → `tool_calls` (`arguments` = the JSON text of `input`). A turn with neither
//!   (e.g. only thinking) is skipped.
//! - `thinking` and `redacted_thinking` blocks in the history are dropped (the upstream
//!   neither needs nor checks them), and so are other block kinds the upstream cannot take
//!   (documents, server-tool blocks).
//! - `tools` with an `input_schema` → function tools (`parameters` = the schema); server tools
//!   without one (`web_search`, ...) are dropped, and without any tool left there is no
//!   `tool_choice`. Tool search: a tool with `defer_loading: true` is not offered to the
//!   model until a `tool_reference` block in a tool result of the history names it (as
//!   Anthropic loads deferred tools); from then on it is a function tool like the others.
//!   `tool_choice`: `auto` → `"auto"`, `any` → `"required"`, `tool` →
//!   `{"type":"function","function":{"name"}}`, `none` → `"none"`;
//!   `disable_parallel_tool_use: true` → `parallel_tool_calls: false`.
//! - `thinking` (with `output_config.effort` for `adaptive`) → a [`crate::reasoning::Reasoning`]
//!   beside the chat body, not a field of it: the fields that carry it (`reasoning_effort`,
//!   or Qwen's `enable_thinking` and `thinking_budget`) depend on the credential the request
//!   goes to, and the server writes them per credential ([`crate::reasoning`] has the table).
//!
//! ## Response ([`response`], [`stream`], [`outcome`])
//! - `id` = `msg_` + the chat id; `model` = the model the client asked for.
//! - Content: a `thinking` block for `reasoning_content` (or `reasoning`) first (signature
//!   `""`: the upstream has none), then a `text` block when the text is not empty, then one `tool_use` block per
//!   tool call (`input` parsed from `arguments`; anything but a JSON object becomes `{}`).
//! - `stop_reason`: `stop` → `end_turn`, `length` → `max_tokens`, `tool_calls` → `tool_use`,
//!   `content_filter` → `refusal`; when one of the request's `stop_sequences` appears in the
//!   text, the text ends before it, what follows is dropped, `stop_reason` is
//!   `stop_sequence` and `stop_sequence` the sequence ([`stops`]), whatever the upstream's
//!   `finish_reason`.
//! - `usage`: `input_tokens` = `prompt_tokens` minus cache reads and writes, which go to
//!   `cache_read_input_tokens` / `cache_creation_input_tokens` when the upstream reports them;
//!   `output_tokens` = `completion_tokens`.
//! - Streams: see [`stream`].
//!
//! ## Errors ([`error`])
//! Anthropic's `{"type":"error","error":{"type","message"}}` with its type for the status;
//! upstream errors passed through keep their status and message.
//!
//! ## `count_tokens` ([`tokens`])
//! A local estimate; no upstream request.

mod error;
mod outcome;
mod request;
mod response;
mod stops;
mod stream;
mod tokens;

#[cfg(test)]
mod golden;

pub use error::{error_body, upstream_error_body};
pub use request::{ChatBody, Endpoint, MessagesRequest, RequestError};
pub use response::{ResponseError, message};
pub use stops::StopSequences;
pub use stream::MessageStream;
pub use tokens::estimate as estimate_tokens;
