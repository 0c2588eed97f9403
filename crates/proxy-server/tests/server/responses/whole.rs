//! Non-streaming Responses requests: the upstream request they become, the Responses object
//! that comes back, a tool-call round trip, and the errors.

use credential_pool::ReasoningStyle;
use fake_qwen::ChatStep;
use serde_json::{Value, json};

use crate::support::{
    MODEL, aliased_api_key_proxy, api_key_proxy, call, qwen_proxy, responses_request, weather_tools,
};

#[tokio::test]
async fn a_text_answer_is_a_response_object() {
    let (fake, proxy) = qwen_proxy().await;
    let answer = call(
        &proxy,
        responses_request(&json!({
            "model": MODEL,
            "instructions": "Be terse.",
            "input": [{ "role": "user", "content": [{ "type": "input_text", "text": "hello" }] }],
            "max_output_tokens": 100,
            "store": false,
        })),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("resp_")),
        "{body}"
    );
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["instructions"], "Be terse.");
    assert_eq!(body["max_output_tokens"], 100);
    assert!(body["created_at"].is_u64());
    assert_eq!(body["error"], Value::Null);
    assert_eq!(body["incomplete_details"], Value::Null);
    let output = body["output"].as_array().expect("output");
    assert_eq!(output.len(), 1, "{body}");
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["status"], "completed");
    assert!(
        output[0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(
        output[0]["content"],
        json!([{ "type": "output_text", "text": "You said: hello", "annotations": [] }])
    );
    let usage = &body["usage"];
    let (input, output_tokens) = (
        usage["input_tokens"].as_u64(),
        usage["output_tokens"].as_u64(),
    );
    assert!(input.is_some_and(|tokens| tokens > 0), "{usage}");
    assert_eq!(output_tokens, Some(3), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        input.zip(output_tokens).map(|(a, b)| a + b)
    );

    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 1);
    let upstream = requests[0].json();
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(upstream["model"], MODEL);
    assert_eq!(upstream["max_tokens"], 100);
    assert_eq!(
        upstream["messages"],
        json!([
            { "role": "system", "content": [
                { "type": "text", "text": "Be terse.", "cache_control": { "type": "ephemeral" } }
            ] },
            { "role": "user", "content": "hello" },
        ]),
        "Qwen's body shape on top of the translation"
    );
    for field in ["input", "instructions", "store", "max_output_tokens"] {
        assert!(upstream.get(field).is_none(), "{field} went upstream");
    }
}

#[tokio::test]
async fn tool_calls_come_back_as_items_and_their_results_go_up_as_tool_messages() {
    let (fake, proxy) = qwen_proxy().await;
    fake.set_chat_step(ChatStep::ToolCalls {
        calls: 2,
        leading_text: true,
    });
    let question = json!({ "role": "user", "content": "Weather and time in Paris?" });
    let first = call(
        &proxy,
        responses_request(
            &json!({ "model": MODEL, "input": [question], "tools": weather_tools() }),
        ),
    )
    .await;
    assert_eq!(first.status, 200);
    let body = first.json();
    let output = body["output"].as_array().expect("output").clone();
    let types: Vec<&str> = output
        .iter()
        .filter_map(|item| item["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["message", "function_call", "function_call"],
        "{body}"
    );
    assert_eq!(
        output[0]["content"][0]["text"],
        "Let me call get_weather and get_time."
    );
    assert_eq!(output[1]["name"], "get_weather");
    assert_eq!(output[2]["name"], "get_time");
    for call in &output[1..] {
        assert_eq!(call["status"], "completed");
        assert!(call["id"].as_str().is_some_and(|id| id.starts_with("fc_")));
        let arguments: Value =
            serde_json::from_str(call["arguments"].as_str().expect("string arguments"))
                .expect("JSON arguments");
        assert!(arguments.is_object());
    }
    assert_eq!(
        body["tools"].as_array().map(Vec::len),
        Some(2),
        "function tools echoed"
    );
    let upstream = fake.chat_requests()[0].json();
    assert_eq!(
        upstream["tools"][0],
        json!({ "type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": { "city": { "type": "string" } },
                "required": ["city"],
            },
            "strict": false,
        } })
    );
    assert_eq!(
        upstream["tools"].as_array().map(Vec::len),
        Some(2),
        "web_search dropped"
    );

    // The next turn sends the whole conversation back, as Codex CLI does.
    let mut input = vec![question];
    input.extend(output.iter().cloned());
    for (call, result) in output[1..].iter().zip(["sunny", "noon"]) {
        input.push(
            json!({ "type": "function_call_output", "call_id": call["call_id"], "output": result }),
        );
    }
    let second = call(
        &proxy,
        responses_request(&json!({ "model": MODEL, "input": input, "tools": weather_tools() })),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.json());
    let body = second.json();
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "The tool returned: sunny | noon"
    );
    let messages = fake.chat_requests()[1].json()["messages"].clone();
    let roles: Vec<&str> = messages
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["role"].as_str())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
    assert_eq!(
        messages[2]["content"],
        "Let me call get_weather and get_time."
    );
    assert_eq!(messages[2]["tool_calls"].as_array().map(Vec::len), Some(2));
    assert_eq!(messages[3]["tool_call_id"], output[1]["call_id"]);
}

#[tokio::test]
async fn reasoning_is_asked_in_the_upstreams_style_and_comes_back_as_a_reasoning_item() {
    let (fake, proxy) = api_key_proxy(ReasoningStyle::Effort).await;
    let answer = call(
        &proxy,
        responses_request(&json!({ "model": "qwen3-235b-a22b", "input": "hi", "reasoning": { "effort": "high" } })),
    )
    .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let sent = fake.chat_requests()[0].json();
    assert_eq!(sent["reasoning_effort"], "high", "{sent}");
    assert!(sent.get("enable_thinking").is_none(), "{sent}");
    assert_eq!(body["output"][0]["type"], "reasoning");
    assert!(
        body["output"][0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("rs_"))
    );
    assert_eq!(
        body["output"][0]["summary"],
        json!([{ "type": "summary_text", "text": "The user wrote \"hi\"; I will answer." }])
    );
    assert_eq!(body["output"][1]["content"][0]["text"], "You said: hi");
    assert_eq!(body["reasoning"], json!({ "effort": "high" }));

    for (style, sent_fields) in [
        (ReasoningStyle::Qwen, json!({ "enable_thinking": true })),
        (ReasoningStyle::Off, json!({})),
    ] {
        let (fake, proxy) = api_key_proxy(style).await;
        let request = json!({ "model": "qwen3-235b-a22b", "input": "hi",
            "reasoning": { "effort": "high" } });
        let body = call(&proxy, responses_request(&request)).await.json();
        let sent = fake.chat_requests()[0].json();
        let reasoning_fields: serde_json::Map<String, Value> =
            ["reasoning_effort", "enable_thinking"]
                .into_iter()
                .filter_map(|field| Some((field.to_owned(), sent.get(field)?.clone())))
                .collect();
        assert_eq!(Value::Object(reasoning_fields), sent_fields, "{style:?}");
        let thought = body["output"][0]["type"] == "reasoning";
        assert_eq!(thought, style == ReasoningStyle::Qwen, "{style:?}: {body}");
    }
}

#[tokio::test]
async fn a_truncated_answer_marks_its_message_item_incomplete_too() {
    let (fake, proxy) = qwen_proxy().await;
    fake.set_chat_step(ChatStep::Length);
    let body = call(
        &proxy,
        responses_request(&json!({ "model": MODEL, "input": "hi", "max_output_tokens": 16 })),
    )
    .await
    .json();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(
        body["incomplete_details"],
        json!({ "reason": "max_output_tokens" })
    );
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["output"][0]["status"], "incomplete", "{body}");
}

#[tokio::test]
async fn previous_response_id_is_refused_before_any_upstream_request() {
    let (fake, proxy) = qwen_proxy().await;
    let answer = call(
        &proxy,
        responses_request(
            &json!({ "model": MODEL, "input": "and then?", "previous_response_id": "resp_1" }),
        ),
    )
    .await;
    let message = answer.error(400, "previous_response_id_unsupported");
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    assert!(
        message.contains("send the whole conversation in `input`"),
        "{message}"
    );
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn requests_cliproxy_cannot_translate_are_refused_with_openai_errors() {
    let (fake, proxy) = qwen_proxy().await;
    let unknown = json!({ "model": MODEL, "input": [{ "type": "item_reference", "id": "msg_1" }] });
    let message = call(&proxy, responses_request(&unknown))
        .await
        .error(400, "unsupported_input_item");
    assert!(message.contains("`item_reference`"), "{message}");
    call(&proxy, responses_request(&json!({ "input": "hi" })))
        .await
        .error(400, "missing_model");
    let not_json = call(&proxy, responses_request(&json!("just a string"))).await;
    not_json.error(400, "invalid_json");
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn upstream_errors_pass_through_with_their_status() {
    let (fake, proxy) = api_key_proxy(ReasoningStyle::Effort).await;
    fake.set_chat_step(ChatStep::ServerError(400));
    let answer = call(
        &proxy,
        responses_request(&json!({ "model": "qwen-max", "input": "hi" })),
    )
    .await;
    let message = answer.error(400, "internal_error");
    assert_eq!(
        message,
        "The fake Qwen server was told to fail this request"
    );
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "no failover for a client error"
    );
}

#[tokio::test]
async fn reasoning_is_decided_on_the_model_an_alias_maps_to() {
    let (fake, proxy) =
        aliased_api_key_proxy(&[("gpt-5*", "qwen3-235b-a22b"), ("o4-mini", "coder-model")]).await;
    let answer = call(
        &proxy,
        responses_request(
            &json!({ "model": "gpt-5-codex", "input": "hi", "reasoning": { "effort": "high" } }),
        ),
    )
    .await;
    assert_eq!(answer.status, 200);
    let sent = fake.chat_requests()[0].json();
    assert_eq!(sent["model"], "qwen3-235b-a22b");
    assert_eq!(sent["enable_thinking"], true, "{sent}");
    let body = answer.json();
    assert_eq!(body["model"], "gpt-5-codex");
    assert_eq!(body["output"][0]["type"], "reasoning");

    call(
        &proxy,
        responses_request(
            &json!({ "model": "o4-mini", "input": "hi", "reasoning": { "effort": "high" } }),
        ),
    )
    .await;
    let sent = fake.chat_requests()[1].json();
    assert!(sent.get("enable_thinking").is_none(), "{sent}");
}

#[tokio::test]
async fn namespace_tools_are_called_by_name_and_namespace_and_go_back_up_flat() {
    let (fake, proxy) = api_key_proxy(ReasoningStyle::Effort).await;
    fake.prefer_tool("multi_agent_v1__spawn_agent", &json!({ "message": "go" }));
    let tools = json!([
        { "type": "function", "name": "exec_command", "parameters": { "type": "object", "properties": {} } },
        { "type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
            { "type": "function", "name": "spawn_agent", "parameters": {
                "type": "object", "properties": { "message": { "type": "string" } } } },
        ] },
    ]);
    let request = json!({ "model": "qwen-max", "input": "Split the work.", "tools": tools });
    let answer = call(&proxy, responses_request(&request)).await;
    assert_eq!(answer.status, 200);
    let sent = fake.chat_requests()[0].json();
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["function"]["name"].as_str())
        .collect();
    assert_eq!(names, ["exec_command", "multi_agent_v1__spawn_agent"]);
    let body = answer.json();
    let call_item = &body["output"][0];
    assert_eq!(call_item["type"], "function_call", "{body}");
    assert_eq!(call_item["name"], "spawn_agent");
    assert_eq!(call_item["namespace"], "multi_agent_v1");

    let mut follow_up = request.clone();
    follow_up["input"] = json!([
        { "role": "user", "content": "Split the work." },
        call_item,
        { "type": "function_call_output", "call_id": call_item["call_id"], "output": "agent-7 started" },
    ]);
    let answer = call(&proxy, responses_request(&follow_up)).await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let sent = fake.chat_requests()[1].json();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["name"],
        "multi_agent_v1__spawn_agent"
    );
    assert_eq!(
        answer.json()["output"][0]["content"][0]["text"],
        "The tool returned: agent-7 started"
    );
}
