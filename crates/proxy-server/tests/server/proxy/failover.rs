//! Selection and failover across credentials: rotation, quota, HTML pages, server errors,
//! unreachable upstreams, token refresh, dead accounts, rate caps and the attempt budget.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use credential_pool::{Credential, Flavor, RefreshFailure};
use credential_pool::{Pool, PoolConfig};
use fake_qwen::{ChatStep, FakeQwen, RateLimitHeaders};
use proxy_server::ServerConfig;

use crate::support::{
    Answer, TestAccess, add_qwen, call, chat_body, chat_request, credential, one_api_key, proxy,
    proxy_with, qwen_models, qwen_pool, run_out_of_quota,
};

/// The tokens the fake saw, in order.
fn served_by(fake: &FakeQwen) -> Vec<String> {
    fake.chat_requests()
        .iter()
        .map(|request| request.bearer().unwrap_or_default().to_owned())
        .collect()
}

async fn chat(proxy: &proxy_server::Proxy) -> Answer {
    call(proxy, chat_request(&chat_body(false))).await
}

#[tokio::test]
async fn requests_rotate_round_robin_across_three_credentials() {
    let (fake, pool, tokens) = qwen_pool(3).await;
    let proxy = proxy(&pool);
    for _ in 0..4 {
        assert_eq!(chat(&proxy).await.status, 200);
    }
    assert_eq!(
        served_by(&fake),
        [
            tokens[0].as_str(),
            tokens[1].as_str(),
            tokens[2].as_str(),
            tokens[0].as_str()
        ]
    );
}

#[tokio::test]
async fn what_the_upstream_says_of_limits_is_kept_per_credential_from_failures_and_successes() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    fake.set_rate_limit_headers(Some(RateLimitHeaders {
        requests: 100,
        tokens: 5000,
        reset: "1m30s".to_owned(),
    }));
    fake.script_chat(&tokens[0], vec![ChatStep::QuotaExceeded]);
    let proxy = proxy(&pool);
    assert_eq!(chat(&proxy).await.status, 200);

    let statuses = pool.statuses(Instant::now());
    let refused = statuses[0]
        .upstream
        .as_ref()
        .expect("the quota answer said something");
    assert_eq!(
        refused.said.quota_error.as_deref(),
        Some("Free allocated quota exceeded.")
    );
    let requests = refused.said.requests.expect("x-ratelimit-*-requests");
    assert_eq!((requests.limit, requests.remaining), (Some(100), Some(99)));
    assert_eq!(
        requests.resets_after,
        Some(std::time::Duration::from_secs(90))
    );
    let served = statuses[1]
        .upstream
        .as_ref()
        .expect("the success said something");
    assert_eq!(served.said.quota_error, None);
    assert_eq!(served.said.tokens.and_then(|t| t.limit), Some(5000));
    assert_eq!(
        (statuses[0].day.requests, statuses[1].day.requests),
        (1, 1),
        "each attempt counts toward its credential's day"
    );
}

#[tokio::test]
async fn a_credential_at_its_tokens_per_day_leaves_rotation_even_without_the_usage_ledger() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    let first = pool.statuses(Instant::now())[0].key.clone();
    pool.set_daily_limits(
        &first,
        credential_pool::DailyLimits {
            requests: None,
            tokens: std::num::NonZeroU64::new(1),
        },
    );
    // `proxy` builds without a usage recorder: the credential's limit alone meters answers.
    let proxy = proxy(&pool);
    for _ in 0..3 {
        assert_eq!(chat(&proxy).await.status, 200);
    }
    assert_eq!(
        served_by(&fake),
        [tokens[0].as_str(), tokens[1].as_str(), tokens[1].as_str()]
    );
    let day = pool.statuses(Instant::now())[0].day;
    assert!(day.tokens >= 1 && day.limited_for.is_some(), "{day:?}");
}

#[tokio::test]
async fn a_credential_out_of_quota_is_skipped_without_a_client_visible_error() {
    let (fake, pool, tokens) = qwen_pool(3).await;
    fake.script_chat(&tokens[0], vec![ChatStep::QuotaExceeded]);
    fake.script_chat(&tokens[1], vec![ChatStep::QuotaExceeded403]);
    let proxy = proxy(&pool);
    let answer = chat(&proxy).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        served_by(&fake),
        [tokens[0].as_str(), tokens[1].as_str(), tokens[2].as_str()]
    );

    let statuses = pool.statuses(Instant::now());
    assert!(
        statuses[0].exhausted_for.is_some(),
        "a daily quota answer exhausts the credential until its reset"
    );
    assert!(
        statuses[1].exhausted_for.is_some(),
        "the 403 quota variant too"
    );
    assert!(statuses[2].exhausted_for.is_none() && statuses[2].cooling.is_empty());

    // The next request goes straight to the one that works.
    assert_eq!(chat(&proxy).await.status, 200);
    assert_eq!(served_by(&fake).len(), 4);
    assert_eq!(served_by(&fake)[3], tokens[2]);
}

#[tokio::test]
async fn all_credentials_out_of_quota_is_429_with_retry_after() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    run_out_of_quota(&fake, &tokens);
    let answer = chat(&proxy(&pool)).await;
    let message = answer.error(429, "rate_limit_exceeded");
    assert!(message.contains("all 2 usable credentials"), "{message}");
    assert!(message.contains("cliproxy login qwen"), "{message}");
    let retry_after = answer.retry_after_seconds();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn an_html_page_fails_over_and_all_html_is_a_502_in_json() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    fake.script_chat(&tokens[0], vec![ChatStep::Html { status: 200 }]);
    let proxy = proxy(&pool);
    assert_eq!(chat(&proxy).await.status, 200);
    assert_eq!(served_by(&fake), [tokens[0].as_str(), tokens[1].as_str()]);

    fake.set_chat_step(ChatStep::Html { status: 403 });
    fake.script_chat(&tokens[0], vec![]);
    let answer = chat(&proxy).await;
    let message = answer.error(502, "upstream_html");
    assert!(message.contains("HTML page"), "{message}");
    assert!(!answer.text().contains('<'), "{}", answer.text());

    // Streaming requests check the first chunk too.
    let answer = call(&proxy, chat_request(&chat_body(true))).await;
    answer.error(502, "upstream_html");
}

#[tokio::test]
async fn server_errors_fail_over() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    fake.script_chat(&tokens[0], vec![ChatStep::ServerError(503)]);
    let answer = chat(&proxy(&pool)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(served_by(&fake), [tokens[0].as_str(), tokens[1].as_str()]);
}

#[tokio::test]
async fn an_unreachable_upstream_fails_over() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    // Bound but never listening, and held for the whole test: connections are refused, and no
    // other test (or fake) can take the port meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4().expect("a socket");
    reserved
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("a port");
    let closed = reserved.local_addr().expect("an address");
    let pool = Arc::new(Pool::new(Default::default()));
    let dead = credential(
        "dead@example.com",
        Flavor::QwenOAuth,
        &format!("http://{closed}/v1"),
        "tok",
    );
    pool.upsert("qwen:dead", Arc::new(dead), qwen_models(), None);
    add_qwen(&pool, &fake, 1, &token);
    let proxy = proxy(&pool);
    assert_eq!(chat(&proxy).await.status, 200);

    pool.remove("qwen:1");
    let answer = chat(&proxy).await;
    let message = answer.error(502, "upstream_unreachable");
    assert!(
        !message.contains("dead@example.com"),
        "clients never see an account's email: {message}"
    );
    let id = answer.header("x-request-id").expect("a request id");
    assert!(
        message.contains(id),
        "the log is found by the request id: {message}"
    );
}

/// An account whose token the fake refuses, and whose refresh gives one it accepts.
struct StaleAccount {
    credential: Credential,
    access: Arc<TestAccess>,
    stale: String,
    fresh: String,
}

fn stale_account(fake: &FakeQwen, label: &str) -> StaleAccount {
    let stale = fake.mint_tokens().access_token;
    let fresh = fake.mint_tokens().access_token;
    fake.expire_access_token(&stale);
    let access = TestAccess::new(&fake.chat_base_url(), &stale);
    access.on_refresh(Ok(&fresh));
    let credential = Credential {
        label: label.into(),
        flavor: Flavor::QwenOAuth,
        access: access.clone(),
    };
    StaleAccount {
        credential,
        access,
        stale,
        fresh,
    }
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_request_retried() {
    let fake = FakeQwen::start().await;
    let StaleAccount {
        credential,
        access,
        stale,
        fresh,
    } = stale_account(&fake, "a@example.com");
    let pool = Arc::new(Pool::new(Default::default()));
    pool.upsert("qwen:a", Arc::new(credential), qwen_models(), None);

    let answer = chat(&proxy(&pool)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(access.refreshes(), 1);
    assert_eq!(served_by(&fake), [stale.as_str(), fresh.as_str()]);
}

#[tokio::test]
async fn a_dead_account_is_disabled_and_another_serves() {
    let fake = FakeQwen::start().await;
    let dead_token = fake.mint_tokens().access_token;
    fake.expire_access_token(&dead_token);
    let access = TestAccess::new(&fake.chat_base_url(), &dead_token);
    access.on_refresh(Err(RefreshFailure::ReloginRequired));
    let pool = Arc::new(Pool::new(Default::default()));
    let dead = Credential {
        label: "dead@example.com".into(),
        flavor: Flavor::QwenOAuth,
        access: access.clone(),
    };
    pool.upsert("qwen:dead", Arc::new(dead), qwen_models(), None);
    let token = fake.mint_tokens().access_token;
    add_qwen(&pool, &fake, 1, &token);
    let proxy = proxy(&pool);

    assert_eq!(chat(&proxy).await.status, 200);
    assert_eq!(access.refreshes(), 1);
    assert_eq!(served_by(&fake), [dead_token.as_str(), token.as_str()]);
    let statuses = pool.statuses(Instant::now());
    assert_eq!(statuses[0].disabled.as_deref(), Some("re-login required"));

    // Once the other one is gone too, the client is told to log in again.
    pool.remove("qwen:1");
    let message = chat(&proxy).await.error(503, "credentials_disabled");
    assert!(message.contains("cliproxy login qwen"), "{message}");
}

#[tokio::test]
async fn a_refused_api_key_fails_over_without_refresh() {
    let fake = FakeQwen::start().await;
    let pool = one_api_key("keys#1", &fake.chat_base_url(), "sk-wrong");
    let proxy = proxy(&pool);
    let answer = chat(&proxy).await;
    let message = answer.error(502, "upstream_auth_failed");
    assert!(!message.contains("keys#1"), "{message}");
    assert!(
        message.contains(answer.header("x-request-id").expect("an id")),
        "{message}"
    );
    assert!(
        !message.contains("sk-wrong"),
        "tokens never reach clients: {message}"
    );
}

#[tokio::test]
async fn every_credential_at_its_rate_cap_is_429_with_retry_after() {
    let fake = FakeQwen::start().await;
    let pool = Arc::new(Pool::new(Default::default()));
    let one = NonZeroU32::new(1);
    for i in 0..2 {
        let token = fake.mint_tokens().access_token;
        let qwen = credential(
            &format!("user{i}@example.com"),
            Flavor::QwenOAuth,
            &fake.chat_base_url(),
            &token,
        );
        pool.upsert(&format!("qwen:{i}"), Arc::new(qwen), qwen_models(), one);
    }
    let proxy = proxy(&pool);
    assert_eq!(chat(&proxy).await.status, 200);
    assert_eq!(chat(&proxy).await.status, 200);
    let answer = chat(&proxy).await;
    let message = answer.error(429, "rate_limit_exceeded");
    assert!(message.contains("cooling down"), "{message}");
    let retry_after = answer.retry_after_seconds();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(fake.chat_requests().len(), 2, "no request past the cap");
}

#[tokio::test]
async fn the_upstreams_own_rate_limit_moves_requests_to_the_next_credential() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    fake.set_requests_per_minute(Some(1));
    let proxy = proxy(&pool);
    assert_eq!(chat(&proxy).await.status, 200);
    assert_eq!(chat(&proxy).await.status, 200);
    // Both tokens used their minute: the first is tried, refused with 429, the second too.
    let answer = chat(&proxy).await;
    answer.error(429, "rate_limit_exceeded");
    assert!(answer.header("retry-after").is_some());
    assert_eq!(
        served_by(&fake),
        [
            tokens[0].as_str(),
            tokens[1].as_str(),
            tokens[0].as_str(),
            tokens[1].as_str()
        ]
    );
}

#[tokio::test]
async fn attempts_are_bounded_by_request_retry() {
    let (fake, pool, _) = qwen_pool(3).await;
    fake.set_chat_step(ChatStep::ServerError(500));
    let config = ServerConfig {
        request_retry: 2,
        ..ServerConfig::default()
    };
    let message = chat(&proxy_with(config, &pool))
        .await
        .error(502, "upstream_error");
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("retry"), "{message}");
    assert_eq!(fake.chat_requests().len(), 2);
}

/// As many accounts as attempts, all out of their daily quota: the budget runs out on the last
/// one, and the client learns when the first quota resets (the upstream's `Retry-After`, else
/// the configured daily reset) and how many wait.
#[tokio::test]
async fn quota_on_every_attempt_still_says_when_and_how_many_wait() {
    for upstream_retry_after in [Some(600), None] {
        let fake = FakeQwen::start().await;
        let pool = Arc::new(Pool::new(PoolConfig::default()));
        for i in 0..3 {
            add_qwen(&pool, &fake, i, &fake.mint_tokens().access_token);
        }
        fake.set_chat_step(ChatStep::QuotaExceeded);
        fake.set_quota_retry_after(upstream_retry_after);
        let answer = chat(&proxy(&pool)).await;
        let message = answer.error(429, "rate_limit_exceeded");
        assert!(message.contains("all 3 usable credentials"), "{message}");
        let retry_after = answer.retry_after_seconds();
        let expected = match upstream_retry_after {
            Some(secs) => secs - 10..=secs,
            None => 1..=24 * 3600,
        };
        assert!(expected.contains(&retry_after), "{retry_after}");
        assert_eq!(fake.chat_requests().len(), 3);
    }
}

/// The attempts run out on quota errors while other credentials are still free: retry now.
#[tokio::test]
async fn attempts_spent_on_quota_with_credentials_left_say_retry_now() {
    let (fake, pool, tokens) = qwen_pool(3).await;
    fake.script_chat(&tokens[0], vec![ChatStep::QuotaExceeded]);
    fake.script_chat(&tokens[1], vec![ChatStep::QuotaExceeded]);
    let config = ServerConfig {
        request_retry: 2,
        ..ServerConfig::default()
    };
    let proxy = proxy_with(config, &pool);
    let answer = chat(&proxy).await;
    let message = answer.error(429, "rate_limit_exceeded");
    assert!(message.contains("request-retry"), "{message}");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(served_by(&fake), [tokens[0].as_str(), tokens[1].as_str()]);

    assert_eq!(
        chat(&proxy).await.status,
        200,
        "the third credential serves"
    );
}

/// The retry after a refreshed token is a request like any other for the rate cap: at the cap,
/// the request moves to another credential instead of exceeding it.
#[tokio::test]
async fn the_retry_after_a_refresh_respects_the_rate_cap() {
    let fake = FakeQwen::start().await;
    let StaleAccount {
        credential,
        access,
        stale,
        ..
    } = stale_account(&fake, "capped@example.com");
    let pool = Arc::new(Pool::new(Default::default()));
    pool.upsert(
        "qwen:capped",
        Arc::new(credential),
        qwen_models(),
        NonZeroU32::new(1),
    );
    let other = fake.mint_tokens().access_token;
    add_qwen(&pool, &fake, 1, &other);

    let answer = chat(&proxy(&pool)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(access.refreshes(), 1);
    assert_eq!(served_by(&fake), [stale.as_str(), other.as_str()]);
}
