//! Locks out an address after [`MAX_FAILURES`] wrong management keys: for [`LOCKOUT`], during
//! which even the right key is refused, so guessing cannot go on. The addresses remembered are
//! bounded ([`REMEMBERED`], least recently seen forgotten first), so a flood of addresses
//! cannot grow the map. Time is a parameter, for tests.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// Wrong keys an address may send within [`LOCKOUT`] before it is locked out.
pub const MAX_FAILURES: u32 = 5;
/// How long a lockout lasts, and how long a wrong key counts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most.
pub const REMEMBERED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// The first failure that still counts.
    since: Instant,
    locked_until: Option<Instant>,
}

/// Failed keys per address.
#[derive(Debug)]
pub struct Lockout {
    failures: Mutex<LruCache<IpAddr, Failures>>,
}

impl Default for Lockout {
    fn default() -> Self {
        Self::with_capacity(REMEMBERED)
    }
}

impl Lockout {
    /// A lockout that remembers at most `capacity` addresses.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            failures: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<IpAddr, Failures>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `address` stays locked out, if it is.
    pub fn locked_for(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.lock();
        let until = failures.get(&address)?.locked_until?;
        if until <= now {
            failures.remove(&address);
            return None;
        }
        Some(until - now)
    }

    /// Counts a wrong key from `address`; returns whether that locked it out.
    pub fn failed(&self, address: IpAddr, now: Instant) -> bool {
        let mut failures = self.lock();
        let entry = match failures.get(&address).copied() {
            Some(old) if now.saturating_duration_since(old.since) < LOCKOUT => Failures {
                count: old.count + 1,
                ..old
            },
            _ => Failures {
                count: 1,
                since: now,
                locked_until: None,
            },
        };
        let locked = entry.count >= MAX_FAILURES;
        failures.insert(
            address,
            Failures {
                locked_until: locked.then_some(now + LOCKOUT),
                ..entry
            },
        );
        locked
    }

    /// Forgets `address`'s wrong keys after a right one.
    pub fn succeeded(&self, address: IpAddr) {
        self.lock().remove(&address);
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn five_wrong_keys_lock_an_address_out_for_the_lockout_only() {
        let lockout = Lockout::default();
        let start = Instant::now();
        for n in 1..MAX_FAILURES {
            assert!(!lockout.failed(ip(1), start), "failure {n} does not lock");
            assert_eq!(lockout.locked_for(ip(1), start), None);
        }
        assert!(lockout.failed(ip(1), start));
        assert_eq!(lockout.locked_for(ip(1), start), Some(LOCKOUT));
        assert_eq!(lockout.locked_for(ip(2), start), None, "others are not");
        let later = start + LOCKOUT;
        assert_eq!(lockout.locked_for(ip(1), later), None, "it ends");
        assert!(!lockout.failed(ip(1), later), "and counting starts afresh");
    }

    #[test]
    fn a_right_key_or_time_forgets_wrong_ones() {
        let lockout = Lockout::default();
        let start = Instant::now();
        for _ in 1..MAX_FAILURES {
            lockout.failed(ip(1), start);
        }
        lockout.succeeded(ip(1));
        assert!(!lockout.failed(ip(1), start));
        for _ in 2..MAX_FAILURES {
            lockout.failed(ip(1), start);
        }
        assert!(
            !lockout.failed(ip(1), start + LOCKOUT),
            "old failures no longer count"
        );
    }

    #[test]
    fn the_map_stays_bounded_under_a_flood_of_addresses() {
        let lockout = Lockout::with_capacity(16);
        let now = Instant::now();
        for n in 0..=255u8 {
            lockout.failed(ip(n), now);
        }
        assert_eq!(lockout.len(), 16);
    }
}
