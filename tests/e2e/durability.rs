//! No token is lost, whatever happens around a refresh: the client that caused it leaves,
//! the server is told to stop, the token file cannot be written, or the upstream refuses the
//! account even with a fresh token. Qwen rotates refresh tokens (the fake does too): once
//! its answer left, the old refresh token is dead and the new one must reach the file.

use crate::support::Sandbox;
use crate::support::server::{Server, guarded, write_account};
use fake_qwen::FakeQwen;

const MODEL: &str = "coder-model";
const DAY: i64 = 86_400;

/// How many refresh-token grants reached the fake.
fn refreshes(fake: &FakeQwen) -> usize {
    fake.token_requests()
        .iter()
        .filter(|r| r.form_value("grant_type") == Some("refresh_token"))
        .count()
}

/// The token file's JSON.
fn saved(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Asserts that the file at `path` holds the newest token pair the fake issued.
#[track_caller]
fn assert_holds_newest(fake: &FakeQwen, path: &std::path::Path) {
    let newest = fake.issued_tokens().pop().unwrap();
    let json = saved(path);
    assert_eq!(json["access_token"], newest.access_token.as_str());
    assert_eq!(json["refresh_token"], newest.refresh_token.as_str());
    assert!(json.get("status").is_none(), "{json}");
}

/// A server that logs the proxy's per-request events too.
async fn debug_server(sandbox: &Sandbox) -> Server {
    Server::builder(sandbox)
        .env("CLIPROXY_LOG", "info,proxy_server=debug")
        .start()
        .await
}

#[tokio::test]
async fn a_client_that_leaves_mid_refresh_loses_no_account() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (path, tokens) = write_account(&sandbox, &fake, "dev@example.com", DAY);
    fake.expire_access_token(&tokens.access_token);
    fake.hold_refreshes(true);
    let mut server = debug_server(&sandbox).await;

    // The client's request meets a 401, and the refresh it starts is held at Qwen.
    let client = server.client();
    let url = server.url("/v1/chat/completions");
    let request = tokio::spawn(async move {
        crate::support::server::send_chat(&client, &url, MODEL, false).await
    });
    guarded("held refresh", fake.wait_for_held_refreshes(1)).await;
    // The client gives up (Esc in an agent, an SDK timeout) before Qwen answers.
    request.abort();
    server
        .wait_for_log("the client went away before the answer")
        .await;
    fake.release_held_refreshes(1);

    server.wait_for_log("refreshed the access token").await;
    assert_holds_newest(&fake, &path);
    fake.hold_refreshes(false);
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(
        refreshes(&fake),
        1,
        "the new token serves without another refresh"
    );
}

#[tokio::test]
async fn sigterm_waits_for_a_refresh_in_flight_and_saves_its_tokens() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    // Inside the refresh lead: the scheduler refreshes at once.
    let (path, _) = write_account(&sandbox, &fake, "dev@example.com", 60);
    fake.hold_refreshes(true);
    let mut server = Server::start(&sandbox, "").await;
    guarded("held refresh", fake.wait_for_held_refreshes(1)).await;

    server.signal("TERM");
    // No request is open: the server is done but for the refresh.
    server.wait_for_log("stopped").await;
    fake.release_held_refreshes(1);

    assert!(server.wait().await.success());
    assert!(
        server
            .seen
            .iter()
            .any(|line| line.contains("refreshed the access token")),
        "{:#?}",
        server.seen
    );
    assert_holds_newest(&fake, &path);
}

#[tokio::test]
async fn a_token_write_that_fails_keeps_the_new_tokens_and_is_retried_until_it_lands() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (path, tokens) = write_account(&sandbox, &fake, "dev@example.com", DAY);
    fake.expire_access_token(&tokens.access_token);
    let mut server = Server::start(&sandbox, "").await;
    // `ulimit -f` of one byte on the running server: every token write fails with EFBIG
    // (and SIGXFSZ, which must not kill it).
    set_file_size_limit(server.pid(), "1");

    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    server.wait_for_log("retries the write").await;
    let newest = fake.issued_tokens().pop().unwrap();
    assert_eq!(
        saved(&path)["refresh_token"],
        tokens.refresh_token.as_str(),
        "the write failed, so the file holds the old (now dead) refresh token"
    );
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    assert!(listed.contains("token not saved: "), "{listed}");
    assert!(listed.contains("File too large"), "{listed}");

    // Served with the new token in memory, without another refresh.
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(refreshes(&fake), 1);
    let last = fake.chat_requests().pop().unwrap();
    assert_eq!(last.bearer(), Some(newest.access_token.as_str()));

    set_file_size_limit(server.pid(), "unlimited");
    server
        .wait_for_log("the token file is up to date again")
        .await;
    assert_holds_newest(&fake, &path);
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    assert!(!listed.contains("token not saved"), "{listed}");
}

/// Sets the soft file size limit (`ulimit -f`, in bytes here) of process `pid`.
fn set_file_size_limit(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={limit}");
}

#[tokio::test]
async fn an_account_refused_even_with_a_fresh_token_cools_down_and_the_others_serve() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (_, refused) = write_account(&sandbox, &fake, "banned@example.com", DAY);
    write_account(&sandbox, &fake, "good@example.com", DAY);
    fake.refuse_account(&refused.access_token, &refused.refresh_token);
    let server = Server::start(&sandbox, "").await;

    // Forty requests at once: several meet the refused account before it is benched.
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, url) = (server.client(), server.url("/v1/chat/completions"));
        requests.spawn(async move {
            crate::support::server::send_chat(&client, &url, MODEL, false)
                .await
                .status()
                .as_u16()
        });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        refreshes(&fake) <= 3,
        "{} refreshes of the refused account for 40 requests",
        refreshes(&fake)
    );

    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    let row = listed
        .lines()
        .find(|line| line.starts_with("banned@example.com"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("refused since ")
            && row.contains("the upstream answered 401")
            && row.contains("next probe in "),
        "{row}"
    );
}
