//! The stream invariants as a check of what a translator wrote, for the fuzz targets (feature
//! `invariants`) and the property tests: [`drive`] runs a translator over an upstream body as
//! proxy-server's `TranslatedBody` does, and [`check_stream`] reads the output back.
//!
//! What holds for any upstream body, however it is split into chunks:
//! - the output is well-formed SSE: every event is exactly `event: NAME`, one `data:` line of
//!   JSON and a blank line, and the JSON is an object whose `type` is `NAME`;
//! - one terminal event, and it is the last: nothing is written after it, whatever is fed
//!   later (more events, `finish`, `fail`);
//! - Anthropic: `message_start` and `ping` open the stream (unless it is only an `error`);
//!   content blocks are numbered from 0, one open at a time, each delta of its block's kind;
//!   `message_delta` with a known `stop_reason` comes right before `message_stop`, with no
//!   block open;
//! - Responses: `sequence_number` counts from 0; `response.created` and `response.in_progress`
//!   open the stream; output items are added one at a time, in order, their events name the
//!   open item, and each `.done` repeats what its deltas added up to; an item is done as
//!   `completed`, or as `incomplete` when it is the last one of a `response.incomplete`; the
//!   terminal response lists exactly the items done, with the status its event names; an
//!   `error` event (`server_error`, the message) comes right before `response.failed`, with
//!   that response's error message, and nowhere else.
//!
//! And for a translated request, [`check_reasoning`]: its reasoning (kept beside the chat
//! body) makes only reasoning fields, for every upstream style, and none under `Off`.

use std::fmt;

use bytes::BytesMut;
use serde_json::Value;

use crate::StreamTranslator;
use crate::reasoning::{Reasoning, Style};
use crate::sse::SseParser;

/// Which API a translator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Anthropic,
    Responses,
}

/// How the upstream body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Normally: [`StreamTranslator::finish`].
    Finish,
    /// Broken off: [`StreamTranslator::fail`].
    Fail,
}

/// A broken invariant: which event (its place in the output) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The index of the event, or the number of events for a problem of the whole stream.
    pub event: usize,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}: {}", self.event, self.problem)
    }
}

impl std::error::Error for Violation {}

fn violation(event: usize, problem: impl Into<String>) -> Violation {
    Violation {
        event,
        problem: problem.into(),
    }
}

/// The longest SSE line or event proxy-server's `TranslatedBody` accepts from the upstream.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Runs `translator` over `chunks` of an upstream body as `TranslatedBody` does: `opening`
/// first, the events as the SSE parser completes them, then `end` (a line over 1 MiB is a
/// break), unless the translator is done before. Then it feeds the whole body again and ends
/// it both ways, and fails unless that wrote nothing.
///
/// # Errors
///
/// A [`Violation`] when something was written after the end.
pub fn drive(
    translator: &mut dyn StreamTranslator,
    opening: &[u8],
    chunks: &[&[u8]],
    end: End,
) -> Result<Vec<u8>, Violation> {
    let mut out = BytesMut::from(opening);
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let mut broken = false;
    for chunk in chunks {
        let fed = parser.feed(chunk, |event| translator.on_event(event.data, &mut out));
        if fed.is_err() {
            translator.fail(&"the upstream sent a line that is too long", &mut out);
            broken = true;
            break;
        }
        if translator.done() {
            break;
        }
    }
    if !broken && !translator.done() {
        match end {
            End::Finish => translator.finish(&mut out),
            End::Fail => translator.fail(&"the upstream broke off", &mut out),
        }
    }
    let ended = out.len();
    let mut again = SseParser::new(usize::MAX);
    for chunk in chunks {
        let _ = again.feed(chunk, |event| translator.on_event(event.data, &mut out));
    }
    translator.finish(&mut out);
    translator.fail(&"a second end", &mut out);
    if out.len() != ended {
        return Err(violation(
            count_events(&out[..ended]),
            format!(
                "{} bytes written after the end: {:?}",
                out.len() - ended,
                String::from_utf8_lossy(&out[ended..])
            ),
        ));
    }
    Ok(out.to_vec())
}

fn count_events(out: &[u8]) -> usize {
    out.windows(2).filter(|pair| pair == b"\n\n").count()
}

/// The events of a translator's output as (name, data), checked to be well-formed SSE.
///
/// # Errors
///
/// A [`Violation`] naming the first event that is not `event: NAME\ndata: JSON\n\n` with a
/// JSON object whose `type` is `NAME`.
pub fn events(out: &[u8]) -> Result<Vec<(String, Value)>, Violation> {
    let text = std::str::from_utf8(out).map_err(|error| violation(0, error.to_string()))?;
    let Some(body) = text.strip_suffix("\n\n") else {
        return if text.is_empty() {
            Ok(Vec::new())
        } else {
            Err(violation(0, "the output does not end with a blank line"))
        };
    };
    body.split("\n\n")
        .enumerate()
        .map(|(index, event)| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|rest| rest.split_once("\ndata: "))
                .ok_or_else(|| violation(index, format!("not `event:` and `data:`: {event:?}")))?;
            if name.is_empty() || name.contains(['\n', '\r', ':']) || data.contains(['\n', '\r']) {
                return Err(violation(index, format!("a malformed event: {event:?}")));
            }
            let data: Value = serde_json::from_str(data)
                .map_err(|error| violation(index, format!("data is not JSON ({error})")))?;
            if data.get("type").and_then(Value::as_str) != Some(name) {
                return Err(violation(index, format!("`type` is not {name:?}: {data}")));
            }
            Ok((name.to_owned(), data))
        })
        .collect()
}

/// Checks a whole translated stream (opening events included, ended) of `api`.
///
/// # Errors
///
/// The first [`Violation`] found.
pub fn check_stream(api: Api, out: &[u8]) -> Result<Vec<(String, Value)>, Violation> {
    let events = events(out)?;
    match api {
        Api::Anthropic => check_anthropic(&events)?,
        Api::Responses => check_responses(&events)?,
    }
    Ok(events)
}

/// Ensures `events` has exactly one terminal event (per `is_terminal`), and that it is last.
fn one_terminal_at_the_end(
    events: &[(String, Value)],
    is_terminal: impl Fn(&str) -> bool,
) -> Result<(), Violation> {
    let terminals: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| is_terminal(name))
        .map(|(index, _)| index)
        .collect();
    match terminals.as_slice() {
        [] => Err(violation(events.len(), "the stream has no terminal event")),
        [last] if *last + 1 == events.len() => Ok(()),
        [only] => Err(violation(*only, "events follow the terminal event")),
        [_, second, ..] => Err(violation(*second, "a second terminal event")),
    }
}

/// The open Anthropic content block: its index and type.
struct OpenBlock {
    index: u64,
    kind: String,
}

fn check_anthropic(events: &[(String, Value)]) -> Result<(), Violation> {
    one_terminal_at_the_end(events, |name| matches!(name, "message_stop" | "error"))?;
    if let [(name, _)] = events
        && name == "error"
    {
        return Ok(());
    }
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    if names.get(..2) != Some(&["message_start", "ping"][..]) {
        return Err(violation(
            0,
            "the stream does not open with message_start, ping",
        ));
    }
    let start = &events[0].1["message"];
    if !start["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("msg_"))
        || start["content"] != Value::Array(Vec::new())
    {
        return Err(violation(0, format!("a malformed message_start: {start}")));
    }
    let mut open: Option<OpenBlock> = None;
    let mut next_index = 0;
    for (at, (name, data)) in events.iter().enumerate().skip(2) {
        let index = data.get("index").and_then(Value::as_u64);
        match name.as_str() {
            "content_block_start" => {
                if open.is_some() {
                    return Err(violation(at, "a block starts while another is open"));
                }
                if index != Some(next_index) {
                    return Err(violation(
                        at,
                        format!("block index {index:?}, not {next_index}"),
                    ));
                }
                let kind = data["content_block"]["type"].as_str().unwrap_or_default();
                if !matches!(kind, "text" | "thinking" | "tool_use") {
                    return Err(violation(at, format!("a block of type {kind:?}")));
                }
                open = Some(OpenBlock {
                    index: next_index,
                    kind: kind.to_owned(),
                });
                next_index += 1;
            }
            "content_block_delta" => {
                let Some(block) = open.as_ref().filter(|block| Some(block.index) == index) else {
                    return Err(violation(at, "a delta for a block that is not open"));
                };
                let delta = data["delta"]["type"].as_str().unwrap_or_default();
                let fits = match block.kind.as_str() {
                    "text" => delta == "text_delta" && data["delta"]["text"].is_string(),
                    "thinking" => matches!(delta, "thinking_delta" | "signature_delta"),
                    _ => delta == "input_json_delta" && data["delta"]["partial_json"].is_string(),
                };
                if !fits {
                    return Err(violation(
                        at,
                        format!("a {delta:?} in a {} block", block.kind),
                    ));
                }
            }
            "content_block_stop" => {
                if open.as_ref().map(|block| block.index) != index || index.is_none() {
                    return Err(violation(at, "a stop for a block that is not open"));
                }
                open = None;
            }
            "message_delta" => {
                if open.is_some() {
                    return Err(violation(at, "message_delta while a block is open"));
                }
                if names.get(at + 1) != Some(&"message_stop") {
                    return Err(violation(at, "message_delta not right before message_stop"));
                }
                let delta = &data["delta"];
                let reason = delta["stop_reason"].as_str().unwrap_or_default();
                if !matches!(
                    reason,
                    "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "refusal"
                ) {
                    return Err(violation(at, format!("stop_reason {reason:?}")));
                }
                if (reason == "stop_sequence") != delta["stop_sequence"].is_string() {
                    return Err(violation(at, format!("a malformed message_delta: {data}")));
                }
                if !data["usage"]["output_tokens"].is_u64() {
                    return Err(violation(
                        at,
                        format!("usage without output_tokens: {data}"),
                    ));
                }
            }
            "message_stop" => {
                if names[at - 1] != "message_delta" {
                    return Err(violation(at, "message_stop without message_delta"));
                }
            }
            "error" => {
                if !data["error"]["message"].is_string() {
                    return Err(violation(at, format!("an error without a message: {data}")));
                }
            }
            other => return Err(violation(at, format!("an unknown event {other:?}"))),
        }
    }
    Ok(())
}

/// The open Responses output item.
struct OpenItem {
    id: String,
    output_index: u64,
    kind: String,
    /// What its deltas added up to.
    text: String,
}

/// The `.delta` and `.done` events of each item type, and the field `.done` repeats.
fn item_events(kind: &str) -> (&'static [&'static str], &'static str, &'static str) {
    match kind {
        "message" => (
            &["response.content_part.added", "response.content_part.done"],
            "response.output_text.delta",
            "response.output_text.done",
        ),
        "reasoning" => (
            &[
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_part.done",
            ],
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
        ),
        _ => (
            &[],
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
        ),
    }
}

fn check_responses(events: &[(String, Value)]) -> Result<(), Violation> {
    one_terminal_at_the_end(events, |name| {
        matches!(
            name,
            "response.completed" | "response.incomplete" | "response.failed"
        )
    })?;
    for (at, (_, data)) in events.iter().enumerate() {
        if data["sequence_number"].as_u64() != Some(at as u64) {
            return Err(violation(at, "sequence_number is not the event's place"));
        }
    }
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    if names.get(..2) != Some(&["response.created", "response.in_progress"][..]) {
        return Err(violation(
            0,
            "the stream does not open with created, in_progress",
        ));
    }
    let mut open: Option<OpenItem> = None;
    let mut done: Vec<Value> = Vec::new();
    // Where an item was done as `incomplete`: only the last item of `response.incomplete`.
    let mut incomplete_at = None;
    for (at, (name, data)) in events.iter().enumerate().skip(2) {
        match name.as_str() {
            "response.output_item.added" => {
                if open.is_some() {
                    return Err(violation(at, "an item is added while another is open"));
                }
                if let Some(incomplete) = incomplete_at {
                    return Err(violation(
                        at,
                        format!("an item is added after the incomplete item of event {incomplete}"),
                    ));
                }
                let output_index = data["output_index"].as_u64();
                if output_index != Some(done.len() as u64) {
                    return Err(violation(at, format!("output_index {output_index:?}")));
                }
                let item = &data["item"];
                let kind = item["type"].as_str().unwrap_or_default();
                if !matches!(kind, "message" | "reasoning" | "function_call")
                    || item["status"] != "in_progress"
                {
                    return Err(violation(at, format!("a malformed added item: {item}")));
                }
                open = Some(OpenItem {
                    id: item["id"].as_str().unwrap_or_default().to_owned(),
                    output_index: done.len() as u64,
                    kind: kind.to_owned(),
                    text: String::new(),
                });
            }
            "response.output_item.done" => {
                let Some(item) = open.take() else {
                    return Err(violation(at, "an item is done that was not added"));
                };
                let finished = &data["item"];
                if data["output_index"].as_u64() != Some(item.output_index)
                    || finished["id"] != item.id.as_str()
                    || !matches!(
                        finished["status"].as_str(),
                        Some("completed" | "incomplete")
                    )
                    || finished["type"] != item.kind.as_str()
                {
                    return Err(violation(at, format!("a malformed done item: {data}")));
                }
                if finished["status"] == "incomplete" {
                    incomplete_at = Some(at);
                }
                done.push(finished.clone());
            }
            "error" => {
                let failed = events
                    .get(at + 1)
                    .filter(|(next, _)| next == "response.failed")
                    .map(|(_, next)| &next["response"]["error"]);
                let Some(failed) = failed else {
                    return Err(violation(
                        at,
                        "an error event not right before response.failed",
                    ));
                };
                if data["code"] != "server_error"
                    || !data["message"].is_string()
                    || data["message"] != failed["message"]
                    || data["error"]["message"] != data["message"]
                {
                    return Err(violation(
                        at,
                        format!("an error event unlike its response.failed: {data}"),
                    ));
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let response = &data["response"];
                let status = name.trim_start_matches("response.");
                if response["status"] != status {
                    return Err(violation(
                        at,
                        format!("{name} with status {}", response["status"]),
                    ));
                }
                if status != "failed" && open.is_some() {
                    return Err(violation(at, format!("{name} while an item is open")));
                }
                if status == "failed" && names[at - 1] != "error" {
                    return Err(violation(at, "response.failed without an error event"));
                }
                if let Some(incomplete) = incomplete_at.filter(|_| status != "incomplete") {
                    return Err(violation(
                        incomplete,
                        format!("an incomplete item in a {name}"),
                    ));
                }
                if status == "failed" && response["error"]["code"] != "server_error" {
                    return Err(violation(
                        at,
                        format!("failed without an error: {response}"),
                    ));
                }
                if response["output"] != Value::Array(done.clone()) {
                    return Err(violation(
                        at,
                        format!("the output is not the {} items done", done.len()),
                    ));
                }
            }
            other => {
                let Some(item) = open.as_mut() else {
                    return Err(violation(at, format!("{other} with no item open")));
                };
                let (parts, delta, finished) = item_events(&item.kind);
                if data["item_id"] != item.id.as_str()
                    || data["output_index"].as_u64() != Some(item.output_index)
                {
                    return Err(violation(at, format!("{other} names another item")));
                }
                if other == delta {
                    item.text
                        .push_str(data["delta"].as_str().unwrap_or_default());
                } else if other == finished {
                    let field = if item.kind == "function_call" {
                        "arguments"
                    } else {
                        "text"
                    };
                    if data[field] != item.text.as_str() {
                        return Err(violation(
                            at,
                            format!("{other} is not what the deltas sent"),
                        ));
                    }
                } else if !parts.contains(&other) {
                    return Err(violation(at, format!("{other} in a {} item", item.kind)));
                }
            }
        }
    }
    Ok(())
}

/// Checks the fields `reasoning` makes for every upstream [`Style`], for a model with Qwen's
/// thinking switch and for one without: only `reasoning_effort`, `enable_thinking` and
/// `thinking_budget`, and none under [`Style::Off`].
///
/// # Errors
///
/// A [`Violation`] (event 0) naming the field and the style.
pub fn check_reasoning(reasoning: &Reasoning) -> Result<(), Violation> {
    for model in ["qwen3-235b-a22b", "qwen3-coder-plus"] {
        for style in [Style::Effort, Style::Qwen, Style::Off] {
            for (name, value) in reasoning.fields(style, model) {
                let known = matches!(
                    name,
                    "reasoning_effort" | "enable_thinking" | "thinking_budget"
                );
                if !known || style == Style::Off {
                    return Err(violation(
                        0,
                        format!("{name} = {value} for {style:?} and {model}"),
                    ));
                }
            }
        }
    }
    Ok(())
}
