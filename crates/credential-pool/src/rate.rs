//! A request-rate cap over a sliding minute: each credential's, and (through
//! [`RateWindow`], which the crate exports) each client key's in proxy-server.
//!
//! The window holds the instants of the sends of the last 60 s, oldest
//! first, at most `cap` of them. A credential is at its cap when `cap` sends
//! happened within the last 60 s; a burst up to the cap is allowed at once.
//! Memory is bounded by the sends of the last minute, never by `cap` alone.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Length of the sliding window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// Sends of the last minute of one credential.
#[derive(Debug)]
pub struct RateWindow {
    cap: NonZeroU32,
    /// Send instants, non-decreasing, `len() <= cap`.
    sends: VecDeque<Instant>,
}

impl RateWindow {
    /// A window allowing `cap` sends a minute, empty.
    #[must_use]
    pub fn new(cap: NonZeroU32) -> Self {
        Self {
            cap,
            sends: VecDeque::new(),
        }
    }

    /// Sends allowed a minute.
    #[must_use]
    pub fn cap(&self) -> NonZeroU32 {
        self.cap
    }

    /// Changes the cap, keeping the most recent sends that still fit.
    pub(crate) fn set_cap(&mut self, cap: NonZeroU32) {
        self.cap = cap;
        while self.sends.len() > cap_len(cap) {
            self.sends.pop_front();
        }
    }

    /// Drops sends that left the window at `now`.
    fn prune(&mut self, now: Instant) {
        while self
            .sends
            .front()
            .is_some_and(|&sent| now.saturating_duration_since(sent) >= WINDOW)
        {
            self.sends.pop_front();
        }
    }

    /// Records a send at `now` if the cap allows one; else the time until a slot frees.
    ///
    /// # Errors
    ///
    /// The wait, when the window is full.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match self.wait(now) {
            Some(wait) => Err(wait),
            None => {
                self.record(now);
                Ok(())
            }
        }
    }

    /// `None` when a send is allowed at `now`, else the time until the oldest
    /// send leaves the window and frees a slot.
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.prune(now);
        if self.sends.len() < cap_len(self.cap) {
            return None;
        }
        self.sends
            .front()
            .map(|&oldest| WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// What [`RateWindow::wait`] would say at `now`, without dropping old sends.
    pub(crate) fn wait_at(&self, now: Instant) -> Option<Duration> {
        let live = self
            .sends
            .iter()
            .skip_while(|&&sent| now.saturating_duration_since(sent) >= WINDOW)
            .count();
        if live < cap_len(self.cap) {
            return None;
        }
        let oldest = self
            .sends
            .iter()
            .find(|&&sent| now.saturating_duration_since(sent) < WINDOW)?;
        Some(WINDOW.saturating_sub(now.saturating_duration_since(*oldest)))
    }

    /// Records a send at `now`. Callers check [`Self::wait`] first; a send
    /// over the cap evicts the oldest one so the length bound holds.
    pub(crate) fn record(&mut self, now: Instant) {
        // Callers may pass slightly out-of-order instants from different
        // threads; keep the buffer sorted by never going back in time.
        let at = self.sends.back().map_or(now, |&last| last.max(now));
        if self.sends.len() >= cap_len(self.cap) {
            self.sends.pop_front();
        }
        self.sends.push_back(at);
    }

    /// Slots left at `now`.
    pub(crate) fn room(&mut self, now: Instant) -> u32 {
        self.prune(now);
        self.cap
            .get()
            .saturating_sub(u32::try_from(self.sends.len()).unwrap_or(u32::MAX))
    }

    /// Slots left as of the last prune (a lower bound of [`RateWindow::room`]).
    pub(crate) fn room_unpruned(&self) -> u32 {
        self.cap
            .get()
            .saturating_sub(u32::try_from(self.sends.len()).unwrap_or(u32::MAX))
    }

    /// Sends within the window ending at `now`.
    pub(crate) fn in_window(&self, now: Instant) -> u32 {
        let count = self
            .sends
            .iter()
            .rev()
            .take_while(|&&sent| now.saturating_duration_since(sent) < WINDOW)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

fn cap_len(cap: NonZeroU32) -> usize {
    usize::try_from(cap.get()).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn burst_then_wait_for_oldest() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(cap(3));
        for i in 0..3 {
            let at = t0 + Duration::from_secs(i * 10);
            assert_eq!(w.wait(at), None);
            w.record(at);
        }
        let at = t0 + Duration::from_secs(25);
        assert_eq!(w.wait(at), Some(Duration::from_secs(35)));
        assert_eq!(w.in_window(at), 3);
        // The first send leaves the window exactly 60 s after it happened.
        assert_eq!(w.wait(t0 + WINDOW), None);
        assert_eq!(w.in_window(t0 + WINDOW), 2);
    }

    #[test]
    fn lowering_the_cap_keeps_recent_sends() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(cap(5));
        for i in 0..5 {
            w.record(t0 + Duration::from_secs(i));
        }
        w.set_cap(cap(2));
        assert_eq!(w.cap(), cap(2));
        // Remaining sends are at 3 s and 4 s.
        assert_eq!(
            w.wait(t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(58))
        );
    }

    #[test]
    fn out_of_order_instants_stay_sorted() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(cap(2));
        w.record(t0 + Duration::from_secs(5));
        w.record(t0);
        assert_eq!(
            w.wait(t0 + Duration::from_secs(6)),
            Some(Duration::from_secs(59))
        );
    }
}
