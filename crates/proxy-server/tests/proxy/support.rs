//! Shared test setup: a fake Qwen, a pool of credentials pointing at it, the proxy in-process
//! or on a real socket, and small request/answer helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use credential_pool::{
    Access, AccessSource, BoxFuture, Credential, Flavor, RefreshFailure, StaticAccess,
};
use credential_pool::{Models, Pool, PoolConfig};
use fake_qwen::FakeQwen;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use proxy_server::{Proxy, ServeError, ServerConfig};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// The model the tests ask for; the fake serves it to OAuth tokens.
pub const MODEL: &str = "coder-model";

/// Upper bound for anything a test awaits: a hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it hangs.
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
}

/// An [`AccessSource`] whose refreshes are counted and scripted.
pub struct TestAccess {
    current: Mutex<Access>,
    next: Mutex<Option<Result<Access, RefreshFailure>>>,
    refreshes: AtomicUsize,
}

impl TestAccess {
    pub fn new(base_url: &str, token: &str) -> Arc<Self> {
        Arc::new(Self {
            current: Mutex::new(access(base_url, token)),
            next: Mutex::new(Some(Err(RefreshFailure::Transient(
                "no refresh scripted".into(),
            )))),
            refreshes: AtomicUsize::new(0),
        })
    }

    /// What the next refresh gives (a new token, or a failure).
    pub fn on_refresh(&self, result: Result<&str, RefreshFailure>) {
        let base_url = self.current.lock().expect("lock").base_url.to_string();
        *self.next.lock().expect("lock") = Some(result.map(|token| access(&base_url, token)));
    }

    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

impl AccessSource for TestAccess {
    fn current(&self) -> Access {
        self.current.lock().expect("lock").clone()
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, Result<Access, RefreshFailure>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let result = self
            .next
            .lock()
            .expect("lock")
            .take()
            .unwrap_or(Err(RefreshFailure::Transient("refreshed twice".into())));
        if let Ok(fresh) = &result {
            *self.current.lock().expect("lock") = fresh.clone();
        }
        Box::pin(std::future::ready(result))
    }
}

pub fn access(base_url: &str, token: &str) -> Access {
    Access {
        bearer: token.into(),
        base_url: base_url.into(),
    }
}

/// A credential of `flavor` with a fixed token.
pub fn credential(label: &str, flavor: Flavor, base_url: &str, token: &str) -> Credential {
    Credential {
        label: label.into(),
        flavor,
        access: Arc::new(StaticAccess(access(base_url, token))),
    }
}

/// The models of a Qwen OAuth account.
pub fn qwen_models() -> Models {
    Models::Only(vec![MODEL.to_owned(), "qwen3-coder-plus".to_owned()])
}

/// A fake with `n` minted OAuth tokens, and a pool with one Qwen credential per token
/// (keys `qwen:0`.., labels `user0@example.com`..), in that order.
pub async fn qwen_pool(n: usize) -> (FakeQwen, Arc<Pool<Credential>>, Vec<String>) {
    let fake = FakeQwen::start().await;
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    let mut tokens = Vec::new();
    for i in 0..n {
        let token = fake.mint_tokens().access_token;
        add_qwen(&pool, &fake, i, &token);
        tokens.push(token);
    }
    (fake, pool, tokens)
}

/// Adds Qwen credential number `i` with `token`.
pub fn add_qwen(pool: &Pool<Credential>, fake: &FakeQwen, i: usize, token: &str) {
    let credential = credential(
        &format!("user{i}@example.com"),
        Flavor::QwenOAuth,
        &fake.chat_base_url(),
        token,
    );
    pool.upsert(
        &format!("qwen:{i}"),
        Arc::new(credential),
        qwen_models(),
        None,
    );
}

/// A proxy over `pool` without session affinity: these tests send the same opening again and
/// again, which affinity would keep on one credential.
pub fn proxy(pool: &Arc<Pool<Credential>>) -> Proxy {
    proxy_with(without_affinity(), pool)
}

/// The default server config with session affinity off.
pub fn without_affinity() -> ServerConfig {
    ServerConfig {
        session_affinity: false,
        ..ServerConfig::default()
    }
}

pub fn proxy_with(config: ServerConfig, pool: &Arc<Pool<Credential>>) -> Proxy {
    Proxy::new(without_environment_proxies(config), Arc::clone(pool)).expect("a valid config")
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an OpenAI error body with `code`; returns its message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
        body["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned()
    }
}

/// Sends `request` through the proxy's service in-process and reads the answer whole.
pub async fn call(proxy: &Proxy, request: Request<Full<Bytes>>) -> Answer {
    within(async {
        let response = proxy
            .service()
            .oneshot(request)
            .await
            .expect("the service never fails");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
}

/// `POST /v1/chat/completions` with `body`.
pub fn chat_request(body: &Value) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request")
}

/// A small chat body for [`MODEL`].
pub fn chat_body(stream: bool) -> Value {
    json!({
        "model": MODEL,
        "stream": stream,
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": [{ "type": "text", "text": "hello" }] },
        ],
    })
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("a request")
}

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

/// `config` with the test machine's `HTTP_PROXY` and friends ignored: the fakes are local.
fn without_environment_proxies(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        upstream_proxy_from_env: false,
        ..config
    }
}
