//! Streaming Responses requests: the event sequence of a text answer, of text then tool
//! calls, of reasoning, and of a stream that breaks off.

use credential_pool::ReasoningStyle;
use fake_qwen::ChatStep;
use proxy_server::Proxy;
use serde_json::{Value, json};

use crate::support::{
    MODEL, Stream, api_key_proxy, call_stream, qwen_proxy, responses_request, weather_tools,
};

/// Streams "hello" to [`MODEL`].
async fn stream_hello(proxy: &Proxy) -> Stream {
    call_stream(
        proxy,
        responses_request(&json!({ "model": MODEL, "input": "hello", "stream": true })),
    )
    .await
}

#[tokio::test]
async fn a_text_stream_is_the_responses_event_sequence_with_usage_at_the_end() {
    let (fake, proxy) = qwen_proxy().await;
    let stream = stream_hello(&proxy).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream
            .headers
            .get("content-type")
            .map(|value| value.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    assert!(!stream.broken);
    stream.assert_well_formed();
    assert_eq!(
        stream.names(),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let created = &stream.data("response.created")[0]["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    let deltas: Vec<&str> = stream
        .data("response.output_text.delta")
        .iter()
        .filter_map(|data| data["delta"].as_str())
        .collect();
    assert_eq!(deltas, ["part0 ", "part1 ", "part2 "]);
    assert_eq!(
        stream.data("response.output_text.done")[0]["text"],
        "part0 part1 part2 "
    );

    let completed = &stream.last()["response"];
    assert_eq!(completed["id"], created["id"]);
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        completed["output"][0]["content"][0]["text"],
        "part0 part1 part2 "
    );
    assert_eq!(completed["usage"]["output_tokens"], 3);
    let prompt = fake.chat_requests()[0].body.len() as u64 / 4;
    assert_eq!(completed["usage"]["input_tokens"], prompt);
    assert_eq!(
        completed["usage"]["input_tokens_details"]["cached_tokens"],
        prompt / 2,
        "cached tokens reach the usage Codex reads"
    );

    let upstream = fake.chat_requests()[0].json();
    assert_eq!(upstream["stream"], true);
    assert_eq!(upstream["stream_options"], json!({ "include_usage": true }));
}

#[tokio::test]
async fn text_then_tool_calls_stream_as_separate_items_in_order() {
    let (fake, proxy) = api_key_proxy(ReasoningStyle::Effort).await;
    fake.set_chat_step(ChatStep::ToolCalls {
        calls: 2,
        leading_text: true,
    });
    let stream = call_stream(
        &proxy,
        responses_request(&json!({ "model": "qwen-max", "input": "Weather and time?", "tools": weather_tools(), "stream": true })),
    )
    .await;
    assert!(!stream.broken);
    stream.assert_well_formed();
    assert_eq!(
        fake.chat_requests()[0].json()["stream_options"],
        json!({ "include_usage": true }),
        "asked for usage even where the body is not reshaped"
    );

    // Items open and close one after another: added/done pairs never overlap.
    let mut open: Option<u64> = None;
    let mut items = Vec::new();
    for (name, data) in &stream.events {
        match name.as_str() {
            "response.output_item.added" => {
                assert_eq!(open, None, "an item opened before the previous one closed");
                open = data["output_index"].as_u64();
                assert_eq!(data["item"]["status"], "in_progress");
            }
            "response.output_item.done" => {
                assert_eq!(open, data["output_index"].as_u64());
                open = None;
                items.push(data["item"].clone());
            }
            "response.function_call_arguments.delta" | "response.output_text.delta" => {
                assert_eq!(
                    open,
                    data["output_index"].as_u64(),
                    "{name} outside its item"
                );
            }
            _ => {}
        }
    }
    let types: Vec<&str> = items
        .iter()
        .filter_map(|item| item["type"].as_str())
        .collect();
    assert_eq!(types, ["message", "function_call", "function_call"]);
    assert_eq!(
        items[0]["content"][0]["text"],
        "Let me call get_weather and get_time."
    );

    for (call, output_index) in items[1..].iter().zip(1_u64..) {
        let fragments: String = stream
            .data("response.function_call_arguments.delta")
            .iter()
            .filter(|data| data["output_index"] == output_index)
            .filter_map(|data| data["delta"].as_str())
            .collect();
        assert_eq!(call["arguments"], fragments.as_str());
        let done = stream
            .data("response.function_call_arguments.done")
            .into_iter()
            .find(|data| data["output_index"] == output_index)
            .expect("arguments done");
        assert_eq!(done["arguments"], fragments.as_str());
        assert_eq!(done["item_id"], call["id"]);
        let arguments: Value = serde_json::from_str(&fragments).expect("JSON arguments");
        assert!(arguments.is_object());
    }
    assert_eq!(items[1]["name"], "get_weather");
    assert_eq!(items[2]["name"], "get_time");
    assert_ne!(items[1]["call_id"], items[2]["call_id"]);

    let completed = &stream.last()["response"];
    assert_eq!(stream.last()["type"], "response.completed");
    assert_eq!(completed["output"], Value::Array(items));
    assert!(completed["usage"]["total_tokens"].is_u64());
}

#[tokio::test]
async fn reasoning_streams_as_a_reasoning_item_before_the_message() {
    let (_fake, proxy) = api_key_proxy(ReasoningStyle::Effort).await;
    let stream = call_stream(
        &proxy,
        responses_request(&json!({ "model": "qwen3-32b", "input": "hi", "reasoning": { "effort": "low" }, "stream": true })),
    )
    .await;
    stream.assert_well_formed();
    let summary: String = stream
        .data("response.reasoning_summary_text.delta")
        .iter()
        .filter_map(|data| data["delta"].as_str())
        .collect();
    assert_eq!(summary, "The user wrote \"hi\"; I will answer.");
    let output = &stream.last()["response"]["output"];
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"][0]["text"], summary.as_str());
    assert_eq!(output[1]["type"], "message");
    let names = stream.names();
    let position = |name: &str| names.iter().position(|event| *event == name);
    assert!(
        position("response.reasoning_summary_part.done") < position("response.content_part.added")
    );
}

#[tokio::test]
async fn a_truncated_stream_ends_incomplete_with_its_message_item_incomplete() {
    let (fake, proxy) = qwen_proxy().await;
    fake.set_chat_step(ChatStep::Length);
    let stream = call_stream(
        &proxy,
        responses_request(
            &json!({ "model": MODEL, "input": "hi", "max_output_tokens": 16, "stream": true }),
        ),
    )
    .await;
    stream.assert_well_formed();
    let done = stream.data("response.output_item.done");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["item"]["status"], "incomplete", "{}", done[0]);
    let end = stream.last();
    assert_eq!(end["type"], "response.incomplete");
    assert_eq!(end["response"]["output"][0]["status"], "incomplete");
}

/// A stream whose upstream breaks off ends as OpenAI ends a failed stream: an `error` event,
/// `response.failed`, and then the end of the body.
#[tokio::test]
async fn a_broken_stream_ends_with_an_error_event_and_response_failed() {
    let (fake, proxy) = qwen_proxy().await;
    fake.set_chat_step(ChatStep::CutAfter(2));
    let stream = stream_hello(&proxy).await;
    assert_eq!(stream.status, 200);
    stream.assert_well_formed();
    assert!(!stream.broken, "the body ends after response.failed");
    let names = stream.names();
    assert_eq!(names[names.len() - 2..], ["error", "response.failed"]);
    let failed = stream.last();
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["code"], "server_error");
    let message = failed["response"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("broke off"), "{failed}");
    let error = stream.data("error")[0];
    assert_eq!(error["code"], "server_error");
    assert_eq!(error["message"], message);
    assert_eq!(
        error["error"],
        json!({ "type": "server_error", "code": "server_error", "message": message, "param": null })
    );
    assert_eq!(stream.data("response.completed").len(), 0);
}

#[tokio::test]
async fn an_error_chunk_mid_stream_ends_with_response_failed_naming_the_upstream_error() {
    let (fake, proxy) = qwen_proxy().await;
    fake.set_chat_step(ChatStep::ErrorAfter(2));
    let stream = stream_hello(&proxy).await;
    assert_eq!(stream.status, 200);
    stream.assert_well_formed();
    assert!(
        !stream.broken,
        "the upstream ended normally after its error chunk"
    );
    let deltas: Vec<&Value> = stream.data("response.output_text.delta");
    assert_eq!(
        deltas.len(),
        2,
        "the text before the error reached the client"
    );
    let failed = stream.last();
    assert_eq!(failed["type"], "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["code"], "server_error");
    assert_eq!(
        failed["response"]["error"]["message"],
        "the upstream reported an error mid-answer: Output data may contain inappropriate \
         content.; the answer is incomplete, retry the request"
    );
    assert_eq!(stream.data("error").len(), 1);
    assert_eq!(stream.data("response.completed").len(), 0);
}
