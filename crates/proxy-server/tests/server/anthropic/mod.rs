//! The Anthropic Messages API through the whole proxy, in-process (`Proxy::service`) against
//! the fake Qwen: answers, streams, tool use and thinking, errors in Anthropic's shape, and
//! `count_tokens`. The mapping itself is pinned by the golden tests in
//! api-translate's `src/anthropic/golden.rs`. No sleeps and no timing assertions; every await is
//! bounded by a hang guard.

mod count_tokens;
mod errors;
mod messages;
