//! A Responses request as a chat-completions request, and the fields its answer repeats.
//!
//! | Responses | chat completions |
//! |---|---|
//! | `model`, `temperature`, `top_p`, `user`, `parallel_tool_calls` | the same |
//! | `instructions` | the first message, `system` |
//! | `input` (a string, or items: see [`super::input`]) | `messages` |
//! | `max_output_tokens` | `max_tokens` |
//! | `stream` | `stream`, with `stream_options.include_usage` so the end carries usage |
//! | function `tools` (`name`, `description`, `parameters`, `strict` at the top) | `tools` (those under `function`) |
//! | `namespace` tools: their function `tools` | function tools named `<namespace>__<name>`, the namespace's `description` before the tool's ([`super::namespaces`]); a flat name that another tool has too is refused (`invalid_tools`) |
//! | other tools (`web_search`, `file_search`, `local_shell`, `custom`, `mcp`, ...; `custom` tools inside a namespace) | dropped: a chat upstream cannot run them |
//! | `tool_choice` `auto`/`none`/`required`, `{"type":"function","name"}` | the same, `{"type":"function","function":{"name"}}` |
//! | `tool_choice` naming a dropped tool kind | dropped (the upstream's default, `auto`) |
//! | `text.format` `json_schema` / `json_object` | `response_format` `json_schema` (`name`, `schema`, `strict`, `description` under `json_schema`) / `json_object` |
//! | `reasoning` | no field: a [`Reasoning`] beside the body, which the server writes per credential (`reasoning_effort`, or Qwen's `enable_thinking`; [`crate::reasoning`]) |
//! | `previous_response_id`, `conversation` | refused: cliproxy stores no responses |
//! | `store`, `include`, `metadata`, `truncation`, `service_tier`, `prompt_cache_key`, `background`, ... | ignored |
//!
//! Without any forwarded tool, `tools`, `tool_choice` and `parallel_tool_calls` are left out.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::input;
use super::namespaces::Namespaces;
use super::refusal::Refusal;
use crate::quote::client_text;
use crate::reasoning::Reasoning;

/// A translated request.
#[derive(Debug)]
pub struct Translated {
    pub model: String,
    pub stream: bool,
    /// The chat-completions body.
    pub chat: Value,
    /// The request fields the response object repeats.
    pub echo: Map<String, Value>,
    /// The namespaced tools, to name the model's calls of them.
    pub namespaces: Namespaces,
    /// What `reasoning` asks for; the fields that carry it depend on the upstream.
    pub reasoning: Option<Reasoning>,
}

/// Translates a Responses request body.
///
/// # Errors
///
/// A [`Refusal`] naming what cliproxy cannot translate.
pub fn to_chat(body: &Value) -> Result<Translated, Refusal> {
    let Some(fields) = body.as_object() else {
        return Err(Refusal::new(
            "invalid_json",
            "the request body must be a JSON object with `model` and `input`",
        ));
    };
    let Some(model) = fields.get("model").and_then(Value::as_str) else {
        return Err(Refusal::new(
            "missing_model",
            "the request has no `model`; set it to one of the ids GET /v1/models lists",
        ));
    };
    refuse_stored_state(fields)?;
    let stream = fields.get("stream").and_then(Value::as_bool) == Some(true);
    let (chat_tools, echo_tools, namespaces) = tools(present(fields, "tools"))?;

    let mut messages = Vec::new();
    let instructions = present(fields, "instructions");
    match instructions {
        None => {}
        Some(Value::String(text)) => messages.push(json!({ "role": "system", "content": text })),
        Some(_) => {
            return Err(Refusal::new(
                "invalid_instructions",
                "`instructions` must be a string",
            ));
        }
    }
    match present(fields, "input") {
        Some(Value::String(text)) => messages.push(json!({ "role": "user", "content": text })),
        Some(Value::Array(items)) => input::append(items, &mut messages)?,
        _ => {
            return Err(Refusal::new(
                "missing_input",
                "the request has no `input`; send a string or a list of input items",
            ));
        }
    }

    let mut chat = Map::new();
    chat.insert("model".into(), model.into());
    chat.insert("messages".into(), Value::Array(messages));
    if stream {
        chat.insert("stream".into(), true.into());
        chat.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    for name in ["temperature", "top_p", "user"] {
        if let Some(value) = present(fields, name) {
            chat.insert(name.into(), value.clone());
        }
    }
    if let Some(max) = present(fields, "max_output_tokens") {
        chat.insert("max_tokens".into(), max.clone());
    }
    if !chat_tools.is_empty() {
        chat.insert("tools".into(), Value::Array(chat_tools));
        if let Some(choice) = tool_choice(present(fields, "tool_choice"))? {
            chat.insert("tool_choice".into(), choice);
        }
        if let Some(parallel) = present(fields, "parallel_tool_calls") {
            chat.insert("parallel_tool_calls".into(), parallel.clone());
        }
    }
    if let Some(format) = response_format(present(fields, "text"))? {
        chat.insert("response_format".into(), format);
    }

    Ok(Translated {
        model: model.to_owned(),
        stream,
        chat: Value::Object(chat),
        echo: echo(fields, model, echo_tools),
        namespaces,
        reasoning: present(fields, "reasoning").and_then(Reasoning::from_responses),
    })
}

/// A field that is there and not `null`.
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|value| !value.is_null())
}

/// Refuses requests that continue a stored response or conversation.
fn refuse_stored_state(fields: &Map<String, Value>) -> Result<(), Refusal> {
    if present(fields, "previous_response_id").is_some() {
        return Err(Refusal::new(
            "previous_response_id_unsupported",
            "cliproxy does not store responses; send the whole conversation in `input` (Codex \
             CLI does this by default)",
        ));
    }
    if present(fields, "conversation").is_some() {
        return Err(Refusal::new(
            "conversation_unsupported",
            "cliproxy does not store conversations; send the whole conversation in `input`",
        ));
    }
    Ok(())
}

/// The chat tools, the tools the response repeats, and the namespaced tools.
fn tools(tools: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>, Namespaces), Refusal> {
    let mut namespaces = Namespaces::default();
    let items = match tools {
        None => return Ok((Vec::new(), Vec::new(), namespaces)),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Refusal::new("invalid_tools", "`tools` must be an array"));
        }
    };
    let mut chat = Vec::new();
    let mut echo = Vec::new();
    for (index, tool) in items.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = function_name(tool, &format!("tools[{index}]"))?;
                chat.push(function_tool(tool, name.to_owned(), None));
            }
            Some("namespace") => {
                let Some(namespace) = tool.get("name").and_then(Value::as_str) else {
                    return Err(Refusal::new(
                        "invalid_tools",
                        format!("tools[{index}] is a namespace tool without a string `name`"),
                    ));
                };
                let description = tool.get("description").and_then(Value::as_str);
                let inner = tool.get("tools").and_then(Value::as_array);
                for (at, function) in inner.into_iter().flatten().enumerate() {
                    if function.get("type").and_then(Value::as_str) != Some("function") {
                        continue;
                    }
                    let name = function_name(function, &format!("tools[{index}].tools[{at}]"))?;
                    let flat = namespaces.add(namespace, name);
                    chat.push(function_tool(function, flat, description));
                }
            }
            _ => continue,
        }
        echo.push(tool.clone());
    }
    let mut names = HashSet::new();
    for tool in &chat {
        let name = tool["function"]["name"].as_str().unwrap_or_default();
        if !names.insert(name) {
            return Err(Refusal::new(
                "invalid_tools",
                format!(
                    "more than one tool is sent upstream as `{}` (a namespace tool is sent as \
                     `<namespace>__<name>`); rename one of them",
                    client_text(name)
                ),
            ));
        }
    }
    Ok((chat, echo, namespaces))
}

/// The `name` of function tool `tool` at `path`.
fn function_name<'a>(tool: &'a Value, path: &str) -> Result<&'a str, Refusal> {
    tool.get("name").and_then(Value::as_str).ok_or_else(|| {
        Refusal::new(
            "invalid_tools",
            format!("{path} is a function tool without a string `name`"),
        )
    })
}

/// The chat tool for function tool `tool`, sent as `name`; a namespace's `description` goes
/// before the tool's own.
fn function_tool(tool: &Value, name: String, namespace_description: Option<&str>) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), name.into());
    let own = tool.get("description").and_then(Value::as_str);
    let description = match (namespace_description, own) {
        (Some(outer), Some(own)) => Some(Value::String(format!("{outer}\n\n{own}"))),
        (Some(outer), None) => Some(Value::String(outer.to_owned())),
        (None, _) => tool
            .get("description")
            .filter(|value| !value.is_null())
            .cloned(),
    };
    if let Some(description) = description {
        function.insert("description".into(), description);
    }
    for field in ["parameters", "strict"] {
        if let Some(value) = tool.get(field).filter(|value| !value.is_null()) {
            function.insert(field.into(), value.clone());
        }
    }
    json!({ "type": "function", "function": function })
}

/// The chat `tool_choice`; `None` leaves the upstream's default.
fn tool_choice(choice: Option<&Value>) -> Result<Option<Value>, Refusal> {
    match choice {
        None => Ok(None),
        Some(Value::String(mode)) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(Some(Value::String(mode.clone())))
        }
        Some(Value::Object(fields)) => match fields.get("type").and_then(Value::as_str) {
            Some("function") => {
                let Some(name) = fields.get("name").and_then(Value::as_str) else {
                    return Err(Refusal::new(
                        "invalid_tool_choice",
                        "`tool_choice` of type `function` needs a string `name`",
                    ));
                };
                Ok(Some(
                    json!({ "type": "function", "function": { "name": name } }),
                ))
            }
            _ => Ok(None),
        },
        Some(_) => Err(Refusal::new(
            "invalid_tool_choice",
            "`tool_choice` must be `auto`, `none`, `required` or {\"type\": \"function\", \"name\": ...}",
        )),
    }
}

/// The chat `response_format` for `text.format`.
fn response_format(text: Option<&Value>) -> Result<Option<Value>, Refusal> {
    let Some(format) = text.and_then(|text| text.get("format")) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(field).filter(|value| !value.is_null()) {
                    schema.insert(field.into(), value.clone());
                }
            }
            Ok(Some(
                json!({ "type": "json_schema", "json_schema": schema }),
            ))
        }
        Some(other) => Err(Refusal::new(
            "unsupported_text_format",
            format!(
                "`text.format` of type `{}` is not supported; use `text`, `json_object` or `json_schema`",
                client_text(other)
            ),
        )),
    }
}

/// The request fields the response object repeats, with the API's defaults.
fn echo(fields: &Map<String, Value>, model: &str, tools: Vec<Value>) -> Map<String, Value> {
    let or = |name: &str, default: Value| present(fields, name).cloned().unwrap_or(default);
    let mut echo = Map::new();
    echo.insert("instructions".into(), or("instructions", Value::Null));
    echo.insert(
        "max_output_tokens".into(),
        or("max_output_tokens", Value::Null),
    );
    echo.insert("model".into(), model.into());
    echo.insert(
        "parallel_tool_calls".into(),
        or("parallel_tool_calls", true.into()),
    );
    echo.insert("reasoning".into(), or("reasoning", Value::Null));
    echo.insert("temperature".into(), or("temperature", Value::Null));
    echo.insert(
        "text".into(),
        or("text", json!({ "format": { "type": "text" } })),
    );
    echo.insert("tool_choice".into(), or("tool_choice", "auto".into()));
    echo.insert("tools".into(), Value::Array(tools));
    echo.insert("top_p".into(), or("top_p", Value::Null));
    echo.insert("user".into(), or("user", Value::Null));
    echo.insert("metadata".into(), or("metadata", json!({})));
    echo
}
