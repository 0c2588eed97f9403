//! OpenAI Responses (`POST /v1/responses`, what Codex CLI speaks) on top of chat completions.
//!
//! - [`request`]: a Responses request as a chat-completions request (its table lists every
//!   field), with [`input`] mapping the input items to messages.
//! - [`response`]: a whole chat completion as a Responses object.
//! - [`stream`]: a streamed chat completion as Responses stream events.
//! - [`object`]: the response envelope, items and usage both answer paths share.
//! - [`namespaces`]: namespace tools as flat chat tools, and their calls back.
//! - [`refusal`]: why a request cannot be translated ([`Refusal`]).
//!
//! cliproxy is stateless: it stores no responses, so `previous_response_id` is refused and
//! clients send the whole conversation (Codex CLI does). Only function tools (also those
//! inside `namespace` tools) reach the upstream; hosted tools are dropped. Reasoning the
//! upstream sends (`reasoning_content` or `reasoning`) comes back as a `reasoning` item with
//! the text as its summary; reasoning items sent back in `input` are dropped. What a client
//! asks of the model's reasoning goes beside the chat body ([`crate::reasoning`]).

mod input;
mod namespaces;
mod object;
mod refusal;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod golden;

pub use namespaces::Namespaces;
pub use object::Shell;
pub use refusal::Refusal;
pub use request::{Translated, to_chat};
pub use response::from_chat;
pub use stream::ResponsesStream;
