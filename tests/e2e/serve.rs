//! `cliproxy serve` end to end: the real binary between a client and the fake Qwen.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::server::{
    API_KEY, DAY, MODEL, Server, guarded, write_account, write_token_file,
};
use crate::support::{Sandbox, mode, read_json};
use fake_qwen::{ChatStep, FakeQwen, RefreshBehaviour};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
    let emails = [
        "user0@example.com",
        "user1@example.com",
        "user2@example.com",
    ];
    let server = Server::builder(&sandbox)
        .accounts(&fake, &emails)
        .start()
        .await;

    for _ in 0..30 {
        let response = server.chat(MODEL, false).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    let counts = requests_per_token(&fake);
    for email in emails {
        let token = &server.account(email).tokens.access_token;
        assert_eq!(counts.get(token), Some(&10), "{counts:?}");
    }
}

/// N accounts give N times one account's limit: 4 accounts, each allowed 60 requests a minute
/// by the upstream (the fake counts per token over a sliding minute, as Qwen does), serve a
/// burst of 240 at once with no client-visible error and without one upstream 429: the cap
/// spreads the burst before anything is sent. The 241st waits for a slot: 429 with
/// `Retry-After`, and it never reaches the upstream.
///
/// The burst stands in for the "200 requests spread over one minute": both stay inside
/// one sliding minute of every account, and all at once is the harder case. What a burst cannot
/// show is the difference between a sliding and a fixed window. They differ only when a window
/// boundary falls inside the measured interval, and the proxy reads the real clock, so an e2e
/// test could place one only by waiting for it (a real minute). credential-pool's
/// `sliding_window_frees_slots_as_time_passes` pins that difference with injected instants.
#[tokio::test]
async fn four_accounts_serve_four_times_one_accounts_rate_limit() {
    let fake = FakeQwen::start().await;
    fake.set_requests_per_minute(Some(60));
    let sandbox = Sandbox::new(&fake);
    let emails = [
        "user0@example.com",
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
    ];
    let server = Server::builder(&sandbox)
        .accounts(&fake, &emails)
        .config("routing-strategy = \"fill-first\"")
        .start()
        .await;

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..240 {
        let (client, url) = (server.client(), server.url("/v1/chat/completions"));
        requests.spawn(async move {
            crate::support::server::send_chat(&client, &url, MODEL, false).await
        });
    }
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let counts = requests_per_token(&fake);
    for email in emails {
        assert_eq!(
            counts.get(&server.account(email).tokens.access_token),
            Some(&60),
            "each account took its 60 and the upstream refused none: {counts:?}"
        );
    }

    let over = server.chat(MODEL, false).await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    assert_eq!(fake.chat_requests().len(), 240, "held back before sending");
}

#[tokio::test]
async fn quota_exhausted_account_is_skipped_without_client_errors() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server =
        Server::with_accounts(&sandbox, &fake, &["dry@example.com", "fresh@example.com"]).await;
    let exhausted = &server.account("dry@example.com").tokens;
    fake.script_chat(&exhausted.access_token, vec![ChatStep::QuotaExceeded]);
    // The cooldown lasts an hour: the test never outlives it, however slow the machine.
    fake.set_quota_retry_after(Some(3600));

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
    let server = Server::with_accounts(&sandbox, &fake, &["a@example.com", "b@example.com"]).await;

    let response = server.chat(MODEL, false).await;

    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "all 2 usable credentials for coder-model are cooling down after quota or rate limits; retry in "
        ),
        "names how many wait, for which model, and when to retry: {message}"
    );
    assert!(message.contains("cliproxy login qwen"), "{message}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
}

#[tokio::test]
async fn html_error_pages_fail_over_and_become_502_when_everywhere() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::with_accounts(
        &sandbox,
        &fake,
        &["blocked@example.com", "open@example.com"],
    )
    .await;
    let (blocked, open) = (
        &server.account("blocked@example.com").tokens,
        &server.account("open@example.com").tokens,
    );
    fake.script_chat(&blocked.access_token, vec![ChatStep::Html { status: 405 }]);

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
    let server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;
    let account = server.account("dev@example.com");
    fake.expire_access_token(&account.tokens.access_token);

    let (first, second) = tokio::join!(server.chat(MODEL, false), server.chat(MODEL, false));

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(refreshes(&fake), 1, "concurrent 401s share one refresh");
    let saved = read_json(&account.path);
    let issued = fake.issued_tokens();
    let newest = issued.last().unwrap();
    assert_eq!(saved["access_token"], newest.access_token.as_str());
    assert_eq!(saved["refresh_token"], newest.refresh_token.as_str());
    assert_eq!(mode(&account.path), 0o600);
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_ahead_by_the_scheduler() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox)
        .account_expiring(&fake, "dev@example.com", 60)
        .start()
        .await;

    server.wait_for_log("refreshed the access token").await;

    let account = server.account("dev@example.com");
    let saved = read_json(&account.path);
    assert_ne!(saved["access_token"], account.tokens.access_token.as_str());
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
}

#[tokio::test]
async fn two_servers_sharing_an_auth_dir_refresh_an_account_once() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let mut first = Server::builder(&sandbox)
        .account_expiring(&fake, "dev@example.com", 60)
        .start()
        .await;
    let mut second = Server::start(&sandbox, "").await;
    // Whichever takes the lock first refreshes; the other finds the new token in the file.
    Server::first_to_log(&mut first, &mut second, "refreshed the access token").await;
    assert_eq!(first.chat(MODEL, false).await.status(), 200);
    assert_eq!(second.chat(MODEL, false).await.status(), 200);

    assert_eq!(refreshes(&fake), 1);
}

/// Kills the server with SIGKILL at the two moments a refresh can be cut: (a) once Qwen has
/// the refresh request and before its answer comes back, and (b) right after the answer left,
/// while the server reads it and writes the token file. Each round starts from a token inside
/// the refresh lead, so every server refreshes at once.
#[tokio::test]
async fn killing_the_server_mid_refresh_never_corrupts_token_files() {
    const ROUNDS: usize = 24;
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::KeepRefresh);
    fake.hold_refreshes(true);
    let sandbox = Sandbox::new(&fake);
    let tokens = fake.mint_tokens();
    let serve = Server::builder(&sandbox);
    for round in 1..=ROUNDS {
        write_token_file(&sandbox, &fake, "dev@example.com", &tokens, 30);
        let mut server = Server::spawn(serve.command()).await;
        guarded("held refresh", fake.wait_for_held_refreshes(round)).await;
        if round % 2 == 1 {
            server.kill().await;
            // The answer goes to no one.
            fake.release_held_refreshes(1);
        } else {
            fake.release_held_refreshes(1);
            guarded("refresh answer", fake.wait_for_answered_refresh(round)).await;
            server.kill().await;
        }
        assert_whole_token_file(&sandbox);
        // A kill between creating the temp file and renaming it leaves it behind, private.
        for leftover in leftover_temp_files(&sandbox) {
            assert_eq!(
                mode(&sandbox.auth_dir().join(&leftover)),
                0o600,
                "{leftover}"
            );
        }
    }

    // The next start serves from what the kills left, and clears their temp files.
    fake.hold_refreshes(false);
    let server = Server::start(&sandbox, "").await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_whole_token_file(&sandbox);
    assert_eq!(leftover_temp_files(&sandbox), Vec::<String>::new());
}

/// The one token file is whole JSON of the account, mode 0600.
#[track_caller]
fn assert_whole_token_file(sandbox: &Sandbox) {
    let (path, json) = sandbox.only_token_file();
    assert_eq!(json["email"], "dev@example.com", "{json}");
    assert_eq!(json["type"], "qwen");
    assert!(json["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(mode(&path), 0o600);
}

/// Temp files of interrupted writes in the auth dir.
fn leftover_temp_files(sandbox: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sandbox.auth_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[tokio::test]
async fn dead_refresh_token_takes_the_account_out_of_rotation() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Invalid);
    let sandbox = Sandbox::new(&fake);
    let mut server =
        Server::with_accounts(&sandbox, &fake, &["dead@example.com", "alive@example.com"]).await;
    let dead = server.account("dead@example.com").tokens.clone();
    let alive = server.account("alive@example.com").tokens.clone();
    fake.expire_access_token(&dead.access_token);

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
    let mut server = Server::with_accounts(&sandbox, &fake, &["first@example.com"]).await;
    let first_path = server.account("first@example.com").path.clone();
    let first = server.account("first@example.com").tokens.clone();

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
    let server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;

    // A proxy that waited for the whole stream would hang here: the last events are held.
    let mut response = guarded("stream head", server.chat(MODEL, true)).await;
    assert_eq!(response.status(), 200);
    let first = guarded("first chunk", response.chunk())
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
    let server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;

    let mut response = guarded("stream head", server.chat(MODEL, true)).await;
    guarded("first chunk", response.chunk())
        .await
        .unwrap()
        .expect("first chunk");
    drop(response);

    guarded(
        "cancelled upstream stream",
        fake.wait_for_cancelled_streams(1),
    )
    .await;
}

#[tokio::test]
async fn broken_upstream_stream_reaches_the_client_as_broken() {
    let fake = FakeQwen::start().await;
    fake.set_chat_step(ChatStep::CutAfter(2));
    let sandbox = Sandbox::new(&fake);
    let server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;

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
    let mut server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;

    let mut response = guarded("stream head", server.chat(MODEL, true)).await;
    guarded("first chunk", response.chunk())
        .await
        .unwrap()
        .expect("first chunk");
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

/// The signal handlers exist before the server says it listens. (They used to be set up a
/// moment later, so a SIGTERM right after that line could kill the process with the default
/// action; this catches that race when it happens to be hit, as under load.)
#[tokio::test]
async fn sigterm_right_after_start_up_is_a_clean_stop() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox).start().await;

    // At once after the "listening" line: before any request has been served.
    server.signal("TERM");

    assert_eq!(server.wait().await.code(), Some(0), "{:?}", server.seen);
    server.wait_for_log("stopped").await;
}

#[tokio::test]
async fn client_errors_have_openai_shapes() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config("max-body-bytes = 1024")
        .start()
        .await;
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

    // A huge declared body, none of it sent: the 413 can only come before the body is read.
    let (status, body) = raw_request(
        &server,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body, "request_too_large");

    let malformed = server
        .client()
        .post(server.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_openai_error(&malformed.json().await.unwrap(), "invalid_json");

    let unknown = server
        .client()
        .get(server.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_openai_error(&unknown.json().await.unwrap(), "unknown_url");

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

/// `{"error": {"message", "type", "code"}}` with this `code` and a message that says something.
#[track_caller]
fn assert_openai_error(body: &serde_json::Value, code: &str) {
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| m.len() > 20),
        "{body}"
    );
}

/// Sends `head` (a request head, nothing after it) on a new connection and reads the answer:
/// its status and its JSON body.
async fn raw_request(server: &Server, head: &str) -> (u16, serde_json::Value) {
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let (head_end, length) = loop {
        let mut chunk = [0u8; 4096];
        let read = guarded("an answer", socket.read(&mut chunk)).await.unwrap();
        assert!(read > 0, "closed without an answer: {received:?}");
        received.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .expect("a Content-Length");
            break (end + 4, length);
        }
    };
    while received.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let read = guarded("the answer's body", socket.read(&mut chunk))
            .await
            .unwrap();
        assert!(read > 0, "the body ended early");
        received.extend_from_slice(&chunk[..read]);
    }
    let status = String::from_utf8_lossy(&received[9..12]).parse().unwrap();
    let body = serde_json::from_slice(&received[head_end..head_end + length]).unwrap();
    (status, body)
}

#[tokio::test]
async fn slow_half_open_connections_do_not_starve_others() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config("header-read-timeout = \"1s\"")
        .start()
        .await;
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
        .run(
            &[&args[..], &["--host", "0.0.0.0", "--port", "0"]].concat(),
            "",
        )
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
    let server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;
    let account = server.account("dev@example.com");
    let (path, tokens) = (&account.path, &account.tokens);
    fake.expire_access_token(&tokens.access_token);

    let response = server.chat(MODEL, false).await;

    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(refreshes(&fake), 1);
    let saved = read_json(path);
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
    assert_eq!(mode(path), 0o600);
}

/// `[[openai-compat]]` entries pointing at the fake, one per `(name, keys, models, cap)`.
fn openai_compat_config(fake: &FakeQwen, entries: &[(&str, &[&str], &str, Option<u32>)]) -> String {
    let mut config = String::new();
    for (name, keys, model, rpm) in entries {
        let keys: Vec<String> = keys.iter().map(|key| format!("{key:?}")).collect();
        config.push_str(&format!(
            "[[openai-compat]]\nname = {name:?}\nbase-url = {:?}\napi-keys = [{}]\nmodels = [{model:?}]\n",
            fake.chat_base_url(),
            keys.join(", ")
        ));
        if let Some(rpm) = rpm {
            config.push_str(&format!("requests-per-minute = {rpm}\n"));
        }
        for key in keys.iter() {
            fake.add_api_key(key.trim_matches('"'));
        }
    }
    config
}

#[tokio::test]
async fn openai_compat_keys_rotate_and_each_entry_has_its_own_cap() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = openai_compat_config(
        &fake,
        &[
            (
                "capped",
                &["sk-capped-1", "sk-capped-2"],
                "model-capped",
                Some(2),
            ),
            ("open", &["sk-open-1"], "model-open", None),
        ],
    );
    let server = Server::builder(&sandbox).config(&config).start().await;

    for _ in 0..4 {
        let response = server.chat("model-capped", false).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let counts = requests_per_token(&fake);
    assert_eq!(counts.get("sk-capped-1"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("sk-capped-2"), Some(&2), "{counts:?}");

    // Both keys are at their cap of 2: the client waits, the upstream never sees it.
    let capped = server.chat("model-capped", false).await;
    assert_eq!(capped.status(), 429);
    let retry_after: u64 = capped.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = capped.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(fake.chat_requests().len(), 4);

    // No cap by default: more than any per-minute limit would allow, on one key.
    for _ in 0..70 {
        let response = server.chat("model-open", false).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    assert_eq!(requests_per_token(&fake).get("sk-open-1"), Some(&70));
}

#[tokio::test]
async fn a_changed_token_file_is_used_and_a_bad_one_is_reported_and_skipped() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::with_accounts(&sandbox, &fake, &["dev@example.com"]).await;
    let old = server.account("dev@example.com").tokens.clone();
    assert_eq!(server.chat(MODEL, false).await.status(), 200);

    // A new login of the same account lands in the same file.
    let new = fake.mint_tokens();
    write_token_file(&sandbox, &fake, "dev@example.com", &new, DAY);
    let reloaded = server.next_log_containing("accounts reloaded").await;
    assert!(reloaded.contains("updated=1"), "{reloaded}");
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    let last = fake.chat_requests().pop().unwrap();
    assert_eq!(last.bearer(), Some(new.access_token.as_str()));
    assert_ne!(new.access_token, old.access_token);

    std::fs::write(sandbox.auth_dir().join("qwen-broken.json"), "{ not json").unwrap();
    let skipped = server.next_log_containing("skipped token file").await;
    assert!(
        skipped.contains("qwen-broken.json: invalid JSON"),
        "{skipped}"
    );
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    let last = fake.chat_requests().pop().unwrap();
    assert_eq!(
        last.bearer(),
        Some(new.access_token.as_str()),
        "still served"
    );
}

#[tokio::test]
async fn the_servers_own_write_back_causes_no_reload() {
    let fake = FakeQwen::start().await;
    fake.hold_refreshes(true);
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox)
        .account_expiring(&fake, "dev@example.com", 60)
        .env("CLIPROXY_LOG", "info,account_runtime=debug")
        .start()
        .await;
    let path = &server.account("dev@example.com").path;
    let file_name = path.file_name().unwrap().to_string_lossy().into_owned();

    // Listening means the watch is set up: only now may the refresh write the file.
    guarded("held refresh", fake.wait_for_held_refreshes(1)).await;
    fake.release_held_refreshes(1);
    server.wait_for_log("refreshed the access token").await;
    let own = server.next_log_containing("not re-reading it").await;
    assert!(own.contains(&file_name), "{own}");

    // A change from outside is still picked up, and re-read for its own file only.
    write_account(&sandbox, &fake, "second@example.com", DAY);
    server.next_log_containing("account added").await;
    let rereads: Vec<&String> = server
        .seen
        .iter()
        .filter(|line| line.contains("re-reading it") && !line.contains("not re-reading"))
        .collect();
    assert!(!rereads.is_empty(), "{:?}", server.seen);
    assert!(
        rereads.iter().all(|line| !line.contains(&file_name)),
        "the write-back never made the server re-read the dir: {rereads:?}"
    );
}

#[tokio::test]
async fn accounts_check_reports_expired_and_unreachable_accounts() {
    let fake = FakeQwen::start().await;
    // The refresh after the 401 fails for now, so the token stays refused.
    fake.set_refresh(RefreshBehaviour::ServerError(503));
    let sandbox = Sandbox::new(&fake);
    let (_, stale) = write_account(&sandbox, &fake, "stale@example.com", DAY);
    fake.expire_access_token(&stale.access_token);
    let far = FakeQwen::start().await;
    write_account(&sandbox, &far, "far@example.com", DAY);
    far.set_down(true);
    let (marked_path, marked) = write_account(&sandbox, &fake, "marked@example.com", DAY);
    let mut json = read_json(&marked_path);
    json["cliproxy_status"] = "relogin-required".into();
    std::fs::write(&marked_path, serde_json::to_vec(&json).unwrap()).unwrap();

    let run = sandbox.run(&["accounts", "check"], "").await;

    let table = run.stdout();
    let row = |email: &str| {
        table
            .lines()
            .find(|line| line.starts_with(email))
            .unwrap_or_else(|| panic!("{table}"))
            .to_owned()
    };
    let stale_row = row("stale@example.com");
    assert!(stale_row.contains("  expired  "), "{table}");
    assert!(stale_row.contains("refused the token"), "{table}");
    let far_row = row("far@example.com");
    assert!(far_row.contains("  network error  "), "{table}");
    assert!(far_row.contains("could not get an answer"), "{table}");
    assert!(
        row("marked@example.com").contains("  re-login required  "),
        "{table}"
    );
    assert_eq!(
        requests_per_token(&fake).get(&marked.access_token),
        None,
        "a marked account is not tried"
    );
    assert!(run.failure(1).contains("3 of 3"), "{}", run.stderr());
}

#[tokio::test]
async fn the_configured_client_version_reaches_the_upstream() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config("[qwen]\nclient-version = \"9.8.7\"")
        .start()
        .await;

    assert_eq!(server.chat(MODEL, false).await.status(), 200);

    let sent = fake.chat_requests().pop().unwrap();
    for header in ["user-agent", "x-dashscope-useragent"] {
        let value = sent.header(header).unwrap_or_default();
        assert!(value.starts_with("QwenCode/9.8.7 ("), "{header}: {value}");
    }
}

#[tokio::test]
async fn debug_logs_never_show_tokens_or_keys() {
    const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";
    const WRONG_CLIENT_KEY: &str = "wrong-client-secret-0123456789";
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = openai_compat_config(&fake, &[("compat", &[UPSTREAM_KEY], "model-compat", None)]);
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config(&config)
        .env("CLIPROXY_LOG", "debug")
        .start()
        .await;
    fake.expire_access_token(&server.account("dev@example.com").tokens.access_token);

    // A 401 and a refresh, a stream, an API-key upstream, a wrong client key, a key in the query.
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    let mut stream = server.chat(MODEL, true).await;
    while stream.chunk().await.unwrap().is_some() {}
    assert_eq!(server.chat("model-compat", false).await.status(), 200);
    let wrong = reqwest::Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth(WRONG_CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let by_query = reqwest::Client::new()
        .get(server.url(&format!("/v1/models?key={API_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    server.signal("TERM");
    assert_eq!(server.wait().await.code(), Some(0));

    let log = server.seen.join("\n");
    assert!(log.contains("refreshed the access token"), "{log}");
    assert!(log.contains("DEBUG"), "debug lines were logged: {log}");
    let mut secrets = vec![
        API_KEY.to_owned(),
        UPSTREAM_KEY.into(),
        WRONG_CLIENT_KEY.into(),
    ];
    for issued in fake.issued_tokens() {
        secrets.push(issued.access_token);
        secrets.push(issued.refresh_token);
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} in the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn a_dead_refresh_token_is_not_retried_when_the_file_cannot_be_marked() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Invalid);
    let sandbox = Sandbox::new(&fake);
    let serve = Server::builder(&sandbox).account_expiring(&fake, "dead@example.com", 60);
    // No file may grow past 0 bytes, as on a full disk; even root cannot write the mark.
    let command =
        crate::support::after_shell_prelude(&serve.command(), "trap '' XFSZ; ulimit -f 0");
    let mut server = Server::spawn(command).await;

    server.wait_for_log("the refresh token was rejected").await;
    let error = server.wait_for_log("could not write token file").await;
    assert!(error.contains("stays out of rotation"), "{error}");
    assert!(error.contains("ulimit -f"), "says what stopped it: {error}");
    assert!(
        !error.contains(".json."),
        "names the token file, not the temp file: {error}"
    );
    server.signal("TERM");
    assert_eq!(server.wait().await.code(), Some(0));

    assert_eq!(refreshes(&fake), 1, "the dead token was sent once");
    for needle in [
        "the refresh token was rejected",
        "could not write token file",
    ] {
        let count = server.seen.iter().filter(|l| l.contains(needle)).count();
        assert_eq!(count, 1, "{needle:?} logged once: {:?}", server.seen);
    }
}
