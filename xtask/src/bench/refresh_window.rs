//! The window a kill -9 can hit during a token refresh: from the token endpoint's answer to
//! the renamed, flushed token file. Qwen rotates refresh tokens, so an account whose refresh
//! is cut inside this window is lost; the window must stay a few milliseconds even when many
//! accounts refresh at once.
//!
//! cliproxy measures it itself and logs it on every refresh (`refreshed the access token ...
//! saved_in_us=N`). Each storm writes [`STORM_ACCOUNTS`] token files whose access tokens have
//! expired into a fresh auth dir, with the fake Qwen (a process, rotating refresh tokens) as
//! the OAuth server, and starts cliproxy: every account refreshes at once. The storm ends
//! when all of them logged their refresh.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::cliproxy::{Instance, Layout, toml_string, write_token_file};
use super::fake_qwen::{FakeProcess, FakeSettings};
use super::net;

/// Accounts that refresh together in one storm.
pub(crate) const STORM_ACCOUNTS: usize = 32;
/// Storms per run.
pub(crate) const STORMS: usize = 6;
/// Longest a storm may take before the run is called failed.
const STORM_WAIT: Duration = Duration::from_secs(60);
/// What cliproxy logs after each refresh it wrote back.
const REFRESHED: &str = "refreshed the access token";

/// The windows measured, in microseconds, one per refresh.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefreshWindow {
    pub(crate) samples_us: Vec<u64>,
    pub(crate) storms: usize,
    pub(crate) error: Option<String>,
}

/// Runs [`STORMS`] storms and collects every refresh's window.
pub(crate) async fn measure(cliproxy: &Path, fake_qwen: &Path, work: &Path) -> RefreshWindow {
    let mut result = RefreshWindow::default();
    if let Err(error) = storms(cliproxy, fake_qwen, work, &mut result).await {
        result.error = Some(format!("{error:#}"));
    }
    result
}

async fn storms(
    cliproxy: &Path,
    fake_qwen: &Path,
    work: &Path,
    result: &mut RefreshWindow,
) -> Result<()> {
    let fake = FakeProcess::spawn(
        fake_qwen,
        &work.join("fake-qwen-refresh.log"),
        FakeSettings {
            token_life: Duration::from_secs(3600),
            refresh_latency: Duration::ZERO,
            stream_chunks: 1,
            stream_interval: Duration::ZERO,
            quota_retry_after_secs: 1,
        },
    )
    .await?;
    for storm in 0..STORMS {
        let layout = Layout::create(&work.join(format!("refresh-storm-{storm}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        for account in 0..STORM_ACCOUNTS {
            let pair = fake.mint().await?;
            write_token_file(
                &layout.auth_dir,
                &format!("storm{account}@example.com"),
                &pair,
                &fake.chat_base_url,
                now - 7200,
                now - 60,
            )?;
        }
        let port = net::free_port()?;
        std::fs::write(
            &layout.config,
            format!(
                "port = {port}\nauth-dir = {}\napi-keys = [\"bench-key\"]\n",
                toml_string(&layout.auth_dir.to_string_lossy())
            ),
        )
        .with_context(|| format!("cannot write {}", layout.config.display()))?;
        let mut instance = Instance::spawn_with_env(
            cliproxy,
            &layout,
            port,
            &[
                ("CLIPROXY_LOG", "info"),
                ("CLIPROXY_QWEN_OAUTH_BASE_URL", &fake.oauth_base_url),
            ],
        )?;
        let samples = wait_for_refreshes(&mut instance, &layout.log).await?;
        result.samples_us.extend(samples);
        result.storms += 1;
        instance.terminate(Duration::from_secs(10)).await?;
    }
    Ok(())
}

/// Reads the log until every account logged its refresh, and returns their windows.
async fn wait_for_refreshes(instance: &mut Instance, log: &Path) -> Result<Vec<u64>> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let samples: Vec<u64> = text
            .lines()
            .filter(|line| line.contains(REFRESHED))
            .filter_map(saved_in_us)
            .collect();
        if samples.len() >= STORM_ACCOUNTS {
            return Ok(samples);
        }
        if let Some(status) = instance.exit_status() {
            bail!(
                "cliproxy exited ({status}) during a refresh storm; its log:\n{}",
                instance.log_tail()
            );
        }
        if started.elapsed() > STORM_WAIT {
            bail!(
                "only {} of {STORM_ACCOUNTS} accounts refreshed within {STORM_WAIT:?}; cliproxy's log:\n{}",
                samples.len(),
                instance.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `saved_in_us=N` field of a log line.
fn saved_in_us(line: &str) -> Option<u64> {
    let rest = line.split("saved_in_us=").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_read_from_the_log_line() {
        let line =
            "2026-12-05T19:00:00Z  INFO refreshed the access token account=a@b.c saved_in_us=2731";
        assert_eq!(saved_in_us(line), Some(2731));
        assert_eq!(saved_in_us("INFO refreshed the access token"), None);
    }
}
