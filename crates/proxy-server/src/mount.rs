//! [`Mount`]: routes a higher crate serves beside the API, on the same listener, outside the
//! API's tower stack (the management API, `/metrics` and the dashboard, which have a key of
//! their own and must not take client keys).

use std::net::SocketAddr;

use bytes::Bytes;
use credential_pool::BoxFuture;
use http::{Request, Response};
use hyper::body::Incoming;

/// Routes served beside the API. The accept loop asks [`Mount::claims`] for each request's
/// path; a claimed request goes to [`Mount::serve`] with the peer's address, and never through
/// the API's layers (client auth, browser guard, body limit): the mount does its own checks.
pub trait Mount: Send + Sync + 'static {
    /// Whether `path` is one of the mount's routes.
    fn claims(&self, path: &str) -> bool;

    /// Answers a claimed request from `peer`. Its whole answer is one buffer.
    fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, Response<Bytes>>;
}
