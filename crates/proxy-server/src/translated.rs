//! A streamed upstream answer re-encoded for another API ([`TranslatedBody`]): the upstream's
//! chat-completions SSE events go through an api-translate [`StreamTranslator`], and what it
//! writes is sent on. This is the glue between the pure translators and hyper.
//!
//! The upstream body underneath keeps its guarantees (idle timeout, cancellation on drop,
//! usage logging, the log line when it breaks). Ending: a normal upstream end lets the
//! translator write its closing events; a broken upstream (a cut, the idle timeout, an
//! over-long line) lets it write its API's error event (`error` for Anthropic; `error` and
//! `response.failed` for Responses), and then the body ends normally, as Anthropic and OpenAI
//! end a stream that failed. It does not end with an error: hyper would drop what it has
//! buffered but not yet written, the error event included, whenever the client's socket is
//! not drained at that moment. A translator that is [done](StreamTranslator::done) before the
//! upstream ends (an Anthropic answer cut at a stop sequence) ends this body at once, without
//! reading the rest; the upstream body is told so ([`UpstreamBody::finish_early`]) and dropped
//! with it, which cancels the upstream request.

use std::pin::Pin;
use std::task::{Context, Poll};

use api_translate::StreamTranslator;
use api_translate::sse::SseParser;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

use crate::stream_error::StreamError;
use crate::upstream::observe::MAX_SSE_LINE;
use crate::upstream::stream::UpstreamBody;

/// The translated body.
pub(crate) struct TranslatedBody {
    upstream: Box<UpstreamBody>,
    parser: SseParser,
    translator: Box<dyn StreamTranslator>,
    out: BytesMut,
    /// The translator wrote its last event: nothing more is read.
    done: bool,
}

impl std::fmt::Debug for TranslatedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslatedBody")
            .field("upstream", &self.upstream)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl TranslatedBody {
    /// Translates `upstream` with `translator`; `opening` is sent first (e.g. `message_start`).
    pub(crate) fn new(
        upstream: Box<UpstreamBody>,
        translator: Box<dyn StreamTranslator>,
        opening: Bytes,
    ) -> Self {
        Self {
            upstream,
            // The upstream body checks its lines against the same limit first.
            parser: SseParser::new(MAX_SSE_LINE),
            translator,
            out: BytesMut::from(&opening[..]),
            done: false,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let translator = &mut self.translator;
        let out = &mut self.out;
        let fed = self
            .parser
            .feed(data, |event| translator.on_event(event.data, out));
        if let Err(too_long) = fed {
            self.break_off(&StreamError::LineTooLong(too_long.limit));
        } else if self.translator.done() {
            self.upstream.finish_early();
            self.done = true;
        }
    }

    /// The upstream broke off: the translator's error event is the last thing sent.
    fn break_off(&mut self, error: &StreamError) {
        self.translator.fail(error, &mut self.out);
        self.done = true;
    }
}

impl Body for TranslatedBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(this.out.split().freeze()))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut *this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.feed(&data);
                    }
                }
                // The upstream body logged why.
                Poll::Ready(Some(Err(error))) => this.break_off(&error),
                Poll::Ready(None) => {
                    this.translator.finish(&mut this.out);
                    this.done = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.out.is_empty() && self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
