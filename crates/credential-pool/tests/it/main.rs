//! credential-pool's behaviour through its public API: rotation, cooldowns, rate caps and
//! concurrency (`pool`), routing beyond rotation — weights, tiers, headroom, affinity,
//! scopes, refusals and exhaustion (`routing`), and the limits of a credential's day and what
//! the upstream said (`day`). Time is passed explicitly; nothing sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod day;
mod pool;
mod routing;

/// A fixed wall clock: 2026-12-05T10:00:00Z.
fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_464_800)
}
