//! What one request used and how it ended, told once when it is over: to the usage ledger
//! (one [`Record`] per finished request), to the client key's `tokens-per-day`, and to the
//! day of the credential that served it (the pool's `spend_tokens`; a whole answer's tokens go
//! back to the caller, which counts them with the pool's report of the success).
//!
//! A [`Meter`] is made when a request reaches the upstream code and goes where the request's
//! end is decided: dropped with the request's future when the client leaves before the
//! answer (`client_cancel`), told the failure the client was answered with, or handed to the
//! answer: a whole answer's usage at once, a stream's when its body is dropped (ended, broken
//! or abandoned). Its drop records, so no end goes uncounted. Tokens are the upstream's
//! `usage`, else an estimate, marked so. A request that neither the ledger nor a token cap
//! (the client key's or a credential's) wants gets no meter, and its stream is not parsed for
//! usage.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use credential_pool::{Credential, Pool};
use serde::Deserialize;
use usage_ledger::{Api, FailureClass, Outcome, Record, Recorder};

use crate::client::Client;
use crate::recent::{Recent, same_text};
use crate::stream_error::StreamError;

/// Characters per token in the estimate (English text and code run at about four).
const CHARS_PER_TOKEN: u64 = 4;

/// Token usage as the upstream reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    /// OpenAI's (and DashScope's) place for prompt tokens read from the cache.
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<PromptDetails>,
    /// DeepSeek's.
    #[serde(default)]
    pub(crate) prompt_cache_hit_tokens: Option<u64>,
    /// Moonshot's.
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
}

impl Usage {
    /// Prompt tokens read from the upstream's cache, wherever it reports them.
    pub(crate) fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|details| details.cached_tokens)
            .or(self.prompt_cache_hit_tokens)
            .or(self.cached_tokens)
            .unwrap_or(0)
    }
}

/// Where finished requests are told: the usage ledger (or nowhere, when it is off), and the
/// pool, whose credentials count their tokens of the day. Cloned by one reference count, so a
/// meter touches one count shared by all requests instead of three.
#[derive(Debug, Clone)]
pub(crate) struct UsageSink {
    shared: Arc<Sink>,
}

#[derive(Debug)]
struct Sink {
    recorder: Recorder,
    pool: Arc<Pool<Credential>>,
    /// The credential of a request no credential served.
    no_credential: Arc<str>,
}

impl UsageSink {
    pub(crate) fn new(recorder: Recorder, pool: Arc<Pool<Credential>>) -> Self {
        Self {
            shared: Arc::new(Sink {
                recorder,
                pool,
                no_credential: Arc::from(""),
            }),
        }
    }

    /// A meter for a request of `client` on `api` for `model`, timed from `started`, when the
    /// ledger, the client's token cap or a credential's wants one.
    pub(crate) fn meter(
        &self,
        client: &Arc<Client>,
        api: Api,
        model: &str,
        started: Instant,
    ) -> Option<Meter> {
        let sink = &self.shared;
        let recording = sink.recorder.is_enabled();
        (recording || client.counts_tokens() || sink.pool.counts_tokens()).then(|| Meter {
            client: Arc::clone(client),
            sink: self.clone(),
            recording,
            key: None,
            api,
            model: Some(shared_model(model)),
            credential: None,
            request_bytes: 0,
            started,
            first_byte: None,
            answered_at: None,
            attempts: 0,
            outcome: Outcome::Failure(FailureClass::ClientCancel),
            usage: None,
            text_chars: 0,
        })
    }
}

thread_local! {
    /// The models this worker thread metered last, so a meter usually shares a name instead
    /// of allocating one.
    static RECENT_MODELS: RefCell<Recent<str, ()>> = const { RefCell::new(Recent::new()) };
}

/// `model` as a shared name, from this thread's recent models when it is one of them.
fn shared_model(model: &str) -> Arc<str> {
    RECENT_MODELS.with_borrow_mut(|recent| {
        Arc::clone(
            recent
                .get_or_make(model, same_text, || Arc::from(model), |_| ())
                .0,
        )
    })
}

/// The meter of one request.
#[derive(Debug)]
pub(crate) struct Meter {
    client: Arc<Client>,
    /// Where the request is told when it is over.
    sink: UsageSink,
    /// Whether the ledger is on.
    recording: bool,
    /// The pool key of the credential of the last attempt, whose day counts the tokens; `None`
    /// before any, and once a whole answer's tokens are left to the caller.
    key: Option<Arc<str>>,
    api: Api,
    /// The model sent upstream (moved into the record).
    model: Option<Arc<str>>,
    /// The credential of the last attempt, by its log label; `None` before any.
    credential: Option<Arc<str>>,
    /// The request body's size, for the prompt's estimate.
    request_bytes: u64,
    started: Instant,
    first_byte: Option<Instant>,
    /// When a whole answer was ready (a stream's end is its meter's drop).
    answered_at: Option<Instant>,
    attempts: u32,
    /// How the request ended: a client that left, until told otherwise.
    outcome: Outcome,
    usage: Option<Usage>,
    text_chars: u64,
}

/// The tokens of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    pub(crate) cached: u64,
    /// Whether these are estimated (the upstream reported no usage).
    pub(crate) estimated: bool,
}

impl Tokens {
    /// Prompt and completion tokens together: what a day's `tokens-per-day` counts.
    pub(crate) fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }

    /// The upstream's `usage`, else an estimate from the request's bytes and the answer's
    /// characters of text.
    pub(crate) fn of(usage: Option<Usage>, request_bytes: u64, text_chars: u64) -> Tokens {
        match usage {
            Some(usage) => Tokens {
                prompt: usage.prompt_tokens,
                completion: usage.completion_tokens,
                cached: usage.cached_tokens(),
                estimated: false,
            },
            None => Tokens {
                prompt: request_bytes.div_ceil(CHARS_PER_TOKEN),
                completion: text_chars.div_ceil(CHARS_PER_TOKEN),
                cached: 0,
                estimated: true,
            },
        }
    }
}

impl Meter {
    /// What the request used: nothing when nothing was answered (an upstream bills no refused
    /// request), else the upstream's usage or an estimate.
    fn tokens(&self) -> Tokens {
        let answered = self.outcome == Outcome::Success
            || self.usage.is_some()
            || self.text_chars > 0
            || self.first_byte.is_some();
        if answered {
            Tokens::of(self.usage, self.request_bytes, self.text_chars)
        } else {
            Tokens {
                prompt: 0,
                completion: 0,
                cached: 0,
                estimated: false,
            }
        }
    }

    /// An upstream attempt is made with the credential under pool key `key`, labelled
    /// `credential`, sending `request_bytes`.
    pub(crate) fn attempt(&mut self, key: &Arc<str>, credential: &Arc<str>, request_bytes: usize) {
        self.attempts += 1;
        self.request_bytes = request_bytes as u64;
        if self.key.as_deref() != Some(&**key) {
            self.key = Some(Arc::clone(key));
        }
        if self.credential.as_deref() != Some(&**credential) {
            self.credential = Some(Arc::clone(credential));
        }
    }

    /// The request failed with `class` before any answer.
    pub(crate) fn failed(mut self, class: FailureClass) {
        self.outcome = Outcome::Failure(class);
    }

    /// A whole answer is ready: successful with `usage` and `text_chars` of text.
    ///
    /// Returns the answer's tokens: the caller counts them on the credential, with the pool's
    /// report of the success (one lock instead of two), so this meter does not.
    pub(crate) fn answered(mut self, usage: Option<Usage>, text_chars: u64) -> u64 {
        let now = Instant::now();
        self.first_byte = Some(now);
        self.answered_at = Some(now);
        self.outcome = Outcome::Success;
        self.usage = usage;
        self.text_chars = text_chars;
        self.key = None;
        self.tokens().total()
    }

    /// The first byte of a streamed answer reached its body.
    pub(crate) fn first_byte(&mut self, at: Instant) {
        self.first_byte.get_or_insert(at);
    }

    /// A streamed answer is over: whole (`ended` and not `broken`), broken off with the
    /// failure `broken`, or abandoned by the client (neither), having reported `usage` and
    /// streamed `text_chars` of text.
    pub(crate) fn streamed(
        mut self,
        ended: bool,
        broken: Option<FailureClass>,
        usage: Option<Usage>,
        text_chars: u64,
    ) {
        self.outcome = match broken {
            Some(class) => Outcome::Failure(class),
            None if ended => Outcome::Success,
            None => Outcome::Failure(FailureClass::ClientCancel),
        };
        self.usage = usage;
        self.text_chars = text_chars;
    }
}

/// The ledger's class of a stream that broke off: silence is a timeout, anything else an
/// upstream failure.
pub(crate) fn stream_failure_class(error: &StreamError) -> FailureClass {
    match error {
        StreamError::Idle(_) => FailureClass::Timeout,
        StreamError::Upstream(_) | StreamError::Cut | StreamError::LineTooLong(_) => {
            FailureClass::Upstream5xx
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let tokens = self.tokens();
        let now = SystemTime::now();
        let instant = self.answered_at.unwrap_or_else(Instant::now);
        let spent = tokens.total();
        let sink = &*self.sink.shared;
        self.client.spend(spent, now);
        if self.client.counts_tokens() {
            sink.pool.spend_client_tokens(&self.client.name, spent, now);
        }
        if let Some(key) = &self.key
            && spent > 0
        {
            sink.pool.spend_tokens(key, spent, instant, now);
        }
        if !self.recording {
            return;
        }
        sink.recorder.record(Record {
            at: now,
            credential: self
                .credential
                .take()
                .unwrap_or_else(|| Arc::clone(&sink.no_credential)),
            client: Arc::clone(&self.client.name),
            model: self
                .model
                .take()
                .unwrap_or_else(|| Arc::clone(&sink.no_credential)),
            api: self.api,
            outcome: self.outcome,
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cached_tokens: tokens.cached,
            tokens_estimated: tokens.estimated,
            latency: instant.saturating_duration_since(self.started),
            ttft: self
                .first_byte
                .map(|at| at.saturating_duration_since(self.started)),
            attempts: self.attempts,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_shares_the_names_of_its_recent_models() {
        let first = shared_model("model-a");
        assert!(Arc::ptr_eq(&first, &shared_model("model-a")));
        for other in ["b", "c", "d"] {
            shared_model(other);
        }
        assert!(
            Arc::ptr_eq(&first, &shared_model("model-a")),
            "still among the last four"
        );
        for other in ["e", "f", "g", "h"] {
            shared_model(other);
        }
        let again = shared_model("model-a");
        assert!(!Arc::ptr_eq(&first, &again), "forgotten after four others");
        assert_eq!(&*again, "model-a");
    }

    #[test]
    fn reported_usage_wins_and_its_absence_is_estimated_and_marked() {
        let usage = Usage {
            prompt_tokens: 12,
            completion_tokens: 30,
            ..Usage::default()
        };
        assert_eq!(
            Tokens::of(Some(usage), 4000, 4000),
            Tokens {
                prompt: 12,
                completion: 30,
                cached: 0,
                estimated: false
            }
        );
        assert_eq!(
            Tokens::of(None, 401, 8),
            Tokens {
                prompt: 101,
                completion: 2,
                cached: 0,
                estimated: true
            }
        );
    }
}
