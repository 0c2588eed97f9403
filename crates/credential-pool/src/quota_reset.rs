//! When an upstream's quota of the day starts again: a time of day at a fixed UTC offset
//! (`quota-reset`, by default midnight in China, where Qwen's quotas reset: `00:00+08:00`).
//! A credential whose quota is used up waits for it, unless the upstream said when
//! (`Retry-After`); a credential's own `requests-per-day` and `tokens-per-day` count the day
//! that ends there ([`crate::DailyLimits`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 24 * 60 * 60;

/// A daily reset time: minutes after midnight at a UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReset {
    /// Minutes after local midnight, below 1440.
    minute_of_day: u16,
    /// The local time's offset from UTC, in minutes.
    utc_offset: i16,
}

impl Default for QuotaReset {
    /// Midnight in China (UTC+8, no daylight saving).
    fn default() -> Self {
        Self {
            minute_of_day: 0,
            utc_offset: 8 * 60,
        }
    }
}

/// A `quota-reset` that is not `HH:MM` followed by an offset such as `+08:00` or `Z`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quota-reset {0:?} is not a time of day with its UTC offset; write it like \"00:00+08:00\" (midnight in China) or \"08:00Z\""
)]
pub struct InvalidQuotaReset(pub String);

impl FromStr for QuotaReset {
    type Err = InvalidQuotaReset;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidQuotaReset(text.to_owned());
        let trimmed = text.trim();
        let (time, offset) = match trimmed.find(['+', '-', 'Z', 'z']) {
            Some(at) => trimmed.split_at(at),
            None => return Err(invalid()),
        };
        let minutes = |hhmm: &str| -> Option<i32> {
            let (hours, minutes) = hhmm.split_once(':')?;
            let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
            ((0..24).contains(&hours) && (0..60).contains(&minutes)).then_some(hours * 60 + minutes)
        };
        let minute_of_day = minutes(time).ok_or_else(invalid)?;
        let utc_offset = match offset {
            "Z" | "z" => 0,
            _ => {
                let sign = if offset.starts_with('-') { -1 } else { 1 };
                sign * minutes(&offset[1..]).ok_or_else(invalid)?
            }
        };
        Ok(Self {
            minute_of_day: u16::try_from(minute_of_day).map_err(|_| invalid())?,
            utc_offset: i16::try_from(utc_offset).map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for QuotaReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.utc_offset < 0 { '-' } else { '+' };
        let offset = self.utc_offset.unsigned_abs();
        write!(
            f,
            "{:02}:{:02}{sign}{:02}:{:02}",
            self.minute_of_day / 60,
            self.minute_of_day % 60,
            offset / 60,
            offset % 60
        )
    }
}

impl QuotaReset {
    /// The first reset after `now`.
    #[must_use]
    pub fn next_after(self, now: SystemTime) -> SystemTime {
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        // The reset, in seconds after UTC midnight (it may be on the day before in UTC).
        let reset_utc = i64::from(self.minute_of_day) * 60 - i64::from(self.utc_offset) * 60;
        let reset_utc = u64::try_from(reset_utc.rem_euclid(DAY as i64)).unwrap_or(0);
        let today = seconds - seconds % DAY;
        let mut next = today + reset_utc;
        if next <= seconds {
            next += DAY;
        }
        UNIX_EPOCH + Duration::from_secs(next)
    }

    /// Time from `now` until the next reset.
    #[must_use]
    pub fn wait_after(self, now: SystemTime) -> Duration {
        self.next_after(now)
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn midnight_in_china_is_sixteen_hundred_utc() {
        let reset = QuotaReset::default();
        // 2026-12-05T10:00:00Z is before 16:00Z: today's.
        let ten = 1_796_464_800;
        assert_eq!(reset.next_after(utc(ten)), utc(ten + 6 * 3600));
        // 2026-12-05T17:00:00Z is after: tomorrow's.
        assert_eq!(reset.next_after(utc(ten + 7 * 3600)), utc(ten + 30 * 3600));
        assert_eq!(reset.to_string(), "00:00+08:00");
    }

    #[test]
    fn written_forms_are_read_or_refused() {
        assert_eq!("00:00+08:00".parse(), Ok(QuotaReset::default()));
        let utc_eight: QuotaReset = "08:00Z".parse().unwrap();
        assert_eq!(utc_eight.to_string(), "08:00+00:00");
        let west: QuotaReset = "23:30-05:00".parse().unwrap();
        // 23:30 at UTC-5 is 04:30 UTC the next day.
        assert_eq!(west.next_after(utc(0)), utc(4 * 3600 + 1800));
        for bad in ["midnight", "25:00+00:00", "00:00", "00:00+8", "12:60Z"] {
            assert!(bad.parse::<QuotaReset>().is_err(), "{bad}");
        }
    }
}
