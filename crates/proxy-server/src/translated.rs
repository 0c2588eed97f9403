//! A streamed upstream answer re-encoded for another API ([`TranslatedBody`]): the upstream's
//! chat-completions SSE events go through an api-translate [`StreamTranslator`], and what it
//! writes is sent on. This is the glue between the pure translators and hyper.
//!
//! The upstream body underneath keeps its guarantees (idle timeout, cancellation on drop,
//! usage logging). Ending: a normal upstream end lets the translator write its closing events;
//! a broken upstream lets it write an error event (where the API has one) and then ends this
//! body with the same [`StreamError`], so the client's response is aborted, never completed.
//! A translator that is [done](StreamTranslator::done) before the upstream ends (an Anthropic
//! answer cut at a stop sequence) ends this body at once, without reading the rest; the
//! upstream body is told so ([`UpstreamBody::finish_early`]) and dropped with it, which
//! cancels the upstream request.

use std::pin::Pin;
use std::task::{Context, Poll};

use api_translate::StreamTranslator;
use api_translate::sse::SseParser;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

use crate::stream_error::StreamError;
use crate::upstream::UpstreamBody;

/// Longest SSE line or event accepted from the upstream while translating.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// What happens after the pending output is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
    Done,
    /// Broken: the error event is written; give the server one turn to flush it.
    Failing,
    /// The error event had its turn; the body now ends with the error.
    Failed,
}

/// The translated body.
pub(crate) struct TranslatedBody {
    upstream: Box<UpstreamBody>,
    parser: SseParser,
    translator: Box<dyn StreamTranslator>,
    out: BytesMut,
    ending: Ending,
    error: Option<StreamError>,
}

impl std::fmt::Debug for TranslatedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslatedBody")
            .field("upstream", &self.upstream)
            .field("ending", &self.ending)
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
            parser: SseParser::new(MAX_EVENT_BYTES),
            translator,
            out: BytesMut::from(&opening[..]),
            ending: Ending::Running,
            error: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let translator = &mut self.translator;
        let out = &mut self.out;
        let fed = self
            .parser
            .feed(data, |event| translator.on_event(event.data, out));
        if let Err(too_long) = fed {
            self.break_off(StreamError::LineTooLong(too_long.limit));
        } else if self.translator.done() {
            self.upstream.finish_early();
            self.ending = Ending::Done;
        }
    }

    fn break_off(&mut self, error: StreamError) {
        self.translator.fail(&error, &mut self.out);
        self.error = Some(error);
        self.ending = Ending::Failing;
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
            match this.ending {
                Ending::Done => return Poll::Ready(None),
                Ending::Failing => {
                    // hyper aborts the connection as soon as the body errors, dropping what
                    // it has buffered but not yet written: yielding once lets it flush the
                    // error event to the client first.
                    this.ending = Ending::Failed;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Ending::Failed => return Poll::Ready(this.error.take().map(Err)),
                Ending::Running => {}
            }
            match Pin::new(&mut *this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.feed(&data);
                    }
                }
                Poll::Ready(Some(Err(error))) => this.break_off(error),
                Poll::Ready(None) => {
                    this.translator.finish(&mut this.out);
                    this.ending = Ending::Done;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.out.is_empty() && self.ending == Ending::Done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
