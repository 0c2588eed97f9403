//! What one pick costs: [`Pool::select_with`] at 10, 100 and 1,000 credentials for each
//! strategy, with affinity, with priority tiers, with a client scope and with part of the pool
//! out of rotation, plus what loading and re-routing a pool costs. Prints Markdown tables for
//! docs/benchmarks.md.
//!
//! `cargo run --release -p credential-pool --example select_cost [-- --quick]`;
//! `cargo xtask bench` and `cargo xtask bench --pool` run it. Time is virtual (each pick is
//! a few ms later than the one before), so rate windows fill and empty as under real traffic
//! while the measurement itself only reads the wall clock around batches of picks.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credential_pool::{Models, Outcome, Pool, PoolConfig, Routing, Scope, Selection, Strategy};

const MODEL: &str = "qwen3-coder-plus";
const SIZES: [usize; 3] = [10, 100, 1000];
/// Conversations the affinity rows cycle through.
const CONVERSATIONS: u64 = 10_000;
/// Rate cap of the capped headroom row, per credential and minute.
const CAP: u32 = 100;
/// Measured runs per cell; the median is reported.
const RUNS: usize = 3;

/// One row of the table: how the pool is set up and how a pick is asked.
struct Case {
    name: &'static str,
    strategy: Strategy,
    /// Rate cap of every credential.
    cap: Option<u32>,
    /// Routing of credential `i` of `n`, when not the default.
    routing: fn(usize, usize) -> Option<Routing>,
    /// Takes credentials out of rotation before the picks.
    prepare: fn(&Pool<()>, usize, Instant),
    /// Ask with a conversation (cycling through [`CONVERSATIONS`]).
    affinity: bool,
    /// Ask for one group only.
    scoped: bool,
    /// Virtual time between two picks, for `n` credentials.
    step: fn(usize) -> Duration,
}

fn no_routing(_: usize, _: usize) -> Option<Routing> {
    None
}

fn nothing(_: &Pool<()>, _: usize, _: Instant) {}

fn one_ms(_: usize) -> Duration {
    Duration::from_millis(1)
}

fn key(i: usize) -> String {
    format!("cred-{i:04}")
}

fn weights(i: usize, _: usize) -> Option<Routing> {
    Some(Routing {
        weight: NonZeroU32::new(u32::try_from(i % 4 + 1).unwrap_or(1)).unwrap_or(NonZeroU32::MIN),
        ..Routing::default()
    })
}

fn two_tiers(i: usize, n: usize) -> Option<Routing> {
    Some(Routing {
        priority: i32::from(i >= n / 2),
        ..Routing::default()
    })
}

/// Ten groups, members spread evenly: `g0` is credentials 0, 10, 20, ...
fn ten_groups(i: usize, _: usize) -> Option<Routing> {
    Some(Routing {
        group: Some(format!("g{}", i % 10).into()),
        ..Routing::default()
    })
}

/// The first tier (the first half) disabled: every pick falls through to the second.
fn first_tier_disabled(pool: &Pool<()>, n: usize, _: Instant) {
    for i in 0..n / 2 {
        pool.set_disabled(&key(i), Some("bench".into()));
    }
}

/// The first half cooling for the model, for a day.
fn first_half_cooling(pool: &Pool<()>, n: usize, now: Instant) {
    for i in 0..n / 2 {
        cool(pool, i, now);
    }
}

/// Every other credential cooling for the model, for a day.
fn every_other_cooling(pool: &Pool<()>, n: usize, now: Instant) {
    for i in (0..n).step_by(2) {
        cool(pool, i, now);
    }
}

fn cool(pool: &Pool<()>, i: usize, now: Instant) {
    let day = Duration::from_secs(24 * 60 * 60);
    pool.report(
        &key(i),
        MODEL,
        Outcome::QuotaExceeded {
            retry_after: Some(day),
        },
        now,
    );
}

/// Picks at half the pool's capacity: `n` credentials of [`CAP`] a minute each.
fn half_capacity(n: usize) -> Duration {
    let per_minute = u32::try_from(n).unwrap_or(u32::MAX).saturating_mul(CAP) / 2;
    Duration::from_secs(60) / per_minute.max(1)
}

fn cases() -> Vec<Case> {
    let base = Case {
        name: "",
        strategy: Strategy::RoundRobin,
        cap: None,
        routing: no_routing,
        prepare: nothing,
        affinity: false,
        scoped: false,
        step: one_ms,
    };
    vec![
        Case {
            name: "round-robin",
            ..base
        },
        Case {
            name: "fill-first",
            strategy: Strategy::FillFirst,
            ..base
        },
        Case {
            name: "weighted (weights 1-4)",
            strategy: Strategy::Weighted,
            routing: weights,
            ..base
        },
        Case {
            name: "headroom, no caps",
            strategy: Strategy::Headroom,
            ..base
        },
        Case {
            name: "headroom, 100/min caps, half load",
            strategy: Strategy::Headroom,
            cap: Some(CAP),
            step: half_capacity,
            ..base
        },
        Case {
            name: "priority: 2 tiers, round-robin, tier 0 serves",
            routing: two_tiers,
            ..base
        },
        Case {
            name: "priority: 2 tiers, round-robin, tier 0 disabled",
            routing: two_tiers,
            prepare: first_tier_disabled,
            ..base
        },
        Case {
            name: "affinity: round-robin, 10,000 pinned conversations",
            affinity: true,
            ..base
        },
        Case {
            name: "affinity: headroom, 10,000 pinned conversations",
            strategy: Strategy::Headroom,
            affinity: true,
            ..base
        },
        Case {
            name: "round-robin, every other cooling",
            prepare: every_other_cooling,
            ..base
        },
        Case {
            name: "fill-first, first half cooling",
            strategy: Strategy::FillFirst,
            prepare: first_half_cooling,
            ..base
        },
        Case {
            name: "round-robin, client key scoped to 1 of 10 groups",
            routing: ten_groups,
            scoped: true,
            ..base
        },
    ]
}

fn build(case: &Case, n: usize, now: Instant) -> Pool<()> {
    let pool = Pool::new(PoolConfig {
        strategy: case.strategy,
        ..PoolConfig::default()
    });
    let models = Models::Only(vec![MODEL.to_owned()]);
    for i in 0..n {
        pool.upsert(
            &key(i),
            Arc::new(()),
            models.clone(),
            case.cap.and_then(NonZeroU32::new),
        );
        if let Some(routing) = (case.routing)(i, n) {
            pool.set_routing(&key(i), routing);
        }
    }
    (case.prepare)(&pool, n, now);
    pool
}

/// Nanoseconds per pick: picks in batches until `budget` of wall time has passed, on a
/// fresh pool, after a warm-up of one pass over the credentials and conversations.
fn measure(case: &Case, n: usize, budget: Duration) -> f64 {
    let start = Instant::now();
    let pool = build(case, n, start);
    let scope = if case.scoped {
        Scope {
            groups: vec!["g0".into()],
            ..Scope::default()
        }
    } else {
        Scope::all()
    };
    let step = (case.step)(n);
    let mut now = start;
    let mut pick = |i: u64| {
        now += step;
        let lease = pool.select_with(Selection {
            model: MODEL,
            tried: &[],
            conversation: case.affinity.then_some(i % CONVERSATIONS),
            scope: &scope,
            now,
        });
        black_box(lease.map(|lease| lease.key).ok());
    };
    let warm = CONVERSATIONS.max(n as u64 * 4);
    for i in 0..warm {
        pick(i);
    }
    let mut picks = 0_u64;
    let clock = Instant::now();
    while clock.elapsed() < budget {
        for _ in 0..1000 {
            pick(warm + picks);
            picks += 1;
        }
    }
    clock.elapsed().as_nanos() as f64 / picks as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Wall time of `work`, the median of [`RUNS`].
fn time_median(mut work: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let clock = Instant::now();
            work();
            clock.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn fmt_duration(duration: Duration) -> String {
    let us = duration.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Load and change costs: one-off work, not per pick.
fn one_off_rows() -> Vec<(&'static str, [Duration; 3])> {
    let load = |n: usize, routed: bool| {
        let pool: Pool<()> = Pool::new(PoolConfig {
            strategy: Strategy::Weighted,
            ..PoolConfig::default()
        });
        for i in 0..n {
            pool.upsert(
                &key(i),
                Arc::new(()),
                Models::Only(vec![MODEL.to_owned()]),
                None,
            );
            if routed {
                pool.set_routing(&key(i), weights(i, n).unwrap_or_default());
            }
        }
        pool
    };
    let mut upsert = [Duration::ZERO; 3];
    let mut routed = [Duration::ZERO; 3];
    let mut first_weighted = [Duration::ZERO; 3];
    for (slot, &n) in SIZES.iter().enumerate() {
        upsert[slot] = time_median(|| drop(black_box(load(n, false))));
        routed[slot] = time_median(|| drop(black_box(load(n, true))));
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let pool = load(n, true);
            let clock = Instant::now();
            black_box(pool.select(MODEL, &[], Instant::now()).ok());
            times.push(clock.elapsed());
        }
        times.sort();
        first_weighted[slot] = times[RUNS / 2];
    }
    vec![
        ("load n credentials (`upsert` each)", upsert),
        (
            "load n credentials with a weight each (`upsert` + `set_routing`)",
            routed,
        ),
        (
            "first weighted pick after a change (builds the wheel)",
            first_weighted,
        ),
    ]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let budget = Duration::from_millis(if quick { 20 } else { 200 });
    println!("### Credential selection: one pick\n");
    println!(
        "`Pool::select_with` for model `{MODEL}`, median of {RUNS} runs of {} ms each, one thread \
         (no lock contention):\n",
        budget.as_millis()
    );
    println!("| scenario | 10 credentials | 100 | 1,000 | 1,000 / 10 |");
    println!("|---|---:|---:|---:|---:|");
    for case in cases() {
        let cells: Vec<f64> = SIZES
            .iter()
            .map(|&n| median((0..RUNS).map(|_| measure(&case, n, budget)).collect()))
            .collect();
        println!(
            "| {} | {} | {} | {} | {:.1}× |",
            case.name,
            fmt_ns(cells[0]),
            fmt_ns(cells[1]),
            fmt_ns(cells[2]),
            cells[2] / cells[0]
        );
    }
    println!("\n### Credential selection: one-off work\n");
    println!("| work | 10 credentials | 100 | 1,000 |");
    println!("|---|---:|---:|---:|");
    for (name, cells) in one_off_rows() {
        println!(
            "| {name} | {} | {} | {} |",
            fmt_duration(cells[0]),
            fmt_duration(cells[1]),
            fmt_duration(cells[2])
        );
    }
}
