//! The proxy's own tower layers (tower-http provides the tracing one): the request id, what
//! web pages may do (`browser`), client authentication and the request body limit. The last
//! three answer some requests themselves, without calling the inner service; [`ShortCircuit`]
//! is the future for that (`browser` has its own, which also adds CORS headers).

pub(crate) mod auth;
pub(crate) mod body_limit;
pub(crate) mod browser;
pub(crate) mod request_id;

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ProxyBody;

pin_project! {
    /// Either the layer's own answer or the inner service's future.
    #[project = ShortCircuitProj]
    pub(crate) enum ShortCircuit<F> {
        /// The layer answered.
        Answer {
            #[pin]
            ready: Ready<Result<Response<ProxyBody>, Infallible>>,
        },
        /// The inner service answers.
        Inner {
            #[pin]
            future: F,
        },
    }
}

impl<F> ShortCircuit<F> {
    pub(crate) fn answer(response: Response<ProxyBody>) -> Self {
        Self::Answer {
            ready: std::future::ready(Ok(response)),
        }
    }

    pub(crate) fn inner(future: F) -> Self {
        Self::Inner { future }
    }
}

impl<F> Future for ShortCircuit<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ShortCircuitProj::Answer { ready } => ready.poll(cx),
            ShortCircuitProj::Inner { future } => future.poll(cx),
        }
    }
}
