//! The accept loop: HTTP/1.1 connections with a header read timeout, and graceful shutdown
//! that stops accepting, lets in-flight requests and streams finish within the grace period,
//! then closes whatever is left.
//!
//! HTTP/1 only, on purpose: hyper-util's HTTP/1 + h2c auto-detection reads the connection
//! preface with no timeout, so a client that connects and sends nothing would hold its socket
//! forever; hyper's HTTP/1 server starts the header read timeout as soon as it waits for a
//! request head.

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::error::ServeError;
use crate::proxy::Proxy;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Proxy {
    /// Serves on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests and streams finish within `shutdown_grace`, closes the rest, and returns.
    ///
    /// # Errors
    ///
    /// [`ServeError::Config`] when the listener's address is not loopback and no client keys
    /// are configured (see [`ServerConfig::check_bind`](crate::ServerConfig::check_bind));
    /// [`ServeError::LocalAddr`] when its address cannot be read.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        self.config.check_bind(&addr)?;
        let service = self.service();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout);
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::debug!(%addr, "listening");
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "cannot accept a connection");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    };
                    // Small SSE writes should leave at once; failing to set it only costs latency.
                    let _ = stream.set_nodelay(true);
                    let service = service.clone();
                    let connection = http.serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |request| service.clone().oneshot(request)),
                    );
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "connection closed with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        let grace = self.config.shutdown_grace;
        tracing::info!(
            open = connections.len(),
            grace_s = grace.as_secs(),
            "shutting down: no new connections; waiting for open requests"
        );
        let drained = tokio::time::timeout(grace, async {
            graceful.shutdown().await;
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "requests still running after the shutdown grace period; closing them"
            );
            connections.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
