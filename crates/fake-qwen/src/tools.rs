//! Tool calling as an OpenAI-compatible model does it: checking a request's `tools` and its
//! tool-call history the way the real API does, deciding when the model calls a tool, and
//! making up deterministic arguments from the tool's JSON Schema.

use serde_json::{Map, Value, json};

use crate::script::ChatStep;

/// How many fragments a tool call's `arguments` string is streamed in (fewer when it is short).
pub(crate) const ARGUMENT_FRAGMENTS: usize = 3;

/// One function call the fake makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    /// `call_<n>`, unique within one fake.
    pub(crate) id: String,
    pub(crate) name: String,
    /// A JSON object, serialized (OpenAI sends arguments as a string).
    pub(crate) arguments: String,
}

impl ToolCall {
    /// The `tool_calls[i]` entry of a whole (non-streamed) message.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "function",
            "function": { "name": self.name, "arguments": self.arguments },
        })
    }
}

/// What the model decided to call: how many calls and whether text comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallPlan {
    pub(crate) calls: usize,
    pub(crate) leading_text: bool,
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn tools(body: &Value) -> &[Value] {
    body.get("tools")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// Checks `tools` and the tool-call history in `messages` as OpenAI's API does; the message of
/// a 400 answer when something is off.
///
/// - every tool is `{"type": "function", "function": {"name": <non-empty string>, ...}}`;
/// - every assistant `tool_calls` entry has a string `id`, `type: "function"`, a string
///   `function.name` and a *string* `function.arguments`;
/// - every `role: "tool"` message answers, with `tool_call_id`, a call of the assistant message
///   right before the run of tool messages it belongs to;
/// - every call is answered before the next non-tool message (or the end of `messages`).
pub(crate) fn check_request(body: &Value) -> Result<(), String> {
    if let Some(tools) = body.get("tools")
        && !tools.is_array()
    {
        return Err("tools must be an array".to_owned());
    }
    for (index, tool) in tools(body).iter().enumerate() {
        let name = tool.pointer("/function/name").and_then(Value::as_str);
        if tool.get("type").and_then(Value::as_str) != Some("function")
            || name.is_none_or(str::is_empty)
        {
            return Err(format!(
                "tools[{index}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {tool}"
            ));
        }
    }

    let mut pending: Vec<String> = Vec::new();
    for (index, message) in messages(body).iter().enumerate() {
        match role(message) {
            Some("tool") => {
                let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(format!(
                        "messages[{index}]: a tool message needs tool_call_id"
                    ));
                };
                let Some(position) = pending.iter().position(|pending| pending == id) else {
                    return Err(format!(
                        "messages[{index}]: messages with role 'tool' must be a response to a \
                         preceding message with 'tool_calls' (no pending call {id:?})"
                    ));
                };
                pending.remove(position);
            }
            other => {
                if !pending.is_empty() {
                    return Err(unanswered(&pending));
                }
                if other == Some("assistant") {
                    pending = assistant_call_ids(index, message)?;
                }
            }
        }
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(unanswered(&pending))
    }
}

fn unanswered(pending: &[String]) -> String {
    format!(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to \
         each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
        pending.join(", ")
    )
}

/// The ids of an assistant message's `tool_calls`, once each call is well formed.
fn assistant_call_ids(index: usize, message: &Value) -> Result<Vec<String>, String> {
    let Some(calls) = message.get("tool_calls") else {
        return Ok(Vec::new());
    };
    let Some(calls) = calls.as_array() else {
        return Err(format!("messages[{index}].tool_calls must be an array"));
    };
    let mut ids = Vec::new();
    for (at, call) in calls.iter().enumerate() {
        let where_ = format!("messages[{index}].tool_calls[{at}]");
        let Some(id) = call.get("id").and_then(Value::as_str) else {
            return Err(format!("{where_}.id must be a string, got {call}"));
        };
        if call.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!("{where_}.type must be \"function\", got {call}"));
        }
        if !call.pointer("/function/name").is_some_and(Value::is_string) {
            return Err(format!(
                "{where_}.function.name must be a string, got {call}"
            ));
        }
        if !call
            .pointer("/function/arguments")
            .is_some_and(Value::is_string)
        {
            return Err(format!(
                "{where_}.function.arguments must be a string (JSON text), got {call}"
            ));
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// The text of a message's `content`: a string, or its text parts joined.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// When the conversation ends with tool results: their contents, in order.
pub(crate) fn trailing_results(body: &Value) -> Option<Vec<String>> {
    let results: Vec<String> = messages(body)
        .iter()
        .rev()
        .take_while(|message| role(message) == Some("tool"))
        .map(|message| content_text(message.get("content")))
        .collect();
    if results.is_empty() {
        return None;
    }
    Some(results.into_iter().rev().collect())
}

/// Whether (and how) the model calls tools for this request: only when it offers tools, its
/// `tool_choice` is not `"none"` and its last message other than system messages (which
/// agents add at the end, such as reminders) is the user's.
pub(crate) fn plan(body: &Value, step: ChatStep) -> Option<CallPlan> {
    let last = messages(body)
        .iter()
        .rev()
        .find(|message| role(message) != Some("system"));
    if tools(body).is_empty()
        || body.get("tool_choice").and_then(Value::as_str) == Some("none")
        || last.and_then(role) != Some("user")
    {
        return None;
    }
    let (calls, leading_text) = match step {
        ChatStep::ToolCalls {
            calls,
            leading_text,
        } => (usize::from(calls.max(1)), leading_text),
        _ => (1, false),
    };
    let parallel = body.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false);
    Some(CallPlan {
        calls: if parallel { calls } else { 1 },
        leading_text,
    })
}

/// The tools the model calls, in order: the one `tool_choice` names, else the offered tools
/// that are `preferred` (in the order of preference), then the other offered tools (wrapping
/// around when there are fewer tools than calls).
pub(crate) fn chosen_tools<'a>(
    body: &'a Value,
    calls: usize,
    preferred: &[PreferredTool],
) -> Vec<&'a Value> {
    let offered = tools(body);
    let by_name = |name: &str| offered.iter().find(|tool| tool_name(tool) == name);
    let named = body
        .pointer("/tool_choice/function/name")
        .and_then(Value::as_str)
        .and_then(by_name);
    let mut order: Vec<&Value> = preferred
        .iter()
        .filter_map(|preferred| by_name(&preferred.name))
        .collect();
    order.extend(
        offered
            .iter()
            .filter(|tool| !preferred.iter().any(|p| p.name == tool_name(tool))),
    );
    (0..calls)
        .filter_map(|i| named.or_else(|| order.get(i % order.len().max(1)).copied()))
        .collect()
}

/// A tool the model calls first when it is offered, and the arguments it calls it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreferredTool {
    pub(crate) name: String,
    /// A JSON object, serialized.
    pub(crate) arguments: String,
}

/// The name of an offered tool.
pub(crate) fn tool_name(tool: &Value) -> &str {
    tool.pointer("/function/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Deterministic arguments for call number `n` of `tool`: `{"<prop>": <value>}` for its first
/// required property (else its first property), `{}` when it has none. The value follows the
/// property's type: strings are `"<prop>-<n>"` (or the first `enum` value), integers and
/// numbers `n`, booleans `true`, arrays `[]`, objects `{}`.
pub(crate) fn arguments(tool: &Value, n: u64) -> String {
    let parameters = tool.pointer("/function/parameters");
    let properties = parameters
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object);
    let required = parameters
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array)
        .and_then(|required| required.first())
        .and_then(Value::as_str);
    let first = properties.and_then(|properties| properties.keys().next().map(String::as_str));
    let Some(property) = required.or(first) else {
        return "{}".to_owned();
    };
    let schema = properties.and_then(|properties| properties.get(property));
    let kind = schema
        .and_then(|schema| schema.get("type"))
        .and_then(Value::as_str);
    let value = if let Some(first) = schema.and_then(|schema| schema.pointer("/enum/0")) {
        first.clone()
    } else {
        match kind {
            Some("integer" | "number") => json!(n),
            Some("boolean") => Value::Bool(true),
            Some("array") => json!([]),
            Some("object") => Value::Object(Map::new()),
            _ => Value::String(format!("{property}-{n}")),
        }
    };
    let mut object = Map::new();
    object.insert(property.to_owned(), value);
    Value::Object(object).to_string()
}

/// `text` cut into at most `pieces` non-empty fragments of about equal length (on character
/// boundaries); no fragment for empty text.
pub(crate) fn fragments(text: &str, pieces: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(pieces.max(1));
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({ "type": "function", "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": { "unit": { "type": "string", "enum": ["celsius"] }, "city": { "type": "string" } },
                "required": ["city"],
            },
        } })
    }

    #[test]
    fn arguments_follow_the_schema() {
        assert_eq!(arguments(&weather(), 3), r#"{"city":"city-3"}"#);
        let count = json!({ "type": "function", "function": { "name": "n",
            "parameters": { "properties": { "count": { "type": "integer" } } } } });
        assert_eq!(arguments(&count, 2), r#"{"count":2}"#);
        let unit = json!({ "type": "function", "function": { "name": "u",
            "parameters": { "properties": { "unit": { "type": "string", "enum": ["kelvin"] } } } } });
        assert_eq!(arguments(&unit, 1), r#"{"unit":"kelvin"}"#);
        let bare = json!({ "type": "function", "function": { "name": "now" } });
        assert_eq!(arguments(&bare, 1), "{}");
    }

    #[test]
    fn fragments_cover_the_text() {
        assert_eq!(fragments("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(fragments("ab", 3), ["a", "b"]);
        assert_eq!(fragments("é€x", 2), ["é€", "x"]);
        assert!(fragments("", 3).is_empty());
    }

    #[test]
    fn the_history_must_answer_every_call() {
        let call = json!({ "id": "call_1", "type": "function",
            "function": { "name": "get_weather", "arguments": "{}" } });
        let good = json!({ "tools": [weather()], "messages": [
            { "role": "user", "content": "hi" },
            { "role": "assistant", "content": null, "tool_calls": [call] },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny" },
        ] });
        assert_eq!(check_request(&good), Ok(()));

        let mut unanswered = good.clone();
        unanswered["messages"][2] = json!({ "role": "user", "content": "and?" });
        assert!(check_request(&unanswered).unwrap_err().contains("call_1"));

        let mut stray = good.clone();
        stray["messages"][2]["tool_call_id"] = "call_9".into();
        assert!(check_request(&stray).unwrap_err().contains("role 'tool'"));

        let mut object_arguments = good.clone();
        object_arguments["messages"][1]["tool_calls"][0]["function"]["arguments"] = json!({});
        assert!(
            check_request(&object_arguments)
                .unwrap_err()
                .contains("arguments must be a string")
        );

        let bad_tool = json!({ "tools": [{ "name": "x" }], "messages": [] });
        assert!(check_request(&bad_tool).unwrap_err().contains("tools[0]"));
    }
}
