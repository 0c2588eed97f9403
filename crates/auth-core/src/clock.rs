//! Time and chance, injected: "now" for deadlines, the wall clock for token expiries, sleeping,
//! and a random fraction for jitter. The device flow and the server's refresh schedule take
//! one, so tests run them in virtual time and the binary can speed the login up.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

/// A future that sleeps, owning everything it needs.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time (and of jitter) for [`crate::OAuthClient::poll_for_token`] and for
/// schedules built on this crate.
///
/// Contract: after `sleep(d)` completes, `now()` has advanced by at least `d`. Dropping a
/// `sleep` future early must be harmless.
pub trait Clock: Send + Sync {
    /// The current instant, for deadlines and waits.
    fn now(&self) -> Instant;
    /// The current wall-clock time, for expiry times that are calendar times (a token's
    /// `expired`). Real time unless a test says otherwise.
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
    /// A random number in `[0, 1)`, for jitter.
    fn fraction(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// The factor given to [`TokioClock::scaled`] is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the time scale factor {factor} is not usable. Give a number between 0.000001 and 1000000 \
     (1 means real time)."
)]
pub struct InvalidClockScale {
    /// The rejected factor.
    pub factor: f64,
}

/// Real time from Tokio, optionally scaled.
///
/// It reads Tokio's clock, so it follows Tokio's paused time in tests too.
/// With scale `f`, `sleep(d)` lasts `d * f` of real time and `now()` advances `1 / f` times as
/// fast as real time, so waits and deadlines stay consistent with each other.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
    scale: f64,
}

impl TokioClock {
    const MIN_SCALE: f64 = 1e-6;
    const MAX_SCALE: f64 = 1e6;

    /// Real time.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            scale: 1.0,
        }
    }

    /// Real time multiplied by `factor` (a test knob: `0.01` makes a 5 s wait last 50 ms).
    pub fn scaled(factor: f64) -> Result<Self, InvalidClockScale> {
        if (Self::MIN_SCALE..=Self::MAX_SCALE).contains(&factor) {
            Ok(Self {
                origin: tokio::time::Instant::now(),
                scale: factor,
            })
        } else {
            Err(InvalidClockScale { factor })
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        let elapsed = self.origin.elapsed().as_secs_f64() / self.scale;
        let virtual_elapsed = Duration::try_from_secs_f64(elapsed).unwrap_or(Duration::MAX);
        self.origin
            .checked_add(virtual_elapsed)
            .unwrap_or_else(tokio::time::Instant::now)
            .into_std()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let real = Duration::try_from_secs_f64(duration.as_secs_f64() * self.scale)
            .unwrap_or(Duration::MAX);
        Box::pin(tokio::time::sleep(real))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_must_be_in_range() {
        assert!(TokioClock::scaled(0.01).is_ok());
        for factor in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(TokioClock::scaled(factor).is_err(), "{factor}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scaled_sleep_advances_virtual_now_by_the_requested_duration() {
        let clock = TokioClock::scaled(0.5).expect("valid scale");
        let before = clock.now();
        clock.sleep(Duration::from_secs(10)).await;
        let advanced = clock.now().duration_since(before);
        assert!(advanced >= Duration::from_secs(10), "{advanced:?}");
    }
}
