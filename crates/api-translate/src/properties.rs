//! Property tests: the invariants the fuzz targets in `fuzz/` check for minutes, here for a
//! few hundred generated cases each in `cargo test`. The generators build inputs from the
//! pieces the code looks for (SSE framing, chunk and request fields, stop sequences), so the
//! cases reach deep paths quickly.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::anthropic::{Endpoint, MessageStream, MessagesRequest, StopSequences};
use crate::invariants::{Api, End, check_reasoning, check_stream, drive};
use crate::reasoning::Reasoning;
use crate::responses::{ResponsesStream, Shell, to_chat};
use crate::sse::SseParser;

/// [`check_reasoning`] of a translated request's reasoning, if it has one.
fn reasoning_fields_are_known(reasoning: Option<&Reasoning>) -> Result<(), TestCaseError> {
    match reasoning {
        Some(reasoning) => check_reasoning(reasoning)
            .map_err(|violation| TestCaseError::fail(violation.to_string())),
        None => Ok(()),
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// `bytes` cut at `cuts` (positions taken modulo its length).
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.windows(2).map(|pair| &bytes[pair[0]..pair[1]]).collect()
}

/// An event's name and data.
type ParsedEvent = (Vec<u8>, Vec<u8>);

/// Events (or the bound exceeded) of `chunks`, and where the input stopped inside a line.
fn parse(limit: usize, chunks: &[&[u8]]) -> (Vec<ParsedEvent>, Option<Option<Vec<u8>>>) {
    let mut parser = SseParser::new(limit);
    let mut events = Vec::new();
    for chunk in chunks {
        let fed = parser.feed(chunk, |event| {
            events.push((event.event.to_vec(), event.data.to_vec()));
        });
        if fed.is_err() {
            return (events, None);
        }
    }
    let partial = parser.partial_line().map(<[u8]>::to_vec);
    (events, Some(partial))
}

/// SSE text from the pieces that matter to a parser.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b"data: "[..]),
        Just(&b"data:"[..]),
        Just(&b"event: e"[..]),
        Just(&b": c"[..]),
        Just(&b"id: 1"[..]),
        Just(&b"\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\n\n"[..]),
        Just(&b"{\"a\":1}"[..]),
        Just(&b"[DONE]"[..]),
        Just(&b" x"[..]),
        Just("é".as_bytes()),
    ];
    vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Short texts with what stop sequences and JSON care about.
fn text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just("a"),
            Just(" "),
            Just("E"),
            Just("N"),
            Just("D"),
            Just("END"),
            Just("\n"),
            Just("é"),
            Just("\""),
            Just("{"),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn maybe<T: std::fmt::Debug + Clone>(
    strategy: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.6, strategy)
}

/// One `tool_calls` fragment: any mix of index, id, name and arguments.
fn tool_call() -> impl Strategy<Value = Value> {
    (
        maybe(0u64..3),
        maybe(prop_oneof![Just("call_a"), Just("call_b"), Just("")]),
        maybe(prop_oneof![Just("f"), Just("tools__run"), Just("")]),
        maybe(text()),
    )
        .prop_map(|(index, id, name, arguments)| {
            let mut call = Map::new();
            if let Some(index) = index {
                call.insert("index".into(), index.into());
            }
            if let Some(id) = id {
                call.insert("id".into(), id.into());
            }
            let mut function = Map::new();
            if let Some(name) = name {
                function.insert("name".into(), name.into());
            }
            if let Some(arguments) = arguments {
                function.insert("arguments".into(), arguments.into());
            }
            call.insert("function".into(), Value::Object(function));
            Value::Object(call)
        })
}

/// One choice of a chunk.
fn choice() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => Just(Some(0u64)), 1 => Just(Some(1)), 1 => Just(None)],
        maybe(text()),
        maybe(text()),
        maybe(vec(tool_call(), 0..3)),
        maybe(prop_oneof![
            Just("stop"),
            Just("length"),
            Just("tool_calls"),
            Just("content_filter")
        ]),
    )
        .prop_map(|(index, reasoning, content, calls, finish)| {
            let mut delta = Map::new();
            if let Some(reasoning) = reasoning {
                delta.insert("reasoning_content".into(), reasoning.into());
            }
            if let Some(content) = content {
                delta.insert("content".into(), content.into());
            }
            if let Some(calls) = calls {
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            let mut choice = json!({ "delta": delta, "finish_reason": finish });
            if let Some(index) = index {
                choice["index"] = index.into();
            }
            choice
        })
}

/// One upstream event's data: a chunk (some with usage, some without an id), an error chunk,
/// `[DONE]`, or text that is not JSON.
fn upstream_event() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (vec(choice(), 0..3), any::<bool>(), maybe(0u64..100)).prop_map(
            |(choices, with_id, usage)| {
                let mut chunk = json!({ "choices": choices });
                if with_id {
                    chunk["id"] = "chatcmpl-p".into();
                }
                if let Some(tokens) = usage {
                    chunk["usage"] = json!({ "prompt_tokens": tokens, "completion_tokens": 1 });
                }
                chunk.to_string()
            }
        ),
        1 => Just(r#"{"error":{"message":"quota\nexceeded"}}"#.to_owned()),
        1 => Just(r#"{"error":"overloaded"}"#.to_owned()),
        1 => Just("[DONE]".to_owned()),
        1 => Just("not json".to_owned()),
    ]
}

/// An upstream body: the events as SSE.
fn upstream_body() -> impl Strategy<Value = Vec<u8>> {
    vec(upstream_event(), 0..8).prop_map(|events| {
        events
            .iter()
            .map(|data| format!("data: {data}\n\n"))
            .collect::<String>()
            .into_bytes()
    })
}

/// JSON made of the names the request mappings read, nested a few levels.
fn request_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("model"),
        Just("messages"),
        Just("input"),
        Just("role"),
        Just("content"),
        Just("type"),
        Just("text"),
        Just("tools"),
        Just("name"),
        Just("input_schema"),
        Just("parameters"),
        Just("tool_choice"),
        Just("tool_use_id"),
        Just("call_id"),
        Just("arguments"),
        Just("system"),
        Just("instructions"),
        Just("max_tokens"),
        Just("stream"),
        Just("thinking"),
        Just("reasoning"),
        Just("stop_sequences"),
        Just("namespace"),
        Just("source"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..5).prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("tool"),
            Just("text"),
            Just("image"),
            Just("tool_use"),
            Just("tool_result"),
            Just("function"),
            Just("function_call"),
            Just("function_call_output"),
            Just("message"),
            Just("namespace"),
            Just("input_text"),
            Just("qwen3-max"),
            Just("any"),
            Just("enabled"),
            Just("odd\ntype"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((key.clone(), inner), 0..6).prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_sse_parser_reads_the_same_events_however_the_stream_is_cut(
        stream in sse_stream(),
        cuts in vec(any::<usize>(), 0..6),
        limit in prop_oneof![Just(usize::MAX), 1usize..24],
    ) {
        let whole = parse(limit, &[&stream]);
        prop_assert_eq!(&parse(limit, &pieces(&stream, &cuts)), &whole);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&parse(limit, &bytes), &whole);
        for (event, data) in &whole.0 {
            prop_assert!(event.len() <= limit && data.len() <= limit);
        }
    }

    #[test]
    fn any_messages_request_is_mapped_or_refused_in_one_line(
        body in request_json(),
        count_tokens in any::<bool>(),
    ) {
        let endpoint = if count_tokens { Endpoint::CountTokens } else { Endpoint::Create };
        let bytes = body.to_string();
        match MessagesRequest::parse(bytes.as_bytes(), endpoint)
            .and_then(MessagesRequest::into_chat)
        {
            Ok(chat) => {
                prop_assert_eq!(chat.stream, chat.json["stream"] == true);
                prop_assert!(chat.json["messages"].is_array());
                reasoning_fields_are_known(chat.reasoning.as_ref())?;
            }
            Err(error) => prop_assert!(!error.to_string().contains('\n'), "{}", error),
        }
    }

    #[test]
    fn any_responses_request_is_translated_or_refused_in_one_line(body in request_json()) {
        match to_chat(&body) {
            Ok(translated) => {
                prop_assert_eq!(translated.stream, translated.chat["stream"] == true);
                prop_assert!(translated.chat["messages"].is_array());
                reasoning_fields_are_known(translated.reasoning.as_ref())?;
            }
            Err(refusal) => {
                prop_assert!(!refusal.message.contains('\n'), "{}", refusal.message);
            }
        }
    }

    #[test]
    fn an_anthropic_stream_ends_once_and_is_well_formed(
        body in upstream_body(),
        cuts in vec(any::<usize>(), 0..4),
        stop_at_end in any::<bool>(),
        broken in any::<bool>(),
    ) {
        let stops = if stop_at_end {
            StopSequences::new(vec!["END".to_owned()])
        } else {
            StopSequences::default()
        };
        let end = if broken { End::Fail } else { End::Finish };
        let mut translator = MessageStream::new("m".to_owned(), stops, 3);
        let out = drive(&mut translator, b"", &pieces(&body, &cuts), end)
            .map_err(|violation| TestCaseError::fail(violation.to_string()))?;
        check_stream(Api::Anthropic, &out).map_err(|violation| {
            TestCaseError::fail(format!("{violation}\n{}", String::from_utf8_lossy(&out)))
        })?;
    }

    #[test]
    fn a_responses_stream_ends_once_and_is_well_formed(
        body in upstream_body(),
        cuts in vec(any::<usize>(), 0..4),
        broken in any::<bool>(),
    ) {
        let request = json!({
            "model": "m",
            "input": "hi",
            "tools": [{ "type": "namespace", "name": "tools",
                "tools": [{ "type": "function", "name": "run" }] }],
        });
        let translated = to_chat(&request).map_err(|refusal| {
            TestCaseError::fail(refusal.message)
        })?;
        let shell = Shell::new(translated.echo, "p", 0).with_namespaces(translated.namespaces);
        let (mut translator, opening) = ResponsesStream::start(shell);
        let end = if broken { End::Fail } else { End::Finish };
        let out = drive(&mut translator, &opening, &pieces(&body, &cuts), end)
            .map_err(|violation| TestCaseError::fail(violation.to_string()))?;
        check_stream(Api::Responses, &out).map_err(|violation| {
            TestCaseError::fail(format!("{violation}\n{}", String::from_utf8_lossy(&out)))
        })?;
    }
}

/// The golden streams keep the invariants too: the checks accept what is known to be right.
#[test]
fn the_golden_streams_pass_the_checks() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/anthropic/stream");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the golden streams") {
        let path = entry.expect("an entry").path();
        if path.to_string_lossy().ends_with(".expected.sse") {
            let expected = std::fs::read(&path).expect("a fixture");
            check_stream(Api::Anthropic, &expected)
                .unwrap_or_else(|violation| panic!("{}: {violation}", path.display()));
            checked += 1;
        }
    }
    assert!(checked > 0);
}
