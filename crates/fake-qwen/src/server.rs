//! The HTTP plumbing: a hyper server on its own thread and Tokio runtime, so the fake keeps
//! answering even while a test blocks its own thread (for example on `std::process::Command`).
//! Requests are read whole, recorded, and routed by path to the endpoint modules (`oauth` and
//! `chat`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::gate::RefreshGate;
use crate::record::RecordedRequest;
use crate::reply::{self, Reply};
use crate::state::{Shared, World};
use crate::{chat, oauth};

/// Returned to hyper instead of an answer while the fake is down: hyper then drops the
/// connection without writing anything, which the client sees as a transport error.
#[derive(Debug)]
struct Down;

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fake Qwen is down; dropping the connection")
    }
}

impl std::error::Error for Down {}

/// Runs on the fake's own thread: binds 127.0.0.1:0 and serves until `shutdown` fires or is
/// dropped. `ready` gets the bound address and the new world, or the reason starting failed.
pub(crate) fn run(
    ready: oneshot::Sender<Result<(SocketAddr, Shared), String>>,
    shutdown: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            // The receiver only goes away if start() itself was abandoned.
            let _ = ready.send(Err(format!("cannot build a Tokio runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(format!("cannot bind 127.0.0.1:0: {error}")));
                return;
            }
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => {
                let _ = ready.send(Err(format!("cannot read the bound address: {error}")));
                return;
            }
        };
        let shared = Shared::new(World::new(addr.to_string()));
        if ready.send(Ok((addr, shared.clone()))).is_err() {
            return;
        }
        serve(listener, shared, shutdown).await;
    });
}

/// Accepts connections until shutdown; dropping the `JoinSet` then aborts open connections.
async fn serve(listener: TcpListener, shared: Shared, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    // A connection ending badly (client gone, fake down) is not the fake's problem.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn handle(shared: Shared, request: Request<Incoming>) -> Result<Reply, Down> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let recorded = record(&parts, &body);
    if let Some((gate, ticket)) = hold_refresh(&shared, &parts.method, &recorded)? {
        gate.wait_for_release(ticket).await;
        let (reply, latency) = {
            let mut world = shared.lock();
            (oauth::token(&mut world, &recorded), world.refresh_latency)
        };
        sleep_unless_zero(latency).await;
        return Ok(gate.track(ticket, reply));
    }

    let (reply, latency) = answer(&shared, &parts.method, recorded)?;
    sleep_unless_zero(latency).await;
    Ok(reply)
}

/// Waits `latency`, if any: a refresh answer decided (and the old token retired) but not yet
/// received, as over a slow network.
async fn sleep_unless_zero(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// Routes `recorded` and answers it, with the lock held; also returns how long to wait before
/// sending the answer (the refresh latency, for refreshes).
fn answer(
    shared: &Shared,
    method: &Method,
    recorded: RecordedRequest,
) -> Result<(Reply, Duration), Down> {
    let mut world = shared.lock();
    if world.down {
        return Err(Down);
    }
    let path = recorded.path.clone();
    let mut latency = Duration::ZERO;
    let reply = match (path.as_str(), method) {
        (oauth::DEVICE_CODE_PATH, &Method::POST) => {
            let reply = oauth::device_code(&mut world, &recorded);
            world.device_requests.push(recorded);
            reply
        }
        (oauth::TOKEN_PATH, &Method::POST) => {
            let reply = oauth::token(&mut world, &recorded);
            if recorded.form_value("grant_type") == Some("refresh_token") {
                latency = world.refresh_latency;
            }
            world.token_requests.push(recorded);
            reply
        }
        (oauth::DEVICE_CODE_PATH | oauth::TOKEN_PATH, _) => {
            reply::oauth_error(405, "invalid_request", "Only POST is allowed here")
        }
        (chat::CHAT_COMPLETIONS_PATH, &Method::POST) => {
            let reply = chat::completions(&mut world, &recorded);
            world.chat.requests.push(recorded);
            reply
        }
        (chat::MODELS_PATH, &Method::GET) => chat::models(&world, &recorded),
        (chat::CHAT_COMPLETIONS_PATH | chat::MODELS_PATH, _) => reply::api_error(
            405,
            "method_not_allowed",
            "This method is not allowed here",
            "invalid_request_error",
        ),
        _ => reply::oauth_error(404, "not_found", "No such endpoint on the fake Qwen server"),
    };
    Ok((reply, latency))
}

/// When the refresh gate is on and `recorded` is a refresh, records it and returns its number
/// in the gate; the caller answers it once released.
fn hold_refresh(
    shared: &Shared,
    method: &Method,
    recorded: &RecordedRequest,
) -> Result<Option<(RefreshGate, usize)>, Down> {
    let mut world = shared.lock();
    if world.down {
        return Err(Down);
    }
    let is_refresh = recorded.path == oauth::TOKEN_PATH
        && method == Method::POST
        && recorded.form_value("grant_type") == Some("refresh_token");
    if !is_refresh {
        return Ok(None);
    }
    let Some(ticket) = world.refresh_gate.admit() else {
        return Ok(None);
    };
    world.token_requests.push(recorded.clone());
    Ok(Some((world.refresh_gate.clone(), ticket)))
}

fn record(parts: &http::request::Parts, body: &Bytes) -> RecordedRequest {
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let form = if is_form {
        url::form_urlencoded::parse(body)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers,
        form,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}
