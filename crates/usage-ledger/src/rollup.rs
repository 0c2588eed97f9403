//! Rollups: the counters of every request that shares an hour, credential, client key, model
//! and API ([`RollupKey`] → [`Counters`]), and their arithmetic. The flusher folds records
//! into [`Rollups`] and the store adds them to what it holds, so adding is all there is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::histogram::Histogram;
use crate::record::{Api, FailureClass, Outcome, Record};

/// Seconds in an hour: rollups are kept per UTC hour.
pub const HOUR_SECONDS: i64 = 3600;

/// The start of the UTC hour `at` falls in, in seconds since the Unix epoch. Times before the
/// epoch count in the epoch's hour.
pub fn hour_of(at: SystemTime) -> i64 {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
    seconds - seconds % HOUR_SECONDS
}

/// What a rollup's counters are kept by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    /// The start of the UTC hour, in seconds since the Unix epoch ([`hour_of`]).
    pub hour: i64,
    /// The credential's log label; empty when none served.
    pub credential: Arc<str>,
    /// The client key's name; empty without one.
    pub client: Arc<str>,
    /// The model served.
    pub model: Arc<str>,
    /// The API the client spoke.
    pub api: Api,
}

impl RollupKey {
    /// The key of a stored row, from its [`KEY_COLUMNS`](crate::KEY_COLUMNS); `None` for an
    /// API this build does not know (there is none yet), whose row is left out.
    pub fn from_columns(
        hour: i64,
        credential: &str,
        client: &str,
        model: &str,
        api: &str,
    ) -> Option<Self> {
        Some(Self {
            hour,
            credential: Arc::from(credential),
            client: Arc::from(client),
            model: Arc::from(model),
            api: Api::from_name(api)?,
        })
    }

    /// The key `record` is counted under.
    pub fn of(record: &Record) -> Self {
        Self {
            hour: hour_of(record.at),
            credential: Arc::clone(&record.credential),
            client: Arc::clone(&record.client),
            model: Arc::clone(&record.model),
            api: record.api,
        }
    }
}

/// The counters of one rollup. Every counter saturates instead of overflowing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests finished.
    pub requests: u64,
    /// Requests whose client got the whole answer.
    pub successes: u64,
    /// Failed requests, by [`FailureClass::index`].
    pub failures: [u64; FailureClass::COUNT],
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt tokens read from the upstream's cache.
    pub cached_tokens: u64,
    /// Requests whose token counts are estimates (the upstream sent no usage).
    pub estimated: u64,
    /// Upstream attempts, retries and failovers included.
    pub attempts: u64,
    /// Latency of every request, failed ones included.
    pub latency: Histogram,
    /// Time to the first byte of the answer, of the requests that sent one.
    pub ttft: Histogram,
}

impl Counters {
    /// Counts one finished request.
    pub fn add(&mut self, record: &Record) {
        self.requests = self.requests.saturating_add(1);
        match record.outcome {
            Outcome::Success => self.successes = self.successes.saturating_add(1),
            Outcome::Failure(class) => {
                let count = &mut self.failures[class.index()];
                *count = count.saturating_add(1);
            }
        }
        self.prompt_tokens = self.prompt_tokens.saturating_add(record.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(record.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(record.cached_tokens);
        self.estimated = self
            .estimated
            .saturating_add(u64::from(record.tokens_estimated));
        self.attempts = self.attempts.saturating_add(u64::from(record.attempts));
        self.latency.observe(record.latency);
        if let Some(ttft) = record.ttft {
            self.ttft.observe(ttft);
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Counters) {
        self.requests = self.requests.saturating_add(other.requests);
        self.successes = self.successes.saturating_add(other.successes);
        for (count, more) in self.failures.iter_mut().zip(other.failures) {
            *count = count.saturating_add(more);
        }
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.estimated = self.estimated.saturating_add(other.estimated);
        self.attempts = self.attempts.saturating_add(other.attempts);
        self.latency.merge(&other.latency);
        self.ttft.merge(&other.ttft);
    }

    /// Failed requests, of every class.
    pub fn failed(&self) -> u64 {
        self.failures
            .iter()
            .fold(0, |sum, count| sum.saturating_add(*count))
    }

    /// Failed requests of `class`.
    pub fn failures_of(&self, class: FailureClass) -> u64 {
        self.failures[class.index()]
    }

    /// The mean latency, if any request was counted.
    pub fn mean_latency(&self) -> Option<Duration> {
        mean(&self.latency)
    }
}

/// The mean of a histogram's durations, if it has any.
pub(crate) fn mean(histogram: &Histogram) -> Option<Duration> {
    let count = histogram.count();
    (count > 0).then(|| Duration::from_micros(histogram.sum_us / count))
}

/// Rollups by key: what the flusher has gathered since its last write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollups {
    /// Hashed with foldhash (seeded per process): SipHash over a key's three strings cost
    /// about a thousand instructions a request.
    counters: HashMap<RollupKey, Counters, foldhash::fast::RandomState>,
}

impl Rollups {
    /// Counts one finished request under its key.
    pub fn add(&mut self, record: &Record) {
        self.counters
            .entry(RollupKey::of(record))
            .or_default()
            .add(record);
    }

    /// Adds every rollup of `other` to these.
    pub fn merge(&mut self, other: Rollups) {
        for (key, counters) in other.counters {
            self.merge_one(key, &counters);
        }
    }

    /// Adds `counters` to the rollup of `key`.
    pub fn merge_one(&mut self, key: RollupKey, counters: &Counters) {
        self.counters.entry(key).or_default().merge(counters);
    }

    /// How many distinct keys there are.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The counters of `key`, if any request was counted under it.
    pub fn get(&self, key: &RollupKey) -> Option<&Counters> {
        self.counters.get(key)
    }

    /// Every key and its counters, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&RollupKey, &Counters)> {
        self.counters.iter()
    }

    /// Drops the rollups of the oldest hours until at most `max_keys` are left; returns the
    /// sum of what was dropped. How memory stays bounded while a store cannot be written.
    pub fn shed_oldest_hours(&mut self, max_keys: usize) -> Counters {
        let mut dropped = Counters::default();
        while self.counters.len() > max_keys {
            let Some(oldest) = self.counters.keys().map(|key| key.hour).min() else {
                break;
            };
            self.counters.retain(|key, counters| {
                let keep = key.hour != oldest;
                if !keep {
                    dropped.merge(counters);
                }
                keep
            });
        }
        dropped
    }

    /// The sum of every rollup.
    pub fn total(&self) -> Counters {
        let mut total = Counters::default();
        for counters in self.counters.values() {
            total.merge(counters);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hour: i64, model: &str) -> RollupKey {
        RollupKey {
            hour,
            credential: Arc::from("a@example.com"),
            client: Arc::from(""),
            model: Arc::from(model),
            api: Api::ChatCompletions,
        }
    }

    #[test]
    fn shedding_drops_whole_oldest_hours_down_to_the_bound() {
        let mut rollups = Rollups::default();
        let one = Counters {
            requests: 1,
            ..Counters::default()
        };
        for hour in [3, 1, 2] {
            for model in ["m1", "m2"] {
                rollups.merge_one(key(hour * HOUR_SECONDS, model), &one);
            }
        }
        assert_eq!(rollups.shed_oldest_hours(6).requests, 0);
        assert_eq!(rollups.len(), 6);
        let dropped = rollups.shed_oldest_hours(3);
        assert_eq!(dropped.requests, 4, "hours 1 and 2, both models");
        assert_eq!(rollups.len(), 2);
        assert!(rollups.iter().all(|(key, _)| key.hour == 3 * HOUR_SECONDS));
    }
}
