//! The PostgreSQL store through the real binary: `store migrate` from the auth dir to a
//! database and back, the account commands against the database, several `serve` processes on
//! one database refreshing each account once between them and hearing of a login made
//! elsewhere, a server killed mid-refresh, and a database that goes away and comes back. Each test skips (printing why) without PostgreSQL, and fails then when
//! `CLIPROXY_REQUIRE_POSTGRES_TESTS=1`.

use fake_qwen::FakeQwen;
use tokio::process::Command;

use crate::support::server::{DAY, MODEL, Server, guarded, write_account};
use crate::support::{Run, Sandbox, fake_qwen, read_json, run};

/// `cliproxy ARGS` in `sandbox`, with its accounts in the database at `url`.
fn on_database(sandbox: &Sandbox, url: &str, args: &[&str]) -> Command {
    let mut command = sandbox.command(args);
    command.env("CLIPROXY_STORE_URL", url);
    command
}

async fn run_on_database(sandbox: &Sandbox, url: &str, args: &[&str]) -> Run {
    run(on_database(sandbox, url, args), "").await
}

/// How many refresh-token grants reached the fake.
fn refreshes(fake: &FakeQwen) -> usize {
    fake.token_requests()
        .iter()
        .filter(|r| r.form_value("grant_type") == Some("refresh_token"))
        .count()
}

#[tokio::test]
async fn accounts_move_to_postgres_and_back_and_the_commands_work_on_either() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let (first, _) = write_account(&sandbox, &fake, "first@example.com", DAY);
    let (second, _) = write_account(&sandbox, &fake, "second@example.com", DAY);
    let before: Vec<Vec<u8>> = [&first, &second]
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    let auth_dir = sandbox.auth_dir();
    let auth_dir = auth_dir.to_str().unwrap();

    let there = sandbox
        .run(&["store", "migrate", "--from", auth_dir, "--to", &url], "")
        .await
        .success();
    assert!(
        there.contains(": 2 added, 0 updated, 0 unchanged"),
        "{there}"
    );
    assert!(there.contains("added: first@example.com"), "{there}");
    let again = sandbox
        .run(&["store", "migrate", "--from", auth_dir, "--to", &url], "")
        .await
        .success();
    assert!(
        again.contains(": 0 added, 0 updated, 2 unchanged"),
        "{again}"
    );
    let after: Vec<Vec<u8>> = [&first, &second]
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    assert_eq!(before, after, "the source is untouched");

    let listed = run_on_database(&sandbox, &url, &["accounts", "list"])
        .await
        .success();
    for email in ["first@example.com", "second@example.com"] {
        let line = listed
            .lines()
            .find(|line| line.contains(email))
            .expect(&listed);
        assert!(
            line.contains(" ok ") && line.ends_with("(postgres)"),
            "{listed}"
        );
    }
    let checked = run_on_database(&sandbox, &url, &["accounts", "check"])
        .await
        .success();
    for email in ["first@example.com", "second@example.com"] {
        let line = checked
            .lines()
            .find(|line| line.contains(email))
            .expect(&checked);
        assert!(line.contains(" ok "), "{checked}");
    }

    let qwen_dir = sandbox.home.path().join(".qwen");
    std::fs::create_dir_all(&qwen_dir).unwrap();
    std::fs::write(
        qwen_dir.join("oauth_creds.json"),
        r#"{"access_token":"qc-access","token_type":"Bearer","refresh_token":"qc-refresh","resource_url":"portal.qwen.ai","expiry_date":4102444800000}"#,
    )
    .unwrap();
    let imported = run_on_database(
        &sandbox,
        &url,
        &["import", "qwen-code", "--email", "coder@example.com"],
    )
    .await
    .success();
    assert!(
        imported.contains("(account qwen-coder@example.com)"),
        "{imported}"
    );
    let listed = run_on_database(&sandbox, &url, &["accounts", "list"])
        .await
        .success();
    assert!(listed.contains("coder@example.com"), "{listed}");
    run_on_database(&sandbox, &url, &["logout", "coder@example.com"])
        .await
        .success();

    let disabled = run_on_database(
        &sandbox,
        &url,
        &["accounts", "disable", "second@example.com"],
    )
    .await
    .success();
    assert!(
        disabled.starts_with("Disabled account second@example.com"),
        "{disabled}"
    );
    let removed = run_on_database(&sandbox, &url, &["logout", "first@example.com"])
        .await
        .success();
    assert!(
        removed.contains("(account qwen-first@example.com)"),
        "{removed}"
    );
    let missing = run_on_database(&sandbox, &url, &["logout", "first@example.com"])
        .await
        .failure(1);
    assert!(
        missing.contains("no account with email first@example.com in postgres://"),
        "{missing}"
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        before[0],
        "the auth dir is not the store"
    );

    let home = sandbox.home.path().join("back");
    let home_text = home.to_str().unwrap();
    let back = sandbox
        .run(&["store", "migrate", "--from", &url, "--to", home_text], "")
        .await
        .success();
    assert!(back.contains(": 1 added, 0 updated, 0 unchanged"), "{back}");
    let files: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut expected = read_json(&second);
    expected["cliproxy_disabled"] = serde_json::Value::Bool(true);
    assert_eq!(read_json(&files[0]), expected, "every field came back");
    let back_again = sandbox
        .run(&["store", "migrate", "--from", &url, "--to", home_text], "")
        .await
        .success();
    assert!(
        back_again.contains(": 0 added, 0 updated, 1 unchanged"),
        "{back_again}"
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://cliproxy:hunter2@127.0.0.1:{port}/accounts");
    let shown = run_on_database(&sandbox, &url, &["accounts", "list"])
        .await
        .failure(1);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains(&format!("postgres://cliproxy@127.0.0.1:{port}/accounts")),
        "{shown}"
    );
    assert!(shown.contains("Store unreachable"), "{shown}");
}

#[tokio::test]
async fn three_servers_refresh_each_account_once_and_hear_of_a_login_elsewhere() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let fake = fake_qwen().await;
    fake.set_token_expires_in(DAY as u64);
    let sandbox = Sandbox::new(&fake);
    // Inside the refresh lead: every server wants to refresh both accounts at once.
    let emails = ["first@example.com", "second@example.com"];
    for email in emails {
        write_account(&sandbox, &fake, email, 60);
    }
    let auth_dir = sandbox.auth_dir();
    sandbox
        .run(
            &[
                "store",
                "migrate",
                "--from",
                auth_dir.to_str().unwrap(),
                "--to",
                &url,
            ],
            "",
        )
        .await
        .success();
    // Token files play no part from here on: the servers use the database.
    std::fs::remove_dir_all(&auth_dir).unwrap();

    // The first refreshes are held at Qwen, so all three servers are up while they hang.
    fake.hold_refreshes(true);
    let mut servers = Vec::new();
    for _ in 0..3 {
        let builder = Server::builder(&sandbox).env("CLIPROXY_STORE_URL", &url);
        servers.push(builder.start().await);
    }
    guarded(
        "a held refresh per account",
        fake.wait_for_held_refreshes(2),
    )
    .await;
    fake.hold_refreshes(false);
    fake.release_held_refreshes(2);
    guarded("the answered refreshes", fake.wait_for_answered_refresh(2)).await;
    for server in &servers {
        for _ in 0..4 {
            assert_eq!(server.chat(MODEL, false).await.status(), 200);
        }
    }
    assert_eq!(
        refreshes(&fake),
        2,
        "one refresh per account across three servers"
    );
    // The database holds the rotated refresh tokens, the ones Qwen still takes.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT refresh_token FROM cliproxy_accounts", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(fake.refresh_token_is_live(row.get(0)));
    }

    let login = run(
        on_database(
            &sandbox,
            &url,
            &[
                "login",
                "qwen",
                "--no-browser",
                "--email",
                "third@example.com",
            ],
        ),
        "",
    )
    .await
    .success();
    assert!(
        login.contains("(account qwen-third@example.com)"),
        "{login}"
    );
    for server in &mut servers {
        let added = server.next_log_containing("account added").await;
        assert!(added.contains("third@example.com"), "{added}");
    }
    run_on_database(
        &sandbox,
        &url,
        &["accounts", "disable", "third@example.com"],
    )
    .await
    .success();
    for server in &mut servers {
        let out = server.next_log_containing("taken out of rotation").await;
        assert!(out.contains("third@example.com"), "{out}");
    }
    run_on_database(&sandbox, &url, &["logout", "first@example.com"])
        .await
        .success();
    for server in &mut servers {
        server
            .next_log_containing("account removed from the store")
            .await;
    }
}

#[tokio::test]
async fn tokens_sealed_with_the_encryption_key_serve_only_with_it() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let (_, tokens) = write_account(&sandbox, &fake, "sealed@example.com", DAY);
    let auth_dir = sandbox.auth_dir();
    let mut migrate = sandbox.command(&[
        "store",
        "migrate",
        "--from",
        auth_dir.to_str().unwrap(),
        "--to",
        &url,
    ]);
    migrate.env("CLIPROXY_STORE_ENCRYPTION_KEY", KEY);
    run(migrate, "").await.success();

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT access_token, refresh_token FROM cliproxy_accounts",
            &[],
        )
        .await
        .unwrap();
    for column in 0..2 {
        let stored: String = row.get(column);
        assert!(stored.starts_with("cliproxy-aes256gcm:v1:"), "{stored}");
        assert!(!stored.contains(&tokens.access_token) && !stored.contains(&tokens.refresh_token));
    }

    let keyless = run_on_database(&sandbox, &url, &["accounts", "list"])
        .await
        .success();
    assert!(
        keyless.contains("skipped qwen-sealed@example.com: its access_token is encrypted"),
        "{keyless}"
    );
    let mut list = on_database(&sandbox, &url, &["accounts", "list"]);
    list.env("CLIPROXY_STORE_ENCRYPTION_KEY", KEY);
    let listed = run(list, "").await.success();
    assert!(listed.contains("sealed@example.com"), "{listed}");
    assert!(!listed.contains("skipped"), "{listed}");

    let server = Server::builder(&sandbox)
        .env("CLIPROXY_STORE_URL", &url)
        .env("CLIPROXY_STORE_ENCRYPTION_KEY", KEY)
        .start()
        .await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
}

#[tokio::test]
async fn a_server_killed_mid_refresh_leaves_the_account_to_another() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let fake = fake_qwen().await;
    fake.set_token_expires_in(DAY as u64);
    let sandbox = Sandbox::new(&fake);
    // Inside the refresh lead: a server refreshes it as soon as it starts.
    let (_, first_tokens) = write_account(&sandbox, &fake, "dev@example.com", 60);
    sandbox.move_into_database(&url).await;

    // The first server takes the row lock and sends its refresh, which Qwen holds: no answer.
    fake.hold_refreshes(true);
    let mut dying = Server::builder(&sandbox)
        .env("CLIPROXY_STORE_URL", &url)
        .start()
        .await;
    guarded(
        "the first server's refresh",
        fake.wait_for_held_refreshes(1),
    )
    .await;
    // The second server wants the same refresh: it waits for the row lock.
    let mut other = Server::builder(&sandbox)
        .env("CLIPROXY_STORE_URL", &url)
        .start()
        .await;
    // The held request is never answered, so its refresh token is still good at Qwen; the
    // next refresh goes straight through.
    fake.hold_refreshes(false);
    dying.kill().await;

    // The database rolled the dead server's transaction back; the other server takes over.
    other.wait_for_log("refreshed the access token").await;
    assert!(!fake.refresh_token_is_live(&first_tokens.refresh_token));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT refresh_token FROM cliproxy_accounts", &[])
        .await
        .unwrap();
    assert!(
        fake.refresh_token_is_live(row.get(0)),
        "the new tokens are committed"
    );
    assert_eq!(other.chat(MODEL, false).await.status(), 200);
}

#[tokio::test]
async fn servers_keep_serving_while_the_database_is_down_and_catch_up_after() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let Some(cluster) = test_postgres::Cluster::private() else {
        return;
    };
    let url = cluster.database().await;
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let (_, tokens) = write_account(&sandbox, &fake, "first@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let mut server = Server::builder(&sandbox)
        .env("CLIPROXY_STORE_URL", &url)
        .start()
        .await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);

    cluster.stop().unwrap();
    server
        .wait_for_log("lost the connection to the PostgreSQL store")
        .await;
    for _ in 0..5 {
        assert_eq!(
            server.chat(MODEL, false).await.status(),
            200,
            "serving with the tokens held"
        );
    }
    let down = run_on_database(&sandbox, &url, &["accounts", "list"])
        .await
        .failure(1);
    assert!(down.contains("Store unreachable"), "{down}");
    // A token that needs renewing now cannot be: its row cannot be locked. Qwen is not asked,
    // so the refresh token stays good for when the database is back.
    fake.expire_access_token(&tokens.access_token);
    assert_ne!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(refreshes(&fake), 0);
    assert!(fake.refresh_token_is_live(&tokens.refresh_token));

    cluster.start_again().unwrap();
    server
        .wait_for_log("reconnected to the PostgreSQL store")
        .await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(refreshes(&fake), 1, "renewed once the row could be locked");
    run(
        on_database(
            &sandbox,
            &url,
            &[
                "login",
                "qwen",
                "--no-browser",
                "--email",
                "second@example.com",
            ],
        ),
        "",
    )
    .await
    .success();
    let added = server.next_log_containing("account added").await;
    assert!(added.contains("second@example.com"), "{added}");
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
}
