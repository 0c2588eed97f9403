//! The request body limit: a declared `Content-Length` over the limit gets 413 at once,
//! before any of the body is read (HTTP/1 clients waiting on `Expect: 100-continue` never
//! send it); any other body is wrapped in [`Limited`], and
//! [`BodyReader::read`](crate::request_body::BodyReader::read) turns hitting the limit while
//! reading (e.g. a chunked body) into the same 413.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body_util::Limited;
use tower::{Layer, Service};

use super::ShortCircuit;
use crate::api_error::{ApiError, ErrorShape};
use crate::body::ProxyBody;

/// Adds [`BodyLimit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimitLayer {
    max: usize,
}

impl BodyLimitLayer {
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            max: self.max,
        }
    }
}

/// Refuses declared-too-large bodies and limits the rest; the inner service sees
/// `Request<Limited<B>>`.
#[derive(Debug, Clone)]
pub(crate) struct BodyLimit<S> {
    inner: S,
    max: usize,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Limited<B>>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ShortCircuit<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let max = u64::try_from(self.max).unwrap_or(u64::MAX);
        if declared.is_some_and(|declared| declared > max) {
            let shape = ErrorShape::for_path(request.uri().path());
            return ShortCircuit::answer(
                ApiError::body_too_large(self.max).into_response_as(shape),
            );
        }
        let max = self.max;
        ShortCircuit::inner(self.inner.call(request.map(|body| Limited::new(body, max))))
    }
}
