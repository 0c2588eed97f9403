//! How a turn ended, shared by whole and streamed answers: the stop reason, the token usage,
//! and the message and tool-use ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};

/// Anthropic's `stop_reason` for a chat `finish_reason`: `stop` → `end_turn`, `length` →
/// `max_tokens`, `tool_calls` (and the legacy `function_call`) → `tool_use`,
/// `content_filter` → `refusal`; anything else, or none, → `end_turn`.
///
/// `stop_sequence` does not come from here: chat completions say `stop` both for a natural
/// end and for a matched stop sequence, so cliproxy finds the sequences in the text itself
/// ([`super::stops`]). An answer that called tools ends with `tool_use` even when the upstream
/// said `stop` (some do).
pub(crate) fn stop_reason(finish_reason: Option<&str>, called_tools: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("content_filter") => "refusal",
        Some("tool_calls" | "function_call") => "tool_use",
        _ if called_tools => "tool_use",
        _ => "end_turn",
    }
}

/// The token counts of a chat answer (`usage`); absent fields count as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    /// DeepSeek's count of prompt tokens read from its cache.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
    /// Moonshot's count of prompt tokens read from its cache.
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
struct PromptDetails {
    /// Prompt tokens read from the cache (part of `prompt_tokens`).
    #[serde(default)]
    cached_tokens: Option<u64>,
    /// Prompt tokens written to the cache (DashScope's explicit cache; part of
    /// `prompt_tokens`).
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl Usage {
    /// Anthropic's usage object. Anthropic counts cache reads and writes apart from
    /// `input_tokens` (their sum is the prompt), while chat completions count them inside
    /// `prompt_tokens`; so `input_tokens` is `prompt_tokens` minus the cached and
    /// cache-creation tokens, which appear as `cache_read_input_tokens` and
    /// `cache_creation_input_tokens` when the upstream reports them (cache reads as
    /// `prompt_tokens_details.cached_tokens`, or as DeepSeek's `prompt_cache_hit_tokens` or
    /// Moonshot's `cached_tokens`).
    pub(crate) fn to_anthropic(self) -> Map<String, Value> {
        let details = self.prompt_tokens_details.unwrap_or_default();
        let cached = details
            .cached_tokens
            .or(self.prompt_cache_hit_tokens)
            .or(self.cached_tokens);
        let created = details.cache_creation_input_tokens;
        let input = self
            .prompt_tokens
            .saturating_sub(cached.unwrap_or(0))
            .saturating_sub(created.unwrap_or(0));
        let mut usage = Map::new();
        usage.insert("input_tokens".to_owned(), input.into());
        if let Some(created) = created {
            usage.insert("cache_creation_input_tokens".to_owned(), created.into());
        }
        if let Some(cached) = cached {
            usage.insert("cache_read_input_tokens".to_owned(), cached.into());
        }
        usage.insert("output_tokens".to_owned(), self.completion_tokens.into());
        usage
    }
}

/// Distinguishes locally made ids within one process.
static LOCAL_IDS: AtomicU64 = AtomicU64::new(0);

/// The message id: `msg_` and the chat answer's id, or a locally made unique id when the
/// upstream sent none.
pub(crate) fn message_id(chat_id: Option<&str>) -> String {
    match chat_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("msg_{id}"),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            let count = LOCAL_IDS.fetch_add(1, Ordering::Relaxed);
            format!("msg_cliproxy_{nanos:x}_{count}")
        }
    }
}

/// The id of a tool use the upstream sent without one: unique within the message
/// `message_id` (`toolu_<message id without msg_>_<index>`).
pub(crate) fn tool_use_id(message_id: &str, index: usize) -> String {
    let message = message_id.strip_prefix("msg_").unwrap_or(message_id);
    format!("toolu_{message}_{index}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        assert_eq!(stop_reason(Some("stop"), false), "end_turn");
        assert_eq!(stop_reason(Some("length"), true), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls"), true), "tool_use");
        assert_eq!(stop_reason(Some("function_call"), false), "tool_use");
        assert_eq!(stop_reason(Some("content_filter"), false), "refusal");
        assert_eq!(stop_reason(Some("stop"), true), "tool_use");
        assert_eq!(stop_reason(None, false), "end_turn");
        assert_eq!(stop_reason(Some("weird"), false), "end_turn");
    }

    #[test]
    fn cached_tokens_are_counted_apart_from_input_tokens() {
        let usage: Usage = serde_json::from_value(json!({
            "prompt_tokens": 3019, "completion_tokens": 104, "total_tokens": 3123,
            "prompt_tokens_details": { "cached_tokens": 2048 }
        }))
        .expect("usage");
        assert_eq!(
            Value::Object(usage.to_anthropic()),
            json!({ "input_tokens": 971, "cache_read_input_tokens": 2048, "output_tokens": 104 })
        );
        let usage: Usage = serde_json::from_value(json!({
            "prompt_tokens": 1100, "completion_tokens": 5,
            "prompt_tokens_details": { "cached_tokens": 0, "cache_creation_input_tokens": 1043 }
        }))
        .expect("usage");
        assert_eq!(
            Value::Object(usage.to_anthropic()),
            json!({
                "input_tokens": 57, "cache_creation_input_tokens": 1043,
                "cache_read_input_tokens": 0, "output_tokens": 5
            })
        );
        assert_eq!(
            Value::Object(Usage::default().to_anthropic()),
            json!({ "input_tokens": 0, "output_tokens": 0 })
        );
        for cached in [
            json!({ "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36 }),
            json!({ "cached_tokens": 64 }),
        ] {
            let mut counts = json!({ "prompt_tokens": 100, "completion_tokens": 5 });
            counts
                .as_object_mut()
                .expect("an object")
                .extend(cached.as_object().expect("an object").clone());
            let usage: Usage = serde_json::from_value(counts).expect("usage");
            assert_eq!(
                Value::Object(usage.to_anthropic()),
                json!({ "input_tokens": 36, "cache_read_input_tokens": 64, "output_tokens": 5 }),
                "{cached}"
            );
        }
    }

    #[test]
    fn message_ids_come_from_the_chat_id_or_are_unique() {
        assert_eq!(message_id(Some("chatcmpl-7")), "msg_chatcmpl-7");
        let (a, b) = (message_id(None), message_id(Some("")));
        assert!(a.starts_with("msg_cliproxy_"), "{a}");
        assert_ne!(a, b);
    }
}
