//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format, written by the
//! `prometheus-client` crate.
//!
//! Request metrics come from the usage ledger's records ([`Metrics`] is a
//! [`TallyObserver`]: the ledger's flusher shows it each fold's records counted by key, off the
//! request tasks, at most `FOLD_EVERY` after the request ended; the histograms are
//! [`BucketHistogram`]s, which take those counts as they are). Pool state and refresh
//! outcomes are read when scraped. Credentials are named by their log label (`dashscope#2`, or the account's email),
//! or with `metrics.hash-emails = true` an email by `sha256:` and the first 12 hex digits of
//! its SHA-256.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `cliproxy_requests_total` | counter | credential, model, client, api |
//! | `cliproxy_request_failures_total` | counter | credential, model, client, class |
//! | `cliproxy_tokens_total` | counter | credential, model, client, kind (prompt, completion, cached) |
//! | `cliproxy_request_duration_seconds` | histogram | credential, model, client |
//! | `cliproxy_time_to_first_byte_seconds` | histogram | credential, model, client |
//! | `cliproxy_upstream_attempts` | histogram | (none) |
//! | `cliproxy_token_refreshes_total` | counter | outcome (succeeded, failed, relogin_required) |
//! | `cliproxy_credentials` | gauge | state |
//! | `cliproxy_credential_state` | gauge (1) | credential, kind, state |

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use account_runtime::Accounts;
use account_runtime::status::{CredentialKind, LiveCredential, LiveState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::{Digest as _, Sha256};
use usage_ledger::{
    Api, FailureClass, Histogram, LATENCY_BUCKETS_SECONDS, MOST_ATTEMPTS_COUNTED, RollupKey, Tally,
    TallyObserver,
};

use crate::bucket_histogram::BucketHistogram;

/// The `Content-Type` of the text [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every state a credential can be in, as the `state` label names it.
pub const STATES: [&str; 8] = [
    "ok",
    "token_not_saved",
    "relogin_required",
    "disabled",
    "refused",
    "exhausted",
    "capped",
    "cooling",
];

/// Hashed email labels remembered at most (the cache starts afresh past it).
const HASHED_KEPT: usize = 4096;

/// Buckets of the upstream attempts per request.
const ATTEMPT_BUCKETS: [f64; 6] = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0];

// A tally counts attempts one by one past the last bound, so its last count is all `+Inf`.
const _: () = assert!(ATTEMPT_BUCKETS[ATTEMPT_BUCKETS.len() - 1] < MOST_ATTEMPTS_COUNTED as f64);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    credential: String,
    model: String,
    client: String,
    api: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    credential: String,
    model: String,
    client: String,
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    credential: String,
    model: String,
    client: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimingLabels {
    credential: String,
    model: String,
    client: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialStateLabels {
    credential: String,
    kind: String,
    state: String,
}

fn latency_histogram() -> BucketHistogram {
    BucketHistogram::new(&LATENCY_BUCKETS_SECONDS)
}

/// A tally's latency histogram, as a [`BucketHistogram`] over [`LATENCY_BUCKETS_SECONDS`]
/// takes it. The ledger sums whole microseconds, so `_sum` drops each request's nanoseconds.
fn add_latencies(histogram: &BucketHistogram, latencies: &Histogram) {
    histogram.add(&latencies.counts, latencies.sum_us as f64 / 1e6);
}

/// A tally's requests by their attempts, as buckets over [`ATTEMPT_BUCKETS`].
fn attempt_buckets(
    by_attempts: &[u64; MOST_ATTEMPTS_COUNTED + 1],
) -> [u64; ATTEMPT_BUCKETS.len() + 1] {
    let mut buckets = [0u64; ATTEMPT_BUCKETS.len() + 1];
    for (attempts, &requests) in by_attempts.iter().enumerate() {
        let bucket = ATTEMPT_BUCKETS.partition_point(|&bound| bound < attempts as f64);
        buckets[bucket] = buckets[bucket].saturating_add(requests);
    }
    buckets
}

/// What a tally is counted under, as the ledger names it: cheap to build (shared strings), so
/// the label strings of a series are built once, not per fold.
type SeriesKey = (Arc<str>, Arc<str>, Arc<str>, Api);

/// The metrics of one (credential, model, client key, API): handles that share their values
/// with the families, so counting a tally needs no label strings and no family lookup.
#[derive(Clone)]
struct Series {
    requests: Counter,
    /// Prompt, completion and cached tokens.
    tokens: [Counter; 3],
    latency: BucketHistogram,
    ttfb: BucketHistogram,
}

/// Series remembered at most (the cache starts afresh past it; the families keep the values).
const SERIES_KEPT: usize = 4096;

/// The refresh counts last added to the counters, to add only what is new at a scrape.
#[derive(Debug, Default)]
struct RefreshesSeen {
    succeeded: u64,
    failed: u64,
    relogin_required: u64,
}

/// The server's metrics.
pub struct Metrics {
    hash_emails: bool,
    requests: Family<RequestLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    latency: Family<TimingLabels, BucketHistogram>,
    ttfb: Family<TimingLabels, BucketHistogram>,
    attempts: BucketHistogram,
    refreshes: Family<OutcomeLabels, Counter>,
    credentials: Family<StateLabels, Gauge>,
    credential_state: Family<CredentialStateLabels, Gauge>,
    /// The series of the tallies seen, so each label set is built once (the flusher calls
    /// `observe`).
    series: Mutex<HashMap<SeriesKey, Series, foldhash::fast::RandomState>>,
    /// Hashed labels of emails seen, so each is hashed once (the flusher calls `observe`).
    hashed: Mutex<HashMap<String, String>>,
    /// The registry and what the refresh counters hold, taken by one scrape at a time.
    scrape: Mutex<(Registry, RefreshesSeen)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("hash_emails", &self.hash_emails)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Empty metrics; with `hash_emails`, emails in credential labels are hashed.
    pub fn new(hash_emails: bool) -> Self {
        let requests = Family::default();
        let failures = Family::default();
        let tokens = Family::default();
        let latency = Family::<TimingLabels, BucketHistogram>::new_with_constructor(
            latency_histogram as fn() -> BucketHistogram,
        );
        let ttfb = Family::<TimingLabels, BucketHistogram>::new_with_constructor(
            latency_histogram as fn() -> BucketHistogram,
        );
        let attempts = BucketHistogram::new(&ATTEMPT_BUCKETS);
        let refreshes = Family::default();
        let credentials = Family::default();
        let credential_state = Family::default();
        let mut registry = Registry::with_prefix("cliproxy");
        registry.register(
            "requests",
            "Requests served, by credential, model, client key and API",
            requests.clone(),
        );
        registry.register(
            "request_failures",
            "Requests that failed, by class: quota, rate, refused, upstream_5xx, timeout, client_cancel, other",
            failures.clone(),
        );
        registry.register(
            "tokens",
            "Tokens, by kind: prompt, completion, cached (a part of prompt)",
            tokens.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "From a request's arrival to the end of its answer",
            latency.clone(),
        );
        registry.register(
            "time_to_first_byte_seconds",
            "From a request's arrival to the first byte of its answer's body",
            ttfb.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Upstream requests per client request (retries and failovers included)",
            attempts.clone(),
        );
        registry.register(
            "token_refreshes",
            "Qwen token refreshes, by outcome: succeeded, failed (retried), relogin_required",
            refreshes.clone(),
        );
        registry.register(
            "credentials",
            "Credentials in the pool, by state",
            credentials.clone(),
        );
        registry.register(
            "credential_state",
            "1 for each credential, labelled with its state",
            credential_state.clone(),
        );
        Self {
            hash_emails,
            requests,
            failures,
            tokens,
            latency,
            ttfb,
            attempts,
            refreshes,
            credentials,
            credential_state,
            series: Mutex::new(HashMap::default()),
            hashed: Mutex::new(HashMap::new()),
            scrape: Mutex::new((registry, RefreshesSeen::default())),
        }
    }

    /// A credential's label as metrics show it.
    pub fn credential_label(&self, label: &str) -> String {
        if self.hash_emails && label.contains('@') {
            let mut hashed = self.hashed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(known) = hashed.get(label) {
                return known.clone();
            }
            let digest = Sha256::digest(label.as_bytes());
            let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            let name = format!("sha256:{hex}");
            if hashed.len() >= HASHED_KEPT {
                hashed.clear();
            }
            hashed.insert(label.to_owned(), name.clone());
            return name;
        }
        label.to_owned()
    }

    /// The metrics now, in the OpenMetrics text format: request metrics as observed, pool
    /// state and refresh outcomes as they are now.
    pub fn render(&self, credentials: &[LiveCredential], accounts: &Accounts) -> String {
        let mut scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let (registry, seen) = &mut *scrape;
        self.credentials.clear();
        self.credential_state.clear();
        for state in STATES {
            self.credentials
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .set(0);
        }
        for credential in credentials {
            let state = state_name(&credential.state);
            self.credentials
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .inc();
            self.credential_state
                .get_or_create(&CredentialStateLabels {
                    credential: self.credential_label(&credential.label),
                    kind: match credential.kind {
                        CredentialKind::QwenOauth => "qwen-oauth",
                        CredentialKind::ApiKey => "api-key",
                    }
                    .to_owned(),
                    state: state.to_owned(),
                })
                .set(1);
        }
        let outcomes = accounts.refresh_outcomes();
        for (name, now, before) in [
            (
                "succeeded",
                outcomes.succeeded.load(Ordering::Relaxed),
                &mut seen.succeeded,
            ),
            (
                "failed",
                outcomes.failed.load(Ordering::Relaxed),
                &mut seen.failed,
            ),
            (
                "relogin_required",
                outcomes.relogin_required.load(Ordering::Relaxed),
                &mut seen.relogin_required,
            ),
        ] {
            self.refreshes
                .get_or_create(&OutcomeLabels {
                    outcome: name.to_owned(),
                })
                .inc_by(now.saturating_sub(*before));
            *before = now;
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The `state` label of a credential's state.
pub fn state_name(state: &LiveState) -> &'static str {
    match state {
        LiveState::Ok => "ok",
        LiveState::TokenNotSaved { .. } => "token_not_saved",
        LiveState::ReloginRequired => "relogin_required",
        LiveState::Disabled { .. } => "disabled",
        LiveState::Refused { .. } => "refused",
        LiveState::Exhausted { .. } => "exhausted",
        LiveState::DayLimit { .. } => "day_limit",
        LiveState::Capped { .. } => "capped",
        LiveState::Cooling { .. } => "cooling",
    }
}

impl Metrics {
    /// The handles of the series of `key`, created on its first tally.
    fn series(&self, rollup: &RollupKey) -> Series {
        let key: SeriesKey = (
            Arc::clone(&rollup.credential),
            Arc::clone(&rollup.model),
            Arc::clone(&rollup.client),
            rollup.api,
        );
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = series.get(&key) {
            return known.clone();
        }
        let credential = self.credential_label(&rollup.credential);
        let model = rollup.model.to_string();
        let client = rollup.client.to_string();
        let tokens = ["prompt", "completion", "cached"].map(|kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    credential: credential.clone(),
                    model: model.clone(),
                    client: client.clone(),
                    kind: kind.to_owned(),
                })
                .clone()
        });
        let requests = self
            .requests
            .get_or_create(&RequestLabels {
                credential: credential.clone(),
                model: model.clone(),
                client: client.clone(),
                api: rollup.api.as_str().to_owned(),
            })
            .clone();
        let timing = TimingLabels {
            credential,
            model,
            client,
        };
        let made = Series {
            requests,
            tokens,
            latency: self.latency.get_or_create(&timing).clone(),
            ttfb: self.ttfb.get_or_create(&timing).clone(),
        };
        if series.len() >= SERIES_KEPT {
            series.clear();
        }
        series.insert(key, made.clone());
        made
    }
}

impl TallyObserver for Metrics {
    fn observe(&self, tally: &Tally) {
        let (key, counters) = (&tally.key, &tally.counters);
        let series = self.series(key);
        series.requests.inc_by(counters.requests);
        let [prompt, completion, cached] = &series.tokens;
        prompt.inc_by(counters.prompt_tokens);
        completion.inc_by(counters.completion_tokens);
        cached.inc_by(counters.cached_tokens);
        for class in FailureClass::ALL {
            let failed = counters.failures_of(class);
            if failed > 0 {
                self.failures
                    .get_or_create(&FailureLabels {
                        credential: self.credential_label(&key.credential),
                        model: key.model.to_string(),
                        client: key.client.to_string(),
                        class: class.as_str().to_owned(),
                    })
                    .inc_by(failed);
            }
        }
        add_latencies(&series.latency, &counters.latency);
        if counters.ttft.count() > 0 {
            add_latencies(&series.ttfb, &counters.ttft);
        }
        self.attempts
            .add(&attempt_buckets(&tally.attempts), counters.attempts as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use prometheus_client::metrics::histogram::Histogram as ReferenceHistogram;
    use usage_ledger::{Outcome, Record};

    use super::*;

    /// The metrics a tally feeds, as the text names them.
    const REQUEST_METRICS: [&str; 6] = [
        "cliproxy_requests_total",
        "cliproxy_request_failures_total",
        "cliproxy_tokens_total",
        "cliproxy_request_duration_seconds",
        "cliproxy_time_to_first_byte_seconds",
        "cliproxy_upstream_attempts",
    ];

    /// The sample lines of the request metrics in `registry`'s text, sorted.
    fn request_samples(registry: &Registry) -> Vec<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| REQUEST_METRICS.iter().any(|name| line.starts_with(name)))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// The request metrics of `records` as `prometheus-client`'s own counters and histograms
    /// count them, a record at a time.
    fn counted_one_by_one(records: &[Record]) -> Registry {
        let requests = Family::<RequestLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let latency_buckets = || ReferenceHistogram::new(LATENCY_BUCKETS_SECONDS.iter().copied());
        let latency = Family::<TimingLabels, ReferenceHistogram>::new_with_constructor(
            latency_buckets as fn() -> ReferenceHistogram,
        );
        let ttfb = Family::<TimingLabels, ReferenceHistogram>::new_with_constructor(
            latency_buckets as fn() -> ReferenceHistogram,
        );
        let attempts = ReferenceHistogram::new(ATTEMPT_BUCKETS.iter().copied());
        for record in records {
            let (credential, model, client) = (
                record.credential.to_string(),
                record.model.to_string(),
                record.client.to_string(),
            );
            requests
                .get_or_create(&RequestLabels {
                    credential: credential.clone(),
                    model: model.clone(),
                    client: client.clone(),
                    api: record.api.as_str().to_owned(),
                })
                .inc();
            if let Outcome::Failure(class) = record.outcome {
                failures
                    .get_or_create(&FailureLabels {
                        credential: credential.clone(),
                        model: model.clone(),
                        client: client.clone(),
                        class: class.as_str().to_owned(),
                    })
                    .inc();
            }
            for (kind, count) in [
                ("prompt", record.prompt_tokens),
                ("completion", record.completion_tokens),
                ("cached", record.cached_tokens),
            ] {
                tokens
                    .get_or_create(&TokenLabels {
                        credential: credential.clone(),
                        model: model.clone(),
                        client: client.clone(),
                        kind: kind.to_owned(),
                    })
                    .inc_by(count);
            }
            let timing = TimingLabels {
                credential,
                model,
                client,
            };
            latency
                .get_or_create(&timing)
                .observe(record.latency.as_secs_f64());
            if let Some(ttft) = record.ttft {
                ttfb.get_or_create(&timing).observe(ttft.as_secs_f64());
            }
            attempts.observe(f64::from(record.attempts));
        }
        let mut registry = Registry::with_prefix("cliproxy");
        registry.register("requests", "", requests);
        registry.register("request_failures", "", failures);
        registry.register("tokens", "", tokens);
        registry.register("request_duration_seconds", "", latency);
        registry.register("time_to_first_byte_seconds", "", ttfb);
        registry.register("upstream_attempts", "", attempts);
        registry
    }

    #[test]
    fn a_tally_writes_what_prometheus_client_writes_for_its_records_one_by_one() {
        let (credential, client, model): (Arc<str>, Arc<str>, Arc<str>) = (
            Arc::from("dashscope#1"),
            Arc::from("laptop"),
            Arc::from("qwen-max"),
        );
        let at = SystemTime::now();
        let millis = Duration::from_millis;
        // Latencies of whole binary fractions of a second, so that sums agree to the bit.
        let records: Vec<Record> = [
            (125, Some(125), Outcome::Success, 1),
            (250, None, Outcome::Failure(FailureClass::Rate), 0),
            (
                500,
                Some(250),
                Outcome::Failure(FailureClass::Upstream5xx),
                4,
            ),
            (2_000, Some(500), Outcome::Success, 12),
            (4_000, None, Outcome::Failure(FailureClass::Rate), 1),
        ]
        .into_iter()
        .enumerate()
        .map(|(n, (latency, ttft, outcome, attempts))| Record {
            at,
            credential: Arc::clone(&credential),
            client: Arc::clone(&client),
            model: Arc::clone(&model),
            api: Api::ChatCompletions,
            outcome,
            prompt_tokens: 100 * n as u64,
            completion_tokens: 10 * n as u64,
            cached_tokens: n as u64,
            tokens_estimated: n == 2,
            latency: millis(latency),
            ttft: ttft.map(millis),
            attempts,
        })
        .collect();
        let mut tally = Tally::new(RollupKey::of(&records[0]));
        for record in &records {
            tally.add(record);
        }
        let metrics = Metrics::new(false);
        metrics.observe(&tally);
        let ours = request_samples(&metrics.scrape.lock().unwrap().0);
        assert_eq!(ours, request_samples(&counted_one_by_one(&records)));
        assert!(
            ours.iter()
                .any(|line| line.starts_with("cliproxy_upstream_attempts_bucket{le=\"+Inf\"} 5")),
            "{ours:#?}"
        );
    }

    #[test]
    fn attempts_fall_into_the_first_bucket_they_do_not_exceed() {
        assert_eq!(
            attempt_buckets(&[1, 2, 1, 0, 4, 1, 5, 6, 1, 3]),
            // le 0, 1, 2, 3, 5 (4 and 5), 8 (6, 7 and 8), +Inf (9 and more)
            [1, 2, 1, 0, 5, 12, 3]
        );
    }

    #[test]
    fn emails_are_hashed_only_when_asked_and_names_never() {
        let plain = Metrics::new(false);
        assert_eq!(plain.credential_label("a@example.com"), "a@example.com");
        let hashed = Metrics::new(true);
        let label = hashed.credential_label("a@example.com");
        assert!(label.starts_with("sha256:") && label.len() == "sha256:".len() + 12);
        assert!(!label.contains("example"));
        assert_eq!(label, hashed.credential_label("a@example.com"));
        assert_eq!(hashed.credential_label("dashscope#2"), "dashscope#2");
    }
}
