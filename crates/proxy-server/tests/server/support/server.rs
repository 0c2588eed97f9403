//! The proxy serving on a real socket, and a client for it.

use std::net::SocketAddr;

use proxy_server::{Proxy, ServeError};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::within;

/// The proxy serving on a real socket.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    pub async fn start(proxy: Proxy) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a free port");
        Self::start_on(proxy, listener)
    }

    /// A server whose connections have a send buffer of about `bytes` (they inherit the
    /// listener's), so that an answer fills it quickly when the client does not read.
    pub async fn start_with_send_buffer(proxy: Proxy, bytes: u32) -> Server {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("a free port");
        Self::start_on(proxy, socket.listen(16).expect("a listener"))
    }

    fn start_on(proxy: Proxy, listener: TcpListener) -> Server {
        let addr = listener.local_addr().expect("an address");
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(listener, async {
            // A dropped sender also means shutdown.
            let _ = signal.await;
        }));
        Server {
            addr,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the server to shut down, without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.trigger_shutdown();
        within(&mut self.task).await.expect("serve did not panic")
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// A plain HTTP client for real-socket tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}
