//! The model API: `POST /v1/chat/completions` and `GET /v1/models`, authenticated with the
//! access tokens the fake issued or with API keys the test added, answering as the test
//! scripted (per token or for everyone) and recording every chat request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::chat_state::ChatState;
use crate::record::RecordedRequest;
use crate::reply::{self, Body, Cut, Reply};
use crate::script::ChatStep;
use crate::state::World;
use crate::tools::{self, ARGUMENT_FRAGMENTS, ToolCall};

/// Path of the chat-completions endpoint, under the `/v1` base that `resource_url` leads to.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// Path of the model list.
pub const MODELS_PATH: &str = "/v1/models";
/// The models an OAuth account serves; any other gets 404 `model_not_found` (API keys accept
/// every model).
pub const QWEN_OAUTH_MODELS: [&str; 4] = [
    "coder-model",
    "vision-model",
    "qwen3-coder-plus",
    "qwen3-coder-flash",
];

/// `created` of every answer, so answers are deterministic.
const CREATED: u64 = 1_750_000_000;

/// Who called: the bearer token and whether it is an OAuth access token (else an API key).
struct Caller {
    token: String,
    oauth: bool,
}

/// The caller, when its bearer token is live.
fn authenticate(world: &World, request: &RecordedRequest) -> Option<Caller> {
    let token = request.bearer().filter(|token| !token.is_empty())?;
    let oauth = world.access_token_is_issued(token);
    let live = if oauth {
        !world.chat.is_expired(token)
    } else {
        world.chat.has_api_key(token)
    };
    live.then(|| Caller {
        token: token.to_owned(),
        oauth,
    })
}

/// Qwen's answer to an unknown or expired token.
fn unauthorized() -> Reply {
    reply::api_error(
        401,
        "invalid_api_key",
        "invalid access token or token expired",
        "invalid_request_error",
    )
}

/// `GET /v1/models`.
pub(crate) fn models(world: &World, request: &RecordedRequest) -> Reply {
    if authenticate(world, request).is_none() {
        return unauthorized();
    }
    let data: Vec<Value> = QWEN_OAUTH_MODELS
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": CREATED, "owned_by": "qwen" }))
        .collect();
    reply::json(200, &json!({ "object": "list", "data": data }))
}

/// `POST /v1/chat/completions`.
pub(crate) fn completions(world: &mut World, request: &RecordedRequest) -> Reply {
    let Some(caller) = authenticate(world, request) else {
        return unauthorized();
    };
    let stated = world.chat.rate_limit_headers(&caller.token);
    let mut reply = completion(world, request, &caller);
    for (name, value) in stated.into_iter().flatten() {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            reply.headers_mut().insert(name, value);
        }
    }
    reply
}

/// The answer to an authenticated caller's chat request.
fn completion(world: &mut World, request: &RecordedRequest, caller: &Caller) -> Reply {
    let body = match serde_json::from_str::<Value>(&request.body) {
        Ok(body @ Value::Object(_)) => body,
        _ => return invalid_request("The request body must be a JSON object"),
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return invalid_request("model is required");
    };
    if caller.oauth {
        if !QWEN_OAUTH_MODELS.contains(&model) {
            return reply::api_error(
                404,
                "model_not_found",
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
            );
        }
        if has_array_text_user_content(&body) {
            return reply::api_error(
                400,
                "invalid_parameter_error",
                "<400> InternalError.Algo.InvalidParameter: user content must be a string",
                "invalid_request_error",
            );
        }
    }
    if let Err(message) = tools::check_request(&body) {
        return reply::api_error(
            400,
            "invalid_parameter_error",
            &format!("<400> InternalError.Algo.InvalidParameter: {message}"),
            "invalid_request_error",
        );
    }
    if let Some(wait) = world.chat.over_rate(&caller.token, Instant::now()) {
        return rate_limited(wait.as_secs().max(1));
    }

    let step = world.chat.next_step(&caller.token);
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    match step {
        ChatStep::QuotaExceeded => quota(429, world.chat.quota_retry_after),
        ChatStep::QuotaExceeded403 => quota(403, world.chat.quota_retry_after),
        ChatStep::RateLimited { retry_after_secs } => rate_limited(retry_after_secs),
        ChatStep::ServerError(status) => reply::api_error(
            status,
            "internal_error",
            "The fake Qwen server was told to fail this request",
            "server_error",
        ),
        ChatStep::Html { status } => reply::waf_page(status),
        ChatStep::Answer
        | ChatStep::Length
        | ChatStep::HoldLast
        | ChatStep::CutAfter(_)
        | ChatStep::EndAfter(_)
        | ChatStep::ErrorAfter(_)
        | ChatStep::OverloadedAfter(_)
        | ChatStep::ToolCalls { .. } => {
            let answer = Answer {
                id: format!("chatcmpl-fake-{}", world.chat.next_answer()),
                model: model.to_owned(),
                turn: turn(&mut world.chat, &body, step),
                prompt_tokens: u64::try_from(request.body.len() / 4).unwrap_or(u64::MAX),
            };
            if stream {
                stream_answer(&world.chat, &answer, &body, step)
            } else {
                whole_answer(&world.chat, &answer, step)
            }
        }
    }
}

struct Answer {
    id: String,
    model: String,
    turn: Turn,
    prompt_tokens: u64,
}

/// What the model says in one answer, before it is sent whole or streamed.
struct Turn {
    /// The reasoning, when the request asked for it ([`thinking_field`]).
    reasoning: Option<String>,
    /// The field the reasoning goes in.
    reasoning_field: &'static str,
    /// `content` of a whole answer; `None` is `null`.
    text: Option<String>,
    /// `content` as streamed, one delta per fragment.
    streamed_text: Vec<String>,
    tool_calls: Vec<ToolCall>,
    /// The answer ends at the output-token limit ([`ChatStep::Length`]).
    cut_at_limit: bool,
}

impl Turn {
    fn finish_reason(&self) -> &'static str {
        if self.cut_at_limit {
            "length"
        } else if self.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }

    /// The deltas of a streamed answer before its finish chunk, in OpenAI's order: reasoning,
    /// content, then each tool call (a head with `id`, `type`, `function.name` and empty
    /// `arguments`, then argument fragments carrying only `index` and `function.arguments`).
    /// The first delta also carries `role`.
    fn deltas(&self) -> Vec<Value> {
        let mut deltas = Vec::new();
        for fragment in tools::fragments(self.reasoning.as_deref().unwrap_or_default(), 2) {
            let mut delta = json!({ "content": null });
            delta[self.reasoning_field] = fragment.into();
            deltas.push(delta);
        }
        for fragment in &self.streamed_text {
            deltas.push(json!({ "content": fragment }));
        }
        for (index, call) in self.tool_calls.iter().enumerate() {
            deltas.push(json!({ "tool_calls": [{
                "index": index,
                "id": call.id,
                "type": "function",
                "function": { "name": call.name, "arguments": "" },
            }] }));
            for fragment in tools::fragments(&call.arguments, ARGUMENT_FRAGMENTS) {
                deltas.push(json!({ "tool_calls": [{
                    "index": index,
                    "function": { "arguments": fragment },
                }] }));
            }
        }
        if let Some(first) = deltas.first_mut() {
            first["role"] = "assistant".into();
        }
        deltas
    }

    /// `choices[0].message` of a whole answer.
    fn message(&self) -> Value {
        let mut message = json!({ "role": "assistant", "content": self.text });
        if let Some(reasoning) = &self.reasoning {
            message[self.reasoning_field] = reasoning.as_str().into();
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self.tool_calls.iter().map(ToolCall::to_json).collect();
        }
        message
    }

    /// Completion tokens of a whole answer: words of text and reasoning, and a token per four
    /// bytes of tool arguments.
    fn completion_tokens(&self) -> u64 {
        let words = |text: Option<&str>| text.map_or(0, |text| text.split_whitespace().count());
        let arguments: usize = self
            .tool_calls
            .iter()
            .map(|call| call.arguments.len().div_ceil(4))
            .sum();
        let total = words(self.text.as_deref()) + words(self.reasoning.as_deref()) + arguments;
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

/// Decides the answer to `body`: a text built from the tool results when the conversation
/// ends with them; tool calls when [`tools::plan`] says the model calls tools; else a text
/// echoing the last user message (streamed as `part0 `, `part1 `, ...).
fn turn(chat: &mut ChatState, body: &Value, step: ChatStep) -> Turn {
    let reasoning_field = thinking_field(body);
    let reasoning = reasoning_field
        .map(|_| format!("The user wrote {:?}; I will answer.", last_user_text(body)));
    let reasoning_field = reasoning_field.unwrap_or("reasoning_content");
    let cut_at_limit = step == ChatStep::Length;
    if let Some(results) = tools::trailing_results(body) {
        let text = format!("The tool returned: {}", results.join(" | "));
        return Turn {
            reasoning,
            reasoning_field,
            streamed_text: tools::fragments(&text, chat.stream_chunks),
            text: Some(text),
            tool_calls: Vec::new(),
            cut_at_limit,
        };
    }
    if let Some(plan) = tools::plan(body, step) {
        let mut tool_calls = Vec::new();
        for tool in tools::chosen_tools(body, plan.calls, &chat.preferred) {
            let number = chat.next_call();
            let name = tools::tool_name(tool);
            let arguments = chat
                .preferred
                .iter()
                .find(|preferred| preferred.name == name)
                .map_or_else(
                    || tools::arguments(tool, number),
                    |preferred| preferred.arguments.clone(),
                );
            tool_calls.push(ToolCall {
                id: format!("call_{number}"),
                name: name.to_owned(),
                arguments,
            });
        }
        let text = plan.leading_text.then(|| {
            let names: Vec<&str> = tool_calls.iter().map(|call| call.name.as_str()).collect();
            format!("Let me call {}.", names.join(" and "))
        });
        return Turn {
            reasoning,
            reasoning_field,
            streamed_text: text
                .as_deref()
                .map(|text| tools::fragments(text, 2))
                .unwrap_or_default(),
            text,
            tool_calls,
            cut_at_limit,
        };
    }
    Turn {
        reasoning,
        reasoning_field,
        text: Some(format!("You said: {}", last_user_text(body))),
        streamed_text: (0..chat.stream_chunks)
            .map(|i| format!("part{i} "))
            .collect(),
        tool_calls: Vec::new(),
        cut_at_limit,
    }
}

/// Whether the request asks the model to think, and the field its reasoning goes in: Qwen's
/// `enable_thinking: true` gets `reasoning_content`, as Qwen's thinking models send it;
/// OpenAI's `reasoning_effort` (other than `none` and `minimal`) gets `reasoning`, as vLLM and
/// OpenRouter send it.
fn thinking_field(body: &Value) -> Option<&'static str> {
    if body.get("enable_thinking").and_then(Value::as_bool) == Some(true) {
        return Some("reasoning_content");
    }
    body.get("reasoning_effort")
        .and_then(Value::as_str)
        .filter(|effort| !matches!(*effort, "none" | "minimal"))
        .map(|_| "reasoning")
}

impl Answer {
    /// The usage of the answer: half the prompt counts as read from the cache
    /// (`prompt_tokens_details.cached_tokens`), as a prefix the upstream saw before would.
    fn usage(&self, completion_tokens: u64) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "prompt_tokens_details": { "cached_tokens": self.prompt_tokens / 2 },
        })
    }

    fn chunk(&self, choices: Value) -> Bytes {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    }
}

fn whole_answer(chat: &ChatState, answer: &Answer, step: ChatStep) -> Reply {
    let completion_tokens = answer.turn.completion_tokens();
    let body = json!({
        "id": answer.id,
        "object": "chat.completion",
        "created": CREATED,
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": answer.turn.message(),
            "finish_reason": answer.turn.finish_reason(),
        }],
        "usage": answer.usage(completion_tokens),
    })
    .to_string();
    let ChatStep::CutAfter(_) = step else {
        return reply::json_text(200, body);
    };
    let bytes = Bytes::from(body);
    let half = bytes.len() / 2;
    let plan = StreamPlan {
        events: vec![bytes.slice(..half), bytes.slice(half..)],
        hold_before: None,
        cut_after: Some(1),
    };
    reply::with_body(200, "application/json", plan.spawn(chat))
}

fn stream_answer(chat: &ChatState, answer: &Answer, request: &Value, step: ChatStep) -> Reply {
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let deltas = answer.turn.deltas();
    // The events before the final group.
    let chunks = deltas.len();
    let mut events: Vec<Bytes> = deltas
        .into_iter()
        .map(|delta| answer.chunk(json!([{ "index": 0, "delta": delta, "finish_reason": null }])))
        .collect();
    let finish_reason = answer.turn.finish_reason();
    events.push(answer.chunk(json!([{ "index": 0, "delta": {}, "finish_reason": finish_reason }])));
    if include_usage {
        let completion_tokens = u64::try_from(chunks).unwrap_or(u64::MAX);
        let mut usage_chunk: Value = json!({
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": answer.model,
            "choices": [],
        });
        usage_chunk["usage"] = answer.usage(completion_tokens);
        events.push(Bytes::from(format!("data: {usage_chunk}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let plan = match step {
        ChatStep::HoldLast => StreamPlan {
            events,
            hold_before: Some(chunks),
            cut_after: None,
        },
        ChatStep::CutAfter(after) => StreamPlan {
            cut_after: Some(after.min(events.len())),
            events,
            hold_before: None,
        },
        ChatStep::EndAfter(after) => {
            events.truncate(after.min(chunks));
            StreamPlan {
                events,
                hold_before: None,
                cut_after: None,
            }
        }
        ChatStep::ErrorAfter(after) | ChatStep::OverloadedAfter(after) => {
            events.truncate(after.min(chunks));
            let reported = if let ChatStep::ErrorAfter(_) = step {
                json!({
                    "code": "data_inspection_failed",
                    "message": "Output data may contain inappropriate content.",
                    "type": "data_inspection_failed",
                })
            } else {
                json!({
                    "code": null,
                    "message": "That model is currently overloaded with other requests. You can \
                                retry your request.",
                    "type": "server_error",
                })
            };
            let error = json!({
                "id": answer.id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": answer.model,
                "choices": [],
                "error": reported,
            });
            events.push(Bytes::from(format!("data: {error}\n\n")));
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
            StreamPlan {
                events,
                hold_before: None,
                cut_after: None,
            }
        }
        _ => StreamPlan {
            events,
            hold_before: None,
            cut_after: None,
        },
    };
    let mut reply = reply::with_body(200, "text/event-stream", plan.spawn(chat));
    reply.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    reply
}

/// The events of a streamed answer and where to pause or cut it.
struct StreamPlan {
    events: Vec<Bytes>,
    /// Wait for a release before sending the event at this index.
    hold_before: Option<usize>,
    /// Cut the connection instead of sending the event at this index.
    cut_after: Option<usize>,
}

impl StreamPlan {
    /// Produces the events from a task of the fake's runtime; a reader that goes away before the
    /// last event is counted as a cancelled stream.
    fn spawn(self, chat: &ChatState) -> Body {
        let (tx, rx) = mpsc::channel(1);
        let release = Arc::clone(&chat.release);
        let cancelled = Arc::clone(&chat.cancelled);
        let count_cancel = move || cancelled.send_modify(|count| *count += 1);
        let interval = chat.stream_interval;
        tokio::spawn(async move {
            for index in 0..=self.events.len() {
                if index > 0 && index < self.events.len() && !interval.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = tx.closed() => {
                            count_cancel();
                            return;
                        }
                    }
                }
                if self.cut_after == Some(index) {
                    // The reader may be gone already; then there is nothing left to cut.
                    let _ = tx.send(Err(Cut)).await;
                    return;
                }
                let Some(event) = self.events.get(index) else {
                    return;
                };
                if self.hold_before == Some(index) {
                    tokio::select! {
                        permit = release.acquire() => {
                            if let Ok(permit) = permit {
                                permit.forget();
                            }
                        }
                        () = tx.closed() => {
                            count_cancel();
                            return;
                        }
                    }
                }
                if tx.send(Ok(event.clone())).await.is_err() {
                    count_cancel();
                    return;
                }
            }
        });
        ChannelBody { rx }.boxed_unsync()
    }
}

/// A body fed by a [`StreamPlan`] task.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, Cut>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        self.rx
            .poll_recv(cx)
            .map(|event| event.map(|event| event.map(Frame::data)))
    }
}

fn quota(status: u16, retry_after_secs: Option<u64>) -> Reply {
    let mut reply = reply::api_error(
        status,
        "insufficient_quota",
        "Free allocated quota exceeded.",
        "insufficient_quota",
    );
    if let Some(secs) = retry_after_secs {
        reply
            .headers_mut()
            .insert(http::header::RETRY_AFTER, secs.into());
    }
    reply
}

fn rate_limited(retry_after_secs: u64) -> Reply {
    let mut reply = reply::api_error(
        429,
        "rate_limit_exceeded",
        "Requests rate limit exceeded, please try again later.",
        "rate_limit_error",
    );
    reply
        .headers_mut()
        .insert(http::header::RETRY_AFTER, retry_after_secs.into());
    reply
}

fn invalid_request(message: &str) -> Reply {
    reply::api_error(
        400,
        "invalid_request_error",
        message,
        "invalid_request_error",
    )
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Whether some user message has its text as an array of parts, which Qwen's OAuth endpoint
/// refuses.
fn has_array_text_user_content(body: &Value) -> bool {
    messages(body).iter().any(|message| {
        message.get("role").and_then(Value::as_str) == Some("user")
            && message
                .get("content")
                .and_then(Value::as_array)
                .is_some_and(|parts| {
                    !parts.is_empty()
                        && parts
                            .iter()
                            .all(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                })
    })
}

/// The text of the last user message (its text parts joined when it has parts).
fn last_user_text(body: &Value) -> String {
    tools::content_text(
        messages(body)
            .iter()
            .rev()
            .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|message| message.get("content")),
    )
}
