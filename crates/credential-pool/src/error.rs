//! Why no credential could be selected, with user-facing messages.

use std::time::Duration;

/// Hint appended to messages whose remedy is more credentials.
const ADD_CREDENTIALS: &str = "add accounts with `cliproxy login qwen` or more API keys";

/// Why [`Pool::select`](crate::Pool::select) found no credential.
///
/// When several reasons apply, the first that fits wins, in this order:
/// `UnknownModel`, then `Exhausted` (some candidate is otherwise usable but
/// was already tried for this request), then `CoolingDown` (some candidate
/// only waits for a cooldown or a rate slot), then `Disabled`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No credential serves the model at all.
    #[error("{}", unknown_model_message(.model, .known))]
    UnknownModel {
        /// The requested model id.
        model: String,
        /// Every model id some credential serves, sorted.
        known: Vec<String>,
    },
    /// Every candidate not disabled is cooling down or at its rate cap.
    #[error(
        "{} for {model} {} cooling down after quota or rate limits; retry in {}, or {ADD_CREDENTIALS}",
        count_phrase(*.waiting, "usable "), if *.waiting == 1 { "is" } else { "are" }, human_duration(*.retry_after)
    )]
    CoolingDown {
        /// The requested model id.
        model: String,
        /// Time until the earliest waiting credential becomes usable again
        /// (its cooldown ends or its oldest request leaves the sliding minute).
        retry_after: Duration,
        /// How many credentials wait.
        waiting: usize,
    },
    /// Every candidate is out of rotation: disabled, refused by the upstream, or in need of
    /// a new login.
    #[error(
        "{} for {model} {} out of rotation (disabled, refused by the upstream, or in need of a new login); `cliproxy accounts list` shows which and why: log an account in again with `cliproxy login qwen`, or enable one with `cliproxy accounts enable`",
        count_phrase(*.count, ""), if *.count == 1 { "is" } else { "are" }
    )]
    Disabled {
        /// The requested model id.
        model: String,
        /// How many credentials are disabled.
        count: usize,
    },
    /// No credential that serves the model is one the client may use.
    #[error(
        "this client key may not use any credential that serves {model}; use another model, or ask the operator to widen the key's `groups` or `credentials`"
    )]
    NotAllowed {
        /// The requested model id.
        model: String,
    },
    /// Every usable candidate was already tried for this request.
    #[error(
        "every available credential for {model} failed for this request; retry shortly, or {ADD_CREDENTIALS}"
    )]
    Exhausted {
        /// The requested model id.
        model: String,
    },
}

impl Unavailable {
    /// How long the caller should wait before retrying, when known
    /// (suitable for a `Retry-After` header).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CoolingDown { retry_after, .. } => Some(*retry_after),
            Self::UnknownModel { .. }
            | Self::Disabled { .. }
            | Self::NotAllowed { .. }
            | Self::Exhausted { .. } => None,
        }
    }
}

fn unknown_model_message(model: &str, known: &[String]) -> String {
    if known.is_empty() {
        return format!("no credential serves model {model}; {ADD_CREDENTIALS}");
    }
    format!(
        "no credential serves model {model}; known models: {}",
        known.join(", ")
    )
}

/// "the only credential" or "all 3 credentials", with `adjective` (empty or
/// ending in a space) before "credential".
fn count_phrase(count: usize, adjective: &str) -> String {
    match count {
        1 => format!("the only {adjective}credential"),
        n => format!("all {n} {adjective}credentials"),
    }
}

/// Formats a wait for people: whole seconds (rounded up) below 2 minutes,
/// whole minutes (rounded up) below 2 hours, else hours and minutes.
pub(crate) fn human_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs += 1;
    }
    if secs < 120 {
        return format!("{secs} s");
    }
    let minutes = secs.div_ceil(60);
    if minutes < 120 {
        return format!("{minutes} min");
    }
    match (minutes / 60, minutes % 60) {
        (hours, 0) => format!("{hours} h"),
        (hours, rest) => format!("{hours} h {rest} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_rounds_up() {
        assert_eq!(human_duration(Duration::from_millis(41_200)), "42 s");
        assert_eq!(human_duration(Duration::from_secs(119)), "119 s");
        assert_eq!(human_duration(Duration::from_secs(121)), "3 min");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2 h");
        assert_eq!(human_duration(Duration::from_secs(7260)), "2 h 1 min");
    }

    #[test]
    fn messages_are_actionable() {
        let cooling = Unavailable::CoolingDown {
            model: "qwen3-coder-plus".into(),
            retry_after: Duration::from_millis(41_500),
            waiting: 3,
        };
        assert_eq!(
            cooling.to_string(),
            "all 3 usable credentials for qwen3-coder-plus are cooling down after quota or rate \
             limits; retry in 42 s, or add accounts with `cliproxy login qwen` or more API keys"
        );
        assert_eq!(cooling.retry_after(), Some(Duration::from_millis(41_500)));

        let one = Unavailable::Disabled {
            model: "m".into(),
            count: 1,
        };
        assert!(
            one.to_string()
                .starts_with("the only credential for m is out of rotation (disabled, refused by the upstream, or in need of a new login)")
        );
        let unknown = Unavailable::UnknownModel {
            model: "x".into(),
            known: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            unknown.to_string(),
            "no credential serves model x; known models: a, b"
        );
        assert_eq!(unknown.retry_after(), None);
    }
}
