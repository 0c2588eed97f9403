//! The chat API's state: settings, per-token scripts, API keys, expired tokens, rate windows,
//! counters and the recorded requests. Part of the fake's world; the handlers in `chat.rs`
//! read and update it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::record::RecordedRequest;
use crate::script::ChatStep;
use crate::tools::PreferredTool;

/// Default number of content chunks in a streamed answer.
const DEFAULT_STREAM_CHUNKS: usize = 3;
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The allowance a fake upstream states in `x-ratelimit-*` headers
/// ([`crate::FakeQwen::set_rate_limit_headers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// Requests allowed per token.
    pub requests: u64,
    /// Tokens allowed per token (stated, not counted).
    pub tokens: u64,
    /// The reset of both, as written in the header (e.g. `"6h0m0s"`).
    pub reset: String,
}

/// Chat settings, credentials and records; part of [`crate::state::World`].
pub(crate) struct ChatState {
    default_step: ChatStep,
    /// Per token: the script and the index of the next step (the last step repeats).
    scripts: HashMap<String, (Vec<ChatStep>, usize)>,
    pub(crate) stream_chunks: usize,
    /// Pause before each streamed event after the first.
    pub(crate) stream_interval: Duration,
    pub(crate) requests_per_minute: Option<u32>,
    /// `Retry-After` (seconds) of quota answers; `None` leaves it out.
    pub(crate) quota_retry_after: Option<u64>,
    /// The `x-ratelimit-*` headers of chat answers; `None` sends none.
    pub(crate) rate_limit_headers: Option<RateLimitHeaders>,
    /// Per token: chat requests counted against [`RateLimitHeaders::requests`].
    allowance_used: HashMap<String, u64>,
    /// Per token: when its requests within the last minute arrived.
    windows: HashMap<String, VecDeque<Instant>>,
    api_keys: HashSet<String>,
    expired: HashSet<String>,
    pub(crate) requests: Vec<RecordedRequest>,
    /// One permit per [`crate::FakeQwen::release_held_streams`] release.
    pub(crate) release: Arc<Semaphore>,
    /// How many streams lost their reader before they were complete.
    pub(crate) cancelled: Arc<watch::Sender<usize>>,
    answers: u64,
    /// Tool calls made so far (numbers `call_<n>`).
    calls: u64,
    /// The tools the model calls first, with their arguments.
    pub(crate) preferred: Vec<PreferredTool>,
}

impl ChatState {
    pub(crate) fn new() -> Self {
        Self {
            default_step: ChatStep::Answer,
            scripts: HashMap::new(),
            stream_chunks: DEFAULT_STREAM_CHUNKS,
            stream_interval: Duration::ZERO,
            requests_per_minute: None,
            quota_retry_after: None,
            rate_limit_headers: None,
            allowance_used: HashMap::new(),
            windows: HashMap::new(),
            api_keys: HashSet::new(),
            expired: HashSet::new(),
            requests: Vec::new(),
            release: Arc::new(Semaphore::new(0)),
            cancelled: Arc::new(watch::Sender::new(0)),
            answers: 0,
            calls: 0,
            preferred: Vec::new(),
        }
    }

    pub(crate) fn set_default_step(&mut self, step: ChatStep) {
        self.default_step = step;
    }

    /// Replaces `token`'s script; an empty script falls back to the default step.
    pub(crate) fn script(&mut self, token: &str, steps: Vec<ChatStep>) {
        if steps.is_empty() {
            self.scripts.remove(token);
        } else {
            self.scripts.insert(token.to_owned(), (steps, 0));
        }
    }

    pub(crate) fn add_api_key(&mut self, key: &str) {
        self.api_keys.insert(key.to_owned());
    }

    pub(crate) fn expire(&mut self, token: &str) {
        self.expired.insert(token.to_owned());
    }

    /// Whether the test expired this access token.
    pub(crate) fn is_expired(&self, token: &str) -> bool {
        self.expired.contains(token)
    }

    /// Whether the test added this API key.
    pub(crate) fn has_api_key(&self, key: &str) -> bool {
        self.api_keys.contains(key)
    }

    /// Counts one more answer; its number makes the answer's id.
    pub(crate) fn next_answer(&mut self) -> u64 {
        self.answers += 1;
        self.answers
    }

    /// Counts one more tool call; its number makes the call's id.
    pub(crate) fn next_call(&mut self) -> u64 {
        self.calls += 1;
        self.calls
    }

    pub(crate) fn next_step(&mut self, token: &str) -> ChatStep {
        let Some((steps, next)) = self.scripts.get_mut(token) else {
            return self.default_step;
        };
        let index = (*next).min(steps.len().saturating_sub(1));
        *next = next.saturating_add(1);
        steps.get(index).copied().unwrap_or(self.default_step)
    }

    /// Counts a chat request of `token` against its allowance: the `x-ratelimit-*` headers of
    /// its answer, when they are on.
    pub(crate) fn rate_limit_headers(
        &mut self,
        token: &str,
    ) -> Option<Vec<(&'static str, String)>> {
        let limits = self.rate_limit_headers.clone()?;
        let used = self.allowance_used.entry(token.to_owned()).or_default();
        *used += 1;
        Some(vec![
            ("x-ratelimit-limit-requests", limits.requests.to_string()),
            (
                "x-ratelimit-remaining-requests",
                limits.requests.saturating_sub(*used).to_string(),
            ),
            ("x-ratelimit-reset-requests", limits.reset.clone()),
            ("x-ratelimit-limit-tokens", limits.tokens.to_string()),
            ("x-ratelimit-remaining-tokens", limits.tokens.to_string()),
            ("x-ratelimit-reset-tokens", limits.reset),
        ])
    }

    /// Counts a request of `token` against the per-minute limit; the wait until a slot frees
    /// when it is over.
    pub(crate) fn over_rate(&mut self, token: &str, now: Instant) -> Option<Duration> {
        let limit = usize::try_from(self.requests_per_minute?).unwrap_or(usize::MAX);
        let window = self.windows.entry(token.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= RATE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            let oldest = window.front().copied().unwrap_or(now);
            return Some(RATE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)));
        }
        window.push_back(now);
        None
    }
}
