//! The usage ledger on the PostgreSQL store through the real binary: two `cliproxy serve` on
//! one database count into the same rollups, which `cliproxy usage` and the management API
//! read from the database; usage recorded while the database is down arrives once it is back.
//! Each test skips (printing why) without PostgreSQL, and fails then when
//! `CLIPROXY_REQUIRE_POSTGRES_TESTS=1`.

use std::time::Duration;

use fake_qwen::FakeQwen;

use crate::support::server::{DAY, MODEL, Server, guarded, write_account};
use crate::support::{Sandbox, fake_qwen, run};

const MANAGEMENT_KEY: &str = "test-management-key-0123456789";

/// A server of `sandbox` on the database at `url`, with a management key.
async fn serve_on(sandbox: &Sandbox, url: &str) -> Server {
    Server::builder(sandbox)
        .env("CLIPROXY_STORE_URL", url)
        .config(&format!("management-key = \"{MANAGEMENT_KEY}\"\n"))
        .start()
        .await
}

/// `cliproxy usage --json ARGS` on the database at `url`: its exit code and output.
async fn usage_on(sandbox: &Sandbox, url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = sandbox.command(&[&["usage", "--json"], args].concat());
    command.env("CLIPROXY_STORE_URL", url);
    let done = run(command, "").await;
    (done.code(), done.stdout(), done.stderr())
}

/// Polls `cliproxy usage --json` until it counts `requests` in total (the servers flush every
/// few seconds); returns that report.
async fn usage_reaching(sandbox: &Sandbox, url: &str, requests: u64) -> serde_json::Value {
    guarded(&format!("usage of {requests} requests"), async {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        loop {
            every.tick().await;
            let (code, stdout, stderr) = usage_on(sandbox, url, &[]).await;
            assert!(
                code == Some(0) || stderr.contains("holds no usage yet"),
                "{stderr}"
            );
            if code == Some(0) {
                let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                if report["total"]["requests"] == requests {
                    return report;
                }
                assert!(
                    report["total"]["requests"].as_u64().unwrap() < requests,
                    "counted more than served: {report:#}"
                );
            }
        }
    })
    .await
}

/// The tokens the fake's answer reports.
fn answer_tokens(body: &serde_json::Value) -> (u64, u64) {
    (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    )
}

/// Sends `count` chats to `server`; returns the prompt and completion tokens answered.
async fn chats(server: &Server, count: usize) -> (u64, u64) {
    let mut tokens = (0, 0);
    for _ in 0..count {
        let response = server.chat(MODEL, false).await;
        assert_eq!(response.status(), 200);
        let (prompt, completion) = answer_tokens(&response.json().await.unwrap());
        tokens.0 += prompt;
        tokens.1 += completion;
    }
    tokens
}

#[tokio::test]
async fn two_servers_on_one_database_count_into_one_ledger_that_usage_reads() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let email = "dev@example.com";
    write_account(&sandbox, &fake, email, DAY);
    sandbox.move_into_database(&url).await;
    let first = serve_on(&sandbox, &url).await;
    let second = serve_on(&sandbox, &url).await;

    let (prompt_a, completion_a) = chats(&first, 3).await;
    let (prompt_b, completion_b) = chats(&second, 2).await;
    assert_eq!(fake.chat_requests().len(), 5, "what the fake served");

    let report = usage_reaching(&sandbox, &url, 5).await;
    assert_eq!(report["total"]["successes"], 5, "{report:#}");
    assert_eq!(
        report["total"]["prompt_tokens"].as_u64().unwrap(),
        prompt_a + prompt_b,
        "{report:#}"
    );
    assert_eq!(
        report["total"]["completion_tokens"].as_u64().unwrap(),
        completion_a + completion_b
    );
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    assert_eq!(rows[0]["key"], email);
    assert_eq!(rows[0]["requests"], 5);
    assert!(
        !sandbox.usage_db().exists(),
        "no SQLite file beside the auth dir: the database holds the usage"
    );

    // The management API of either server reads the same rollups, as the CLI shows them.
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let (_, cli, _) = usage_on(&sandbox, &url, &["--since", &date, "--by", "model"]).await;
    for server in [&first, &second] {
        let api = reqwest::Client::new()
            .get(server.url(&format!("/v0/management/usage?since={date}&by=model")))
            .header("x-management-key", MANAGEMENT_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 200);
        assert_eq!(api.text().await.unwrap(), cli);
    }

    // The table names the database, never its password.
    let mut command = sandbox.command(&["usage"]);
    let with_password = url.replacen("cliproxy_test@", "cliproxy_test:hunter2@", 1);
    command.env("CLIPROXY_STORE_URL", &with_password);
    let table = run(command, "").await.success();
    assert!(table.contains("from postgres://cliproxy_test@"), "{table}");
    assert!(!table.contains("hunter2"), "{table}");

    // An explicit usage-db still wins: this one is empty.
    let mut command = sandbox.command(&["usage", "--json"]);
    command
        .env("CLIPROXY_STORE_URL", &url)
        .env("CLIPROXY_USAGE_DB", sandbox.home.path().join("other.db"));
    let elsewhere = run(command, "").await;
    assert_eq!(elsewhere.code(), Some(1));
    assert!(
        elsewhere.stderr().contains("no usage database at"),
        "{}",
        elsewhere.stderr()
    );
}

#[tokio::test]
async fn usage_recorded_while_the_database_is_down_arrives_when_it_is_back() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let Some(cluster) = test_postgres::Cluster::private() else {
        return;
    };
    let url = cluster.database().await;
    let fake: FakeQwen = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let mut first = serve_on(&sandbox, &url).await;
    let second = serve_on(&sandbox, &url).await;
    let (prompt_before, _) = chats(&first, 1).await;
    usage_reaching(&sandbox, &url, 1).await;

    cluster.stop().unwrap();
    let (prompt_a, _) = chats(&first, 3).await;
    let (prompt_b, _) = chats(&second, 2).await;
    let kept = first
        .wait_for_log("the counts are kept in memory and retried at every flush")
        .await;
    assert!(kept.contains("Store unreachable"), "{kept}");
    let (code, _, stderr) = usage_on(&sandbox, &url, &[]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("Store unreachable"), "{stderr}");

    cluster.start_again().unwrap();
    first
        .wait_for_log("usage is written to the ledger again")
        .await;
    let report = usage_reaching(&sandbox, &url, 6).await;
    assert_eq!(report["total"]["successes"], 6, "nothing lost: {report:#}");
    assert_eq!(fake.chat_requests().len(), 6);
    assert_eq!(
        report["total"]["prompt_tokens"].as_u64().unwrap(),
        prompt_before + prompt_a + prompt_b,
        "{report:#}"
    );
}
