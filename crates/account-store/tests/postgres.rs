//! The PostgreSQL store against a real PostgreSQL (a throwaway cluster, see test-postgres):
//! rows keep every field of a token file, servers refresh an account once between them, a
//! server that dies mid-refresh leaves the old row, changes reach the other servers, schemas
//! migrate and a newer one is refused, tokens can be sealed, the change feed catches up after
//! the database restarts, and accounts move between the auth dir and the database and back. Each test skips (printing why) without PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use account_store::{AccountStore, Change, Copied, EncryptionKey, Location, PgStore, StoreError};
use time::OffsetDateTime;
use time::macros::datetime;
use token_store::{AccountKey, AuthDir, QWEN, TokenRecord};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// How long a test waits for a notification before it fails (not a synchronisation sleep:
/// the test proceeds as soon as the change arrives).
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

fn record(email: &str, refresh: &str) -> TokenRecord {
    let mut record = TokenRecord::new(QWEN, format!("access-{refresh}"));
    record.email = Some(email.to_owned());
    record.refresh_token = Some(refresh.to_owned());
    record.token_type = Some("Bearer".to_owned());
    record.resource_url = Some("portal.qwen.ai".to_owned());
    record.expired = Some(datetime!(2030-01-01 00:00:00 UTC));
    record.last_refresh = Some(datetime!(2029-12-31 23:00:00 UTC));
    record
        .extra
        .insert("custom".to_owned(), serde_json::json!({"kept": [1, 2]}));
    record
}

async fn open(url: &str) -> PgStore {
    PgStore::open(url, None, 4).await.expect("open the store")
}

/// The next change the feed reports.
async fn next(changes: &mut tokio::sync::mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(NOTICE_TIMEOUT, changes.recv())
        .await
        .expect("a change within the timeout")
        .expect("the feed runs")
}

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_keep_every_field_of_a_token_file() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let store = open(&url).await;
    let saved = store
        .save_login(&record("A@b.com", "r1"), OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(saved.replaced.is_empty());
    assert!(!saved.saved_to.contains("r1"));
    let listing = store.list().await.unwrap();
    assert_eq!(listing.accounts.len(), 1);
    let stored = &listing.accounts[0];
    assert_eq!(stored.key, AccountKey::for_email(QWEN, "a@b.com"));
    assert_eq!(stored.location, Location::Row);
    assert_eq!(stored.record, record("A@b.com", "r1"));
    assert_eq!(stored.place(), "(postgres)");

    let again = store
        .save_login(&record("a@B.com", "r2"), OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(again.replaced.len(), 1, "one row per account");
    assert_eq!(store.list().await.unwrap().accounts.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_refresh_an_account_once_between_them() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let first = open(&url).await;
    first
        .save_login(&record("a@b.com", "r0"), OffsetDateTime::now_utc())
        .await
        .unwrap();
    let key = AccountKey::for_email(QWEN, "a@b.com");
    let refreshed = Arc::new(AtomicUsize::new(0));
    let mut servers = Vec::new();
    for _ in 0..6 {
        // Each store is a server of its own: its own connections.
        let store = AccountStore::Postgres(open(&url).await);
        let (key, refreshed) = (key.clone(), Arc::clone(&refreshed));
        servers.push(tokio::spawn(async move {
            let (lock, current) = store.lock(&key, &Location::Row).await.unwrap();
            // The re-read under the lock shows whether someone else refreshed already.
            if current.refresh_token.as_deref() == Some("r0") {
                refreshed.fetch_add(1, Ordering::SeqCst);
                lock.write(&record("a@b.com", "r1")).await.unwrap();
            } else {
                assert_eq!(current.refresh_token.as_deref(), Some("r1"));
                lock.release().await;
            }
        }));
    }
    for server in servers {
        server.await.unwrap();
    }
    assert_eq!(refreshed.load(Ordering::SeqCst), 1);
    let row = first.load(&key).await.unwrap().unwrap();
    assert_eq!(row.record.refresh_token.as_deref(), Some("r1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_dies_mid_refresh_leaves_the_old_row_to_the_next() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let dying = open(&url).await;
    dying
        .save_login(&record("a@b.com", "r0"), OffsetDateTime::now_utc())
        .await
        .unwrap();
    let key = AccountKey::for_email(QWEN, "a@b.com");
    let (lock, _) = dying.lock(&key).await.unwrap();
    // The server dies: the database ends its session, rolling its transaction back.
    raw(&url)
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'idle in transaction'",
            &[],
        )
        .await
        .unwrap();
    let other = open(&url).await;
    let (next, current) = other.lock(&key).await.unwrap();
    assert_eq!(current.refresh_token.as_deref(), Some("r0"));
    next.write(&record("a@b.com", "r1")).await.unwrap();
    let late = lock.write(&record("a@b.com", "lost")).await.unwrap_err();
    assert!(late.is_unreachable(), "{late}");
    let row = other.load(&key).await.unwrap().unwrap();
    assert_eq!(row.record.refresh_token.as_deref(), Some("r1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_refreshes_and_logouts_reach_the_other_servers() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let (one, two) = (open(&url).await, open(&url).await);
    let (_feed, mut changes) = two.follow();
    assert_eq!(next(&mut changes).await, Change::Resync);
    let key = AccountKey::for_email(QWEN, "a@b.com");
    let account = Change::Account(key.clone());

    one.save_login(&record("a@b.com", "r0"), OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(next(&mut changes).await, account);
    let (lock, _) = one.lock(&key).await.unwrap();
    lock.write(&record("a@b.com", "r1")).await.unwrap();
    assert_eq!(next(&mut changes).await, account);
    assert_eq!(one.set_account_disabled("a@b.com", true).await.unwrap(), 1);
    assert_eq!(next(&mut changes).await, account);
    assert!(one.set_credential_disabled("key-1", true).await.unwrap());
    assert_eq!(next(&mut changes).await, Change::Credentials);
    assert_eq!(one.remove_account("A@b.com").await.unwrap().len(), 1);
    assert_eq!(next(&mut changes).await, account);

    // A server's own changes are not echoed back to it; a rolled-back lock announces nothing.
    two.save_login(&record("c@d.com", "r0"), OffsetDateTime::now_utc())
        .await
        .unwrap();
    let (lock, _) = one
        .lock(&AccountKey::for_email(QWEN, "c@d.com"))
        .await
        .unwrap();
    lock.release().await;
    one.set_credential_disabled("key-1", false).await.unwrap();
    assert_eq!(next(&mut changes).await, Change::Credentials);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_catches_up_after_the_database_restarts() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let Some(cluster) = test_postgres::Cluster::private() else {
        return;
    };
    let url = cluster.database().await;
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

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    open(&url).await;
    open(&url).await;
    let client = raw(&url).await;
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM cliproxy_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Every migration once, in order (a number may be unused while branches merge).
    assert_eq!(versions.first(), Some(&1), "{versions:?}");
    assert_eq!(
        versions.last(),
        Some(&account_store::postgres::known_version()),
        "{versions:?}"
    );
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "{versions:?}"
    );
    client
        .execute(
            "INSERT INTO cliproxy_schema_migrations (version, name) VALUES (999, 'future')",
            &[],
        )
        .await
        .unwrap();
    let refused = PgStore::open(&url, None, 1).await.unwrap_err();
    assert!(matches!(
        refused,
        StoreError::SchemaTooNew { found: 999, .. }
    ));
    assert!(
        refused.to_string().contains("upgrade cliproxy"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_and_unreachable_servers_say_what_to_do_without_the_password() {
    let bad = PgStore::open("mysql://x", None, 1).await.unwrap_err();
    assert!(matches!(bad, StoreError::BadUrl { .. }), "{bad}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u:secret-pw@127.0.0.1:{port}/db");
    let down = PgStore::open(&url, None, 1).await.unwrap_err();
    let text = down.to_string();
    assert!(down.is_unreachable(), "{text}");
    assert!(!text.contains("secret-pw"), "{text}");
    assert!(
        text.contains(&format!("postgres://u@127.0.0.1:{port}/db")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_tokens_need_their_key() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let sealed = PgStore::open(&url, Some(EncryptionKey::parse(KEY).unwrap()), 2)
        .await
        .unwrap();
    sealed
        .save_login(
            &record("a@b.com", "secret-refresh"),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let row = raw(&url)
        .await
        .query_one(
            "SELECT access_token, refresh_token FROM cliproxy_accounts",
            &[],
        )
        .await
        .unwrap();
    for column in 0..2 {
        let value: String = row.get(column);
        assert!(value.starts_with("cliproxy-aes256gcm:v1:"), "{value}");
        assert!(!value.contains("secret-refresh"), "{value}");
    }
    assert_eq!(
        sealed.list().await.unwrap().accounts[0].record,
        record("a@b.com", "secret-refresh")
    );
    let keyless = open(&url).await.list().await.unwrap();
    assert!(keyless.accounts.is_empty());
    assert!(keyless.problems[0].reason.contains("store.encryption-key"));
    let other_key = EncryptionKey::parse(&"ab".repeat(32)).unwrap();
    let wrong = PgStore::open(&url, Some(other_key), 1).await.unwrap();
    let wrong = wrong.list().await.unwrap();
    assert!(wrong.problems[0].reason.contains("does not open"));
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_move_to_the_database_and_back_idempotently() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    let source_dir = tempfile::tempdir().unwrap();
    let source = AuthDir::open(source_dir.path()).unwrap();
    source.save_login(&record("a@b.com", "ra"), now).unwrap();
    source.save_login(&record("c@d.com", "rc"), now).unwrap();
    source.set_credential_disabled("key-1", true).unwrap();
    // 0600 like every token file (a file readable by others would be tightened by any read).
    let broken = source_dir.path().join("broken.json");
    std::fs::write(&broken, "{").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let files_before = snapshot(source_dir.path());
    let source = AccountStore::Dir(source);
    let database = AccountStore::Postgres(
        PgStore::open(&url, Some(EncryptionKey::parse(KEY).unwrap()), 2)
            .await
            .unwrap(),
    );

    let there = account_store::migrate(&source, &database, now)
        .await
        .unwrap();
    assert_eq!(there.added, ["a@b.com", "c@d.com"]);
    assert_eq!(there.skipped.len(), 1);
    assert_eq!(there.skipped[0].name, "broken.json");
    assert_eq!(there.disabled_keys_added, 1);
    assert_eq!(
        snapshot(source_dir.path()),
        files_before,
        "the source is untouched"
    );
    let again = account_store::migrate(&source, &database, now)
        .await
        .unwrap();
    assert_eq!(again.unchanged, ["a@b.com", "c@d.com"]);
    assert!(again.added.is_empty() && again.updated.is_empty());
    assert_eq!(again.disabled_keys_added, 0);

    // The database refreshed an account since: migrating the old files again keeps it.
    let key = AccountKey::for_email(QWEN, "a@b.com");
    let (lock, mut newer) = database.lock(&key, &Location::Row).await.unwrap();
    newer.refresh_token = Some("ra2".to_owned());
    newer.last_refresh = Some(datetime!(2030-01-01 00:00:00 UTC));
    lock.write(&newer).await.unwrap();
    let kept = account_store::migrate(&source, &database, now)
        .await
        .unwrap();
    assert_eq!(kept.kept_newer, ["a@b.com"]);

    let back_dir = tempfile::tempdir().unwrap();
    let back = AccountStore::Dir(AuthDir::open(back_dir.path()).unwrap());
    let home = account_store::migrate(&database, &back, now).await.unwrap();
    assert_eq!(home.added, ["a@b.com", "c@d.com"]);
    let listed = back.list().await.unwrap();
    assert_eq!(listed.accounts[0].record, newer);
    assert_eq!(listed.accounts[1].record, record("c@d.com", "rc"));
    assert_eq!(
        back.disabled_credentials()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["key-1"]
    );
    let home_again = account_store::migrate(&database, &back, now).await.unwrap();
    assert_eq!(home_again.unchanged, ["a@b.com", "c@d.com"]);
    assert!(matches!(
        back.copy_in(&listed.accounts[1], now).await.unwrap(),
        Copied::Unchanged
    ));
}

/// Every file of `dir` with its bytes and mode.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
                meta.permissions().mode(),
            )
        })
        .collect();
    files.sort();
    files
}
