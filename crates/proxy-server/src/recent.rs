//! The few values a worker thread made last (a model's shared name, an upstream's URL, a
//! credential's `Authorization` value, a client key's digest), so the request path takes them
//! again instead of making them again: few models, upstreams, credentials and client keys carry
//! nearly all requests. One per thread, so no lock is shared by requests.

use std::sync::Arc;

/// How many values are kept, newest first.
const KEPT: usize = 4;

/// Values made from keys (`str`, or the bytes of a client's key), the newest first.
#[derive(Debug)]
pub(crate) struct Recent<K: ?Sized, V> {
    made: Vec<(Arc<K>, V)>,
}

impl<K: ?Sized, V> Recent<K, V> {
    pub(crate) const fn new() -> Self {
        Self { made: Vec::new() }
    }

    /// The value made from `key` (a kept key `same` as it), moved to the front; made by `make`
    /// and kept, with the key `shared` gives, when there is none, in place of the oldest.
    pub(crate) fn get_or_make(
        &mut self,
        key: &K,
        same: impl Fn(&K, &K) -> bool,
        shared: impl FnOnce() -> Arc<K>,
        make: impl FnOnce(&K) -> V,
    ) -> (&Arc<K>, &V) {
        match self.made.iter().position(|(known, _)| same(known, key)) {
            Some(at) => self.made[..=at].rotate_right(1),
            None => {
                let value = make(key);
                self.made.truncate(KEPT - 1);
                self.made.insert(0, (shared(), value));
            }
        }
        let (key, value) = &self.made[0];
        (key, value)
    }
}

/// Text compared as text.
pub(crate) fn same_text(known: &str, key: &str) -> bool {
    known == key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_makes_each_once_while_kept() {
        let mut recent = Recent::new();
        let mut made = 0;
        let mut take = |recent: &mut Recent<str, usize>, key: &str| {
            *recent
                .get_or_make(
                    key,
                    same_text,
                    || Arc::from(key),
                    |key| {
                        made += 1;
                        key.len()
                    },
                )
                .1
        };
        for key in ["a", "bb", "a", "ccc", "dddd", "a", "eeeee", "bb"] {
            take(&mut recent, key);
        }
        // "bb" was the oldest when "eeeee" came, so it was made again.
        assert_eq!(made, 6);
        let kept: Vec<&str> = recent.made.iter().map(|(key, _)| &**key).collect();
        assert_eq!(kept, ["bb", "eeeee", "a", "dddd"]);
    }
}
