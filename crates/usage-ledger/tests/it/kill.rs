//! A kill -9 while recording: a child process flushes some records, records more, and is
//! killed. What it flushed is in the database, intact; what it had not flushed is lost, and
//! nothing else. Once with an explicit flush, once with the flusher's own timer.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use usage_ledger::{Ledger, LedgerStore as _, SqliteStore};

use crate::support::{Notifying, db_path, next_event, record};

/// The database the child records into; set only in the child.
const CHILD_ENV: &str = "USAGE_LEDGER_KILL_CHILD_DB";
/// The database the child of the timed test records into; set only in that child.
const TIMED_CHILD_ENV: &str = "USAGE_LEDGER_KILL_TIMED_CHILD_DB";
/// What the child prints once it is ready to be killed.
const READY: &str = "recorded, flushed 3, then recorded 2 more";

/// Does nothing in a normal run; the kill test re-runs this binary with only this test and
/// [`CHILD_ENV`] set, and kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_records_and_waits_to_be_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (recorder, flusher) = Ledger::open(path.as_ref(), None, Duration::from_secs(3600)).unwrap();
    for _ in 0..3 {
        recorder.record(record("a@example.com", "coder-model"));
    }
    flusher.flush().await.unwrap();
    for _ in 0..2 {
        recorder.record(record("a@example.com", "coder-model"));
    }
    println!("{READY}");
    // Wait for the parent's SIGKILL.
    std::future::pending::<()>().await;
}

/// Does nothing in a normal run: the child of the timed kill test. It flushes every 20 ms on
/// its own, waits for the flush of its first three records, records two more and is killed,
/// maybe before they are flushed, maybe after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_child_records_and_waits_to_be_killed() {
    let Ok(path) = std::env::var(TIMED_CHILD_ENV) else {
        return;
    };
    let (events, flushed) = std::sync::mpsc::channel();
    let store = Notifying {
        inner: SqliteStore::open(path.as_ref()).unwrap(),
        events,
    };
    let (recorder, _flusher) = Ledger::start(store, None, Duration::from_millis(20));
    for _ in 0..3 {
        recorder.record(record("a@example.com", "coder-model"));
    }
    let reader = SqliteStore::open_existing(path.as_ref()).unwrap();
    tokio::task::spawn_blocking(move || {
        // A flush may take the first records before the third arrived: wait for all three.
        while reader.rollups_since(0).unwrap().total().requests < 3 {
            next_event(&flushed);
        }
    })
    .await
    .unwrap();
    for _ in 0..2 {
        recorder.record(record("a@example.com", "coder-model"));
    }
    println!("{READY}");
    std::future::pending::<()>().await;
}

#[test]
fn a_kill_loses_only_what_was_not_flushed() {
    let stored = killed_child("kill::child_records_and_waits_to_be_killed", CHILD_ENV);
    assert_eq!(stored, 3);
}

#[test]
fn a_kill_loses_at_most_the_flush_interval_and_never_part_of_a_flush() {
    let stored = killed_child(
        "kill::timed_child_records_and_waits_to_be_killed",
        TIMED_CHILD_ENV,
    );
    assert!(
        stored == 3 || stored == 5,
        "the three flushed requests, and the other two whole or not at all: {stored}"
    );
}

/// Runs the child test `name` with a fresh database in `env`, kills it with SIGKILL once it is
/// ready, checks the database is intact, and returns how many requests it holds.
fn killed_child(name: &str, env: &str) -> u64 {
    let (_dir, path) = db_path();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(READY));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(ready, "the child got ready ({status})");
    assert!(!status.success(), "the child was killed");

    let integrity: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let store = SqliteStore::open_existing(&path).unwrap();
    store.rollups_since(0).unwrap().total().requests
}
