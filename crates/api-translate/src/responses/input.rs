//! The Responses `input` item list as chat-completions `messages`.
//!
//! - `message` items (or items with a `role` and no `type`) become messages of that role;
//!   `developer` becomes `system`. Content parts: `input_text`, `output_text` and `refusal` are
//!   text, `input_image` is an `image_url` part (an `image_url` string, with its `detail`;
//!   `file_id` images are refused). Text-only content is sent as a string, its parts joined
//!   with `\n` (assistant parts with nothing between them, as the SDK's `output_text` joins
//!   them).
//! - `function_call` items become `tool_calls` of an assistant message: consecutive calls share
//!   one message, and the text of an assistant message item right before them is that
//!   message's `content` (`""` when there is none). A call with a `namespace` is named as
//!   its namespace's tools are sent upstream, `<namespace>__<name>` ([`super::namespaces`]).
//! - `function_call_output` items become `role: "tool"` messages; an output given as parts
//!   sends its text parts joined with `\n` (images and files in tool output are dropped).
//! - `reasoning` items are dropped: the upstream cannot take them back.
//! - Any other item type or content part is refused with a 400 naming it.

use serde_json::{Map, Value, json};

use super::namespaces::flat_name;
use super::refusal::Refusal;
use crate::quote::client_text;

/// Appends the messages for `items` to `messages`.
pub(super) fn append(items: &[Value], messages: &mut Vec<Value>) -> Result<(), Refusal> {
    for (index, item) in items.iter().enumerate() {
        let Some(fields) = item.as_object() else {
            return Err(Refusal::new(
                "invalid_input_item",
                format!(
                    "input[{index}] is not an object; send input items such as {{\"role\": \"user\", \"content\": \"...\"}}"
                ),
            ));
        };
        let kind = match fields.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            None if fields.contains_key("role") => "message",
            None => {
                return Err(Refusal::new(
                    "invalid_input_item",
                    format!("input[{index}] has neither `type` nor `role`"),
                ));
            }
        };
        match kind {
            "message" => messages.push(message(index, fields)?),
            "function_call" => append_call(index, fields, messages)?,
            "function_call_output" => messages.push(call_output(index, fields)?),
            "reasoning" => {}
            other => {
                return Err(Refusal::new(
                    "unsupported_input_item",
                    format!(
                        "input[{index}] is a `{}` item, which cliproxy cannot send to a \
                         chat-completions upstream; use `message`, `function_call`, \
                         `function_call_output` or `reasoning` items",
                        client_text(other)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A `message` item.
fn message(index: usize, fields: &Map<String, Value>) -> Result<Value, Refusal> {
    let role = match fields.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant" | "system")) => role,
        Some("developer") => "system",
        other => {
            return Err(Refusal::new(
                "invalid_role",
                format!(
                    "input[{index}] has role {}; use `user`, `assistant`, `system` or `developer`",
                    other.map_or_else(
                        || "none".to_owned(),
                        |role| format!("`{}`", client_text(role))
                    )
                ),
            ));
        }
    };
    let separator = if role == "assistant" { "" } else { "\n" };
    let content = content(index, fields.get("content"), separator)?;
    Ok(json!({ "role": role, "content": content }))
}

/// Message content: a string stays one; parts become chat parts, or one string when they are
/// all text.
fn content(index: usize, content: Option<&Value>, separator: &str) -> Result<Value, Refusal> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Value::String(String::new())),
        Some(Value::String(text)) => return Ok(Value::String(text.clone())),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(Refusal::new(
                "invalid_content",
                format!("input[{index}].content must be a string or an array of content parts"),
            ));
        }
    };
    let mut converted = Vec::with_capacity(parts.len());
    for part in parts {
        converted.push(content_part(index, part)?);
    }
    if converted.iter().all(|part| part["type"] == "text") {
        let texts: Vec<&str> = converted
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect();
        return Ok(Value::String(texts.join(separator)));
    }
    Ok(Value::Array(converted))
}

/// One content part as a chat part.
fn content_part(index: usize, part: &Value) -> Result<Value, Refusal> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    let text_field = match kind {
        "input_text" | "output_text" => "text",
        "refusal" => "refusal",
        "input_image" => return image_part(index, part),
        _ => {
            return Err(Refusal::new(
                "unsupported_content_part",
                format!(
                    "input[{index}] has a content part of type `{}`, which cliproxy does not \
                     support; use `input_text`, `input_image` (with `image_url`), `output_text` \
                     or `refusal` parts",
                    client_text(kind)
                ),
            ));
        }
    };
    let text = part
        .get(text_field)
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(json!({ "type": "text", "text": text }))
}

/// An `input_image` part as an `image_url` chat part.
fn image_part(index: usize, part: &Value) -> Result<Value, Refusal> {
    let Some(url) = part.get("image_url").and_then(Value::as_str) else {
        let message = if part.get("file_id").is_some_and(|id| !id.is_null()) {
            format!(
                "input[{index}] has an `input_image` with `file_id`, which cliproxy does not \
                 support (it has no file storage); send the image as `image_url` (a URL or a \
                 base64 data URL)"
            )
        } else {
            format!("input[{index}] has an `input_image` without `image_url`")
        };
        return Err(Refusal::new("unsupported_image", message));
    };
    let mut image = Map::new();
    image.insert("url".into(), url.into());
    if let Some(detail) = part.get("detail").filter(|detail| !detail.is_null()) {
        image.insert("detail".into(), detail.clone());
    }
    Ok(json!({ "type": "image_url", "image_url": image }))
}

/// A `function_call` item: a tool call of the assistant message before it when that message
/// is the assistant's, else of a new assistant message.
fn append_call(
    index: usize,
    fields: &Map<String, Value>,
    messages: &mut Vec<Value>,
) -> Result<(), Refusal> {
    let call_id = required_str(index, fields, "call_id")?;
    let name = required_str(index, fields, "name")?;
    let name = match fields.get("namespace").and_then(Value::as_str) {
        Some(namespace) => flat_name(namespace, name),
        None => name.to_owned(),
    };
    let arguments = match fields.get("arguments") {
        Some(Value::String(arguments)) => arguments.clone(),
        None | Some(Value::Null) => "{}".to_owned(),
        Some(other) => other.to_string(),
    };
    let call = json!({
        "id": call_id,
        "type": "function",
        "function": { "name": name, "arguments": arguments },
    });
    let previous = messages
        .last_mut()
        .and_then(Value::as_object_mut)
        .filter(|message| message.get("role").and_then(Value::as_str) == Some("assistant"));
    let Some(previous) = previous else {
        messages.push(json!({ "role": "assistant", "content": "", "tool_calls": [call] }));
        return Ok(());
    };
    match previous.get_mut("tool_calls") {
        Some(Value::Array(calls)) => calls.push(call),
        _ => {
            previous.insert("tool_calls".into(), json!([call]));
        }
    }
    Ok(())
}

/// A `function_call_output` item as a tool message.
fn call_output(index: usize, fields: &Map<String, Value>) -> Result<Value, Refusal> {
    let call_id = required_str(index, fields, "call_id")?;
    let content = match fields.get("output") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|part| {
                matches!(
                    part.get("type").and_then(Value::as_str),
                    Some("input_text" | "output_text")
                )
            })
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    Ok(json!({ "role": "tool", "tool_call_id": call_id, "content": content }))
}

fn required_str<'a>(
    index: usize,
    fields: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, Refusal> {
    fields.get(name).and_then(Value::as_str).ok_or_else(|| {
        Refusal::new(
            "invalid_input_item",
            format!("input[{index}] has no string `{name}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `responses_request` fuzz target: a refusal quoted the item's `type` as
    /// sent, line breaks and all.
    #[test]
    fn values_quoted_in_refusals_are_one_short_line() {
        let long = "x".repeat(5000);
        for item in [
            json!({ "type": "rea{{\nsrc" }),
            json!({ "type": long }),
            json!({ "role": "boss\r\nX-Injected: 1" }),
            json!({ "role": "user", "content": [{ "type": "odd\npart" }] }),
        ] {
            let refusal = append(&[item], &mut Vec::new()).expect_err("refused");
            assert!(
                !refusal.message.contains(['\n', '\r']),
                "{}",
                refusal.message
            );
            assert!(refusal.message.chars().count() < 600, "{}", refusal.message);
        }
    }
}
