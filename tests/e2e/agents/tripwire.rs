//! A trap for traffic that should not happen: a local listener that clients get as their
//! HTTP and HTTPS proxy (with `NO_PROXY` for 127.0.0.1, so their traffic to cliproxy goes
//! straight there). Any request to anywhere else (telemetry, update checks, feature flags)
//! arrives here as `CONNECT host:443` or `GET http://host/...`, is recorded and refused.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What a connection sends to say that every connection before it was seen.
const SENTINEL: &str = "cliproxy-tripwire-end";
/// A hang guard for a client that connects and sends nothing; not a synchronisation.
const READ_GUARD: Duration = Duration::from_secs(10);

/// A listening tripwire.
pub struct Tripwire {
    /// `http://127.0.0.1:PORT`, the value for `HTTP_PROXY` and `HTTPS_PROXY`.
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    ended: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl Tripwire {
    pub async fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ended: Arc<Mutex<Option<oneshot::Sender<()>>>> = Arc::new(Mutex::new(None));
        let (record, notify) = (Arc::clone(&seen), Arc::clone(&ended));
        tokio::spawn(async move {
            // One connection at a time, in the order they arrived.
            while let Ok((stream, _)) = listener.accept().await {
                let line = first_line(stream).await;
                if line == SENTINEL {
                    if let Some(ended) =
                        notify.lock().unwrap_or_else(PoisonError::into_inner).take()
                    {
                        // The test may have given up waiting; then nobody listens.
                        let _ = ended.send(());
                    }
                } else {
                    record
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            }
        });
        Tripwire { url, seen, ended }
    }

    /// Every request that came through so far (after the clients that made them exited): a
    /// connection made last, after the client's, reaches the listener after theirs.
    pub async fn requests(&self) -> Vec<String> {
        let (sender, receiver) = oneshot::channel();
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
        let address = self.url.trim_start_matches("http://");
        let mut sentinel = TcpStream::connect(address)
            .await
            .expect("the tripwire listens");
        sentinel
            .write_all(format!("{SENTINEL}\n").as_bytes())
            .await
            .expect("write the sentinel");
        tokio::time::timeout(READ_GUARD * 3, receiver)
            .await
            .expect("the tripwire reached the sentinel")
            .expect("the tripwire runs");
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The first line a connection sends (a request line), then the connection is closed.
async fn first_line(stream: TcpStream) -> String {
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    match tokio::time::timeout(READ_GUARD, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => line.trim_end().to_owned(),
        Ok(Err(error)) => format!("(a connection that failed: {error})"),
        Err(_) => "(a connection that sent nothing)".to_owned(),
    }
}
