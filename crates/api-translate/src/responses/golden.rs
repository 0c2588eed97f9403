//! Golden tests of the Responses translation, data-driven from the JSON fixtures in
//! `tests/golden/responses/` (their README describes the format). The expected sides were
//! written from the OpenAI Responses API reference and the openai SDK's types, not from this
//! code's output. Responses are built with the id base `golden` and `created_at` 1750000000.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde_json::Value;

use super::Refusal;
use super::object::Shell;
use super::{ResponsesStream, from_chat, to_chat};
use crate::sse::SseParser;
use crate::stream::StreamTranslator as _;

const CREATED_AT: u64 = 1_750_000_000;

/// The fixtures of one kind, as (file name, JSON); at least one.
fn fixtures(kind: &str) -> Vec<(String, Value)> {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "golden",
        "responses",
        kind,
    ]
    .iter()
    .collect();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths.iter().map(|path| (name(path), read(path))).collect()
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("a readable fixture");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The shell for a fixture's Responses request.
fn shell(fixture: &Value) -> Shell {
    let translated = to_chat(&fixture["request"]).expect("a translatable request");
    Shell::new(translated.echo, "golden", CREATED_AT).with_namespaces(translated.namespaces)
}

#[test]
fn requests_translate_to_chat_completions() {
    for (name, fixture) in fixtures("request") {
        let result = to_chat(&fixture["request"]);
        match (fixture.get("chat"), fixture.get("error")) {
            (Some(chat), None) => {
                let translated = result.unwrap_or_else(|error| panic!("{name}: {error:?}"));
                assert_eq!(&translated.chat, chat, "{name}");
                assert_eq!(translated.model, chat["model"], "{name}");
                assert_eq!(translated.stream, chat["stream"] == true, "{name}");
            }
            (None, Some(expected)) => {
                let refusal = result.expect_err(&name);
                assert_eq!(Refusal::STATUS.as_u16(), expected["status"], "{name}");
                assert_eq!(Refusal::ERROR_TYPE, expected["type"], "{name}");
                assert_eq!(refusal.code, expected["code"], "{name}");
                if let Some(message) = expected.get("message") {
                    assert_eq!(refusal.message, *message, "{name}");
                }
                if let Some(part) = expected.get("message_contains").and_then(Value::as_str) {
                    assert!(
                        refusal.message.contains(part),
                        "{name}: {}",
                        refusal.message
                    );
                }
            }
            _ => panic!("{name}: a request fixture has either `chat` or `error`"),
        }
    }
}

#[test]
fn completions_translate_to_response_objects() {
    for (name, fixture) in fixtures("response") {
        let response = from_chat(&fixture["completion"], &shell(&fixture))
            .unwrap_or_else(|| panic!("{name}: not a completion"));
        assert_eq!(response, fixture["response"], "{name}");
    }
}

#[test]
fn streams_translate_to_event_sequences() {
    for (name, fixture) in fixtures("stream") {
        let (mut translator, opening) = ResponsesStream::start(shell(&fixture));
        let mut out = BytesMut::from(&opening[..]);
        for chunk in fixture["chunks"].as_array().expect("chunks") {
            let data = match chunk {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            translator.on_event(data.as_bytes(), &mut out);
        }
        match fixture["end"].as_str() {
            Some("finish") => translator.finish(&mut out),
            Some("idle_timeout_30s") => {
                // What the proxy's idle-timeout break says (`StreamError::Idle`).
                let reason = "the upstream sent nothing for 30 s, so the stream was aborted";
                translator.fail(&reason, &mut out);
            }
            other => panic!("{name}: unknown end {other:?}"),
        }
        let events = parse_events(&out);
        for (index, (event, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], *event, "{name}: event {index}");
            assert_eq!(data["sequence_number"], index, "{name}: event {index}");
        }
        let expected = fixture["events"].as_array().expect("events");
        for (index, (got, want)) in events.iter().zip(expected).enumerate() {
            assert_eq!(got.0, want["event"], "{name}: event {index}");
            assert_eq!(got.1, want["data"], "{name}: event {index} ({})", got.0);
        }
        assert_eq!(events.len(), expected.len(), "{name}: number of events");
    }
}

/// The (event name, data) of every SSE event in `bytes`.
fn parse_events(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    SseParser::new(usize::MAX)
        .feed(bytes, |event| {
            let data = serde_json::from_slice(event.data).expect("JSON event data");
            events.push((String::from_utf8_lossy(event.event).into_owned(), data));
        })
        .expect("within the limit");
    events
}
