//! Setup and helpers: a fake Qwen with a pool pointing at it, the proxy, Messages requests,
//! and readers for Anthropic answers, event streams and errors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use credential_pool::{Credential, Flavor, ReasoningStyle, StaticAccess};
use credential_pool::{Models, Pool, PoolConfig};
use fake_qwen::FakeQwen;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use proxy_server::{Proxy, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A model Qwen OAuth accounts serve.
pub const MODEL: &str = "coder-model";
/// The client key of [`keyed`] configs.
pub const CLIENT_KEY: &str = "sk-client-anthropic-0123";

/// Upper bound for anything a test awaits: a hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
}

fn credential(label: &str, flavor: Flavor, fake: &FakeQwen, token: &str) -> Arc<Credential> {
    Arc::new(Credential {
        label: label.into(),
        flavor,
        access: Arc::new(StaticAccess(credential_pool::Access {
            bearer: token.into(),
            base_url: fake.chat_base_url().into(),
        })),
    })
}

/// A fake with `n` Qwen OAuth accounts serving [`MODEL`]; their tokens in pool order.
pub async fn qwen_pool(n: usize) -> (FakeQwen, Arc<Pool<Credential>>, Vec<String>) {
    let fake = FakeQwen::start().await;
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    let mut tokens = Vec::new();
    for i in 0..n {
        let token = fake.mint_tokens().access_token;
        let qwen = credential(
            &format!("user{i}@example.com"),
            Flavor::QwenOAuth,
            &fake,
            &token,
        );
        pool.upsert(
            &format!("qwen:{i}"),
            qwen,
            Models::Only(vec![MODEL.to_owned(), "qwen3-coder-plus".to_owned()]),
            None,
        );
        tokens.push(token);
    }
    (fake, pool, tokens)
}

/// A fake with one OpenAI-compatible API key of each reasoning style in `styles`, in pool
/// order, each serving every model: their requests reach the fake exactly as the proxy built
/// them. The keys, in that order.
pub async fn api_key_pool(
    styles: &[ReasoningStyle],
) -> (FakeQwen, Arc<Pool<Credential>>, Vec<String>) {
    let fake = FakeQwen::start().await;
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    let mut keys = Vec::new();
    for (index, style) in styles.iter().enumerate() {
        let key_text = format!("sk-upstream-anthropic-{index}");
        fake.add_api_key(&key_text);
        let flavor = Flavor::OpenAiCompatible(*style);
        let key = credential(&format!("upstream#{index}"), flavor, &fake, &key_text);
        pool.upsert(&format!("key:{index}"), key, Models::All, None);
        keys.push(key_text);
    }
    (fake, pool, keys)
}

pub fn proxy(pool: &Arc<Pool<Credential>>) -> Proxy {
    proxy_with(ServerConfig::default(), pool)
}

pub fn proxy_with(config: ServerConfig, pool: &Arc<Pool<Credential>>) -> Proxy {
    Proxy::new(without_environment_proxies(config), Arc::clone(pool)).expect("a valid config")
}

/// A config that requires [`CLIENT_KEY`].
pub fn keyed() -> ServerConfig {
    ServerConfig {
        api_keys: vec![CLIENT_KEY.into()],
        ..ServerConfig::default()
    }
}

/// A small Messages request for `model`.
pub fn message_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "system": [{ "type": "text", "text": "You are terse.", "cache_control": { "type": "ephemeral" } }],
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hello" }] }],
    })
}

/// `POST path` with `body` as JSON, with the headers every Anthropic SDK sends.
pub fn post(path: &str, body: &Value) -> Request<Full<Bytes>> {
    post_raw(path, body.to_string())
}

pub fn post_raw(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(body.into()))
        .expect("a request")
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an Anthropic error body with `status` and error `kind`; returns its message.
    pub fn anthropic_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert_eq!(
            body.as_object().map(|fields| fields.len()),
            Some(2),
            "only type and error: {body}"
        );
        body["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned()
    }

    /// The events of an event-stream answer, as (event name, JSON data).
    pub fn events(&self) -> Vec<(String, Value)> {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("text/event-stream"));
        events(&self.text())
    }
}

/// Parses `event: NAME\ndata: JSON\n\n` events.
pub fn events(text: &str) -> Vec<(String, Value)> {
    text.split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|rest| rest.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an event: {event:?}"));
            let data = serde_json::from_str(data).unwrap_or_else(|error| panic!("{error}: {data}"));
            (name.to_owned(), data)
        })
        .collect()
}

pub fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
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

/// `config` with the test machine's `HTTP_PROXY` and friends ignored: the fakes are local.
fn without_environment_proxies(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        upstream_proxy_from_env: false,
        ..config
    }
}
