//! A streamed chat completion as Responses stream events.
//!
//! The stream opens with `response.created` and `response.in_progress` (status `in_progress`,
//! no output). Then each output item is opened, filled and closed before the next one opens:
//! - `reasoning_content` deltas (or `reasoning`, as vLLM and OpenRouter name them): a
//!   `reasoning` item, `response.reasoning_summary_part.added`,
//!   `response.reasoning_summary_text.delta`s, and at its end
//!   `response.reasoning_summary_text.done`, `response.reasoning_summary_part.done`;
//! - `content` deltas: a `message` item, `response.content_part.added` (an empty
//!   `output_text`), `response.output_text.delta`s, and at its end `response.output_text.done`,
//!   `response.content_part.done`;
//! - each tool call: a `function_call` item (empty `arguments`; `name` and `namespace` apart
//!   for a namespaced tool), `response.function_call_arguments.delta`s, and at its end
//!   `response.function_call_arguments.done`. Calls are told apart by `tool_calls[].index`,
//!   and by `id`: a fragment with a new, different `id` for the open call's index starts a new
//!   call (some OpenAI-compatible servers send every call with `index: 0`);
//!
//! every item opening with `response.output_item.added` (status `in_progress`) and ending with
//! `response.output_item.done` (status `completed`; `incomplete` for the last item of an
//! answer that ends with `response.incomplete`, which the limit or filter cut). A delta of
//! another kind than the open item's closes it. Tool calls are expected one after another, as OpenAI and DashScope stream
//! them: a fragment of a call after a later call began cannot be sent any more and is dropped
//! (with a warning).
//!
//! The end: at `[DONE]`, or when the upstream ends without it, the open item closes and
//! `response.completed` carries the whole response (output and usage, which may arrive in a
//! chunk with empty `choices` after the `finish_reason`); a `finish_reason` of `length` or
//! `content_filter` ends with `response.incomplete` instead, as the Responses API does. A
//! stream that breaks off or times out, or an upstream chunk carrying an `error` (an object
//! with a `message`, or a string), ends with an `error` event (`code` `server_error`, the
//! message, and the same in an `error` object, as OpenAI sends it: the OpenAI SDKs raise it
//! as an `APIError`) and then `response.failed` (status `failed`, `error.code`
//! `server_error`, the items completed so far).
//! Every event has `type` and a `sequence_number` counting from 0.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::object::{self, Shell, Status};
use crate::stream::{StreamTranslator, UpstreamError, write_event};

/// The translator of one streamed answer.
#[derive(Debug)]
pub struct ResponsesStream {
    shell: Shell,
    sequence: u64,
    /// The items completed so far.
    output: Vec<Value>,
    open: Open,
    /// The chat `index` and upstream `id` of every tool call already closed.
    closed_calls: Vec<(u64, Option<String>)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    /// A terminal event was sent; nothing more is.
    ended: bool,
}

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Nothing,
    Reasoning(TextItem),
    Message(TextItem),
    Call(CallItem),
}

#[derive(Debug)]
struct TextItem {
    id: String,
    output_index: usize,
    text: String,
}

#[derive(Debug)]
struct CallItem {
    id: String,
    output_index: usize,
    /// The chat `tool_calls[].index`.
    index: u64,
    /// The upstream's `id` of the call, when it sent one.
    upstream_id: Option<String>,
    call_id: String,
    name: String,
    arguments: String,
}

impl ResponsesStream {
    /// The translator and the opening events.
    pub fn start(shell: Shell) -> (Self, Bytes) {
        let mut stream = Self {
            shell,
            sequence: 0,
            output: Vec::new(),
            open: Open::Nothing,
            closed_calls: Vec::new(),
            finish_reason: None,
            usage: None,
            ended: false,
        };
        let mut out = BytesMut::new();
        let response = stream
            .shell
            .response(&Status::InProgress, Vec::new(), Value::Null);
        stream.emit(
            &mut out,
            "response.created",
            json!({ "response": response.clone() }),
        );
        stream.emit(
            &mut out,
            "response.in_progress",
            json!({ "response": response }),
        );
        (stream, out.freeze())
    }

    /// Writes event `name` with the fields of `data`, its `type` and the next sequence number.
    fn emit(&mut self, out: &mut BytesMut, name: &str, data: Value) {
        let mut event = Map::new();
        event.insert("type".into(), name.into());
        if let Value::Object(fields) = data {
            event.extend(fields);
        }
        event.insert("sequence_number".into(), self.sequence.into());
        self.sequence += 1;
        write_event(out, name, &Value::Object(event));
    }

    fn chunk(&mut self, chunk: &Value, out: &mut BytesMut) {
        if let Some(error) = chunk.get("error").filter(|error| !error.is_null()) {
            let error = UpstreamError::read(error);
            self.failed(
                format!(
                    "the upstream reported an error mid-answer: {}; the answer is incomplete, \
                     retry the request",
                    error.message
                ),
                out,
            );
            return;
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|choice| choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            let reasoning = non_empty(delta.get("reasoning_content"))
                .or_else(|| non_empty(delta.get("reasoning")));
            if let Some(text) = reasoning {
                self.reasoning_delta(text, out);
            }
            if let Some(text) = non_empty(delta.get("content")) {
                self.text_delta(text, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, fragment) in calls.iter().enumerate() {
                    self.call_delta(position, fragment, out);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
    }

    fn reasoning_delta(&mut self, text: &str, out: &mut BytesMut) {
        if !matches!(self.open, Open::Reasoning(_)) {
            self.close(out);
            let output_index = self.output.len();
            let id = self.shell.item_id("rs", output_index);
            let item = object::reasoning_item(&id, "in_progress", None);
            self.emit(
                out,
                "response.output_item.added",
                json!({ "output_index": output_index, "item": item }),
            );
            self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({
                    "item_id": id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "part": object::summary_text(""),
                }),
            );
            self.open = Open::Reasoning(TextItem {
                id,
                output_index,
                text: String::new(),
            });
        }
        let Open::Reasoning(item) = &mut self.open else {
            return;
        };
        item.text.push_str(text);
        let data = json!({
            "item_id": item.id,
            "output_index": item.output_index,
            "summary_index": 0,
            "delta": text,
        });
        self.emit(out, "response.reasoning_summary_text.delta", data);
    }

    fn text_delta(&mut self, text: &str, out: &mut BytesMut) {
        if !matches!(self.open, Open::Message(_)) {
            self.close(out);
            let output_index = self.output.len();
            let id = self.shell.item_id("msg", output_index);
            let item = object::message_item(&id, "in_progress", None);
            self.emit(
                out,
                "response.output_item.added",
                json!({ "output_index": output_index, "item": item }),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({
                    "item_id": id,
                    "output_index": output_index,
                    "content_index": 0,
                    "part": object::output_text(""),
                }),
            );
            self.open = Open::Message(TextItem {
                id,
                output_index,
                text: String::new(),
            });
        }
        let Open::Message(item) = &mut self.open else {
            return;
        };
        item.text.push_str(text);
        let data = json!({
            "item_id": item.id,
            "output_index": item.output_index,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
        });
        self.emit(out, "response.output_text.delta", data);
    }

    /// One `tool_calls` entry of a delta; `position` is its place in the array, the index when
    /// the upstream gives none.
    fn call_delta(&mut self, position: usize, fragment: &Value, out: &mut BytesMut) {
        let index = fragment
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = fragment.get("function");
        let field = |name: &str| {
            function
                .and_then(|function| function.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let (name, arguments) = (field("name"), field("arguments"));
        let upstream_id = fragment
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let same_call = |index_of: u64, id_of: Option<&str>| {
            index_of == index && (upstream_id.is_none() || id_of.is_none() || id_of == upstream_id)
        };
        let closed = match upstream_id {
            Some(_) => self
                .closed_calls
                .iter()
                .any(|(_, id)| id.as_deref() == upstream_id),
            None => self.closed_calls.iter().any(|(closed, _)| *closed == index),
        };
        match &mut self.open {
            Open::Call(call) if same_call(call.index, call.upstream_id.as_deref()) => {
                if call.name.is_empty() {
                    call.name = name.to_owned();
                }
            }
            _ if closed => {
                tracing::warn!(
                    index,
                    "the upstream sent more of a tool call after a later one began; dropped"
                );
                return;
            }
            _ => {
                self.close(out);
                let output_index = self.output.len();
                let id = self.shell.item_id("fc", output_index);
                let call_id = upstream_id
                    .map_or_else(|| self.shell.item_id("call", output_index), str::to_owned);
                let item = self
                    .shell
                    .function_call_item(&id, "in_progress", &call_id, name, "");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({ "output_index": output_index, "item": item }),
                );
                self.open = Open::Call(CallItem {
                    id,
                    output_index,
                    index,
                    upstream_id: upstream_id.map(str::to_owned),
                    call_id,
                    name: name.to_owned(),
                    arguments: String::new(),
                });
            }
        }
        if arguments.is_empty() {
            return;
        }
        let Open::Call(call) = &mut self.open else {
            return;
        };
        call.arguments.push_str(arguments);
        let data = json!({
            "item_id": call.id,
            "output_index": call.output_index,
            "delta": arguments,
        });
        self.emit(out, "response.function_call_arguments.delta", data);
    }

    /// Closes the open item, if any, as `completed`, and adds it to the output.
    fn close(&mut self, out: &mut BytesMut) {
        self.close_as("completed", out);
    }

    /// Closes the open item, if any, with item status `status`, and adds it to the output.
    fn close_as(&mut self, status: &str, out: &mut BytesMut) {
        let (output_index, item) = match std::mem::replace(&mut self.open, Open::Nothing) {
            Open::Nothing => return,
            Open::Reasoning(TextItem {
                id,
                output_index,
                text,
            }) => {
                let at = json!({ "item_id": id, "output_index": output_index, "summary_index": 0 });
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    with(&at, "text", text.as_str().into()),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    with(&at, "part", object::summary_text(&text)),
                );
                (
                    output_index,
                    object::reasoning_item(&id, status, Some(&text)),
                )
            }
            Open::Message(TextItem {
                id,
                output_index,
                text,
            }) => {
                let at = json!({ "item_id": id, "output_index": output_index, "content_index": 0 });
                let mut done = with(&at, "text", text.as_str().into());
                done["logprobs"] = json!([]);
                self.emit(out, "response.output_text.done", done);
                self.emit(
                    out,
                    "response.content_part.done",
                    with(&at, "part", object::output_text(&text)),
                );
                (output_index, object::message_item(&id, status, Some(&text)))
            }
            Open::Call(call) => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({
                        "item_id": call.id,
                        "output_index": call.output_index,
                        "arguments": call.arguments,
                    }),
                );
                self.closed_calls.push((call.index, call.upstream_id));
                (
                    call.output_index,
                    self.shell.function_call_item(
                        &call.id,
                        status,
                        &call.call_id,
                        &call.name,
                        &call.arguments,
                    ),
                )
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({ "output_index": output_index, "item": item.clone() }),
        );
        self.output.push(item);
    }

    /// Closes the open item and sends the whole response.
    fn complete(&mut self, out: &mut BytesMut) {
        let status = Status::from_finish_reason(self.finish_reason.as_deref());
        self.close_as(status.item_status(), out);
        let name = match status {
            Status::Incomplete(_) => "response.incomplete",
            _ => "response.completed",
        };
        let output = std::mem::take(&mut self.output);
        let response = self
            .shell
            .response(&status, output, object::usage(self.usage.as_ref()));
        self.emit(out, name, json!({ "response": response }));
        self.ended = true;
    }

    /// Sends an `error` event and then `response.failed`, both with `message`.
    ///
    /// The `error` event has the fields OpenAI documents (`code`, `message`, `param`) and the
    /// `error` object OpenAI sends with them, which the OpenAI SDKs raise as an `APIError`;
    /// `response.failed` is the end clients such as Codex wait for.
    fn failed(&mut self, message: String, out: &mut BytesMut) {
        let error = json!({
            "type": object::FAILURE_CODE,
            "code": object::FAILURE_CODE,
            "message": message,
            "param": null,
        });
        self.emit(
            out,
            "error",
            json!({
                "code": object::FAILURE_CODE,
                "message": message,
                "param": null,
                "error": error,
            }),
        );
        let output = std::mem::take(&mut self.output);
        let response = self.shell.response(
            &Status::Failed(message),
            output,
            object::usage(self.usage.as_ref()),
        );
        self.emit(out, "response.failed", json!({ "response": response }));
        self.ended = true;
    }
}

impl StreamTranslator for ResponsesStream {
    fn on_event(&mut self, data: &[u8], out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.complete(out);
            return;
        }
        match serde_json::from_slice::<Value>(data) {
            Ok(chunk) => self.chunk(&chunk, out),
            Err(error) => tracing::debug!(%error, "skipped an upstream event that is not JSON"),
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if !self.ended {
            self.complete(out);
        }
    }

    fn fail(&mut self, reason: &dyn fmt::Display, out: &mut BytesMut) {
        if !self.ended {
            self.failed(
                format!("{reason}; the answer is incomplete, retry the request"),
                out,
            );
        }
    }
}

/// `base` (an object) with `name` set to `value`.
fn with(base: &Value, name: &str, value: Value) -> Value {
    let mut value_with = base.clone();
    value_with[name] = value;
    value_with
}

/// A non-empty string.
fn non_empty(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}
