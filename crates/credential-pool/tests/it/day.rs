//! A credential's day: requests and tokens counted toward its `requests-per-day` and
//! `tokens-per-day`, rotation without it at a limit until the quota reset, the counts in its
//! status, and what the upstream said.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credential_pool::{
    Allowance, DailyLimits, Models, Outcome, Pool, PoolConfig, QuotaReset, Slot, Unavailable,
    UpstreamSaid,
};

use crate::wall;

const MODEL: &str = "qwen3-coder-plus";
const HOUR: Duration = Duration::from_secs(3600);

/// Two credentials, `a` limited to `requests` a day, `b` unlimited; days end at 00:00 UTC
/// (14 h after [`wall`]).
fn pool(requests: u64, tokens: u64) -> Pool<String> {
    let pool = Pool::new(PoolConfig {
        quota_reset: "00:00Z".parse().expect("a reset"),
        ..PoolConfig::default()
    });
    for key in ["a", "b"] {
        pool.upsert(key, Arc::new(key.to_owned()), Models::All, None);
    }
    assert!(pool.set_daily_limits(
        "a",
        DailyLimits {
            requests: NonZeroU64::new(requests),
            tokens: NonZeroU64::new(tokens),
        }
    ));
    pool
}

fn picks(pool: &Pool<String>, n: usize, now: Instant, wall: std::time::SystemTime) -> Vec<String> {
    (0..n)
        .map(|_| {
            pool.select(MODEL, &[], now, wall)
                .expect("a credential")
                .key
                .to_string()
        })
        .collect()
}

#[test]
fn a_credential_at_its_requests_per_day_leaves_rotation_until_the_reset() {
    let pool = pool(2, 0);
    let now = Instant::now();
    assert_eq!(picks(&pool, 6, now, wall()), ["a", "b", "a", "b", "b", "b"]);
    let a = &pool.statuses(now)[0];
    assert_eq!((a.day.requests, a.day.tokens), (2, 0));
    assert_eq!(a.day.limits.requests, NonZeroU64::new(2));
    assert_eq!(a.day.resets_in, Some(14 * HOUR));
    assert_eq!(a.day.limited_for, Some(14 * HOUR));
    assert_eq!(pool.statuses(now)[1].day.requests, 4);

    // A success of a request still in flight does not bring it back before the reset.
    pool.report("a", MODEL, Outcome::Success, now);
    assert_eq!(pool.take_slot("a", now, wall()), Slot::Capped);
    assert_eq!(
        picks(&pool, 2, now + 13 * HOUR, wall() + 13 * HOUR),
        ["b", "b"]
    );

    // Alone, it says when it is back.
    pool.set_disabled("b", Some("off".into()));
    assert_eq!(
        pool.select(MODEL, &[], now + 13 * HOUR, wall() + 13 * HOUR)
            .expect_err("at its limit"),
        Unavailable::CoolingDown {
            model: MODEL.into(),
            retry_after: HOUR,
            waiting: 1,
        }
    );

    // The next day it serves again, from zero.
    let next_day = (now + 14 * HOUR, wall() + 14 * HOUR);
    let status = &pool.statuses(next_day.0)[0];
    assert_eq!((status.day.requests, status.day.limited_for), (0, None));
    assert_eq!(status.day.resets_in, Some(24 * HOUR));
    assert_eq!(picks(&pool, 2, next_day.0, next_day.1), ["a", "a"]);
    assert_eq!(pool.statuses(next_day.0)[0].day.requests, 2);
    assert_eq!(pool.statuses(next_day.0)[0].day.resets_in, Some(24 * HOUR));
}

#[test]
fn tokens_per_day_count_the_answers_and_a_new_day_starts_at_zero() {
    let pool = pool(0, 1000);
    let now = Instant::now();
    pool.spend_tokens("a", 600, now, wall());
    assert_eq!(picks(&pool, 2, now, wall()), ["a", "b"]);
    // A success's report can count its answer's tokens under the same lock.
    pool.report_success_spending("a", MODEL, 400, now, wall());
    pool.report_success_spending("gone", MODEL, 400, now, wall());
    assert_eq!(picks(&pool, 2, now, wall()), ["b", "b"]);
    let a = &pool.statuses(now)[0];
    assert_eq!((a.day.requests, a.day.tokens), (1, 1000));
    assert_eq!(a.day.limited_for, Some(14 * HOUR));

    // Raising the limit by a reload puts it back, its counts kept.
    pool.set_daily_limits(
        "a",
        DailyLimits {
            requests: None,
            tokens: NonZeroU64::new(5000),
        },
    );
    assert_eq!(picks(&pool, 1, now, wall()), ["a"]);
    assert_eq!(pool.statuses(now)[0].day.tokens, 1000);

    // Tokens spent after the reset count toward the new day.
    let (later, later_wall) = (now + 15 * HOUR, wall() + 15 * HOUR);
    pool.spend_tokens("a", 5, later, later_wall);
    let a = &pool.statuses(later)[0];
    assert_eq!((a.day.requests, a.day.tokens), (0, 5));
    assert_eq!(a.day.resets_in, Some(23 * HOUR));
}

#[test]
fn the_reset_follows_the_config_and_unlimited_credentials_still_count() {
    let pool: Pool<String> = Pool::new(PoolConfig::default());
    pool.upsert("a", Arc::new("a".into()), Models::All, NonZeroU32::new(10));
    let now = Instant::now();
    picks(&pool, 3, now, wall());
    let a = &pool.statuses(now)[0];
    // Midnight in China is 16:00 UTC: 6 h after 10:00 UTC.
    assert_eq!((a.day.requests, a.day.resets_in), (3, Some(6 * HOUR)));
    assert_eq!(a.requests_in_window, 3);
    assert_eq!(a.day.limits, DailyLimits::default());

    // A new reset applies from the next day on.
    pool.set_quota_reset(QuotaReset::default());
    let reset: QuotaReset = "12:00Z".parse().expect("a reset");
    pool.set_quota_reset(reset);
    picks(&pool, 1, now + 7 * HOUR, wall() + 7 * HOUR);
    let a = &pool.statuses(now + 7 * HOUR)[0];
    assert_eq!((a.day.requests, a.day.resets_in), (1, Some(19 * HOUR)));
}

#[test]
fn what_the_upstream_said_is_kept_with_when() {
    let pool = pool(0, 0);
    let now = Instant::now();
    assert_eq!(pool.statuses(now)[0].upstream, None);
    let headers = [
        ("x-ratelimit-limit-requests", "2000"),
        ("x-ratelimit-remaining-requests", "1998"),
        ("x-ratelimit-reset-requests", "8h"),
    ];
    let said = UpstreamSaid::from_headers(|name| {
        headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    })
    .expect("rate-limit headers");
    pool.heard("a", said.clone(), now);
    pool.heard("gone", said, now);
    let upstream = pool.statuses(now + HOUR)[0]
        .upstream
        .clone()
        .expect("heard");
    assert_eq!(upstream.ago, HOUR);
    assert_eq!(
        upstream.said.requests,
        Some(Allowance {
            limit: Some(2000),
            remaining: Some(1998),
            resets_after: Some(8 * HOUR),
        })
    );
    assert_eq!(upstream.said.tokens, None);
    assert_eq!(pool.statuses(now)[1].upstream, None);
}
