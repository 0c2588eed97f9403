//! Client keys' limits shared with other servers: the slot leases of each client key's
//! `requests-per-minute`, and the tokens of its day (its `tokens-per-day`) this server and the
//! others counted, for the keys the server was told of ([`crate::Pool::set_client_caps`]).
//! Behind locks of their own, taken by requests of limited client keys only while sharing is
//! on; off (the default), a request reads one atomic flag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::lease::{Leases, SlotGrant, SlotNeed};
use crate::quota_reset::QuotaReset;

#[derive(Default)]
pub(crate) struct ClientCaps {
    on: AtomicBool,
    /// Cap and leases by client key name.
    leases: Mutex<HashMap<Arc<str>, (u32, Leases)>>,
    /// The caps the server was told of, kept while sharing is off.
    caps: Mutex<Vec<(Arc<str>, u32)>>,
    /// Tokens of the day by client key name, for keys with a `tokens-per-day`.
    days: Mutex<HashMap<Arc<str>, ClientDay>>,
    /// The keys with a `tokens-per-day`.
    day_names: Mutex<Vec<Arc<str>>>,
}

/// A client key's tokens of the day that ends at `ends`.
#[derive(Debug, Clone, Copy)]
struct ClientDay {
    ends: SystemTime,
    own: u64,
    others: u64,
}

impl ClientDay {
    /// No day yet: the first count starts one.
    const NONE: ClientDay = ClientDay {
        ends: SystemTime::UNIX_EPOCH,
        own: 0,
        others: 0,
    };

    /// The day `wall` is in: this one while it lasts, else a new one from zero.
    fn current(&mut self, reset: QuotaReset, wall: SystemTime) -> &mut Self {
        if wall >= self.ends {
            *self = ClientDay {
                ends: reset.next_after(wall),
                own: 0,
                others: 0,
            };
        }
        self
    }
}

impl ClientCaps {
    fn leases(&self) -> MutexGuard<'_, HashMap<Arc<str>, (u32, Leases)>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether sharing is on.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Turns sharing on (fresh, empty leases for every known cap) or off.
    pub(crate) fn share(&self, on: bool) {
        {
            let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
            days.clear();
            if on {
                let names = self
                    .day_names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for name in names.iter() {
                    days.insert(Arc::clone(name), ClientDay::NONE);
                }
            }
        }
        let mut leases = self.leases();
        leases.clear();
        if on {
            let caps = self.caps.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, cap) in caps.iter() {
                leases.insert(Arc::clone(name), (*cap, Leases::default()));
            }
        }
        self.on.store(on, Ordering::Release);
    }

    /// The client keys with a cap: leases of keys that stay are kept.
    pub(crate) fn set(&self, caps: Vec<(Arc<str>, u32)>) {
        let mut leases = self.leases();
        if self.on.load(Ordering::Acquire) {
            leases.retain(|name, _| caps.iter().any(|(known, _)| known == name));
            for (name, cap) in &caps {
                leases
                    .entry(Arc::clone(name))
                    .and_modify(|(old, _)| *old = *cap)
                    .or_insert((*cap, Leases::default()));
            }
        }
        *self.caps.lock().unwrap_or_else(PoisonError::into_inner) = caps;
    }

    /// Takes a slot of client `name` at `now`: `Ok` while sharing is off or the key is not
    /// known, else the wait until a slot may be held.
    pub(crate) fn take(&self, name: &str, now: Instant) -> Result<(), Duration> {
        if !self.on.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut leases = self.leases();
        let Some((_, leases)) = leases.get_mut(name) else {
            return Ok(());
        };
        if let Some(wait) = leases.wait(now) {
            return Err(wait);
        }
        leases.take(now);
        Ok(())
    }

    pub(crate) fn needs(&self, now: Instant) -> Vec<SlotNeed> {
        if !self.on.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut needs = Vec::new();
        for (name, (cap, leases)) in self.leases().iter_mut() {
            if let Some((wanted, unused)) = leases.need(*cap, now) {
                needs.push(SlotNeed {
                    key: Arc::clone(name),
                    cap: *cap,
                    wanted,
                    unused,
                });
            }
        }
        needs
    }

    pub(crate) fn granted(&self, name: &str, grant: SlotGrant, now: Instant) {
        if let Some((_, leases)) = self.leases().get_mut(name) {
            leases.granted(grant, now);
        }
    }

    /// Keys with a `tokens-per-day` (the others' counts are forgotten when a key leaves).
    pub(crate) fn set_days(&self, names: &[Arc<str>]) {
        let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        days.retain(|name, _| names.contains(name));
        if self.on.load(Ordering::Acquire) {
            for name in names {
                days.entry(Arc::clone(name)).or_insert(ClientDay::NONE);
            }
        }
        drop(days);
        let mut known = self
            .day_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        known.clear();
        known.extend(names.iter().cloned());
    }

    /// Counts `tokens` of client `name` toward its day, while sharing.
    pub(crate) fn spend(&self, name: &str, tokens: u64, reset: QuotaReset, wall: SystemTime) {
        if !self.on.load(Ordering::Acquire) {
            return;
        }
        let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(day) = days.get_mut(name) {
            let day = day.current(reset, wall);
            day.own = day.own.saturating_add(tokens);
        }
    }

    /// The tokens the other servers counted in client `name`'s day `wall` is in.
    pub(crate) fn others(&self, name: &str, wall: SystemTime) -> u64 {
        if !self.on.load(Ordering::Acquire) {
            return 0;
        }
        let days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        days.get(name)
            .filter(|day| wall < day.ends)
            .map_or(0, |day| day.others)
    }

    /// This server's tokens of the day of every key with a `tokens-per-day`, starting its day
    /// when it has none.
    pub(crate) fn day_counts(
        &self,
        reset: QuotaReset,
        wall: SystemTime,
    ) -> Vec<(Arc<str>, SystemTime, u64)> {
        if !self.on.load(Ordering::Acquire) {
            return Vec::new();
        }
        let known = self
            .day_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .into_iter()
            .map(|name| {
                let day = days
                    .entry(Arc::clone(&name))
                    .or_insert(ClientDay::NONE)
                    .current(reset, wall);
                (name, day.ends, day.own)
            })
            .collect()
    }

    /// Sets the other servers' tokens in client `name`'s day that ends at `ends`; `true` when
    /// they changed.
    pub(crate) fn set_others(&self, name: &str, ends: SystemTime, others: u64) -> bool {
        let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        match days.get_mut(name).filter(|day| day.ends == ends) {
            Some(day) if day.others != others => {
                day.others = others;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn failed(&self, name: &str, retry: Instant) {
        if let Some((_, leases)) = self.leases().get_mut(name) {
            leases.failed(retry);
        }
    }
}
