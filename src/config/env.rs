//! The environment's side of the settings: `CLIPROXY_*` variables, read here and nowhere else
//! (except `CLIPROXY_CONFIG`, `CLIPROXY_AUTH_DIR`, `CLIPROXY_LOG_FORMAT` (clap) and
//! `CLIPROXY_LOG`), with errors that say what a valid value looks like.

use std::str::FromStr;
use std::time::Duration;

use super::values::DurationSetting;

/// A variable's value, unless unset or blank.
pub(crate) fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A comma-separated list from the environment.
pub(super) fn env_list(name: &str) -> Option<Vec<String>> {
    env_value(name).map(|raw| raw.split(',').map(|item| item.trim().to_owned()).collect())
}

/// A number from the environment; `expected` describes a valid value for the error.
pub(crate) fn env_parsed<T: FromStr>(name: &str, expected: &str) -> anyhow::Result<Option<T>> {
    env_value(name)
        .map(|raw| parse_env_value(name, &raw, expected))
        .transpose()
}

pub(super) fn parse_env_value<T: FromStr>(
    name: &str,
    raw: &str,
    expected: &str,
) -> anyhow::Result<T> {
    raw.trim().parse::<T>().map_err(|_| {
        anyhow::anyhow!(
            "environment variable {name}={raw:?} is not valid: give {expected}, or unset it"
        )
    })
}

/// A duration from the environment, else the file, else `default`.
pub(super) fn duration(
    env: &str,
    file: Option<DurationSetting>,
    default: Duration,
) -> anyhow::Result<Duration> {
    let from_env = env_value(env)
        .map(|raw| {
            raw.parse::<DurationSetting>()
                .map_err(|e| anyhow::anyhow!("{env}: {e}"))
        })
        .transpose()?;
    Ok(from_env.or(file).map_or(default, |setting| setting.0))
}
