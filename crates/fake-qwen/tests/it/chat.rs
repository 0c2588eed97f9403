//! Tests of the fake's model API, at the HTTP level with a plain reqwest client.

use std::time::Duration;

use fake_qwen::{ChatStep, FakeQwen, QWEN_OAUTH_MODELS};
use serde_json::{Value, json};

use crate::support::{chat_at, client};

async fn chat(fake: &FakeQwen, token: &str, body: &Value) -> reqwest::Response {
    chat_at(&fake.chat_base_url(), token, body).await
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
async fn quota_answers_can_name_when_to_retry() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.script_chat(
        &token,
        vec![ChatStep::QuotaExceeded, ChatStep::QuotaExceeded403],
    );
    let plain = chat(&fake, &token, &body(false)).await;
    assert_eq!(plain.status(), 429);
    assert!(
        plain.headers().get("retry-after").is_none(),
        "none by default"
    );

    fake.set_quota_retry_after(Some(3600));
    let named = chat(&fake, &token, &body(false)).await;
    assert_eq!(named.status(), 403);
    assert_eq!(named.headers()["retry-after"], "3600");
    let (_, answer) = json_of(named).await;
    assert_eq!(answer["error"]["code"], "insufficient_quota");
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

#[tokio::test]
async fn paced_streams_pause_between_events_and_count_a_reader_leaving_in_a_pause() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    // Longer than any test: the stream can only end early, by its reader leaving.
    fake.set_stream_interval(Duration::from_secs(3600));
    let mut paced = chat(&fake, &token, &body(true)).await;
    let first = paced.chunk().await.expect("intact").expect("a first chunk");
    assert!(first.starts_with(b"data: "), "{first:?}");
    drop(paced);
    tokio::time::timeout(Duration::from_secs(30), fake.wait_for_cancelled_streams(1))
        .await
        .expect("the fake noticed the reader leaving during the pause");

    // A short pause still delivers the whole stream, and a whole answer is not paced.
    fake.set_stream_interval(Duration::from_millis(1));
    let text = chat(&fake, &token, &body(true))
        .await
        .text()
        .await
        .expect("the whole stream");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(
        text.matches("data: ").count(),
        3 + 3,
        "3 chunks, finish, usage, [DONE]"
    );
    let (status, _) = json_of(chat(&fake, &token, &body(false)).await).await;
    assert_eq!(status, 200);
    assert_eq!(fake.cancelled_streams(), 1);

    fake.forget_requests();
    assert!(fake.chat_requests().is_empty());
    assert_eq!(
        json_of(chat(&fake, &token, &body(false)).await).await.0,
        200
    );
    assert_eq!(fake.chat_requests().len(), 1, "recording goes on");
}

fn weather_tools() -> Value {
    json!([
        { "type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": { "city": { "type": "string" }, "days": { "type": "integer" } },
                "required": ["city"],
            },
        } },
        { "type": "function", "function": {
            "name": "get_time",
            "parameters": { "type": "object", "properties": { "zone": { "type": "string" } } },
        } },
    ])
}

fn tool_request(stream: bool) -> Value {
    json!({
        "model": "coder-model",
        "stream": stream,
        "stream_options": { "include_usage": true },
        "tools": weather_tools(),
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
    })
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .expect("a data event")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn offered_tools_are_called_and_their_results_answered() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;

    let (status, answer) = json_of(chat(&fake, &token, &tool_request(false)).await).await;
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_null(), "{answer}");
    let calls = choice["message"]["tool_calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["id"], "call_1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"city-1"}"#);

    let mut follow_up = tool_request(false);
    let history = follow_up["messages"].as_array_mut().expect("messages");
    history.push(choice["message"].clone());
    history.push(json!({ "role": "tool", "tool_call_id": "call_1", "content": "22C, sunny" }));
    let (status, answer) = json_of(chat(&fake, &token, &follow_up).await).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "The tool returned: 22C, sunny"
    );
    assert!(answer["choices"][0]["message"].get("tool_calls").is_none());

    let mut refused = tool_request(false);
    refused["tool_choice"] = "none".into();
    let (_, answer) = json_of(chat(&fake, &token, &refused).await).await;
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "You said: Weather in Paris?"
    );

    let mut named = tool_request(false);
    named["tool_choice"] = json!({ "type": "function", "function": { "name": "get_time" } });
    let (_, answer) = json_of(chat(&fake, &token, &named).await).await;
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_time");
    assert_eq!(call["function"]["arguments"], r#"{"zone":"zone-2"}"#);
}

#[tokio::test]
async fn streamed_tool_calls_follow_openais_chunk_format() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.set_chat_step(ChatStep::ToolCalls {
        calls: 2,
        leading_text: true,
    });

    let response = chat(&fake, &token, &tool_request(true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a whole stream");
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).expect("a JSON chunk"))
        .collect();
    let (usage, chunks) = chunks.split_last().expect("a usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].is_u64());
    let (finish, deltas) = chunks.split_last().expect("a finish chunk");
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert!(
        deltas
            .iter()
            .all(|chunk| chunk["choices"][0]["finish_reason"].is_null())
    );
    let deltas: Vec<&Value> = deltas
        .iter()
        .map(|chunk| &chunk["choices"][0]["delta"])
        .collect();

    assert_eq!(deltas[0]["role"], "assistant");
    let content: String = deltas
        .iter()
        .filter_map(|delta| delta["content"].as_str())
        .collect();
    assert_eq!(content, "Let me call get_weather and get_time.");
    let first_call = deltas
        .iter()
        .position(|delta| delta.get("tool_calls").is_some())
        .expect("tool call deltas");
    assert!(
        deltas[first_call..]
            .iter()
            .all(|delta| delta.get("content").is_none()),
        "text comes before the calls"
    );

    let mut calls: Vec<(String, String, String)> = Vec::new();
    for delta in &deltas[first_call..] {
        let entries = delta["tool_calls"].as_array().expect("tool_calls");
        assert_eq!(entries.len(), 1, "{delta}");
        let entry = &entries[0];
        let index = usize::try_from(entry["index"].as_u64().expect("index")).expect("small");
        if entry.get("id").is_some() {
            assert_eq!(index, calls.len(), "calls start in index order");
            assert_eq!(entry["type"], "function");
            assert_eq!(entry["function"]["arguments"], "", "{entry}");
            calls.push((
                entry["id"].as_str().expect("id").to_owned(),
                entry["function"]["name"].as_str().expect("name").to_owned(),
                String::new(),
            ));
        } else {
            let keys: Vec<&String> = entry.as_object().expect("object").keys().collect();
            assert_eq!(keys, ["index", "function"], "{entry}");
            let function = entry["function"].as_object().expect("function");
            assert_eq!(function.keys().collect::<Vec<_>>(), ["arguments"]);
            calls[index]
                .2
                .push_str(function["arguments"].as_str().expect("a fragment"));
        }
    }
    let fragments = deltas[first_call..]
        .iter()
        .filter(|delta| delta["tool_calls"][0].get("id").is_none())
        .count();
    assert_eq!(
        fragments, 6,
        "each call's arguments come in three fragments"
    );
    assert_eq!(
        calls,
        [
            (
                "call_1".to_owned(),
                "get_weather".to_owned(),
                r#"{"city":"city-1"}"#.to_owned()
            ),
            (
                "call_2".to_owned(),
                "get_time".to_owned(),
                r#"{"zone":"zone-2"}"#.to_owned()
            ),
        ]
    );

    // Both results back: one text that reports them, streamed.
    let mut follow_up = tool_request(true);
    let history = follow_up["messages"].as_array_mut().expect("messages");
    history.push(json!({ "role": "assistant", "content": null, "tool_calls": [
        { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{}" } },
        { "id": "call_2", "type": "function", "function": { "name": "get_time", "arguments": "{}" } },
    ] }));
    history.push(json!({ "role": "tool", "tool_call_id": "call_1", "content": "sunny" }));
    history.push(json!({ "role": "tool", "tool_call_id": "call_2", "content": [{ "type": "text", "text": "noon" }] }));
    let text = chat(&fake, &token, &follow_up)
        .await
        .text()
        .await
        .expect("a whole stream");
    let content: String = sse_events(&text)
        .iter()
        .filter_map(|event| serde_json::from_str::<Value>(event).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "The tool returned: sunny | noon");
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
}

#[tokio::test]
async fn thinking_requests_get_reasoning_content() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let mut request = body(false);
    request["enable_thinking"] = true.into();
    let (_, answer) = json_of(chat(&fake, &token, &request).await).await;
    let message = &answer["choices"][0]["message"];
    assert!(
        message["reasoning_content"]
            .as_str()
            .expect("reasoning")
            .contains("ping")
    );
    assert_eq!(message["content"], "You said: ping");

    request["stream"] = true.into();
    let text = chat(&fake, &token, &request)
        .await
        .text()
        .await
        .expect("a stream");
    let events = sse_events(&text);
    let chunk = |i: usize| serde_json::from_str::<Value>(&events[i]).expect("a JSON chunk");
    assert_eq!(chunk(0)["choices"][0]["delta"]["role"], "assistant");
    for i in 0..2 {
        let delta = &chunk(i)["choices"][0]["delta"];
        assert!(delta["content"].is_null(), "{delta}");
        assert!(delta["reasoning_content"].is_string(), "{delta}");
    }
    assert_eq!(chunk(2)["choices"][0]["delta"]["content"], "part0 ");
}

#[tokio::test]
async fn a_reasoning_effort_gets_reasoning_as_openai_compatible_servers_name_it() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-test");
    let mut request = body(false);
    request["reasoning_effort"] = "low".into();
    let (_, answer) = json_of(chat(&fake, "sk-test", &request).await).await;
    let message = &answer["choices"][0]["message"];
    assert!(
        message["reasoning"]
            .as_str()
            .is_some_and(|text| text.contains("ping"))
    );
    assert!(message.get("reasoning_content").is_none(), "{message}");
    for effort in ["none", "minimal"] {
        request["reasoning_effort"] = effort.into();
        let (_, answer) = json_of(chat(&fake, "sk-test", &request).await).await;
        let message = &answer["choices"][0]["message"];
        assert!(message.get("reasoning").is_none(), "{effort}: {message}");
    }
}

#[tokio::test]
async fn half_the_prompt_is_reported_as_cached() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let (_, answer) = json_of(chat(&fake, &token, &body(false)).await).await;
    let prompt = answer["usage"]["prompt_tokens"]
        .as_u64()
        .expect("prompt tokens");
    assert_eq!(
        answer["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
        Some(prompt / 2)
    );
}

#[tokio::test]
async fn a_tool_history_that_does_not_add_up_is_refused() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let call = json!({ "id": "call_7", "type": "function",
        "function": { "name": "get_weather", "arguments": "{\"city\":\"x\"}" } });
    let with = |messages: Value| {
        let mut request = tool_request(false);
        request["messages"] = messages;
        request
    };
    let cases = [
        (
            with(json!([
                { "role": "user", "content": "hi" },
                { "role": "tool", "tool_call_id": "call_7", "content": "stray" },
            ])),
            "role 'tool'",
        ),
        (
            with(json!([
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": null, "tool_calls": [call] },
                { "role": "user", "content": "no result" },
            ])),
            "call_7",
        ),
        (
            with(json!([
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_7",
                    "type": "function", "function": { "name": "get_weather", "arguments": { "city": "x" } } }] },
                { "role": "tool", "tool_call_id": "call_7", "content": "ok" },
            ])),
            "must be a string",
        ),
    ];
    for (request, needle) in cases {
        let (status, answer) = json_of(chat(&fake, &token, &request).await).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_parameter_error");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{message}");
    }
}

#[tokio::test]
async fn preferred_tools_are_called_first_with_their_arguments() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.prefer_tool("not_offered", &json!({ "x": 1 }));
    fake.prefer_tool("get_time", &json!({ "zone": "Europe/Paris" }));

    let (_, answer) = json_of(chat(&fake, &token, &tool_request(false)).await).await;
    let calls = &answer["choices"][0]["message"]["tool_calls"];
    assert_eq!(calls[0]["function"]["name"], "get_time", "{answer}");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"zone":"Europe/Paris"}"#
    );

    // Two calls: the preferred tool, then the others in order.
    fake.set_chat_step(ChatStep::ToolCalls {
        calls: 2,
        leading_text: false,
    });
    let (_, answer) = json_of(chat(&fake, &token, &tool_request(false)).await).await;
    let names: Vec<&str> = answer["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|call| call["function"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["get_time", "get_weather"]);
}

#[tokio::test]
async fn system_messages_after_the_users_do_not_stop_the_model_from_calling_tools() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let mut request = tool_request(false);
    let history = request["messages"].as_array_mut().expect("messages");
    history.push(json!({ "role": "system", "content": "# Environment" }));
    let (_, answer) = json_of(chat(&fake, &token, &request).await).await;
    assert_eq!(
        answer["choices"][0]["finish_reason"], "tool_calls",
        "{answer}"
    );
}

#[tokio::test]
async fn an_error_chunk_ends_a_stream_as_dashscope_reports_a_filter_hit() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    fake.set_chat_step(ChatStep::ErrorAfter(1));
    let response = chat(&fake, &token, &body(true)).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.expect("a body"));
    assert_eq!(events.len(), 3, "{events:?}");
    let first: Value = serde_json::from_str(&events[0]).expect("JSON");
    assert_eq!(first["choices"][0]["delta"]["content"], "part0 ");
    let error: Value = serde_json::from_str(&events[1]).expect("JSON");
    assert_eq!(error["error"]["code"], "data_inspection_failed");
    assert_eq!(events[2], "[DONE]");

    fake.set_chat_step(ChatStep::OverloadedAfter(1));
    let response = chat(&fake, &token, &body(true)).await;
    let events = sse_events(&response.text().await.expect("a body"));
    let error: Value = serde_json::from_str(&events[1]).expect("JSON");
    assert_eq!(error["error"]["type"], "server_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("overloaded")),
        "{error}"
    );
}
