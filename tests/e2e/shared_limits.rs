//! Limits shared by several `serve` processes on one PostgreSQL store: an account's
//! `requests-per-minute` holds across them, a cooldown or a refusal one server meets takes
//! the credential out on all of them, a heal brings it back everywhere, and a database that
//! goes away leaves each server with its own limits. Each test skips (printing why) without
//! PostgreSQL, and fails then when `CLIPROXY_REQUIRE_POSTGRES_TESTS=1`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fake_qwen::{ChatStep, FakeQwen};

use crate::support::server::{DAY, MODEL, Server, write_account};
use crate::support::{Sandbox, fake_qwen};

/// How long a test waits for a condition it polls before it fails.
const DEADLINE: Duration = Duration::from_secs(60);
/// The pause between two looks at a polled condition.
const POLL: Duration = Duration::from_millis(50);

/// Starts `count` servers on the database at `url`, each with `config`.
async fn servers(sandbox: &Sandbox, url: &str, count: usize, config: &str) -> Vec<Server> {
    let mut servers = Vec::new();
    for _ in 0..count {
        let server = Server::builder(sandbox)
            .env("CLIPROXY_STORE_URL", url)
            .config(config)
            .start()
            .await;
        servers.push(server);
    }
    servers
}

/// Chat requests the fake saw, by the bearer token (access token or API key) they carried;
/// probes of refused credentials left out.
fn requests_by_token(fake: &FakeQwen) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for request in fake.chat_requests() {
        if request.json()["messages"][0]["content"] == "ping" {
            continue;
        }
        *seen
            .entry(request.bearer().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    seen
}

fn requests_with(fake: &FakeQwen, token: &str) -> usize {
    requests_by_token(fake).get(token).copied().unwrap_or(0)
}

/// Sends chat requests through `server` until the fake saw `token`, the credential under
/// test, at least once.
async fn until_used(server: &Server, fake: &FakeQwen, token: &str) {
    let started = Instant::now();
    while requests_with(fake, token) == 0 {
        assert!(
            started.elapsed() < DEADLINE,
            "{token} never reached the fake"
        );
        server.chat(MODEL, false).await;
    }
}

#[tokio::test]
async fn three_servers_share_each_accounts_rate_cap() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    const CAP: usize = 2;
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let emails = ["a@example.com", "b@example.com", "c@example.com"];
    let tokens: Vec<String> = emails
        .iter()
        .map(|email| write_account(&sandbox, &fake, email, DAY).1.access_token)
        .collect();
    sandbox.move_into_database(&url).await;
    let servers = servers(
        &sandbox,
        &url,
        3,
        &format!("[qwen]\nrequests-per-minute = {CAP}"),
    )
    .await;

    // Load through all three until the caps are used up; a server without slots answers 429
    // (its slots are elsewhere) and gets more as the others hand theirs back.
    let total = CAP * emails.len();
    let started = Instant::now();
    let mut served = 0;
    while fake.chat_requests().len() < total {
        assert!(
            started.elapsed() < DEADLINE,
            "only {} of {total} requests served: {:?}",
            fake.chat_requests().len(),
            requests_by_token(&fake)
        );
        for server in &servers {
            if server.chat(MODEL, false).await.status() == 200 {
                served += 1;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    // Every slot of the minute is spent: nothing more goes out, through any server.
    for server in &servers {
        for _ in 0..3 {
            assert_eq!(server.chat(MODEL, false).await.status(), 429);
        }
    }
    let seen = requests_by_token(&fake);
    for token in &tokens {
        assert_eq!(
            seen.get(token).copied(),
            Some(CAP),
            "each account served its cap once across the servers: {seen:?}"
        );
    }
    assert_eq!(fake.chat_requests().len(), total, "{seen:?}");
    assert_eq!(served, total);
}

#[tokio::test]
async fn a_cooldown_met_by_one_server_keeps_the_others_off_the_account() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let (_, limited) = write_account(&sandbox, &fake, "limited@example.com", DAY);
    write_account(&sandbox, &fake, "spare@example.com", DAY);
    sandbox.move_into_database(&url).await;
    fake.script_chat(
        &limited.access_token,
        vec![ChatStep::RateLimited {
            retry_after_secs: 600,
        }],
    );
    let mut servers = servers(&sandbox, &url, 3, "").await;

    until_used(&servers[0], &fake, &limited.access_token).await;
    for server in &mut servers[1..] {
        let heard = server.wait_for_log("(heard from another server)").await;
        assert!(
            heard.contains("limited@example.com") && heard.contains("cooling down for"),
            "{heard}"
        );
    }
    for server in &servers[1..] {
        for _ in 0..4 {
            assert_eq!(server.chat(MODEL, false).await.status(), 200);
        }
    }
    assert_eq!(
        requests_with(&fake, &limited.access_token),
        1,
        "only the first server met the 429; the others never picked the account"
    );
}

#[tokio::test]
async fn a_refused_key_is_refused_on_every_server_and_its_heal_reaches_them_all() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    const KEY: &str = "sk-not-yet";
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "steady@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let spare = format!(
        "[[openai-compat]]\nname = \"spare\"\nbase-url = \"{}\"\n\
         api-keys = [\"{KEY}\"]\nmodels = [\"{MODEL}\"]",
        fake.chat_base_url()
    );
    // Only the first server probes soon: the others learn of the heal from it.
    let mut prober = servers(&sandbox, &url, 1, &format!("probe-after = \"1s\"\n{spare}")).await;
    let mut others = servers(&sandbox, &url, 2, &format!("probe-after = \"1h\"\n{spare}")).await;

    until_used(&prober[0], &fake, KEY).await;
    for server in &mut others {
        let heard = server.wait_for_log("(heard from another server)").await;
        assert!(
            heard.contains("spare") && heard.contains("refused by the upstream (HTTP 401)"),
            "{heard}"
        );
    }
    for server in &others {
        for _ in 0..4 {
            assert_eq!(server.chat(MODEL, false).await.status(), 200);
        }
    }
    assert_eq!(requests_with(&fake, KEY), 1, "refused once, on one server");

    fake.add_api_key(KEY);
    prober[0]
        .wait_for_log("the upstream accepts the refused credential again")
        .await;
    for server in &mut others {
        let heard = server
            .next_log_containing("the upstream accepts it again (heard from another server)")
            .await;
        assert!(heard.contains("spare"), "{heard}");
    }
    fake.forget_requests();
    for server in &others {
        for _ in 0..4 {
            assert_eq!(server.chat(MODEL, false).await.status(), 200);
        }
    }
    assert!(
        requests_with(&fake, KEY) >= 2,
        "back in rotation on the servers that never probed: {:?}",
        requests_by_token(&fake)
    );
}

#[tokio::test]
async fn servers_keep_their_own_limits_while_the_database_is_down_and_rejoin_after() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let Some(cluster) = test_postgres::Cluster::private() else {
        return;
    };
    let url = cluster.database().await;
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "only@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let mut servers = servers(&sandbox, &url, 2, "[qwen]\nrequests-per-minute = 2").await;

    cluster.stop().unwrap();
    for server in &mut servers {
        server
            .wait_for_log("each server keeps its own rate windows and credential states")
            .await;
    }
    // Each server alone: its own window of two a minute.
    for server in &servers {
        for _ in 0..2 {
            assert_eq!(server.chat(MODEL, false).await.status(), 200);
        }
        assert_eq!(server.chat(MODEL, false).await.status(), 429);
    }
    assert_eq!(fake.chat_requests().len(), 4);

    cluster.start_again().unwrap();
    for server in &mut servers {
        server
            .wait_for_log("rate caps and credential states are shared again")
            .await;
    }
    // The minute's sends stay counted in each server's window.
    for server in &servers {
        assert_eq!(server.chat(MODEL, false).await.status(), 429);
    }
    assert_eq!(fake.chat_requests().len(), 4);
}

#[tokio::test]
async fn a_client_keys_requests_per_minute_holds_across_servers() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    const CAP: usize = 3;
    const KEY: &str = "team-key-0123456789";
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "only@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let servers = servers(
        &sandbox,
        &url,
        3,
        &format!(
            "[qwen]\nrequests-per-minute = 0\n\
             [[client-keys]]\nname = \"team\"\nkey = \"{KEY}\"\nrequests-per-minute = {CAP}"
        ),
    )
    .await;
    let as_team = |server: &Server| {
        reqwest::Client::new()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&serde_json::json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "hello"}],
            }))
            .send()
    };

    let started = Instant::now();
    while fake.chat_requests().len() < CAP {
        assert!(
            started.elapsed() < DEADLINE,
            "the key's cap was never served"
        );
        for server in &servers {
            as_team(server).await.unwrap();
        }
        tokio::time::sleep(POLL).await;
    }
    for server in &servers {
        let answer = as_team(server).await.unwrap();
        assert_eq!(answer.status(), 429);
        let body = answer.text().await.unwrap();
        assert!(body.contains("may send 3 requests a minute"), "{body}");
    }
    assert_eq!(
        fake.chat_requests().len(),
        CAP,
        "the key's cap, across three servers"
    );
    // Other keys are not held by it.
    assert_eq!(servers[0].chat(MODEL, false).await.status(), 200);
}

#[tokio::test]
async fn an_accounts_requests_per_day_counts_every_servers_requests() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "daily@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let mut servers = servers(
        &sandbox,
        &url,
        2,
        "[qwen]\nrequests-per-minute = 0\nrequests-per-day = 3",
    )
    .await;

    for _ in 0..3 {
        assert_eq!(servers[0].chat(MODEL, false).await.status(), 200);
    }
    let heard = servers[1]
        .wait_for_log("at its limit of the day, counting the other servers'")
        .await;
    assert!(heard.contains("daily@example.com"), "{heard}");
    assert_eq!(servers[1].chat(MODEL, false).await.status(), 429);
    assert_eq!(
        fake.chat_requests().len(),
        3,
        "the day's three, across both servers"
    );
}

#[tokio::test]
async fn a_client_keys_tokens_per_day_counts_every_servers_answers() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    const KEY: &str = "team-key-0123456789";
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "only@example.com", DAY);
    sandbox.move_into_database(&url).await;
    let config = format!(
        "[qwen]\nrequests-per-minute = 0\n\
         [[client-keys]]\nname = \"team\"\nkey = \"{KEY}\"\ntokens-per-day = 1"
    );
    let first = servers(&sandbox, &url, 1, &config).await;
    let mut second = Server::builder(&sandbox)
        .env("CLIPROXY_STORE_URL", &url)
        .env("CLIPROXY_LOG", "info,account_runtime=debug")
        .config(&config)
        .start()
        .await;
    let as_team = |server: &Server| {
        reqwest::Client::new()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&serde_json::json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "hello"}],
            }))
            .send()
    };

    // One answer uses the key's day on the first server.
    assert_eq!(as_team(&first[0]).await.unwrap().status(), 200);
    let heard = second
        .wait_for_log("tokens of the day counted by the other servers")
        .await;
    assert!(heard.contains("team"), "{heard}");
    let answer = as_team(&second).await.unwrap();
    assert_eq!(answer.status(), 429);
    let body = answer.text().await.unwrap();
    assert!(body.contains("tokens of the day"), "{body}");
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "the day's tokens, across both servers"
    );
}
