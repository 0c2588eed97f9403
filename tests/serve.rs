//! `cliproxy serve` end to end: the real binary between a client and the fake Qwen.

#[path = "support/server.rs"]
mod server;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use fake_qwen::{ChatStep, FakeQwen, RefreshBehaviour};
use server::{API_KEY, Server, write_account, write_token_file};
use support::{Sandbox, mode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MODEL: &str = "coder-model";
const DAY: i64 = 86_400;

/// How many chat requests each access token made.
fn requests_per_token(fake: &FakeQwen) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in fake.chat_requests() {
        let bearer = request.bearer().unwrap_or_default().to_owned();
        *counts.entry(bearer).or_default() += 1;
    }
    counts
}

/// How many refresh-token grants reached the fake.
fn refreshes(fake: &FakeQwen) -> usize {
    fake.token_requests()
        .iter()
        .filter(|r| r.form_value("grant_type") == Some("refresh_token"))
        .count()
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly_across_accounts() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let tokens: Vec<_> = (0..3)
        .map(|i| write_account(&sandbox, &fake, &format!("user{i}@example.com"), DAY).1)
        .collect();
    let server = Server::start(&sandbox, "").await;

    for _ in 0..30 {
        let response = server.chat(MODEL, false).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    let counts = requests_per_token(&fake);
    for token in &tokens {
        assert_eq!(counts.get(&token.access_token), Some(&10), "{counts:?}");
    }
}

#[tokio::test]
async fn four_accounts_serve_more_than_one_accounts_rate_limit() {
    let fake = FakeQwen::start().await;
    fake.set_requests_per_minute(Some(60));
    let sandbox = Sandbox::new(&fake);
    for i in 0..4 {
        write_account(&sandbox, &fake, &format!("user{i}@example.com"), DAY);
    }
    let server = Server::start(&sandbox, "routing-strategy = \"fill-first\"\n").await;

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (client, url) = (server.client(), server.url("/v1/chat/completions"));
        requests.spawn(async move { server::send_chat(&client, &url, MODEL, false).await });
    }
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let counts = requests_per_token(&fake);
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(
        counts.values().all(|&n| n <= 60),
        "no account went past its limit: {counts:?}"
    );
}

#[tokio::test]
async fn quota_exhausted_account_is_skipped_without_client_errors() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (_, exhausted) = write_account(&sandbox, &fake, "dry@example.com", DAY);
    write_account(&sandbox, &fake, "fresh@example.com", DAY);
    fake.script_chat(&exhausted.access_token, vec![ChatStep::QuotaExceeded]);
    let server = Server::start(&sandbox, "").await;

    for _ in 0..10 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }

    let counts = requests_per_token(&fake);
    assert_eq!(
        counts.get(&exhausted.access_token),
        Some(&1),
        "cooled down after one quota error: {counts:?}"
    );
}

#[tokio::test]
async fn every_account_exhausted_gives_429_with_retry_after() {
    let fake = FakeQwen::start().await;
    fake.set_chat_step(ChatStep::QuotaExceeded403);
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "a@example.com", DAY);
    write_account(&sandbox, &fake, "b@example.com", DAY);
    let server = Server::start(&sandbox, "").await;

    let response = server.chat(MODEL, false).await;

    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains('2'),
        "{body}"
    );
}

#[tokio::test]
async fn html_error_pages_fail_over_and_become_502_when_everywhere() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (_, blocked) = write_account(&sandbox, &fake, "blocked@example.com", DAY);
    let (_, open) = write_account(&sandbox, &fake, "open@example.com", DAY);
    fake.script_chat(&blocked.access_token, vec![ChatStep::Html { status: 405 }]);
    let server = Server::start(&sandbox, "").await;

    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }

    fake.script_chat(&open.access_token, vec![ChatStep::Html { status: 503 }]);
    let response = server.chat(MODEL, false).await;
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("json")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn expired_access_token_is_refreshed_once_and_written_back() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (path, tokens) = write_account(&sandbox, &fake, "dev@example.com", DAY);
    fake.expire_access_token(&tokens.access_token);
    let server = Server::start(&sandbox, "").await;

    let (first, second) = tokio::join!(server.chat(MODEL, false), server.chat(MODEL, false));

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(refreshes(&fake), 1, "concurrent 401s share one refresh");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let issued = fake.issued_tokens();
    let newest = issued.last().unwrap();
    assert_eq!(saved["access_token"], newest.access_token.as_str());
    assert_eq!(saved["refresh_token"], newest.refresh_token.as_str());
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_ahead_by_the_scheduler() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (path, tokens) = write_account(&sandbox, &fake, "dev@example.com", 60);
    let mut server = Server::start(&sandbox, "").await;

    server.wait_for_log("refreshed the access token").await;

    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_ne!(saved["access_token"], tokens.access_token.as_str());
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
}

#[tokio::test]
async fn two_servers_sharing_an_auth_dir_refresh_an_account_once() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", 60);

    let mut first = Server::start(&sandbox, "").await;
    let second = Server::start(&sandbox, "").await;
    first.wait_for_log("refreshed the access token").await;
    // The second server either refreshed itself (then the first found the new token) or
    // picked up the first one's write; either way exactly one refresh reaches Qwen.
    assert_eq!(first.chat(MODEL, false).await.status(), 200);
    assert_eq!(second.chat(MODEL, false).await.status(), 200);

    assert_eq!(refreshes(&fake), 1);
}

#[tokio::test]
async fn killing_the_server_mid_refresh_never_corrupts_token_files() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::KeepRefresh);
    let sandbox = Sandbox::new(&fake);
    let tokens = fake.mint_tokens();
    for round in 0..15 {
        let path = write_token_file(&sandbox, &fake, "dev@example.com", &tokens, 30);
        let mut command = sandbox.command(&["serve", "--port", "0"]);
        command.env("CLIPROXY_LOG", "info");
        let mut child = command.spawn().unwrap();
        // Kill at a different point of start-up and refresh each round.
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = vec![0u8; 64 * (round % 5)];
        let _ = stderr.read_exact(&mut seen).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();

        let text = std::fs::read(&path).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&text).expect("whole, parseable file");
        assert_eq!(json["email"], "dev@example.com");
        assert_eq!(mode(&path), 0o600);
    }
    let (_, json) = sandbox.only_token_file();
    assert_eq!(json["type"], "qwen");
}

#[tokio::test]
async fn dead_refresh_token_takes_the_account_out_of_rotation() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Invalid);
    let sandbox = Sandbox::new(&fake);
    let (_, dead) = write_account(&sandbox, &fake, "dead@example.com", DAY);
    let (_, alive) = write_account(&sandbox, &fake, "alive@example.com", DAY);
    fake.expire_access_token(&dead.access_token);
    let mut server = Server::start(&sandbox, "").await;

    for _ in 0..6 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }

    let counts = requests_per_token(&fake);
    assert_eq!(
        counts.get(&dead.access_token),
        Some(&1),
        "tried once, then out: {counts:?}"
    );
    assert_eq!(counts.get(&alive.access_token), Some(&6), "{counts:?}");
    let warning = server.wait_for_log("refresh token was rejected").await;
    assert!(warning.contains("dead@example.com"), "{warning}");
    let warnings = server
        .seen
        .iter()
        .filter(|l| l.contains("refresh token"))
        .count();
    assert_eq!(warnings, 1, "logged once: {:?}", server.seen);
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    let row = listed
        .lines()
        .find(|l| l.contains("dead@example.com"))
        .expect(&listed);
    assert!(row.contains("re-login required"), "{listed}");
}

#[tokio::test]
async fn accounts_check_reports_each_account() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Invalid);
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "ok@example.com", DAY);
    let (_, dry) = write_account(&sandbox, &fake, "dry@example.com", DAY);
    let (_, dead) = write_account(&sandbox, &fake, "dead@example.com", DAY);
    fake.script_chat(&dry.access_token, vec![ChatStep::QuotaExceeded]);
    fake.expire_access_token(&dead.access_token);

    let run = sandbox.run(&["accounts", "check"], "").await;

    let table = run.stdout();
    let status_of = |email: &str| {
        let row = table
            .lines()
            .find(|l| l.starts_with(email))
            .unwrap_or_else(|| panic!("{table}"));
        row.split("  ")
            .map(str::trim)
            .find(|cell| !cell.is_empty() && *cell != email)
            .unwrap()
            .to_owned()
    };
    assert_eq!(status_of("ok@example.com"), "ok", "{table}");
    assert_eq!(status_of("dry@example.com"), "quota", "{table}");
    assert_eq!(
        status_of("dead@example.com"),
        "re-login required",
        "{table}"
    );
    assert!(run.failure(1).contains("2 of 3"), "{}", run.stderr());
}

#[tokio::test]
async fn accounts_added_and_removed_while_serving_are_picked_up() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (first_path, first) = write_account(&sandbox, &fake, "first@example.com", DAY);
    let mut server = Server::start(&sandbox, "").await;

    let (_, second) = write_account(&sandbox, &fake, "second@example.com", DAY);
    server.next_log_containing("account added").await;
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    assert_eq!(
        requests_per_token(&fake).get(&second.access_token),
        Some(&2)
    );

    std::fs::remove_file(&first_path).unwrap();
    server.next_log_containing("left rotation").await;
    let before = requests_per_token(&fake).get(&first.access_token).copied();
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    assert_eq!(
        requests_per_token(&fake).get(&first.access_token).copied(),
        before
    );
}

#[tokio::test]
async fn streams_arrive_incrementally() {
    let fake = FakeQwen::start().await;
    fake.set_chat_step(ChatStep::HoldLast);
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    let server = Server::start(&sandbox, "").await;

    let mut response = server.chat(MODEL, true).await;
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .unwrap()
        .expect("a first chunk before the last exists");
    assert!(String::from_utf8_lossy(&first).contains("data: "));
    fake.release_held_streams(1);
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let fake = FakeQwen::start().await;
    fake.set_chat_step(ChatStep::HoldLast);
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    let server = Server::start(&sandbox, "").await;

    let mut response = server.chat(MODEL, true).await;
    response.chunk().await.unwrap().expect("first chunk");
    drop(response);

    fake.wait_for_cancelled_streams(1).await;
}

#[tokio::test]
async fn broken_upstream_stream_reaches_the_client_as_broken() {
    let fake = FakeQwen::start().await;
    fake.set_chat_step(ChatStep::CutAfter(2));
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    let server = Server::start(&sandbox, "").await;

    let mut response = server.chat(MODEL, true).await;
    assert_eq!(response.status(), 200);
    let mut outcome = Ok(());
    loop {
        match response.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    assert!(
        outcome.is_err(),
        "a cut stream must not end like a complete one"
    );
}

#[tokio::test]
async fn sigterm_lets_a_running_stream_finish() {
    let fake = FakeQwen::start().await;
    fake.set_chat_step(ChatStep::HoldLast);
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    let mut server = Server::start(&sandbox, "").await;

    let mut response = server.chat(MODEL, true).await;
    response.chunk().await.unwrap().expect("first chunk");
    server.signal("TERM");
    server.next_log_containing("shutting down").await;
    fake.release_held_streams(1);
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }

    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
    assert_eq!(server.wait().await.code(), Some(0));
}

#[tokio::test]
async fn client_errors_have_openai_shapes() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    let server = Server::start(&sandbox, "max-body-bytes = 1024\n").await;
    let anonymous = reqwest::Client::new();

    let unauthorised = anonymous
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("wrong-key")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let body: serde_json::Value = unauthorised.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");

    for (header, value) in [("x-api-key", API_KEY), ("x-goog-api-key", API_KEY)] {
        let models = anonymous
            .get(server.url("/v1/models"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(models.status(), 200, "key in {header}");
    }
    let by_query = anonymous
        .get(server.url(&format!("/v1/models?key={API_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);

    let too_large = server
        .client()
        .post(server.url("/v1/chat/completions"))
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);

    let malformed = server
        .client()
        .post(server.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    let unknown = server
        .client()
        .get(server.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let models: serde_json::Value = server
        .client()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for model in [
        "qwen3-coder-plus",
        "qwen3-coder-flash",
        "coder-model",
        "vision-model",
    ] {
        assert!(ids.contains(&model), "{ids:?}");
    }
}

#[tokio::test]
async fn slow_half_open_connections_do_not_starve_others() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "dev@example.com", DAY);
    let server = Server::start(&sandbox, "header-read-timeout = \"1s\"\n").await;
    let address = server.base.trim_start_matches("http://").to_owned();

    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        idle.push(socket);
    }

    let response = server.chat(MODEL, false).await;
    assert_eq!(response.status(), 200);

    for mut socket in idle {
        let mut buffer = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buffer))
            .await
            .expect("the server closes idle half-open connections");
        assert!(
            matches!(closed, Ok(0) | Err(_)) || buffer.starts_with(b"HTTP/1.1 408"),
            "{closed:?}"
        );
    }
}

#[tokio::test]
async fn no_api_keys_refuses_a_public_address() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox
        .run(&["serve", "--host", "0.0.0.0", "--port", "0"], "")
        .await;

    let shown = run.failure(1);
    assert!(shown.contains("api-keys"), "{shown}");
}

#[tokio::test]
async fn blank_api_keys_count_as_none_and_say_so() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = sandbox.home.path().join("blank-keys.toml");
    std::fs::write(&config, "api-keys = [\"\", \"   \"]\n").unwrap();

    let args = ["--config", config.to_str().unwrap(), "serve"];
    let run = sandbox
        .run(&[&args[..], &["--host", "0.0.0.0", "--port", "0"]].concat(), "")
        .await;

    let shown = run.failure(1);
    assert!(
        shown.contains("ignored 2 empty or blank entries in api-keys of the config file"),
        "{shown}"
    );
    assert!(
        shown.contains("refusing to listen on 0.0.0.0:0 without client API keys"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_refresh_answer_without_refresh_token_or_resource_url_keeps_the_old_ones_on_disk() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::KeepRefresh);
    let sandbox = Sandbox::new(&fake);
    let (path, tokens) = write_account(&sandbox, &fake, "dev@example.com", DAY);
    fake.expire_access_token(&tokens.access_token);
    let server = Server::start(&sandbox, "").await;

    let response = server.chat(MODEL, false).await;

    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(refreshes(&fake), 1);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_ne!(
        saved["access_token"],
        tokens.access_token.as_str(),
        "refreshed"
    );
    assert_eq!(
        saved["refresh_token"],
        tokens.refresh_token.as_str(),
        "the answer had no refresh_token: the old one is kept"
    );
    assert_eq!(
        saved["resource_url"],
        fake.chat_base_url().as_str(),
        "the answer had no resource_url: the old one is kept"
    );
    assert_eq!(mode(&path), 0o600);
}
