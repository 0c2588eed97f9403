//! Quota left per credential end to end: an account at its `requests-per-day` leaves rotation
//! while the others serve, and `accounts list` shows its day, its minute window, when the day
//! resets and what the upstream's `x-ratelimit-*` headers said; a reload sets an upstream key's
//! limit and keeps what it used today.

use std::collections::HashMap;

use fake_qwen::{FakeQwen, RateLimitHeaders};

use crate::reload::{save, start};
use crate::support::Sandbox;
use crate::support::server::{MODEL, Server};

/// The account (email) each chat request the fake saw came from, in order.
fn served_by(fake: &FakeQwen, server: &Server, emails: &[&str]) -> Vec<String> {
    let by_token: HashMap<&str, &str> = emails
        .iter()
        .map(|email| (server.account(email).tokens.access_token.as_str(), *email))
        .collect();
    fake.chat_requests()
        .iter()
        .map(|request| {
            let bearer = request.bearer().unwrap_or_default();
            by_token.get(bearer).copied().unwrap_or(bearer).to_owned()
        })
        .collect()
}

/// The cells of `name`'s row in the quota table of `accounts list`.
fn quota_cells(listed: &str, name: &str) -> Vec<String> {
    let row = listed
        .lines()
        .skip_while(|line| !line.starts_with("QUOTA"))
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no quota row for {name}:\n{listed}"));
    row.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_account_at_its_requests_per_day_leaves_rotation_and_accounts_list_shows_its_day() {
    let fake = FakeQwen::start().await;
    fake.set_rate_limit_headers(Some(RateLimitHeaders {
        requests: 2000,
        tokens: 1_000_000,
        reset: "6h0m0s".to_owned(),
    }));
    let sandbox = Sandbox::new(&fake);
    let emails = ["capped@example.com", "spare@example.com"];
    let reset = time::OffsetDateTime::now_utc() + time::Duration::minutes(90);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &emails)
        .config(&format!(
            "quota-reset = \"{:02}:{:02}+00:00\"\n\
             [accounts.\"capped@example.com\"]\nrequests-per-day = 2\n",
            reset.hour(),
            reset.minute()
        ))
        .start()
        .await;

    for _ in 0..6 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    let by = |email: &str| served.iter().filter(|who| *who == email).count();
    assert_eq!(
        (by(emails[0]), by(emails[1])),
        (2, 4),
        "two for the capped account, then only the spare: {served:?}"
    );

    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    let state = listed
        .lines()
        .find(|line| line.starts_with(emails[0]))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        state.contains("at its requests-per-day (2/2) until in 1h"),
        "{state}"
    );

    let capped = quota_cells(&listed, emails[0]);
    assert_eq!(capped[1], "2/60", "the minute window: {capped:?}");
    assert_eq!(capped[2], "2/2", "requests of the day: {capped:?}");
    let tokens: u64 = capped[3]
        .strip_suffix("/-")
        .and_then(|used| used.parse().ok())
        .unwrap_or_else(|| panic!("tokens of the day: {capped:?}"));
    assert!(tokens > 0, "the answers' tokens count: {capped:?}");
    let resets = format!("{:02}:{:02} UTC, in 1h", reset.hour(), reset.minute());
    assert!(capped[4].starts_with(&resets), "{capped:?}");
    assert!(
        capped[5].starts_with("requests 1998 of 2000 left, resets in 5h")
            && capped[5].contains("tokens 1000000 of 1000000 left")
            && capped[5].contains("seen "),
        "what the upstream said: {capped:?}"
    );

    let spare = quota_cells(&listed, emails[1]);
    assert_eq!(
        (spare[1].as_str(), spare[2].as_str()),
        ("4/60", "4/-"),
        "{spare:?}"
    );
    assert!(
        spare[5].starts_with("requests 1996 of 2000 left"),
        "{spare:?}"
    );
}

/// The status and `Retry-After` of a chat completion for `model`.
async fn chat(server: &Server, model: &str) -> (u16, Option<u64>) {
    let response = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("key")
        .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request reaches the server");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok());
    (response.status().as_u16(), retry_after)
}

#[tokio::test]
async fn a_reload_applies_an_upstream_keys_requests_per_day_and_keeps_what_it_used_today() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-team");
    let sandbox = Sandbox::new(&fake);
    let path = sandbox.home.path().join("config.toml");
    let config = |per_day: u32| {
        format!(
            "port = 0\napi-keys = [\"key\"]\n\
             [[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\napi-keys = [\"sk-team\"]\n\
             models = [\"team-model\"]\nrequests-per-day = {per_day}\n",
            fake.chat_base_url()
        )
    };
    save(&path, &config(1));
    let mut server = start(&sandbox, &path).await;

    assert_eq!(chat(&server, "team-model").await.0, 200);
    let (status, retry_after) = chat(&server, "team-model").await;
    assert_eq!(status, 429, "the key is at its requests-per-day");
    assert!(
        retry_after.is_some_and(|secs| secs > 60 && secs <= 24 * 3600),
        "Retry-After is the time until the quota reset: {retry_after:?}"
    );
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "nothing past the limit went upstream"
    );

    save(&path, &config(3));
    server.wait_for_log("config reloaded").await;
    assert_eq!(chat(&server, "team-model").await.0, 200);
    assert_eq!(chat(&server, "team-model").await.0, 200);
    assert_eq!(
        chat(&server, "team-model").await.0,
        429,
        "the request of before the reload still counts"
    );
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    assert_eq!(quota_cells(&listed, "team#1")[2], "3/3", "{listed}");
}
