//! A streamed upstream answer passed through to the client: the upstream's chunks are handed
//! on as they arrive (no buffering, no re-serialization), watched by a
//! [`StreamObserver`], with an idle timeout between chunks.
//!
//! Ending: a normal upstream end is a normal end (with or without `data: [DONE]`); a broken
//! connection, bad framing, an end inside a line of an event stream whose end is its
//! connection's (HTTP/1 without a length or chunks: a cut shows no other way), an over-long SSE
//! line or the idle timeout end the body with a [`StreamError`], which makes hyper abort the
//! client's response. Dropping the body (the
//! client went away) drops the upstream response, which closes its connection and so cancels
//! the upstream request.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};
use tracing::Span;
use usage_ledger::FailureClass;

use crate::layers::request_id::LoggedId;
use crate::meter::{Meter, stream_failure_class};
use crate::stream_error::StreamError;
use crate::upstream::observe::StreamObserver;

/// The body of a streamed upstream answer.
pub(crate) struct UpstreamBody {
    /// The first chunk, already read to check the answer before committing to it.
    first: Option<Bytes>,
    inner: Incoming,
    idle_timeout: Duration,
    last_chunk_at: Instant,
    /// Fires at or after `last_chunk_at + idle_timeout`; re-armed lazily, not per chunk.
    idle: Pin<Box<Sleep>>,
    observer: StreamObserver,
    /// Told what the answer used when the body is dropped (ended, broken or abandoned).
    meter: Option<Meter>,
    finished: bool,
    /// Why the stream broke off, when it did.
    broken: Option<FailureClass>,
    /// The request's span, for the log line when the client goes away.
    span: Span,
    /// The request's id, for the warning when the stream is aborted.
    id: LoggedId,
    /// An HTTP/1 event stream without a length or chunks: its end is the connection's, so a
    /// cut shows only as an end inside a line.
    ends_with_connection: bool,
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("idle_timeout", &self.idle_timeout)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    pub(crate) fn new(
        first: Option<Bytes>,
        inner: Incoming,
        idle_timeout: Duration,
        id: LoggedId,
        ends_with_connection: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            first,
            inner,
            idle_timeout,
            last_chunk_at: now,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            observer: StreamObserver::new(),
            meter: None,
            finished: false,
            broken: None,
            span: Span::current(),
            id,
            ends_with_connection,
        }
    }

    /// Meters the answer with `meter` (its events are parsed for usage from now on).
    pub(crate) fn set_meter(&mut self, meter: Meter) {
        self.observer.parse_events();
        self.meter = Some(meter);
    }

    fn deliver(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        self.last_chunk_at = Instant::now();
        if let Some(meter) = &mut self.meter {
            meter.first_byte(self.last_chunk_at.into_std());
        }
        if let Err(too_long) = self.observer.feed(&data) {
            return self.fail(StreamError::LineTooLong(too_long.limit));
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// Ends the stream with `error` (logged here: tower-http's trace layer does not classify
    /// body errors of plain HTTP responses). A passed-through stream is then aborted; a
    /// translated one ends with its API's error event.
    fn fail(&mut self, error: StreamError) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        self.finished = true;
        self.broken = Some(stream_failure_class(&error));
        tracing::warn!(request_id = %self.id, %error, "the upstream stream broke off; the client's answer ends incomplete");
        Poll::Ready(Some(Err(error)))
    }

    /// Ends the stream early because the answer is already complete (a translated answer cut
    /// at a stop sequence): records what was seen and lets the drop cancel the upstream request
    /// without calling it a client that went away.
    pub(crate) fn finish_early(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.observer.finish();
        tracing::debug!(
            "answer complete before the upstream's end; cancelling the upstream request"
        );
    }

    /// `Ready` once nothing came for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_chunk_at + self.idle_timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.idle.as_mut().reset(deadline);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return this.deliver(first);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return this.deliver(data),
                    // Empty chunks and trailers carry nothing for the client.
                    Ok(_) | Err(_) => {}
                },
                Poll::Ready(Some(Err(error))) => {
                    return this.fail(StreamError::Upstream(error));
                }
                Poll::Ready(None) if this.ends_with_connection && this.observer.was_cut() => {
                    return this.fail(StreamError::Cut);
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    this.observer.finish();
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        match this.poll_idle(cx) {
            Poll::Ready(()) => {
                let idle_timeout = this.idle_timeout;
                this.fail(StreamError::Idle(idle_timeout))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.streamed(
                self.finished,
                self.broken,
                self.observer.usage(),
                self.observer.text_chars(),
            );
        }
        if !self.finished {
            self.span.in_scope(|| {
                tracing::info!("client went away mid-stream; cancelling the upstream request");
            });
        }
    }
}
