//! Many large request bodies at once through cliproxy, for its peak memory: what
//! `body-memory-budget` bounds. Each scenario runs a fresh `cliproxy serve` (so its VmHWM
//! is this load's alone) with Qwen OAuth accounts, the path that parses, reshapes or
//! translates every body, and sends [`BODY_CLIENTS`] requests of [`BODY_BYTES`] at once,
//! each on its own connection. A second run of each shape raises the budget out of the way,
//! to show what the bound saves.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use tokio::task::JoinSet;

use super::{
    QWEN_ACCOUNTS,
    cliproxy::{Instance, Layout, Probe, Upstream},
    load::{API_KEY, MODEL},
    net,
};

/// Requests sent at once.
pub(crate) const BODY_CLIENTS: usize = 32;
/// Size of each request body: most of the 32 MiB `max-body-bytes` allows.
pub(crate) const BODY_BYTES: usize = 24 * 1024 * 1024;
/// cliproxy's default `body-memory-budget`.
pub(crate) const DEFAULT_BUDGET: u64 = 512 * 1024 * 1024;
/// The budget of the comparison run: more than all the bodies could take.
const UNBOUNDED_BUDGET: u64 = 64 * 1024 * 1024 * 1024;
/// Text per message of a body.
const MESSAGE_BYTES: usize = 256 * 1024;
/// Longest wait for all answers of a scenario.
const BODIES_WAIT: Duration = Duration::from_secs(300);

/// Which API the bodies are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `POST /v1/chat/completions`: read, summarised, parsed and reshaped for Qwen.
    Chat,
    /// `POST /v1/messages`: read, parsed, translated to chat completions, reshaped.
    Messages,
}

impl Shape {
    fn path(self) -> &'static str {
        match self {
            Shape::Chat => "/v1/chat/completions",
            Shape::Messages => "/v1/messages",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Chat => "chat completions",
            Shape::Messages => "Messages",
        }
    }

    /// A body of about [`BODY_BYTES`]: a conversation of text messages, as an agent's long
    /// session sends (each message [`MESSAGE_BYTES`] of prose with code-like punctuation).
    fn body(self) -> Bytes {
        let line = "let total = items.iter().map(|item| item.price * item.count).sum(); // ok\\n";
        let text: String = line.repeat(MESSAGE_BYTES / line.len());
        let messages = BODY_BYTES / (text.len() + 64);
        let mut body = String::with_capacity(BODY_BYTES + 1024);
        let _ = write!(
            body,
            "{{\"model\":\"{MODEL}\",\"max_tokens\":16,\"messages\":["
        );
        for i in 0..messages {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            if i > 0 {
                body.push(',');
            }
            match self {
                Shape::Chat => {
                    let _ = write!(body, "{{\"role\":\"{role}\",\"content\":\"{text}\"}}");
                }
                Shape::Messages => {
                    let _ = write!(
                        body,
                        "{{\"role\":\"{role}\",\"content\":[{{\"type\":\"text\",\"text\":\"{text}\"}}]}}"
                    );
                }
            }
        }
        if messages.is_multiple_of(2) {
            // Messages must end with the user's turn.
            let _ = write!(body, ",{{\"role\":\"user\",\"content\":\"go on\"}}");
        }
        body.push_str("]}");
        Bytes::from(body)
    }
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub(crate) struct LargeBodies {
    pub(crate) shape: Shape,
    /// The `body-memory-budget` cliproxy ran with.
    pub(crate) budget: u64,
    pub(crate) body_bytes: usize,
    pub(crate) clients: usize,
    /// Requests answered 200.
    pub(crate) served: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) rss_idle_kb: Option<u64>,
    /// VmHWM after all answers.
    pub(crate) peak_kb: Option<u64>,
    pub(crate) elapsed: Duration,
}

impl LargeBodies {
    /// Whether this run had the default budget (the one the bound is about).
    pub(crate) fn bounded(&self) -> bool {
        self.budget == DEFAULT_BUDGET
    }

    /// The table row's label.
    pub(crate) fn label(&self) -> String {
        format!(
            "peak RSS, {} × {} MiB {} bodies at once, `body-memory-budget` {}",
            self.clients,
            self.body_bytes / (1024 * 1024),
            self.shape.name(),
            if self.bounded() {
                "512 MiB (default)".to_owned()
            } else {
                format!("{} GiB (no bound)", self.budget >> 30)
            }
        )
    }
}

/// Runs `shape` against a fresh cliproxy with `budget`.
pub(crate) async fn measure(
    binary: &Path,
    work: &Path,
    stub: SocketAddr,
    shape: Shape,
    budget: Option<u64>,
) -> Result<LargeBodies> {
    let budget_value = budget.unwrap_or(DEFAULT_BUDGET);
    let layout = Layout::create(&work.join(format!("bodies-{shape:?}-{budget_value}")))?;
    layout.write_qwen_accounts(QWEN_ACCOUNTS, stub)?;
    let port = net::free_port()?;
    let extra = budget.map_or(String::new(), |b| format!("body-memory-budget = {b}\n"));
    layout.write_config_with(port, stub, Upstream::QwenAccounts, &extra)?;
    let mut instance = Instance::spawn(binary, &layout, port)?;
    instance.wait_ready(Probe::Health).await?;
    let rss_idle_kb = instance.memory().map(|m| m.rss_kb);

    let body = shape.body();
    let began = Instant::now();
    let mut requests = JoinSet::new();
    for _ in 0..BODY_CLIENTS {
        requests.spawn(send(instance.addr(), shape.path(), body.clone()));
    }
    let mut served = 0;
    let mut errors = Vec::new();
    let all = async {
        while let Some(outcome) = requests.join_next().await {
            match outcome {
                Ok(Ok(())) => served += 1,
                Ok(Err(error)) => errors.push(error),
                Err(panic) => errors.push(format!("a client task failed: {panic}")),
            }
        }
    };
    if tokio::time::timeout(BODIES_WAIT, all).await.is_err() {
        errors.push(format!("not all answers within {BODIES_WAIT:?}"));
    }
    let elapsed = began.elapsed();
    let peak_kb = instance.memory().map(|m| m.hwm_kb);
    errors.dedup();
    errors.truncate(3);
    Ok(LargeBodies {
        shape,
        budget: budget_value,
        body_bytes: body.len(),
        clients: BODY_CLIENTS,
        served,
        errors,
        rss_idle_kb,
        peak_kb,
        elapsed,
    })
}

impl LargeBodies {
    /// A scenario that could not run.
    pub(crate) fn failed(shape: Shape, budget: Option<u64>, error: &anyhow::Error) -> LargeBodies {
        LargeBodies {
            shape,
            budget: budget.unwrap_or(DEFAULT_BUDGET),
            body_bytes: BODY_BYTES,
            clients: BODY_CLIENTS,
            served: 0,
            errors: vec![format!("{error:#}")],
            rss_idle_kb: None,
            peak_kb: None,
            elapsed: Duration::ZERO,
        }
    }
}

/// The comparison budget, for [`measure`].
pub(crate) fn unbounded() -> Option<u64> {
    Some(UNBOUNDED_BUDGET)
}

/// POSTs `body` to `path` on a connection of its own and reads the whole answer.
async fn send(addr: SocketAddr, path: &'static str, body: Bytes) -> Result<(), String> {
    let mut sender = net::connect::<Full<Bytes>>(addr)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = hyper::Uri::from_static(path);
    let headers = request.headers_mut();
    headers.insert(HOST, net::host_header(addr));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {API_KEY}")).expect("a header value"),
    );
    sender
        .ready()
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    if status.is_success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
        Err(format!("HTTP {status}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_planned_size_ending_with_the_user() {
        for shape in [Shape::Chat, Shape::Messages] {
            let body = shape.body();
            assert!(body.len() <= BODY_BYTES + 1024, "{shape:?}: {}", body.len());
            assert!(
                body.len() >= BODY_BYTES * 9 / 10,
                "{shape:?}: {}",
                body.len()
            );
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let messages = json["messages"].as_array().unwrap();
            assert_eq!(messages.last().unwrap()["role"], "user", "{shape:?}");
        }
    }
}
