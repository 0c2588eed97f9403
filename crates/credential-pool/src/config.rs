//! Pool configuration and the set of models a credential serves.

use std::time::Duration;

/// How [`Pool::select`](crate::Pool::select) picks among eligible credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Spread successive requests for a model evenly across its credentials.
    #[default]
    RoundRobin,
    /// Use the first eligible credential (in insertion order) until it
    /// becomes unavailable, then the next one.
    FillFirst,
    /// Each credential gets its [weight](crate::Routing::weight)'s share, smoothly
    /// interleaved (weights 3 and 1 give a, a, b, a, ...; never all of a's turns in a row).
    Weighted,
    /// The credential with the most room left in its rate window (uncapped ones first),
    /// the one chosen longest ago among equals.
    Headroom,
}

/// Tunables of a [`Pool`](crate::Pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Selection strategy at start ([`Pool::set_strategy`](crate::Pool::set_strategy) changes
    /// it later).
    pub strategy: Strategy,
    /// Cooldown after the first consecutive quota failure without a
    /// `Retry-After`; doubled on each further consecutive failure.
    pub backoff_base: Duration,
    /// Upper bound of the exponential backoff.
    pub backoff_max: Duration,
    /// How long after the upstream refused a credential ([`Outcome::Refused`](crate::Outcome::Refused))
    /// it is first probed; the wait doubles after each failed probe.
    pub refused_base: Duration,
    /// Upper bound of the wait between probes.
    pub refused_max: Duration,
    /// Most conversations pinned to a credential at once; the least recently used go first.
    pub affinity_capacity: usize,
    /// A conversation's pin lapses after this long without a request.
    pub affinity_ttl: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30 * 60),
            refused_base: Duration::from_secs(60),
            refused_max: Duration::from_secs(60 * 60),
            affinity_capacity: 100_000,
            affinity_ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// Which model ids a credential serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Models {
    /// Any model id (API-key upstreams that accept anything).
    All,
    /// Exactly these model ids.
    Only(Vec<String>),
}

impl Models {
    /// Whether a credential with this model set serves `model`.
    #[must_use]
    pub fn serves(&self, model: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.iter().any(|m| m == model),
        }
    }
}
