//! What the server tells the ledger about one finished request: [`Record`], with the API it
//! came in on ([`Api`]) and how it ended ([`Outcome`], [`FailureClass`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One finished request, as the server reports it once the answer has ended (or failed, or
/// the client left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the request finished. It is counted in the UTC hour this falls in.
    pub at: SystemTime,
    /// The credential that served it, by its log label: `dashscope#2` for an API key, the
    /// account's email for a Qwen account. Empty when no credential was chosen (none could
    /// serve the model, or all were cooling down).
    pub credential: Arc<str>,
    /// The name of the client key the request came with; empty for requests without one.
    pub client: Arc<str>,
    /// The model served (after aliases), as sent upstream.
    pub model: Arc<str>,
    /// The API the client spoke.
    pub api: Api,
    /// How the request ended.
    pub outcome: Outcome,
    /// Prompt tokens, from the upstream's `usage` (streamed or not), else estimated.
    pub prompt_tokens: u64,
    /// Completion tokens, from the upstream's `usage`, else estimated.
    pub completion_tokens: u64,
    /// Prompt tokens the upstream read from its cache (a part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// The upstream sent no usage: the token counts are the server's estimate.
    pub tokens_estimated: bool,
    /// From the request's arrival to the end of the answer sent to the client.
    pub latency: Duration,
    /// From the request's arrival to the first byte of the answer's body; `None` when no body
    /// byte was sent.
    pub ttft: Option<Duration>,
    /// Upstream attempts it took (retries and failovers included); 0 when none was made.
    pub attempts: u32,
}

#[cfg(test)]
impl Record {
    /// A successful one-attempt request of one prompt and one completion token, for this
    /// crate's unit tests.
    pub(crate) fn success(
        credential: &Arc<str>,
        client: &Arc<str>,
        model: &Arc<str>,
        at: SystemTime,
    ) -> Record {
        Record {
            at,
            credential: Arc::clone(credential),
            client: Arc::clone(client),
            model: Arc::clone(model),
            api: Api::ChatCompletions,
            outcome: Outcome::Success,
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            tokens_estimated: false,
            latency: Duration::from_millis(5),
            ttft: None,
            attempts: 1,
        }
    }
}

/// The API a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// OpenAI chat completions: `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI Responses: `POST /v1/responses`.
    Responses,
    /// Anthropic Messages: `POST /v1/messages`.
    Messages,
}

impl Api {
    /// Every API, in the order of their names in reports.
    pub const ALL: [Api; 3] = [Api::ChatCompletions, Api::Responses, Api::Messages];

    /// The name stored and shown: `chat-completions`, `responses` or `messages`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat-completions",
            Api::Responses => "responses",
            Api::Messages => "messages",
        }
    }

    /// The API called [`Api::as_str`] `name`.
    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.as_str() == name)
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The client got the whole answer.
    Success,
    /// It did not; why, in the classes the ledger counts.
    Failure(FailureClass),
}

/// Why a request failed. The class describes the last attempt's failure, the one the client
/// was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// The credential's quota is used up (a quota error: `insufficient_quota`, a quota of the
    /// day, a 429 or 403 that says quota).
    Quota,
    /// A rate limit: the upstream's 429 that is not about quota, or the proxy's own
    /// `requests-per-minute` cap left no credential to serve.
    Rate,
    /// The upstream refused the credential: 401 after a refresh, 403, a refresh token that
    /// needs a new login.
    Refused,
    /// The upstream failed: a 5xx, or an answer that is no answer (an HTML page, a cut body).
    Upstream5xx,
    /// No answer, or no more of it, within `upstream-idle-timeout`.
    Timeout,
    /// The client hung up before the answer ended.
    ClientCancel,
    /// Anything else: the upstream unreachable, an upstream 4xx about the request (passed to
    /// the client as it is), a request the proxy refused, no credential for the model.
    Other,
}

impl FailureClass {
    /// Every class, in the order of their counters.
    pub const ALL: [FailureClass; 7] = [
        FailureClass::Quota,
        FailureClass::Rate,
        FailureClass::Refused,
        FailureClass::Upstream5xx,
        FailureClass::Timeout,
        FailureClass::ClientCancel,
        FailureClass::Other,
    ];

    /// How many classes there are.
    pub const COUNT: usize = FailureClass::ALL.len();

    /// The name in reports and column names: `quota`, `rate`, `refused`, `upstream_5xx`,
    /// `timeout`, `client_cancel`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Quota => "quota",
            FailureClass::Rate => "rate",
            FailureClass::Refused => "refused",
            FailureClass::Upstream5xx => "upstream_5xx",
            FailureClass::Timeout => "timeout",
            FailureClass::ClientCancel => "client_cancel",
            FailureClass::Other => "other",
        }
    }

    /// This class's place in [`FailureClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_sit_at_their_index_and_names_round_trip() {
        for (index, class) in FailureClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), index);
        }
        for api in Api::ALL {
            assert_eq!(Api::from_name(api.as_str()), Some(api));
        }
        assert_eq!(Api::from_name("chat"), None);
    }
}
