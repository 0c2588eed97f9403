//! Slot leases: the part of a rate cap shared with other servers that this server holds.
//!
//! When servers share a credential's `requests-per-minute` (through a database that this crate
//! never sees), each takes slots from the shared count in small parcels, and a send needs a
//! slot of a live parcel as well as room in the server's own minute window. A parcel lives a
//! few seconds; the slots it still holds when it runs out are handed back. A credential holds
//! at most two parcels: the one being used and the next one, asked for before the first runs
//! dry, so the request path never waits for the database.
//!
//! The arithmetic that keeps the shared count right lives on the database's side: a parcel's
//! slots count against the cap from when they were granted until a minute after the parcel
//! ends (a slot may be spent at any moment of its parcel's life), so no minute ever sees more
//! sends than the cap, whichever servers spent them.

use std::time::{Duration, Instant};

/// A parcel of slots granted to this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrant {
    /// Names the parcel where the count is kept, to hand back what it did not use.
    pub ticket: i64,
    /// Slots granted (zero: none were free).
    pub slots: u32,
    /// When the parcel ends: read off this server's clock before it asked, so never later
    /// than the end the shared count recorded.
    pub expires: Instant,
    /// When asking again may find free slots (with none granted), or the shared window frees
    /// its next slot, for the wait a capped credential reports.
    pub frees: Instant,
}

/// Slots of a parcel that ended unused: to be handed back to the shared count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unused {
    /// The parcel's ticket.
    pub ticket: i64,
    /// Slots it did not use.
    pub slots: u32,
}

/// What a credential's leases need, as [`crate::Pool::slot_needs`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotNeed {
    /// The credential's key.
    pub key: std::sync::Arc<str>,
    /// Its `requests-per-minute`.
    pub cap: u32,
    /// Slots to ask for: zero when it only hands back [`SlotNeed::unused`].
    pub wanted: u32,
    /// Parcels that ended with slots left.
    pub unused: Vec<Unused>,
}

/// How many slots a server asks for at once under a cap of `cap` a minute: a tenth of it,
/// at least one and at most 20, so a parcel lasts a moment at full speed and strands little
/// when the server goes quiet.
#[must_use]
pub fn batch_size(cap: u32) -> u32 {
    (cap / 10).clamp(1, 20)
}

/// The slots one credential holds: up to two parcels, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leases {
    parcels: Vec<Parcel>,
    /// A refill is asked for and not answered yet.
    pending: bool,
    /// No slots were free: when asking again may help.
    retry: Option<Instant>,
    /// When the shared window frees a slot, as last heard.
    frees: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Parcel {
    ticket: i64,
    left: u32,
    expires: Instant,
}

/// A parcel this close to its end is replaced by a fresh one.
const RENEW_BEFORE: Duration = Duration::from_secs(1);
/// The shortest wait a capped credential reports while it waits for slots.
const MIN_WAIT: Duration = Duration::from_millis(100);

impl Leases {
    /// Slots usable at `now`.
    fn left(&self, now: Instant) -> u32 {
        self.parcels
            .iter()
            .filter(|parcel| now < parcel.expires)
            .map(|parcel| parcel.left)
            .sum()
    }

    /// `None` when a slot is held at `now`, else how long until one may be.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        if self.left(now) > 0 {
            return None;
        }
        let until = self.frees.into_iter().chain(self.retry).max();
        Some(
            until
                .map_or(MIN_WAIT, |until| until.saturating_duration_since(now))
                .max(MIN_WAIT),
        )
    }

    /// Spends a slot at `now`, from the parcel that ends first; `false` when none is held.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let parcel = self
            .parcels
            .iter_mut()
            .filter(|parcel| now < parcel.expires && parcel.left > 0)
            .min_by_key(|parcel| parcel.expires);
        match parcel {
            Some(parcel) => {
                parcel.left -= 1;
                true
            }
            None => false,
        }
    }

    /// What to ask for at `now` under `cap`: `None` when nothing. Ended parcels leave (their
    /// unused slots are in the answer), and a refill is asked for when the live slots are at
    /// half a batch or fewer, or the live parcel is about to end, and no refill is pending.
    /// Marks the refill pending until [`Leases::granted`] or [`Leases::failed`].
    pub(crate) fn need(&mut self, cap: u32, now: Instant) -> Option<(u32, Vec<Unused>)> {
        let mut unused = Vec::new();
        self.parcels.retain(|parcel| {
            let live = now < parcel.expires;
            if !live && parcel.left > 0 {
                unused.push(Unused {
                    ticket: parcel.ticket,
                    slots: parcel.left,
                });
            }
            live
        });
        let batch = batch_size(cap);
        let renewing = self.parcels.len() < 2
            && self
                .parcels
                .iter()
                .all(|parcel| parcel.expires.saturating_duration_since(now) <= RENEW_BEFORE);
        let wanted = if self.pending
            || self.retry.is_some_and(|retry| now < retry)
            || self.parcels.len() >= 2
            || (self.left(now) > batch / 2 && !renewing)
        {
            0
        } else {
            batch
        };
        if wanted > 0 {
            self.pending = true;
        }
        (wanted > 0 || !unused.is_empty()).then_some((wanted, unused))
    }

    /// Adds the parcel the shared count granted.
    pub(crate) fn granted(&mut self, grant: SlotGrant, now: Instant) {
        self.pending = false;
        self.frees = Some(grant.frees);
        if grant.slots == 0 {
            // Ask again when a slot frees, or in a second (others hand slots back).
            self.retry = Some(grant.frees.min(now + Duration::from_secs(1)));
            return;
        }
        self.retry = None;
        self.parcels.push(Parcel {
            ticket: grant.ticket,
            left: grant.slots,
            expires: grant.expires,
        });
    }

    /// The shared count could not be asked: try again at `retry`.
    pub(crate) fn failed(&mut self, retry: Instant) {
        self.pending = false;
        self.retry = Some(retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ticket: i64, slots: u32, expires: Instant) -> SlotGrant {
        SlotGrant {
            ticket,
            slots,
            expires,
            frees: expires,
        }
    }

    #[test]
    fn batches_are_a_tenth_of_the_cap_within_bounds() {
        assert_eq!(batch_size(1), 1);
        assert_eq!(batch_size(9), 1);
        assert_eq!(batch_size(60), 6);
        assert_eq!(batch_size(1000), 20);
    }

    #[test]
    fn a_fresh_lease_is_capped_and_asks_once() {
        let now = Instant::now();
        let mut leases = Leases::default();
        assert!(leases.wait(now).is_some());
        assert!(!leases.take(now));
        assert_eq!(leases.need(60, now), Some((6, Vec::new())));
        assert_eq!(leases.need(60, now), None, "one refill at a time");
    }

    #[test]
    fn slots_are_spent_then_refilled_at_half_a_batch_before_running_dry() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut leases = Leases::default();
        leases.need(60, now);
        leases.granted(grant(1, 6, later), now);
        assert_eq!(leases.wait(now), None);
        for _ in 0..3 {
            assert!(leases.take(now));
        }
        assert_eq!(leases.need(60, now), Some((6, Vec::new())));
        leases.granted(grant(2, 6, later + Duration::from_secs(1)), now);
        // Nine slots left over two parcels; the older one is spent first.
        for _ in 0..9 {
            assert!(leases.take(now));
        }
        assert!(!leases.take(now));
        assert!(leases.wait(now).is_some());
    }

    #[test]
    fn an_ended_parcel_hands_back_what_it_did_not_use_and_is_not_spent() {
        let now = Instant::now();
        let end = now + Duration::from_secs(3);
        let mut leases = Leases::default();
        leases.need(60, now);
        leases.granted(grant(7, 6, end), now);
        assert!(leases.take(now));
        assert!(!leases.take(end), "a parcel ends at its end");
        assert_eq!(
            leases.need(60, end),
            Some((
                6,
                vec![Unused {
                    ticket: 7,
                    slots: 5
                }]
            ))
        );
        assert_eq!(leases.need(60, end), None, "handed back once");
    }

    #[test]
    fn a_parcel_about_to_end_is_renewed_while_still_usable() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.need(60, now);
        leases.granted(grant(1, 6, now + Duration::from_secs(3)), now);
        assert_eq!(leases.need(60, now), None, "full and young");
        let late = now + Duration::from_millis(2500);
        assert_eq!(leases.need(60, late), Some((6, Vec::new())));
        assert!(leases.take(late), "the old parcel serves meanwhile");
    }

    #[test]
    fn none_free_waits_until_a_slot_frees_or_a_second_passes() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.need(2, now);
        let frees = now + Duration::from_secs(30);
        leases.granted(grant(0, 0, frees), now);
        assert_eq!(leases.wait(now), Some(Duration::from_secs(30)));
        assert_eq!(leases.need(2, now), None, "no asking again at once");
        let second = now + Duration::from_secs(1);
        assert_eq!(leases.need(2, second), Some((1, Vec::new())));
        leases.failed(second + Duration::from_secs(1));
        assert_eq!(leases.need(2, second), None);
        assert_eq!(
            leases.need(2, second + Duration::from_secs(1)),
            Some((1, Vec::new()))
        );
    }
}
