//! Who sent a request: the client key it presented, by name, what that key may use and how
//! much. The auth layer attaches one to every request it lets through (an anonymous one when
//! the server has no keys), and every later step reads it from there: the routes check its
//! models, the upstream its limits before anything is sent, routing limits selection to its
//! scope, the answer's tokens are counted against its day, and logs name the key by its name,
//! never the key.
//!
//! Each client's limits are its own: a request takes the lock of its client's minute window
//! only, never one that all requests share.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use credential_pool::{Pool, RateWindow, Scope};

use crate::config::ClientKeyConfig;
use crate::glob::glob_matches;
use credential_pool::QuotaReset;

/// A client key's identity, what it may use, and what it used.
#[derive(Debug)]
pub(crate) struct Client {
    /// The key's name (from the config), as logs and usage show it.
    pub(crate) name: Arc<str>,
    /// The credentials it may use.
    pub(crate) scope: Arc<Scope>,
    /// Models it may ask for (exact or `*` globs); empty: all.
    models: Vec<String>,
    /// Its requests over the last minute, when it has a cap.
    minute: Option<Mutex<RateWindow>>,
    /// Its tokens of the current day, when it has a cap.
    day: Option<DailyTokens>,
}

/// Why a client may not send a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// Its `requests-per-minute` are used; a slot frees after the wait.
    Requests {
        per_minute: NonZeroU32,
        wait: Duration,
    },
    /// Its `tokens-per-day` are used; the day ends after the wait.
    Tokens { per_day: NonZeroU64, wait: Duration },
}

/// Requests to a server without client keys (loopback only): no name, no limits.
static ANONYMOUS: LazyLock<Arc<Client>> = LazyLock::new(|| {
    Arc::new(Client {
        name: "".into(),
        scope: Arc::new(Scope::all()),
        models: Vec::new(),
        minute: None,
        day: None,
    })
});

impl Client {
    /// The client of a request the auth layer let through without a key.
    pub(crate) fn anonymous() -> Arc<Client> {
        Arc::clone(&ANONYMOUS)
    }

    /// A plain key of `api-keys`: named `api-keys#N` (from 1), all credentials, no limits.
    pub(crate) fn plain(index: usize) -> Client {
        Client {
            name: format!("api-keys#{}", index + 1).into(),
            scope: Arc::new(Scope::all()),
            models: Vec::new(),
            minute: None,
            day: None,
        }
    }

    /// A `[[client-keys]]` entry, its day ending at `reset`.
    pub(crate) fn named(config: &ClientKeyConfig, reset: QuotaReset) -> Client {
        Client {
            name: config.name.as_str().into(),
            scope: Arc::new(config.scope.clone()),
            models: config.models.clone(),
            minute: config
                .requests_per_minute
                .map(|cap| Mutex::new(RateWindow::new(cap))),
            day: config.tokens_per_day.map(|cap| DailyTokens {
                cap,
                reset,
                used: Mutex::new(DayUse::default()),
            }),
        }
    }

    /// The client the auth layer attached to `request`, else the anonymous one.
    pub(crate) fn of<B>(request: &http::Request<B>) -> Arc<Client> {
        request
            .extensions()
            .get::<Arc<Client>>()
            .map_or_else(Self::anonymous, Arc::clone)
    }

    /// Whether this key may ask for `requested`, which an alias may have turned into
    /// `upstream`: either name may be allowed.
    pub(crate) fn allows_model(&self, requested: &str, upstream: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|pattern| glob_matches(pattern, requested) || glob_matches(pattern, upstream))
    }

    /// Whether a request may go out now; counts it against the minute when it may.
    ///
    /// # Errors
    ///
    /// [`Limited`] says which limit is reached and how long until it frees.
    #[cfg(test)]
    pub(crate) fn admit(&self, now: Instant, wall: SystemTime) -> Result<(), Limited> {
        self.admit_counting(0, now, wall)
    }

    /// [`Client::admit`], with `elsewhere` tokens of the day that other servers counted.
    fn admit_counting(
        &self,
        elsewhere: u64,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), Limited> {
        if let Some(day) = &self.day
            && let Some(wait) = day.exhausted(elsewhere, wall)
        {
            return Err(Limited::Tokens {
                per_day: day.cap,
                wait,
            });
        }
        if let Some(minute) = &self.minute {
            let mut window = minute.lock().unwrap_or_else(PoisonError::into_inner);
            window.admit(now).map_err(|wait| Limited::Requests {
                per_minute: window.cap(),
                wait,
            })?;
        }
        Ok(())
    }

    /// [`Client::admit`], then a slot of the key's `requests-per-minute` shared with other
    /// servers through `pool` (a no-op unless the pool shares limits).
    ///
    /// # Errors
    ///
    /// [`Limited`] says which limit is reached and how long until it frees.
    pub(crate) fn admit_shared<C>(
        &self,
        pool: &Pool<C>,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), Limited> {
        let elsewhere = if self.day.is_some() {
            pool.client_tokens_elsewhere(&self.name, wall)
        } else {
            0
        };
        self.admit_counting(elsewhere, now, wall)?;
        if let Some(minute) = &self.minute {
            pool.take_client_slot(&self.name, now)
                .map_err(|wait| Limited::Requests {
                    per_minute: minute.lock().unwrap_or_else(PoisonError::into_inner).cap(),
                    wait,
                })?;
        }
        Ok(())
    }

    /// Whether the answer's tokens are wanted (the key has a daily token cap).
    pub(crate) fn counts_tokens(&self) -> bool {
        self.day.is_some()
    }

    /// Counts `tokens` of an answer against the key's day.
    pub(crate) fn spend(&self, tokens: u64, wall: SystemTime) {
        if let Some(day) = &self.day {
            day.spend(tokens, wall);
        }
    }
}

/// A daily token cap and the tokens used in the current day.
#[derive(Debug)]
struct DailyTokens {
    cap: NonZeroU64,
    reset: QuotaReset,
    used: Mutex<DayUse>,
}

/// Tokens used in the day that ends at `ends`.
#[derive(Debug, Default)]
struct DayUse {
    ends: Option<SystemTime>,
    tokens: u64,
}

impl DailyTokens {
    /// The use of the day `now` is in (a new day starts from zero).
    fn current<'a>(&self, used: &'a mut DayUse, now: SystemTime) -> &'a mut DayUse {
        if used.ends.is_none_or(|ends| now >= ends) {
            *used = DayUse {
                ends: Some(self.reset.next_after(now)),
                tokens: 0,
            };
        }
        used
    }

    /// `Some(time until the day ends)` when the day's tokens, with `elsewhere` tokens other
    /// servers counted, are used.
    fn exhausted(&self, elsewhere: u64, now: SystemTime) -> Option<Duration> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let day = self.current(&mut used, now);
        (day.tokens.saturating_add(elsewhere) >= self.cap.get()).then(|| {
            day.ends
                .and_then(|ends| ends.duration_since(now).ok())
                .unwrap_or_default()
        })
    }

    fn spend(&self, tokens: u64, now: SystemTime) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let day = self.current(&mut used, now);
        day.tokens = day.tokens.saturating_add(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rpm: Option<u32>, tokens: Option<u64>) -> ClientKeyConfig {
        ClientKeyConfig {
            name: "team".into(),
            key_sha256: [0; 32],
            models: vec!["qwen3-*".into()],
            scope: Scope::all(),
            requests_per_minute: rpm.and_then(NonZeroU32::new),
            tokens_per_day: tokens.and_then(NonZeroU64::new),
        }
    }

    #[test]
    fn models_are_allowed_by_the_name_asked_for_or_its_alias_target() {
        let client = Client::named(&config(None, None), QuotaReset::default());
        assert!(client.allows_model("qwen3-coder-plus", "qwen3-coder-plus"));
        assert!(client.allows_model("claude-sonnet", "qwen3-coder-plus"));
        assert!(!client.allows_model("gpt-5", "gpt-5"));
        assert!(Client::plain(0).allows_model("anything", "anything"));
    }

    #[test]
    fn the_minute_cap_counts_admitted_requests_and_says_when_a_slot_frees() {
        let client = Client::named(&config(Some(2), None), QuotaReset::default());
        let (now, wall) = (Instant::now(), SystemTime::now());
        assert_eq!(client.admit(now, wall), Ok(()));
        assert_eq!(client.admit(now, wall), Ok(()));
        let Err(Limited::Requests { per_minute, wait }) = client.admit(now, wall) else {
            panic!("the third request of the minute is limited");
        };
        assert_eq!(per_minute.get(), 2);
        assert_eq!(wait, Duration::from_secs(60));
        assert_eq!(client.admit(now + Duration::from_secs(60), wall), Ok(()));
    }

    #[test]
    fn the_day_cap_stops_requests_until_the_reset_and_a_new_day_starts_at_zero() {
        let reset: QuotaReset = "00:00Z".parse().unwrap();
        let client = Client::named(&config(None, Some(100)), reset);
        // 2026-12-05T10:00:00Z: the day ends in 14 h.
        let morning = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_464_800);
        let now = Instant::now();
        client.spend(60, morning);
        assert_eq!(client.admit(now, morning), Ok(()));
        client.spend(40, morning);
        assert_eq!(
            client.admit(now, morning),
            Err(Limited::Tokens {
                per_day: NonZeroU64::new(100).unwrap(),
                wait: Duration::from_secs(14 * 3600),
            })
        );
        let next_day = morning + Duration::from_secs(14 * 3600);
        assert_eq!(client.admit(now, next_day), Ok(()));
    }
}
