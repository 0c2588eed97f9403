//! What the two stream translations share: the [`StreamTranslator`] interface a response body
//! drives, one upstream event at a time, the SSE encoding of the events they write, and the
//! reading of an error an upstream reports inside its stream ([`UpstreamError`]).

use std::fmt;

use bytes::BytesMut;
use serde_json::Value;

use crate::quote::client_text;

/// Turns chat-completions stream events into another API's stream events.
///
/// The caller splits the upstream body into events (with [`crate::sse::SseParser`]) and
/// feeds each event's data to [`on_event`](Self::on_event); at the upstream's end it calls
/// [`finish`](Self::finish), or [`fail`](Self::fail) when the upstream broke off. A
/// translator writes exactly one terminal event and nothing after it, whatever it is fed.
pub trait StreamTranslator: Send {
    /// One upstream event: `data` is a `chat.completion.chunk` JSON object or `[DONE]`.
    /// Appends the events to send, already encoded as SSE, to `out`.
    fn on_event(&mut self, data: &[u8], out: &mut BytesMut);

    /// The upstream stream ended normally; append the closing events.
    fn finish(&mut self, out: &mut BytesMut);

    /// The upstream stream broke off for `reason` (a sentence for the client, such as "the
    /// upstream sent nothing for 30 s, so the stream was aborted"); append an error event if
    /// the API has one.
    fn fail(&mut self, reason: &dyn fmt::Display, out: &mut BytesMut);

    /// Whether the answer is complete before the upstream's end, so the rest of the upstream
    /// stream is not needed (its closing events are already written).
    fn done(&self) -> bool {
        false
    }
}

/// Appends one SSE event (`event: NAME` and a JSON `data:` line) to `out`.
pub(crate) fn write_event(out: &mut BytesMut, name: &str, data: &serde_json::Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing JSON into a growable buffer cannot fail.
    let _ = serde_json::to_writer(BytesMutWriter(out), data);
    out.extend_from_slice(b"\n\n");
}

/// `io::Write` over a `BytesMut`.
struct BytesMutWriter<'a>(&'a mut BytesMut);

impl std::io::Write for BytesMutWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Words in an upstream error's `code`, `type` or `message` that say the upstream is
/// overloaded or throttling (compared in lower case).
const OVERLOADED_WORDS: [&str; 6] = [
    "overload",
    "throttl",
    "rate_limit",
    "rate limit",
    "capacity",
    "too many requests",
];

/// An error an upstream reported inside its stream: a chunk's `error`, an object with a
/// `message` (and maybe `code` and `type`) or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamError {
    /// The upstream's message, fit to quote ([`client_text`]).
    pub(crate) message: String,
    /// Whether it says the upstream is overloaded or throttling (a later retry may work),
    /// rather than that something failed.
    pub(crate) overloaded: bool,
}

impl UpstreamError {
    /// Reads a chunk's `error` value.
    pub(crate) fn read(error: &Value) -> Self {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
            .unwrap_or("no message");
        let says_overloaded = |text: &str| {
            let text = text.to_ascii_lowercase();
            OVERLOADED_WORDS.iter().any(|word| text.contains(word))
        };
        let overloaded = ["code", "type"]
            .iter()
            .filter_map(|field| error.get(field).and_then(Value::as_str))
            .chain([message])
            .any(says_overloaded);
        Self {
            message: client_text(message),
            overloaded,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn overloaded_and_throttling_errors_are_told_from_others() {
        for (error, overloaded) in [
            (
                json!({ "code": "Throttling", "message": "Requests throttling triggered." }),
                true,
            ),
            (
                json!({ "type": "server_error", "message": "The engine is currently overloaded" }),
                true,
            ),
            (
                json!({ "code": "rate_limit_exceeded", "message": "slow down" }),
                true,
            ),
            (json!("upstream at capacity"), true),
            (
                json!({ "code": "data_inspection_failed", "message": "inappropriate content" }),
                false,
            ),
            (
                json!({ "type": "server_error", "message": "Internal error" }),
                false,
            ),
            (json!({ "code": 500 }), false),
        ] {
            assert_eq!(
                UpstreamError::read(&error).overloaded,
                overloaded,
                "{error}"
            );
        }
        assert_eq!(
            UpstreamError::read(&json!({ "code": 1 })).message,
            "no message"
        );
    }
}
