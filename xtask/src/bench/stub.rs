//! The upstream stub: an in-process OpenAI-compatible server that answers
//! `POST /v1/chat/completions` as cheaply as it can, so that what is measured
//! is the proxy in front of it.
//!
//! * non-streaming: a small fixed `chat.completion` JSON;
//! * `"stream": true`: [`STREAM_CHUNKS`] `chat.completion.chunk` SSE events
//!   then `data: [DONE]`, each written and flushed on its own (the body yields
//!   once between events, so hyper flushes every event as a separate write)
//!   with no artificial delay.
//!
//! While a [`Gate`] from [`Stub::hold`] is alive, streams send their first
//! event and then wait until the gate is released (at most [`HOLD_LIMIT`]),
//! which lets the benchmark keep many streams open at once.
//!
//! Any other request is answered 404 and counted in [`Stub::unexpected`]: the
//! proxy under test has no reason to call anything else (token refreshes,
//! for instance, would show up there).

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Frame, Incoming, SizeHint},
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::net::Server;

/// Content events in one streamed answer (`data: [DONE]` comes on top).
pub(crate) const STREAM_CHUNKS: usize = 20;

/// Longest time a held stream waits for its gate.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// Unexpected requests remembered (method and path) for the report.
const UNEXPECTED_KEPT: usize = 5;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark stub."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}}"#;

const MODELS: &str =
    r#"{"object":"list","data":[{"id":"bench-model","object":"model","owned_by":"bench"}]}"#;

/// What the stub has seen and the current hold gate.
struct State {
    /// The pre-rendered SSE events, `[DONE]` last.
    events: Arc<[Bytes]>,
    completion: Bytes,
    gate: Mutex<Option<watch::Receiver<bool>>>,
    /// Streams currently waiting at a gate.
    held: AtomicUsize,
    chat_requests: AtomicU64,
    unexpected: AtomicU64,
    unexpected_seen: Mutex<Vec<String>>,
}

/// The running stub; stops accepting when dropped.
pub(crate) struct Stub {
    server: Server,
    state: Arc<State>,
}

/// Keeps streams started meanwhile open after their first event; releases
/// them when [`Gate::release`]d or dropped.
pub(crate) struct Gate {
    release: watch::Sender<bool>,
    state: Arc<State>,
}

impl Stub {
    pub(crate) async fn start() -> Result<Stub> {
        let state = Arc::new(State {
            events: render_events(),
            completion: Bytes::from_static(COMPLETION.as_bytes()),
            gate: Mutex::new(None),
            held: AtomicUsize::new(0),
            chat_requests: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            unexpected_seen: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        let server = Server::start(move |stream| {
            let state = Arc::clone(&shared);
            async move {
                let service = service_fn(move |req| handle(Arc::clone(&state), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })
        .await?;
        Ok(Stub { server, state })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Holds every stream that starts from now on until the gate is released.
    pub(crate) fn hold(&self) -> Gate {
        let (release, gate) = watch::channel(false);
        *lock(&self.state.gate) = Some(gate);
        Gate {
            release,
            state: Arc::clone(&self.state),
        }
    }

    /// Streams that sent their first event and wait at the gate now.
    pub(crate) fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Chat completion requests answered so far.
    pub(crate) fn chat_requests(&self) -> u64 {
        self.state.chat_requests.load(Ordering::Relaxed)
    }

    /// Requests for anything but chat completions and the model list, with
    /// the first few of them (`METHOD /path`).
    pub(crate) fn unexpected(&self) -> (u64, Vec<String>) {
        (
            self.state.unexpected.load(Ordering::Relaxed),
            lock(&self.state.unexpected_seen).clone(),
        )
    }
}

impl Gate {
    pub(crate) fn release(self) {
        // Drop does the work.
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        *lock(&self.state.gate) = None;
        let _ = self.release.send(true);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn render_events() -> Arc<[Bytes]> {
    let mut events: Vec<Bytes> = (0..STREAM_CHUNKS)
        .map(|i| {
            let finish = if i + 1 == STREAM_CHUNKS {
                r#""stop""#
            } else {
                "null"
            };
            Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":{finish}}}]}}\n\n"
            ))
        })
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events.into()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Reply>, Infallible> {
    let path = req.uri().path();
    let reply = match (req.method(), path) {
        (&Method::POST, "/v1/chat/completions") => {
            state.chat_requests.fetch_add(1, Ordering::Relaxed);
            let body = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            if wants_stream(&body) {
                stream_reply(&state)
            } else {
                let mut reply = Response::new(Reply::once(state.completion.clone()));
                reply
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                reply
            }
        }
        (&Method::GET, "/v1/models") => {
            let mut reply = Response::new(Reply::once(Bytes::from_static(MODELS.as_bytes())));
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            reply
        }
        _ => {
            state.unexpected.fetch_add(1, Ordering::Relaxed);
            let mut seen = lock(&state.unexpected_seen);
            if seen.len() < UNEXPECTED_KEPT {
                seen.push(format!("{} {path}", req.method()));
            }
            let mut reply = Response::new(Reply::once(Bytes::from_static(b"not found\n")));
            *reply.status_mut() = StatusCode::NOT_FOUND;
            reply
        }
    };
    Ok(reply)
}

/// True when the JSON request body has `"stream": true`.
fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

fn stream_reply(state: &Arc<State>) -> Response<Reply> {
    let gate = lock(&state.gate).clone();
    let hold = gate.map(|mut gate| {
        // Counted from now, before the first event can reach the client: whoever has seen a
        // stream's first event also sees it counted.
        let held = HeldCount::new(Arc::clone(state));
        let wait: HoldFuture = Box::pin(async move {
            let _held = held;
            let _ = tokio::time::timeout(HOLD_LIMIT, gate.wait_for(|released| *released)).await;
        });
        wait
    });
    let mut reply = Response::new(Reply::Events {
        events: Arc::clone(&state.events),
        next: 0,
        yield_first: false,
        hold,
    });
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    reply
}

type HoldFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Counts a stream in [`State::held`] while it exists.
struct HeldCount(Arc<State>);

impl HeldCount {
    fn new(state: Arc<State>) -> HeldCount {
        state.held.fetch_add(1, Ordering::SeqCst);
        HeldCount(state)
    }
}

impl Drop for HeldCount {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body of the stub.
pub(crate) enum Reply {
    /// One buffer, sent with a `content-length`.
    Once(Option<Bytes>),
    /// SSE events, one frame each, with a yield between frames so that each
    /// is flushed by itself; waits at `hold` after the first event.
    Events {
        events: Arc<[Bytes]>,
        next: usize,
        yield_first: bool,
        hold: Option<HoldFuture>,
    },
}

impl Reply {
    fn once(bytes: Bytes) -> Reply {
        Reply::Once(Some(bytes))
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Reply::Once(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Reply::Events {
                events,
                next,
                yield_first,
                hold,
            } => {
                if *next >= events.len() {
                    return Poll::Ready(None);
                }
                if *yield_first {
                    // Let hyper write out (flush) the previous event first.
                    *yield_first = false;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if *next == 1
                    && let Some(wait) = hold
                {
                    ready!(wait.as_mut().poll(cx));
                    *hold = None;
                }
                let event = events[*next].clone();
                *next += 1;
                *yield_first = true;
                Poll::Ready(Some(Ok(Frame::data(event))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Once(bytes) => bytes.is_none(),
            Reply::Events { events, next, .. } => *next >= events.len(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Once(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Reply::Once(None) => SizeHint::with_exact(0),
            Reply::Events { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag_is_read_from_json() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{ "stream" : true, "model":"m"}"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
        assert!(!wants_stream(b"not json"));
    }

    #[test]
    fn events_are_sse_and_end_with_done() {
        let events = render_events();
        assert_eq!(events.len(), STREAM_CHUNKS + 1);
        for event in &events[..STREAM_CHUNKS] {
            let text = std::str::from_utf8(event).unwrap();
            let json = text
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(value["object"], "chat.completion.chunk");
        }
        assert_eq!(&events[STREAM_CHUNKS][..], b"data: [DONE]\n\n");
        serde_json::from_str::<serde_json::Value>(COMPLETION).unwrap();
    }
}
