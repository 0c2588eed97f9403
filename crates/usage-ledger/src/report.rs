//! What a usage query asks ([`UsageQuery`]: since when, grouped by what) and answers
//! ([`UsageReport`]): rows that serialize to the JSON `cliproxy usage --json` prints and the
//! management API serves.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::histogram::Histogram;
use crate::record::FailureClass;
use crate::rollup::{Counters, HOUR_SECONDS, hour_of, mean};

/// What usage rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// The credential's log label.
    Credential,
    /// The model served.
    Model,
    /// The client key's name.
    ClientKey,
    /// The UTC day (`2026-12-05`).
    Day,
    /// The UTC hour (`2026-12-05T14:00Z`).
    Hour,
}

impl GroupBy {
    /// The name in the JSON and on the command line: `credential`, `model`, `client-key`,
    /// `day`, `hour`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Credential => "credential",
            GroupBy::Model => "model",
            GroupBy::ClientKey => "client-key",
            GroupBy::Day => "day",
            GroupBy::Hour => "hour",
        }
    }
}

/// A usage query: every rollup from the hour `since` falls in on, grouped by `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageQuery {
    /// The first hour counted is the one this falls in: rollups are hourly.
    pub since: SystemTime,
    /// What rows are grouped by.
    pub by: GroupBy,
}

impl UsageQuery {
    /// The first hour counted, in seconds since the Unix epoch.
    pub fn first_hour(&self) -> i64 {
        hour_of(self.since)
    }
}

/// The answer to a [`UsageQuery`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// The start of the first hour counted (RFC 3339, UTC).
    pub since: String,
    /// What the rows are grouped by.
    pub by: GroupBy,
    /// One row per group, by requests (most first), then key.
    pub rows: Vec<UsageRow>,
    /// Every row added up.
    pub total: UsageTotals,
}

impl UsageReport {
    /// A report of `groups` (key and its counters) for `query`.
    pub fn new(query: &UsageQuery, groups: Vec<(String, Counters)>) -> Self {
        let mut total = Counters::default();
        let mut rows: Vec<UsageRow> = groups
            .into_iter()
            .map(|(key, counters)| {
                total.merge(&counters);
                UsageRow {
                    key,
                    totals: UsageTotals::from(&counters),
                }
            })
            .collect();
        if !matches!(query.by, GroupBy::Day | GroupBy::Hour) {
            rows.sort_by(|a, b| {
                b.totals
                    .requests
                    .cmp(&a.totals.requests)
                    .then_with(|| a.key.cmp(&b.key))
            });
        }
        Self {
            since: format_hour(query.first_hour()),
            by: query.by,
            rows,
            total: UsageTotals::from(&total),
        }
    }
}

/// One group's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The credential label, model, client key name (empty: no credential, or no client
    /// key), day (`2026-12-05`) or hour (`2026-12-05T14:00Z`).
    pub key: String,
    /// Its counts.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// Counts of a group, or of all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageTotals {
    /// Requests finished.
    pub requests: u64,
    /// Requests whose client got the whole answer.
    pub successes: u64,
    /// Requests that failed, of every class.
    pub failures: u64,
    /// Failures by class.
    pub failures_by_class: FailureCounts,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt tokens read from the upstream's cache.
    pub cached_tokens: u64,
    /// Prompt and completion tokens.
    pub total_tokens: u64,
    /// Requests whose tokens are estimates: the upstream sent no usage.
    pub estimated_requests: u64,
    /// Upstream attempts, retries and failovers included.
    pub upstream_attempts: u64,
    /// Latency, from the request's arrival to the end of the answer.
    pub latency_ms: LatencySummary,
    /// Time to the first byte of the answer.
    pub ttft_ms: LatencySummary,
}

impl From<&Counters> for UsageTotals {
    fn from(counters: &Counters) -> Self {
        Self {
            requests: counters.requests,
            successes: counters.successes,
            failures: counters.failed(),
            failures_by_class: FailureCounts::from(counters),
            prompt_tokens: counters.prompt_tokens,
            completion_tokens: counters.completion_tokens,
            cached_tokens: counters.cached_tokens,
            total_tokens: counters
                .prompt_tokens
                .saturating_add(counters.completion_tokens),
            estimated_requests: counters.estimated,
            upstream_attempts: counters.attempts,
            latency_ms: LatencySummary::from(&counters.latency),
            ttft_ms: LatencySummary::from(&counters.ttft),
        }
    }
}

/// Failures by class, named as [`FailureClass::as_str`] names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailureCounts {
    /// [`FailureClass::Quota`].
    pub quota: u64,
    /// [`FailureClass::Rate`].
    pub rate: u64,
    /// [`FailureClass::Refused`].
    pub refused: u64,
    /// [`FailureClass::Upstream5xx`].
    pub upstream_5xx: u64,
    /// [`FailureClass::Timeout`].
    pub timeout: u64,
    /// [`FailureClass::ClientCancel`].
    pub client_cancel: u64,
    /// [`FailureClass::Other`].
    pub other: u64,
}

impl FailureCounts {
    /// Each class with its count, in [`FailureClass::ALL`]'s order.
    pub fn by_class(&self) -> [(FailureClass, u64); FailureClass::COUNT] {
        [
            (FailureClass::Quota, self.quota),
            (FailureClass::Rate, self.rate),
            (FailureClass::Refused, self.refused),
            (FailureClass::Upstream5xx, self.upstream_5xx),
            (FailureClass::Timeout, self.timeout),
            (FailureClass::ClientCancel, self.client_cancel),
            (FailureClass::Other, self.other),
        ]
    }
}

impl From<&Counters> for FailureCounts {
    fn from(counters: &Counters) -> Self {
        let of = |class| counters.failures_of(class);
        Self {
            quota: of(FailureClass::Quota),
            rate: of(FailureClass::Rate),
            refused: of(FailureClass::Refused),
            upstream_5xx: of(FailureClass::Upstream5xx),
            timeout: of(FailureClass::Timeout),
            client_cancel: of(FailureClass::ClientCancel),
            other: of(FailureClass::Other),
        }
    }
}

/// A histogram told in milliseconds: how many, the mean and three quantiles (estimated from
/// the buckets, as Prometheus' `histogram_quantile` does). `null` without observations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Durations observed.
    pub count: u64,
    /// Their mean.
    pub mean: Option<u64>,
    /// The median.
    pub p50: Option<u64>,
    /// The 95th percentile.
    pub p95: Option<u64>,
    /// The 99th percentile.
    pub p99: Option<u64>,
}

impl From<&Histogram> for LatencySummary {
    fn from(histogram: &Histogram) -> Self {
        let millis = |duration: Option<Duration>| {
            duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        Self {
            count: histogram.count(),
            mean: millis(mean(histogram)),
            p50: millis(histogram.quantile(0.5)),
            p95: millis(histogram.quantile(0.95)),
            p99: millis(histogram.quantile(0.99)),
        }
    }
}

/// `2026-12-05T14:00Z`: the hour starting at `hour` (Unix seconds).
pub fn format_hour(hour: i64) -> String {
    let (date, hour_of_day) = split_day(hour);
    format!("{date}T{hour_of_day:02}:00Z")
}

/// `2026-12-05`: the UTC day `at` (Unix seconds) falls in.
pub fn format_day(at: i64) -> String {
    split_day(at).0
}

/// The UTC date of `at` (Unix seconds) and its hour of day.
fn split_day(at: i64) -> (String, i64) {
    let day = at.div_euclid(86_400);
    let hour_of_day = at.rem_euclid(86_400) / HOUR_SECONDS;
    let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|moment| {
            let date = moment.date();
            format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            )
        })
        .unwrap_or_else(|_| format!("day {day}"));
    (date, hour_of_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_days_are_written_in_utc() {
        // 2026-12-05 14:00:00 UTC
        let hour = 1_796_479_200;
        assert_eq!(format_hour(hour), "2026-12-05T14:00Z");
        assert_eq!(format_day(hour + 3599), "2026-12-05");
        assert_eq!(format_hour(0), "1970-01-01T00:00Z");
    }

    #[test]
    fn rows_are_sorted_by_requests_then_key_and_added_up() {
        let counters = |requests| Counters {
            requests,
            successes: requests,
            prompt_tokens: 10 * requests,
            ..Counters::default()
        };
        let query = UsageQuery {
            since: SystemTime::UNIX_EPOCH,
            by: GroupBy::Model,
        };
        let report = UsageReport::new(
            &query,
            vec![
                ("b".to_owned(), counters(1)),
                ("c".to_owned(), counters(5)),
                ("a".to_owned(), counters(1)),
            ],
        );
        let keys: Vec<&str> = report.rows.iter().map(|row| row.key.as_str()).collect();
        assert_eq!(keys, ["c", "a", "b"]);
        assert_eq!(report.total.requests, 7);
        assert_eq!(report.total.prompt_tokens, 70);
        assert_eq!(report.total.total_tokens, 70);
        assert_eq!(report.total.latency_ms, LatencySummary::default());
    }
}
