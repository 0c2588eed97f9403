//! A Messages API request, checked ([`MessagesRequest::parse`]) and turned into a
//! chat-completions request ([`MessagesRequest::into_chat`]); the mapping is listed in the
//! [module docs](super).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::stops::StopSequences;
use crate::reasoning::Reasoning;

/// Which endpoint a request is for: `count_tokens` takes no `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Create,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
}

/// Why a request is not a usable Messages request; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "the request body is not valid JSON ({0}); send a Messages API request such as \
         {{\"model\": \"qwen3-coder-plus\", \"max_tokens\": 1024, \"messages\": \
         [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}"
    )]
    Json(String),
    #[error("the request body must be a JSON object with `model`, `max_tokens` and `messages`")]
    NotAnObject,
    #[error("model: field required; set it to one of the ids GET /v1/models lists")]
    MissingModel,
    #[error(
        "max_tokens: field required; the Messages API needs the most tokens to generate, \
         e.g. \"max_tokens\": 4096"
    )]
    MissingMaxTokens,
    #[error(
        "messages: field required; send at least one message, e.g. \
         [{{\"role\": \"user\", \"content\": \"Hello\"}}]"
    )]
    MissingMessages,
    #[error(
        "messages: at least one message is required, e.g. \
         [{{\"role\": \"user\", \"content\": \"Hello\"}}]"
    )]
    NoMessages,
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

impl RequestError {
    /// The OpenAI-style `code` kept alongside (the Anthropic body shows only type and message).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) | Self::NotAnObject => "invalid_json",
            Self::MissingModel => "missing_model",
            Self::MissingMaxTokens => "missing_max_tokens",
            Self::MissingMessages | Self::NoMessages => "missing_messages",
            Self::Invalid { .. } => "invalid_request",
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A Messages request whose required fields are present.
#[derive(Debug)]
pub struct MessagesRequest {
    model: String,
    max_tokens: Option<u64>,
    messages: Vec<Value>,
    /// The other top-level fields, as sent.
    fields: Map<String, Value>,
}

/// A chat-completions request made from a Messages request.
#[derive(Debug)]
pub struct ChatBody {
    /// The model, as the client asked for it.
    pub model: String,
    pub stream: bool,
    pub json: Value,
    /// `stop_sequences`, which cliproxy enforces on the answer ([`super::stops`]).
    pub stop_sequences: StopSequences,
    /// What `thinking` asks for; the fields that carry it depend on the upstream, so they are
    /// not in `json` ([`crate::reasoning`]).
    pub reasoning: Option<Reasoning>,
}

impl MessagesRequest {
    /// Checks `model`, `messages` (a non-empty array) and, for [`Endpoint::Create`],
    /// `max_tokens` (a positive integer).
    ///
    /// # Errors
    ///
    /// [`RequestError`] naming the field to fix.
    pub fn parse(body: &[u8], endpoint: Endpoint) -> Result<Self, RequestError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|error| RequestError::Json(error.to_string()))?;
        let Value::Object(mut fields) = value else {
            return Err(RequestError::NotAnObject);
        };
        let model = match fields.remove("model") {
            Some(Value::String(model)) if !model.is_empty() => model,
            None | Some(Value::Null | Value::String(_)) => return Err(RequestError::MissingModel),
            Some(_) => return Err(invalid("model", "must be a string")),
        };
        let messages = match fields.remove("messages") {
            Some(Value::Array(messages)) if !messages.is_empty() => messages,
            Some(Value::Array(_)) => return Err(RequestError::NoMessages),
            None | Some(Value::Null) => return Err(RequestError::MissingMessages),
            Some(_) => return Err(invalid("messages", "must be an array of messages")),
        };
        let max_tokens = match fields.remove("max_tokens") {
            None | Some(Value::Null) if endpoint == Endpoint::Create => {
                return Err(RequestError::MissingMaxTokens);
            }
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|&max| max > 0)
                    .ok_or_else(|| invalid("max_tokens", "must be a positive integer"))?,
            ),
        };
        Ok(Self {
            model,
            max_tokens,
            messages,
            fields,
        })
    }

    /// The model the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The chat-completions request.
    ///
    /// # Errors
    ///
    /// [`RequestError::Invalid`] for a message, content block, tool or parameter of the wrong
    /// shape.
    pub fn into_chat(self) -> Result<ChatBody, RequestError> {
        let Self {
            model,
            max_tokens,
            messages: input,
            mut fields,
        } = self;
        let mut messages = Vec::with_capacity(input.len() + 1);
        if let Some(system) = fields
            .remove("system")
            .map(|system| system_text(system, "system"))
            .transpose()?
            .flatten()
        {
            messages.push(json!({ "role": "system", "content": system }));
        }
        let mut referenced = HashSet::new();
        for (index, message) in input.into_iter().enumerate() {
            push_message(&mut messages, index, message, &mut referenced)?;
        }

        let mut chat = Map::new();
        chat.insert("model".to_owned(), Value::String(model.clone()));
        chat.insert("messages".to_owned(), Value::Array(messages));
        if let Some(max_tokens) = max_tokens {
            chat.insert("max_tokens".to_owned(), max_tokens.into());
        }
        for name in ["temperature", "top_p"] {
            match fields.remove(name) {
                None | Some(Value::Null) => {}
                Some(number @ Value::Number(_)) => {
                    chat.insert(name.to_owned(), number);
                }
                Some(_) => return Err(invalid(name, "must be a number")),
            }
        }
        let stop_sequences = fields
            .remove("stop_sequences")
            .map(stop_sequences)
            .transpose()?
            .unwrap_or_default();
        let stream = match fields.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => {
                chat.insert("stream".to_owned(), Value::Bool(stream));
                if stream {
                    // The closing message_delta reports usage: ask every upstream for it.
                    chat.insert(
                        "stream_options".to_owned(),
                        serde_json::json!({ "include_usage": true }),
                    );
                }
                stream
            }
            Some(_) => return Err(invalid("stream", "must be true or false")),
        };
        if let Some(Value::String(user)) = fields
            .get_mut("metadata")
            .and_then(|metadata| metadata.get_mut("user_id"))
            .map(Value::take)
        {
            chat.insert("user".to_owned(), Value::String(user));
        }
        add_tools(&mut chat, &mut fields, &referenced)?;
        let reasoning = fields
            .get("thinking")
            .and_then(|thinking| Reasoning::from_anthropic(thinking, fields.get("output_config")));
        Ok(ChatBody {
            model,
            stream,
            json: Value::Object(chat),
            stop_sequences,
            reasoning,
        })
    }
}

/// A system prompt (`system` at `path`, or the content of a `system` message) as one text: a
/// string, or the texts of text blocks joined with a blank line; `None` when empty.
fn system_text(system: Value, path: &str) -> Result<Option<String>, RequestError> {
    let text = match system {
        Value::Null => return Ok(None),
        Value::String(text) => text,
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (index, block) in blocks.into_iter().enumerate() {
                let Value::Object(mut block) = block else {
                    return Err(invalid(
                        format!("{path}[{index}]"),
                        "must be a text block {\"type\": \"text\", \"text\": \"...\"}",
                    ));
                };
                if let Some(text) = take_string(&mut block, "text") {
                    texts.push(text);
                }
            }
            texts.join("\n\n")
        }
        _ => {
            return Err(invalid(path, "must be a string or an array of text blocks"));
        }
    };
    Ok(Some(text).filter(|text| !text.is_empty()))
}

/// The kinds of content block the mapping tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Image,
    ToolUse,
    ToolResult,
    /// A tool loaded by a tool search; only meaningful inside a `tool_result`.
    ToolReference,
    /// Thinking, redacted thinking, documents, server-tool blocks...: dropped.
    Other,
}

impl Kind {
    fn of(block: &Map<String, Value>) -> Self {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => Self::Text,
            Some("image") => Self::Image,
            Some("tool_use") => Self::ToolUse,
            Some("tool_result") => Self::ToolResult,
            Some("tool_reference") => Self::ToolReference,
            _ => Self::Other,
        }
    }
}

fn take_string(block: &mut Map<String, Value>, key: &str) -> Option<String> {
    match block.remove(key) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

fn required_string(
    block: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, RequestError> {
    take_string(block, key).ok_or_else(|| invalid(format!("{path}.{key}"), "must be a string"))
}

fn block_object(block: Value, path: &str) -> Result<Map<String, Value>, RequestError> {
    match block {
        Value::Object(block) => Ok(block),
        _ => Err(invalid(
            path,
            "must be a content block object with a `type`",
        )),
    }
}

/// Appends the chat messages for Anthropic message number `index`; the names of the tools
/// its tool results reference go to `referenced`.
fn push_message(
    out: &mut Vec<Value>,
    index: usize,
    message: Value,
    referenced: &mut HashSet<String>,
) -> Result<(), RequestError> {
    let path = format!("messages[{index}]");
    let Value::Object(mut message) = message else {
        return Err(invalid(path, "must be an object with `role` and `content`"));
    };
    let role = match message.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant" | "system")) => role.to_owned(),
        _ => {
            return Err(invalid(
                format!("{path}.role"),
                "must be \"user\", \"assistant\" or \"system\"",
            ));
        }
    };
    let content = message.remove("content");
    if role == "system" {
        // A mid-conversation system turn (Claude Code sends them): a system message in place.
        let text = system_text(content.unwrap_or(Value::Null), &format!("{path}.content"))?;
        if let Some(text) = text {
            out.push(json!({ "role": "system", "content": text }));
        }
        return Ok(());
    }
    match content {
        Some(Value::String(text)) => {
            out.push(json!({ "role": role, "content": text }));
            Ok(())
        }
        Some(Value::Array(blocks)) if role == "user" => push_user(out, &path, blocks, referenced),
        Some(Value::Array(blocks)) => push_assistant(out, &path, blocks),
        _ => Err(invalid(
            format!("{path}.content"),
            "must be a string or an array of content blocks",
        )),
    }
}

/// A user turn: one `tool` message per `tool_result` (in order), then one user message with
/// the images of the tool results and the turn's own text and images (in order).
fn push_user(
    out: &mut Vec<Value>,
    path: &str,
    blocks: Vec<Value>,
    referenced: &mut HashSet<String>,
) -> Result<(), RequestError> {
    let mut tool_messages = Vec::new();
    let mut parts = Vec::new();
    for (index, block) in blocks.into_iter().enumerate() {
        let path = format!("{path}.content[{index}]");
        let mut block = block_object(block, &path)?;
        match Kind::of(&block) {
            Kind::Text => parts.push(text_part(required_string(&mut block, "text", &path)?)),
            Kind::Image => parts.push(image_part(&mut block, &path)?),
            Kind::ToolResult => {
                tool_messages.push(tool_message(block, &path, &mut parts, referenced)?);
            }
            Kind::ToolUse | Kind::ToolReference | Kind::Other => {}
        }
    }
    out.extend(tool_messages);
    if !parts.is_empty() {
        let content = match <[Value; 1]>::try_from(parts) {
            Ok([part]) if part["type"] == "text" => part["text"].clone(),
            Ok([part]) => Value::Array(vec![part]),
            Err(parts) => Value::Array(parts),
        };
        out.push(json!({ "role": "user", "content": content }));
    }
    Ok(())
}

/// An assistant turn: its texts joined with a blank line, its `tool_use` blocks as
/// `tool_calls`; thinking is dropped, and a turn left empty is skipped.
fn push_assistant(
    out: &mut Vec<Value>,
    path: &str,
    blocks: Vec<Value>,
) -> Result<(), RequestError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (index, block) in blocks.into_iter().enumerate() {
        let path = format!("{path}.content[{index}]");
        let mut block = block_object(block, &path)?;
        match Kind::of(&block) {
            Kind::Text => texts.push(required_string(&mut block, "text", &path)?),
            Kind::ToolUse => calls.push(tool_call(block, &path)?),
            Kind::Image | Kind::ToolResult | Kind::ToolReference | Kind::Other => {}
        }
    }
    if texts.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut message = Map::new();
    message.insert("role".to_owned(), "assistant".into());
    message.insert("content".to_owned(), texts.join("\n\n").into());
    if !calls.is_empty() {
        message.insert("tool_calls".to_owned(), Value::Array(calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

fn text_part(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

/// An `image` block as an `image_url` part: base64 sources become data URLs.
fn image_part(block: &mut Map<String, Value>, path: &str) -> Result<Value, RequestError> {
    let path = format!("{path}.source");
    let Some(Value::Object(mut source)) = block.remove("source") else {
        return Err(invalid(path, "must be an image source object"));
    };
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media_type = required_string(&mut source, "media_type", &path)?;
            let data = required_string(&mut source, "data", &path)?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => required_string(&mut source, "url", &path)?,
        _ => {
            return Err(invalid(
                format!("{path}.type"),
                "must be \"base64\" or \"url\" (this proxy cannot fetch Files API images; send \
                 the image itself)",
            ));
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// A `tool_use` block as a chat tool call; `input` becomes the JSON text of `arguments`.
fn tool_call(mut block: Map<String, Value>, path: &str) -> Result<Value, RequestError> {
    let id = required_string(&mut block, "id", path)?;
    let name = required_string(&mut block, "name", path)?;
    let input = block
        .remove("input")
        .filter(|input| !input.is_null())
        .unwrap_or_else(|| json!({}));
    Ok(json!({
        "id": id,
        "type": "function",
        "function": { "name": name, "arguments": input.to_string() },
    }))
}

/// A `tool_result` block as a `tool` message: its text (blocks joined with a blank line),
/// prefixed with `Error: ` when `is_error`; its images go to `parts` (the user message that
/// follows the tool messages). A `tool_reference` block is the text `Loaded tool: <name>`,
/// and its name goes to `referenced`.
fn tool_message(
    mut block: Map<String, Value>,
    path: &str,
    parts: &mut Vec<Value>,
    referenced: &mut HashSet<String>,
) -> Result<Value, RequestError> {
    let id = required_string(&mut block, "tool_use_id", path)?;
    let is_error = block.get("is_error").and_then(Value::as_bool) == Some(true);
    let text = match block.remove("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text,
        Some(Value::Array(items)) => {
            let mut texts = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                let path = format!("{path}.content[{index}]");
                let mut item = block_object(item, &path)?;
                match Kind::of(&item) {
                    Kind::Text => texts.push(required_string(&mut item, "text", &path)?),
                    Kind::Image => parts.push(image_part(&mut item, &path)?),
                    Kind::ToolReference => {
                        let name = required_string(&mut item, "tool_name", &path)?;
                        texts.push(format!("Loaded tool: {name}"));
                        referenced.insert(name);
                    }
                    Kind::ToolUse | Kind::ToolResult | Kind::Other => {}
                }
            }
            texts.join("\n\n")
        }
        Some(_) => {
            return Err(invalid(
                format!("{path}.content"),
                "must be a string or an array of content blocks",
            ));
        }
    };
    let content = match (is_error, text.is_empty()) {
        (true, true) => "Error".to_owned(),
        (true, false) => format!("Error: {text}"),
        (false, _) => text,
    };
    Ok(json!({ "role": "tool", "tool_call_id": id, "content": content }))
}

fn stop_sequences(value: Value) -> Result<StopSequences, RequestError> {
    let problem = || invalid("stop_sequences", "must be an array of strings");
    let sequences = match value {
        Value::Null => Vec::new(),
        Value::Array(sequences) => sequences,
        _ => return Err(problem()),
    };
    sequences
        .into_iter()
        .map(|sequence| match sequence {
            Value::String(sequence) => Ok(sequence),
            _ => Err(problem()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(StopSequences::new)
}

/// `tools` with an `input_schema` as function tools (server tools such as `web_search` have
/// none and are dropped: the upstream cannot run them). A tool with `defer_loading: true` is
/// left out unless a `tool_reference` in the history (in `referenced`) loaded it, as the tool
/// search does for Anthropic's models. `tool_choice` and `disable_parallel_tool_use` only
/// when some tool is left.
fn add_tools(
    chat: &mut Map<String, Value>,
    fields: &mut Map<String, Value>,
    referenced: &HashSet<String>,
) -> Result<(), RequestError> {
    let tools = match fields.remove("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("tools", "must be an array of tools")),
    };
    let mut functions = Vec::with_capacity(tools.len());
    for (index, tool) in tools.into_iter().enumerate() {
        let path = format!("tools[{index}]");
        let Value::Object(mut tool) = tool else {
            return Err(invalid(path, "must be a tool object"));
        };
        let Some(schema) = tool.remove("input_schema") else {
            continue;
        };
        let name = match take_string(&mut tool, "name") {
            Some(name) if !name.is_empty() => name,
            _ => {
                return Err(invalid(
                    format!("{path}.name"),
                    "must be a non-empty string",
                ));
            }
        };
        let deferred = tool.get("defer_loading").and_then(Value::as_bool) == Some(true);
        if deferred && !referenced.contains(&name) {
            continue;
        }
        let mut function = Map::new();
        function.insert("name".to_owned(), name.into());
        if let Some(description) = take_string(&mut tool, "description") {
            function.insert("description".to_owned(), description.into());
        }
        function.insert("parameters".to_owned(), schema);
        functions.push(json!({ "type": "function", "function": function }));
    }
    let choice = match fields.remove("tool_choice") {
        None | Some(Value::Null) => None,
        Some(choice) => Some(choice),
    };
    if functions.is_empty() {
        return Ok(());
    }
    chat.insert("tools".to_owned(), Value::Array(functions));
    let Some(choice) = choice else {
        return Ok(());
    };
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let Some(name) = choice.get("name").and_then(Value::as_str) else {
                return Err(invalid("tool_choice.name", "must be the name of a tool"));
            };
            json!({ "type": "function", "function": { "name": name } })
        }
        _ => {
            return Err(invalid(
                "tool_choice.type",
                "must be \"auto\", \"any\", \"tool\" or \"none\"",
            ));
        }
    };
    chat.insert("tool_choice".to_owned(), mapped);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        chat.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(request: &Value) -> Result<Value, RequestError> {
        let body = request.to_string();
        let request = MessagesRequest::parse(body.as_bytes(), Endpoint::Create)?;
        request.into_chat().map(|chat| chat.json)
    }

    fn base() -> Value {
        json!({
            "model": "qwen3-coder-plus",
            "max_tokens": 100,
            "messages": [{ "role": "user", "content": "hi" }],
        })
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let parse = |body: &str| MessagesRequest::parse(body.as_bytes(), Endpoint::Create);
        assert!(matches!(parse("{"), Err(RequestError::Json(_))));
        assert_eq!(parse("[]").err(), Some(RequestError::NotAnObject));
        assert_eq!(
            parse(r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#).err(),
            Some(RequestError::MissingModel)
        );
        assert_eq!(
            parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).err(),
            Some(RequestError::MissingMaxTokens)
        );
        assert_eq!(
            parse(r#"{"model":"m","max_tokens":1}"#).err(),
            Some(RequestError::MissingMessages)
        );
        assert_eq!(
            parse(r#"{"model":"m","max_tokens":1,"messages":[]}"#).err(),
            Some(RequestError::NoMessages)
        );
        assert!(matches!(
            parse(r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#),
            Err(RequestError::Invalid { field, .. }) if field == "max_tokens"
        ));
        assert!(
            RequestError::MissingMaxTokens
                .to_string()
                .contains("max_tokens")
        );
        let counted = MessagesRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            Endpoint::CountTokens,
        );
        assert!(counted.is_ok(), "count_tokens takes no max_tokens");
    }

    #[test]
    fn malformed_parts_name_their_path() {
        let mut request = base();
        request["messages"] = json!([
            { "role": "user", "content": "a" },
            { "role": "assistant", "content": [{ "type": "tool_use", "name": "f", "input": {} }] },
        ]);
        assert_eq!(
            chat(&request).err(),
            Some(invalid("messages[1].content[0].id", "must be a string"))
        );
        request["messages"] = json!([{ "role": "tool", "content": "a" }]);
        assert!(matches!(
            chat(&request),
            Err(RequestError::Invalid { field, .. }) if field == "messages[0].role"
        ));
        request["messages"] = json!([{ "role": "system", "content": [1] }]);
        assert!(matches!(
            chat(&request),
            Err(RequestError::Invalid { field, .. }) if field == "messages[0].content[0]"
        ));
        request["messages"] = json!([{ "role": "user", "content": [{ "type": "image",
            "source": { "type": "file", "file_id": "f" } }] }]);
        assert!(matches!(
            chat(&request),
            Err(RequestError::Invalid { field, .. }) if field == "messages[0].content[0].source.type"
        ));
    }

    #[test]
    fn tool_choices_map_to_chat_tool_choices() {
        let cases = [
            (json!({ "type": "auto" }), json!("auto"), None),
            (
                json!({ "type": "any", "disable_parallel_tool_use": true }),
                json!("required"),
                Some(false),
            ),
            (
                json!({ "type": "tool", "name": "get_weather" }),
                json!({ "type": "function", "function": { "name": "get_weather" } }),
                None,
            ),
            (json!({ "type": "none" }), json!("none"), None),
        ];
        for (choice, expected, parallel) in cases {
            let mut request = base();
            request["tools"] =
                json!([{ "name": "get_weather", "input_schema": { "type": "object" } }]);
            request["tool_choice"] = choice;
            let chat = chat(&request).expect("a valid request");
            assert_eq!(chat["tool_choice"], expected);
            assert_eq!(
                chat.get("parallel_tool_calls").and_then(Value::as_bool),
                parallel
            );
        }
    }

    #[test]
    fn without_client_tools_there_is_no_tool_choice() {
        let mut request = base();
        request["tools"] = json!([{ "type": "web_search_20250305", "name": "web_search" }]);
        request["tool_choice"] = json!({ "type": "any" });
        let chat = chat(&request).expect("a valid request");
        assert!(chat.get("tools").is_none(), "{chat}");
        assert!(chat.get("tool_choice").is_none(), "{chat}");
    }

    #[test]
    fn thinking_becomes_a_reasoning_request_and_no_field_of_the_body() {
        let mut request = base();
        request["thinking"] = json!({ "type": "enabled", "budget_tokens": 2048 });
        request["output_config"] = json!({ "effort": "high" });
        let body = request.to_string();
        let parsed = MessagesRequest::parse(body.as_bytes(), Endpoint::Create).expect("valid");
        let chat = parsed.into_chat().expect("valid");
        assert_eq!(
            chat.reasoning,
            Some(Reasoning {
                enabled: true,
                effort: Some("low".to_owned()),
                budget_tokens: Some(2048),
            })
        );
        for field in [
            "thinking",
            "output_config",
            "enable_thinking",
            "reasoning_effort",
        ] {
            assert!(chat.json.get(field).is_none(), "{field}: {}", chat.json);
        }
        assert_eq!(
            MessagesRequest::parse(base().to_string().as_bytes(), Endpoint::Create)
                .and_then(MessagesRequest::into_chat)
                .expect("valid")
                .reasoning,
            None
        );
    }

    #[test]
    fn an_assistant_turn_of_only_thinking_is_skipped() {
        let mut request = base();
        request["messages"] = json!([
            { "role": "user", "content": "a" },
            { "role": "assistant", "content": [{ "type": "thinking", "thinking": "hm", "signature": "" }] },
            { "role": "user", "content": [{ "type": "text", "text": "b" }] },
        ]);
        assert_eq!(
            chat(&request).expect("valid")["messages"],
            json!([{ "role": "user", "content": "a" }, { "role": "user", "content": "b" }])
        );
    }

    #[test]
    fn system_turns_in_the_conversation_stay_system_messages_in_place() {
        let mut request = base();
        request["system"] = json!("You are terse.");
        request["messages"] = json!([
            { "role": "user", "content": "a" },
            { "role": "system", "content": "# Environment" },
            { "role": "assistant", "content": "b" },
            { "role": "system", "content": [
                { "type": "text", "text": "reminder 1" },
                { "type": "text", "text": "reminder 2", "cache_control": { "type": "ephemeral" } },
            ] },
            { "role": "system", "content": [] },
            { "role": "user", "content": "c" },
        ]);
        assert_eq!(
            chat(&request).expect("valid")["messages"],
            json!([
                { "role": "system", "content": "You are terse." },
                { "role": "user", "content": "a" },
                { "role": "system", "content": "# Environment" },
                { "role": "assistant", "content": "b" },
                { "role": "system", "content": "reminder 1\n\nreminder 2" },
                { "role": "user", "content": "c" },
            ])
        );
    }

    #[test]
    fn deferred_tools_are_offered_once_a_tool_reference_loads_them() {
        let schema = json!({ "type": "object", "properties": {} });
        let mut request = base();
        request["tools"] = json!([
            { "name": "ToolSearch", "input_schema": schema },
            { "name": "Placeholder", "input_schema": schema, "defer_loading": true },
            { "name": "WebFetch", "input_schema": schema, "defer_loading": true },
            { "name": "CronList", "input_schema": schema, "defer_loading": true },
        ]);
        let offered = |request: &Value| -> Vec<String> {
            chat(request).expect("valid")["tools"]
                .as_array()
                .map(|tools| {
                    tools
                        .iter()
                        .filter_map(|tool| tool["function"]["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(offered(&request), ["ToolSearch"]);

        request["messages"] = json!([
            { "role": "user", "content": "fetch it" },
            { "role": "assistant", "content": [
                { "type": "tool_use", "id": "t1", "name": "ToolSearch", "input": { "query": "select:WebFetch" } },
            ] },
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "t1", "content": [
                    { "type": "tool_reference", "tool_name": "WebFetch" },
                ] },
            ] },
        ]);
        assert_eq!(offered(&request), ["ToolSearch", "WebFetch"]);
        assert_eq!(
            chat(&request).expect("valid")["messages"][2],
            json!({ "role": "tool", "tool_call_id": "t1", "content": "Loaded tool: WebFetch" })
        );

        request["messages"][2]["content"][0]["content"] = json!([{ "type": "tool_reference" }]);
        assert_eq!(
            chat(&request).err(),
            Some(invalid(
                "messages[2].content[0].content[0].tool_name",
                "must be a string"
            ))
        );
    }

    #[test]
    fn stop_sequences_stay_with_cliproxy_and_are_not_sent_upstream() {
        let mut request = base();
        request["stop_sequences"] = json!(["a", "b", "c", "d", "e", ""]);
        let body = request.to_string();
        let parsed = MessagesRequest::parse(body.as_bytes(), Endpoint::Create).expect("valid");
        let translated = parsed.into_chat().expect("valid");
        assert!(translated.json.get("stop").is_none(), "{}", translated.json);
        let expected = ["a", "b", "c", "d", "e"].map(str::to_owned).to_vec();
        assert_eq!(translated.stop_sequences, StopSequences::new(expected));
        request["stop_sequences"] = json!(["a", 1]);
        assert_eq!(
            chat(&request).err(),
            Some(invalid("stop_sequences", "must be an array of strings"))
        );
    }

    #[test]
    fn error_results_are_marked_and_empty_results_stay_empty() {
        let mut request = base();
        request["messages"] = json!([{ "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": "a", "is_error": true },
            { "type": "tool_result", "tool_use_id": "b" },
        ] }]);
        assert_eq!(
            chat(&request).expect("valid")["messages"],
            json!([
                { "role": "tool", "tool_call_id": "a", "content": "Error" },
                { "role": "tool", "tool_call_id": "b", "content": "" },
            ])
        );
    }
}
