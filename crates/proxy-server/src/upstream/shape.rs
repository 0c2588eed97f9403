//! Reshapes a chat-completions body the way Qwen's OAuth endpoint accepts it (see
//! `qwen-protocol.md`): one leading system message whose content is an array of parts, the
//! first carrying `cache_control: {"type": "ephemeral"}`; user messages whose content is only
//! text parts sent as plain strings; `stream_options.include_usage` on streaming requests.
//! API-key upstreams never go through this.

use serde_json::{Map, Value};

/// Reshapes `body` in place. Done once per client request, whatever the number of attempts
/// ([`Outgoing::for_qwen`](super::request::Outgoing::for_qwen)).
pub(crate) fn for_qwen(body: &mut Value) {
    if let Value::Object(fields) = body {
        shape(fields);
    }
}

fn shape(fields: &mut Map<String, Value>) {
    if let Some(Value::Array(messages)) = fields.get_mut("messages") {
        let original = std::mem::take(messages);
        let mut parts = Vec::new();
        let mut rest = Vec::with_capacity(original.len() + 1);
        rest.push(Value::Null);
        for mut message in original {
            match role(&message) {
                Some("system" | "developer") => append_system_parts(&mut parts, &mut message),
                Some("user") => {
                    flatten_text_content(&mut message);
                    rest.push(message);
                }
                _ => rest.push(message),
            }
        }
        if !parts.first().is_some_and(Value::is_object) {
            parts.insert(0, text_part(String::new()));
        }
        if let Some(Value::Object(first)) = parts.first_mut() {
            first.insert(
                "cache_control".to_owned(),
                object([("type", Value::from("ephemeral"))]),
            );
        }
        // Built directly: `json!` would copy `parts` through a serializer.
        rest[0] = object([
            ("role", Value::from("system")),
            ("content", Value::Array(parts)),
        ]);
        *messages = rest;
    }
    if fields.get("stream").and_then(Value::as_bool) == Some(true) {
        let options = fields
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(options) = options {
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// Moves a system message's content into `parts`: a string becomes one text part, an array
/// contributes its parts as they are.
fn append_system_parts(parts: &mut Vec<Value>, message: &mut Value) {
    match message.get_mut("content").map(Value::take) {
        Some(Value::String(text)) => parts.push(text_part(text)),
        Some(Value::Array(items)) => parts.extend(items.into_iter().map(|item| match item {
            Value::String(text) => text_part(text),
            other => other,
        })),
        _ => {}
    }
}

/// `{"type": "text", "text": text}`.
fn text_part(text: String) -> Value {
    object([("type", Value::from("text")), ("text", Value::String(text))])
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// A user message whose content is a non-empty array of only text parts gets its texts joined
/// with `\n` into a plain string; any other content stays as it is.
fn flatten_text_content(message: &mut Value) {
    let Some(Value::Array(items)) = message.get("content") else {
        return;
    };
    let texts: Option<Vec<&str>> = items
        .iter()
        .map(|item| {
            (item.get("type").and_then(Value::as_str) == Some("text"))
                .then(|| item.get("text").and_then(Value::as_str))
                .flatten()
        })
        .collect();
    let Some(texts) = texts.filter(|texts| !texts.is_empty()) else {
        return;
    };
    let joined = texts.join("\n");
    message["content"] = Value::String(joined);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shaped(body: Value) -> Value {
        let mut body = body;
        for_qwen(&mut body);
        body
    }

    #[test]
    fn system_messages_merge_into_one_leading_cached_system_message() {
        let body = shaped(json!({
            "model": "coder-model",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "hi" },
                { "role": "system", "content": [{ "type": "text", "text": "Use English." }] },
                { "role": "assistant", "content": "hello" },
            ],
        }));
        assert_eq!(
            body["messages"],
            json!([
                { "role": "system", "content": [
                    { "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral" } },
                    { "type": "text", "text": "Use English." },
                ] },
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": "hello" },
            ])
        );
        assert_eq!(body["model"], "coder-model");
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn without_a_system_message_an_empty_cached_part_leads() {
        let body = shaped(json!({ "messages": [{ "role": "user", "content": "hi" }] }));
        assert_eq!(
            body["messages"][0],
            json!({ "role": "system", "content": [
                { "type": "text", "text": "", "cache_control": { "type": "ephemeral" } }
            ] })
        );
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn user_text_parts_become_a_string_but_images_stay() {
        let body = shaped(json!({ "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "line one" },
                { "type": "text", "text": "line two" },
            ] },
            { "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
            ] },
            { "role": "user", "content": [] },
        ] }));
        assert_eq!(body["messages"][1]["content"], "line one\nline two");
        assert_eq!(body["messages"][2]["content"][1]["type"], "image_url");
        assert_eq!(body["messages"][3]["content"], json!([]));
    }

    #[test]
    fn streaming_requests_ask_for_usage() {
        let body = shaped(json!({
            "stream": true,
            "stream_options": { "other": 1 },
            "messages": [],
        }));
        assert_eq!(
            body["stream_options"],
            json!({ "other": 1, "include_usage": true })
        );
        let body = shaped(json!({ "stream": true, "messages": [] }));
        assert_eq!(body["stream_options"], json!({ "include_usage": true }));
        let body = shaped(json!({ "stream": false, "messages": [] }));
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn a_cache_control_of_the_client_is_kept_and_not_duplicated() {
        let body = shaped(json!({ "messages": [
            { "role": "system", "content": [
                { "type": "text", "text": "S", "cache_control": { "type": "ephemeral" } }
            ] },
        ] }));
        assert_eq!(
            body["messages"],
            json!([{ "role": "system", "content": [
                { "type": "text", "text": "S", "cache_control": { "type": "ephemeral" } }
            ] }])
        );
    }
}
