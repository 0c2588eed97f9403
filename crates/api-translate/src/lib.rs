//! The client APIs cliproxy speaks besides chat completions, mapped onto chat completions and
//! back: Anthropic Messages ([`anthropic`]) and OpenAI Responses ([`responses`]), requests,
//! whole answers and streams ([`StreamTranslator`]); the server-sent-events parser they and
//! the proxy read upstream streams with ([`sse`]); and the one rule for quoting text from
//! outside to a client ([`quote`]). [`reasoning`] is a client's reasoning request, for both
//! APIs, and the fields each kind of upstream takes for it.
//!
//! Invariants:
//! - Pure data transformation: JSON (or one event's bytes) in, JSON or SSE-encoded events
//!   out. No I/O, no config, no credentials, no async runtime and no HTTP library; the only
//!   clock reads make unique ids (`Shell::fresh`, message ids without an upstream id).
//! - A stream translator writes exactly one terminal event and nothing after it, whatever the
//!   upstream sends: `message_stop` or `error` (Anthropic), `response.completed`,
//!   `response.incomplete` or `response.failed` (Responses). Every event is `event: NAME`
//!   and one `data:` line of JSON whose `type` is `NAME`.
//! - Upstream error strings reach what a translator writes only through
//!   [`quote::client_text`]: one line, at most 300 characters.
//! - Nothing panics on any input; what cannot be translated is a typed error
//!   ([`anthropic::RequestError`], [`responses::Refusal`]) whose message says what to fix.
//!   Turning those into HTTP answers is the server's job.

#![allow(
    rustdoc::private_intra_doc_links,
    reason = "each API module's doc lists its mapping decisions by the private module that makes them"
)]

pub mod anthropic;
#[cfg(any(test, feature = "invariants"))]
pub mod invariants;
#[cfg(test)]
mod properties;
pub mod quote;
pub mod reasoning;
pub mod responses;
pub mod sse;
mod stream;

pub use stream::StreamTranslator;
