//! The accept loop: HTTP/1.1 connections with a header read timeout, at most
//! `max_connections` of them at once, and graceful shutdown that stops accepting, lets
//! in-flight requests and streams finish within the grace period, then closes whatever is
//! left.
//!
//! At the connection cap the loop stops calling `accept` until a connection closes: the
//! connections past it wait in the kernel's listen backlog (and past that, clients see their
//! connects time out or refused), and the process's file descriptors stay bounded. Reaching
//! the cap is logged at WARN, at most once a minute.
//!
//! HTTP/1 only, on purpose: hyper-util's HTTP/1 + h2c auto-detection reads the connection
//! preface with no timeout, so a client that connects and sends nothing would hold its socket
//! forever; hyper's HTTP/1 server starts the header read timeout as soon as it waits for a
//! request head.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::body::ProxyBody;
use crate::error::ServeError;
use crate::proxy::Proxy;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two warnings that the connection cap was reached.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Connections the kernel queues for the accept loop (capped by `net.core.somaxconn`). The
/// standard library's 128 would make clients past `max_connections` + 128 time out connecting
/// while the server is at its cap; queued connections cost the process nothing.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` for [`Proxy::serve`], with a listen backlog of 1024 (`SO_REUSEADDR` set,
/// as `TcpListener::bind` does).
///
/// # Errors
///
/// The socket's error: the address is in use, not this machine's, or not allowed.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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
        // Refused credentials are probed back while the server runs.
        let prober = {
            let state = self.state.load();
            tokio::spawn(async move { state.upstream.probe_refused().await })
        };
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout);
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let max_connections = self.config.max_connections;
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut warned_full: Option<Instant> = None;
        tracing::debug!(%addr, max_connections, "listening");
        loop {
            let slot = match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
                        warned_full = Some(Instant::now());
                        tracing::warn!(
                            open = max_connections,
                            "connection limit reached (max-connections = {max_connections}); \
                             not accepting new connections until one closes"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        slot = Arc::clone(&slots).acquire_owned() => {
                            drop(slot.expect("the slots' semaphore is never closed"));
                        }
                    }
                    continue;
                }
            };
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
                    let mount = self.mount.clone();
                    let connection = http.serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |request: Request<Incoming>| {
                            let service = service.clone();
                            let mount = mount.clone();
                            async move {
                                match mount {
                                    Some(mount) if mount.claims(request.uri().path()) => {
                                        let answer = mount.serve(request, peer).await;
                                        Ok(answer.map(|bytes| Either::Left(ProxyBody::full(bytes))))
                                    }
                                    _ => service
                                        .oneshot(request)
                                        .await
                                        .map(|answer| answer.map(Either::Right)),
                                }
                            }
                        }),
                    );
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "connection closed with an error");
                        }
                        // The socket is closed: a new connection may take its place.
                        drop(slot);
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
        prober.abort();
        tracing::info!("stopped");
        Ok(())
    }
}
