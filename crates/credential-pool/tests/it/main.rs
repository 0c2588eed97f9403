//! credential-pool's behaviour through its public API: rotation, cooldowns, rate caps and
//! concurrency (`pool`), and routing beyond rotation — weights, tiers, headroom, affinity,
//! scopes, refusals and exhaustion (`routing`). Time is passed explicitly; nothing sleeps.

mod pool;
mod routing;
