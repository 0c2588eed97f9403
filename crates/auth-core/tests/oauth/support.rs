//! Shared test helpers: a virtual clock, a recording HTTP proxy and client set-up.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use auth_core::{Clock, HttpSettings, OAuthClient, PollEvent, ProviderProfile};
use fake_qwen::FakeQwen;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Seconds as durations, for comparing recorded waits.
pub fn secs(values: &[u64]) -> Vec<Duration> {
    values.iter().copied().map(Duration::from_secs).collect()
}

/// A client for `base_url` with the given proxy.
pub fn client_at(base_url: &str, proxy_url: Option<String>) -> OAuthClient {
    let profile =
        ProviderProfile::qwen().with_base_url(url::Url::parse(base_url).expect("a valid base URL"));
    let settings = HttpSettings {
        proxy_url,
        user_agent: "auth-core-tests/1".to_owned(),
        ..HttpSettings::default()
    };
    OAuthClient::new(profile, &settings).expect("the client builds")
}

/// A client for `base_url` whose requests time out after `timeout`.
pub fn client_with_timeout(base_url: &str, timeout: Duration) -> OAuthClient {
    let profile =
        ProviderProfile::qwen().with_base_url(url::Url::parse(base_url).expect("a valid base URL"));
    let settings = HttpSettings {
        timeout,
        user_agent: "auth-core-tests/1".to_owned(),
        ..HttpSettings::default()
    };
    OAuthClient::new(profile, &settings).expect("the client builds")
}

/// A client pointed straight at `fake`.
pub fn client_for(fake: &FakeQwen) -> OAuthClient {
    client_at(&fake.base_url(), None)
}

/// A `127.0.0.1` port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    listener.local_addr().expect("an address").port()
}

type SleepHook = Box<dyn Fn(usize) + Send + Sync>;

/// Virtual time: `sleep` records the duration, advances `now` at once and returns a ready
/// future; from sleep number `stall_from` on (0-based), it never completes instead.
pub struct FakeClock {
    origin: Instant,
    state: Mutex<ClockState>,
    on_sleep: Option<SleepHook>,
    stall_from: Option<usize>,
    stalled: Notify,
}

#[derive(Default)]
struct ClockState {
    elapsed: Duration,
    sleeps: Vec<Duration>,
}

impl FakeClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: Mutex::default(),
            on_sleep: None,
            stall_from: None,
            stalled: Notify::new(),
        }
    }

    /// Runs `hook(index)` after sleep number `index` has advanced the time.
    pub fn on_sleep(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_sleep = Some(Box::new(hook));
        self
    }

    /// Makes sleep number `index` (0-based) and later ones never complete.
    pub fn stalling_from(mut self, index: usize) -> Self {
        self.stall_from = Some(index);
        self
    }

    /// Completes once a sleep has stalled.
    pub async fn stalled(&self) {
        self.stalled.notified().await;
    }

    /// Every requested sleep, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sleeps
            .clone()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.origin
            + self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed
    }

    fn sleep(&self, duration: Duration) -> auth_core::Sleep {
        let index = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.sleeps.push(duration);
            state.sleeps.len() - 1
        };
        if self.stall_from.is_some_and(|from| index >= from) {
            self.stalled.notify_one();
            return Box::pin(std::future::pending());
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed += duration;
        if let Some(hook) = &self.on_sleep {
            hook(index);
        }
        Box::pin(std::future::ready(()))
    }
}

/// Collects poll events.
#[derive(Default)]
pub struct Events(pub Vec<PollEvent>);

impl Events {
    pub fn sink(&mut self) -> impl FnMut(PollEvent) + Send + '_ {
        |event| self.0.push(event)
    }
}

/// A minimal forwarding HTTP proxy: one request per connection, records each request line
/// (absolute-form, as clients send to HTTP proxies) and relays to the target with
/// `Connection: close`.
pub struct RecordingProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    // A failed relay shows up as a failed request in the test itself.
                    let _ = relay_one(stream, log).await;
                });
            }
        });
        Self { port, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Request lines seen so far, such as `POST http://127.0.0.1:1234/path HTTP/1.1`.
    pub fn request_lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_one(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n").filter(|line| !line.is_empty());
    let request_line = lines.next().unwrap_or_default().to_owned();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request_line.clone());

    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let target = url::Url::parse(target).map_err(std::io::Error::other)?;
    let headers: Vec<&str> = lines
        .filter(|line| {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            name != "connection" && name != "proxy-connection"
        })
        .collect();
    let content_length: usize = headers
        .iter()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < content_length {
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }

    let host = target.host_str().unwrap_or_default();
    let port = target.port_or_known_default().unwrap_or(80);
    let mut upstream = TcpStream::connect((host, port)).await?;
    let mut forwarded = format!(
        "{method} {} {version}\r\n",
        &target[url::Position::BeforePath..]
    );
    for header in headers {
        forwarded.push_str(header);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("connection: close\r\n\r\n");
    upstream.write_all(forwarded.as_bytes()).await?;
    upstream.write_all(&body).await?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// How [`CannedServer`] answers the token endpoint (polls and refreshes alike).
#[derive(Clone, Copy)]
pub enum TokenAnswer {
    /// This status and JSON body.
    Reply { status: u16, body: &'static str },
    /// Reads the request and never answers, until the client gives up.
    Hang,
}

/// A tiny OAuth server with fixed answers, for what fake-qwen does not script. The device
/// endpoint always issues a code with the given lifetime and interval; the token endpoint
/// answers every request with one [`TokenAnswer`]. One request per connection.
pub struct CannedServer {
    port: u16,
    abandoned: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl CannedServer {
    pub async fn start(expires_in: u64, interval: u64, token: TokenAnswer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let device = format!(
            r#"{{"device_code":"canned-device-code","user_code":"CANNED","verification_uri":"http://127.0.0.1:{port}/authorize","expires_in":{expires_in},"interval":{interval}}}"#
        );
        let (count, abandoned) = tokio::sync::watch::channel(0);
        let count = Arc::new(count);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (device, count) = (device.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    // A broken connection shows up as a failed request in the test itself.
                    let _ = answer_one(stream, &device, token, &count).await;
                });
            }
        });
        Self {
            port,
            abandoned,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the client has given up (closed) `count` hanging requests.
    pub async fn abandoned(&self, count: usize) {
        let mut abandoned = self.abandoned.clone();
        abandoned
            .wait_for(|seen| *seen >= count)
            .await
            .expect("the server runs");
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_one(
    mut stream: TcpStream,
    device: &str,
    token: TokenAnswer,
    abandoned: &tokio::sync::watch::Sender<usize>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let (status, body) = if head.contains("/device/code") {
        (200, device)
    } else {
        match token {
            TokenAnswer::Reply { status, body } => (status, body),
            TokenAnswer::Hang => {
                while stream.read(&mut chunk).await? > 0 {}
                abandoned.send_modify(|count| *count += 1);
                return Ok(());
            }
        }
    };
    let answer = format!(
        "HTTP/1.1 {status} Canned\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}
