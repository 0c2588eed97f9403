//! A scripted credential: its refreshes are counted and answer what the test says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use credential_pool::{Access, AccessSource, BoxFuture, RefreshFailure};

use super::access;

/// An [`AccessSource`] whose refreshes are counted and scripted.
pub struct TestAccess {
    current: Mutex<Access>,
    next: Mutex<Option<Result<Access, RefreshFailure>>>,
    refreshes: AtomicUsize,
}

impl TestAccess {
    pub fn new(base_url: &str, token: &str) -> Arc<Self> {
        Arc::new(Self {
            current: Mutex::new(access(base_url, token)),
            next: Mutex::new(Some(Err(RefreshFailure::Transient(
                "no refresh scripted".into(),
            )))),
            refreshes: AtomicUsize::new(0),
        })
    }

    /// What the next refresh gives (a new token, or a failure).
    pub fn on_refresh(&self, result: Result<&str, RefreshFailure>) {
        let base_url = self.current.lock().expect("lock").base_url.to_string();
        *self.next.lock().expect("lock") = Some(result.map(|token| access(&base_url, token)));
    }

    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

impl AccessSource for TestAccess {
    fn current(&self) -> Access {
        self.current.lock().expect("lock").clone()
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, Result<Access, RefreshFailure>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let result = self
            .next
            .lock()
            .expect("lock")
            .take()
            .unwrap_or(Err(RefreshFailure::Transient("refreshed twice".into())));
        if let Ok(fresh) = &result {
            *self.current.lock().expect("lock") = fresh.clone();
        }
        Box::pin(std::future::ready(result))
    }
}
