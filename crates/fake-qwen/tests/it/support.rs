//! What the tests share: an HTTP client that ignores the environment's proxies, a hang guard,
//! and the requests every test file makes (a form post, a refresh, a chat completion).

use std::time::Duration;

use fake_qwen::{CLIENT_ID, TOKEN_PATH};
use serde_json::Value;

/// A hang guard, not a timing assertion: the fake answers in milliseconds.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// A client that talks to the fake directly, whatever proxy the environment names.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// An answer of the OAuth endpoints, read whole.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the fake answered JSON")
    }

    /// The OAuth `error` code of the answer.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Posts `form` to `path` of the OAuth server at `base_url`, asking for JSON.
pub async fn post(base_url: &str, path: &str, form: &[(&str, &str)]) -> Answer {
    let answer = client()
        .post(format!("{base_url}{path}"))
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .expect("the fake answers");
    Answer {
        status: answer.status().as_u16(),
        content_type: answer
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: answer.text().await.expect("a readable body"),
    }
}

/// A refresh with `refresh_token` against the OAuth server at `base_url`.
pub async fn refresh_at(base_url: &str, refresh_token: &str) -> Answer {
    post(
        base_url,
        TOKEN_PATH,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ],
    )
    .await
}

/// Posts `body` to the chat completions of the model API at `chat_base` (its `/v1` URL).
pub async fn chat_at(chat_base: &str, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{chat_base}/chat/completions"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the fake answers")
}
