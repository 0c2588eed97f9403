//! `x-request-id`: the client's own, or a new UUID v4 set on the request, and the same value
//! on the response, whichever layer answered it.
//!
//! tower-http's `SetRequestId` and `PropagateRequestId` do this too, but each also stores the id
//! in the request's and response's extensions: six allocations per request that nothing here
//! reads. This layer costs two (the id and the copy kept for the response).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The header, as hyper reads it (lower case).
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds [`RequestId`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// Gives every request an `x-request-id` and copies it to the response.
#[derive(Debug, Clone)]
pub(crate) struct RequestId<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_id();
                request.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        RequestIdFuture {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

/// A request's id, for the log lines that come outside its span (the per-request span is
/// DEBUG, so at the default level warnings carry the id themselves).
#[derive(Debug, Clone, Default)]
pub(crate) struct LoggedId(Option<HeaderValue>);

impl LoggedId {
    /// The id this layer set on (or kept for) `request`.
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        Self(request.headers().get(&X_REQUEST_ID).cloned())
    }
}

impl fmt::Display for LoggedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.0.as_ref().and_then(|id| id.to_str().ok());
        f.write_str(id.unwrap_or("-"))
    }
}

/// A new UUID v4, hyphenated.
fn new_id() -> HeaderValue {
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

pin_project! {
    /// The inner service's answer, with the request's id.
    pub(crate) struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().entry(X_REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
}
