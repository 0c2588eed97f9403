//! `POST /v1/messages/count_tokens`: a local estimate, no upstream request.

use serde_json::json;

use crate::support::{MODEL, call, default_proxy, post, qwen_pool};

#[tokio::test]
async fn tokens_are_estimated_without_an_upstream_request() {
    let (fake, pool, _) = qwen_pool(1).await;
    let proxy = default_proxy(&pool);
    let short = json!({
        "model": MODEL,
        "messages": [{ "role": "user", "content": "Hello, world" }],
    });
    let answer = call(&proxy, post("/v1/messages/count_tokens?beta=true", &short)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(
        body.as_object().map(|fields| fields.len()),
        Some(1),
        "{body}"
    );
    let few = body["input_tokens"].as_u64().expect("a count");
    // 12 bytes of text / 4 + 4 for the message.
    assert_eq!(few, 7);

    let long = json!({
        "model": MODEL,
        "system": "You are a helpful assistant. ".repeat(40),
        "tools": [{ "name": "get_weather", "input_schema": { "type": "object" } }],
        "messages": [{ "role": "user", "content": "Hello, world" }],
    });
    let more = call(&proxy, post("/v1/messages/count_tokens", &long))
        .await
        .json()["input_tokens"]
        .as_u64()
        .expect("a count");
    assert!(more > few + 250, "{more}");
    assert!(
        fake.chat_requests().is_empty(),
        "count_tokens asks no upstream"
    );
}

#[tokio::test]
async fn count_tokens_checks_the_request_like_messages_does() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let answer = call(
        &default_proxy(&pool),
        post(
            "/v1/messages/count_tokens",
            &json!({ "model": MODEL, "messages": [] }),
        ),
    )
    .await;
    let message = answer.anthropic_error(400, "invalid_request_error");
    assert!(message.contains("messages"), "{message}");
}
