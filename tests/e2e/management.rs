//! The management API, `/metrics` and the dashboard's routes through the real binary: the
//! key (missing, wrong, hashed), the lockout, remote peers, each endpoint, and metrics that
//! parse and count what the fake served.

use std::net::{IpAddr, UdpSocket};

use fake_qwen::{FakeQwen, PollStep};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::server::{API_KEY, MODEL, Server, guarded};
use crate::support::{Sandbox, fake_qwen};

/// The management key of the tests' servers.
const KEY: &str = "test-management-key-0123456789";

fn with_key(extra: &str) -> String {
    format!("management-key = \"{KEY}\"\n{extra}")
}

/// A client that sends no key at all.
fn bare() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = bare().get(server.url(path));
    if let Some(key) = key {
        request = request.header("x-management-key", key);
    }
    request.send().await.expect("the server answers")
}

async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = bare().request(method, server.url(path)).bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}")),
    )
}

async fn credentials(server: &Server) -> Vec<Value> {
    let (status, body) = send(
        server,
        reqwest::Method::GET,
        "/v0/management/credentials",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["credentials"].as_array().unwrap().clone()
}

fn by_label<'a>(credentials: &'a [Value], label: &str) -> &'a Value {
    credentials
        .iter()
        .find(|credential| credential["label"] == label)
        .unwrap_or_else(|| panic!("no {label} in {credentials:?}"))
}

#[tokio::test]
async fn without_a_key_the_management_routes_are_404_and_metrics_answer_loopback() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::with_accounts(&sandbox, &fake, &["a@example.com"]).await;
    for path in [
        "/v0/management/credentials",
        "/v0/management/config",
        "/dashboard",
    ] {
        let answer = get(&server, path, Some(KEY)).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!answer.text().await.unwrap().contains("a@example.com"));
    }
    let metrics = get(&server, "/metrics", None).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("cliproxy_credentials"), "{text}");
}

#[tokio::test]
async fn a_missing_or_wrong_key_gets_401_and_no_data() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["a@example.com"])
        .config(&with_key(""))
        .start()
        .await;
    let paths = [
        "/v0/management/credentials",
        "/v0/management/usage",
        "/v0/management/config",
        "/metrics",
    ];
    // A missing key is no guess: it does not count towards the lockout. Four wrong ones do.
    let tries = paths
        .iter()
        .map(|path| (*path, None))
        .chain([(paths[0], Some("wrong")), (paths[3], Some(API_KEY))])
        .chain([(paths[1], Some("")), (paths[2], Some("wrong "))]);
    for (path, key) in tries {
        let answer = get(&server, path, key).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path} {key:?}");
        let text = answer.text().await.unwrap();
        assert!(!text.contains("a@example.com"), "{text}");
        assert!(text.contains("management key"), "{text}");
    }
    // The client key's own header does not open the management API either.
    let answer = server
        .client()
        .get(server.url("/v0/management/credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    // And the management key is not a client key.
    let chat = bare()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), StatusCode::UNAUTHORIZED);
    let listed = credentials(&server).await;
    assert_eq!(by_label(&listed, "a@example.com")["state"], "ok");
}

#[tokio::test]
async fn an_argon2_hash_in_the_config_takes_the_key() {
    // `argon2` of KEY with the salt "c29tZXNhbHRzb21lc2FsdA" (m=19456, t=2, p=1).
    let hash = argon2_hash(KEY);
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .config(&format!("management-key = \"{hash}\""))
        .start()
        .await;
    assert_eq!(
        get(&server, "/v0/management/config", Some(KEY))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&server, "/v0/management/config", Some(&hash))
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "the hash is not the key"
    );
}

/// A PHC string for `key`, as `argon2` (the command) or any Argon2id library writes it.
fn argon2_hash(key: &str) -> String {
    use argon2::PasswordHasher as _;
    let salt = argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
    argon2::Argon2::default()
        .hash_password(key.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn five_wrong_keys_lock_the_address_out_even_for_the_right_key() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .config(&with_key(""))
        .start()
        .await;
    for _ in 0..5 {
        let answer = get(&server, "/v0/management/credentials", Some("guess")).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = get(&server, "/v0/management/credentials", Some(KEY)).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    assert!(locked.text().await.unwrap().contains("too many wrong"));
    assert_eq!(
        get(&server, "/metrics", Some(KEY)).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "/metrics is locked too"
    );
    // The API itself is not.
    assert_eq!(
        server
            .client()
            .get(server.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// This machine's address on its outward interface, if it has one (no packet is sent).
fn outward_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn peers_that_are_not_loopback_are_refused_unless_allowed() {
    let Some(outward) = outward_address() else {
        eprintln!("skipped: this machine has no address but loopback to connect from");
        return;
    };
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    for allow in [false, true] {
        let server = Server::builder(&sandbox)
            .config(&with_key(&format!(
                "host = \"0.0.0.0\"\n[management]\nallow-remote = {allow}"
            )))
            .start()
            .await;
        let port = server.base.rsplit(':').next().unwrap().to_owned();
        let remote = format!("http://{outward}:{port}");
        for path in ["/v0/management/config", "/metrics", "/dashboard"] {
            let answer = bare()
                .get(format!("{remote}{path}"))
                .header("x-management-key", KEY)
                .send()
                .await
                .unwrap();
            let expected = if allow {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(answer.status(), expected, "{path} allow-remote = {allow}");
            if !allow {
                assert!(answer.text().await.unwrap().contains("allow-remote"));
            }
        }
    }
}

#[tokio::test]
async fn other_web_pages_are_refused() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .config(&with_key(""))
        .start()
        .await;
    let answer = bare()
        .post(server.url("/v0/management/logins"))
        .header("x-management-key", KEY)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let same = bare()
        .get(server.url("/v0/management/config"))
        .header("x-management-key", KEY)
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
}

#[tokio::test]
async fn credentials_show_live_state_and_take_disable_enable_refresh_and_remove() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-team");
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &["a@example.com", "b@example.com"])
        .config(&with_key(&format!(
            "[[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\napi-keys = [\"sk-team\"]\nmodels = [\"other-model\"]",
            fake.chat_base_url()
        )))
        .start()
        .await;

    let listed = credentials(&server).await;
    assert_eq!(listed.len(), 3);
    let a = by_label(&listed, "a@example.com");
    assert_eq!(a["state"], "ok");
    assert_eq!(a["kind"], "qwen-oauth");
    let expires = a["token_expires_at"].as_i64().expect("an expiry");
    let next = a["next_refresh_at"].as_i64().expect("a next refresh");
    assert!(next < expires, "{a}");
    let team = by_label(&listed, "team#1");
    assert_eq!(team["kind"], "api-key");
    assert_eq!(team["token_expires_at"], Value::Null);
    let text = serde_json::to_string(&listed).unwrap();
    for secret in [
        "sk-team",
        &server.account("a@example.com").tokens.access_token,
        &server.account("a@example.com").tokens.refresh_token,
    ] {
        assert!(!text.contains(secret), "a secret in {text}");
    }

    // Disable: the account leaves rotation at once, and the file says so.
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/a%40example.com/disable",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changed"], true);
    assert_eq!(body["credential"]["state"], "disabled");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(&server.account("a@example.com").path).unwrap(),
    )
    .unwrap();
    assert_eq!(file["cliproxy_disabled"], true, "{file}");
    fake.forget_requests();
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), StatusCode::OK);
    }
    let b_token = &server.account("b@example.com").tokens.access_token;
    assert!(
        fake.chat_requests()
            .iter()
            .all(|request| request.bearer() == Some(b_token.as_str())),
        "a disabled account served a request"
    );
    // The CLI sees it too.
    let list = sandbox.run(&["accounts", "list"], "").await.success();
    let row = list
        .lines()
        .find(|line| line.contains("a@example.com"))
        .unwrap();
    assert!(row.contains("disabled"), "{row}");

    // Enable by pool key.
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/qwen-a%40example.com/enable",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "ok");

    // An API key is disabled in the auth dir's list.
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/team%231/disable",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "disabled");

    // Refresh now: through the account's refresh, whose new token is saved.
    let refreshes = fake.refreshes().len();
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/a%40example.com/refresh",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refreshed"], true);
    assert_eq!(fake.refreshes().len(), refreshes + 1);
    server.wait_for_log("refreshed the access token").await;
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(&server.account("a@example.com").path).unwrap(),
    )
    .unwrap();
    assert_ne!(
        file["access_token"],
        server.account("a@example.com").tokens.access_token.as_str()
    );
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/team%231/refresh",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Remove: a Qwen account is logged out; an API key comes from the config.
    let (status, body) = send(
        &server,
        reqwest::Method::DELETE,
        "/v0/management/credentials/b%40example.com",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!server.account("b@example.com").path.exists());
    let listed = credentials(&server).await;
    assert!(
        listed.iter().all(|c| c["label"] != "b@example.com"),
        "{listed:?}"
    );
    let (status, body) = send(
        &server,
        reqwest::Method::DELETE,
        "/v0/management/credentials/team%231",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[[openai-compat]]")
    );
    let (status, _) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/nobody/disable",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_effective_config_shows_no_secret() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .config(&with_key(&format!(
            "proxy-url = \"http://user:proxy-pass@127.0.0.1:9\"\n[[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\napi-keys = [\"sk-team-secret\"]",
            fake.chat_base_url()
        )))
        .start()
        .await;
    let (status, config) = send(&server, reqwest::Method::GET, "/v0/management/config", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = config.to_string();
    for secret in [KEY, API_KEY, "sk-team-secret", "proxy-pass"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(config["openai-compat"][0]["name"], "team");
    assert_eq!(config["management"]["allow-remote"], false);
}

#[tokio::test]
async fn a_device_login_from_the_api_ends_with_a_token_file() {
    let fake = fake_qwen().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Approve]);
    // Tokens that name the fake's plain-http chat endpoint, so the new account can serve.
    fake.set_answered_resource_url(Some(fake.chat_base_url()));
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox)
        .config(&with_key(""))
        .start()
        .await;

    let (status, login) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/logins",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert!(
        login["verification_uri_complete"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );
    assert!(!login["user_code"].as_str().unwrap().is_empty());
    assert!(login["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(login["expires_in"].as_u64().unwrap() > 0);
    let id = login["id"].as_str().unwrap().to_owned();

    server
        .wait_for_log("was approved; waiting for the account's email")
        .await;
    let (status, polled) = send(
        &server,
        reqwest::Method::GET,
        &format!("/v0/management/logins/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(polled["state"], "needs-email", "{polled}");
    let text = polled.to_string();
    for token in fake.issued_tokens() {
        assert!(!text.contains(&token.access_token) && !text.contains(&token.refresh_token));
    }

    let (status, refused) = send(
        &server,
        reqwest::Method::POST,
        &format!("/v0/management/logins/{id}/email"),
        Some(serde_json::json!({"email": "not an email"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, saved) = send(
        &server,
        reqwest::Method::POST,
        &format!("/v0/management/logins/{id}/email"),
        Some(serde_json::json!({"email": "New@Example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["state"], "saved", "{saved}");
    assert_eq!(saved["email"], "new@example.com");
    let (path, json) = sandbox.only_token_file();
    assert_eq!(json["email"], "new@example.com");
    assert_eq!(crate::support::mode(&path), 0o600);
    let listed = credentials(&server).await;
    assert_eq!(by_label(&listed, "new@example.com")["state"], "ok");
    assert_eq!(server.chat(MODEL, false).await.status(), StatusCode::OK);

    let (status, _) = send(
        &server,
        reqwest::Method::GET,
        "/v0/management/logins/unknown",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_login_started_with_an_email_is_saved_on_approval() {
    let fake = fake_qwen().await;
    fake.script_polls(vec![PollStep::Approve]);
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox)
        .config(&with_key(""))
        .start()
        .await;
    let (status, login) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/logins",
        Some(serde_json::json!({"email": "early@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    server
        .wait_for_log("logged in an account from the management API")
        .await;
    let id = login["id"].as_str().unwrap();
    let (_, polled) = send(
        &server,
        reqwest::Method::GET,
        &format!("/v0/management/logins/{id}"),
        None,
    )
    .await;
    assert_eq!(polled["state"], "saved", "{polled}");
    assert_eq!(sandbox.only_token_file().1["email"], "early@example.com");
    guarded("the account in the pool", async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            every.tick().await;
            if credentials(&server)
                .await
                .iter()
                .any(|c| c["label"] == "early@example.com")
            {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_assets_and_a_strict_policy() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .config(&with_key(""))
        .start()
        .await;
    let page = get(&server, "/dashboard", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("/dashboard/app.js") && html.contains("/dashboard/style.css"));
    assert!(!html.contains("https://"), "no CDN: {html}");
    for asset in ["/dashboard/app.js", "/dashboard/style.css"] {
        assert_eq!(
            get(&server, asset, None).await.status(),
            StatusCode::OK,
            "{asset}"
        );
    }
    assert_eq!(
        get(&server, "/dashboard/nothing.js", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// `/metrics` as parsed by a Prometheus text parser.
async fn scrape(server: &Server) -> (String, prometheus_parse::Scrape) {
    let answer = get(server, "/metrics", Some(KEY)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = answer.text().await.unwrap();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|error| panic!("{error}: {text}"));
    (text, parsed)
}

/// The sum of the samples of `metric` whose labels include `labels`.
fn sum(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => *value,
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|bucket| bucket.less_than.is_infinite())
                .map_or(0.0, |bucket| bucket.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_count_what_the_fake_served_and_usage_matches_the_cli() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = ["a@example.com", "b@example.com"];
    let server = Server::builder(&sandbox)
        .accounts(&fake, &emails)
        .config(&with_key(""))
        .start()
        .await;
    for stream in [false, false, false, true, true] {
        let answer = server.chat(MODEL, stream).await;
        assert_eq!(answer.status(), StatusCode::OK);
        answer.bytes().await.unwrap();
    }
    let unknown = server.chat("no-such-model", false).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let requests = 6.0;

    let scraped = guarded("the metrics of six requests", async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            every.tick().await;
            let (text, scraped) = scrape(&server).await;
            // A scrape may land while a fold's counts are being added: wait for all of them.
            if sum(&scraped, "cliproxy_requests_total", &[]) >= requests
                && sum(&scraped, "cliproxy_request_failures_total", &[]) >= 1.0
                && sum(&scraped, "cliproxy_request_duration_seconds", &[]) >= requests
                && sum(&scraped, "cliproxy_time_to_first_byte_seconds", &[]) >= 5.0
                && sum(&scraped, "cliproxy_upstream_attempts", &[]) >= requests
            {
                break (text, scraped);
            }
        }
    })
    .await;
    let (text, scraped) = scraped;
    assert_eq!(
        sum(&scraped, "cliproxy_requests_total", &[]),
        requests,
        "{text}"
    );
    for email in emails {
        let token = &server.account(email).tokens.access_token;
        let served = fake
            .chat_requests()
            .iter()
            .filter(|request| request.bearer() == Some(token.as_str()))
            .count();
        assert!(served > 0, "{email} served nothing");
        assert_eq!(
            sum(
                &scraped,
                "cliproxy_requests_total",
                &[("credential", email)]
            ),
            served as f64,
            "{email}: {text}"
        );
    }
    assert_eq!(
        sum(
            &scraped,
            "cliproxy_requests_total",
            &[("api", "chat-completions"), ("model", MODEL)]
        ),
        5.0,
        "{text}"
    );
    assert_eq!(
        sum(&scraped, "cliproxy_request_failures_total", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&scraped, "cliproxy_request_duration_seconds", &[]),
        requests,
        "every request is timed: {text}"
    );
    assert_eq!(
        sum(&scraped, "cliproxy_time_to_first_byte_seconds", &[]),
        5.0,
        "the five answered requests: {text}"
    );
    assert_eq!(
        sum(&scraped, "cliproxy_upstream_attempts", &[]),
        requests,
        "each request once: {text}"
    );
    assert_eq!(
        sum(&scraped, "cliproxy_credentials", &[("state", "ok")]),
        2.0
    );
    assert_eq!(
        sum(&scraped, "cliproxy_credentials", &[("state", "disabled")]),
        0.0
    );
    assert_eq!(
        sum(
            &scraped,
            "cliproxy_credential_state",
            &[("credential", "a@example.com"), ("state", "ok")]
        ),
        1.0
    );

    // The ledger's figures agree with the metrics' once flushed, and the API's usage is the
    // CLI's, byte for byte.
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let usage = guarded("the ledger's flush", async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            every.tick().await;
            let (status, usage) = send(
                &server,
                reqwest::Method::GET,
                &format!("/v0/management/usage?since={date}&by=model"),
                None,
            )
            .await;
            if status == StatusCode::OK && usage["total"]["requests"] == 6 {
                break usage;
            }
        }
    })
    .await;
    for (kind, field) in [
        ("prompt", "prompt_tokens"),
        ("completion", "completion_tokens"),
        ("cached", "cached_tokens"),
    ] {
        assert_eq!(
            sum(&scraped, "cliproxy_tokens_total", &[("kind", kind)]),
            usage["total"][field].as_u64().unwrap() as f64,
            "{kind}: {text}"
        );
    }
    assert!(usage["total"]["prompt_tokens"].as_u64().unwrap() > 0);
    let api = get(
        &server,
        &format!("/v0/management/usage?since={date}&by=model"),
        Some(KEY),
    )
    .await
    .text()
    .await
    .unwrap();
    let cli = sandbox
        .run(&["usage", "--since", &date, "--by", "model", "--json"], "")
        .await
        .success();
    assert_eq!(api, cli, "the API's usage is `cliproxy usage --json`");
    let (status, refused) = send(
        &server,
        reqwest::Method::GET,
        "/v0/management/usage?by=week",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    // A refresh from the API is counted.
    let (status, _) = send(
        &server,
        reqwest::Method::POST,
        "/v0/management/credentials/a%40example.com/refresh",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, scraped) = scrape(&server).await;
    assert_eq!(
        sum(
            &scraped,
            "cliproxy_token_refreshes_total",
            &[("outcome", "succeeded")]
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_can_name_accounts_by_a_hash_of_their_email() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["secret.person@example.com"])
        .config(&with_key("[metrics]\nhash-emails = true"))
        .start()
        .await;
    assert_eq!(server.chat(MODEL, false).await.status(), StatusCode::OK);
    let text = guarded("the request's metrics", async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            every.tick().await;
            let (text, scraped) = scrape(&server).await;
            if sum(&scraped, "cliproxy_requests_total", &[]) >= 1.0 {
                break text;
            }
        }
    })
    .await;
    assert!(!text.contains("secret.person"), "{text}");
    assert!(text.contains("credential=\"sha256:"), "{text}");
}
