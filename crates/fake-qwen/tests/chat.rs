//! Tests of the fake's model API, at the HTTP level with a plain reqwest client.

use std::time::Duration;

use fake_qwen::{ChatStep, FakeQwen, QWEN_OAUTH_MODELS};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

async fn chat(fake: &FakeQwen, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", fake.chat_base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the fake answers")
}

fn body(stream: bool) -> Value {
    json!({
        "model": "coder-model",
        "stream": stream,
        "stream_options": { "include_usage": true },
        "messages": [
            { "role": "system", "content": [{ "type": "text", "text": "", "cache_control": { "type": "ephemeral" } }] },
            { "role": "user", "content": "ping" },
        ],
    })
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn issued_tokens_and_api_keys_are_accepted_others_refused() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.add_api_key("sk-test");

    let (status, answer) = json_of(chat(&fake, &token, &body(false)).await).await;
    assert_eq!(status, 200);
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "coder-model");
    assert_eq!(answer["choices"][0]["message"]["content"], "You said: ping");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(answer["usage"]["prompt_tokens"].is_u64());

    let (status, _) = json_of(chat(&fake, "sk-test", &body(false)).await).await;
    assert_eq!(status, 200);

    let refused = json!({ "error": {
        "code": "invalid_api_key",
        "message": "invalid access token or token expired",
        "type": "invalid_request_error",
    } });
    assert_eq!(
        json_of(chat(&fake, "nope", &body(false)).await).await,
        (401, refused.clone())
    );
    fake.expire_access_token(&token);
    assert_eq!(
        json_of(chat(&fake, &token, &body(false)).await).await,
        (401, refused)
    );

    let recorded = fake.chat_requests();
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[0].bearer(), Some(token.as_str()));
    assert_eq!(recorded[0].json()["messages"][1]["content"], "ping");
    assert_eq!(recorded[2].bearer(), Some("nope"));
}

#[tokio::test]
async fn models_are_listed_to_authenticated_callers() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let list = |token: &str| {
        client()
            .get(format!("{}/models", fake.chat_base_url()))
            .bearer_auth(token)
            .send()
    };
    let (status, answer) = json_of(list(&token).await.expect("an answer")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = answer["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, QWEN_OAUTH_MODELS);
    assert_eq!(list("nope").await.expect("an answer").status(), 401);
}

#[tokio::test]
async fn oauth_tokens_get_qwens_body_checks_and_api_keys_do_not() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.add_api_key("sk-test");
    let array_text = json!({
        "model": "coder-model",
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hi" }] }],
    });
    let (status, answer) = json_of(chat(&fake, &token, &array_text).await).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "invalid_parameter_error");
    assert_eq!(
        json_of(chat(&fake, "sk-test", &array_text).await).await.0,
        200
    );

    let mut unknown_model = body(false);
    unknown_model["model"] = "gpt-4o".into();
    let (status, answer) = json_of(chat(&fake, &token, &unknown_model).await).await;
    assert_eq!(status, 404);
    assert_eq!(answer["error"]["code"], "model_not_found");
    assert_eq!(
        json_of(chat(&fake, "sk-test", &unknown_model).await)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_stream_has_openai_chunks_usage_and_done() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.set_stream_chunks(2);
    let response = chat(&fake, &token, &body(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.expect("a whole stream");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").expect("a data event"))
        .collect();
    assert_eq!(events.len(), 5, "{text}");
    let chunk = |i: usize| serde_json::from_str::<Value>(events[i]).expect("a JSON chunk");
    assert_eq!(chunk(0)["object"], "chat.completion.chunk");
    assert_eq!(chunk(0)["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunk(1)["choices"][0]["delta"]["content"], "part1 ");
    assert_eq!(chunk(2)["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunk(3)["usage"]["completion_tokens"], 2);
    assert_eq!(events[4], "[DONE]");
}

#[tokio::test]
async fn scripted_errors_have_qwens_shapes() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.script_chat(
        &token,
        vec![
            ChatStep::QuotaExceeded,
            ChatStep::QuotaExceeded403,
            ChatStep::RateLimited {
                retry_after_secs: 7,
            },
            ChatStep::ServerError(502),
            ChatStep::Html { status: 405 },
            ChatStep::Answer,
        ],
    );
    for status in [429, 403] {
        let (got, answer) = json_of(chat(&fake, &token, &body(false)).await).await;
        assert_eq!(got, status);
        assert_eq!(answer["error"]["code"], "insufficient_quota");
        assert_eq!(answer["error"]["message"], "Free allocated quota exceeded.");
    }
    let limited = chat(&fake, &token, &body(false)).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(chat(&fake, &token, &body(false)).await.status(), 502);
    let page = chat(&fake, &token, &body(false)).await;
    assert_eq!(page.status(), 405);
    assert!(page.text().await.expect("a page").contains("aliyun_waf_"));
    // The last step repeats.
    for _ in 0..2 {
        assert_eq!(chat(&fake, &token, &body(false)).await.status(), 200);
    }
}

#[tokio::test]
async fn the_rate_limit_counts_per_token() {
    let fake = FakeQwen::start().await;
    let first = fake.mint_tokens().access_token;
    let second = fake.mint_tokens().access_token;
    fake.set_requests_per_minute(Some(1));
    assert_eq!(chat(&fake, &first, &body(false)).await.status(), 200);
    let limited = chat(&fake, &first, &body(false)).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after));
    assert_eq!(chat(&fake, &second, &body(false)).await.status(), 200);
}

#[tokio::test]
async fn a_cut_stream_breaks_the_body_and_a_held_one_waits_for_release() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.script_chat(&token, vec![ChatStep::CutAfter(1), ChatStep::HoldLast]);
    let cut = chat(&fake, &token, &body(true)).await;
    assert_eq!(cut.status(), 200);
    assert!(
        cut.text().await.is_err(),
        "a cut stream must not end cleanly"
    );

    let mut held = chat(&fake, &token, &body(true)).await;
    let mut seen = String::new();
    while !seen.contains("part2") {
        let chunk = held.chunk().await.expect("intact").expect("more");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("[DONE]"));
    fake.release_held_streams(1);
    let rest = held.text().await.expect("the rest");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    assert_eq!(fake.cancelled_streams(), 0);
}

#[tokio::test]
async fn a_reader_leaving_a_held_stream_is_counted_as_cancelled() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.set_chat_step(ChatStep::HoldLast);
    let mut held = chat(&fake, &token, &body(true)).await;
    held.chunk().await.expect("intact").expect("a first chunk");
    drop(held);
    // A hang guard, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), fake.wait_for_cancelled_streams(1))
        .await
        .expect("the fake noticed the reader leaving");
    assert_eq!(fake.cancelled_streams(), 1);
}
