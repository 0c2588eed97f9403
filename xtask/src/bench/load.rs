//! The load generator: `C` keep-alive HTTP/1 connections, each sending
//! chat completion requests back to back for a warm-up and then a measured
//! period, recording per-request latency (and, for streams, the time to the
//! first body byte).
//!
//! Every answer is checked: a non-2xx status, a transport error, a timeout,
//! or a body that is not what the stub sent (a streamed answer must carry
//! all [`STREAM_CHUNKS`] events and `data: [DONE]`) counts as an error.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request,
    client::conn::http1::SendRequest,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{net, stub::STREAM_CHUNKS, summary::Summary};

/// The API key cliproxy is configured with; the stub and baseline ignore it.
pub(crate) const API_KEY: &str = "bench-key";
/// `Authorization` header value carrying [`API_KEY`].
const BEARER: &str = "Bearer bench-key";
/// The model every request asks for.
pub(crate) const MODEL: &str = "bench-model";

/// Longest wait for one whole answer before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an error before the next try, so a dead target is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(5);
/// Errors whose text is kept for the report.
const ERRORS_KEPT: usize = 3;

/// Where to send requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
}

/// One measurement: which kind of request, how many connections, how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) stream: bool,
    pub(crate) concurrency: usize,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// What one measurement found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Successful requests started in the measured period.
    pub(crate) requests: u64,
    /// Failed requests (warm-up included).
    pub(crate) errors: u64,
    /// The first few error messages.
    pub(crate) error_samples: Vec<String>,
    /// From the start of the measured period to the last answer (summed
    /// over merged measurements).
    pub(crate) elapsed: Duration,
    /// Whole request: send to last body byte.
    pub(crate) latency: Option<Summary>,
    /// Streams only: send to first body byte.
    pub(crate) ttfb: Option<Summary>,
    /// The raw latencies behind `latency`.
    pub(crate) latency_samples: Vec<Duration>,
    /// The raw times to first byte behind `ttfb`.
    pub(crate) ttfb_samples: Vec<Duration>,
}

impl Outcome {
    pub(crate) fn requests_per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.requests as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// Adds `other`'s requests, errors, time and samples to this one;
    /// call [`Outcome::summarise`] afterwards.
    pub(crate) fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.errors += other.errors;
        for message in other.error_samples {
            self.keep_error(message);
        }
        self.elapsed += other.elapsed;
        self.latency_samples.extend(other.latency_samples);
        self.ttfb_samples.extend(other.ttfb_samples);
    }

    /// Recomputes the percentiles from all samples.
    pub(crate) fn summarise(&mut self) {
        self.latency = Summary::of(&mut self.latency_samples);
        self.ttfb = Summary::of(&mut self.ttfb_samples);
    }

    fn note_error(&mut self, message: String) {
        self.errors += 1;
        self.keep_error(message);
    }

    fn keep_error(&mut self, message: String) {
        if self.error_samples.len() < ERRORS_KEPT && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }
}

/// Timing of one successful exchange.
struct Timing {
    first_byte: Duration,
    total: Duration,
}

/// What one connection saw.
#[derive(Default)]
struct WorkerLog {
    outcome: Outcome,
    last_done: Option<Instant>,
}

/// Runs `plan` against `target` and returns the merged result.
pub(crate) async fn run(target: Target, plan: Plan) -> Outcome {
    let measure_from = Instant::now() + plan.warmup;
    let until = measure_from + plan.measure;
    let workers: Vec<JoinHandle<WorkerLog>> = (0..plan.concurrency.max(1))
        .map(|_| tokio::spawn(worker(target.addr, plan.stream, measure_from, until)))
        .collect();

    let mut merged = Outcome::default();
    let mut last_done = measure_from;
    for worker in workers {
        match worker.await {
            Ok(log) => {
                merged.merge(log.outcome);
                if let Some(done) = log.last_done {
                    last_done = last_done.max(done);
                }
            }
            Err(error) => merged.note_error(format!("load worker failed: {error}")),
        }
    }
    merged.elapsed = last_done.saturating_duration_since(measure_from);
    merged.summarise();
    merged
}

async fn worker(
    addr: SocketAddr,
    stream: bool,
    measure_from: Instant,
    until: Instant,
) -> WorkerLog {
    let mut log = WorkerLog::default();
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let body = request_body(stream);
    while Instant::now() < until {
        let sender = match conn.as_mut() {
            Some(sender) if !sender.is_closed() => sender,
            _ => match tokio::time::timeout(REQUEST_TIMEOUT, net::connect(addr)).await {
                Ok(Ok(sender)) => conn.insert(sender),
                Ok(Err(error)) => {
                    log.outcome.note_error(format!("{error:#}"));
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
                Err(_) => {
                    log.outcome
                        .note_error(format!("connecting to {addr} timed out"));
                    continue;
                }
            },
        };
        let began = Instant::now();
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(sender, chat_request(addr, body.clone()), stream),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no full answer within {REQUEST_TIMEOUT:?}")));
        match result {
            Ok(timing) => {
                if began >= measure_from {
                    log.outcome.requests += 1;
                    log.outcome.latency_samples.push(timing.total);
                    if stream {
                        log.outcome.ttfb_samples.push(timing.first_byte);
                    }
                    log.last_done = Some(Instant::now());
                }
            }
            Err(message) => {
                log.outcome.note_error(message);
                // The connection may be mid-answer: start over on a new one.
                conn = None;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    log
}

/// Sends one request on a fresh connection and checks the answer.
pub(crate) async fn once(target: Target, stream: bool) -> Result<(), String> {
    let attempt = async {
        let mut sender = net::connect(target.addr)
            .await
            .map_err(|e| format!("{e:#}"))?;
        exchange(
            &mut sender,
            chat_request(target.addr, request_body(stream)),
            stream,
        )
        .await
        .map(|_| ())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no full answer within {REQUEST_TIMEOUT:?}")))
}

/// The JSON body of a chat completion request.
pub(crate) fn request_body(stream: bool) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"Say hello."}}],"stream":{stream}}}"#
    ))
}

/// A `POST /v1/chat/completions` for `addr`.
pub(crate) fn chat_request(addr: SocketAddr, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = hyper::Uri::from_static("/v1/chat/completions");
    let headers = req.headers_mut();
    headers.insert(HOST, net::host_header(addr));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(AUTHORIZATION, HeaderValue::from_static(BEARER));
    req
}

/// Sends one request and reads the whole answer, checking it.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    stream: bool,
) -> Result<Timing, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    let began = Instant::now();
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut data = Vec::with_capacity(if stream { 8 * 1024 } else { 1024 });
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the answer failed: {e}"))?;
        if let Ok(chunk) = frame.into_data()
            && !chunk.is_empty()
        {
            first_byte.get_or_insert_with(|| began.elapsed());
            data.extend_from_slice(&chunk);
        }
    }
    let total = began.elapsed();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", excerpt(&data)));
    }
    check_answer(&data, stream)?;
    Ok(Timing {
        first_byte: first_byte.unwrap_or(total),
        total,
    })
}

/// Checks that an answer is what the stub sends.
pub(crate) fn check_answer(data: &[u8], stream: bool) -> Result<(), String> {
    if !stream {
        let text = std::str::from_utf8(data).map_err(|_| "the answer is not UTF-8".to_owned())?;
        return if text.contains("\"choices\"") {
            Ok(())
        } else {
            Err(format!("unexpected answer: {}", excerpt(data)))
        };
    }
    let (events, done) = count_sse_events(data);
    if events != STREAM_CHUNKS || !done {
        return Err(format!(
            "stream carried {events} of {STREAM_CHUNKS} events{}",
            if done { "" } else { " and no data: [DONE]" }
        ));
    }
    Ok(())
}

/// Counts the `data:` events of an SSE body other than `[DONE]`, and whether
/// the last event is `[DONE]`.
fn count_sse_events(data: &[u8]) -> (usize, bool) {
    let text = String::from_utf8_lossy(data);
    let mut events = 0;
    let mut done = false;
    for line in text.lines() {
        let Some(payload) = line.strip_prefix("data:") else {
            continue;
        };
        if payload.trim() == "[DONE]" {
            done = true;
        } else {
            events += 1;
            done = false;
        }
    }
    (events, done)
}

/// The start of a body as text, for error messages.
pub(crate) fn excerpt(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Streams opened by [`open_streams`], each past its first event.
pub(crate) struct OpenStreams {
    /// Streams that got their first event.
    pub(crate) opened: usize,
    pub(crate) errors: Vec<String>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

/// Opens `count` streaming requests to `target` at once, each on its own
/// connection, and waits (at most `wait`) until each has received its first
/// event. The streams then stay open until the upstream ends them.
pub(crate) async fn open_streams(target: Target, count: usize, wait: Duration) -> OpenStreams {
    let (opened_tx, mut opened_rx) = mpsc::channel::<Result<(), String>>(count.max(1));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let opened = opened_tx.clone();
            tokio::spawn(hold_one(target.addr, opened))
        })
        .collect();
    drop(opened_tx);

    let mut streams = OpenStreams {
        opened: 0,
        errors: Vec::new(),
        tasks,
    };
    let deadline = tokio::time::Instant::now() + wait;
    for _ in 0..count {
        match tokio::time::timeout_at(deadline, opened_rx.recv()).await {
            Ok(Some(Ok(()))) => streams.opened += 1,
            Ok(Some(Err(message))) => {
                if streams.errors.len() < ERRORS_KEPT {
                    streams.errors.push(message);
                }
            }
            Ok(None) => break,
            Err(_) => {
                streams.errors.push(format!(
                    "not every stream got its first event within {wait:?}"
                ));
                break;
            }
        }
    }
    streams
}

impl OpenStreams {
    /// Waits (at most `wait`) for the streams to end; returns how many ended
    /// with a complete, valid answer and the first errors.
    pub(crate) async fn finish(self, wait: Duration) -> (usize, Vec<String>) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut complete = 0;
        let mut errors = Vec::new();
        for task in self.tasks {
            let abort = task.abort_handle();
            let message = match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Ok(()))) => {
                    complete += 1;
                    continue;
                }
                Ok(Ok(Err(message))) => message,
                Ok(Err(error)) => format!("stream task failed: {error}"),
                Err(_) => {
                    abort.abort();
                    format!("stream did not end within {wait:?}")
                }
            };
            if errors.len() < ERRORS_KEPT && !errors.contains(&message) {
                errors.push(message);
            }
        }
        (complete, errors)
    }
}

async fn hold_one(
    addr: SocketAddr,
    opened: mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let mut told = false;
    let result = hold_one_inner(addr, &opened, &mut told).await;
    if let Err(message) = &result
        && !told
    {
        // The waiter counts one message per stream: tell it of the failure.
        let _ = opened.send(Err(message.clone())).await;
    }
    result
}

async fn hold_one_inner(
    addr: SocketAddr,
    opened: &mpsc::Sender<Result<(), String>>,
    told: &mut bool,
) -> Result<(), String> {
    let mut sender = net::connect::<Full<Bytes>>(addr)
        .await
        .map_err(|e| format!("{e:#}"))?;
    sender
        .ready()
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    let response = sender
        .send_request(chat_request(addr, request_body(true)))
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the stream failed: {e}"))?;
        if let Ok(chunk) = frame.into_data() {
            data.extend_from_slice(&chunk);
            if !*told && status.is_success() && !chunk.is_empty() {
                *told = true;
                let _ = opened.send(Ok(())).await;
            }
        }
    }
    if !status.is_success() {
        let message = format!("HTTP {status}: {}", excerpt(&data));
        return Err(message);
    }
    if !*told {
        return Err("the stream ended without any event".to_owned());
    }
    check_answer(&data, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_counted() {
        let body = b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(count_sse_events(body), (2, true));
        assert_eq!(count_sse_events(b"data: {}\n\n"), (1, false));
        assert_eq!(count_sse_events(b": comment\n\ndata:[DONE]\n\n"), (0, true));
    }

    #[test]
    fn bearer_carries_the_key() {
        assert_eq!(BEARER, format!("Bearer {API_KEY}"));
    }

    #[test]
    fn request_body_is_json() {
        let body: serde_json::Value = serde_json::from_slice(&request_body(true)).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], MODEL);
    }

    #[test]
    fn merged_rounds_pool_their_samples() {
        let round = |requests: u64, micros: &[u64]| {
            let mut outcome = Outcome {
                requests,
                elapsed: Duration::from_secs(1),
                latency_samples: micros.iter().map(|&m| Duration::from_micros(m)).collect(),
                ..Outcome::default()
            };
            outcome.summarise();
            outcome
        };
        let mut total = round(100, &[10, 20, 30]);
        total.merge(round(300, &[40, 50, 60, 70]));
        total.summarise();
        assert!((total.requests_per_sec() - 200.0).abs() < 1e-9);
        let latency = total.latency.unwrap();
        assert_eq!(latency.count, 7);
        assert_eq!(latency.p50, Duration::from_micros(40));
        assert_eq!(latency.max, Duration::from_micros(70));
        assert_eq!(total.ttfb, None);
    }

    #[test]
    fn throughput_uses_the_measured_period() {
        let outcome = Outcome {
            requests: 500,
            elapsed: Duration::from_millis(250),
            ..Outcome::default()
        };
        assert!((outcome.requests_per_sec() - 2000.0).abs() < 1e-6);
        assert_eq!(Outcome::default().requests_per_sec(), 0.0);
    }
}
