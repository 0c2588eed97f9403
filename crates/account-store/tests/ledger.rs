//! The usage ledger in PostgreSQL ([`PgLedger`]) against a real PostgreSQL (a throwaway
//! cluster, see test-postgres): one test body run against it and against the embedded SQLite
//! store, which must agree; servers adding to the same rows at once; the table's columns; a
//! reader that finds no usage; and a database that goes away and comes back, under the
//! flusher. Each test skips (printing why) without PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use account_store::{PgLedger, StoreError};
use usage_ledger::{
    Api, FailureClass, GroupBy, KEY_COLUMNS, Ledger, LedgerError, LedgerStore, Outcome, Record,
    Rollups, SqliteStore, UsageQuery, UsageReport, counter_columns,
};

/// 2026-12-05 14:00:00 UTC, the start of an hour.
const HOUR: u64 = 1_796_479_200;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(HOUR + seconds)
}

/// A runtime for the async test helpers; the ledger's methods themselves block.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh database on the shared test cluster, or `None` (the test skips).
fn database() -> Option<String> {
    runtime().block_on(test_postgres::database())
}

/// Migrates the database at `url`: a ledger's first write creates its table.
fn create_usage_table(url: &str) {
    PgLedger::new(url)
        .unwrap()
        .add(&Rollups::default())
        .unwrap();
}

fn request(credential: &str, model: &str, client: &str, seconds: u64) -> Record {
    Record {
        at: at(seconds),
        credential: Arc::from(credential),
        client: Arc::from(client),
        model: Arc::from(model),
        api: Api::ChatCompletions,
        outcome: Outcome::Success,
        prompt_tokens: 100,
        completion_tokens: 20,
        cached_tokens: 30,
        tokens_estimated: false,
        latency: Duration::from_millis(300),
        ttft: Some(Duration::from_millis(100)),
        attempts: 1,
    }
}

/// Three hours and a day of traffic: two credentials, two models, two clients and none, every
/// API, a failure, estimated tokens, a request with no first byte.
fn traffic() -> Rollups {
    let mut rollups = Rollups::default();
    rollups.add(&request("a@example.com", "coder-model", "laptop", 0));
    rollups.add(&request("a@example.com", "coder-model", "laptop", 10));
    let mut messages = request("dashscope#1", "qwen-max", "ci", 3600);
    messages.api = Api::Messages;
    messages.tokens_estimated = true;
    rollups.add(&messages);
    let mut failed = request("dashscope#1", "qwen-max", "ci", 7200 + 5);
    failed.outcome = Outcome::Failure(FailureClass::Quota);
    failed.ttft = None;
    failed.latency = Duration::from_secs(700);
    rollups.add(&failed);
    let mut responses = request("a@example.com", "qwen-max", "", 86_400);
    responses.api = Api::Responses;
    responses.attempts = 3;
    rollups.add(&responses);
    rollups
}

const GROUPINGS: [GroupBy; 5] = [
    GroupBy::Credential,
    GroupBy::Model,
    GroupBy::ClientKey,
    GroupBy::Day,
    GroupBy::Hour,
];

/// What a store shows after the shared body.
#[derive(Debug, PartialEq)]
struct Seen {
    reports: Vec<UsageReport>,
    rollups: Vec<(usage_ledger::RollupKey, usage_ledger::Counters)>,
}

/// The body both stores run: adding twice adds, usage is grouped by each dimension, pruning
/// deletes whole hours. Returns what the store shows, for the two stores to be compared.
fn exercise(store: &mut impl LedgerStore) -> Seen {
    let traffic = traffic();
    store.add(&traffic).unwrap();
    store.add(&traffic).unwrap();
    let stored = store.rollups_since(0).unwrap();
    assert_eq!(stored.len(), traffic.len());
    for (key, counters) in traffic.iter() {
        let mut twice = *counters;
        twice.merge(counters);
        assert_eq!(stored.get(key), Some(&twice), "{key:?}");
    }
    let everything =
        |store: &dyn LedgerStore, by| store.usage(&UsageQuery { since: at(0), by }).unwrap();
    let keys = |report: &UsageReport| {
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
        keys(&everything(store, GroupBy::Credential)),
        owned(&[("a@example.com", 6), ("dashscope#1", 4)])
    );
    assert_eq!(
        keys(&everything(store, GroupBy::ClientKey)),
        owned(&[("ci", 4), ("laptop", 4), ("", 2)])
    );
    assert_eq!(
        keys(&everything(store, GroupBy::Day)),
        owned(&[("2026-12-05", 8), ("2026-12-06", 2)])
    );
    let since_second_hour = store
        .usage(&UsageQuery {
            since: at(3600 + 1800),
            by: GroupBy::Credential,
        })
        .unwrap();
    assert_eq!(since_second_hour.since, "2026-12-05T15:00Z");
    assert_eq!(since_second_hour.total.requests, 6);
    assert_eq!(since_second_hour.total.failures_by_class.quota, 2);
    assert_eq!(since_second_hour.total.estimated_requests, 2);
    assert_eq!(since_second_hour.total.cached_tokens, 180);

    let mut reports: Vec<UsageReport> = GROUPINGS.iter().map(|&by| everything(store, by)).collect();
    reports.push(since_second_hour);
    let mut rollups: Vec<_> = stored
        .iter()
        .map(|(key, counters)| (key.clone(), *counters))
        .collect();
    rollups.sort_by(|a, b| a.0.cmp(&b.0));

    let first_kept = HOUR as i64 + 7200;
    assert_eq!(store.prune(first_kept).unwrap(), 2, "the first two hours");
    let left = store.rollups_since(0).unwrap();
    assert!(left.iter().all(|(key, _)| key.hour >= first_kept));
    assert_eq!(left.total().requests, 4);
    assert_eq!(store.prune(first_kept).unwrap(), 0);
    Seen { reports, rollups }
}

#[test]
fn postgres_keeps_and_reports_usage_exactly_as_sqlite_does() {
    let Some(url) = database() else {
        return;
    };
    let mut postgres = PgLedger::new(&url).unwrap();
    let from_postgres = exercise(&mut postgres);
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::open(&dir.path().join("usage.sqlite3")).unwrap();
    let from_sqlite = exercise(&mut sqlite);
    assert_eq!(from_postgres, from_sqlite);
    // A reader sees what the writer wrote.
    let reader = PgLedger::open_existing(&url).unwrap();
    assert_eq!(
        reader.rollups_since(0).unwrap().total().requests,
        4,
        "what the prune left"
    );
}

#[test]
fn servers_adding_to_the_same_rows_at_once_lose_nothing() {
    let Some(url) = database() else {
        return;
    };
    // The schema first, so the writers race on rows, not on the migration.
    create_usage_table(&url);
    const WRITERS: u64 = 4;
    const FLUSHES: u64 = 10;
    std::thread::scope(|scope| {
        for _ in 0..WRITERS {
            scope.spawn(|| {
                let mut ledger = PgLedger::new(&url).unwrap();
                for _ in 0..FLUSHES {
                    ledger.add(&traffic()).unwrap();
                }
            });
        }
    });
    let stored = PgLedger::open_existing(&url)
        .unwrap()
        .rollups_since(0)
        .unwrap();
    let once = traffic();
    assert_eq!(stored.len(), once.len());
    for (key, counters) in once.iter() {
        let got = stored.get(key).unwrap();
        assert_eq!(got.requests, counters.requests * WRITERS * FLUSHES);
        assert_eq!(
            got.latency.counts,
            counters.latency.counts.map(|n| n * WRITERS * FLUSHES),
            "histogram buckets add up"
        );
        assert_eq!(got.ttft.sum_us, counters.ttft.sum_us * WRITERS * FLUSHES);
    }
}

#[test]
fn the_usage_table_has_the_ledgers_columns_in_order() {
    let Some(url) = database() else {
        return;
    };
    create_usage_table(&url);
    let columns: Vec<String> = runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_name = 'cliproxy_usage_hourly' ORDER BY ordinal_position",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    });
    let expected: Vec<String> = KEY_COLUMNS
        .iter()
        .map(|column| (*column).to_owned())
        .chain(counter_columns().iter().cloned())
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn a_reader_finds_no_usage_in_a_database_no_server_wrote() {
    let Some(url) = database() else {
        return;
    };
    let with_password = url.replacen("cliproxy_test@", "cliproxy_test:hunter2@", 1);
    let error = PgLedger::open_existing(&with_password).unwrap_err();
    assert!(matches!(error, StoreError::NoUsage { .. }), "{error}");
    let shown = error.to_string();
    assert!(
        shown.contains("`cliproxy serve` with this store"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    // The reader changed nothing: still no usage table.
    assert!(matches!(
        PgLedger::open_existing(&url),
        Err(StoreError::NoUsage { .. })
    ));
}

#[test]
fn the_flusher_keeps_usage_while_the_database_is_down_and_writes_it_after() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let Some(cluster) = test_postgres::Cluster::private() else {
        return;
    };
    let runtime = runtime();
    let url = runtime.block_on(cluster.database());
    let ledger = PgLedger::new(&url).unwrap();
    runtime.block_on(async {
        let (recorder, flusher) = Ledger::start(ledger, None, Duration::from_secs(3600));
        recorder.record(request("a@example.com", "coder-model", "laptop", 0));
        flusher.flush().await.unwrap();

        cluster.stop().unwrap();
        recorder.record(request("a@example.com", "coder-model", "laptop", 0));
        let error = flusher.flush().await.unwrap_err();
        assert!(matches!(error, LedgerError::Store { .. }), "{error}");
        assert!(error.to_string().contains("Store unreachable"), "{error}");
        recorder.record(request("a@example.com", "coder-model", "laptop", 0));
        assert!(flusher.flush().await.is_err());

        cluster.start_again().unwrap();
        // The old connection died with the server: the first flush after makes a new one.
        recorder.record(request("a@example.com", "coder-model", "laptop", 0));
        flusher.flush().await.unwrap();
        flusher.flush_and_close().await.unwrap();
    });
    let reader = PgLedger::open_existing(&url).unwrap();
    let report = reader
        .usage(&UsageQuery {
            since: at(0),
            by: GroupBy::Credential,
        })
        .unwrap();
    assert_eq!(report.total.requests, 4, "nothing lost, nothing twice");
}

#[test]
fn a_ledger_made_while_the_database_is_away_writes_once_it_is_there() {
    let Some(cluster) = test_postgres::Cluster::private() else {
        return;
    };
    let url = runtime().block_on(cluster.database());
    cluster.stop().unwrap();
    let mut ledger = PgLedger::new(&url).expect("made without a connection");
    let error = ledger.add(&traffic()).unwrap_err();
    assert!(error.to_string().contains("could not connect"), "{error}");
    assert!(matches!(
        PgLedger::open_existing(&url),
        Err(StoreError::Unreachable { .. })
    ));
    cluster.start_again().unwrap();
    ledger.add(&traffic()).unwrap();
    assert_eq!(ledger.rollups_since(0).unwrap().total(), traffic().total());
}
