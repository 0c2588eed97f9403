//! A credential's day: its requests and tokens since the last quota reset, against its own
//! optional `requests-per-day` and `tokens-per-day`. At its limit it leaves rotation until the
//! day ends, then starts again from zero.
//!
//! The day is judged by the wall clock (the reset is a time of day) when something is
//! counted, and by the monotonic clock in between: when a day starts, its end is read off the
//! wall clock and kept as an [`Instant`] as well, so selection and status need no wall clock.

use std::num::NonZeroU64;
use std::time::{Duration, Instant, SystemTime};

use crate::quota_reset::QuotaReset;

/// Length of a day between two resets.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A credential's limits per day; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyLimits {
    /// Requests sent with it per day (`requests-per-day`).
    pub requests: Option<NonZeroU64>,
    /// Prompt and completion tokens of its answers per day (`tokens-per-day`).
    pub tokens: Option<NonZeroU64>,
}

/// The counts of the day that ends at `ends`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day {
    /// When the day ends, by the wall clock.
    ends_wall: SystemTime,
    /// When the day ends, by the monotonic clock (read when the day started).
    ends: Instant,
    requests: u64,
    tokens: u64,
    /// What other servers sharing the limits counted this day (see [`crate::Pool::day_counts`]).
    others: Counts,
}

/// Requests and tokens of a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent.
    pub requests: u64,
    /// Tokens of their answers.
    pub tokens: u64,
}

/// One credential's day, as [`crate::CredentialStatus`] shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayStatus {
    /// Requests sent with it today.
    pub requests: u64,
    /// Tokens of its answers today (counted when the usage ledger is on or it has a
    /// `tokens-per-day`).
    pub tokens: u64,
    /// Its limits.
    pub limits: DailyLimits,
    /// Time until the day ends; `None` before its first request (the day is read off the wall
    /// clock when something is counted).
    pub resets_in: Option<Duration>,
    /// At a daily limit: time until it is back in rotation.
    pub limited_for: Option<Duration>,
}

/// Which daily limit a credential reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reached {
    Requests,
    Tokens,
}

impl Day {
    /// The day `wall` (at `now`) is in: the one in `slot` while it lasts, else a new one from
    /// zero.
    pub(crate) fn current(
        slot: &mut Option<Day>,
        reset: QuotaReset,
        now: Instant,
        wall: SystemTime,
    ) -> &mut Day {
        let day = slot
            .take()
            .filter(|day| wall < day.ends_wall)
            .unwrap_or_else(|| {
                let ends_wall = reset.next_after(wall);
                let left = ends_wall.duration_since(wall).unwrap_or_default();
                Day {
                    ends_wall,
                    ends: now.checked_add(left).unwrap_or(now),
                    requests: 0,
                    tokens: 0,
                    others: Counts::default(),
                }
            });
        slot.insert(day)
    }

    pub(crate) fn count_request(&mut self) {
        self.requests = self.requests.saturating_add(1);
    }

    pub(crate) fn count_tokens(&mut self, tokens: u64) {
        self.tokens = self.tokens.saturating_add(tokens);
    }

    /// When the day ends, by the wall clock.
    pub(crate) fn ends_wall(&self) -> SystemTime {
        self.ends_wall
    }

    /// This server's counts of the day.
    pub(crate) fn own(&self) -> Counts {
        Counts {
            requests: self.requests,
            tokens: self.tokens,
        }
    }

    /// Sets what the other servers counted this day.
    pub(crate) fn set_others(&mut self, others: Counts) {
        self.others = others;
    }

    fn total_requests(&self) -> u64 {
        self.requests.saturating_add(self.others.requests)
    }

    fn total_tokens(&self) -> u64 {
        self.tokens.saturating_add(self.others.tokens)
    }

    /// Whether this day is still running at `now`.
    pub(crate) fn running(&self, now: Instant) -> bool {
        now < self.ends
    }

    /// Which limit it reached at `now`, if any.
    pub(crate) fn reached(&self, limits: DailyLimits, now: Instant) -> Option<Reached> {
        if !self.running(now) {
            return None;
        }
        let over = |limit: Option<NonZeroU64>, used: u64| limit.is_some_and(|l| used >= l.get());
        if over(limits.requests, self.total_requests()) {
            Some(Reached::Requests)
        } else if over(limits.tokens, self.total_tokens()) {
            Some(Reached::Tokens)
        } else {
            None
        }
    }

    /// At a limit: the time until the day ends.
    pub(crate) fn limited_for(&self, limits: DailyLimits, now: Instant) -> Option<Duration> {
        self.reached(limits, now)
            .map(|_| self.ends.saturating_duration_since(now))
    }

    /// The day as of `now`: a day that ended shows zero, and the end of the day after it.
    pub(crate) fn status(day: Option<&Day>, limits: DailyLimits, now: Instant) -> DayStatus {
        let Some(day) = day else {
            return DayStatus {
                limits,
                ..DayStatus::default()
            };
        };
        if day.running(now) {
            return DayStatus {
                requests: day.total_requests(),
                tokens: day.total_tokens(),
                limits,
                resets_in: Some(day.ends.saturating_duration_since(now)),
                limited_for: day.limited_for(limits, now),
            };
        }
        let past = now.saturating_duration_since(day.ends);
        let into_day = Duration::from_secs(past.as_secs() % DAY.as_secs());
        DayStatus {
            limits,
            resets_in: Some(DAY.saturating_sub(into_day)),
            ..DayStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// 2026-12-05T10:00:00Z.
    fn morning() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_464_800)
    }

    fn limits(requests: u64, tokens: u64) -> DailyLimits {
        DailyLimits {
            requests: NonZeroU64::new(requests),
            tokens: NonZeroU64::new(tokens),
        }
    }

    #[test]
    fn a_day_counts_until_the_reset_then_starts_from_zero() {
        let reset: QuotaReset = "00:00Z".parse().unwrap();
        let (now, wall) = (Instant::now(), morning());
        let mut day = None;
        Day::current(&mut day, reset, now, wall).count_request();
        Day::current(&mut day, reset, now, wall).count_tokens(70);
        let status = Day::status(day.as_ref(), limits(0, 100), now);
        assert_eq!((status.requests, status.tokens), (1, 70));
        assert_eq!(status.resets_in, Some(Duration::from_secs(14 * 3600)));
        assert_eq!(status.limited_for, None);

        Day::current(&mut day, reset, now, wall).count_tokens(30);
        let hour = Duration::from_secs(3600);
        let status = Day::status(day.as_ref(), limits(0, 100), now + hour);
        assert_eq!(status.limited_for, Some(13 * hour));

        // The next day, by the wall clock: counts start over.
        let later = now + 14 * hour;
        let status = Day::status(day.as_ref(), limits(0, 100), later);
        assert_eq!(
            (status.requests, status.tokens, status.limited_for),
            (0, 0, None)
        );
        assert_eq!(status.resets_in, Some(24 * hour));
        let today = Day::current(&mut day, reset, later, wall + 14 * hour);
        assert_eq!((today.requests, today.tokens), (0, 0));
        today.count_request();
        assert_eq!(
            Day::status(day.as_ref(), limits(1, 0), later).limited_for,
            Some(24 * hour)
        );
    }

    #[test]
    fn a_day_without_limits_is_never_limited_and_one_never_counted_shows_no_reset() {
        let now = Instant::now();
        let mut day = None;
        for _ in 0..1000 {
            Day::current(&mut day, QuotaReset::default(), now, morning()).count_request();
        }
        assert_eq!(
            Day::status(day.as_ref(), DailyLimits::default(), now).limited_for,
            None
        );
        let fresh = Day::status(None, limits(5, 0), now);
        assert_eq!((fresh.requests, fresh.resets_in), (0, None));
    }
}
