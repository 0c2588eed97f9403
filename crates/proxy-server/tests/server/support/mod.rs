//! Shared test setup: a fake Qwen, a pool of credentials pointing at it, the proxy in-process
//! or on a real socket, and request/answer helpers for each API the proxy speaks.

mod access;
mod answer;
mod anthropic;
mod callsites;
mod responses;
mod server;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use credential_pool::{Access, Credential, Flavor, ReasoningStyle, StaticAccess};
use credential_pool::{Models, Pool, PoolConfig};
use fake_qwen::{ChatStep, FakeQwen};
use http::Request;
use http_body_util::Full;
use proxy_server::{Proxy, ServerConfig};
use serde_json::{Value, json};

pub use access::TestAccess;
pub use answer::{Answer, Stream, call, call_stream, events, names};
pub use anthropic::{message_body, post, post_raw, send_message};
pub use responses::{
    aliased_api_key_proxy, api_key_proxy, qwen_proxy, responses_request, weather_tools,
};
pub use server::{Server, client};

/// The model the tests ask for; the fake serves it to OAuth tokens.
pub const MODEL: &str = "coder-model";

/// The client key of [`keyed`] configs.
pub const CLIENT_KEY: &str = "sk-client-0123";

/// Upper bound for anything a test awaits: a hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it hangs.
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
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

/// Scripts the next answer to `tokens[0]` as a spent daily quota and to `tokens[1]` as a rate
/// limit of 30 seconds: both accounts of a two-account pool are out.
pub fn run_out_of_quota(fake: &FakeQwen, tokens: &[String]) {
    fake.script_chat(&tokens[0], vec![ChatStep::QuotaExceeded]);
    fake.script_chat(
        &tokens[1],
        vec![ChatStep::RateLimited {
            retry_after_secs: 30,
        }],
    );
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
        let key = format!("sk-upstream-anthropic-{index}");
        fake.add_api_key(&key);
        let flavor = Flavor::OpenAiCompatible(*style);
        let credential = credential(
            &format!("upstream#{index}"),
            flavor,
            &fake.chat_base_url(),
            &key,
        );
        pool.upsert(
            &format!("key:{index}"),
            Arc::new(credential),
            Models::All,
            None,
        );
        keys.push(key);
    }
    (fake, pool, keys)
}

/// A pool of one OpenAI-compatible API key `secret` (labelled `label`, the `effort` reasoning
/// style) at `base_url`, serving every model.
pub fn one_api_key(label: &str, base_url: &str, secret: &str) -> Arc<Pool<Credential>> {
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    let flavor = Flavor::OpenAiCompatible(ReasoningStyle::Effort);
    let key = credential(label, flavor, base_url, secret);
    pool.upsert("key:1", Arc::new(key), Models::All, None);
    pool
}

/// A proxy over `pool` without session affinity: these tests send the same opening again and
/// again, which affinity would keep on one credential.
pub fn proxy(pool: &Arc<Pool<Credential>>) -> Proxy {
    proxy_with(without_affinity(), pool)
}

/// A proxy over `pool` with the default config (session affinity on).
pub fn default_proxy(pool: &Arc<Pool<Credential>>) -> Proxy {
    proxy_with(ServerConfig::default(), pool)
}

/// The default server config with session affinity off.
pub fn without_affinity() -> ServerConfig {
    ServerConfig {
        session_affinity: false,
        ..ServerConfig::default()
    }
}

/// A config that requires [`CLIENT_KEY`].
pub fn keyed() -> ServerConfig {
    ServerConfig {
        api_keys: vec![CLIENT_KEY.into()],
        ..ServerConfig::default()
    }
}

/// A proxy over `pool` with `config`, the test machine's proxy variables ignored. Every proxy
/// of these tests is built here, after [`callsites::ask_every_dispatcher`] (see `logs`).
pub fn proxy_with(config: ServerConfig, pool: &Arc<Pool<Credential>>) -> Proxy {
    callsites::ask_every_dispatcher();
    Proxy::new(without_environment_proxies(config), Arc::clone(pool)).expect("a valid config")
}

/// `config` with the test machine's `HTTP_PROXY` and friends ignored: the fakes are local.
fn without_environment_proxies(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        upstream_proxy_from_env: false,
        ..config
    }
}

/// `POST path` with `body` as JSON.
pub fn post_json(path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request")
}

/// `POST /v1/chat/completions` with `body`.
pub fn chat_request(body: &Value) -> Request<Full<Bytes>> {
    post_json("/v1/chat/completions", body)
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
