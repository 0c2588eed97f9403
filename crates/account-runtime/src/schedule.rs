//! The refresh schedule of one account: it wakes a lead time plus jitter before the token
//! expires and refreshes it then, retries a failed refresh with capped, jittered exponential
//! backoff, and idles while the account needs a new login.
//!
//! Time and chance come from a [`Clock`], so tests drive the schedule without waiting.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auth_core::Clock;

use credential_pool::{Credential, Pool, RefreshFailure};

use crate::refresh_due::refresh_due;

use crate::qwen_account::QwenAccount;

/// The longest random spread added before an account's refresh.
const MAX_REFRESH_JITTER: Duration = Duration::from_secs(5 * 60);
/// Nominal wait after a first failed refresh; it doubles with each further failure.
const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest nominal wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(10 * 60);

/// Refreshes `account` `lead` plus jitter before each expiry, until aborted.
///
/// The jitter is up to min(5 min, lead / 4). The refresh happens at the jittered time: it is
/// skipped only if, under the lock, the file no longer holds the token planned on (someone
/// else refreshed it). After a refresh the next one is at least half the new token's remaining
/// life away.
pub async fn run(
    account: Arc<QwenAccount>,
    pool: Arc<Pool<Credential>>,
    lead: Duration,
    clock: impl Clock + 'static,
) {
    let jitter_max = MAX_REFRESH_JITTER.min(lead / 4);
    let mut failures: u32 = 0;
    // After a refresh, the next one waits at least half the new token's remaining life, so a
    // token that lives shorter than the lead is not refreshed again at once, in a loop.
    let mut not_before: Option<SystemTime> = None;
    loop {
        if account.needs_relogin() {
            // Only a new login (a changed file) can help; never send a dead token again.
            account.changed.notified().await;
            failures = 0;
            continue;
        }
        let Some((expires_at, reason)) = account.due() else {
            account.changed.notified().await;
            continue;
        };
        let now = clock.wall();
        let wait = if failures == 0 {
            let due = refresh_due(expires_at, lead, jitter_max, clock.fraction(), now);
            let due = not_before.map_or(due, |floor| due.max(floor));
            due.duration_since(now).unwrap_or_default()
        } else {
            retry_wait(failures, clock.fraction())
        };
        tokio::select! {
            () = clock.sleep(wait) => {}
            () = account.changed.notified() => {
                failures = 0;
                continue;
            }
        }
        match account.refresh_for(reason).await {
            Ok(_) => {
                failures = 0;
                let now = clock.wall();
                not_before = account.due().map(|(expires_at, _)| {
                    now + expires_at.duration_since(now).unwrap_or_default() / 2
                });
            }
            Err(RefreshFailure::ReloginRequired) => {
                pool.set_disabled(
                    account.key.as_str(),
                    Some(crate::reasons::RELOGIN_REASON.to_owned()),
                );
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(account = %account.label, "scheduled refresh failed ({error}); retrying later");
            }
        }
    }
}

/// The wait before retry number `failures` (1 for the first): nominally 30 s doubling up to
/// 10 min, then between half of that and all of it by `fraction`, so accounts that failed
/// together do not retry together.
fn retry_wait(failures: u32, fraction: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let nominal = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    nominal.mul_f64(0.5 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use auth_core::{HttpSettings, OAuthClient, ProviderProfile};
    use credential_pool::{Models, PoolConfig};
    use fake_qwen::{FakeQwen, RefreshBehaviour};
    use time::OffsetDateTime;
    use token_store::{AuthDir, QWEN, StoredAccount, TokenRecord};
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::accounts::account_credential;
    use crate::qwen_account::Refreshes;

    const LEAD: Duration = Duration::from_secs(20 * 60);
    /// Stops a test whose awaited event never comes; never a synchronisation.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// A wait the scheduler asked for; it ends when `resume` is sent (or dropped).
    struct Sleep {
        wait: Duration,
        resume: oneshot::Sender<()>,
    }

    /// A clock the test drives: each sleep is handed to the test, which moves time on.
    struct ScriptedClock {
        now: Arc<Mutex<SystemTime>>,
        /// The instant that stands for the wall time the test started at.
        origin: (std::time::Instant, SystemTime),
        sleeps: mpsc::UnboundedSender<Sleep>,
        fraction: f64,
    }

    impl Clock for ScriptedClock {
        fn now(&self) -> std::time::Instant {
            let (instant, wall) = self.origin;
            instant + self.wall().duration_since(wall).unwrap_or_default()
        }

        fn wall(&self) -> SystemTime {
            *self.now.lock().unwrap()
        }

        fn sleep(&self, wait: Duration) -> auth_core::Sleep {
            let (resume, resumed) = oneshot::channel();
            // The test may have ended; then the schedule is being torn down anyway.
            let _ = self.sleeps.send(Sleep { wait, resume });
            Box::pin(async move {
                let _ = resumed.await;
            })
        }

        fn fraction(&self) -> f64 {
            self.fraction
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        fake: FakeQwen,
        account: Arc<QwenAccount>,
        now: Arc<Mutex<SystemTime>>,
        sleeps: mpsc::UnboundedReceiver<Sleep>,
        schedule: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        /// An account whose token expires at `expires`, its schedule started at `now` with
        /// jitter fraction `fraction`, against a fake answering refreshes with `refresh`.
        async fn start(
            expires: OffsetDateTime,
            now: SystemTime,
            fraction: f64,
            refresh: RefreshBehaviour,
        ) -> Harness {
            let fake = FakeQwen::start().await;
            fake.set_refresh(refresh);
            let tokens = fake.mint_tokens();
            let dir = tempfile::tempdir().unwrap();
            let store = AuthDir::open(dir.path()).unwrap();
            let mut record = TokenRecord::new(QWEN, tokens.access_token);
            record.email = Some("dev@example.com".to_owned());
            record.refresh_token = Some(tokens.refresh_token);
            record.resource_url = Some(fake.chat_base_url());
            record.expired = Some(expires);
            let saved = store
                .save_login(&record, OffsetDateTime::now_utc())
                .unwrap();
            let stored = account_store::Stored::from_file(StoredAccount {
                path: saved.path,
                record,
            });
            let profile = ProviderProfile::qwen().with_base_url(fake.base_url().parse().unwrap());
            let oauth = OAuthClient::new(profile, &HttpSettings::default()).unwrap();
            let store = account_store::AccountStore::Dir(store);
            let account = Arc::new(QwenAccount::new(stored, store, oauth, Refreshes::new()));
            let pool = Arc::new(Pool::new(PoolConfig::default()));
            pool.upsert(
                account.key.as_str(),
                Arc::new(account_credential(&account)),
                Models::All,
                None,
            );
            let now = Arc::new(Mutex::new(now));
            let (sleeps_tx, sleeps) = mpsc::unbounded_channel();
            let clock = ScriptedClock {
                origin: (std::time::Instant::now(), *now.lock().unwrap()),
                now: Arc::clone(&now),
                sleeps: sleeps_tx,
                fraction,
            };
            let schedule = tokio::spawn(run(Arc::clone(&account), pool, LEAD, clock));
            Harness {
                _dir: dir,
                fake,
                account,
                now,
                sleeps,
                schedule,
            }
        }

        /// The next wait the schedule asks for.
        async fn next_sleep(&mut self) -> Sleep {
            tokio::time::timeout(HANG_GUARD, self.sleeps.recv())
                .await
                .expect("the schedule asks for a wait")
                .expect("the schedule is running")
        }

        /// Moves the clock past `sleep` and lets the schedule go on.
        fn elapse(&self, sleep: Sleep) {
            *self.now.lock().unwrap() += sleep.wait;
            let _ = sleep.resume.send(());
        }

        fn refreshes(&self) -> usize {
            self.fake
                .token_requests()
                .iter()
                .filter(|r| r.form_value("grant_type") == Some("refresh_token"))
                .count()
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.schedule.abort();
        }
    }

    #[tokio::test]
    async fn a_token_within_lead_plus_jitter_is_refreshed_at_the_jittered_time() {
        // Due 22.5 min before expiry (lead 20 min + half of the 5 min jitter), which is 30 s
        // from now: still outside the plain lead, so only the jitter makes it due.
        let now = SystemTime::now();
        let expires = OffsetDateTime::from(now) + Duration::from_secs(23 * 60);
        let mut harness = Harness::start(expires, now, 0.5, RefreshBehaviour::Rotate).await;
        let before = harness.account.due().unwrap().0;

        let sleep = harness.next_sleep().await;
        assert_eq!(sleep.wait, Duration::from_secs(30));
        assert_eq!(harness.refreshes(), 0, "nothing before the jittered time");
        harness.elapse(sleep);

        // The next wait is planned once the refresh is done.
        let _next = harness.next_sleep().await;
        assert_eq!(harness.refreshes(), 1, "refreshed at the jittered time");
        let after = harness.account.due().unwrap().0;
        assert!(after > before, "the account holds the new token");
        let account_store::Location::File(path) = &harness.account.location else {
            panic!("a token file");
        };
        let on_disk = std::fs::read_to_string(path).unwrap();
        let newest = harness.fake.issued_tokens().pop().unwrap();
        assert!(on_disk.contains(&newest.access_token), "written back");
    }

    #[tokio::test]
    async fn a_failed_refresh_is_retried_after_a_jittered_backoff() {
        let now = SystemTime::now();
        let expires = OffsetDateTime::from(now) + Duration::from_secs(10 * 60);
        let mut harness =
            Harness::start(expires, now, 0.5, RefreshBehaviour::ServerError(503)).await;

        let sleep = harness.next_sleep().await;
        assert_eq!(sleep.wait, Duration::ZERO, "inside the lead: at once");
        harness.elapse(sleep);
        let first_retry = harness.next_sleep().await;
        assert_eq!(harness.refreshes(), 1);
        assert_eq!(first_retry.wait, retry_wait(1, 0.5));
        harness.elapse(first_retry);
        let second_retry = harness.next_sleep().await;
        assert_eq!(harness.refreshes(), 2);
        assert_eq!(second_retry.wait, retry_wait(2, 0.5));
    }

    #[tokio::test]
    async fn a_token_that_lives_shorter_than_the_lead_is_not_refreshed_in_a_loop() {
        let now = SystemTime::now();
        let expires = OffsetDateTime::from(now) + Duration::from_secs(60);
        let mut harness = Harness::start(expires, now, 0.5, RefreshBehaviour::Rotate).await;
        // Every new token lives 10 minutes: inside the 20-minute lead from the start.
        harness.fake.set_token_expires_in(600);

        let sleep = harness.next_sleep().await;
        assert_eq!(sleep.wait, Duration::ZERO, "inside the lead: at once");
        harness.elapse(sleep);
        let next = harness.next_sleep().await;
        assert_eq!(harness.refreshes(), 1);
        // Half of what is left of the new token's life, not at once.
        let now = *harness.now.lock().unwrap();
        let expires = harness.account.due().unwrap().0;
        let left = expires.duration_since(now).unwrap();
        assert!(
            left > Duration::from_secs(500),
            "a new 600 s token: {left:?}"
        );
        assert_eq!(next.wait, left / 2);
    }

    #[test]
    fn retry_waits_double_up_to_the_cap_and_spread_by_half() {
        let secs = |failures, fraction| retry_wait(failures, fraction).as_secs_f64();
        assert_eq!(secs(1, 0.0), 15.0);
        assert_eq!(secs(1, 0.5), 22.5);
        assert!(secs(1, 0.999_999) < 30.0);
        assert_eq!(secs(2, 0.0), 30.0);
        assert_eq!(secs(3, 0.0), 60.0);
        assert_eq!(secs(5, 0.0), 240.0);
        assert_eq!(secs(6, 0.0), 300.0, "capped at 10 min nominal");
        assert_eq!(secs(u32::MAX, 0.0), 300.0);
        assert!(secs(u32::MAX, 0.999_999) < 600.0);
        assert_eq!(secs(1, f64::NAN), 15.0);
    }
}
