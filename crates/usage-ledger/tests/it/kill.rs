//! A kill -9 while recording: a child process flushes some records, records more, and is
//! killed. What it flushed is in the database, intact; what it had not flushed is lost, and
//! nothing else.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use usage_ledger::{Ledger, LedgerStore as _, SqliteStore};

use crate::support::{db_path, record};

/// The database the child records into; set only in the child.
const CHILD_ENV: &str = "USAGE_LEDGER_KILL_CHILD_DB";
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

#[test]
fn a_kill_loses_only_what_was_not_flushed() {
    let (_dir, path) = db_path();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill::child_records_and_waits_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
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

    let store = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(store.rollups_since(0).unwrap().total().requests, 3);
    let integrity: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}
