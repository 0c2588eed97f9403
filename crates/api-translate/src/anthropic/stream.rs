//! A streamed chat answer as Anthropic's event stream ([`MessageStream`]).
//!
//! Events, in order: `message_start` (empty content; usage from the first chunk when it
//! carries usage, else `input_tokens` is the local estimate of the request, the one
//! `count_tokens` gives, and `output_tokens` 0) and `ping` when the first upstream event
//! arrives; then one content block after another — `content_block_start`, its deltas,
//! `content_block_stop` — and at the end `message_delta` (stop reason, usage) and
//! `message_stop`.
//!
//! - Blocks: `reasoning_content` (or `reasoning`, as vLLM and OpenRouter name it; the first
//!   of the two that is not empty) goes to a `thinking` block (`thinking_delta`s, then an empty
//!   `signature_delta` before its stop: the upstream has no signature), `content` to a `text`
//!   block (`text_delta`), and each tool call to a `tool_use` block whose argument fragments
//!   are sent as they come as `input_json_delta`s. A change of kind closes the open block and
//!   opens the next, with the next index; consecutive deltas of the same kind extend the open
//!   block.
//! - Tool calls are told apart by their chat `index`, and by their `id`: a fragment that
//!   brings a new, different `id` for an index already in use starts a new call (some
//!   OpenAI-compatible servers send every call with `index: 0`). A fragment without an `id`
//!   belongs to the latest call with its index.
//! - A tool call is opened once its name is known; fragments before that are held. Fragments
//!   for a tool call whose block was already closed (the upstream went back to it) cannot be
//!   sent and are dropped with a warning; OpenAI-compatible upstreams send tool calls one
//!   after the other.
//! - Stop sequences ([`super::stops`]): text that may be the start of one is held back until
//!   the next text says whether it is (and sent before any other kind of content, or at the
//!   end). When one matches, the text before it is sent, the message ends with
//!   `stop_reason: "stop_sequence"` and the sequence, and the translation is done: the body
//!   ends, which cancels the upstream request. The usage is then the last the upstream sent,
//!   or an estimate (the request's, and a token per 4 bytes of what was sent).
//! - The end comes at `data: [DONE]` or when the upstream body ends, whichever is first, once:
//!   the usage is the last `usage` seen (it may come in a chunk with no choices after the
//!   finish reason), `{"output_tokens": 0}` when none came.
//! - An upstream that breaks off (or times out) gets an `error` event of type `api_error`
//!   and no `message_stop`; a chunk carrying an `error` gets one too and ends the translation
//!   (later events are ignored): `overloaded_error` when the upstream's error says it is
//!   overloaded or throttling, else `api_error`. The message says what happened and that the
//!   answer is incomplete.
//!
//! Each upstream event is parsed once, into borrowed structs.

use std::borrow::Cow;
use std::fmt;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::outcome::{Usage, message_id, stop_reason, tool_use_id};
use super::stops::{Scanned, StopScanner, StopSequences};
use crate::stream::{StreamTranslator, UpstreamError, write_event};

/// The fields of a `chat.completion.chunk` the translation reads.
#[derive(Debug, Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    /// The name vLLM and OpenRouter give the reasoning text.
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// Where the translation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet.
    Waiting,
    /// `message_start` sent.
    Started,
    /// `message_stop` or an `error` event sent; nothing more is sent.
    Ended,
}

/// The open content block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(usize),
    Thinking(usize),
    /// A tool use: its block index and its slot in [`MessageStream::tools`].
    Tool {
        block: usize,
        slot: usize,
    },
}

/// One tool call of the answer.
#[derive(Debug, Default)]
struct ToolCall {
    /// The chat `index` that identifies it across chunks (with its `id`).
    key: Option<u64>,
    id: Option<String>,
    name: Option<String>,
    /// Its block index, once opened.
    block: Option<usize>,
    /// Argument fragments that came before the name.
    held: String,
}

/// Translates one streamed chat answer into Anthropic events.
#[derive(Debug)]
pub struct MessageStream {
    /// The model the client asked for.
    model: String,
    /// The message id, once started.
    id: String,
    phase: Phase,
    open: Option<Open>,
    next_block: usize,
    tools: Vec<ToolCall>,
    called_tools: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    stops: StopScanner,
    /// The request's estimated input tokens, for `message_start` before the upstream says.
    estimated_input_tokens: u64,
    /// Bytes of text, thinking and arguments sent, to estimate the output tokens of an answer
    /// cut at a stop sequence.
    sent_bytes: usize,
    /// The message ended at a stop sequence: the rest of the upstream answer is not needed.
    cut: bool,
}

/// Bytes per token of the output estimate, as `count_tokens` estimates input.
const BYTES_PER_TOKEN: usize = 4;

impl MessageStream {
    /// A translator for an answer to a request for `model` with stop sequences `stops`, whose
    /// input is estimated at `estimated_input_tokens`.
    pub fn new(model: String, stops: StopSequences, estimated_input_tokens: u64) -> Self {
        Self {
            model,
            id: String::new(),
            phase: Phase::Waiting,
            open: None,
            next_block: 0,
            tools: Vec::new(),
            called_tools: false,
            finish_reason: None,
            usage: None,
            stops: StopScanner::new(stops),
            estimated_input_tokens,
            sent_bytes: 0,
            cut: false,
        }
    }

    /// Sends `message_start` and `ping` unless already sent.
    fn start(&mut self, chat_id: Option<&str>, out: &mut BytesMut) {
        if self.phase != Phase::Waiting {
            return;
        }
        self.phase = Phase::Started;
        self.id = message_id(chat_id);
        let mut usage = match self.usage {
            Some(usage) => usage.to_anthropic(),
            None => Map::from_iter([(
                "input_tokens".to_owned(),
                Value::from(self.estimated_input_tokens),
            )]),
        };
        usage.insert("output_tokens".to_owned(), 0.into());
        write_event(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": usage,
                },
            }),
        );
        write_event(out, "ping", &json!({ "type": "ping" }));
    }

    /// Closes the open block (and opens none) and starts a block with `content_block`;
    /// returns its index.
    fn open_block(&mut self, content_block: &Value, out: &mut BytesMut) -> usize {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        write_event(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": content_block }),
        );
        index
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        let index = match self.open.take() {
            None => return,
            Some(Open::Thinking(index)) => {
                delta(
                    out,
                    index,
                    &json!({ "type": "signature_delta", "signature": "" }),
                );
                index
            }
            Some(Open::Text(index) | Open::Tool { block: index, .. }) => index,
        };
        write_event(
            out,
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
        );
    }

    fn thinking(&mut self, thinking: &str, out: &mut BytesMut) {
        self.flush_text(out);
        self.sent_bytes += thinking.len();
        let index = match self.open {
            Some(Open::Thinking(index)) => index,
            _ => {
                let index = self.open_block(&json!({ "type": "thinking", "thinking": "" }), out);
                self.open = Some(Open::Thinking(index));
                index
            }
        };
        delta(
            out,
            index,
            &json!({ "type": "thinking_delta", "thinking": thinking }),
        );
    }

    /// A text delta, through the stop-sequence scanner when the request has stop sequences.
    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if !self.stops.is_active() {
            self.send_text(text, out);
            return;
        }
        let (text, stop) = match self.stops.push(text) {
            Scanned::Text(text) => (text, None),
            Scanned::Stop { text, sequence } => (text, Some(sequence.to_owned())),
        };
        if !text.is_empty() {
            self.send_text(&text, out);
        }
        if let Some(sequence) = stop {
            self.end_at_stop_sequence(&sequence, out);
        }
    }

    /// Sends the text the stop-sequence scanner held back.
    fn flush_text(&mut self, out: &mut BytesMut) {
        let held = self.stops.flush();
        if !held.is_empty() {
            self.send_text(&held, out);
        }
    }

    fn send_text(&mut self, text: &str, out: &mut BytesMut) {
        self.sent_bytes += text.len();
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                let index = self.open_block(&json!({ "type": "text", "text": "" }), out);
                self.open = Some(Open::Text(index));
                index
            }
        };
        delta(out, index, &json!({ "type": "text_delta", "text": text }));
    }

    /// The slot of the tool call `call` belongs to, added when new. With a chat `index`: the
    /// call with that index and the fragment's id, or without an id the latest call with that
    /// index; a new id for an index whose latest call has another id is a new call. Without an
    /// index: the call with the fragment's id, else the last call.
    fn slot(&mut self, call: &ToolCallDelta<'_>) -> usize {
        let id = call.id.as_deref().filter(|id| !id.is_empty());
        let same_id = |tool: &ToolCall| tool.id.as_deref() == id;
        let found = match (call.index, id) {
            (Some(key), Some(_)) => self
                .tools
                .iter()
                .rposition(|tool| tool.key == Some(key))
                .filter(|&slot| self.tools[slot].id.is_none() || same_id(&self.tools[slot]))
                .or_else(|| {
                    self.tools
                        .iter()
                        .position(|tool| tool.key == Some(key) && same_id(tool))
                }),
            (Some(key), None) => self.tools.iter().rposition(|tool| tool.key == Some(key)),
            (None, Some(_)) => self.tools.iter().position(same_id),
            (None, None) => self.tools.len().checked_sub(1),
        };
        found.unwrap_or_else(|| {
            self.tools.push(ToolCall {
                key: call.index,
                ..ToolCall::default()
            });
            self.tools.len() - 1
        })
    }

    fn tool_call(&mut self, call: ToolCallDelta<'_>, out: &mut BytesMut) {
        self.flush_text(out);
        let slot = self.slot(&call);
        let (name, arguments) = match call.function {
            Some(function) => (function.name, function.arguments),
            None => (None, None),
        };
        let arguments = arguments.unwrap_or_default();
        self.sent_bytes += arguments.len();
        let tool = &mut self.tools[slot];
        if tool.id.is_none() {
            tool.id = call.id.filter(|id| !id.is_empty()).map(Cow::into_owned);
        }
        if tool.name.is_none() {
            tool.name = name.filter(|name| !name.is_empty()).map(Cow::into_owned);
        }
        match tool.block {
            Some(block) if self.open == Some(Open::Tool { block, slot }) => {
                if !arguments.is_empty() {
                    input_delta(out, block, &arguments);
                }
            }
            Some(block) => {
                if !arguments.is_empty() {
                    tracing::warn!(
                        block,
                        "the upstream sent arguments for a tool call whose block is closed; dropped"
                    );
                }
            }
            None if tool.name.is_none() => tool.held.push_str(&arguments),
            None => {
                let mut held = std::mem::take(&mut tool.held);
                held.push_str(&arguments);
                self.open_tool(slot, &held, out);
            }
        }
    }

    /// Opens the block of the tool call in `slot` (its name is known) and sends `arguments`.
    fn open_tool(&mut self, slot: usize, arguments: &str, out: &mut BytesMut) {
        let tool = &self.tools[slot];
        let id = tool
            .id
            .clone()
            .unwrap_or_else(|| tool_use_id(&self.id, slot));
        let content_block = json!({
            "type": "tool_use",
            "id": id,
            "name": tool.name.as_deref().unwrap_or_default(),
            "input": {},
        });
        let block = self.open_block(&content_block, out);
        self.tools[slot].block = Some(block);
        self.open = Some(Open::Tool { block, slot });
        self.called_tools = true;
        if !arguments.is_empty() {
            input_delta(out, block, arguments);
        }
    }

    /// Closes the message: the open block, `message_delta` and `message_stop`.
    fn end(&mut self, out: &mut BytesMut) {
        if self.phase == Phase::Ended {
            return;
        }
        self.start(None, out);
        self.flush_text(out);
        if self.tools.iter().any(|tool| tool.block.is_none()) {
            tracing::warn!("the upstream sent a tool call without a name; dropped");
        }
        let usage = match self.usage {
            Some(usage) => usage.to_anthropic(),
            None => Map::from_iter([("output_tokens".to_owned(), Value::from(0))]),
        };
        let reason = stop_reason(self.finish_reason.as_deref(), self.called_tools);
        self.close(reason, None, usage, out);
    }

    /// Ends the message at stop sequence `sequence`, with the usage the upstream sent so far
    /// or an estimate.
    fn end_at_stop_sequence(&mut self, sequence: &str, out: &mut BytesMut) {
        let usage = match self.usage {
            Some(usage) => usage.to_anthropic(),
            None => Map::from_iter([
                (
                    "input_tokens".to_owned(),
                    Value::from(self.estimated_input_tokens),
                ),
                (
                    "output_tokens".to_owned(),
                    Value::from(self.sent_bytes.div_ceil(BYTES_PER_TOKEN)),
                ),
            ]),
        };
        self.close("stop_sequence", Some(sequence), usage, out);
        self.cut = true;
    }

    /// Closes the open block and sends `message_delta` and `message_stop`.
    fn close(
        &mut self,
        reason: &str,
        sequence: Option<&str>,
        usage: Map<String, Value>,
        out: &mut BytesMut,
    ) {
        self.close_block(out);
        write_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": reason, "stop_sequence": sequence },
                "usage": usage,
            }),
        );
        write_event(out, "message_stop", &json!({ "type": "message_stop" }));
        self.phase = Phase::Ended;
    }

    /// Sends an `error` event of type `kind` (`api_error`, `overloaded_error`) and ends the
    /// translation.
    fn error(&mut self, kind: &str, message: &str, out: &mut BytesMut) {
        if self.phase == Phase::Ended {
            return;
        }
        write_event(
            out,
            "error",
            &json!({ "type": "error", "error": { "type": kind, "message": message } }),
        );
        self.phase = Phase::Ended;
    }
}

fn delta(out: &mut BytesMut, index: usize, delta: &Value) {
    write_event(
        out,
        "content_block_delta",
        &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
    );
}

fn input_delta(out: &mut BytesMut, index: usize, partial_json: &str) {
    delta(
        out,
        index,
        &json!({ "type": "input_json_delta", "partial_json": partial_json }),
    );
}

impl StreamTranslator for MessageStream {
    fn on_event(&mut self, data: &[u8], out: &mut BytesMut) {
        if self.phase == Phase::Ended {
            return;
        }
        if data == b"[DONE]" {
            self.end(out);
            return;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::debug!(%error, "skipped an upstream event that is not a chat chunk");
                return;
            }
        };
        if let Some(error) = chunk.error.filter(|error| !error.is_null()) {
            let error = UpstreamError::read(&error);
            let kind = if error.overloaded {
                "overloaded_error"
            } else {
                "api_error"
            };
            self.error(
                kind,
                &format!(
                    "the upstream reported an error mid-answer: {}; the answer is incomplete, \
                     retry the request",
                    error.message
                ),
                out,
            );
            return;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        self.start(chunk.id.as_deref(), out);
        for choice in chunk.choices {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                let thinking = [delta.reasoning_content, delta.reasoning]
                    .into_iter()
                    .flatten()
                    .find(|text| !text.is_empty());
                if let Some(thinking) = thinking {
                    self.thinking(&thinking, out);
                }
                if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                    self.text(&text, out);
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    if self.cut {
                        break;
                    }
                    self.tool_call(call, out);
                }
            }
            // The text reached a stop sequence: what the chunk has after it is dropped too.
            if self.cut {
                return;
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason.into_owned());
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.end(out);
    }

    fn done(&self) -> bool {
        self.cut
    }

    fn fail(&mut self, reason: &dyn fmt::Display, out: &mut BytesMut) {
        self.error(
            "api_error",
            &format!("{reason}; the answer is incomplete, retry the request"),
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the proxy's idle-timeout break says, after `seconds` of silence.
    fn idle(seconds: u64) -> String {
        format!("the upstream sent nothing for {seconds} s, so the stream was aborted")
    }

    /// Feeds each `data` payload as one upstream event, then `end` (if any); returns the
    /// events sent as (name, data).
    fn run(events: &[&str], end: Option<&str>) -> Vec<(String, Value)> {
        let mut translator = MessageStream::new("m".to_owned(), StopSequences::default(), 0);
        let mut out = BytesMut::new();
        for data in events {
            translator.on_event(data.as_bytes(), &mut out);
        }
        match end {
            Some(reason) => translator.fail(&reason, &mut out),
            None => translator.finish(&mut out),
        }
        let text = String::from_utf8(out.to_vec()).expect("UTF-8");
        text.split_terminator("\n\n")
            .map(|event| {
                let (name, data) = event
                    .strip_prefix("event: ")
                    .and_then(|rest| rest.split_once("\ndata: "))
                    .expect("an event line and a data line");
                (
                    name.to_owned(),
                    serde_json::from_str(data).expect("JSON data"),
                )
            })
            .collect()
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(name, _)| name.as_str()).collect()
    }

    const TEXT: &str = r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#;

    #[test]
    fn a_broken_stream_ends_with_an_error_event() {
        let events = run(&[TEXT], Some(&idle(30)));
        assert_eq!(
            names(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        let error = &events[4].1;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "api_error");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("30 s"), "{message}");
    }

    #[test]
    fn the_end_is_sent_once_at_done_or_at_the_end_of_the_body() {
        let events = run(&[TEXT, "[DONE]", TEXT], None);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let after_done = run(&["[DONE]"], Some(&idle(1)));
        assert_eq!(names(&after_done).last(), Some(&"message_stop"));
    }

    #[test]
    fn an_empty_stream_is_still_a_whole_message() {
        let events = run(&[], None);
        assert_eq!(
            names(&events),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
        assert!(
            events[0].1["message"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("msg_"))
        );
        assert_eq!(events[2].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[2].1["usage"], json!({ "output_tokens": 0 }));
    }

    #[test]
    fn an_error_chunk_ends_the_translation() {
        let events = run(
            &[
                TEXT,
                r#"{"error":{"code":"data_inspection_failed","message":"Output may contain inappropriate content."}}"#,
                TEXT,
                "[DONE]",
            ],
            None,
        );
        assert_eq!(names(&events).last(), Some(&"error"));
        assert_eq!(events[4].1["error"]["type"], "api_error");
        let message = events[4].1["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("the upstream reported an error mid-answer: Output may contain"),
            "{message}"
        );
        let throttled = run(
            &[
                TEXT,
                r#"{"error":{"code":"Throttling","message":"Requests throttling triggered."}}"#,
            ],
            None,
        );
        assert_eq!(throttled[4].1["error"]["type"], "overloaded_error");
    }

    #[test]
    fn arguments_before_the_name_are_held_and_late_ones_for_closed_blocks_dropped() {
        let events = run(
            &[
                r#"{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"f","arguments":":1}"}}]}}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" "}}]}}]}"#,
                r#"{"id":"c2","choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            ],
            None,
        );
        let data: Vec<&Value> = events.iter().map(|(_, data)| data).collect();
        assert_eq!(
            data[2..],
            [
                &json!({ "type": "content_block_start", "index": 0,
                    "content_block": { "type": "tool_use", "id": "call_a", "name": "f", "input": {} } }),
                &json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "input_json_delta", "partial_json": "{\"a\":1}" } }),
                &json!({ "type": "content_block_stop", "index": 0 }),
                &json!({ "type": "content_block_start", "index": 1,
                    "content_block": { "type": "tool_use", "id": "call_b", "name": "g", "input": {} } }),
                &json!({ "type": "content_block_delta", "index": 1,
                    "delta": { "type": "input_json_delta", "partial_json": "{}" } }),
                &json!({ "type": "content_block_stop", "index": 1 }),
                &json!({ "type": "message_delta",
                    "delta": { "stop_reason": "tool_use", "stop_sequence": null },
                    "usage": { "output_tokens": 0 } }),
                &json!({ "type": "message_stop" }),
            ]
        );
    }

    /// Found by the `anthropic_stream` fuzz target: tool calls in the delta that reached a
    /// stop sequence were still sent, after `message_stop`.
    #[test]
    fn nothing_is_sent_after_a_stop_sequence_in_the_same_chunk() {
        let mut translator = MessageStream::new(
            "m".to_owned(),
            StopSequences::new(vec!["END".to_owned()]),
            0,
        );
        let mut out = BytesMut::new();
        translator.on_event(
            br#"{"id":"c","choices":[
                {"index":0,"delta":{"content":"aEND","tool_calls":[{"index":0,"id":"x","function":{"name":"f","arguments":"{}"}}]}},
                {"index":0,"delta":{"reasoning_content":"more","content":"more"}}]}"#,
            &mut out,
        );
        assert!(translator.done());
        let sent = out.len();
        translator.finish(&mut out);
        assert_eq!(out.len(), sent, "the stream had ended");
        let text = String::from_utf8(out.to_vec()).expect("UTF-8");
        let names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""stop_sequence":"END""#), "{text}");
    }

    #[test]
    fn tool_calls_without_ids_get_ids_and_non_chunks_are_skipped() {
        let events = run(
            &[
                "not json",
                r#"{"id":"c3","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#,
            ],
            None,
        );
        assert_eq!(events[2].1["content_block"]["id"], "toolu_c3_0");
    }
}
