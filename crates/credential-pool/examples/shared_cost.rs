//! What sharing limits with other servers costs a request: [`Pool::select`] on a pool of capped
//! credentials with its own windows only, then with slot leases ([`Pool::share_limits`]), and
//! what the background side costs per parcel (collecting the needs and adding the grant,
//! without the database's round trip). Prints a Markdown table for docs/benchmarks.md.
//!
//! `cargo run --release -p credential-pool --example shared_cost [-- --quick]`;
//! `cargo xtask bench --pool` runs it. Time is virtual, as in the `select_cost` example.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credential_pool::{Models, Pool, PoolConfig, SlotGrant, batch_size};

const MODEL: &str = "qwen3-coder-plus";
const CREDENTIALS: usize = 10;
/// Rate cap per credential and minute: 60 makes a parcel of 6 slots.
const CAP: u32 = 60;
const RUNS: usize = 3;

fn pool(shared: bool) -> Pool<()> {
    let pool = Pool::new(PoolConfig::default());
    for i in 0..CREDENTIALS {
        pool.upsert(
            &format!("cred-{i:02}"),
            Arc::new(()),
            Models::All,
            NonZeroU32::new(CAP),
        );
    }
    pool.share_limits(shared);
    pool
}

/// Grants every lease that asks a full parcel; returns the parcels granted.
fn refill(pool: &Pool<()>, now: Instant) -> usize {
    let needs = pool.slot_needs(now);
    for (ticket, need) in (0_i64..).zip(&needs) {
        let expires = now + Duration::from_secs(3);
        pool.grant_slots(
            &need.key,
            SlotGrant {
                ticket,
                slots: need.wanted,
                expires,
                frees: expires,
            },
            now,
        );
    }
    needs.len()
}

/// Nanoseconds per pick over `picks` picks (refills between picks not counted), and the
/// nanoseconds per parcel of the refills.
fn measure(shared: bool, picks: usize) -> (f64, f64) {
    let pool = pool(shared);
    let start = Instant::now();
    // A minute's worth of sends at the cap spreads the picks so windows never fill.
    let step = Duration::from_secs(60) / (CAP * CREDENTIALS as u32);
    let (mut picking, mut refilling, mut parcels) = (Duration::ZERO, Duration::ZERO, 0);
    let wall = SystemTime::now();
    let mut now = start;
    for _ in 0..picks {
        now += step;
        if shared {
            let began = Instant::now();
            parcels += refill(&pool, now);
            refilling += began.elapsed();
        }
        let began = Instant::now();
        let lease = pool.select(MODEL, &[], now, wall);
        picking += began.elapsed();
        assert!(black_box(lease).is_ok(), "a slot is always held");
    }
    let per_pick = picking.as_nanos() as f64 / picks as f64;
    let per_parcel = if parcels == 0 {
        0.0
    } else {
        refilling.as_nanos() as f64 / parcels as f64
    };
    (per_pick, per_parcel)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let picks = if quick { 20_000 } else { 200_000 };
    let run = |shared| {
        let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| measure(shared, picks)).collect();
        (
            median(runs.iter().map(|run| run.0).collect()),
            median(runs.iter().map(|run| run.1).collect()),
        )
    };
    let (local, _) = run(false);
    let (shared, per_parcel) = run(true);
    println!(
        "| {CREDENTIALS} credentials capped at {CAP}/min (parcels of {}) | ns per pick |",
        batch_size(CAP)
    );
    println!("|---|---:|");
    println!("| own windows only (auth dir, or sharing off) | {local:.0} |");
    println!("| with slot leases (PostgreSQL store) | {shared:.0} |");
    println!("| extra per request | {:.0} |", (shared - local).max(0.0));
    println!(
        "| background, per parcel (needs + grant, without the database round trip) | {per_parcel:.0} |"
    );
}
