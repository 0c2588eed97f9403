//! Loopback networking shared by the stub, the baseline and the load
//! generator: an accept loop, an HTTP/1 client connection, free ports.
//!
//! Every address here is checked to be on the loopback interface: the
//! benchmark must never send traffic anywhere else.

use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr},
};

use anyhow::{Context, Result, ensure};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The only host the benchmark talks to.
pub(crate) const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A server's accept loop; dropping it stops accepting (open connections end
/// with the runtime).
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds a free port on 127.0.0.1 and hands every accepted connection
    /// (with `TCP_NODELAY` set) to `on_conn` in a task of its own.
    pub(crate) async fn start<F, Fut>(on_conn: F) -> Result<Server>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((LOOPBACK, 0))
            .await
            .context("cannot bind a port on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors or similar: back off briefly.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(on_conn(stream));
            }
        });
        Ok(Server { addr, task })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a keep-alive HTTP/1 connection to `addr` (loopback only) and drives
/// it in a background task that ends when the returned sender is dropped.
pub(crate) async fn connect<B>(addr: SocketAddr) -> Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = connect_owned(addr).await?;
    connection.detach();
    Ok(sender)
}

/// Like [`connect`], but the connection closes (its socket with it) when the
/// returned [`Connection`] is dropped, wherever the exchange is: a client
/// that hangs up mid-answer.
pub(crate) async fn connect_owned<B>(addr: SocketAddr) -> Result<(SendRequest<B>, Connection)>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    ensure_loopback(addr)?;
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr} failed"))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, Connection(Some(task))))
}

/// The task that drives one client connection; see [`connect_owned`].
pub(crate) struct Connection(Option<JoinHandle<()>>);

impl Connection {
    /// Lets the connection run on its own after this handle is dropped.
    fn detach(mut self) {
        self.0 = None;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Refuses any address that is not on the loopback interface.
pub(crate) fn ensure_loopback(addr: SocketAddr) -> Result<()> {
    ensure!(
        addr.ip().is_loopback(),
        "refusing to send benchmark traffic to {addr}: only loopback addresses are allowed"
    );
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub(crate) fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind((LOOPBACK, 0)).context("cannot bind a port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// The `Host` header value for `addr`.
pub(crate) fn host_header(addr: SocketAddr) -> hyper::header::HeaderValue {
    hyper::header::HeaderValue::try_from(addr.to_string())
        .expect("a socket address is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_allowed() {
        assert!(ensure_loopback("127.0.0.1:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("[::1]:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("10.0.0.1:80".parse().unwrap()).is_err());
        assert!(ensure_loopback("0.0.0.0:80".parse().unwrap()).is_err());
    }
}
