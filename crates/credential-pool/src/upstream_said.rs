//! What an upstream last said about a credential's limits: OpenAI's (and DashScope's)
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, `Retry-After`, and the
//! message of a quota error, kept with when it was said so status pages can show
//! "remaining N of M, resets at T, seen at S".
//!
//! The crate does no HTTP: [`UpstreamSaid::from_headers`] reads headers through a lookup the
//! caller gives it.

use std::time::Duration;

/// The headers of the requests allowance: limit, remaining, reset.
const REQUESTS: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
/// The headers of the tokens allowance.
const TOKENS: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// One kind of allowance (requests or tokens) as the upstream counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    /// `x-ratelimit-limit-*`: how many its window allows.
    pub limit: Option<u64>,
    /// `x-ratelimit-remaining-*`: how many are left.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset-*`: time from the answer until the window resets.
    pub resets_after: Option<Duration>,
}

impl Allowance {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What one upstream answer said about the credential's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamSaid {
    /// Its requests allowance.
    pub requests: Option<Allowance>,
    /// Its tokens allowance.
    pub tokens: Option<Allowance>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<Duration>,
    /// The message of a quota or rate-limit error answer.
    pub quota_error: Option<String>,
}

/// What the upstream said last, and how long ago, as [`crate::CredentialStatus`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    pub said: UpstreamSaid,
    /// How long ago it was said; its reset times count from then.
    pub ago: Duration,
}

impl UpstreamSaid {
    /// Reads the rate-limit headers through `header` (a case-insensitive lookup of a header's
    /// text); `None` when the answer has none of them.
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let allowance = |[limit, remaining, reset]: [&str; 3]| {
            let number = |name: &str| header(name).and_then(|value| value.trim().parse().ok());
            let allowance = Allowance {
                limit: number(limit),
                remaining: number(remaining),
                resets_after: header(reset).and_then(parse_reset),
            };
            (!allowance.is_empty()).then_some(allowance)
        };
        let said = Self {
            requests: allowance(REQUESTS),
            tokens: allowance(TOKENS),
            retry_after: header("retry-after")
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            quota_error: None,
        };
        (said != Self::default()).then_some(said)
    }
}

/// A reset as these upstreams write it: Go-style durations (`1s`, `6m0s`, `20ms`, `1h2m3.5s`)
/// or plain seconds.
pub fn parse_reset(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&at| at > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(Duration::try_from_secs_f64(value * seconds_per_unit).ok()?)?;
    }
    (!text.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&'static str, &'static str)]) -> Option<UpstreamSaid> {
        UpstreamSaid::from_headers(|name| {
            pairs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| *value)
        })
    }

    #[test]
    fn openai_style_headers_are_read() {
        let said = read(&[
            ("x-ratelimit-limit-requests", "2000"),
            ("x-ratelimit-remaining-requests", "1999"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-limit-tokens", "1000000"),
            ("x-ratelimit-remaining-tokens", "999500"),
            ("x-ratelimit-reset-tokens", "30ms"),
            ("retry-after", "7"),
        ])
        .expect("headers were sent");
        assert_eq!(
            said.requests,
            Some(Allowance {
                limit: Some(2000),
                remaining: Some(1999),
                resets_after: Some(Duration::from_secs(360)),
            })
        );
        let tokens = said.tokens.expect("tokens");
        assert_eq!(tokens.remaining, Some(999_500));
        assert_eq!(tokens.resets_after, Some(Duration::from_millis(30)));
        assert_eq!(said.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn partial_or_missing_headers() {
        assert_eq!(read(&[("content-type", "application/json")]), None);
        let said = read(&[("x-ratelimit-remaining-tokens", "12")]).expect("one header");
        assert_eq!(said.requests, None);
        assert_eq!(said.tokens.and_then(|t| t.remaining), Some(12));
        assert_eq!(read(&[("x-ratelimit-limit-requests", "many")]), None);
    }

    #[test]
    fn resets_in_the_forms_upstreams_write() {
        let ms = Duration::from_millis;
        assert_eq!(parse_reset("1s"), Some(ms(1000)));
        assert_eq!(parse_reset("1h2m3.5s"), Some(ms(3_723_500)));
        assert_eq!(parse_reset("20ms"), Some(ms(20)));
        assert_eq!(parse_reset("59"), Some(ms(59_000)));
        assert_eq!(parse_reset("0.25"), Some(ms(250)));
        for bad in ["", "soon", "5d", "m5", "-3", "1s2"] {
            assert_eq!(parse_reset(bad), None, "{bad}");
        }
    }
}
