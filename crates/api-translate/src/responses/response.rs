//! A whole chat completion as a Responses object.
//!
//! The first choice's `reasoning_content` (or `reasoning`, as vLLM and OpenRouter name it)
//! becomes a `reasoning` item (its text as one `summary_text`), its `content` a `message` item
//! with one `output_text` part, and each of its `tool_calls` a `function_call` item (with
//! `namespace` for a namespaced tool's call), in that order; empty parts make no item. The
//! status is `completed`, or `incomplete` for `finish_reason` `length` (`max_output_tokens`) and
//! `content_filter`; the last item, the one the limit or filter cut, is then `incomplete` too
//! (as OpenAI marks it), the others `completed`. Usage maps
//! `prompt_tokens`/`completion_tokens` (and their cached and reasoning details) to
//! `input_tokens`/`output_tokens`.

use serde_json::Value;

use super::object::{self, Shell, Status};

/// The Responses object for `completion`; `None` when it is not a chat completion.
pub fn from_chat(completion: &Value, shell: &Shell) -> Option<Value> {
    let choice = completion.get("choices")?.as_array()?.first()?;
    let message = choice.get("message")?;
    let mut output = Vec::new();
    let reasoning =
        text_of(message.get("reasoning_content")).or_else(|| text_of(message.get("reasoning")));
    if let Some(reasoning) = reasoning {
        let id = shell.item_id("rs", output.len());
        output.push(object::reasoning_item(&id, "completed", Some(&reasoning)));
    }
    if let Some(text) = text_of(message.get("content")) {
        let id = shell.item_id("msg", output.len());
        output.push(object::message_item(&id, "completed", Some(&text)));
    }
    for (index, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = shell.item_id("fc", output.len());
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| shell.item_id("call", index), str::to_owned);
        let function = call.get("function");
        let field = |name: &str| {
            function
                .and_then(|function| function.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        output.push(shell.function_call_item(
            &id,
            "completed",
            &call_id,
            field("name"),
            field("arguments"),
        ));
    }
    let status = Status::from_finish_reason(choice.get("finish_reason").and_then(Value::as_str));
    if let Some(last) = output.last_mut() {
        last["status"] = status.item_status().into();
    }
    Some(shell.response(&status, output, object::usage(completion.get("usage"))))
}

/// Non-empty text: a string, or the texts of an array of parts.
fn text_of(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}
