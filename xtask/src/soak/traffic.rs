//! The soak's clients: keep-alive connections that send a mix of whole and
//! streamed requests on the three APIs cliproxy serves, and clients that hang
//! up on purpose (after the first streamed event, or after a random short
//! wait wherever the request is, as an SDK timeout or Esc in Claude Code).
//!
//! Every answer is checked and sorted into an outcome: success, cancelled on
//! purpose, or a client-visible error class (`HTTP 429 insufficient_quota`,
//! `stream cut short`, `connection closed mid-answer`, ...).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request,
    client::conn::http1::SendRequest,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::rng::Rng;
use crate::bench::{
    load::excerpt,
    net::{self, Connection},
};

/// The conversations the requests are turns of. An agent sends its conversation's
/// opening again with every turn, and cliproxy pins each conversation to an account
/// (session affinity): a few hundred conversations exercise the pins (every turn
/// after the first finds one, and follows it when its account goes), while a new
/// conversation per request would fill the table of pins (up to 100,000, about
/// 9 MiB), which in a run of minutes reads as growth.
const CONVERSATIONS: u64 = 256;

/// The client key cliproxy is configured with.
pub(crate) const API_KEY: &str = "soak-key";
/// `Authorization` header value carrying [`API_KEY`].
const BEARER: &str = "Bearer soak-key";
/// The model every request asks for (one of Qwen OAuth's).
pub(crate) const MODEL: &str = "qwen3-coder-plus";
/// Longest wait for a whole answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between two requests of one connection (random, from 0).
const MAX_PAUSE_MS: u64 = 20;
/// Longest wait before an impatient client hangs up (random, from
/// [`MIN_PATIENCE_MS`]); covers the fake's refresh latency.
const MAX_PATIENCE_MS: u64 = 300;
const MIN_PATIENCE_MS: u64 = 20;

/// The three client APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Messages,
    Responses,
}

impl Api {
    const ALL: [Api; 3] = [Api::Chat, Api::Messages, Api::Responses];

    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Messages => "/v1/messages",
            Api::Responses => "/v1/responses",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Messages => "messages",
            Api::Responses => "responses",
        }
    }

    /// A small request of this API: the `n`th request is a turn of conversation
    /// `n % CONVERSATIONS`.
    fn body(self, stream: bool, n: u64) -> Bytes {
        let prompt = format!("soak conversation {}", n % CONVERSATIONS);
        let body = match self {
            Api::Chat => json!({
                "model": MODEL,
                "messages": [{ "role": "user", "content": prompt }],
                "stream": stream,
            }),
            Api::Messages => json!({
                "model": MODEL,
                "max_tokens": 256,
                "messages": [{ "role": "user", "content": prompt }],
                "stream": stream,
            }),
            Api::Responses => json!({
                "model": MODEL,
                "input": prompt,
                "stream": stream,
            }),
        };
        Bytes::from(body.to_string())
    }
}

/// What a client does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Waits for the whole answer.
    Whole(Api),
    /// Reads the whole stream.
    Stream(Api),
    /// Hangs up after the first streamed bytes.
    CancelMidStream(Api),
    /// Hangs up after a random short wait, wherever the request is.
    Impatient(Api, bool),
}

impl Kind {
    /// The report's row for this kind.
    pub(crate) fn row(self) -> String {
        match self {
            Kind::Whole(api) => api.name().to_owned(),
            Kind::Stream(api) => format!("{} stream", api.name()),
            Kind::CancelMidStream(_) => "cancel mid-stream".to_owned(),
            Kind::Impatient(..) => "hang up early".to_owned(),
        }
    }

    /// The mix: out of 100 requests, 20 whole and 20 streamed chat
    /// completions, 8 each of whole and streamed Messages and Responses,
    /// 14 that hang up mid-stream and 14 that hang up early.
    fn pick(rng: &mut Rng) -> Kind {
        let api = Api::ALL[rng.below(3) as usize];
        match rng.below(100) {
            0..20 => Kind::Whole(Api::Chat),
            20..40 => Kind::Stream(Api::Chat),
            40..48 => Kind::Whole(Api::Messages),
            48..56 => Kind::Stream(Api::Messages),
            56..64 => Kind::Whole(Api::Responses),
            64..72 => Kind::Stream(Api::Responses),
            72..86 => Kind::CancelMidStream(api),
            _ => Kind::Impatient(api, rng.below(2) == 0),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// The client hung up on purpose.
    Cancelled,
    /// What the client saw: a class for counting, and a detail for the report.
    Error {
        class: String,
        detail: String,
    },
}

/// Counts of one row of the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) requests: u64,
    pub(crate) success: u64,
    pub(crate) cancelled: u64,
    pub(crate) errors: u64,
}

/// One class of client-visible error.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorClass {
    pub(crate) count: u64,
    /// The first detail seen.
    pub(crate) sample: String,
}

/// Every outcome so far, shared by all clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) rows: BTreeMap<String, Counts>,
    pub(crate) errors: BTreeMap<String, ErrorClass>,
    /// Error answers whose message names an account's email (every soak
    /// account is `...@example.com`); clients must never see one.
    pub(crate) naming_an_email: u64,
}

impl Tally {
    fn add(&mut self, kind: Kind, outcome: Outcome) {
        let row = self.rows.entry(kind.row()).or_default();
        row.requests += 1;
        match outcome {
            Outcome::Success => row.success += 1,
            Outcome::Cancelled => row.cancelled += 1,
            Outcome::Error { class, detail } => {
                row.errors += 1;
                if detail.contains("@example.com") {
                    self.naming_an_email += 1;
                }
                let error = self.errors.entry(class).or_default();
                error.count += 1;
                if error.sample.is_empty() {
                    error.sample = detail;
                }
            }
        }
    }

    /// All rows added up.
    pub(crate) fn total(&self) -> Counts {
        self.rows
            .values()
            .fold(Counts::default(), |sum, row| Counts {
                requests: sum.requests + row.requests,
                success: sum.success + row.success,
                cancelled: sum.cancelled + row.cancelled,
                errors: sum.errors + row.errors,
            })
    }
}

/// What the clients share: where to send, the tally, a request counter.
#[derive(Clone)]
pub(crate) struct Clients {
    addr: SocketAddr,
    tally: Arc<Mutex<Tally>>,
    sent: Arc<AtomicU64>,
}

impl Clients {
    pub(crate) fn new(addr: SocketAddr) -> Clients {
        Clients {
            addr,
            tally: Arc::default(),
            sent: Arc::default(),
        }
    }

    /// Requests finished so far.
    pub(crate) fn finished(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// A copy of the tally.
    pub(crate) fn tally(&self) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, kind: Kind, outcome: Outcome) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(kind, outcome);
    }

    /// One keep-alive connection sending the mix until `until`, or until
    /// `stop` turns true.
    pub(crate) async fn connection(self, until: Instant, stop: watch::Receiver<bool>, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut conn: Option<(SendRequest<Full<Bytes>>, Connection)> = None;
        let mut n = 0_u64;
        while Instant::now() < until && !*stop.borrow() {
            n += 1;
            let kind = Kind::pick(&mut rng);
            let patience = Duration::from_millis(
                MIN_PATIENCE_MS + rng.below(MAX_PATIENCE_MS - MIN_PATIENCE_MS),
            );
            let reusable = conn.take().filter(|(sender, _)| !sender.is_closed());
            let (outcome, keep) = self.one(kind, n + seed, patience, reusable).await;
            conn = keep;
            self.record(kind, outcome);
            tokio::time::sleep(Duration::from_millis(rng.below(MAX_PAUSE_MS + 1))).await;
        }
    }

    /// `count` impatient clients at once, each on its own connection.
    pub(crate) async fn impatient_burst(self, count: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let clients = self.clone();
                let kind = Kind::Impatient(Api::ALL[i % 3], rng.below(2) == 0);
                let patience = Duration::from_millis(
                    MIN_PATIENCE_MS + rng.below(MAX_PATIENCE_MS - MIN_PATIENCE_MS),
                );
                let n = seed + i as u64;
                tokio::spawn(async move {
                    let (outcome, _) = clients.one(kind, n, patience, None).await;
                    clients.record(kind, outcome);
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Sends one request of `kind`; returns its outcome and the connection
    /// when it can be used again.
    async fn one(
        &self,
        kind: Kind,
        n: u64,
        patience: Duration,
        conn: Option<(SendRequest<Full<Bytes>>, Connection)>,
    ) -> (Outcome, Option<(SendRequest<Full<Bytes>>, Connection)>) {
        let (mut sender, connection) = match conn {
            Some(conn) => conn,
            None => match net::connect_owned(self.addr).await {
                Ok(conn) => conn,
                Err(error) => return (failure("cannot connect", &format!("{error:#}")), None),
            },
        };
        let (api, stream) = match kind {
            Kind::Whole(api) => (api, false),
            Kind::Stream(api) | Kind::CancelMidStream(api) => (api, true),
            Kind::Impatient(api, stream) => (api, stream),
        };
        let request = request(self.addr, api, stream, n);
        let exchange = exchange(
            &mut sender,
            request,
            matches!(kind, Kind::CancelMidStream(_)),
        );
        let limit = match kind {
            Kind::Impatient(..) => patience,
            _ => REQUEST_TIMEOUT,
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) if matches!(kind, Kind::Impatient(..)) => (Outcome::Cancelled, None),
            Err(_) => (
                failure("no answer in time", &format!("within {REQUEST_TIMEOUT:?}")),
                None,
            ),
            Ok(Err(outcome)) => (outcome, None),
            Ok(Ok(Answer::HungUp)) => (Outcome::Cancelled, None),
            Ok(Ok(Answer::Whole { status, body })) => {
                let outcome = check(api, stream, status, &body);
                let keep = matches!(outcome, Outcome::Success);
                (outcome, keep.then_some((sender, connection)))
            }
        }
        // Dropping `connection` (when not kept) closes the socket: the hang-up.
    }
}

/// What came back before the client was done.
enum Answer {
    Whole {
        status: u16,
        body: Vec<u8>,
    },
    /// The client hung up after the first streamed bytes.
    HungUp,
}

fn request(addr: SocketAddr, api: Api, stream: bool, n: u64) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(api.body(stream, n)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = hyper::Uri::from_static(api.path());
    let headers = request.headers_mut();
    headers.insert(HOST, net::host_header(addr));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(AUTHORIZATION, HeaderValue::from_static(BEARER));
    if api == Api::Messages {
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static("2023-06-01"),
        );
    }
    request
}

/// Sends `request` and reads the answer; with `hang_up_mid_stream`, stops
/// after the first body bytes of a successful answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    hang_up_mid_stream: bool,
) -> Result<Answer, Outcome> {
    sender
        .ready()
        .await
        .map_err(|e| failure("connection failed", &e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failure("request failed", &e.to_string()))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failure("connection closed mid-answer", &e.to_string()))?;
        if let Ok(chunk) = frame.into_data() {
            data.extend_from_slice(&chunk);
            if hang_up_mid_stream && (200..300).contains(&status) && !data.is_empty() {
                return Ok(Answer::HungUp);
            }
        }
    }
    Ok(Answer::Whole { status, body: data })
}

fn failure(class: &str, detail: &str) -> Outcome {
    Outcome::Error {
        class: class.to_owned(),
        detail: excerpt(detail.as_bytes()),
    }
}

/// Sorts a whole answer: a success when it is a complete answer of `api`,
/// else the client-visible error class.
pub(crate) fn check(api: Api, stream: bool, status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = &json["error"];
        let code = error["code"]
            .as_str()
            .or_else(|| error["type"].as_str())
            .unwrap_or("(no error code)");
        let message = error["message"]
            .as_str()
            .map_or_else(|| String::from_utf8_lossy(body).into_owned(), str::to_owned);
        return Outcome::Error {
            class: format!("HTTP {status} {code}"),
            detail: excerpt(message.as_bytes()),
        };
    }
    let problem = if stream {
        check_stream(api, body)
    } else {
        check_whole(api, body)
    };
    match problem {
        None => Outcome::Success,
        Some((class, detail)) => Outcome::Error {
            class,
            detail: excerpt(detail.as_bytes()),
        },
    }
}

fn check_whole(api: Api, body: &[u8]) -> Option<(String, String)> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(_) => {
            return Some((
                "answer is not JSON".to_owned(),
                String::from_utf8_lossy(body).into_owned(),
            ));
        }
    };
    let complete = match api {
        Api::Chat => json["choices"][0]["message"].is_object(),
        Api::Messages => json["type"] == "message" && json["content"].is_array(),
        Api::Responses => json["object"] == "response" && json["status"] == "completed",
    };
    (!complete).then(|| ("unexpected answer".to_owned(), json.to_string()))
}

/// The problem with a streamed answer, if any: an error event, or an end
/// other than the API's normal last event.
fn check_stream(api: Api, body: &[u8]) -> Option<(String, String)> {
    let events = sse_events(body);
    let error = events.iter().find(|(name, data)| {
        matches!(name.as_deref(), Some("error" | "response.failed"))
            || data.get("error").is_some_and(|e| !e.is_null())
    });
    if let Some((name, data)) = error {
        let code = data["error"]["code"]
            .as_str()
            .or_else(|| data["error"]["type"].as_str())
            .or_else(|| data["response"]["error"]["code"].as_str())
            .or(name.as_deref())
            .unwrap_or("error");
        return Some((format!("stream error event {code}"), data.to_string()));
    }
    let last = events.last();
    let complete = match api {
        Api::Chat => last.is_some_and(|(_, data)| data == &Value::from("[DONE]")),
        Api::Messages => last.is_some_and(|(name, _)| name.as_deref() == Some("message_stop")),
        Api::Responses => {
            last.is_some_and(|(name, _)| name.as_deref() == Some("response.completed"))
        }
    };
    (!complete).then(|| {
        let last = last.map_or_else(
            || "no event".to_owned(),
            |(name, data)| {
                format!(
                    "last event {}: {data}",
                    name.as_deref().unwrap_or("(unnamed)")
                )
            },
        );
        ("stream cut short".to_owned(), last)
    })
}

/// The events of an SSE body: each event's name (`event:`) and its data as
/// JSON (`[DONE]` and other non-JSON data as a string).
fn sse_events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = String::from_utf8_lossy(body);
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim_start());
            }
        }
        if name.is_none() && data.is_empty() {
            continue;
        }
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        events.push((name, data));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(outcome: Outcome) -> String {
        match outcome {
            Outcome::Error { class, .. } => class,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn whole_answers_of_each_api_are_checked() {
        let chat = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(check(Api::Chat, false, 200, chat), Outcome::Success);
        let message = br#"{"type":"message","content":[{"type":"text","text":"hi"}]}"#;
        assert_eq!(check(Api::Messages, false, 200, message), Outcome::Success);
        let response = br#"{"object":"response","status":"completed","output":[]}"#;
        assert_eq!(
            check(Api::Responses, false, 200, response),
            Outcome::Success
        );
        let incomplete = br#"{"object":"response","status":"incomplete"}"#;
        assert_eq!(
            class(check(Api::Responses, false, 200, incomplete)),
            "unexpected answer"
        );
        assert_eq!(
            class(check(Api::Chat, false, 200, b"{\"cho")),
            "answer is not JSON"
        );
    }

    #[test]
    fn errors_are_classed_by_status_and_code_in_either_shape() {
        let openai = br#"{"error":{"message":"All accounts are over quota.","type":"rate_limit_error","code":"insufficient_quota"}}"#;
        let outcome = check(Api::Chat, true, 429, openai);
        assert_eq!(
            outcome,
            Outcome::Error {
                class: "HTTP 429 insufficient_quota".to_owned(),
                detail: "All accounts are over quota.".to_owned(),
            }
        );
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#;
        assert_eq!(
            class(check(Api::Messages, false, 529, anthropic)),
            "HTTP 529 overloaded_error"
        );
        assert_eq!(
            class(check(Api::Chat, false, 502, b"Bad Gateway")),
            "HTTP 502 (no error code)"
        );
    }

    #[test]
    fn streams_must_end_with_their_apis_last_event() {
        let chat = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(check(Api::Chat, true, 200, chat), Outcome::Success);
        let cut = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        assert_eq!(class(check(Api::Chat, true, 200, cut)), "stream cut short");
        let chat_error = b"data: {\"choices\":[],\"error\":{\"code\":\"data_inspection_failed\"}}\n\ndata: [DONE]\n\n";
        assert_eq!(
            class(check(Api::Chat, true, 200, chat_error)),
            "stream error event data_inspection_failed"
        );

        let messages = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        assert_eq!(check(Api::Messages, true, 200, messages), Outcome::Success);
        let messages_error = b"event: message_start\ndata: {}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"broken\"}}\n\n";
        assert_eq!(
            class(check(Api::Messages, true, 200, messages_error)),
            "stream error event api_error"
        );

        let responses = b"event: response.created\ndata: {}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\"}\n\n";
        assert_eq!(
            check(Api::Responses, true, 200, responses),
            Outcome::Success
        );
        let failed = b"event: response.failed\ndata: {\"response\":{\"error\":{\"code\":\"server_error\"}}}\n\n";
        assert_eq!(
            class(check(Api::Responses, true, 200, failed)),
            "stream error event server_error"
        );
        assert_eq!(
            class(check(Api::Responses, true, 200, b"")),
            "stream cut short"
        );
    }

    #[test]
    fn the_mix_has_every_kind_and_requests_are_json() {
        let mut rng = Rng::new(7);
        let mut rows = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            rows.insert(Kind::pick(&mut rng).row());
        }
        assert_eq!(
            rows.into_iter().collect::<Vec<_>>(),
            [
                "cancel mid-stream",
                "chat",
                "chat stream",
                "hang up early",
                "messages",
                "messages stream",
                "responses",
                "responses stream",
            ]
        );
        for api in Api::ALL {
            let body: Value = serde_json::from_slice(&api.body(true, 1)).unwrap();
            assert_eq!(body["model"], MODEL);
            assert_eq!(body["stream"], true);
            assert_eq!(
                api.body(true, 1),
                api.body(true, 1 + CONVERSATIONS),
                "a later turn of the same conversation"
            );
            assert_ne!(api.body(true, 1), api.body(true, 2));
        }
        assert_eq!(BEARER, format!("Bearer {API_KEY}"));
    }

    #[test]
    fn the_tally_adds_up_and_keeps_the_first_detail() {
        let mut tally = Tally::default();
        tally.add(Kind::Whole(Api::Chat), Outcome::Success);
        tally.add(Kind::CancelMidStream(Api::Chat), Outcome::Cancelled);
        for detail in ["first", "second"] {
            tally.add(
                Kind::Stream(Api::Messages),
                Outcome::Error {
                    class: "stream cut short".to_owned(),
                    detail: detail.to_owned(),
                },
            );
        }
        let total = tally.total();
        assert_eq!(
            (total.requests, total.success, total.cancelled, total.errors),
            (4, 1, 1, 2)
        );
        assert_eq!(tally.errors["stream cut short"].count, 2);
        assert_eq!(tally.errors["stream cut short"].sample, "first");
        assert_eq!(tally.rows["messages stream"].errors, 2);
        assert_eq!(tally.naming_an_email, 0);
        tally.add(
            Kind::Whole(Api::Chat),
            Outcome::Error {
                class: "HTTP 429 rate_limit_error".to_owned(),
                detail: "soak-6@example.com hit its quota".to_owned(),
            },
        );
        assert_eq!(tally.naming_an_email, 1);
    }
}
