//! Errors on `/v1/messages` in Anthropic's shape: client auth, quota on every account, model
//! errors passed through, malformed requests, and streams that fail before or after they
//! start.

use bytes::Bytes;
use fake_qwen::ChatStep;
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::ServiceExt as _;

use crate::support::{
    CLIENT_KEY, MODEL, call, default_proxy, events, keyed, message_body, post, post_raw,
    proxy_with, qwen_pool, run_out_of_quota, send_message, within,
};

#[tokio::test]
async fn a_missing_or_wrong_key_is_an_anthropic_authentication_error() {
    let (fake, pool, _) = qwen_pool(1).await;
    let proxy = proxy_with(keyed(), &pool);
    let body = message_body(MODEL, false);

    let answer = call(&proxy, post("/v1/messages?beta=true", &body)).await;
    let message = answer.anthropic_error(401, "authentication_error");
    assert!(message.contains("x-api-key"), "{message}");
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));

    let mut wrong = post("/v1/messages/count_tokens", &body);
    wrong
        .headers_mut()
        .insert("x-api-key", "sk-not-the-key".parse().expect("a value"));
    call(&proxy, wrong)
        .await
        .anthropic_error(401, "authentication_error");

    // Elsewhere the 401 stays OpenAI-shaped.
    let openai = call(&proxy, post("/v1/chat/completions", &body)).await;
    assert_eq!(openai.status, 401);
    assert_eq!(openai.json()["error"]["code"], "invalid_api_key");

    // ANTHROPIC_API_KEY is sent as x-api-key.
    let mut keyed_request = post("/v1/messages", &body);
    keyed_request
        .headers_mut()
        .insert("x-api-key", CLIENT_KEY.parse().expect("a value"));
    assert_eq!(call(&proxy, keyed_request).await.status, 200);
    assert_eq!(fake.chat_requests().len(), 1);
}

#[tokio::test]
async fn quota_on_every_account_is_a_rate_limit_error_with_retry_after() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    run_out_of_quota(&fake, &tokens);
    let answer = send_message(&pool, true).await;
    let message = answer.anthropic_error(429, "rate_limit_error");
    assert!(message.contains("cliproxy login qwen"), "{message}");
    let retry_after = answer.retry_after_seconds();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn an_upstream_model_error_is_a_not_found_error_even_for_a_stream() {
    let (fake, pool, _) = qwen_pool(1).await;
    // The account claims every model, so the request reaches the upstream, which refuses it.
    let key = pool.statuses(std::time::Instant::now())[0].key.clone();
    let credential = pool.get(&key).expect("the credential");
    pool.upsert(&key, credential, credential_pool::Models::All, None);
    for stream in [false, true] {
        let answer = call(
            &default_proxy(&pool),
            post("/v1/messages", &message_body("claude-sonnet-4-5", stream)),
        )
        .await;
        let message = answer.anthropic_error(404, "not_found_error");
        assert!(message.contains("claude-sonnet-4-5"), "{message}");
        assert!(message.contains("GET /v1/models"), "{message}");
    }
    assert_eq!(fake.chat_requests().len(), 2);
}

#[tokio::test]
async fn a_model_no_account_serves_is_an_anthropic_error() {
    let (fake, pool, _) = qwen_pool(1).await;
    let answer = call(
        &default_proxy(&pool),
        post("/v1/messages", &message_body("claude-opus-4-1", false)),
    )
    .await;
    let message = answer.anthropic_error(404, "not_found_error");
    assert!(message.contains("claude-opus-4-1"), "{message}");
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn malformed_requests_are_invalid_request_errors_that_say_what_to_fix() {
    let (fake, pool, _) = qwen_pool(1).await;
    let proxy = default_proxy(&pool);
    let message = call(
        &proxy,
        post_raw("/v1/messages", Bytes::from_static(b"{\"model\":")),
    )
    .await
    .anthropic_error(400, "invalid_request_error");
    assert!(message.contains("not valid JSON"), "{message}");

    let cases = [
        (
            json!({ "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 5 }),
            "model",
        ),
        (
            json!({ "model": MODEL, "messages": [{ "role": "user", "content": "hi" }] }),
            "max_tokens",
        ),
        (
            json!({ "model": MODEL, "max_tokens": 5, "messages": [] }),
            "messages",
        ),
        (
            json!({ "model": MODEL, "max_tokens": 5, "messages": [{ "role": "user", "content": 7 }] }),
            "messages[0].content",
        ),
    ];
    for (body, field) in cases {
        let message = call(&proxy, post("/v1/messages", &body))
            .await
            .anthropic_error(400, "invalid_request_error");
        assert!(message.starts_with(field), "{field}: {message}");
    }
    assert!(fake.chat_requests().is_empty());
}

/// A stream whose upstream breaks off ends as Anthropic ends a failed stream: an `error` event
/// and then the end of the body, with no `message_stop`.
#[tokio::test]
async fn a_stream_that_breaks_off_ends_with_an_error_event_and_no_message_stop() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::CutAfter(2));
    let response = within(
        default_proxy(&pool)
            .service()
            .oneshot(post("/v1/messages", &message_body(MODEL, true))),
    )
    .await
    .expect("the service never fails");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut seen = String::new();
    while let Some(frame) = within(body.frame()).await {
        let frame = frame.unwrap_or_else(|error| panic!("the body broke ({error}) after: {seen}"));
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let events = events(&seen);
    let (name, data) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "api_error");
    let message = data["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the upstream stream broke off")
            && message.ends_with("; the answer is incomplete, retry the request"),
        "{message}"
    );
    assert!(!seen.contains("message_stop"), "{seen}");
}

#[tokio::test]
async fn a_server_error_before_the_stream_is_a_json_api_error() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::ServerError(500));
    let answer = send_message(&pool, true).await;
    answer.anthropic_error(502, "api_error");
}

#[tokio::test]
async fn an_error_chunk_mid_stream_becomes_an_error_event() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::ErrorAfter(2));
    let answer = send_message(&pool, true).await;
    let events = answer.events();
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["part0 ", "part1 "]);
    let (name, data) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(
        data,
        &json!({ "type": "error", "error": { "type": "api_error", "message":
            "the upstream reported an error mid-answer: Output data may contain inappropriate \
             content.; the answer is incomplete, retry the request" } })
    );
    assert!(!answer.text().contains("message_stop"), "{}", answer.text());
}
