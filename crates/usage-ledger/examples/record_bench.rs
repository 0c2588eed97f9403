//! Times `Recorder::record`, the only part of the ledger a request pays for, and how long the
//! flusher takes to fold and write what was recorded. Numbers, not assertions: run
//! `cargo run --release -p usage-ledger --example record_bench` and see docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use usage_ledger::{Api, FailureClass, Ledger, Outcome, Record};

/// Records per thread.
const PER_THREAD: usize = 1_000_000;

/// The `n`th record of a thread: a mix of credentials and models, one in fifty failed.
fn record_of(
    n: usize,
    thread: usize,
    credentials: &[Arc<str>],
    models: &[Arc<str>],
    client: &Arc<str>,
) -> Record {
    Record {
        at: SystemTime::now(),
        credential: Arc::clone(&credentials[(n + thread) % credentials.len()]),
        client: Arc::clone(client),
        model: Arc::clone(&models[n % models.len()]),
        api: Api::ChatCompletions,
        outcome: if n.is_multiple_of(50) {
            Outcome::Failure(FailureClass::Rate)
        } else {
            Outcome::Success
        },
        prompt_tokens: 1200,
        completion_tokens: 300,
        cached_tokens: 1000,
        tokens_estimated: false,
        latency: Duration::from_millis(800 + (n % 2000) as u64),
        ttft: Some(Duration::from_millis(200)),
        attempts: 1,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("usage.sqlite3");
    let credentials: Vec<Arc<str>> = (1..=8).map(|n| Arc::from(format!("key#{n}"))).collect();
    let models: Vec<Arc<str>> = ["qwen3-coder-plus", "coder-model"].map(Arc::from).to_vec();
    let client: Arc<str> = Arc::from("laptop");
    // What building and dropping the records costs alone, without the ledger.
    let started = Instant::now();
    for n in 0..PER_THREAD {
        std::hint::black_box(record_of(n, 0, &credentials, &models, &client));
    }
    println!(
        "baseline: building a record {:.0} ns",
        started.elapsed().as_nanos() as f64 / PER_THREAD as f64
    );
    let threads_available = std::thread::available_parallelism().map_or(1, usize::from);
    for threads in [1, threads_available.max(2)] {
        let (recorder, flusher) = runtime
            .block_on(async { Ledger::open(&path, None, Duration::from_secs(5)) })
            .expect("open the ledger");
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let recorder = recorder.clone();
                let credentials = credentials.clone();
                let models = models.clone();
                let client = Arc::clone(&client);
                std::thread::spawn(move || {
                    let started = Instant::now();
                    for n in 0..PER_THREAD {
                        recorder.record(record_of(n, thread, &credentials, &models, &client));
                    }
                    started.elapsed()
                })
            })
            .collect();
        let slowest = workers
            .into_iter()
            .map(|worker| worker.join().expect("a recording thread"))
            .max()
            .unwrap_or_default();
        let recorded = started.elapsed();
        runtime.block_on(flusher.flush_and_close()).expect("flush");
        let drained = started.elapsed();
        let total = threads * PER_THREAD;
        println!(
            "{threads} thread(s) x {PER_THREAD} records: record() {:.0} ns each (slowest thread), \
             {:.1} M records/s in all; every record folded and written {:.0} ms after the start",
            slowest.as_nanos() as f64 / PER_THREAD as f64,
            total as f64 / recorded.as_secs_f64() / 1e6,
            drained.as_secs_f64() * 1000.0
        );
    }
}
