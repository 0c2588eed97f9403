//! When to refresh an expiring token.

use std::time::{Duration, SystemTime};

/// When to refresh a token that expires at `expires_at`: `lead` before
/// expiry, minus a jitter in `[0, jitter_max)` taken as `jitter_fraction`
/// of `jitter_max`, so that accounts loaded together do not refresh
/// together. Never before `now`: an overdue token is due at once.
///
/// `jitter_fraction` should be uniform in `[0, 1)` (e.g.
/// `rand::random::<f64>()`); values outside are clamped into that range and
/// NaN counts as 0. A zero `jitter_max` means no jitter.
#[must_use]
pub fn refresh_due(
    expires_at: SystemTime,
    lead: Duration,
    jitter_max: Duration,
    jitter_fraction: f64,
    now: SystemTime,
) -> SystemTime {
    let fraction = if jitter_fraction.is_nan() {
        0.0
    } else {
        jitter_fraction.clamp(0.0, 1.0)
    };
    let jitter = Duration::try_from_secs_f64(jitter_max.as_secs_f64() * fraction)
        .unwrap_or(jitter_max)
        // Rounding (or a fraction of 1) must not reach the exclusive bound.
        .min(jitter_max.saturating_sub(Duration::from_nanos(1)));
    expires_at
        .checked_sub(lead.saturating_add(jitter))
        .map_or(now, |due| due.max(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn no_jitter_is_exactly_lead_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = now + 60 * MIN;
        assert_eq!(
            refresh_due(expires, 5 * MIN, Duration::ZERO, 0.7, now),
            expires - 5 * MIN
        );
    }

    #[test]
    fn jitter_scales_with_fraction() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = now + 60 * MIN;
        let due = refresh_due(expires, 5 * MIN, 2 * MIN, 0.5, now);
        assert_eq!(due, expires - 6 * MIN);
        assert_eq!(
            refresh_due(expires, 5 * MIN, 2 * MIN, 0.0, now),
            expires - 5 * MIN
        );
    }

    #[test]
    fn jitter_stays_below_its_max() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = now + 60 * MIN;
        let latest_allowed = expires - 5 * MIN;
        let earliest_excluded = expires - 7 * MIN;
        for fraction in [
            0.0,
            0.25,
            0.999_999_999_999,
            1.0,
            7.0,
            -3.0,
            f64::NAN,
            f64::INFINITY,
        ] {
            let due = refresh_due(expires, 5 * MIN, 2 * MIN, fraction, now);
            assert!(due <= latest_allowed, "fraction {fraction}");
            assert!(due > earliest_excluded, "fraction {fraction}");
        }
    }

    #[test]
    fn never_before_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Expires within the lead: due now.
        assert_eq!(refresh_due(now + MIN, 5 * MIN, MIN, 0.5, now), now);
        // Already expired: due now.
        assert_eq!(refresh_due(now - MIN, 5 * MIN, MIN, 0.5, now), now);
        // Lead larger than the whole epoch offset: no underflow panic.
        assert_eq!(
            refresh_due(
                SystemTime::UNIX_EPOCH,
                Duration::MAX,
                Duration::MAX,
                0.9,
                now
            ),
            now
        );
    }
}
