//! What `/metrics` costs the usage ledger's flusher per record, over a million records (eight
//! credentials, two models, two client keys): each record made into a tally of its own and
//! `Metrics::observe`d, the flusher's worst case (a fold in which no two records share a key);
//! and a tally of a thousand records of one key observed, what a busy fold shows it.
//! Run with `cargo run --release -p management --example observe_bench`; docs/benchmarks.md
//! has a run's numbers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use management::Metrics;
use usage_ledger::{Api, Outcome, Record, RollupKey, Tally, TallyObserver as _};

const RECORDS: usize = 1_000_000;

/// Records in each tally of the busy fold.
const TALLY_RECORDS: usize = 1_000;

fn main() {
    let credentials: Vec<Arc<str>> = (0..8)
        .map(|n| Arc::from(format!("user{n}@example.com")))
        .collect();
    let models: [Arc<str>; 2] = [Arc::from("coder-model"), Arc::from("qwen3-coder-plus")];
    let clients: [Arc<str>; 2] = [Arc::from("laptop"), Arc::from("ci")];
    let records: Vec<Record> = (0..RECORDS)
        .map(|n| Record {
            at: SystemTime::now(),
            credential: Arc::clone(&credentials[n % 8]),
            client: Arc::clone(&clients[n % 2]),
            model: Arc::clone(&models[(n / 3) % 2]),
            api: Api::ChatCompletions,
            outcome: Outcome::Success,
            prompt_tokens: 1200,
            completion_tokens: 300,
            cached_tokens: 1000,
            tokens_estimated: false,
            latency: Duration::from_millis(2400),
            ttft: Some(Duration::from_millis(350)),
            attempts: 1,
        })
        .collect();
    for hash_emails in [false, true] {
        let metrics = Metrics::new(hash_emails);
        let start = Instant::now();
        for record in &records {
            let mut tally = Tally::new(RollupKey::of(record));
            tally.add(record);
            metrics.observe(&tally);
        }
        report(
            &format!("a tally a record, hash-emails = {hash_emails}"),
            start,
        );
    }
    let metrics = Metrics::new(false);
    let mut tally = Tally::new(RollupKey::of(&records[0]));
    for _ in 0..TALLY_RECORDS {
        tally.add(&records[0]);
    }
    let start = Instant::now();
    for _ in 0..RECORDS / TALLY_RECORDS {
        metrics.observe(&tally);
    }
    report(&format!("tallies of {TALLY_RECORDS} records"), start);
}

/// Prints the time per record since `start`, over [`RECORDS`].
fn report(what: &str, start: Instant) {
    let elapsed = start.elapsed();
    println!(
        "{what}: {:.1} ns per record, {:.2} M records/s",
        elapsed.as_nanos() as f64 / RECORDS as f64,
        RECORDS as f64 / elapsed.as_secs_f64() / 1e6
    );
}
