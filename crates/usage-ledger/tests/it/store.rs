//! The SQLite store as a user meets it: a private file in WAL mode, refusals of files it must
//! not touch, grouped queries, retention, and a reader beside a writer.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use usage_ledger::{
    Api, FailureClass, GroupBy, LedgerError, LedgerStore as _, Outcome, Rollups, SqliteStore,
    UsageQuery,
};

use crate::support::{HOUR, at, db_path, record};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_database_is_private_in_wal_mode_with_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new").join("usage.sqlite3");
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let mut rollups = Rollups::default();
    rollups.add(&record("a@example.com", "coder-model"));
    store.add(&rollups).unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    let journal: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    let wal = path.with_file_name("usage.sqlite3-wal");
    assert_eq!(mode(&wal), 0o600, "SQLite's own files are as private");
}

#[test]
fn a_database_others_can_read_is_made_private() {
    let (_dir, path) = db_path();
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let (_dir, path) = db_path();
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 7")
        .unwrap();
    for error in [
        SqliteStore::open(&path).unwrap_err(),
        SqliteStore::open_existing(&path).unwrap_err(),
    ] {
        assert!(
            matches!(
                error,
                LedgerError::NewerSchema {
                    found: 7,
                    supported: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("schema version 7, newer than this cliproxy knows (1)"),
            "{message}"
        );
        assert!(message.contains("upgrade cliproxy"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 7);
}

#[test]
fn a_file_that_is_no_database_is_named_and_kept() {
    let (_dir, path) = db_path();
    let text = "not a database, but long enough for SQLite to read a header from it\n".repeat(20);
    std::fs::write(&path, &text).unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(error, LedgerError::NotADatabase { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("is not a SQLite database"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn a_reader_does_not_create_a_missing_database() {
    let (_dir, path) = db_path();
    let error = SqliteStore::open_existing(&path).unwrap_err();
    assert!(matches!(error, LedgerError::Missing { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("no usage database at"),
        "{error}"
    );
    assert!(!path.exists());
}

#[test]
fn a_directory_that_cannot_be_made_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let error = SqliteStore::open(&file.join("usage.sqlite3")).unwrap_err();
    assert!(matches!(error, LedgerError::Create { .. }), "{error:?}");
    assert!(
        error.to_string().contains("set usage-db to another path"),
        "{error}"
    );
}

/// Three hours of traffic: two credentials, two models, two clients, a failure.
fn traffic() -> Rollups {
    let mut rollups = Rollups::default();
    let mut add = |credential: &str, model: &str, client: &str, seconds, outcome| {
        let mut record = record(credential, model);
        record.client = Arc::from(client);
        record.at = at(seconds);
        record.outcome = outcome;
        rollups.add(&record);
    };
    add(
        "a@example.com",
        "coder-model",
        "laptop",
        0,
        Outcome::Success,
    );
    add(
        "a@example.com",
        "coder-model",
        "laptop",
        10,
        Outcome::Success,
    );
    add("dashscope#1", "qwen-max", "ci", 3600, Outcome::Success);
    add(
        "dashscope#1",
        "qwen-max",
        "ci",
        7200 + 5,
        Outcome::Failure(FailureClass::Quota),
    );
    add("a@example.com", "qwen-max", "", 86_400, Outcome::Success);
    rollups
}

#[test]
fn usage_is_grouped_by_each_dimension() {
    let (_dir, path) = db_path();
    let mut store = SqliteStore::open(&path).unwrap();
    store.add(&traffic()).unwrap();
    let query = |by| {
        let report = store.usage(&UsageQuery { since: at(0), by }).unwrap();
        report
            .rows
            .iter()
            .map(|row| (row.key.clone(), row.totals.requests))
            .collect::<Vec<_>>()
    };
    let owned = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(key, n)| ((*key).to_owned(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        query(GroupBy::Credential),
        owned(&[("a@example.com", 3), ("dashscope#1", 2)])
    );
    assert_eq!(
        query(GroupBy::Model),
        owned(&[("qwen-max", 3), ("coder-model", 2)])
    );
    assert_eq!(
        query(GroupBy::ClientKey),
        owned(&[("ci", 2), ("laptop", 2), ("", 1)])
    );
    assert_eq!(
        query(GroupBy::Day),
        owned(&[("2026-12-05", 4), ("2026-12-06", 1)])
    );
    assert_eq!(
        query(GroupBy::Hour),
        owned(&[
            ("2026-12-05T14:00Z", 2),
            ("2026-12-05T15:00Z", 1),
            ("2026-12-05T16:00Z", 1),
            ("2026-12-06T14:00Z", 1),
        ])
    );
    let report = store
        .usage(&UsageQuery {
            since: at(3600 + 1800),
            by: GroupBy::Credential,
        })
        .unwrap();
    assert_eq!(
        report.since, "2026-12-05T15:00Z",
        "the hour `since` falls in counts"
    );
    assert_eq!(report.total.requests, 3);
    assert_eq!(report.total.failures, 1);
    assert_eq!(report.total.failures_by_class.quota, 1);
    assert_eq!(report.total.prompt_tokens, 300);
    assert_eq!(report.total.total_tokens, 360);
    assert_eq!(report.total.latency_ms.count, 3);
    assert_eq!(report.total.latency_ms.mean, Some(300));
    assert_eq!(report.total.ttft_ms.count, 3);
}

#[test]
fn the_report_serializes_to_the_documented_json() {
    let (_dir, path) = db_path();
    let mut store = SqliteStore::open(&path).unwrap();
    let mut rollups = Rollups::default();
    let mut failed = record("a@example.com", "coder-model");
    failed.outcome = Outcome::Failure(FailureClass::Timeout);
    failed.ttft = None;
    failed.tokens_estimated = true;
    rollups.add(&record("a@example.com", "coder-model"));
    rollups.add(&failed);
    store.add(&rollups).unwrap();
    let report = store
        .usage(&UsageQuery {
            since: at(0),
            by: GroupBy::Model,
        })
        .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["since"], "2026-12-05T14:00Z");
    assert_eq!(json["by"], "model");
    let row = &json["rows"][0];
    assert_eq!(row["key"], "coder-model");
    assert_eq!(row["requests"], 2);
    assert_eq!(row["successes"], 1);
    assert_eq!(row["failures"], 1);
    assert_eq!(row["failures_by_class"]["timeout"], 1);
    assert_eq!(row["failures_by_class"]["upstream_5xx"], 0);
    assert_eq!(row["prompt_tokens"], 200);
    assert_eq!(row["completion_tokens"], 40);
    assert_eq!(row["total_tokens"], 240);
    assert_eq!(row["estimated_requests"], 1);
    assert_eq!(row["upstream_attempts"], 2);
    assert_eq!(row["latency_ms"]["count"], 2);
    assert_eq!(row["latency_ms"]["mean"], 300);
    assert_eq!(
        row["latency_ms"]["p50"], 375,
        "interpolated in the 250..500 ms bucket"
    );
    assert_eq!(row["ttft_ms"]["count"], 1);
    assert_eq!(json["total"]["requests"], 2);
}

#[test]
fn retention_deletes_whole_hours_before_the_first_kept_one() {
    let (_dir, path) = db_path();
    let mut store = SqliteStore::open(&path).unwrap();
    store.add(&traffic()).unwrap();
    let first_kept = HOUR as i64 + 7200;
    assert_eq!(store.prune(first_kept).unwrap(), 2);
    let left = store.rollups_since(0).unwrap();
    assert!(left.iter().all(|(key, _)| key.hour >= first_kept));
    assert_eq!(left.total().requests, 2);
    assert_eq!(store.prune(first_kept).unwrap(), 0);
}

#[test]
fn a_reader_sees_each_flush_while_the_writer_keeps_the_file_open() {
    let (_dir, path) = db_path();
    let mut writer = SqliteStore::open(&path).unwrap();
    let reader = SqliteStore::open_existing(&path).unwrap();
    let total = |store: &SqliteStore| {
        store
            .usage(&UsageQuery {
                since: at(0),
                by: GroupBy::Hour,
            })
            .unwrap()
            .total
            .requests
    };
    assert_eq!(total(&reader), 0);
    writer.add(&traffic()).unwrap();
    assert_eq!(total(&reader), 5);
    writer.add(&traffic()).unwrap();
    assert_eq!(total(&reader), 10);
    let mut api_rows = Rollups::default();
    let mut responses = record("a@example.com", "coder-model");
    responses.api = Api::Responses;
    api_rows.add(&responses);
    writer.add(&api_rows).unwrap();
    let stored = reader.rollups_since(0).unwrap();
    assert!(stored.iter().any(|(key, _)| key.api == Api::Responses));
    assert_eq!(total(&reader), 11);
}
