//! Golden tests of what each kind of upstream is asked for a client's reasoning request, one
//! fixture per row of the table in docs/clients.md, from `tests/golden/reasoning/` (its README
//! describes the format). Each request goes through its API's real translation; the chat body
//! must carry no reasoning field, and each style's fields must be the fixture's.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{Reasoning, Style};
use crate::anthropic::{Endpoint, MessagesRequest};
use crate::responses;

/// The columns of the table: Qwen OAuth accounts are asked Qwen's way; `[[openai-compat]]`
/// upstreams the way their `reasoning` setting says.
const COLUMNS: [(&str, Style); 4] = [
    ("qwen-oauth", Style::Qwen),
    ("effort", Style::Effort),
    ("qwen", Style::Qwen),
    ("off", Style::Off),
];

/// Fields no translated chat body carries: they are written per credential.
const REASONING_FIELDS: [&str; 3] = ["reasoning_effort", "enable_thinking", "thinking_budget"];

fn fixtures() -> Vec<(String, Value)> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", "reasoning"]
        .iter()
        .collect();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
            let text = std::fs::read_to_string(path).expect("a readable fixture");
            let fixture = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (name, fixture)
        })
        .collect()
}

/// The chat body and reasoning request the fixture's request translates to.
fn translate(name: &str, fixture: &Value) -> (Value, Option<Reasoning>) {
    let request = &fixture["request"];
    match fixture["api"].as_str() {
        Some("anthropic") => {
            let body = request.to_string();
            let chat = MessagesRequest::parse(body.as_bytes(), Endpoint::Create)
                .and_then(MessagesRequest::into_chat)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            (chat.json, chat.reasoning)
        }
        Some("responses") => {
            let translated =
                responses::to_chat(request).unwrap_or_else(|error| panic!("{name}: {error:?}"));
            (translated.chat, translated.reasoning)
        }
        other => panic!("{name}: unknown api {other:?}"),
    }
}

#[test]
fn each_upstream_style_gets_its_reasoning_fields() {
    for (name, fixture) in fixtures() {
        let (chat, reasoning) = translate(&name, &fixture);
        for field in REASONING_FIELDS {
            assert!(chat.get(field).is_none(), "{name}: the body has {field}");
        }
        let model = fixture
            .get("upstream_model")
            .or_else(|| fixture["request"].get("model"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        for (column, style) in COLUMNS {
            let fields: Map<String, Value> = reasoning
                .as_ref()
                .map(|reasoning| reasoning.fields(style, model))
                .unwrap_or_default()
                .into_iter()
                .map(|(field, value)| (field.to_owned(), value))
                .collect();
            assert_eq!(
                Value::Object(fields),
                fixture["upstream"][column],
                "{name}: {column}"
            );
        }
    }
}
