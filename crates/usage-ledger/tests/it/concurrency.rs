//! Many recorders at once, from threads and tasks: every record is counted exactly once.

use std::sync::Arc;

use usage_ledger::{Ledger, LedgerStore as _, SqliteStore};

use crate::support::{db_path, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_many_threads_and_tasks_are_each_counted_once() {
    const THREADS: usize = 8;
    const TASKS: usize = 8;
    const EACH: usize = 2_000;
    let (_dir, path) = db_path();
    let (recorder, flusher) =
        Ledger::open(&path, None, std::time::Duration::from_millis(5)).unwrap();
    let credentials: Vec<Arc<str>> = (0..4).map(|n| Arc::from(format!("key#{n}"))).collect();

    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let recorder = recorder.clone();
            let credential = Arc::clone(&credentials[thread % credentials.len()]);
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let mut record = record("", "coder-model");
                    record.credential = Arc::clone(&credential);
                    record.prompt_tokens = n as u64;
                    recorder.record(record);
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let mut record = record("task", "qwen-max");
                    record.completion_tokens = n as u64;
                    recorder.record(record);
                    if n.is_multiple_of(100) {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for task in tasks {
        task.await.unwrap();
    }
    flusher.flush_and_close().await.unwrap();

    let stored = SqliteStore::open_existing(&path)
        .unwrap()
        .rollups_since(0)
        .unwrap();
    let total = stored.total();
    let each_sum = (EACH * (EACH - 1) / 2) as u64;
    assert_eq!(total.requests, ((THREADS + TASKS) * EACH) as u64);
    assert_eq!(
        total.prompt_tokens,
        THREADS as u64 * each_sum + (TASKS * EACH * 100) as u64
    );
    assert_eq!(
        total.completion_tokens,
        TASKS as u64 * each_sum + (THREADS * EACH * 20) as u64
    );
    for credential in &credentials {
        let requests: u64 = stored
            .iter()
            .filter(|(key, _)| key.credential == *credential)
            .map(|(_, counters)| counters.requests)
            .sum();
        assert_eq!(
            requests,
            (THREADS / credentials.len() * EACH) as u64,
            "{credential}"
        );
    }
}
