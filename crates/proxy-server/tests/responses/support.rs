//! Setup for the Responses tests: a fake Qwen, a proxy with one credential for it, and
//! helpers to send a Responses request and read a whole answer or a stream of events.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use credential_pool::{Access, Credential, Flavor, ReasoningStyle, StaticAccess};
use credential_pool::{Models, Pool, PoolConfig};
use fake_qwen::FakeQwen;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use proxy_server::{Proxy, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The model of a Qwen OAuth account the tests ask for.
pub const MODEL: &str = "coder-model";

/// The API key of [`api_key_proxy`]'s credential.
const API_KEY: &str = "sk-upstream-1";

/// Upper bound for anything a test awaits: a hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
}

fn proxy_with(fake: &FakeQwen, flavor: Flavor, token: &str, models: Models) -> Proxy {
    config_proxy(ServerConfig::default(), fake, flavor, token, models)
}

fn config_proxy(
    config: ServerConfig,
    fake: &FakeQwen,
    flavor: Flavor,
    token: &str,
    models: Models,
) -> Proxy {
    let credential = Credential {
        label: "test@example.com".into(),
        flavor,
        access: Arc::new(StaticAccess(Access {
            bearer: token.into(),
            base_url: fake.chat_base_url().into(),
        })),
    };
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    pool.upsert("test:0", Arc::new(credential), models, None);
    Proxy::new(without_environment_proxies(config), pool).expect("a valid config")
}

/// A fake and a proxy with one Qwen OAuth account serving [`MODEL`].
pub async fn qwen_proxy() -> (FakeQwen, Proxy) {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let models = Models::Only(vec![MODEL.to_owned()]);
    let proxy = proxy_with(&fake, Flavor::QwenOAuth, &token, models);
    (fake, proxy)
}

/// A fake and a proxy with one API key of reasoning style `style`, serving every model (the
/// body goes up as translated).
pub async fn api_key_proxy(style: ReasoningStyle) -> (FakeQwen, Proxy) {
    let fake = FakeQwen::start().await;
    fake.add_api_key(API_KEY);
    let proxy = proxy_with(&fake, Flavor::OpenAiCompatible(style), API_KEY, Models::All);
    (fake, proxy)
}

/// [`api_key_proxy`] of Qwen's reasoning style with `[models.aliases]` `aliases` (client name,
/// served model).
pub async fn aliased_api_key_proxy(aliases: &[(&str, &str)]) -> (FakeQwen, Proxy) {
    let fake = FakeQwen::start().await;
    fake.add_api_key(API_KEY);
    let config = ServerConfig {
        model_aliases: aliases
            .iter()
            .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
            .collect(),
        ..ServerConfig::default()
    };
    let proxy = config_proxy(
        config,
        &fake,
        Flavor::OpenAiCompatible(ReasoningStyle::Qwen),
        API_KEY,
        Models::All,
    );
    (fake, proxy)
}

/// `POST /v1/responses` with `body`.
pub fn responses_request(body: &Value) -> Request<Full<Bytes>> {
    Request::post("/v1/responses")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
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
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an OpenAI error body with `status` and `code`; returns its message.
    pub fn error(&self, status: u16, code: &str) -> String {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "{body}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
        body["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned()
    }
}

/// Sends `body` and reads the whole answer.
pub async fn call(proxy: &Proxy, body: &Value) -> Answer {
    within(async {
        let response = proxy
            .service()
            .oneshot(responses_request(body))
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

/// A streamed answer: its events and how the body ended.
#[derive(Debug)]
pub struct Stream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Every event as (`event:` name, `data` JSON).
    pub events: Vec<(String, Value)>,
    /// The body ended with an error (the response was aborted) rather than cleanly.
    pub broken: bool,
}

impl Stream {
    pub fn names(&self) -> Vec<&str> {
        self.events.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The data of every event named `name`.
    pub fn data(&self, name: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|(event, _)| event == name)
            .map(|(_, data)| data)
            .collect()
    }

    /// The last event's data.
    pub fn last(&self) -> &Value {
        &self.events.last().expect("at least one event").1
    }

    /// Asserts that every event's `type` is its name and that the sequence numbers count from 0.
    pub fn assert_well_formed(&self) {
        for (index, (name, data)) in self.events.iter().enumerate() {
            assert_eq!(data["type"], *name, "event {index}");
            assert_eq!(data["sequence_number"], index, "event {index} ({name})");
        }
    }
}

/// Sends `body` and reads the stream until it ends or breaks.
pub async fn call_stream(proxy: &Proxy, body: &Value) -> Stream {
    within(async {
        let response = proxy
            .service()
            .oneshot(responses_request(body))
            .await
            .expect("the service never fails");
        let (parts, mut body) = response.into_parts();
        let mut bytes = Vec::new();
        let mut broken = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes.extend_from_slice(frame.data_ref().map_or(&[][..], |data| data)),
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        Stream {
            status: parts.status,
            headers: parts.headers,
            events: parse_events(&String::from_utf8(bytes).expect("UTF-8 events")),
            broken,
        }
    })
    .await
}

/// The `event:`/`data:` pairs of an SSE text whose events are separated by blank lines.
fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(value).expect("JSON data"));
                }
            }
            (
                name.unwrap_or_else(|| panic!("an event without a name: {block}")),
                data.unwrap_or_else(|| panic!("an event without data: {block}")),
            )
        })
        .collect()
}

/// Two function tools in Responses form.
pub fn weather_tools() -> Value {
    json!([
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": { "city": { "type": "string" } },
                "required": ["city"],
            },
            "strict": false,
        },
        { "type": "web_search" },
        {
            "type": "function",
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": { "zone": { "type": "string" } },
                "required": ["zone"],
            },
        },
    ])
}

/// `config` with the test machine's `HTTP_PROXY` and friends ignored: the fakes are local.
fn without_environment_proxies(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        upstream_proxy_from_env: false,
        ..config
    }
}
