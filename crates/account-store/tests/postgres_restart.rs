//! The PostgreSQL store's change feed when the database restarts. A test binary of its own:
//! stopping the cluster would break the connections of every other test sharing it.

use std::time::Duration;

use account_store::{Change, PgStore};

/// How long the test waits for a change before it fails (it goes on as soon as one arrives).
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

async fn next(changes: &mut tokio::sync::mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(NOTICE_TIMEOUT, changes.recv())
        .await
        .expect("a change within the timeout")
        .expect("the feed runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_catches_up_after_the_database_restarts() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let cluster = test_postgres::Cluster::get().unwrap();
    let store = PgStore::open(&url, None, 2).await.unwrap();
    let (_feed, mut changes) = store.follow();
    assert_eq!(next(&mut changes).await, Change::Resync);
    cluster.stop().unwrap();
    let down = store.list().await.unwrap_err();
    assert!(down.is_unreachable(), "{down}");
    assert!(
        down.to_string().contains("docs/troubleshooting.md"),
        "{down}"
    );
    cluster.start_again().unwrap();
    assert_eq!(next(&mut changes).await, Change::Resync);
    assert!(store.list().await.unwrap().accounts.is_empty());
}
