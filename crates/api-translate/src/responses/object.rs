//! The Responses objects both answer paths build: the `response` envelope (with the request's
//! echo fields), its output items, and the usage block.
//!
//! Ids: a response is `resp_<base>` and its output items `<prefix>_<base>_<output index>`
//! (`msg_`, `fc_`, `rs_`), so they are unique within a response and tied to it. The base is
//! made from the clock and a process-wide counter ([`Shell::fresh`]); tests pass a fixed one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::namespaces::Namespaces;

/// Counts responses made by this process, to keep ids made within one clock tick apart.
static RESPONSES: AtomicU64 = AtomicU64::new(0);

/// The error code of a failed response (the upstream broke off or reported an error).
pub(crate) const FAILURE_CODE: &str = "server_error";

/// Where a response stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    InProgress,
    Completed,
    /// Stopped early; the reason is the Responses `incomplete_details.reason`.
    Incomplete(&'static str),
    /// Broke off; the message is the error's.
    Failed(String),
}

impl Status {
    /// The status of a finished answer with chat `finish_reason`.
    pub(crate) fn from_finish_reason(finish_reason: Option<&str>) -> Self {
        match finish_reason {
            Some("length") => Self::Incomplete("max_output_tokens"),
            Some("content_filter") => Self::Incomplete("content_filter"),
            _ => Self::Completed,
        }
    }

    /// The status of the item that was being written when the answer ended this way: the
    /// one a limit or a filter cut is `incomplete`.
    pub(crate) fn item_status(&self) -> &'static str {
        match self {
            Self::Incomplete(_) => "incomplete",
            _ => "completed",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete(_) => "incomplete",
            Self::Failed(_) => "failed",
        }
    }
}

/// What every response object of one request shares: its id, creation time, the fields it
/// repeats from the request and the request's namespaced tools.
#[derive(Debug, Clone)]
pub struct Shell {
    base: String,
    created_at: u64,
    echo: Map<String, Value>,
    namespaces: Namespaces,
}

impl Shell {
    /// A shell with a fixed id base and creation time.
    pub fn new(echo: Map<String, Value>, base: impl Into<String>, created_at: u64) -> Self {
        Self {
            base: base.into(),
            created_at,
            echo,
            namespaces: Namespaces::default(),
        }
    }

    /// The shell, naming the model's calls of the request's namespaced tools.
    pub fn with_namespaces(mut self, namespaces: Namespaces) -> Self {
        self.namespaces = namespaces;
        self
    }

    /// A shell with a new id, created now.
    pub fn fresh(echo: Map<String, Value>) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let count = RESPONSES.fetch_add(1, Ordering::Relaxed);
        let base = format!("{:x}{:06x}", now.as_nanos(), count & 0xff_ffff);
        Self::new(echo, base, now.as_secs())
    }

    /// A function call item for a call of chat function `chat_name`: a namespaced tool's call
    /// has its `name` and `namespace` apart.
    pub(crate) fn function_call_item(
        &self,
        id: &str,
        status: &str,
        call_id: &str,
        chat_name: &str,
        arguments: &str,
    ) -> Value {
        let (namespace, name) = self.namespaces.split(chat_name);
        let mut item = json!({
            "type": "function_call",
            "id": id,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": status,
        });
        if let Some(namespace) = namespace {
            item["namespace"] = namespace.into();
        }
        item
    }

    /// The id of the output item at `output_index`, e.g. `msg_<base>_0`.
    pub(crate) fn item_id(&self, prefix: &str, output_index: usize) -> String {
        format!("{prefix}_{}_{output_index}", self.base)
    }

    /// The response object.
    pub(crate) fn response(&self, status: &Status, output: Vec<Value>, usage: Value) -> Value {
        let error = match status {
            Status::Failed(message) => json!({ "code": FAILURE_CODE, "message": message }),
            _ => Value::Null,
        };
        let incomplete_details = match status {
            Status::Incomplete(reason) => json!({ "reason": reason }),
            _ => Value::Null,
        };
        let mut object = Map::new();
        object.insert("id".into(), format!("resp_{}", self.base).into());
        object.insert("object".into(), "response".into());
        object.insert("created_at".into(), self.created_at.into());
        object.insert("status".into(), status.name().into());
        object.insert("background".into(), false.into());
        object.insert("error".into(), error);
        object.insert("incomplete_details".into(), incomplete_details);
        object.insert("output".into(), Value::Array(output));
        object.insert("previous_response_id".into(), Value::Null);
        object.insert("store".into(), false.into());
        object.insert("truncation".into(), "disabled".into());
        object.insert("usage".into(), usage);
        object.extend(self.echo.clone());
        Value::Object(object)
    }
}

/// An assistant message item; `text` is its one `output_text` part (none while in progress).
pub(crate) fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content: Vec<Value> = text.map(output_text).into_iter().collect();
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

/// An `output_text` content part.
pub(crate) fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [] })
}

/// A reasoning item; `summary` is its one `summary_text` part (none while in progress).
pub(crate) fn reasoning_item(id: &str, status: &str, summary: Option<&str>) -> Value {
    let summary: Vec<Value> = summary.map(summary_text).into_iter().collect();
    json!({ "type": "reasoning", "id": id, "status": status, "summary": summary })
}

/// A `summary_text` part.
pub(crate) fn summary_text(text: &str) -> Value {
    json!({ "type": "summary_text", "text": text })
}

/// The Responses usage for a chat `usage` object; `null` when there is none. Cache reads are
/// `prompt_tokens_details.cached_tokens` (OpenAI, DashScope), DeepSeek's
/// `prompt_cache_hit_tokens` or Moonshot's `cached_tokens`. DashScope's
/// `prompt_tokens_details.cache_creation_input_tokens` is `cache_write_tokens` (which the
/// openai SDK requires), 0 when absent like the other details.
pub(crate) fn usage(chat: Option<&Value>) -> Value {
    let Some(chat) = chat.filter(|usage| usage.is_object()) else {
        return Value::Null;
    };
    let count = |pointer: &str| chat.pointer(pointer).and_then(Value::as_u64);
    let input = count("/prompt_tokens").unwrap_or(0);
    let output = count("/completion_tokens").unwrap_or(0);
    let cached = count("/prompt_tokens_details/cached_tokens")
        .or_else(|| count("/prompt_cache_hit_tokens"))
        .or_else(|| count("/cached_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": cached.unwrap_or(0),
            "cache_write_tokens":
                count("/prompt_tokens_details/cache_creation_input_tokens").unwrap_or(0),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": count("/completion_tokens_details/reasoning_tokens").unwrap_or(0),
        },
        "total_tokens": count("/total_tokens").unwrap_or(input + output),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_shells_get_distinct_ids() {
        let a = Shell::fresh(Map::new());
        let b = Shell::fresh(Map::new());
        assert_ne!(
            a.response(&Status::InProgress, vec![], Value::Null)["id"],
            b.response(&Status::InProgress, vec![], Value::Null)["id"]
        );
        assert!(a.item_id("msg", 0).starts_with("msg_"));
        assert!(a.created_at > 1_700_000_000);
    }

    #[test]
    fn finish_reasons_map_to_statuses() {
        assert_eq!(Status::from_finish_reason(Some("stop")), Status::Completed);
        assert_eq!(
            Status::from_finish_reason(Some("tool_calls")),
            Status::Completed
        );
        assert_eq!(Status::from_finish_reason(None), Status::Completed);
        assert_eq!(
            Status::from_finish_reason(Some("length")),
            Status::Incomplete("max_output_tokens")
        );
    }

    #[test]
    fn usage_without_details_counts_zero_and_sums_the_total() {
        assert_eq!(
            usage(Some(&json!({ "prompt_tokens": 3, "completion_tokens": 4 }))),
            json!({
                "input_tokens": 3,
                "input_tokens_details": { "cached_tokens": 0, "cache_write_tokens": 0 },
                "output_tokens": 4,
                "output_tokens_details": { "reasoning_tokens": 0 },
                "total_tokens": 7,
            })
        );
        assert_eq!(
            usage(Some(&json!({ "prompt_tokens": 100, "completion_tokens": 4,
                "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36 })))["input_tokens_details"]
                ["cached_tokens"],
            64
        );
        assert_eq!(usage(None), Value::Null);
        assert_eq!(usage(Some(&Value::Null)), Value::Null);
    }
}
