//! A whole chat completion as an Anthropic message: `choices[0].message` becomes the content
//! blocks (thinking, text, tool uses, in that order), `finish_reason` the stop reason and
//! `usage` the usage ([`super::outcome`]). A stop sequence in the text ([`super::stops`])
//! cuts the text there, drops the tool uses after it and ends with `stop_sequence`.

use serde::Deserialize as _;
use serde_json::{Map, Value, json};

use super::outcome::{Usage, message_id, stop_reason, tool_use_id};
use super::stops::StopSequences;

/// The upstream's success answer is not a chat completion.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("the upstream's answer is not JSON ({0})")]
    NotJson(#[from] serde_json::Error),
    #[error("the upstream's answer has no `choices[0].message`")]
    NoMessage,
}

/// The Anthropic message for the chat completion `body`; `model` is the client's model, and
/// `stops` the request's stop sequences.
///
/// # Errors
///
/// [`ResponseError`] when `body` is not a chat completion.
pub fn message(body: &[u8], model: &str, stops: &StopSequences) -> Result<Value, ResponseError> {
    let answer: Value = serde_json::from_slice(body)?;
    let choice = answer
        .get("choices")
        .and_then(|choices| choices.get(0))
        .ok_or(ResponseError::NoMessage)?;
    let message = choice
        .get("message")
        .filter(|message| message.is_object())
        .ok_or(ResponseError::NoMessage)?;
    let id = message_id(answer.get("id").and_then(Value::as_str));

    let mut content = Vec::new();
    if let Some(thinking) = ["reasoning_content", "reasoning"]
        .iter()
        .filter_map(|field| message.get(field).and_then(Value::as_str))
        .find(|thinking| !thinking.is_empty())
    {
        content.push(json!({ "type": "thinking", "thinking": thinking, "signature": "" }));
    }
    let mut text = text_of(message.get("content"));
    let stopped = stops.find(&text).map(|found| {
        text.truncate(found.at);
        found.sequence
    });
    if !text.is_empty() {
        content.push(json!({ "type": "text", "text": text }));
    }
    let calls = match stopped {
        Some(_) => &[][..],
        None => message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice),
    };
    for (index, call) in calls.iter().enumerate() {
        let function = call.get("function");
        let name = function
            .and_then(|function| function.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|call_id| !call_id.is_empty())
            .map_or_else(|| tool_use_id(&id, index), str::to_owned);
        let input = tool_input(function.and_then(|function| function.get("arguments")));
        content.push(json!({ "type": "tool_use", "id": call_id, "name": name, "input": input }));
    }

    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    let usage = answer
        .get("usage")
        .and_then(|usage| Usage::deserialize(usage).ok())
        .unwrap_or_default();
    let reason = match stopped {
        Some(_) => "stop_sequence",
        None => stop_reason(finish_reason, !calls.is_empty()),
    };
    Ok(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": stopped,
        "usage": usage.to_anthropic(),
    }))
}

/// The text of a message's `content`: a string, or the texts of an array of parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A tool call's `arguments` as the `input` object. Chat completions carry JSON text; empty
/// text is `{}`, JSON text of a JSON text (double-encoded, some models do that) is unwrapped,
/// and anything that is not a JSON object is replaced by `{}` (logged), so the client's
/// schema check reports the missing arguments to the model instead of failing the turn.
fn tool_input(arguments: Option<&Value>) -> Value {
    let parsed = match arguments {
        None | Some(Value::Null) => return Value::Object(Map::new()),
        Some(Value::Object(input)) => return Value::Object(input.clone()),
        Some(Value::String(text)) if text.trim().is_empty() => return Value::Object(Map::new()),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text),
        Some(_) => Ok(Value::Null),
    };
    match parsed {
        Ok(input @ Value::Object(_)) => input,
        Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
            Ok(input @ Value::Object(_)) => input,
            _ => unusable_arguments(),
        },
        _ => unusable_arguments(),
    }
}

fn unusable_arguments() -> Value {
    tracing::warn!(
        "the upstream sent tool-call arguments that are not a JSON object; sent as {{}}"
    );
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_objects() {
        assert_eq!(tool_input(None), json!({}));
        assert_eq!(tool_input(Some(&json!(""))), json!({}));
        assert_eq!(tool_input(Some(&json!("{\"a\":1}"))), json!({ "a": 1 }));
        assert_eq!(
            tool_input(Some(&json!("\"{\\\"a\\\":1}\""))),
            json!({ "a": 1 })
        );
        assert_eq!(tool_input(Some(&json!({ "a": 1 }))), json!({ "a": 1 }));
        assert_eq!(tool_input(Some(&json!("{\"a\":"))), json!({}));
        assert_eq!(tool_input(Some(&json!("[1]"))), json!({}));
    }

    #[test]
    fn answers_without_a_message_are_refused() {
        assert!(matches!(
            message(b"nope", "m", &StopSequences::default()),
            Err(ResponseError::NotJson(_))
        ));
        assert!(matches!(
            message(br#"{"choices":[]}"#, "m", &StopSequences::default()),
            Err(ResponseError::NoMessage)
        ));
    }

    #[test]
    fn tool_calls_without_ids_get_unique_ones() {
        let body = json!({
            "id": "chatcmpl-9",
            "choices": [{ "index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [
                    { "type": "function", "function": { "name": "a", "arguments": "{}" } },
                    { "type": "function", "function": { "name": "b", "arguments": "{}" } },
                ],
            } }],
        });
        let message = message(body.to_string().as_bytes(), "m", &StopSequences::default())
            .expect("a message");
        assert_eq!(message["content"][0]["id"], "toolu_chatcmpl-9_0");
        assert_eq!(message["content"][1]["id"], "toolu_chatcmpl-9_1");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(
            message["usage"],
            json!({ "input_tokens": 0, "output_tokens": 0 })
        );
    }
}
