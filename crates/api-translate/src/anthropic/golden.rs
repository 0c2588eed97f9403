//! Golden tests: the fixtures under `tests/golden/anthropic/` pair inputs with the expected
//! outputs, written from Anthropic's public API reference (Messages, streaming, tool use,
//! extended thinking, vision) and OpenAI's chat-completions reference, not from this code's
//! output. Outputs are compared as JSON values.
//!
//! - `request/*.json`: `{"anthropic": <Messages request>, "chat": <chat request>}`, and
//!   `stop_sequences` when the request has any (the ones cliproxy enforces).
//! - `response/*.json`: `{"model", "chat": <chat completion>, "anthropic": <message>}`, and
//!   the request's `stop_sequences` when it has any.
//! - `stream/NAME.upstream.sse` (chat chunks as an upstream sends them) and
//!   `stream/NAME.expected.sse` (the Anthropic events); the client's model is the one in the
//!   expected `message_start`. An optional `stream/NAME.options.json` gives the request's
//!   `stop_sequences` and `estimated_input_tokens` (else none and 0). Each stream is also fed
//!   split at every byte, to show that chunk boundaries do not matter.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde_json::Value;

use super::request::{Endpoint, MessagesRequest};
use super::response::message;
use super::stops::StopSequences;
use super::stream::MessageStream;
use crate::sse::SseParser;
use crate::stream::StreamTranslator as _;

fn fixtures(kind: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/anthropic")
        .join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
}

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The `stop_sequences` of a fixture (none when absent).
fn stop_sequences(fixture: &Value) -> StopSequences {
    let sequences = fixture
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|sequences| {
            sequences
                .iter()
                .map(|sequence| sequence.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default();
    StopSequences::new(sequences)
}

#[test]
fn requests_map_to_chat_requests() {
    for path in fixtures("request", ".json") {
        let fixture = read_json(&path);
        let body = fixture["anthropic"].to_string();
        let chat = MessagesRequest::parse(body.as_bytes(), Endpoint::Create)
            .and_then(MessagesRequest::into_chat)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(
            chat.json,
            fixture["chat"],
            "{}:\n got: {}",
            path.display(),
            serde_json::to_string_pretty(&chat.json).unwrap_or_default()
        );
        assert_eq!(chat.stream, fixture["chat"]["stream"] == true);
        assert_eq!(chat.model, fixture["anthropic"]["model"]);
        assert_eq!(
            chat.stop_sequences,
            stop_sequences(&fixture),
            "{}",
            path.display()
        );
    }
}

#[test]
fn completions_map_to_messages() {
    for path in fixtures("response", ".json") {
        let fixture = read_json(&path);
        let model = fixture["model"].as_str().expect("a model");
        let body = fixture["chat"].to_string();
        let got = message(body.as_bytes(), model, &stop_sequences(&fixture))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(
            got,
            fixture["anthropic"],
            "{}:\n got: {}",
            path.display(),
            serde_json::to_string_pretty(&got).unwrap_or_default()
        );
    }
}

/// The events of an SSE text, as (event name, JSON data) pairs.
fn events(sse: &[u8]) -> Vec<(String, Value)> {
    let mut parser = SseParser::new(1 << 20);
    let mut events = Vec::new();
    parser
        .feed(sse, |event| {
            let data = serde_json::from_slice(event.data)
                .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(event.data)));
            events.push((String::from_utf8_lossy(event.event).into_owned(), data));
        })
        .expect("short events");
    events
}

/// Runs the translator over `pieces` of an upstream body, as the proxy's `TranslatedBody` does (which
/// stops reading once the translator is done).
fn translate(model: &str, options: &Value, pieces: &[&[u8]]) -> Vec<u8> {
    let estimate = options["estimated_input_tokens"].as_u64().unwrap_or(0);
    let mut translator = MessageStream::new(model.to_owned(), stop_sequences(options), estimate);
    let mut parser = SseParser::new(1 << 20);
    let mut out = BytesMut::new();
    for piece in pieces {
        parser
            .feed(piece, |event| translator.on_event(event.data, &mut out))
            .expect("short events");
        if translator.done() {
            return out.to_vec();
        }
    }
    translator.finish(&mut out);
    out.to_vec()
}

#[test]
fn streams_map_to_event_streams() {
    for path in fixtures("stream", ".upstream.sse") {
        let upstream = fs::read(&path).expect("the upstream fixture");
        let expected_path = PathBuf::from(
            path.to_string_lossy()
                .replace(".upstream.sse", ".expected.sse"),
        );
        let expected = events(&fs::read(&expected_path).expect("the expected fixture"));
        let model = expected[0].1["message"]["model"]
            .as_str()
            .expect("message_start names the model")
            .to_owned();
        let options_path = PathBuf::from(
            path.to_string_lossy()
                .replace(".upstream.sse", ".options.json"),
        );
        let options = if options_path.exists() {
            read_json(&options_path)
        } else {
            Value::Null
        };

        let whole = translate(&model, &options, &[&upstream]);
        let got = events(&whole);
        assert_eq!(
            got,
            expected,
            "{}:\n got:\n{}",
            path.display(),
            String::from_utf8_lossy(&whole)
        );
        for split in 1..upstream.len() {
            let (head, tail) = upstream.split_at(split);
            assert_eq!(
                translate(&model, &options, &[head, tail]),
                whole,
                "{} split at {split}",
                path.display()
            );
        }
    }
}
