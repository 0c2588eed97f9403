//! `POST /v1/messages`: whole answers, Claude Code's streaming request, tool use round trips
//! and thinking (asked for in each upstream's style).

use credential_pool::ReasoningStyle;
use fake_qwen::ChatStep;
use serde_json::{Value, json};

use crate::support::{
    CLIENT_KEY, MODEL, api_key_pool, call, default_proxy, keyed, message_body, names, post,
    proxy_with, qwen_pool, send_message, within,
};

#[tokio::test]
async fn a_message_is_answered_as_an_anthropic_message() {
    let (fake, pool, _) = qwen_pool(1).await;
    let answer = send_message(&pool, false).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let message = answer.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], MODEL);
    assert!(
        message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")),
        "{message}"
    );
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": "You said: hello" }])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["stop_sequence"], Value::Null);
    assert!(
        message["usage"]["input_tokens"].as_u64() > Some(0),
        "{message}"
    );
    assert_eq!(message["usage"]["output_tokens"], 3);

    let upstream = fake.chat_requests()[0].json();
    assert_eq!(upstream["model"], MODEL);
    assert_eq!(upstream["max_tokens"], 1024);
    assert_eq!(
        upstream["messages"],
        json!([
            { "role": "system", "content": [
                { "type": "text", "text": "You are terse.", "cache_control": { "type": "ephemeral" } }
            ] },
            { "role": "user", "content": "hello" },
        ]),
        "the OAuth shape applies to the translated request"
    );
}

/// Claude Code 2.x: `?beta=true`, `stream: true`, `max_tokens: 128000`, its headers, and the
/// client key as `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN).
#[tokio::test]
async fn claude_codes_streaming_request_gets_anthropics_event_sequence() {
    let (fake, pool, _) = qwen_pool(1).await;
    let mut body = message_body(MODEL, true);
    body["max_tokens"] = 128_000.into();
    body["metadata"] = json!({ "user_id": "user_abc_account__session_0f3e" });
    let mut request = post("/v1/messages?beta=true", &body);
    for (name, value) in [
        ("authorization", format!("Bearer {CLIENT_KEY}")),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14".to_owned(),
        ),
        ("x-app", "cli".to_owned()),
        (
            "user-agent",
            "claude-cli/2.1.328 (external, cli)".to_owned(),
        ),
    ] {
        request.headers_mut().insert(
            http::HeaderName::try_from(name).expect("a name"),
            value.parse().expect("a value"),
        );
    }
    let answer = call(&proxy_with(keyed(), &pool), request).await;
    let events = answer.events();
    assert_eq!(answer.header("cache-control"), Some("no-cache"));
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["model"], MODEL);
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        events[2].1["content_block"],
        json!({ "type": "text", "text": "" })
    );
    let text: String = events[3..6]
        .iter()
        .map(|(_, data)| data["delta"]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text, "part0 part1 part2 ");
    let end = &events[7].1;
    assert_eq!(end["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        end["usage"]["output_tokens"], 3,
        "usage from the final chunk"
    );
    // The fake counts a token per four bytes of its request, half of them read from its
    // cache: Anthropic counts those apart from `input_tokens`.
    let prompt = fake.chat_requests()[0].body.len() as u64 / 4;
    assert_eq!(
        end["usage"],
        json!({ "input_tokens": prompt - prompt / 2, "cache_read_input_tokens": prompt / 2,
            "output_tokens": 3 }),
        "usage from the final chunk"
    );

    let upstream = &fake.chat_requests()[0];
    assert_eq!(upstream.path, "/v1/chat/completions");
    let upstream = upstream.json();
    assert_eq!(upstream["stream"], true);
    assert_eq!(upstream["stream_options"], json!({ "include_usage": true }));
    assert_eq!(
        upstream["max_tokens"], 65_536,
        "Claude Code's 128000 lowered to what Qwen's models produce"
    );
    assert_eq!(upstream["user"], "user_abc_account__session_0f3e");
}

/// The Anthropic request api-translate's golden `request/tool_use.json` pairs with its chat
/// request reaches an API-key upstream exactly as that chat request.
#[tokio::test]
async fn an_api_key_upstream_gets_the_golden_chat_request() {
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../../api-translate/tests/golden/anthropic/request/tool_use.json"
    ))
    .expect("the fixture");
    let (fake, pool, _) = api_key_pool(&[ReasoningStyle::Effort]).await;
    let answer = call(
        &default_proxy(&pool),
        post("/v1/messages", &fixture["anthropic"]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(fake.chat_requests()[0].json(), fixture["chat"]);
}

fn weather_tools() -> Value {
    json!([
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {
                "type": "object",
                "properties": { "location": { "type": "string" } },
                "required": ["location"],
            },
        },
        {
            "name": "get_time",
            "description": "Get the current time in a given time zone",
            "input_schema": {
                "type": "object",
                "properties": { "timezone": { "type": "string" } },
                "required": ["timezone"],
            },
        },
    ])
}

#[tokio::test]
async fn tool_calls_stream_as_tool_use_blocks_and_their_results_go_back() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::ToolCalls {
        calls: 2,
        leading_text: true,
    });
    let proxy = default_proxy(&pool);
    let mut body = message_body(MODEL, true);
    body["tools"] = weather_tools();
    let events = call(&proxy, post("/v1/messages", &body)).await.events();

    // Blocks: the text, then one tool_use per call, each closed before the next opens.
    let mut blocks: Vec<Value> = Vec::new();
    let mut open: Option<u64> = None;
    for (name, data) in &events {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block opened before the previous one closed");
                assert_eq!(data["index"], blocks.len());
                open = data["index"].as_u64();
                let mut block = data["content_block"].clone();
                if block["type"] == "tool_use" {
                    block["partial_json"] = "".into();
                }
                blocks.push(block);
            }
            "content_block_delta" => {
                assert_eq!(data["index"].as_u64(), open);
                let block = blocks.last_mut().expect("an open block");
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or_default(),
                            delta["text"].as_str().unwrap_or_default()
                        );
                        block["text"] = text.into();
                    }
                    Some("input_json_delta") => {
                        let json = format!(
                            "{}{}",
                            block["partial_json"].as_str().unwrap_or_default(),
                            delta["partial_json"].as_str().unwrap_or_default()
                        );
                        block["partial_json"] = json.into();
                    }
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(data["index"].as_u64(), open);
                open = None;
            }
            _ => {}
        }
    }
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert_eq!(blocks[0]["type"], "text");
    let text = blocks[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("get_weather") && text.contains("get_time"),
        "the fake names the tools it calls: {text}"
    );
    let mut uses = Vec::new();
    for (block, (name, argument)) in blocks[1..]
        .iter()
        .zip([("get_weather", "location"), ("get_time", "timezone")])
    {
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], name);
        assert_eq!(block["input"], json!({}));
        let input: Value = serde_json::from_str(block["partial_json"].as_str().unwrap_or_default())
            .expect("the fragments join into JSON");
        assert!(input[argument].is_string(), "{input}");
        uses.push(json!({ "type": "tool_use", "id": block["id"], "name": name, "input": input }));
    }
    let end = &events[events.len() - 2].1;
    assert_eq!(end["delta"]["stop_reason"], "tool_use");

    // The next turn carries the calls and their results back; the fake checks them as
    // OpenAI does (each tool message answers a call of the assistant message before it).
    let mut assistant = vec![json!({ "type": "text", "text": blocks[0]["text"] })];
    assistant.extend(uses.iter().cloned());
    let results: Vec<Value> = uses
        .iter()
        .zip(["sunny", "noon"])
        .map(|(call, result)| {
            json!({ "type": "tool_result", "tool_use_id": call["id"], "content": result })
        })
        .collect();
    body["stream"] = false.into();
    body["messages"] = json!([
        body["messages"][0],
        { "role": "assistant", "content": assistant },
        { "role": "user", "content": results },
    ]);
    let answer = call(&proxy, post("/v1/messages", &body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let message = answer.json();
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": "The tool returned: sunny | noon" }])
    );
    let upstream = fake.chat_requests()[1].json();
    let roles: Vec<&str> = upstream["messages"]
        .as_array()
        .map(|messages| messages.iter().filter_map(|m| m["role"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
}

#[tokio::test]
async fn a_whole_tool_call_answer_is_a_tool_use_message() {
    let (fake, pool, _) = qwen_pool(1).await;
    let mut body = message_body(MODEL, false);
    body["tools"] = weather_tools();
    body["tool_choice"] = json!({ "type": "tool", "name": "get_time" });
    let answer = call(&default_proxy(&pool), post("/v1/messages", &body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let message = answer.json();
    assert_eq!(message["stop_reason"], "tool_use");
    let content = message["content"].as_array().expect("content");
    assert_eq!(content.len(), 1, "{message}");
    assert_eq!(content[0]["type"], "tool_use");
    assert_eq!(content[0]["name"], "get_time");
    assert!(content[0]["input"]["timezone"].is_string(), "{message}");
    assert_eq!(
        fake.chat_requests()[0].json()["tool_choice"],
        json!({ "type": "function", "function": { "name": "get_time" } })
    );
}

#[tokio::test]
async fn thinking_streams_as_a_thinking_block_before_the_text() {
    let (fake, pool, _) = api_key_pool(&[ReasoningStyle::Effort]).await;
    let mut body = message_body("qwen3-max", true);
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 2048 });
    let events = call(&default_proxy(&pool), post("/v1/messages", &body))
        .await
        .events();
    // The default style: OpenAI's effort, and the fake answers with `reasoning`, as vLLM and
    // OpenRouter name it.
    let upstream = fake.chat_requests()[0].json();
    assert_eq!(upstream["reasoning_effort"], "low", "{upstream}");
    assert!(upstream.get("enable_thinking").is_none(), "{upstream}");

    assert_eq!(
        events[2].1["content_block"],
        json!({ "type": "thinking", "thinking": "" })
    );
    let deltas: Vec<&str> = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .filter_map(|(_, data)| data["delta"]["type"].as_str())
        .collect();
    let first_text = deltas
        .iter()
        .position(|kind| *kind == "text_delta")
        .expect("text follows");
    assert!(first_text >= 2, "{deltas:?}");
    assert!(
        deltas[..first_text - 1]
            .iter()
            .all(|kind| *kind == "thinking_delta"),
        "{deltas:?}"
    );
    assert_eq!(deltas[first_text - 1], "signature_delta");

    body["stream"] = false.into();
    let message = call(&default_proxy(&pool), post("/v1/messages", &body))
        .await
        .json();
    assert_eq!(message["content"][0]["type"], "thinking");
    assert_eq!(message["content"][0]["signature"], "");
    assert!(
        message["content"][0]["thinking"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(message["content"][1]["type"], "text");
}

#[tokio::test]
async fn each_reasoning_style_asks_its_own_way_and_thinking_comes_back_either_way() {
    let thinking = json!({ "type": "enabled", "budget_tokens": 20_000 });
    let cases = [
        (
            ReasoningStyle::Effort,
            json!({ "reasoning_effort": "high" }),
            true,
        ),
        (
            ReasoningStyle::Qwen,
            json!({ "enable_thinking": true, "thinking_budget": 20_000 }),
            true,
        ),
        (ReasoningStyle::Off, json!({}), false),
    ];
    for (style, fields, thinks) in cases {
        let (fake, pool, _) = api_key_pool(&[style]).await;
        let mut body = message_body("qwen3-max", false);
        body["thinking"] = thinking.clone();
        let message = call(&default_proxy(&pool), post("/v1/messages", &body))
            .await
            .json();
        let upstream = fake.chat_requests()[0].json();
        let sent: serde_json::Map<String, Value> =
            ["reasoning_effort", "enable_thinking", "thinking_budget"]
                .into_iter()
                .filter_map(|field| Some((field.to_owned(), upstream.get(field)?.clone())))
                .collect();
        assert_eq!(Value::Object(sent), fields, "{style:?}");
        assert_eq!(
            message["content"][0]["type"] == "thinking",
            thinks,
            "{style:?}: {message}"
        );
    }
}

/// Failover can move a request to a credential of another reasoning style: each attempt's body
/// carries its own credential's fields, and none of another's.
#[tokio::test]
async fn failover_sends_each_credential_its_own_reasoning_fields() {
    let styles = [ReasoningStyle::Qwen, ReasoningStyle::Effort];
    let (fake, pool, keys) = api_key_pool(&styles).await;
    fake.script_chat(&keys[0], vec![ChatStep::ServerError(503)]);
    let mut body = message_body("qwen3-max", true);
    body["thinking"] = json!({ "type": "adaptive" });
    body["output_config"] = json!({ "effort": "low" });
    let answer = call(&default_proxy(&pool), post("/v1/messages", &body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let sent: Vec<Value> = fake
        .chat_requests()
        .iter()
        .map(|request| request.json())
        .collect();
    assert_eq!(sent.len(), 2, "one failover");
    assert_eq!(sent[0]["enable_thinking"], true, "{}", sent[0]);
    assert!(sent[0].get("reasoning_effort").is_none(), "{}", sent[0]);
    assert_eq!(sent[1]["reasoning_effort"], "low", "{}", sent[1]);
    assert!(sent[1].get("enable_thinking").is_none(), "{}", sent[1]);
    assert!(
        answer.text().contains("thinking_delta"),
        "{}",
        answer.text()
    );
}

/// Claude Code 2.1.328 puts `role: "system"` turns into `messages` (its environment, reminders);
/// on a Qwen OAuth account they end up in the one leading system message the endpoint takes.
#[tokio::test]
async fn claude_codes_system_turns_reach_qwen_in_the_leading_system_message() {
    let (fake, pool, _) = qwen_pool(1).await;
    let mut body = message_body(MODEL, false);
    body["messages"] = json!([
        { "role": "user", "content": [{ "type": "text", "text": "List the files here" }] },
        { "role": "system", "content": "# Environment\n - Platform: linux" },
    ]);
    let answer = call(&default_proxy(&pool), post("/v1/messages?beta=true", &body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["content"],
        json!([{ "type": "text", "text": "You said: List the files here" }])
    );
    assert_eq!(
        fake.chat_requests()[0].json()["messages"],
        json!([
            { "role": "system", "content": [
                { "type": "text", "text": "You are terse.", "cache_control": { "type": "ephemeral" } },
                { "type": "text", "text": "# Environment\n - Platform: linux" },
            ] },
            { "role": "user", "content": "List the files here" },
        ])
    );
}

/// The stream ends at the stop sequence without waiting for the rest of the upstream's
/// answer (the fake holds its last events until released, which never happens here), and the
/// upstream request is cancelled.
#[tokio::test]
async fn a_stop_sequence_ends_the_stream_there_and_cancels_the_upstream() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let mut body = message_body(MODEL, true);
    body["stop_sequences"] = json!(["part1", "never"]);
    let answer = call(&default_proxy(&pool), post("/v1/messages", &body)).await;
    let events = answer.events();
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["part0 "]);
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(
        delta["delta"],
        json!({ "stop_reason": "stop_sequence", "stop_sequence": "part1" })
    );
    assert!(
        delta["usage"]["output_tokens"].as_u64() > Some(0),
        "{delta}"
    );
    assert_eq!(
        events.last().map(|(name, _)| name.as_str()),
        Some("message_stop")
    );
    within(fake.wait_for_cancelled_streams(1)).await;
    let upstream = fake.chat_requests()[0].json();
    assert!(upstream.get("stop").is_none(), "{upstream}");
}

#[tokio::test]
async fn a_whole_answer_is_cut_at_its_first_stop_sequence() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let mut body = message_body(MODEL, false);
    body["stop_sequences"] = json!([": ", "said"]);
    let message = call(&default_proxy(&pool), post("/v1/messages", &body))
        .await
        .json();
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": "You " }])
    );
    assert_eq!(message["stop_reason"], "stop_sequence");
    assert_eq!(message["stop_sequence"], "said");
}

#[tokio::test]
async fn message_start_carries_the_input_estimate_before_the_upstream_counts() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let proxy = default_proxy(&pool);
    let body = message_body(MODEL, true);
    let events = call(&proxy, post("/v1/messages", &body)).await.events();
    let estimate = call(&proxy, post("/v1/messages/count_tokens", &body))
        .await
        .json()["input_tokens"]
        .as_u64()
        .expect("an estimate");
    assert!(estimate > 0);
    assert_eq!(
        events[0].1["message"]["usage"],
        json!({ "input_tokens": estimate, "output_tokens": 0 })
    );
}
