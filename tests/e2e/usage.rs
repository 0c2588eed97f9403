//! `cliproxy usage` end to end: a database seeded through the ledger's own API (as the server
//! records), read by the real binary as a table and as JSON, with and without a writer
//! holding the file, and every refusal a user can meet.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fake_qwen::FakeQwen;
use usage_ledger::{Api, FailureClass, Ledger, Outcome, Record};

use crate::support::server::{MODEL, Server, guarded};
use crate::support::{Sandbox, mode};

/// One finished request `ago` before now.
fn request(credential: &str, model: &str, client: &str, ago: Duration) -> Record {
    Record {
        at: SystemTime::now() - ago,
        credential: Arc::from(credential),
        client: Arc::from(client),
        model: Arc::from(model),
        api: Api::ChatCompletions,
        outcome: Outcome::Success,
        prompt_tokens: 1000,
        completion_tokens: 200,
        cached_tokens: 600,
        tokens_estimated: false,
        latency: Duration::from_millis(1800),
        ttft: Some(Duration::from_millis(240)),
        attempts: 1,
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Today: three requests of the account (one failed on quota, one with estimated tokens) and
/// one of an API key; three days ago, one more of the account.
async fn seed(path: &std::path::Path) {
    let (recorder, flusher) = Ledger::open(path, None, HOUR).expect("open the ledger");
    recorder.record(request("a@example.com", "coder-model", "laptop", HOUR));
    let mut failed = request("a@example.com", "coder-model", "laptop", HOUR);
    failed.outcome = Outcome::Failure(FailureClass::Quota);
    failed.prompt_tokens = 0;
    failed.completion_tokens = 0;
    failed.cached_tokens = 0;
    failed.ttft = None;
    recorder.record(failed);
    let mut estimated = request("a@example.com", "qwen3-coder-plus", "ci", 2 * HOUR);
    estimated.api = Api::Messages;
    estimated.tokens_estimated = true;
    recorder.record(estimated);
    recorder.record(request("dashscope#1", "qwen3-coder-plus", "ci", HOUR));
    recorder.record(request("a@example.com", "coder-model", "laptop", 3 * DAY));
    flusher.flush_and_close().await.expect("flush");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[tokio::test]
async fn usage_shows_what_the_ledger_holds_as_json_and_as_a_table() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let db = sandbox.usage_db();
    seed(&db).await;
    assert_eq!(mode(&db), 0o600);

    let report = json(&sandbox.run(&["usage", "--json"], "").await.success());
    assert_eq!(report["by"], "credential");
    assert_eq!(
        report["total"]["requests"], 4,
        "the last 24 hours: {report}"
    );
    assert_eq!(report["total"]["successes"], 3);
    assert_eq!(report["total"]["failures_by_class"]["quota"], 1);
    assert_eq!(report["total"]["prompt_tokens"], 3000);
    assert_eq!(report["total"]["completion_tokens"], 600);
    assert_eq!(report["total"]["cached_tokens"], 1800);
    assert_eq!(report["total"]["estimated_requests"], 1);
    assert_eq!(report["total"]["latency_ms"]["count"], 4);
    assert_eq!(report["total"]["ttft_ms"]["count"], 3);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], "a@example.com");
    assert_eq!(rows[0]["requests"], 3);
    assert_eq!(rows[1]["key"], "dashscope#1");
    assert_eq!(rows[1]["requests"], 1);

    let week = json(
        &sandbox
            .run(&["usage", "--since", "7d", "--by", "model", "--json"], "")
            .await
            .success(),
    );
    assert_eq!(week["total"]["requests"], 5);
    let models: Vec<(&str, u64)> = week["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap(),
                row["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(models, [("coder-model", 3), ("qwen3-coder-plus", 2)]);

    let days = json(
        &sandbox
            .run(&["usage", "--since", "7d", "--by", "day", "--json"], "")
            .await
            .success(),
    );
    let day_rows = days["rows"].as_array().unwrap();
    assert!((2..=3).contains(&day_rows.len()), "{days}");
    assert_eq!(day_rows[0]["requests"], 1, "the oldest day first: {days}");

    let clients = json(
        &sandbox
            .run(&["usage", "--by", "client-key", "--json"], "")
            .await
            .success(),
    );
    assert_eq!(clients["rows"][0]["key"], "ci");
    assert_eq!(clients["rows"][1]["key"], "laptop");

    let table = sandbox.run(&["usage"], "").await.success();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("Usage since "), "{table}");
    assert!(lines[0].contains("by credential, from "), "{table}");
    assert!(lines[2].starts_with("CREDENTIAL"), "{table}");
    assert!(lines[2].contains("REQUESTS"), "{table}");
    let account = lines
        .iter()
        .find(|l| l.starts_with("a@example.com"))
        .expect(&table);
    assert!(account.contains("1 (quota 1)"), "{account}");
    assert!(
        account.contains("2000*"),
        "estimated tokens are marked: {account}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("dashscope#1")),
        "{table}"
    );
    let total = lines.iter().find(|l| l.starts_with("TOTAL")).expect(&table);
    assert!(total.contains("3000*"), "{total}");
    assert!(
        table.contains("* includes estimates: 1 request(s)"),
        "{table}"
    );

    let hours = sandbox.run(&["usage", "--by", "hour"], "").await.success();
    assert!(hours.contains("HOUR (UTC)"), "{hours}");
    let hour_rows = hours
        .lines()
        .filter(|line| {
            line.starts_with("20")
                && line
                    .split_whitespace()
                    .next()
                    .is_some_and(|key| key.ends_with(":00Z"))
        })
        .count();
    assert_eq!(hour_rows, 2, "an hour ago and two hours ago: {hours}");
}

#[tokio::test]
async fn usage_reads_while_a_server_holds_the_database_and_is_writing() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let db = sandbox.usage_db();
    seed(&db).await;
    let (recorder, flusher) = Ledger::open(&db, None, HOUR).unwrap();
    recorder.record(request("b@example.com", "coder-model", "", HOUR));
    flusher.flush().await.unwrap();
    // A write in progress, as a flush of the server holds it.
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM usage_hourly;")
        .unwrap();

    let report = json(&sandbox.run(&["usage", "--json"], "").await.success());
    assert_eq!(
        report["total"]["requests"], 5,
        "committed data only: {report}"
    );
    assert!(
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["key"] == "b@example.com")
    );
    writer.execute_batch("ROLLBACK").unwrap();
    recorder.record(request("b@example.com", "coder-model", "", HOUR));
    flusher.flush_and_close().await.unwrap();
    let report = json(&sandbox.run(&["usage", "--json"], "").await.success());
    assert_eq!(report["total"]["requests"], 6);
}

#[tokio::test]
async fn usage_without_a_database_says_where_it_looked_and_creates_nothing() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let db = sandbox.usage_db();
    let run = sandbox.run(&["usage"], "").await;
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let expected = format!("error: no usage database at {} yet", db.display());
    assert!(run.stderr().starts_with(&expected), "{}", run.stderr());
    assert!(
        run.stderr().contains("usage-db (or CLIPROXY_USAGE_DB)"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().is_empty());
    assert!(!db.exists());
}

#[tokio::test]
async fn usage_db_comes_from_the_environment_or_the_config_file() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let elsewhere = sandbox.home.path().join("state").join("ledger.db");
    seed(&elsewhere).await;

    let mut command = sandbox.command(&["usage", "--json"]);
    command.env("CLIPROXY_USAGE_DB", &elsewhere);
    let output = command.output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        json(&String::from_utf8_lossy(&output.stdout))["total"]["requests"],
        4
    );

    let config = sandbox.home.path().join("config.toml");
    std::fs::write(&config, "usage-db = \"~/state/ledger.db\"\n").unwrap();
    let config = config.display().to_string();
    let report = json(
        &sandbox
            .run(&["usage", "--json", "--config", &config], "")
            .await
            .success(),
    );
    assert_eq!(report["total"]["requests"], 4);
}

#[tokio::test]
async fn usage_refuses_a_bad_since_and_a_newer_database() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let db = sandbox.usage_db();
    seed(&db).await;

    let run = sandbox.run(&["usage", "--since", "last week"], "").await;
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("--since \"last week\" is neither a span nor a date"),
        "{}",
        run.stderr()
    );

    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 2")
        .unwrap();
    let run = sandbox.run(&["usage"], "").await;
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("has schema version 2, newer than this cliproxy knows (1); upgrade cliproxy"),
        "{}",
        run.stderr()
    );
}

/// The usage a chat-completions answer reports: from its JSON, or from a stream's usage chunk.
fn reported_usage(body: &str) -> serde_json::Value {
    if let Ok(whole) = serde_json::from_str::<serde_json::Value>(body) {
        return whole["usage"].clone();
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .find_map(|event| event.get("usage").filter(|usage| !usage.is_null()).cloned())
        .expect("a usage chunk")
}

/// `cliproxy usage --json --by BY` in `sandbox`.
async fn usage_json(sandbox: &Sandbox, by: &str) -> serde_json::Value {
    let run = sandbox.run(&["usage", "--json", "--by", by], "").await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    json(&run.stdout())
}

/// The row of `key` in a report.
fn row<'a>(report: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {report:#}"))
}

/// POSTs `body` to `path` of `server` with the client key `key`; returns the status and body.
async fn send_as(server: &Server, key: &str, path: &str, body: serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .bearer_auth(key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("request reaches the server");
    let status = response.status().as_u16();
    (status, response.text().await.expect("whole answer"))
}

/// What a running server records: every request the fake served, by credential, client key
/// and model, with the tokens the upstream reported (or estimated and marked so), failures
/// by class; kept across a graceful restart, and across a `kill -9` up to the last flush.
#[tokio::test]
async fn the_server_records_what_the_fake_served_and_keeps_it_across_restarts_and_kill_9() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-team");
    let sandbox = Sandbox::new(&fake);
    let email = "user0@example.com";
    let config = format!(
        "[[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\napi-keys = [\"sk-team\"]\n\
         models = [\"{MODEL}\"]\n\
         [[client-keys]]\nname = \"alice\"\nkey = \"alice-key-0123456789\"\n\
         [[client-keys]]\nname = \"bob\"\nkey = \"bob-key-0123456789\"\n",
        fake.chat_base_url()
    );
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &[email])
        .config(&config)
        .start()
        .await;
    let account_token = server.account(email).tokens.access_token.clone();

    // The plain key: four whole answers and one for a model nobody serves.
    let (mut prompt, mut completion, mut cached) = (0, 0, 0);
    let mut add = |usage: &serde_json::Value| {
        prompt += usage["prompt_tokens"].as_u64().unwrap();
        completion += usage["completion_tokens"].as_u64().unwrap();
        cached += usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
    };
    for _ in 0..4 {
        let response = server.chat(MODEL, false).await;
        assert_eq!(response.status(), 200);
        add(&reported_usage(&response.text().await.unwrap()));
    }
    assert_eq!(server.chat("no-such-model", false).await.status(), 404);
    // alice: two streams that ask for usage; bob: one that does not (estimated), and one
    // Anthropic message.
    for _ in 0..2 {
        let (status, body) = send_as(
            &server,
            "alice-key-0123456789",
            "/v1/chat/completions",
            serde_json::json!({"model": MODEL, "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        add(&reported_usage(&body));
    }
    let (status, body) = send_as(
        &server,
        "bob-key-0123456789",
        "/v1/chat/completions",
        serde_json::json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send_as(
        &server,
        "bob-key-0123456789",
        "/v1/messages",
        serde_json::json!({"model": MODEL, "max_tokens": 64,
            "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A graceful stop writes everything.
    server.signal("TERM");
    assert!(server.wait().await.success());
    let by_client = usage_json(&sandbox, "client-key").await;
    assert_eq!(by_client["total"]["requests"], 9, "{by_client:#}");
    assert_eq!(by_client["total"]["successes"], 8, "{by_client:#}");
    assert_eq!(by_client["total"]["failures_by_class"]["other"], 1);
    let plain = row(&by_client, "api-keys#1");
    assert_eq!(plain["requests"], 5);
    let alice = row(&by_client, "alice");
    assert_eq!(alice["requests"], 2);
    assert_eq!(
        plain["prompt_tokens"].as_u64().unwrap() + alice["prompt_tokens"].as_u64().unwrap(),
        prompt,
        "the upstream's usage, as reported"
    );
    assert_eq!(
        plain["completion_tokens"].as_u64().unwrap() + alice["completion_tokens"].as_u64().unwrap(),
        completion
    );
    assert_eq!(
        plain["cached_tokens"].as_u64().unwrap() + alice["cached_tokens"].as_u64().unwrap(),
        cached
    );
    let bob = row(&by_client, "bob");
    assert_eq!(bob["requests"], 2);
    assert_eq!(bob["estimated_requests"], 1, "the stream without usage");
    assert!(bob["completion_tokens"].as_u64().unwrap() > 0, "{bob}");

    let by_credential = usage_json(&sandbox, "credential").await;
    let served = fake.chat_requests();
    let to_account = served
        .iter()
        .filter(|request| request.bearer() == Some(account_token.as_str()))
        .count();
    let to_team = served
        .iter()
        .filter(|request| request.bearer() == Some("sk-team"))
        .count();
    assert_eq!(
        to_account + to_team,
        8,
        "every success reached the fake once"
    );
    assert_eq!(row(&by_credential, email)["requests"], to_account);
    assert_eq!(row(&by_credential, "team#1")["requests"], to_team);
    assert_eq!(
        row(&by_credential, "")["requests"],
        1,
        "no credential chosen"
    );
    let by_model = usage_json(&sandbox, "model").await;
    assert_eq!(row(&by_model, MODEL)["requests"], 8);

    // Restarted, the server adds to what is there; a kill -9 loses at most what came after
    // the last flush.
    let mut server = Server::start(&sandbox, &config).await;
    for _ in 0..2 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    guarded("the flush of the two requests", async {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            if usage_json(&sandbox, "day").await["total"]["requests"] == 11 {
                break;
            }
        }
    })
    .await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    server.kill().await;
    let total = usage_json(&sandbox, "day").await["total"]["requests"]
        .as_u64()
        .unwrap();
    assert!((11..=12).contains(&total), "{total}");
}

/// A ledger that cannot be opened never stops the server: it says why and serves without it.
#[tokio::test]
async fn a_ledger_that_cannot_be_opened_leaves_the_server_serving() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let db = sandbox.home.path().join("not-a-database");
    std::fs::write(
        &db,
        "this is no SQLite file, but some notes of mine\n".repeat(200),
    )
    .unwrap();
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &["user0@example.com"])
        .env("CLIPROXY_USAGE_DB", &db)
        .start()
        .await;
    let logged = server
        .wait_for_log("usage is not recorded while this server runs")
        .await;
    assert!(logged.contains("is not a SQLite database"), "{logged}");
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert!(
        std::fs::read_to_string(&db)
            .unwrap()
            .starts_with("this is no SQLite file"),
        "the file is left as it was"
    );
}
