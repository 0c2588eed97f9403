//! The baseline: a do-nothing HTTP/1 pass-through proxy in front of the stub.
//!
//! It forwards each request unchanged (only `Host` is rewritten) over a
//! keep-alive upstream connection of its own per client connection, and
//! streams the upstream response back as it arrives. It is about the least
//! work any proxy can do, so cliproxy's numbers are judged relative to it,
//! measured in the same run on the same machine.
//!
//! [`Baseline`] runs inside the benchmark's process (it is what the budget
//! compares with); [`BaselineProcess`] runs the same code in a child process
//! (`xtask bench --serve-baseline <upstream>`), so that it also pays the
//! hop between processes that cliproxy pays, for comparison.

use std::{
    convert::Infallible,
    io::{BufRead as _, Read as _, Write as _},
    net::SocketAddr,
    process::{Command, Stdio},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    client::conn::http1::SendRequest,
    header::{HOST, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use super::net::{self, Server};

/// The running pass-through; stops accepting when dropped.
pub(crate) struct Baseline {
    server: Server,
}

type Upstream = Arc<Mutex<Option<SendRequest<Incoming>>>>;
type ProxyBody = Either<Incoming, Full<Bytes>>;

impl Baseline {
    /// Starts forwarding to `upstream` (a loopback address).
    pub(crate) async fn start(upstream: SocketAddr) -> Result<Baseline> {
        net::ensure_loopback(upstream)?;
        let host = net::host_header(upstream);
        let server = Server::start(move |stream| {
            let host = host.clone();
            async move {
                // One upstream connection per client connection: HTTP/1
                // serves one request at a time, so it is never contended.
                let conn: Upstream = Arc::new(Mutex::new(None));
                let service =
                    service_fn(move |req| forward(Arc::clone(&conn), upstream, host.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })
        .await?;
        Ok(Baseline { server })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

async fn forward(
    conn: Upstream,
    upstream: SocketAddr,
    host: HeaderValue,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    req.headers_mut().insert(HOST, host);
    let mut slot = conn.lock().await;
    if slot.as_ref().is_none_or(SendRequest::is_closed) {
        match net::connect(upstream).await {
            Ok(sender) => *slot = Some(sender),
            Err(error) => return Ok(bad_gateway(&format!("{error:#}"))),
        }
    }
    let Some(sender) = slot.as_mut() else {
        return Ok(bad_gateway("no upstream connection"));
    };
    if let Err(error) = sender.ready().await {
        *slot = None;
        return Ok(bad_gateway(&error.to_string()));
    }
    match sender.send_request(req).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(error) => {
            *slot = None;
            Ok(bad_gateway(&error.to_string()))
        }
    }
}

fn bad_gateway(message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "baseline: upstream failed: {message}\n"
    )))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// The baseline in a process of its own (a child running
/// `xtask bench --serve-baseline <upstream>`), so that it pays the same
/// cross-process costs as cliproxy. Killed on drop; it also exits when its
/// stdin closes, i.e. when the benchmark goes away.
pub(crate) struct BaselineProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl BaselineProcess {
    pub(crate) fn spawn(upstream: SocketAddr) -> Result<BaselineProcess> {
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["bench", "--serve-baseline", &upstream.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        // From here on, the guard kills the child if anything fails.
        let mut process = BaselineProcess {
            child,
            addr: SocketAddr::from((net::LOOPBACK, 0)),
        };
        let stdout = process.child.stdout.take().context("no stdout pipe")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        process.addr = line.trim().parse().with_context(|| {
            format!("the baseline process did not report its address: {line:?}")
        })?;
        net::ensure_loopback(process.addr)?;
        Ok(process)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BaselineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side of [`BaselineProcess`]: serves until stdin closes.
pub(crate) fn serve_process(upstream: &str) -> Result<()> {
    let upstream: SocketAddr = upstream.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let baseline = runtime.block_on(Baseline::start(upstream))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", baseline.addr())?;
    stdout.flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
