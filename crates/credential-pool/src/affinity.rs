//! Session affinity: which credential each conversation is pinned to, so that its requests
//! keep one upstream account (and that account's prompt cache).
//!
//! Conversations are opaque 64-bit hashes (the caller hashes what identifies one, client key
//! included; nothing readable is stored). Pins expire after an idle `ttl`, and the table holds
//! at most `capacity` of them, dropping the least recently used first. It is split into
//! shards, each behind its own mutex, so concurrent requests rarely meet on a lock; every
//! operation is O(1).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashlink::LinkedHashMap;

/// Shards of the table; a power of two.
const SHARDS: usize = 16;

/// One pin: the credential's key and when the conversation last used it.
struct Pin {
    key: Arc<str>,
    used: Instant,
}

/// Pins in least-recently-used order (front: the oldest).
type Shard = LinkedHashMap<u64, Pin>;

/// The conversation → credential table.
pub struct Affinity {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    ttl: Duration,
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity")
            .field("per_shard", &self.per_shard)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Affinity {
    /// A table of at most about `capacity` pins that expire after `ttl` idle.
    #[must_use]
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            ttl,
        }
    }

    fn shard(&self, conversation: u64) -> MutexGuard<'_, Shard> {
        // The low bits pick the shard; the caller's hash spreads them.
        let index = usize::try_from(conversation % SHARDS as u64).unwrap_or(0);
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The credential `conversation` is pinned to, if the pin has not expired at `now`.
    #[must_use]
    pub fn pinned(&self, conversation: u64, now: Instant) -> Option<Arc<str>> {
        let mut shard = self.shard(conversation);
        let pin = shard.get(&conversation)?;
        if now.saturating_duration_since(pin.used) >= self.ttl {
            shard.remove(&conversation);
            return None;
        }
        Some(Arc::clone(&pin.key))
    }

    /// Pins `conversation` to `key` (or renews its pin), used at `now`.
    pub fn pin(&self, conversation: u64, key: &Arc<str>, now: Instant) {
        let mut shard = self.shard(conversation);
        match shard.get_mut(&conversation) {
            Some(pin) => {
                if pin.key != *key {
                    pin.key = Arc::clone(key);
                }
                pin.used = now;
                shard.to_back(&conversation);
            }
            None => {
                shard.insert(
                    conversation,
                    Pin {
                        key: Arc::clone(key),
                        used: now,
                    },
                );
            }
        }
        // Expired pins leave from the front; then the oldest, while the shard is too full.
        while let Some((_, oldest)) = shard.front() {
            let expired = now.saturating_duration_since(oldest.used) >= self.ttl;
            if !expired && shard.len() <= self.per_shard {
                break;
            }
            shard.pop_front();
        }
    }

    /// Pins held now (expired ones not yet dropped included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether no pin is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn key(text: &str) -> Arc<str> {
        text.into()
    }

    #[test]
    fn a_pin_lasts_while_used_and_expires_when_idle() {
        let table = Affinity::new(100, 60 * MIN);
        let t0 = Instant::now();
        table.pin(7, &key("a"), t0);
        assert_eq!(table.pinned(7, t0 + 59 * MIN).as_deref(), Some("a"));
        table.pin(7, &key("a"), t0 + 59 * MIN);
        assert_eq!(table.pinned(7, t0 + 118 * MIN).as_deref(), Some("a"));
        assert_eq!(table.pinned(7, t0 + 180 * MIN), None, "an hour idle");
        assert_eq!(table.pinned(8, t0), None);
    }

    #[test]
    fn a_pin_follows_its_conversation_to_another_credential() {
        let table = Affinity::new(100, MIN);
        let t0 = Instant::now();
        table.pin(7, &key("a"), t0);
        table.pin(7, &key("b"), t0);
        assert_eq!(table.pinned(7, t0).as_deref(), Some("b"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_least_recently_used() {
        let table = Affinity::new(SHARDS * 2, 60 * MIN);
        let t0 = Instant::now();
        // Three conversations in one shard (same low bits), two fit.
        let (a, b, c) = (1, 1 + SHARDS as u64, 1 + 2 * SHARDS as u64);
        table.pin(a, &key("x"), t0);
        table.pin(b, &key("y"), t0);
        table.pin(a, &key("x"), t0 + MIN); // a is now the most recent
        table.pin(c, &key("z"), t0 + MIN);
        assert_eq!(table.pinned(b, t0 + MIN), None, "b was the least recent");
        assert_eq!(table.pinned(a, t0 + MIN).as_deref(), Some("x"));
        assert_eq!(table.pinned(c, t0 + MIN).as_deref(), Some("z"));
        for i in 0..10_000 {
            table.pin(i, &key("k"), t0);
        }
        assert!(table.len() <= SHARDS * 2, "{}", table.len());
    }
}
