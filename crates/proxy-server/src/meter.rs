//! What one request's answer used, told once when the answer is over: its tokens as the
//! upstream reported them, or an estimate when it reported none (a stream asked for without
//! usage). Today the tokens count against the client key's `tokens-per-day`. A request whose
//! client has no token limit gets no meter, and its stream is not parsed for it.

use std::sync::Arc;
use std::time::SystemTime;

use crate::client::Client;
use crate::upstream::Usage;

/// Characters per token in the estimate (English text and code run at about four).
const CHARS_PER_TOKEN: u64 = 4;

/// The meter of one request.
#[derive(Debug)]
pub(crate) struct Meter {
    client: Arc<Client>,
    /// The request body's size, for the prompt's estimate.
    request_bytes: u64,
}

/// The tokens of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    /// Whether these are estimated (the upstream reported no usage).
    pub(crate) estimated: bool,
}

impl Tokens {
    /// The upstream's `usage`, else an estimate from the request's bytes and the answer's
    /// characters of text.
    pub(crate) fn of(usage: Option<Usage>, request_bytes: u64, text_chars: u64) -> Tokens {
        match usage {
            Some(usage) => Tokens {
                prompt: usage.prompt_tokens,
                completion: usage.completion_tokens,
                estimated: false,
            },
            None => Tokens {
                prompt: request_bytes.div_ceil(CHARS_PER_TOKEN),
                completion: text_chars.div_ceil(CHARS_PER_TOKEN),
                estimated: true,
            },
        }
    }
}

impl Meter {
    /// A meter for a request of `client` with a body of `request_bytes`, when anything wants
    /// its tokens.
    pub(crate) fn new(client: &Arc<Client>, request_bytes: usize) -> Option<Meter> {
        client.counts_tokens().then(|| Meter {
            client: Arc::clone(client),
            request_bytes: request_bytes as u64,
        })
    }

    /// Ends the request: `usage` as reported, `text_chars` of text in the answer.
    pub(crate) fn finish(self, usage: Option<Usage>, text_chars: u64) {
        let tokens = Tokens::of(usage, self.request_bytes, text_chars);
        self.client
            .spend(tokens.prompt + tokens.completion, SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_usage_wins_and_its_absence_is_estimated_and_marked() {
        let usage = Usage {
            prompt_tokens: 12,
            completion_tokens: 30,
        };
        assert_eq!(
            Tokens::of(Some(usage), 4000, 4000),
            Tokens {
                prompt: 12,
                completion: 30,
                estimated: false
            }
        );
        assert_eq!(
            Tokens::of(None, 401, 8),
            Tokens {
                prompt: 101,
                completion: 2,
                estimated: true
            }
        );
    }
}
