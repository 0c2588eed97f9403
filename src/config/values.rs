//! Values the config writes in its own notation: durations (`"30s"`) and how long usage is
//! kept (`"90d"`), for the file and the environment alike.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A duration written as seconds (`30`) or with a unit (`"250ms"`, `"30s"`, `"5m"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(pub Duration);

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Ok(Self(Duration::from_secs(seconds))),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl FromStr for DurationSetting {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let text = raw.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let invalid = || format!("invalid duration {raw:?}; write it like 250ms, 30s, 5m or 1h");
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let duration = match unit.trim() {
            "ms" => Duration::from_millis(number),
            "" | "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            _ => return Err(invalid()),
        };
        Ok(Self(duration))
    }
}

/// How long usage is kept: days (`90`, `"90d"`) or hours (`"36h"`); `0` keeps it for ever.
/// `None` inside is for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSetting(pub Option<Duration>);

impl<'de> Deserialize<'de> for RetentionSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Days(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Days(days) => format!("{days}d").parse(),
            Raw::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl FromStr for RetentionSetting {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let text = raw.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let invalid = || {
            format!(
                "invalid usage-retention {raw:?}; write days or hours like 90d or 36h, or 0 to keep usage for ever"
            )
        };
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let hours = match unit.trim() {
            "" | "d" => number.checked_mul(24),
            "h" => Some(number),
            _ => None,
        }
        .ok_or_else(invalid)?;
        let seconds = hours.checked_mul(3600).ok_or_else(invalid)?;
        Ok(Self((seconds > 0).then(|| Duration::from_secs(seconds))))
    }
}
