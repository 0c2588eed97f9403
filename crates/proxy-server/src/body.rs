//! The body of every response the proxy sends: a whole buffer (JSON answers and errors) or
//! an upstream stream passed through chunk by chunk, and the error a stream ends with when it
//! breaks off.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::translate::stream::TranslatedBody;
use crate::upstream::UpstreamBody;

/// A response body of the proxy.
///
/// A streamed body that ends with an error ([`StreamError`]) makes hyper abort the response
/// (HTTP/1: the connection closes without the terminating chunk), so a broken upstream stream
/// never looks complete to the client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A whole body; `None` once sent.
    Full(Option<Bytes>),
    /// An upstream stream (boxed: it is much larger than a buffer).
    Stream(Box<UpstreamBody>),
    /// An upstream stream re-encoded for another API.
    Translated(Box<TranslatedBody>),
}

impl ProxyBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes).filter(|bytes| !bytes.is_empty())),
        }
    }

    pub(crate) fn stream(body: Box<UpstreamBody>) -> Self {
        Self {
            kind: Kind::Stream(body),
        }
    }

    pub(crate) fn translated(body: TranslatedBody) -> Self {
        Self {
            kind: Kind::Translated(Box::new(body)),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Stream(body) => Pin::new(&mut **body).poll_frame(cx),
            Kind::Translated(body) => Pin::new(&mut **body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
            Kind::Translated(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            Kind::Stream(body) => body.size_hint(),
            Kind::Translated(body) => body.size_hint(),
        }
    }
}

/// Why a streamed answer was aborted before its end.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The upstream connection broke or sent bad framing.
    #[error("the upstream stream broke off: {0}")]
    Upstream(#[source] hyper::Error),
    /// The upstream's stream ended with its connection in the middle of a line: it was cut off.
    #[error("the upstream stream ended in the middle of an event, so it was cut off")]
    Cut,
    /// The upstream sent nothing for too long.
    #[error("the upstream sent nothing for {} s, so the stream was aborted", .0.as_secs())]
    Idle(Duration),
    /// The upstream sent a server-sent-events line longer than the proxy accepts.
    #[error("the upstream sent an event line longer than {0} bytes, so the stream was aborted")]
    LineTooLong(usize),
}
