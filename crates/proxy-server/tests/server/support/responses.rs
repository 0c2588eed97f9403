//! Set-ups for the Responses tests: a fake and a proxy with one credential for it, and
//! Responses requests.

use std::sync::Arc;

use bytes::Bytes;
use credential_pool::{Flavor, ReasoningStyle};
use credential_pool::{Models, Pool, PoolConfig};
use fake_qwen::FakeQwen;
use http::Request;
use http_body_util::Full;
use proxy_server::{Proxy, ServerConfig};
use serde_json::{Value, json};

use super::{MODEL, credential, post_json, proxy_with};

/// The API key of [`api_key_proxy`]'s credential.
const API_KEY: &str = "sk-upstream-1";

/// A proxy with `config` over a pool of one credential of `flavor` for `fake`.
fn single_credential_proxy(
    config: ServerConfig,
    fake: &FakeQwen,
    flavor: Flavor,
    token: &str,
    models: Models,
) -> Proxy {
    let credential = credential("test@example.com", flavor, &fake.chat_base_url(), token);
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    pool.upsert("test:0", Arc::new(credential), models, None);
    proxy_with(config, &pool)
}

/// A fake and a proxy with one Qwen OAuth account serving [`MODEL`].
pub async fn qwen_proxy() -> (FakeQwen, Proxy) {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let models = Models::Only(vec![MODEL.to_owned()]);
    let proxy = single_credential_proxy(
        ServerConfig::default(),
        &fake,
        Flavor::QwenOAuth,
        &token,
        models,
    );
    (fake, proxy)
}

/// A fake and a proxy with one API key of reasoning style `style`, serving every model (the
/// body goes up as translated).
pub async fn api_key_proxy(style: ReasoningStyle) -> (FakeQwen, Proxy) {
    api_key_proxy_with(ServerConfig::default(), style).await
}

/// [`api_key_proxy`] of Qwen's reasoning style with `[models.aliases]` `aliases` (client name,
/// served model).
pub async fn aliased_api_key_proxy(aliases: &[(&str, &str)]) -> (FakeQwen, Proxy) {
    let config = ServerConfig {
        model_aliases: aliases
            .iter()
            .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
            .collect(),
        ..ServerConfig::default()
    };
    api_key_proxy_with(config, ReasoningStyle::Qwen).await
}

async fn api_key_proxy_with(config: ServerConfig, style: ReasoningStyle) -> (FakeQwen, Proxy) {
    let fake = FakeQwen::start().await;
    fake.add_api_key(API_KEY);
    let flavor = Flavor::OpenAiCompatible(style);
    let proxy = single_credential_proxy(config, &fake, flavor, API_KEY, Models::All);
    (fake, proxy)
}

/// `POST /v1/responses` with `body`.
pub fn responses_request(body: &Value) -> Request<Full<Bytes>> {
    post_json("/v1/responses", body)
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
