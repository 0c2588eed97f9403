//! Rotation, per-model candidates, cooldowns, backoff, rate caps, disabling and concurrency.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credential_pool::{Models, Outcome, Pool, PoolConfig, Slot, Strategy, Unavailable};

use crate::wall;

const MODEL: &str = "qwen3-coder-plus";
const SEC: Duration = Duration::from_secs(1);

fn only(models: &[&str]) -> Models {
    Models::Only(models.iter().map(|m| (*m).to_owned()).collect())
}

fn rpm(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

/// A pool whose credential values are their own keys.
fn pool_with(
    strategy: Strategy,
    keys: &[&str],
    models: &Models,
    cap: Option<NonZeroU32>,
) -> Pool<String> {
    let pool = Pool::new(PoolConfig {
        strategy,
        ..PoolConfig::default()
    });
    for key in keys {
        pool.upsert(key, Arc::new((*key).to_owned()), models.clone(), cap);
    }
    pool
}

fn pick(pool: &Pool<String>, model: &str, now: Instant) -> String {
    let lease = pool.select(model, &[], now, wall()).expect("a credential");
    assert_eq!(*lease.key, **lease.credential);
    lease.key.to_string()
}

fn quota(pool: &Pool<String>, key: &str, model: &str, retry_after: Option<Duration>, now: Instant) {
    pool.report(key, model, Outcome::QuotaExceeded { retry_after }, now);
}

#[test]
fn round_robin_splits_evenly() {
    let pool = pool_with(
        Strategy::RoundRobin,
        &["a", "b", "c"],
        &only(&[MODEL]),
        None,
    );
    let now = Instant::now();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        *counts.entry(pick(&pool, MODEL, now)).or_default() += 1;
    }
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&n| n == 100), "{counts:?}");
}

#[test]
fn round_robin_cycles_in_insertion_order_and_skips_unavailable() {
    let pool = pool_with(
        Strategy::RoundRobin,
        &["a", "b", "c"],
        &only(&[MODEL]),
        None,
    );
    let now = Instant::now();
    let picks: Vec<String> = (0..4).map(|_| pick(&pool, MODEL, now)).collect();
    assert_eq!(picks, ["a", "b", "c", "a"]);
    quota(&pool, "c", MODEL, Some(10 * SEC), now);
    let picks: Vec<String> = (0..4).map(|_| pick(&pool, MODEL, now)).collect();
    assert_eq!(picks, ["b", "a", "b", "a"]);
}

#[test]
fn fill_first_sticks_to_the_first_until_unavailable() {
    let pool = pool_with(Strategy::FillFirst, &["a", "b", "c"], &only(&[MODEL]), None);
    let t0 = Instant::now();
    assert!((0..10).all(|_| pick(&pool, MODEL, t0) == "a"));
    quota(&pool, "a", MODEL, Some(30 * SEC), t0);
    assert!((0..10).all(|_| pick(&pool, MODEL, t0) == "b"));
    pool.set_disabled("b", Some("refresh token revoked".into()));
    assert_eq!(pick(&pool, MODEL, t0), "c");
    // `a` recovers and is preferred again.
    assert_eq!(pick(&pool, MODEL, t0 + 30 * SEC), "a");
}

#[test]
fn credentials_are_only_picked_for_models_they_serve() {
    let pool: Pool<String> = Pool::default();
    pool.upsert(
        "only-a",
        Arc::new("only-a".into()),
        only(&["model-a"]),
        None,
    );
    pool.upsert(
        "only-b",
        Arc::new("only-b".into()),
        only(&["model-b", "model-c"]),
        None,
    );
    let now = Instant::now();
    assert!((0..20).all(|_| pick(&pool, "model-a", now) == "only-a"));
    assert!((0..20).all(|_| pick(&pool, "model-b", now) == "only-b"));
    assert_eq!(pool.models(), ["model-a", "model-b", "model-c"]);

    let err = pool
        .select("model-z", &[], now, wall())
        .expect_err("nobody serves it");
    assert_eq!(
        err,
        Unavailable::UnknownModel {
            model: "model-z".into(),
            known: vec!["model-a".into(), "model-b".into(), "model-c".into()],
        }
    );
    assert!(
        err.to_string().contains("model-a, model-b, model-c"),
        "{err}"
    );
}

#[test]
fn models_all_serves_any_model_and_joins_concrete_lists() {
    let pool: Pool<String> = Pool::default();
    pool.upsert(
        "qwen:alice",
        Arc::new("qwen:alice".into()),
        only(&[MODEL]),
        None,
    );
    pool.upsert(
        "openai-compat:any#1",
        Arc::new("openai-compat:any#1".into()),
        Models::All,
        None,
    );
    let now = Instant::now();
    assert_eq!(pick(&pool, "gpt-whatever", now), "openai-compat:any#1");
    let picks: Vec<String> = (0..4).map(|_| pick(&pool, MODEL, now)).collect();
    assert_eq!(
        picks,
        [
            "qwen:alice",
            "openai-compat:any#1",
            "qwen:alice",
            "openai-compat:any#1"
        ]
    );
    // `Models::All` adds nothing to the list of known models.
    assert_eq!(pool.models(), [MODEL]);
}

#[test]
fn empty_pool_reports_unknown_model() {
    let pool: Pool<String> = Pool::default();
    assert!(pool.is_empty());
    let err = pool
        .select(MODEL, &[], Instant::now(), wall())
        .expect_err("empty");
    assert_eq!(
        err,
        Unavailable::UnknownModel {
            model: MODEL.into(),
            known: vec![]
        }
    );
    assert!(err.to_string().contains("cliproxy login"), "{err}");
}

#[test]
fn retry_after_cooldown_then_recovery() {
    let pool = pool_with(Strategy::RoundRobin, &["a"], &only(&[MODEL]), None);
    let t0 = Instant::now();
    quota(&pool, "a", MODEL, Some(42 * SEC), t0);
    let err = pool
        .select(MODEL, &[], t0 + SEC, wall())
        .expect_err("cooling");
    assert_eq!(
        err,
        Unavailable::CoolingDown {
            model: MODEL.into(),
            retry_after: 41 * SEC,
            waiting: 1
        }
    );
    assert_eq!(err.retry_after(), Some(41 * SEC));
    assert!(
        pool.select(MODEL, &[], t0 + 42 * SEC - Duration::from_millis(1), wall())
            .is_err()
    );
    assert_eq!(pick(&pool, MODEL, t0 + 42 * SEC), "a");
}

#[test]
fn backoff_doubles_caps_and_resets_on_success() {
    let pool = pool_with(Strategy::RoundRobin, &["a"], &only(&[MODEL]), None);
    let mut now = Instant::now();
    let max = PoolConfig::default().backoff_max;
    let mut expected = SEC;
    for _ in 0..20 {
        quota(&pool, "a", MODEL, None, now);
        match pool.select(MODEL, &[], now, wall()) {
            Err(Unavailable::CoolingDown { retry_after, .. }) => assert_eq!(retry_after, expected),
            other => panic!("expected a cooldown of {expected:?}, got {other:?}"),
        }
        now += expected;
        assert_eq!(pick(&pool, MODEL, now), "a");
        expected = (expected * 2).min(max);
    }
    assert_eq!(expected, max, "20 doublings reach the 30 min cap");

    pool.report("a", MODEL, Outcome::Success, now);
    quota(&pool, "a", MODEL, None, now);
    let err = pool.select(MODEL, &[], now, wall()).expect_err("cooling");
    assert_eq!(err.retry_after(), Some(SEC), "success resets the backoff");
}

#[test]
fn failed_outcome_does_not_cool_down() {
    let pool = pool_with(Strategy::RoundRobin, &["a"], &only(&[MODEL]), None);
    let now = Instant::now();
    pool.report("a", MODEL, Outcome::Failed, now);
    assert_eq!(pick(&pool, MODEL, now), "a");
}

#[test]
fn cooldown_is_per_credential_and_model() {
    let pool = pool_with(
        Strategy::RoundRobin,
        &["a", "b"],
        &only(&["m1", "m2"]),
        None,
    );
    let now = Instant::now();
    quota(&pool, "a", "m1", Some(60 * SEC), now);
    assert!((0..6).all(|_| pick(&pool, "m1", now) == "b"));
    let m2: Vec<String> = (0..4).map(|_| pick(&pool, "m2", now)).collect();
    assert_eq!(m2, ["a", "b", "a", "b"]);

    let statuses = pool.statuses(now + 10 * SEC);
    assert_eq!(statuses.len(), 2);
    assert_eq!(&*statuses[0].key, "a");
    assert_eq!(statuses[0].cooling.len(), 1);
    assert_eq!(statuses[0].cooling[0].model, "m1");
    assert_eq!(statuses[0].cooling[0].remaining, 50 * SEC);
    assert_eq!(statuses[0].cooling[0].consecutive_failures, 1);
    assert!(statuses[1].cooling.is_empty());
}

#[test]
fn tried_credentials_are_skipped_then_exhausted() {
    let pool = pool_with(Strategy::RoundRobin, &["a", "b"], &only(&[MODEL]), None);
    let now = Instant::now();
    let mut tried: Vec<Arc<str>> = Vec::new();
    for _ in 0..2 {
        let lease = pool
            .select(MODEL, &tried, now, wall())
            .expect("an untried credential");
        assert!(!tried.contains(&lease.key));
        pool.report(&lease.key, MODEL, Outcome::Failed, now);
        tried.push(lease.key);
    }
    let err = pool
        .select(MODEL, &tried, now, wall())
        .expect_err("all tried");
    assert_eq!(
        err,
        Unavailable::Exhausted {
            model: MODEL.into()
        }
    );
    // A fresh request may use them again.
    assert!(pool.select(MODEL, &[], now, wall()).is_ok());
}

#[test]
fn all_cooling_reports_earliest_recovery_and_waiting_count() {
    let pool = pool_with(
        Strategy::RoundRobin,
        &["a", "b", "c", "d"],
        &only(&[MODEL]),
        None,
    );
    let t0 = Instant::now();
    quota(&pool, "a", MODEL, Some(90 * SEC), t0);
    quota(&pool, "b", MODEL, Some(30 * SEC), t0);
    quota(&pool, "c", MODEL, Some(60 * SEC), t0);
    pool.set_disabled("d", Some("re-login required".into()));
    let err = pool
        .select(MODEL, &[], t0 + 5 * SEC, wall())
        .expect_err("none usable");
    assert_eq!(
        err,
        Unavailable::CoolingDown {
            model: MODEL.into(),
            retry_after: 25 * SEC,
            waiting: 3
        }
    );
    assert!(err.to_string().contains("retry in 25 s"), "{err}");
    // A tried credential that now cools down counts as waiting, not as tried.
    let tried: Vec<Arc<str>> = vec!["b".into()];
    assert_eq!(
        pool.select(MODEL, &tried, t0 + 5 * SEC, wall())
            .expect_err("none")
            .retry_after(),
        Some(25 * SEC)
    );
    assert_eq!(pick(&pool, MODEL, t0 + 30 * SEC), "b");
}

#[test]
fn availability_says_what_select_would_without_taking_anything() {
    let pool = pool_with(Strategy::RoundRobin, &["a", "b"], &only(&[MODEL]), rpm(1));
    let now = Instant::now();
    assert_eq!(pool.availability(MODEL, now), Ok(()));
    assert_eq!(pick(&pool, MODEL, now), "a", "availability moved no cursor");
    assert_eq!(pool.availability(MODEL, now), Ok(()), "b is free");
    quota(&pool, "b", MODEL, Some(30 * SEC), now);
    assert_eq!(
        pool.availability(MODEL, now),
        Err(Unavailable::CoolingDown {
            model: MODEL.to_owned(),
            retry_after: 30 * SEC,
            waiting: 2,
        })
    );
    // Asking took no slot: a's one slot is still the one `pick` used.
    assert_eq!(pool.statuses(now)[0].requests_in_window, 1);
    assert_eq!(pool.availability(MODEL, now + 60 * SEC), Ok(()));
    assert!(matches!(
        pool.availability("other", now),
        Err(Unavailable::UnknownModel { .. })
    ));
}

#[test]
fn a_retry_on_the_same_credential_takes_a_slot_when_there_is_one() {
    let pool = pool_with(Strategy::RoundRobin, &["a"], &only(&[MODEL]), rpm(2));
    let now = Instant::now();
    assert_eq!(pick(&pool, MODEL, now), "a");
    assert_eq!(pool.take_slot("a", now, wall()), Slot::Taken);
    assert_eq!(
        pool.take_slot("a", now, wall()),
        Slot::Capped,
        "two of two slots used"
    );
    assert_eq!(
        pool.take_slot("a", now + 61 * SEC, wall()),
        Slot::Taken,
        "a minute later"
    );
    assert_eq!(pool.take_slot("gone", now, wall()), Slot::Gone);
    pool.set_disabled("a", Some("re-login required".to_owned()));
    assert_eq!(pool.take_slot("a", now + 200 * SEC, wall()), Slot::Gone);

    let uncapped = pool_with(Strategy::RoundRobin, &["u"], &only(&[MODEL]), None);
    assert!((0..100).all(|_| uncapped.take_slot("u", now, wall()) == Slot::Taken));
}

#[test]
fn disabled_credentials_are_skipped_and_all_disabled_is_reported() {
    let pool = pool_with(Strategy::RoundRobin, &["a", "b"], &only(&[MODEL]), None);
    let now = Instant::now();
    assert!(pool.set_disabled("a", Some("refresh token expired".into())));
    assert!((0..4).all(|_| pick(&pool, MODEL, now) == "b"));
    pool.set_disabled("b", Some("refresh token expired".into()));
    assert_eq!(
        pool.select(MODEL, &[], now, wall())
            .expect_err("all disabled"),
        Unavailable::Disabled {
            model: MODEL.into(),
            count: 2
        }
    );
    assert_eq!(
        pool.statuses(now)[0].disabled.as_deref(),
        Some("refresh token expired")
    );
    pool.set_disabled("a", None);
    assert_eq!(pick(&pool, MODEL, now), "a");
    assert!(!pool.set_disabled("nope", None));
}

#[test]
fn rate_cap_allows_a_burst_then_waits_for_the_oldest_slot() {
    let keys = ["a", "b", "c", "d"];
    let pool = pool_with(Strategy::RoundRobin, &keys, &only(&[MODEL]), rpm(60));
    let t0 = Instant::now();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..240 {
        *counts.entry(pick(&pool, MODEL, t0)).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 60), "{counts:?}");
    let at = t0 + 20 * SEC;
    assert_eq!(
        pool.select(MODEL, &[], at, wall())
            .expect_err("all at their cap"),
        Unavailable::CoolingDown {
            model: MODEL.into(),
            retry_after: 40 * SEC,
            waiting: 4
        }
    );
    assert!(
        pool.statuses(at)
            .iter()
            .all(|s| s.requests_in_window == 60 && s.requests_per_minute == rpm(60))
    );
}

#[test]
fn sliding_window_frees_slots_as_time_passes() {
    let pool = pool_with(Strategy::RoundRobin, &["a"], &only(&[MODEL]), rpm(3));
    let t0 = Instant::now();
    for i in 0..3 {
        pick(&pool, MODEL, t0 + i * 10 * SEC);
    }
    let err = pool
        .select(MODEL, &[], t0 + 30 * SEC, wall())
        .expect_err("capped");
    assert_eq!(err.retry_after(), Some(30 * SEC));
    // The first send leaves the minute at t0 + 60 s: exactly one slot frees.
    pick(&pool, MODEL, t0 + 60 * SEC);
    assert_eq!(
        pool.select(MODEL, &[], t0 + 60 * SEC, wall())
            .expect_err("capped again")
            .retry_after(),
        Some(10 * SEC)
    );
    pick(&pool, MODEL, t0 + 70 * SEC);
    assert_eq!(pool.statuses(t0 + 70 * SEC)[0].requests_in_window, 3);
    assert_eq!(pool.statuses(t0 + 200 * SEC)[0].requests_in_window, 0);
}

#[test]
fn cooldown_and_rate_cap_combine_to_the_later_moment() {
    let pool = pool_with(Strategy::RoundRobin, &["a"], &only(&[MODEL]), rpm(1));
    let t0 = Instant::now();
    pick(&pool, MODEL, t0);
    quota(&pool, "a", MODEL, Some(5 * SEC), t0);
    assert_eq!(
        pool.select(MODEL, &[], t0, wall())
            .expect_err("both")
            .retry_after(),
        Some(60 * SEC)
    );
}

#[test]
fn upsert_replacing_keeps_cooldown_and_rate_window() {
    let pool = pool_with(Strategy::RoundRobin, &["a", "b"], &only(&[MODEL]), rpm(2));
    let t0 = Instant::now();
    quota(&pool, "a", MODEL, Some(60 * SEC), t0);
    pick(&pool, MODEL, t0);
    pool.set_disabled("a", Some("refresh token revoked".into()));

    pool.upsert("a", Arc::new("a".into()), only(&[MODEL]), rpm(2));
    pool.upsert("b", Arc::new("b".into()), only(&[MODEL]), rpm(1));
    assert_eq!(pool.len(), 2);
    let statuses = pool.statuses(t0);
    assert_eq!(
        statuses[0].disabled, None,
        "a replaced credential is re-enabled"
    );
    assert_eq!(statuses[0].cooling[0].remaining, 60 * SEC);
    assert_eq!(statuses[1].requests_in_window, 1);
    // `a` cools down and `b` is at its new cap of 1.
    assert_eq!(
        pool.select(MODEL, &[], t0, wall()).expect_err("none"),
        Unavailable::CoolingDown {
            model: MODEL.into(),
            retry_after: 60 * SEC,
            waiting: 2
        }
    );

    // Replacing with a different credential value is visible to later leases.
    pool.upsert("b", Arc::new("b".into()), only(&[MODEL, "other"]), None);
    assert_eq!(pick(&pool, "other", t0), "b");
    assert_eq!(pool.get("b").as_deref().map(String::as_str), Some("b"));
}

#[test]
fn remove_stops_selection() {
    let pool = pool_with(Strategy::RoundRobin, &["a", "b"], &only(&[MODEL]), None);
    let now = Instant::now();
    assert!(pool.remove("a"));
    assert!(!pool.remove("a"));
    assert_eq!(pool.len(), 1);
    assert!((0..5).all(|_| pick(&pool, MODEL, now) == "b"));
    // Reports for removed keys are ignored.
    quota(&pool, "a", MODEL, None, now);
    assert!(pool.remove("b"));
    assert!(pool.models().is_empty());
    assert!(matches!(
        pool.select(MODEL, &[], now, wall()),
        Err(Unavailable::UnknownModel { .. })
    ));
}

#[test]
fn concurrent_select_and_report() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    let pool = Arc::new(pool_with(
        Strategy::RoundRobin,
        &["a", "b", "c"],
        &only(&[MODEL, "m2"]),
        None,
    ));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut served = 0_usize;
                for round in 0..ROUNDS {
                    let model = if round % 2 == 0 { MODEL } else { "m2" };
                    if let Ok(lease) = pool.select(model, &[], t0, wall()) {
                        served += 1;
                        let outcome = match (thread + round) % 7 {
                            0 => Outcome::QuotaExceeded {
                                retry_after: Some(Duration::ZERO),
                            },
                            1 => Outcome::Failed,
                            _ => Outcome::Success,
                        };
                        pool.report(&lease.key, model, outcome, t0);
                    }
                }
                served
            })
        })
        .collect();
    let served: usize = handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .sum();
    // Zero-length cooldowns never block, so every request was served.
    assert_eq!(served, THREADS * ROUNDS);
    assert_eq!(pool.len(), 3);
}

#[test]
fn concurrent_selects_never_exceed_rate_caps() {
    const THREADS: usize = 4;
    let pool = Arc::new(pool_with(
        Strategy::RoundRobin,
        &["a", "b", "c"],
        &only(&[MODEL]),
        rpm(100),
    ));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                (0..200)
                    .filter(|_| pool.select(MODEL, &[], t0, wall()).is_ok())
                    .count()
            })
        })
        .collect();
    let served: usize = handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .sum();
    assert_eq!(served, 300, "3 credentials x 100 requests per minute");
    assert!(
        pool.statuses(t0)
            .iter()
            .all(|s| s.requests_in_window == 100)
    );
}

#[test]
fn pool_and_leases_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool<String>>();
    assert_send_sync::<credential_pool::Lease<String>>();
}
