//! The body of every response the proxy sends: a whole buffer (JSON answers and errors), an
//! upstream stream passed through chunk by chunk, or one re-encoded for another API.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::stream_error::StreamError;
use crate::translated::TranslatedBody;
use crate::upstream::stream::UpstreamBody;

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
