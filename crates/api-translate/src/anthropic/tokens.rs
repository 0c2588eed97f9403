//! `count_tokens` without the upstream: an estimate from the chat-completions request the
//! Messages request maps to.
//!
//! The heuristic: one token per 4 bytes of text (message texts, tool-call names and
//! arguments, and the JSON of the tool definitions), rounded up, plus 4 tokens per message
//! (role and framing) and a flat 1,600 per image (about what Anthropic charges for an image
//! near its 1.15-megapixel size limit; the proxy does not decode images to measure them).
//! About right for English text and code; it overestimates for CJK-light prose and
//! underestimates for CJK text.

use serde_json::Value;

/// Bytes of text per token.
const BYTES_PER_TOKEN: u64 = 4;
/// Tokens of framing per message.
const TOKENS_PER_MESSAGE: u64 = 4;
/// Tokens per image.
const TOKENS_PER_IMAGE: u64 = 1_600;

/// The estimated prompt tokens of the chat-completions request `chat`.
pub fn estimate(chat: &Value) -> u64 {
    let mut bytes = 0u64;
    let mut messages = 0u64;
    let mut images = 0u64;
    for message in chat
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        messages += 1;
        match message.get("content") {
            Some(Value::String(text)) => bytes += len(text),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if part.get("type").and_then(Value::as_str) == Some("image_url") {
                        images += 1;
                    } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                        bytes += len(text);
                    }
                }
            }
            _ => {}
        }
        for call in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let function = call.get("function");
            for field in ["name", "arguments"] {
                if let Some(text) = function.and_then(|f| f.get(field)).and_then(Value::as_str) {
                    bytes += len(text);
                }
            }
        }
    }
    if let Some(tools) = chat.get("tools") {
        bytes += len(&tools.to_string());
    }
    bytes.div_ceil(BYTES_PER_TOKEN) + messages * TOKENS_PER_MESSAGE + images * TOKENS_PER_IMAGE
}

fn len(text: &str) -> u64 {
    u64::try_from(text.len()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_counts_a_token_per_four_bytes_plus_framing() {
        let chat = json!({ "messages": [
            { "role": "system", "content": "12345678" },
            { "role": "user", "content": [{ "type": "text", "text": "123" }] },
        ] });
        assert_eq!(estimate(&chat), 3 + 2 * 4);
    }

    #[test]
    fn images_tools_and_calls_count() {
        let chat = json!({
            "messages": [
                { "role": "user", "content": [
                    { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
                ] },
                { "role": "assistant", "content": "", "tool_calls": [
                    { "id": "x", "type": "function", "function": { "name": "abcd", "arguments": "{}" } },
                ] },
            ],
            "tools": [{ "type": "function" }],
        });
        let tools = json!([{ "type": "function" }]).to_string().len() as u64;
        assert_eq!(estimate(&chat), (6 + tools).div_ceil(4) + 2 * 4 + 1_600);
    }
}
