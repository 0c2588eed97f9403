//! What the proxy logs: one span per request naming the model and the account, never a token
//! or a client key. The subscriber is scoped to the test's thread (the proxy and the fake run
//! on its current-thread runtime); `support::proxy_with` makes sure that tracing asks it about
//! every callsite, whichever test reaches one first.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use credential_pool::{Access, AccessSource, BoxFuture, Credential, Flavor, RefreshFailure};
use credential_pool::{Models, Pool};
use fake_qwen::{ChatStep, FakeQwen};
use http::Request;
use http_body_util::{BodyExt as _, Full};
use proxy_server::Proxy;
use serde_json::json;
use tower::ServiceExt as _;
use tracing_subscriber::EnvFilter;

use crate::support::{CLIENT_KEY, keyed, proxy_with, within};

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts with a stale token; the first refresh gives the fresh one.
struct Refreshing {
    base_url: String,
    tokens: [String; 2],
    refreshes: AtomicUsize,
}

impl AccessSource for Refreshing {
    fn current(&self) -> Access {
        let index = self.refreshes.load(Ordering::SeqCst).min(1);
        Access {
            bearer: self.tokens[index].as_str().into(),
            base_url: self.base_url.as_str().into(),
        }
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, Result<Access, RefreshFailure>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(self.current())))
    }
}

/// POSTs `body` to `path` with the client key and reads the 200 answer to its end.
async fn post(proxy: &Proxy, path: &str, body: &serde_json::Value) -> Result<Bytes, String> {
    let request = Request::post(format!("{path}?key={CLIENT_KEY}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request");
    let response = within(proxy.service().oneshot(request))
        .await
        .expect("the service never fails");
    assert_eq!(response.status(), 200);
    within(response.into_body().collect())
        .await
        .map(|body| body.to_bytes())
        .map_err(|error| error.to_string())
}

async fn send(proxy: &Proxy, stream: bool) -> Result<Bytes, String> {
    let body = json!({
        "model": "coder-model",
        "stream": stream,
        "messages": [{ "role": "user", "content": "hello" }],
    });
    post(proxy, "/v1/chat/completions", &body).await
}

/// A streamed Anthropic message cut at a stop sequence while the upstream still holds the rest.
async fn stop_at_a_sequence(proxy: &Proxy) {
    let body = json!({
        "model": "coder-model",
        "max_tokens": 64,
        "stream": true,
        "stop_sequences": ["part1"],
        "messages": [{ "role": "user", "content": "hello" }],
    });
    let events = post(proxy, "/v1/messages", &body)
        .await
        .expect("a whole stream");
    let events = String::from_utf8_lossy(&events);
    assert!(events.contains("\"stop_sequence\":\"part1\""), "{events}");
}

#[tokio::test]
async fn logs_name_models_and_accounts_but_never_tokens_or_keys() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("proxy_server=trace,tower_http=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let fake = FakeQwen::start().await;
    let stale = fake.mint_tokens().access_token;
    let fresh = fake.mint_tokens().access_token;
    fake.expire_access_token(&stale);
    let pool = Arc::new(Pool::new(Default::default()));
    let account = Credential {
        label: "alice@example.com".into(),
        flavor: Flavor::QwenOAuth,
        access: Arc::new(Refreshing {
            base_url: fake.chat_base_url(),
            tokens: [stale.clone(), fresh.clone()],
            refreshes: AtomicUsize::new(0),
        }),
    };
    pool.upsert(
        "qwen:alice",
        Arc::new(account),
        Models::Only(vec!["coder-model".into()]),
        None,
    );
    let proxy = proxy_with(keyed(), &pool);

    send(&proxy, false).await.expect("a whole answer");
    send(&proxy, true).await.expect("a whole stream");
    fake.set_chat_step(ChatStep::CutAfter(1));
    assert!(send(&proxy, true).await.is_err(), "a broken stream");
    let before_the_stop = captured.0.lock().expect("lock").len();
    fake.set_chat_step(ChatStep::HoldLast);
    stop_at_a_sequence(&proxy).await;

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("UTF-8");
    let at_the_stop = &logs[before_the_stop..];
    assert!(
        at_the_stop.contains("answer complete before the upstream's end"),
        "{at_the_stop}"
    );
    assert!(
        !at_the_stop.contains("client went away"),
        "a stop sequence is not a client that left:\n{at_the_stop}"
    );
    for expected in [
        "request_id=",
        "model=\"coder-model\"",
        "account=\"alice@example.com\"",
        "status=200",
        "finish_reason=\"stop\"",
        "completion_tokens=",
        "refreshed token",
        "broke off",
        // Warnings and notes name the request themselves: at the default level its span is off.
        "retrying with a refreshed token request_id=",
        "the upstream stream broke off; the client's answer ends incomplete request_id=",
    ] {
        assert!(logs.contains(expected), "no {expected:?} in:\n{logs}");
    }
    for secret in [stale.as_str(), fresh.as_str(), CLIENT_KEY] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}
