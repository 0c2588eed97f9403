//! What the two stream translations share: the [`StreamTranslator`] interface a response body
//! drives, one upstream event at a time, and the SSE encoding of the events they write.

use std::fmt;

use bytes::BytesMut;

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
