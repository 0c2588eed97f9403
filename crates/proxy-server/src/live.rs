//! [`Live`]: a value the running proxy reads per request and a config reload replaces whole.
//! A request takes the current value once (an `Arc`) and keeps it to its end, so requests in
//! flight finish with what they started with and new ones see the new value.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// The current value of a reloadable part of the proxy.
pub(crate) struct Live<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    pub(crate) fn new(value: T) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(value)),
        })
    }

    /// The current value. The read lock is held only to clone the `Arc`.
    pub(crate) fn load(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes `value` the current one, for the requests that start from now on.
    pub(crate) fn store(&self, value: T) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

impl<T: fmt::Debug> fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Live").field(&*self.load()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_taken_before_a_store_stays_as_it_was() {
        let live = Live::new(1);
        let before = live.load();
        live.store(2);
        assert_eq!((*before, *live.load()), (1, 2));
    }
}
