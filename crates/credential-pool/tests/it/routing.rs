//! Weights, priority tiers, headroom, session affinity, client scopes, refused credentials
//! that are probed back, and exhausted ones that wait for their reset.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credential_pool::{
    Models, Outcome, Pool, PoolConfig, Routing, Scope, Selection, Slot, Strategy, Unavailable,
};
use proptest::prelude::*;

const MODEL: &str = "qwen3-coder-plus";
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

fn pool(strategy: Strategy, keys: &[&str], cap: Option<u32>) -> Pool<String> {
    let pool = Pool::new(PoolConfig {
        strategy,
        ..PoolConfig::default()
    });
    for key in keys {
        pool.upsert(
            key,
            Arc::new((*key).to_owned()),
            Models::All,
            cap.and_then(NonZeroU32::new),
        );
    }
    pool
}

fn route(pool: &Pool<String>, key: &str, weight: u32, priority: i32, group: Option<&str>) {
    assert!(pool.set_routing(
        key,
        Routing {
            weight: NonZeroU32::new(weight).unwrap(),
            priority,
            group: group.map(Arc::from),
        }
    ));
}

fn pick(pool: &Pool<String>, now: Instant) -> String {
    pool.select(MODEL, &[], now)
        .expect("a credential")
        .key
        .to_string()
}

fn pick_in(pool: &Pool<String>, conversation: Option<u64>, scope: &Scope, now: Instant) -> String {
    pool.select_with(Selection {
        model: MODEL,
        tried: &[],
        conversation,
        scope,
        now,
    })
    .expect("a credential")
    .key
    .to_string()
}

fn counts(picks: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for key in picks {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[test]
fn weights_three_to_one_split_exactly_and_without_bursts() {
    let pool = pool(Strategy::Weighted, &["a", "b"], None);
    route(&pool, "a", 3, 0, None);
    let now = Instant::now();
    let picks: Vec<String> = (0..400).map(|_| pick(&pool, now)).collect();
    let split = counts(picks.clone());
    assert_eq!((split["a"], split["b"]), (300, 100));
    // Smooth: b comes every fourth pick, never four a's in a row.
    assert!(
        picks.windows(4).all(|four| four.iter().any(|k| k == "b")),
        "{picks:?}"
    );
}

#[test]
fn a_new_weight_or_group_takes_effect_on_a_running_pool() {
    let pool = pool(Strategy::Weighted, &["a", "b"], None);
    let now = Instant::now();
    let split = counts((0..10).map(|_| pick(&pool, now)));
    assert_eq!((split["a"], split["b"]), (5, 5));
    route(&pool, "a", 3, 0, Some("team"));
    let split = counts((0..400).map(|_| pick(&pool, now)));
    assert_eq!((split["a"], split["b"]), (300, 100));
    let team = Scope {
        groups: vec!["team".into()],
        ..Scope::default()
    };
    assert!((0..4).all(|_| pick_in(&pool, None, &team, now) == "a"));
}

#[test]
fn a_weighted_credential_that_cannot_serve_gives_its_turns_to_the_next() {
    let pool = pool(Strategy::Weighted, &["a", "b", "c"], None);
    route(&pool, "a", 5, 0, None);
    let now = Instant::now();
    pool.report(
        "a",
        MODEL,
        Outcome::QuotaExceeded {
            retry_after: Some(MIN),
        },
        now,
    );
    let split = counts((0..70).map(|_| pick(&pool, now)));
    assert_eq!(split.get("a"), None);
    assert_eq!(split["b"] + split["c"], 70);
}

#[test]
fn a_tier_serves_only_when_every_credential_before_it_cannot() {
    for strategy in [
        Strategy::RoundRobin,
        Strategy::FillFirst,
        Strategy::Weighted,
        Strategy::Headroom,
    ] {
        let pool = pool(strategy, &["backup", "main1", "main2"], Some(2));
        route(&pool, "backup", 1, 10, None);
        let now = Instant::now();
        let first: Vec<String> = (0..4).map(|_| pick(&pool, now)).collect();
        assert!(
            first.iter().all(|k| k.starts_with("main")),
            "{strategy:?}: {first:?}"
        );
        // Both main credentials are at their cap now: the backup tier serves.
        assert_eq!(pick(&pool, now), "backup", "{strategy:?}");
        // A minute later the main tier is back.
        assert!(pick(&pool, now + MIN).starts_with("main"), "{strategy:?}");
    }
}

#[test]
fn headroom_picks_the_credential_with_the_most_room() {
    let pool = pool(Strategy::Headroom, &["a", "b", "c"], Some(10));
    let t0 = Instant::now();
    // a takes 5, b takes 2 (by tried lists), c none.
    for _ in 0..5 {
        pool.take_slot("a", t0);
    }
    for _ in 0..2 {
        pool.take_slot("b", t0);
    }
    assert_eq!(pick(&pool, t0), "c");
    // Rooms now a 5, b 8, c 9: c, then b and c take turns (the one chosen longer ago
    // first) down to a's level, and then a joins.
    let picks: Vec<String> = (0..8).map(|_| pick(&pool, t0)).collect();
    assert_eq!(picks, ["c", "b", "c", "b", "c", "b", "c", "a"]);
    // A minute on, every send has left the window: all have full room, and the one
    // chosen longest ago goes first.
    assert_eq!(pick(&pool, t0 + MIN), "b");
    assert_eq!(pool.statuses(t0 + MIN)[1].requests_in_window, 1);
}

#[test]
fn headroom_prefers_uncapped_credentials_and_rotates_among_equals() {
    let pool = pool(Strategy::Headroom, &["capped"], Some(100));
    pool.upsert("free1", Arc::new("free1".into()), Models::All, None);
    pool.upsert("free2", Arc::new("free2".into()), Models::All, None);
    let now = Instant::now();
    let picks: Vec<String> = (0..6).map(|_| pick(&pool, now)).collect();
    assert_eq!(
        picks,
        ["free1", "free2", "free1", "free2", "free1", "free2"]
    );
}

#[test]
fn headroom_keeps_its_order_when_a_slot_is_taken_after_sends_left_the_window() {
    let pool = pool(Strategy::Headroom, &["a", "b"], Some(3));
    let t0 = Instant::now();
    assert_eq!(pick(&pool, t0), "a");
    assert_eq!(pick(&pool, t0), "b");
    // A minute on, the retry after a refresh takes a slot on a before any pick saw that
    // the first sends left the window.
    let later = t0 + MIN + SEC;
    assert_eq!(pool.take_slot("a", later), Slot::Taken);
    // Rooms: a 2, b 3.
    assert_eq!(pick(&pool, later), "b");
    // a 2 (chosen longer ago), b 2.
    assert_eq!(pick(&pool, later), "a");
    // a 1, b 2.
    assert_eq!(pick(&pool, later), "b");
}

#[test]
fn headroom_keeps_its_order_when_availability_was_asked_after_sends_left_the_window() {
    let pool = pool(Strategy::Headroom, &["a", "b"], Some(3));
    let t0 = Instant::now();
    assert_eq!(pick(&pool, t0), "a");
    assert_eq!(pick(&pool, t0), "b");
    assert_eq!(pick(&pool, t0), "a");
    // Rooms a 1, b 2. A minute on, every send left the window; availability looks first.
    let later = t0 + MIN + SEC;
    assert!(pool.availability(MODEL, later).is_ok());
    // Rooms a 3, b 3; b was chosen longer ago.
    let picks: Vec<String> = (0..4).map(|_| pick(&pool, later)).collect();
    assert_eq!(picks, ["b", "a", "b", "a"]);
}

#[test]
fn when_all_are_capped_the_wait_is_the_soonest_reset() {
    let pool = pool(Strategy::Headroom, &["a", "b"], Some(1));
    let t0 = Instant::now();
    pick(&pool, t0);
    pick(&pool, t0 + 10 * SEC);
    match pool.select(MODEL, &[], t0 + 20 * SEC) {
        Err(Unavailable::CoolingDown { retry_after, .. }) => assert_eq!(retry_after, 40 * SEC),
        other => panic!("{other:?}"),
    }
}

/// The naive headroom choice: most room, then least recently chosen, then first added.
fn naive_headroom(rooms: &[u32], last: &[u64]) -> usize {
    (0..rooms.len())
        .filter(|&i| rooms[i] > 0)
        .max_by(|&a, &b| {
            rooms[a]
                .cmp(&rooms[b])
                .then(last[b].cmp(&last[a]))
                .then(b.cmp(&a))
        })
        .unwrap_or(usize::MAX)
}

proptest! {
    /// Headroom picks what a scan of every credential would, whatever the sends, the time and
    /// the availability questions between picks.
    #[test]
    fn headroom_agrees_with_a_scan(
        caps in prop::collection::vec(1_u32..6, 1..8),
        steps in prop::collection::vec((0_u32..30, any::<bool>()), 1..80),
    ) {
        let keys: Vec<String> = (0..caps.len()).map(|i| format!("k{i}")).collect();
        let pool: Pool<String> = Pool::new(PoolConfig { strategy: Strategy::Headroom, ..PoolConfig::default() });
        for (key, cap) in keys.iter().zip(&caps) {
            pool.upsert(key, Arc::new(key.clone()), Models::All, NonZeroU32::new(*cap));
        }
        let t0 = Instant::now();
        let mut now = t0;
        let mut sends: Vec<Vec<Instant>> = vec![Vec::new(); caps.len()];
        let mut last = vec![0_u64; caps.len()];
        let mut counter = 0_u64;
        for (advance, look_first) in steps {
            now += advance * SEC;
            if look_first {
                // Asking does not choose, and must not disturb the order either.
                let _ = pool.availability(MODEL, now);
            }
            let rooms: Vec<u32> = sends.iter().zip(&caps).map(|(s, cap)| {
                let live = s.iter().filter(|&&t| now.saturating_duration_since(t) < MIN).count();
                cap.saturating_sub(u32::try_from(live).unwrap())
            }).collect();
            let expected = naive_headroom(&rooms, &last);
            match pool.select(MODEL, &[], now) {
                Ok(lease) => {
                    let i: usize = lease.key[1..].parse().unwrap();
                    prop_assert_eq!(rooms[i], rooms[expected], "rooms {:?}", rooms);
                    prop_assert_eq!(i, expected, "rooms {:?} last {:?}", rooms, last);
                    sends[i].push(now);
                    counter += 1;
                    last[i] = counter;
                }
                Err(_) => prop_assert_eq!(expected, usize::MAX, "rooms {:?}", rooms),
            }
        }
    }
}

#[test]
fn a_conversation_stays_on_its_credential_while_others_rotate() {
    let pool = pool(Strategy::RoundRobin, &["a", "b", "c"], None);
    let all = Scope::all();
    let now = Instant::now();
    let first = pick_in(&pool, Some(1), &all, now);
    for _ in 0..20 {
        assert_eq!(pick_in(&pool, Some(1), &all, now), first);
        // Requests of no conversation keep rotating around it.
        pick(&pool, now);
    }
    let other = pick_in(&pool, Some(2), &all, now);
    let spread: Vec<String> = (3..9).map(|c| pick_in(&pool, Some(c), &all, now)).collect();
    assert!(
        spread.iter().any(|k| *k != first) || other != first,
        "new conversations spread: {spread:?}"
    );
}

#[test]
fn the_pin_follows_its_conversation_when_the_credential_cannot_serve() {
    let pool = pool(Strategy::RoundRobin, &["a", "b"], None);
    let all = Scope::all();
    let now = Instant::now();
    let first = pick_in(&pool, Some(7), &all, now);
    pool.report(
        &first,
        MODEL,
        Outcome::QuotaExceeded {
            retry_after: Some(MIN),
        },
        now,
    );
    let moved = pick_in(&pool, Some(7), &all, now);
    assert_ne!(moved, first);
    // The quota cooldown is over, but the conversation stays where it moved to.
    assert_eq!(pick_in(&pool, Some(7), &all, now + 2 * MIN), moved);
    // A removed credential moves it too.
    pool.remove(&moved);
    assert_eq!(pick_in(&pool, Some(7), &all, now + 2 * MIN), first);
    assert_eq!(pool.pinned_conversations(), 1);
}

#[test]
fn a_better_tier_that_recovers_takes_the_conversation_back() {
    let pool = pool(Strategy::RoundRobin, &["main", "backup"], None);
    route(&pool, "backup", 1, 1, None);
    let all = Scope::all();
    let now = Instant::now();
    pool.report(
        "main",
        MODEL,
        Outcome::QuotaExceeded {
            retry_after: Some(MIN),
        },
        now,
    );
    assert_eq!(pick_in(&pool, Some(3), &all, now), "backup");
    assert_eq!(pick_in(&pool, Some(3), &all, now + 2 * MIN), "main");
}

#[test]
fn pins_expire_after_the_idle_time() {
    let pool: Pool<String> = Pool::new(PoolConfig {
        affinity_ttl: 10 * MIN,
        ..PoolConfig::default()
    });
    for key in ["a", "b"] {
        pool.upsert(key, Arc::new(key.into()), Models::All, None);
    }
    let all = Scope::all();
    let t0 = Instant::now();
    let first = pick_in(&pool, Some(5), &all, t0);
    // Round robin moves on to the other credential for the next new conversation...
    let later = t0 + 11 * MIN;
    assert_ne!(
        pick_in(&pool, Some(5), &all, later),
        first,
        "the pin lapsed"
    );
}

#[test]
fn a_scoped_client_only_reaches_its_groups_and_keys() {
    let pool = pool(
        Strategy::RoundRobin,
        &["team-a1", "team-a2", "team-b1", "loose"],
        None,
    );
    route(&pool, "team-a1", 1, 0, Some("a"));
    route(&pool, "team-a2", 1, 0, Some("a"));
    route(&pool, "team-b1", 1, 0, Some("b"));
    let now = Instant::now();
    let team_a = Scope {
        groups: vec!["a".into()],
        ..Scope::default()
    };
    let picks = counts((0..20).map(|_| pick_in(&pool, None, &team_a, now)));
    assert_eq!(picks.len(), 2);
    assert!(picks.keys().all(|k| k.starts_with("team-a")), "{picks:?}");

    let one_key = Scope {
        keys: vec!["loose".into()],
        ..Scope::default()
    };
    assert_eq!(pick_in(&pool, None, &one_key, now), "loose");

    let nobody = Scope {
        groups: vec!["c".into()],
        ..Scope::default()
    };
    let refused = pool.select_with(Selection {
        model: MODEL,
        tried: &[],
        conversation: None,
        scope: &nobody,
        now,
    });
    assert!(
        matches!(refused, Err(Unavailable::NotAllowed { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_refused_credential_is_probed_after_1_2_4_up_to_60_minutes_and_rejoins_when_one_works() {
    let pool = pool(Strategy::RoundRobin, &["a", "b"], None);
    let t0 = Instant::now();
    pool.report("a", MODEL, Outcome::Refused { status: 401 }, t0);
    assert!(
        (0..4).all(|_| pick(&pool, t0 + 10 * MIN) == "b"),
        "out, for every model"
    );
    let status = &pool.statuses(t0)[0];
    let refused = status.refused.as_ref().expect("refused");
    assert_eq!((refused.status, refused.next_probe_in), (401, MIN));

    // Probes fall due 1, 2, 4, ... minutes apart, up to an hour; each is handed out once.
    let mut now = t0;
    let mut gaps = Vec::new();
    let mut due_at = t0 + MIN;
    for _ in 0..9 {
        assert!(pool.due_probes(due_at - SEC).is_empty());
        let due = pool.due_probes(due_at);
        assert_eq!(due.len(), 1);
        assert!(pool.due_probes(due_at).is_empty(), "handed out once");
        pool.probed("a", false);
        gaps.push((due_at - now).as_secs() / 60);
        now = due_at;
        due_at = now
            + pool.statuses(now)[0]
                .refused
                .as_ref()
                .unwrap()
                .next_probe_in;
    }
    assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(pool.next_probe(), Some(due_at));

    pool.probed("a", true);
    assert!(pool.statuses(now)[0].refused.is_none());
    let split = counts((0..4).map(|_| pick(&pool, now)));
    assert_eq!(split["a"], 2, "back in rotation");
}

#[test]
fn an_exhausted_credential_waits_for_its_reset_without_probes() {
    let pool = pool(Strategy::RoundRobin, &["a", "b"], None);
    let t0 = Instant::now();
    let reset = t0 + 5 * 60 * MIN;
    pool.report("a", MODEL, Outcome::Exhausted { until: reset }, t0);
    assert!((0..4).all(|_| pick(&pool, t0) == "b"));
    assert!(pool.due_probes(reset).is_empty());
    assert_eq!(pool.statuses(t0)[0].exhausted_for, Some(5 * 60 * MIN));
    // Alone, it is a wait until the reset.
    pool.report("b", MODEL, Outcome::Exhausted { until: reset - MIN }, t0);
    match pool.select(MODEL, &[], t0) {
        Err(Unavailable::CoolingDown {
            retry_after,
            waiting,
            ..
        }) => {
            assert_eq!((retry_after, waiting), (5 * 60 * MIN - MIN, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(counts((0..4).map(|_| pick(&pool, reset)))["a"], 2);
}

#[test]
fn placing_in_place_matches_a_rebuild_for_every_strategy() {
    // Adding credentials one by one must pick exactly what a pool built after a removal
    // (which rebuilds everything) picks.
    for strategy in [
        Strategy::RoundRobin,
        Strategy::FillFirst,
        Strategy::Weighted,
        Strategy::Headroom,
    ] {
        let only = |m: &[&str]| Models::Only(m.iter().map(|s| (*s).to_owned()).collect());
        let grown: Pool<String> = Pool::new(PoolConfig {
            strategy,
            ..PoolConfig::default()
        });
        let rebuilt: Pool<String> = Pool::new(PoolConfig {
            strategy,
            ..PoolConfig::default()
        });
        let additions = [
            ("k0", only(&[MODEL, "x"])),
            ("k1", Models::All),
            ("k2", only(&["x"])),
            ("k3", only(&[MODEL, MODEL])),
            ("k4", Models::All),
        ];
        for (key, models) in &additions {
            grown.upsert(key, Arc::new((*key).into()), models.clone(), None);
            rebuilt.upsert(key, Arc::new((*key).into()), models.clone(), None);
        }
        rebuilt.upsert("gone", Arc::new("gone".into()), Models::All, None);
        rebuilt.remove("gone");
        let now = Instant::now();
        for model in [MODEL, "x", "other"] {
            let a: Vec<String> = (0..7)
                .map(|_| grown.select(model, &[], now).unwrap().key.to_string())
                .collect();
            let b: Vec<String> = (0..7)
                .map(|_| rebuilt.select(model, &[], now).unwrap().key.to_string())
                .collect();
            assert_eq!(a, b, "{strategy:?} {model}");
        }
    }
}

#[test]
fn a_new_strategy_takes_effect_at_the_next_pick_and_keeps_the_rate_windows() {
    let pool = pool(Strategy::RoundRobin, &["a", "b", "c"], Some(3));
    let now = Instant::now();
    let rotated: Vec<String> = (0..3).map(|_| pick(&pool, now)).collect();
    assert_eq!(rotated, ["a", "b", "c"]);
    pool.set_strategy(Strategy::FillFirst);
    assert_eq!(pool.strategy(), Strategy::FillFirst);
    // Each has two of its three slots left: fill-first uses a's, then b's, then c's.
    let filled: Vec<String> = (0..6).map(|_| pick(&pool, now)).collect();
    assert_eq!(filled, ["a", "a", "b", "b", "c", "c"]);
    assert!(
        pool.select("m", &[], now).is_err(),
        "every window kept its sends: all nine slots are used"
    );
}

#[test]
fn a_refusal_cleared_by_the_operator_puts_the_credential_back_at_once() {
    let pool = pool(Strategy::FillFirst, &["a", "b"], None);
    let now = Instant::now();
    pool.report("a", "m", Outcome::Refused { status: 403 }, now);
    assert_eq!(
        pick(&pool, now),
        "b",
        "a refused credential leaves rotation"
    );
    assert!(pool.clear_refusal("a"));
    assert_eq!(pick(&pool, now), "a", "back before any probe");
    assert!(!pool.clear_refusal("nobody"));
}
