//! The credentials that serve one model, in priority tiers, and the walk each strategy takes
//! through a tier: a rotating cursor (round robin), from the front (fill first), a smooth
//! weighted wheel (weighted), or most room first (headroom).
//!
//! Members are indices into the pool's entries, in insertion order within a tier. A walk
//! returns the first usable member and skips the others (a check of a few nanoseconds each,
//! without allocating), so it is O(1) while the strategy's next pick is usable.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Strategy;
use crate::entry::{Check, Entry, Rank};

/// One priority tier of a model's candidates.
#[derive(Debug, Default)]
pub(crate) struct Tier {
    pub(crate) priority: i32,
    /// Entry indices, in insertion order.
    pub(crate) members: Vec<usize>,
    /// Round-robin position in `members`.
    cursor: usize,
    /// Positions in `members` in smooth weighted order, each as often as its weight; built
    /// on first use after the members changed.
    wheel: Option<Vec<usize>>,
    /// Position in `wheel`.
    wheel_cursor: usize,
    /// Under [`Strategy::Headroom`]: the members by rank.
    pub(crate) ranks: BTreeSet<Rank>,
}

/// The candidates of one model: tiers by ascending priority.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    pub(crate) tiers: Vec<Tier>,
}

/// A usable member a walk found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    /// Its tier, by position in [`Candidates::tiers`].
    pub(crate) tier: usize,
    /// Its position in the tier's members (under headroom: unused, 0).
    pub(crate) position: usize,
    /// Its entry index.
    pub(crate) index: usize,
}

/// Why no member of a model's candidates was usable: the counts for [`crate::Unavailable`].
#[derive(Debug, Default)]
pub(crate) struct Shortfall {
    /// Outside the request's scope.
    pub(crate) outside: usize,
    /// Disabled, refused.
    pub(crate) out: usize,
    pub(crate) tried: usize,
    pub(crate) waiting: usize,
    pub(crate) earliest: Option<Duration>,
}

/// Who may serve a request: every credential, or only those of some groups or keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Credentials of these groups are in scope.
    pub groups: Vec<Arc<str>>,
    /// Credentials with these keys are in scope.
    pub keys: Vec<Arc<str>>,
    /// No limit: every credential is in scope.
    pub everything: bool,
}

impl Scope {
    /// Every credential.
    #[must_use]
    pub fn all() -> Self {
        Self {
            everything: true,
            ..Self::default()
        }
    }

    pub(crate) fn admits<C>(&self, entry: &Entry<C>) -> bool {
        self.everything
            || self.keys.contains(&entry.key)
            || entry
                .routing
                .group
                .as_ref()
                .is_some_and(|group| self.groups.contains(group))
    }
}

/// What a walk needs to know of the request.
pub(crate) struct Ask<'a> {
    pub(crate) model: &'a str,
    pub(crate) tried: &'a [Arc<str>],
    pub(crate) scope: &'a Scope,
    pub(crate) now: Instant,
}

impl Candidates {
    /// Whether no credential serves the model.
    pub(crate) fn is_empty(&self) -> bool {
        self.tiers.iter().all(|tier| tier.members.is_empty())
    }

    /// Adds entry `index` of `priority` at the end of its tier (created when new).
    pub(crate) fn add(&mut self, index: usize, priority: i32, rank: Option<Rank>) {
        let at = match self
            .tiers
            .binary_search_by_key(&priority, |tier| tier.priority)
        {
            Ok(at) => at,
            Err(at) => {
                self.tiers.insert(
                    at,
                    Tier {
                        priority,
                        ..Tier::default()
                    },
                );
                at
            }
        };
        let tier = &mut self.tiers[at];
        // A model listed twice by one entry counts once.
        if tier.members.last() == Some(&index) {
            return;
        }
        tier.members.push(index);
        tier.wheel = None;
        if let Some(rank) = rank {
            tier.ranks.insert(rank);
        }
    }

    /// The first usable member by `strategy`, tier by tier; when none is, what was found.
    /// Does not take a slot or move the cursors: [`Candidates::chosen`] does.
    pub(crate) fn find<C>(
        &mut self,
        entries: &mut [Entry<C>],
        strategy: Strategy,
        ask: &Ask<'_>,
        shortfall: &mut Shortfall,
    ) -> Option<Found> {
        for (t, tier) in self.tiers.iter_mut().enumerate() {
            if let Some((position, index)) = tier.find(entries, strategy, ask, shortfall) {
                return Some(Found {
                    tier: t,
                    position,
                    index,
                });
            }
        }
        None
    }

    /// Whether a tier before `priority` has a usable member.
    pub(crate) fn usable_before<C>(
        &mut self,
        priority: i32,
        entries: &mut [Entry<C>],
        strategy: Strategy,
        ask: &Ask<'_>,
    ) -> bool {
        let mut ignored = Shortfall::default();
        self.tiers
            .iter_mut()
            .take_while(|tier| tier.priority < priority)
            .any(|tier| tier.find(entries, strategy, ask, &mut ignored).is_some())
    }

    /// Moves the cursors of the tier of `found`, which was just chosen, past it.
    pub(crate) fn chosen(&mut self, found: Found, strategy: Strategy) {
        let Some(tier) = self.tiers.get_mut(found.tier) else {
            return;
        };
        match strategy {
            Strategy::RoundRobin => {
                tier.cursor = (found.position + 1) % tier.members.len().max(1);
            }
            Strategy::Weighted => {
                if let Some(wheel) = &tier.wheel
                    && !wheel.is_empty()
                {
                    tier.wheel_cursor = (tier.wheel_cursor + 1) % wheel.len();
                }
            }
            Strategy::FillFirst | Strategy::Headroom => {}
        }
    }

    /// Drops the weighted wheels after a weight changed; the next weighted pick builds them
    /// again.
    pub(crate) fn reweigh(&mut self) {
        for tier in &mut self.tiers {
            tier.wheel = None;
        }
    }

    /// Replaces entry `index`'s rank `old` by `new` in every tier that holds it.
    pub(crate) fn rerank(&mut self, old: Rank, new: Rank) {
        for tier in &mut self.tiers {
            if tier.ranks.remove(&old) {
                tier.ranks.insert(new);
            }
        }
    }
}

impl Tier {
    fn find<C>(
        &mut self,
        entries: &mut [Entry<C>],
        strategy: Strategy,
        ask: &Ask<'_>,
        shortfall: &mut Shortfall,
    ) -> Option<(usize, usize)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = match strategy {
            Strategy::RoundRobin => self.cursor % n,
            Strategy::FillFirst | Strategy::Headroom => 0,
            Strategy::Weighted => {
                let wheel = self
                    .wheel
                    .get_or_insert_with(|| smooth_wheel(&self.members, entries));
                wheel
                    .get(self.wheel_cursor % wheel.len().max(1))
                    .copied()
                    .unwrap_or(0)
            }
        };
        match strategy {
            // From the strategy's pick on, in member order: each member is checked once.
            Strategy::RoundRobin | Strategy::FillFirst | Strategy::Weighted => (0..n)
                .map(|offset| {
                    let position = (start + offset) % n;
                    (position, self.members[position])
                })
                .find(|&(_, index)| usable(&mut entries[index], ask, shortfall)),
            Strategy::Headroom => self
                .ranks
                .iter()
                .map(|&(_, _, index)| (0, index))
                .find(|&(_, index)| usable(&mut entries[index], ask, shortfall)),
        }
    }
}

/// Checks one entry for the request, counting why it is not usable.
fn usable<C>(entry: &mut Entry<C>, ask: &Ask<'_>, shortfall: &mut Shortfall) -> bool {
    if !ask.scope.admits(entry) {
        shortfall.outside += 1;
        return false;
    }
    match entry.check(ask.model, ask.tried, ask.now) {
        Check::Usable => true,
        Check::Out => {
            shortfall.out += 1;
            false
        }
        Check::Tried => {
            shortfall.tried += 1;
            false
        }
        Check::Wait(wait) => {
            shortfall.waiting += 1;
            shortfall.earliest = Some(shortfall.earliest.map_or(wait, |e| e.min(wait)));
            false
        }
    }
}

/// The positions of `members` in smooth weighted round-robin order (nginx's: each round,
/// every member gains its weight, and the one with the most, less the total, goes next), one
/// full cycle: each position appears as often as its member's weight, spread evenly.
fn smooth_wheel<C>(members: &[usize], entries: &[Entry<C>]) -> Vec<usize> {
    let weights: Vec<i64> = members
        .iter()
        .map(|&index| i64::from(entries[index].routing.weight.get()))
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0_i64; members.len()];
    let mut wheel = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (pos, weight) in weights.iter().enumerate() {
            current[pos] += weight;
            if current[pos] > current[best] {
                best = pos;
            }
        }
        current[best] -= total;
        wheel.push(best);
    }
    wheel
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::config::Models;

    fn weighted(weights: &[u32]) -> Vec<Entry<()>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let mut entry = Entry::new(format!("k{i}").into(), Arc::new(()), Models::All, None);
                entry.routing.weight = NonZeroU32::new(w).unwrap();
                entry
            })
            .collect()
    }

    #[test]
    fn the_wheel_gives_each_its_weight_without_bursts() {
        let entries = weighted(&[5, 1, 1]);
        let wheel = smooth_wheel(&[0, 1, 2], &entries);
        assert_eq!(wheel, [0, 0, 1, 0, 2, 0, 0]);
        let entries = weighted(&[3, 1]);
        assert_eq!(smooth_wheel(&[0, 1], &entries), [0, 0, 1, 0]);
    }
}
