//! Mapping other APIs onto chat completions and back: Anthropic Messages
//! ([`anthropic`]) and OpenAI Responses ([`responses`]). Pure data transformation:
//! JSON in, JSON (or SSE event bytes) out; no I/O. [`stream`] runs a translator over an
//! upstream stream as a response body. [`thinking`] decides which models take Qwen's
//! thinking switch, for both.

pub(crate) mod anthropic;
pub(crate) mod responses;
pub(crate) mod stream;
pub(crate) mod thinking;
