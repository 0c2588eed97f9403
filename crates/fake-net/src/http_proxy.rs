//! An HTTP proxy: `CONNECT host:port` opens a tunnel; an absolute-form request
//! (`POST http://host:port/path HTTP/1.1`) is forwarded in origin form with `Connection: close`,
//! so every forwarded request comes on a connection of its own and is recorded.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::relay::{Listener, Record};

/// What the proxy was asked, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The request line without its line end, e.g. `CONNECT localhost:443 HTTP/1.1`.
    pub request_line: String,
    /// The `Proxy-Authorization` header's value, if any.
    pub proxy_authorization: Option<String>,
}

/// A running HTTP proxy.
pub struct HttpProxy {
    listener: Listener,
    seen: Record<ProxiedRequest>,
}

impl HttpProxy {
    pub async fn start() -> Self {
        let seen = Record::new();
        let record = seen.clone();
        let listener = Listener::start(move |stream| serve(stream, record.clone())).await;
        Self { listener, seen }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.seen.all()
    }
}

async fn serve(stream: TcpStream, seen: Record<ProxiedRequest>) {
    let mut client = BufReader::new(stream);
    let Some((request_line, headers)) = read_head(&mut client).await else {
        return;
    };
    let proxy_authorization = headers.iter().find_map(|(name, value)| {
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.clone())
    });
    seen.push(ProxiedRequest {
        request_line: request_line.clone(),
        proxy_authorization,
    });
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok()
        {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        return;
    }
    let Some((authority, path)) = target
        .strip_prefix("http://")
        .map(|rest| rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p)))
    else {
        let _ = client
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(authority).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let mut head = format!("{method} /{path} {version}\r\n");
    for (name, value) in &headers {
        let hop_by_hop = ["proxy-authorization", "proxy-connection", "connection"]
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop));
        if !hop_by_hop {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("connection: close\r\n\r\n");
    if upstream.write_all(head.as_bytes()).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// The request line and headers, up to the empty line; `None` if the client left first.
async fn read_head(client: &mut BufReader<TcpStream>) -> Option<(String, Vec<(String, String)>)> {
    let mut request_line = String::new();
    client.read_line(&mut request_line).await.ok()?;
    let request_line = request_line.trim_end().to_owned();
    if request_line.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some((request_line, headers));
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}
