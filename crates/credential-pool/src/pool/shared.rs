//! The pool's side of limits shared with other servers: slot leases for rate caps, and the
//! states (cooldowns, refusals, exhaustion) this server heard of that the others must hear of
//! too, and those they heard of. Nothing here talks to the others: a caller moves slots and
//! states between the pool and wherever they are shared, off the request path.
//!
//! Sharing is off until [`Pool::share_limits`] turns it on; off, the pool behaves (and costs)
//! exactly as without this module: no leases, nothing noted.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{Inner, Pool};
use crate::day::{Counts, DailyLimits, Day};
use crate::entry::{Backoff, Entry, Exhaustion, Refusal};
use crate::lease::{Leases, SlotGrant, SlotNeed};

/// The most state changes kept for the caller to take; older ones are dropped past it.
const OUTBOX_LIMIT: usize = 10_000;

/// A state of one credential, as servers tell each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedState {
    /// It cools down for `model` for `remaining`, after `failures` quota failures in a row.
    Cooling {
        /// The model.
        model: String,
        /// Time left.
        remaining: Duration,
        /// Consecutive quota failures.
        failures: u32,
    },
    /// Its cooldown for `model` ended early (a request for it succeeded).
    CoolingEnded {
        /// The model.
        model: String,
    },
    /// The upstream refused it with HTTP `status`: out of rotation until a probe works.
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// It works again (a probe or a request succeeded, or the operator put it back).
    RefusalEnded,
    /// Its quota is used up for `remaining`.
    Exhausted {
        /// Time until the quota resets.
        remaining: Duration,
    },
    /// Its quota is back early (a request succeeded).
    ExhaustionEnded,
}

/// A state change of the credential under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The credential's key.
    pub key: Arc<str>,
    /// Its new state.
    pub state: SharedState,
}

/// Sharing's bookkeeping in the pool.
#[derive(Default)]
pub(super) struct Sharing {
    /// Changes this server made, for [`Pool::take_state_changes`].
    outbox: Vec<(Arc<str>, Noted)>,
}

/// A change as noted: instants, turned into durations when taken.
#[derive(Debug, Clone)]
enum Noted {
    Cooling {
        model: String,
        until: Instant,
        failures: u32,
    },
    CoolingEnded {
        model: String,
    },
    Refused {
        status: u16,
    },
    RefusalEnded,
    Exhausted {
        until: Instant,
    },
    ExhaustionEnded,
}

/// What a report may change about one (credential, model) pair, seen before and after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    cooling: Option<(Instant, u32)>,
    refused: Option<u16>,
    exhausted: Option<Instant>,
}

fn seen<C>(entry: &Entry<C>, model: &str) -> Seen {
    Seen {
        cooling: entry
            .backoff
            .get(model)
            .map(|backoff| (backoff.until, backoff.failures)),
        refused: entry.refusal.map(|refusal| refusal.status),
        exhausted: entry.exhaustion.map(|exhaustion| exhaustion.until),
    }
}

impl<C> Inner<C> {
    /// Gives entry `index` leases when rates are shared and it has a cap, and none otherwise.
    pub(super) fn fit_leases(&mut self, index: usize) {
        let shared = self.sharing.is_some();
        let entry = &mut self.entries[index];
        match (shared && entry.rate.is_some(), entry.leases.is_some()) {
            (true, false) => entry.leases = Some(Leases::default()),
            (false, true) => entry.leases = None,
            _ => {}
        }
    }

    /// What a report about entry `index` and `model` may change, when sharing is on.
    pub(super) fn before_report(&self, index: usize, model: &str) -> Option<Seen> {
        self.sharing
            .as_ref()
            .map(|_| seen(&self.entries[index], model))
    }

    /// Notes what a report changed since `before`, for the other servers.
    pub(super) fn after_report(&mut self, index: usize, model: &str, before: Option<Seen>) {
        let Some(before) = before else {
            return;
        };
        let entry = &self.entries[index];
        let after = seen(entry, model);
        if after == before {
            return;
        }
        let mut noted = Vec::new();
        match (before.cooling, after.cooling) {
            (_, Some((until, failures))) if after.cooling != before.cooling => {
                noted.push(Noted::Cooling {
                    model: model.to_owned(),
                    until,
                    failures,
                });
            }
            (Some(_), None) => noted.push(Noted::CoolingEnded {
                model: model.to_owned(),
            }),
            _ => {}
        }
        match (before.refused, after.refused) {
            (None, Some(status)) => noted.push(Noted::Refused { status }),
            (Some(_), None) => noted.push(Noted::RefusalEnded),
            _ => {}
        }
        match (before.exhausted, after.exhausted) {
            (_, Some(until)) if after.exhausted != before.exhausted => {
                noted.push(Noted::Exhausted { until });
            }
            (Some(_), None) => noted.push(Noted::ExhaustionEnded),
            _ => {}
        }
        let key = Arc::clone(&entry.key);
        for change in noted {
            self.note(Arc::clone(&key), change);
        }
    }

    fn note(&mut self, key: Arc<str>, change: Noted) {
        if let Some(sharing) = self.sharing.as_mut() {
            if sharing.outbox.len() >= OUTBOX_LIMIT {
                sharing.outbox.remove(0);
            }
            sharing.outbox.push((key, change));
        }
    }

    /// Notes that entry `index`'s refusal ended (a probe worked, the operator put it back).
    pub(super) fn refusal_ended(&mut self, index: usize) {
        if self.sharing.is_some() {
            let key = Arc::clone(&self.entries[index].key);
            self.note(key, Noted::RefusalEnded);
        }
    }
}

impl<C> Pool<C> {
    /// Turns sharing on or off. On, every capped credential sends only with slots of a lease
    /// ([`Pool::grant_slots`]) besides room in its own window, and state changes are noted
    /// for [`Pool::take_state_changes`]. Off (the default, and the fallback while the others
    /// cannot be reached), each server keeps its own windows and states only.
    pub fn share_limits(&self, on: bool) {
        let mut inner = self.lock();
        if inner.sharing.is_some() == on {
            return;
        }
        inner.sharing = on.then(Sharing::default);
        for index in 0..inner.entries.len() {
            inner.fit_leases(index);
        }
        self.client_caps.share(on);
    }

    /// The client keys with a `requests-per-minute` (name, cap) and those with a
    /// `tokens-per-day`, whose limits are shared while [`Pool::share_limits`] is on; replaces
    /// the previous lists (a config reload).
    pub fn set_client_caps(&self, caps: Vec<(Arc<str>, u32)>, daily: &[Arc<str>]) {
        self.client_caps.set(caps);
        self.client_caps.set_days(daily);
    }

    /// Counts `tokens` of an answer to client key `name` toward its day shared with the other
    /// servers (a no-op unless sharing is on and the key has a `tokens-per-day`).
    pub fn spend_client_tokens(&self, name: &str, tokens: u64, wall: SystemTime) {
        if tokens > 0 && self.client_caps.is_on() {
            let reset = self.lock().reset;
            self.client_caps.spend(name, tokens, reset, wall);
        }
    }

    /// The tokens other servers counted in client key `name`'s day `wall` is in (0 unless
    /// sharing is on).
    #[must_use]
    pub fn client_tokens_elsewhere(&self, name: &str, wall: SystemTime) -> u64 {
        self.client_caps.others(name, wall)
    }

    /// Like [`Pool::day_counts`], for client keys with a `tokens-per-day`: (name, when the day
    /// ends, this server's tokens).
    #[must_use]
    pub fn client_day_counts(&self, wall: SystemTime) -> Vec<(Arc<str>, SystemTime, u64)> {
        let reset = self.lock().reset;
        self.client_caps.day_counts(reset, wall)
    }

    /// Like [`Pool::set_others_day`], for client key `name`'s tokens; `true` when they changed.
    pub fn set_client_others_day(&self, name: &str, ends: SystemTime, tokens: u64) -> bool {
        self.client_caps.set_others(name, ends, tokens)
    }

    /// Takes a slot of client key `name`'s shared cap at `now` (its own minute window has room):
    /// `Ok` while sharing is off or the key has no cap.
    ///
    /// # Errors
    ///
    /// The wait until a slot may be held, when this server holds none.
    pub fn take_client_slot(&self, name: &str, now: Instant) -> Result<(), Duration> {
        self.client_caps.take(name, now)
    }

    /// This server's counts of the day of every credential with a daily limit, at `now`
    /// (`wall` by the wall clock), starting its day when it has none: (key, when the day ends
    /// by the wall clock, counts), to add up with the other servers'.
    #[must_use]
    pub fn day_counts(
        &self,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<(Arc<str>, SystemTime, Counts)> {
        let mut inner = self.lock();
        let reset = inner.reset;
        inner
            .entries
            .iter_mut()
            .filter(|entry| entry.limits != DailyLimits::default())
            .map(|entry| {
                let day = Day::current(&mut entry.day, reset, now, wall);
                (Arc::clone(&entry.key), day.ends_wall(), day.own())
            })
            .collect()
    }

    /// Sets what the other servers counted in `key`'s day that ends at `ends` (ignored when its
    /// day ends otherwise, or it has none). `true` when that put it at a limit of the day at
    /// `now`.
    pub fn set_others_day(
        &self,
        key: &str,
        ends: SystemTime,
        others: Counts,
        now: Instant,
    ) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        let entry = &mut inner.entries[i];
        let limits = entry.limits;
        let Some(day) = entry.day.as_mut().filter(|day| day.ends_wall() == ends) else {
            return false;
        };
        let before = day.limited_for(limits, now).is_some();
        day.set_others(others);
        !before && day.limited_for(limits, now).is_some()
    }

    /// Like [`Pool::slot_needs`], for client keys (the key is the client key's name).
    #[must_use]
    pub fn client_slot_needs(&self, now: Instant) -> Vec<SlotNeed> {
        self.client_caps.needs(now)
    }

    /// Like [`Pool::grant_slots`], for client key `name`.
    pub fn grant_client_slots(&self, name: &str, grant: SlotGrant, now: Instant) {
        self.client_caps.granted(name, grant, now);
    }

    /// Like [`Pool::slots_failed`], for client key `name`.
    pub fn client_slots_failed(&self, name: &str, retry: Instant) {
        self.client_caps.failed(name, retry);
    }

    /// Whether limits are shared now.
    #[must_use]
    pub fn shares_limits(&self) -> bool {
        self.lock().sharing.is_some()
    }

    /// The slot leases that need slots or hand some back at `now`; each one asking for slots
    /// waits for [`Pool::grant_slots`] or [`Pool::slots_failed`] before it asks again.
    #[must_use]
    pub fn slot_needs(&self, now: Instant) -> Vec<SlotNeed> {
        let mut inner = self.lock();
        let mut needs = Vec::new();
        for entry in &mut inner.entries {
            let (Some(leases), Some(window)) = (entry.leases.as_mut(), entry.rate.as_ref()) else {
                continue;
            };
            let cap = window.cap().get();
            if let Some((wanted, unused)) = leases.need(cap, now) {
                needs.push(SlotNeed {
                    key: Arc::clone(&entry.key),
                    cap,
                    wanted,
                    unused,
                });
            }
        }
        needs
    }

    /// Adds a parcel of slots granted to `key`'s lease (ignored when it has none any more).
    pub fn grant_slots(&self, key: &str, grant: SlotGrant, now: Instant) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        if let Some(leases) = inner.entries[i].leases.as_mut() {
            leases.granted(grant, now);
        }
    }

    /// Says that `key`'s lease could not be refilled; it asks again at `retry`.
    pub fn slots_failed(&self, key: &str, retry: Instant) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        if let Some(leases) = inner.entries[i].leases.as_mut() {
            leases.failed(retry);
        }
    }

    /// The state changes noted since the last call, oldest first, as of `now`.
    #[must_use]
    pub fn take_state_changes(&self, now: Instant) -> Vec<StateChange> {
        let mut inner = self.lock();
        let Some(sharing) = inner.sharing.as_mut() else {
            return Vec::new();
        };
        std::mem::take(&mut sharing.outbox)
            .into_iter()
            .map(|(key, noted)| StateChange {
                key,
                state: match noted {
                    Noted::Cooling {
                        model,
                        until,
                        failures,
                    } => SharedState::Cooling {
                        model,
                        remaining: until.saturating_duration_since(now),
                        failures,
                    },
                    Noted::CoolingEnded { model } => SharedState::CoolingEnded { model },
                    Noted::Refused { status } => SharedState::Refused { status },
                    Noted::RefusalEnded => SharedState::RefusalEnded,
                    Noted::Exhausted { until } => SharedState::Exhausted {
                        remaining: until.saturating_duration_since(now),
                    },
                    Noted::ExhaustionEnded => SharedState::ExhaustionEnded,
                },
            })
            .collect()
    }

    /// Applies a state another server heard of, as of `now`, without noting it again.
    /// Unknown keys are ignored. A cooldown or an exhaustion is never shortened by it.
    pub fn apply_shared_state(&self, key: &str, state: &SharedState, now: Instant) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        let probe_after = self.config.refused_base;
        let entry = &mut inner.entries[i];
        let at = |remaining: Duration| now.checked_add(remaining).unwrap_or(now);
        match state {
            SharedState::Cooling {
                model,
                remaining,
                failures,
            } => {
                let until = at(*remaining);
                let backoff = entry
                    .backoff
                    .entry(model.as_str().into())
                    .or_insert(Backoff { until, failures: 0 });
                backoff.until = backoff.until.max(until);
                backoff.failures = backoff.failures.max(*failures);
            }
            SharedState::CoolingEnded { model } => {
                entry.backoff.remove(model.as_str());
            }
            SharedState::Refused { status } => {
                if entry.refusal.is_none() {
                    entry.refusal = Some(Refusal {
                        since: now,
                        status: *status,
                        next_probe: at(probe_after),
                        probes: 0,
                    });
                }
            }
            SharedState::RefusalEnded => entry.refusal = None,
            SharedState::Exhausted { remaining } => {
                let until = at(*remaining);
                entry.exhaustion = Some(Exhaustion {
                    until: entry
                        .exhaustion
                        .map_or(until, |previous| previous.until.max(until)),
                });
            }
            SharedState::ExhaustionEnded => entry.exhaustion = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::SystemTime;

    use super::*;
    use crate::{Models, Outcome, PoolConfig};

    const MODEL: &str = "m";

    fn pool(cap: u32) -> Pool<&'static str> {
        let pool = Pool::new(PoolConfig::default());
        pool.upsert("a", Arc::new("a"), Models::All, NonZeroU32::new(cap));
        pool
    }

    #[test]
    fn shared_rates_send_only_with_leased_slots_and_local_rates_come_back_when_off() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let pool = pool(20);
        assert!(
            pool.select(MODEL, &[], now, wall).is_ok(),
            "local by default"
        );
        pool.share_limits(true);
        assert!(pool.select(MODEL, &[], now, wall).is_err(), "no slots yet");
        let needs = pool.slot_needs(now);
        assert_eq!(needs.len(), 1);
        assert_eq!((needs[0].cap, needs[0].wanted), (20, 2));
        let expires = now + Duration::from_secs(3);
        pool.grant_slots(
            "a",
            SlotGrant {
                ticket: 1,
                slots: 2,
                expires,
                frees: expires,
            },
            now,
        );
        assert!(pool.select(MODEL, &[], now, wall).is_ok());
        assert!(pool.select(MODEL, &[], now, wall).is_ok());
        assert!(pool.select(MODEL, &[], now, wall).is_err(), "lease spent");
        pool.share_limits(false);
        assert!(pool.select(MODEL, &[], now, wall).is_ok(), "local again");
    }

    #[test]
    fn state_changes_are_noted_once_and_others_apply_without_noting_them() {
        let now = Instant::now();
        let first = pool(1000);
        first.report("a", MODEL, Outcome::Refused { status: 401 }, now);
        assert!(first.take_state_changes(now).is_empty(), "not shared");
        first.share_limits(true);
        first.report(
            "a",
            MODEL,
            Outcome::QuotaExceeded {
                retry_after: Some(Duration::from_secs(30)),
            },
            now,
        );
        first.report("a", MODEL, Outcome::Success, now);
        first.report("a", MODEL, Outcome::Success, now);
        let changes: Vec<SharedState> = first
            .take_state_changes(now)
            .into_iter()
            .map(|change| change.state)
            .collect();
        assert_eq!(
            changes,
            vec![
                SharedState::Cooling {
                    model: MODEL.into(),
                    remaining: Duration::from_secs(30),
                    failures: 1,
                },
                SharedState::CoolingEnded {
                    model: MODEL.into()
                },
                SharedState::RefusalEnded,
            ]
        );

        let other = pool(1000);
        other.share_limits(true);
        let wall = SystemTime::now();
        other.apply_shared_state(
            "a",
            &SharedState::Exhausted {
                remaining: Duration::from_secs(60),
            },
            now,
        );
        assert!(other.select(MODEL, &[], now, wall).is_err());
        other.apply_shared_state("a", &SharedState::Refused { status: 401 }, now);
        other.apply_shared_state("a", &SharedState::ExhaustionEnded, now);
        assert!(
            other.select(MODEL, &[], now, wall).is_err(),
            "still refused"
        );
        other.apply_shared_state("a", &SharedState::RefusalEnded, now);
        assert!(other.take_state_changes(now).is_empty(), "not noted again");
    }
}
