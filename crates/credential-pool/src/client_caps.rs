//! Client keys' `requests-per-minute` shared with other servers: the slot leases of each
//! client key the server was told of ([`crate::Pool::set_client_caps`]). Behind a lock of its
//! own, taken by requests of capped client keys only while sharing is on; off (the default),
//! a request reads one atomic flag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::lease::{Leases, SlotGrant, SlotNeed};

#[derive(Default)]
pub(crate) struct ClientCaps {
    on: AtomicBool,
    /// Cap and leases by client key name.
    leases: Mutex<HashMap<Arc<str>, (u32, Leases)>>,
    /// The caps the server was told of, kept while sharing is off.
    caps: Mutex<Vec<(Arc<str>, u32)>>,
}

impl ClientCaps {
    fn leases(&self) -> MutexGuard<'_, HashMap<Arc<str>, (u32, Leases)>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Turns sharing on (fresh, empty leases for every known cap) or off.
    pub(crate) fn share(&self, on: bool) {
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

    pub(crate) fn failed(&self, name: &str, retry: Instant) {
        if let Some((_, leases)) = self.leases().get_mut(name) {
            leases.failed(retry);
        }
    }
}
