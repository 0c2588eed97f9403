//! One credential in the pool and the states that take it out of rotation: disabled by the
//! operator or for a re-login, refused by the upstream (probed until it works again),
//! exhausted until its quota resets, at its own limit of the day, cooling down for one model,
//! or at its rate cap.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Models;
use crate::day::{DailyLimits, Day};
use crate::lease::Leases;
use crate::rate::RateWindow;
use crate::upstream_said::UpstreamSaid;

/// Where a credential stands among the others: its share, its tier and its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Its share of new requests and conversations under [`Strategy::Weighted`](crate::Strategy::Weighted)
    /// (default 1).
    pub weight: NonZeroU32,
    /// Its tier: lower first. A tier serves only when every credential of the tiers before it
    /// is cooling, capped, refused, exhausted or disabled (default 0).
    pub priority: i32,
    /// The group client keys can be limited to; `None`: no group.
    pub group: Option<Arc<str>>,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            weight: NonZeroU32::MIN,
            priority: 0,
            group: None,
        }
    }
}

/// Cooldown state of one (credential, model) pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) until: Instant,
    pub(crate) failures: u32,
}

/// The upstream refused the credential itself: out of rotation until a probe works.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    pub(crate) since: Instant,
    pub(crate) status: u16,
    /// When the next probe is due.
    pub(crate) next_probe: Instant,
    /// Probes that failed since the refusal.
    pub(crate) probes: u32,
}

/// The credential's quota for the day is used up: out of rotation until it resets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exhaustion {
    pub(crate) until: Instant,
}

pub(crate) struct Entry<C> {
    pub(crate) key: Arc<str>,
    pub(crate) credential: Arc<C>,
    pub(crate) models: Models,
    pub(crate) routing: Routing,
    pub(crate) disabled: Option<String>,
    pub(crate) rate: Option<RateWindow>,
    /// Its slots of a rate cap shared with other servers; `None`: its own window only.
    pub(crate) leases: Option<Leases>,
    /// Per model id; an entry stays after its cooldown ends so consecutive
    /// failures keep counting until a success.
    pub(crate) backoff: HashMap<Box<str>, Backoff, foldhash::fast::RandomState>,
    pub(crate) refusal: Option<Refusal>,
    pub(crate) exhaustion: Option<Exhaustion>,
    /// Its `requests-per-day` and `tokens-per-day`.
    pub(crate) limits: DailyLimits,
    /// Its requests and tokens of the day; `None` until something is counted.
    pub(crate) day: Option<Day>,
    /// What the upstream last said about its limits, and when.
    pub(crate) heard: Option<(UpstreamSaid, Instant)>,
    /// Ordering among equals under [`Strategy::Headroom`](crate::Strategy::Headroom): the
    /// value of the pool's counter when it was last chosen.
    pub(crate) last_chosen: u64,
    /// Under headroom: the rank the candidate lists hold for it.
    pub(crate) ranked: Rank,
}

/// Headroom order of an entry: most room first, then the one chosen longest ago, then its
/// index.
pub(crate) type Rank = (Reverse<u32>, u64, usize);

/// Whether an entry can serve a request right now.
pub(crate) enum Check {
    Usable,
    /// Disabled, refused or outside the request's scope: nothing a wait would change soon.
    Out,
    Tried,
    Wait(Duration),
}

impl<C> Entry<C> {
    pub(crate) fn new(
        key: Arc<str>,
        credential: Arc<C>,
        models: Models,
        rate: Option<RateWindow>,
    ) -> Self {
        Self {
            key,
            credential,
            models,
            routing: Routing::default(),
            disabled: None,
            rate,
            leases: None,
            backoff: HashMap::default(),
            refusal: None,
            exhaustion: None,
            limits: DailyLimits::default(),
            day: None,
            heard: None,
            last_chosen: 0,
            ranked: (Reverse(0), 0, 0),
        }
    }

    /// Whether it can take a request for `model` at `now`, not having been `tried` for it.
    pub(crate) fn check(&mut self, model: &str, tried: &[Arc<str>], now: Instant) -> Check {
        if self.disabled.is_some() || self.refusal.is_some() {
            return Check::Out;
        }
        let exhausted = self
            .exhaustion
            .filter(|exhaustion| exhaustion.until > now)
            .map(|exhaustion| exhaustion.until.saturating_duration_since(now));
        let cooling = self
            .backoff
            .get(model)
            .filter(|state| state.until > now)
            .map(|state| state.until.saturating_duration_since(now));
        let capped = self
            .rate
            .as_mut()
            .and_then(|window| window.wait(now))
            .max(self.leases.as_ref().and_then(|leases| leases.wait(now)));
        let day_limited = self
            .day
            .as_ref()
            .and_then(|day| day.limited_for(self.limits, now));
        if let Some(wait) = exhausted.max(cooling).max(capped).max(day_limited) {
            return Check::Wait(wait);
        }
        if tried.iter().any(|key| **key == *self.key) {
            return Check::Tried;
        }
        Check::Usable
    }
}
