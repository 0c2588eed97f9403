//! The credential pool: per-model candidate lists, rotation, cooldowns,
//! backoff and rate caps behind one short-lived mutex.
//!
//! A new credential joins the candidate lists in place; they are rebuilt when one leaves
//! ([`Pool::remove`]) or changes its models;
//! [`Pool::select`] does one hash lookup for the model and then walks its
//! list from a rotating cursor, skipping unavailable credentials, without
//! allocating on success.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Models, PoolConfig, Strategy};
use crate::error::Unavailable;
use crate::rate::RateWindow;

/// Longest cooldown a single report can impose, whatever `Retry-After` says.
const MAX_COOLDOWN: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What the upstream said about a request sent with a leased credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request succeeded: clears the cooldown and backoff of this
    /// (credential, model) pair.
    Success,
    /// Quota or rate limit hit (e.g. HTTP 429): the (credential, model) pair
    /// cools down for `retry_after` when given, else for an exponential
    /// backoff of `backoff_base * 2^(n-1)` capped at `backoff_max`, where `n`
    /// counts consecutive quota failures (with or without `retry_after`).
    /// A cooldown is never shortened by a later report.
    QuotaExceeded {
        /// The upstream's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Server error or connection failure: no cooldown; the caller just
    /// tries the next credential.
    Failed,
    /// The upstream refused the credential itself (HTTP `status`, e.g. a 401 that a token
    /// refresh did not cure): the whole credential, every model, leaves rotation for
    /// `refused_base * 2^(n-1)` capped at `refused_max`, where `n` counts consecutive
    /// refusals. A success clears it.
    Refused {
        /// The HTTP status the upstream refused it with.
        status: u16,
    },
}

/// What [`Pool::take_slot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A slot was taken (or the credential has no cap).
    Taken,
    /// The credential is at its rate cap.
    Capped,
    /// The credential is disabled or no longer in the pool.
    Gone,
}

/// A credential chosen for one request.
pub struct Lease<C> {
    /// The credential's key, to pass back to [`Pool::report`] and to put in
    /// the request's `tried` list.
    pub key: Arc<str>,
    /// The credential itself.
    pub credential: Arc<C>,
}

impl<C> Clone for Lease<C> {
    fn clone(&self) -> Self {
        Self {
            key: Arc::clone(&self.key),
            credential: Arc::clone(&self.credential),
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for Lease<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("credential", &self.credential)
            .finish()
    }
}

/// A snapshot of one credential, for status pages and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStatus {
    /// The credential's key.
    pub key: Arc<str>,
    /// The models it serves.
    pub models: Models,
    /// Why it is out of rotation, when it is.
    pub disabled: Option<String>,
    /// Models it currently cools down for, sorted by model id.
    pub cooling: Vec<ModelCooldown>,
    /// Requests sent with it within the last 60 s (counted only when it has
    /// a rate cap; 0 otherwise).
    pub requests_in_window: u32,
    /// Its rate cap, when it has one.
    pub requests_per_minute: Option<NonZeroU32>,
    /// When the upstream refused it and it is out of rotation for that, how long still.
    pub refused: Option<RefusedStatus>,
}

/// A credential out of rotation because the upstream refused it ([`Outcome::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedStatus {
    /// The HTTP status of the last refusal.
    pub status: u16,
    /// Time until it rejoins rotation.
    pub remaining: Duration,
    /// Consecutive refusals so far.
    pub consecutive: u32,
}

/// A running cooldown of one (credential, model) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCooldown {
    /// The model id.
    pub model: String,
    /// Time until the credential may serve this model again.
    pub remaining: Duration,
    /// Consecutive quota failures so far.
    pub consecutive_failures: u32,
}

/// Credentials in memory, shared between request handlers (wrap it in an
/// [`Arc`]). `Send + Sync` whenever `C` is.
pub struct Pool<C> {
    config: PoolConfig,
    inner: Mutex<Inner<C>>,
}

/// Cooldown state of one (credential, model) pair.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    failures: u32,
}

/// Why and until when a whole credential is out of rotation after the upstream refused it.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    until: Instant,
    status: u16,
    consecutive: u32,
}

struct Entry<C> {
    key: Arc<str>,
    credential: Arc<C>,
    models: Models,
    disabled: Option<String>,
    rate: Option<RateWindow>,
    /// Per model id; an entry stays after its cooldown ends so consecutive
    /// failures keep counting until a success.
    backoff: HashMap<Box<str>, Backoff>,
    /// The last refusal; stays after it ends so consecutive refusals keep counting until a
    /// success.
    refusal: Option<Refusal>,
}

/// Whether an entry can serve a request right now.
enum Check {
    Usable,
    Disabled,
    Tried,
    Wait(Duration),
}

impl<C> Entry<C> {
    fn check(&mut self, model: &str, tried: &[Arc<str>], now: Instant) -> Check {
        if self.disabled.is_some() {
            return Check::Disabled;
        }
        let cooling = self
            .backoff
            .get(model)
            .filter(|state| state.until > now)
            .map(|state| state.until.saturating_duration_since(now));
        let refused = self
            .refusal
            .filter(|refusal| refusal.until > now)
            .map(|refusal| refusal.until.saturating_duration_since(now));
        let capped = self.rate.as_mut().and_then(|window| window.wait(now));
        if let Some(wait) = cooling.max(refused).max(capped) {
            return Check::Wait(wait);
        }
        if tried.iter().any(|key| **key == *self.key) {
            return Check::Tried;
        }
        Check::Usable
    }

    fn status(&self, now: Instant) -> CredentialStatus {
        let mut cooling: Vec<ModelCooldown> = self
            .backoff
            .iter()
            .filter(|(_, state)| state.until > now)
            .map(|(model, state)| ModelCooldown {
                model: model.to_string(),
                remaining: state.until.saturating_duration_since(now),
                consecutive_failures: state.failures,
            })
            .collect();
        cooling.sort_by(|a, b| a.model.cmp(&b.model));
        CredentialStatus {
            key: Arc::clone(&self.key),
            models: self.models.clone(),
            disabled: self.disabled.clone(),
            cooling,
            requests_in_window: self.rate.as_ref().map_or(0, |window| window.in_window(now)),
            requests_per_minute: self.rate.as_ref().map(RateWindow::cap),
            refused: self
                .refusal
                .filter(|refusal| refusal.until > now)
                .map(|refusal| RefusedStatus {
                    status: refusal.status,
                    remaining: refusal.until.saturating_duration_since(now),
                    consecutive: refusal.consecutive,
                }),
        }
    }
}

/// The candidates of one model, as indices into `Inner::entries` in
/// insertion order, with the round-robin cursor.
#[derive(Debug, Default)]
struct Candidates {
    members: Vec<usize>,
    cursor: usize,
}

struct Inner<C> {
    /// In insertion order.
    entries: Vec<Entry<C>>,
    index: HashMap<Arc<str>, usize>,
    /// Every model named by some `Models::Only`; includes `Models::All` entries.
    by_model: HashMap<Box<str>, Candidates>,
    /// `Models::All` entries, for models no `Models::Only` names.
    any_model: Candidates,
    /// Sorted keys of `by_model`.
    known: Vec<String>,
}

impl<C> Inner<C> {
    /// Appends a new entry and adds it to the index and candidate lists in place, in time
    /// proportional to its models (not to the pool): loading n accounts stays O(n).
    fn push(&mut self, entry: Entry<C>) {
        let i = self.entries.len();
        self.index.insert(Arc::clone(&entry.key), i);
        match &entry.models {
            Models::All => {
                self.any_model.members.push(i);
                for candidates in self.by_model.values_mut() {
                    candidates.members.push(i);
                }
            }
            Models::Only(list) => {
                for model in list {
                    if let Some(candidates) = self.by_model.get_mut(model.as_str()) {
                        // A model listed twice by one entry counts once.
                        if candidates.members.last() != Some(&i) {
                            candidates.members.push(i);
                        }
                        continue;
                    }
                    // A new model: every `Models::All` entry serves it too, and all come first.
                    let mut members = self.any_model.members.clone();
                    members.push(i);
                    self.by_model
                        .insert(model.as_str().into(), Candidates { members, cursor: 0 });
                    if let Err(at) = self.known.binary_search(model) {
                        self.known.insert(at, model.clone());
                    }
                }
            }
        }
        self.entries.push(entry);
    }

    /// Recomputes the key index and candidate lists after entries changed,
    /// keeping each model's cursor (wrapped into the new list length).
    fn rebuild(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (Arc::clone(&e.key), i))
            .collect();

        let mut known: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| match &e.models {
                Models::All => None,
                Models::Only(list) => Some(list.iter().cloned()),
            })
            .flatten()
            .collect();
        known.sort_unstable();
        known.dedup();

        let mut old = std::mem::take(&mut self.by_model);
        let mut by_model: HashMap<Box<str>, Candidates> = known
            .iter()
            .map(|model| {
                let cursor = old.remove(model.as_str()).map_or(0, |c| c.cursor);
                (
                    model.as_str().into(),
                    Candidates {
                        members: Vec::new(),
                        cursor,
                    },
                )
            })
            .collect();
        let mut any_members = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            match &entry.models {
                Models::All => {
                    any_members.push(i);
                    by_model.values_mut().for_each(|c| c.members.push(i));
                }
                Models::Only(list) => {
                    for model in list {
                        if let Some(c) = by_model.get_mut(model.as_str()) {
                            // A model listed twice by one entry counts once.
                            if c.members.last() != Some(&i) {
                                c.members.push(i);
                            }
                        }
                    }
                }
            }
        }
        for c in by_model.values_mut() {
            c.cursor %= c.members.len().max(1);
        }
        self.any_model.members = any_members;
        self.any_model.cursor %= self.any_model.members.len().max(1);
        self.by_model = by_model;
        self.known = known;
    }
}

/// Walks `members` from `start`, wrapping: the position of the first usable candidate, or
/// why there is none (see [`Unavailable`] for which reason wins).
fn first_usable<C>(
    entries: &mut [Entry<C>],
    members: &[usize],
    start: usize,
    model: &str,
    tried: &[Arc<str>],
    now: Instant,
    known: &[String],
) -> Result<usize, Unavailable> {
    let n = members.len();
    if n == 0 {
        return Err(Unavailable::UnknownModel {
            model: model.to_owned(),
            known: known.to_vec(),
        });
    }
    let (mut disabled, mut tried_count, mut waiting) = (0_usize, 0_usize, 0_usize);
    let mut earliest: Option<Duration> = None;
    for offset in 0..n {
        let pos = (start + offset) % n;
        match entries[members[pos]].check(model, tried, now) {
            Check::Usable => return Ok(pos),
            Check::Disabled => disabled += 1,
            Check::Tried => tried_count += 1,
            Check::Wait(wait) => {
                waiting += 1;
                earliest = Some(earliest.map_or(wait, |e| e.min(wait)));
            }
        }
    }
    let model = model.to_owned();
    Err(if tried_count > 0 {
        Unavailable::Exhausted { model }
    } else if let Some(retry_after) = earliest {
        Unavailable::CoolingDown {
            model,
            retry_after,
            waiting,
        }
    } else {
        Unavailable::Disabled {
            model,
            count: disabled,
        }
    })
}

/// `base * 2^(n - 1)`, capped at `max` (`n` counts from 1).
fn doubled(base: Duration, n: u32, max: Duration) -> Duration {
    let exponent = n.saturating_sub(1).min(31);
    base.saturating_mul(1_u32 << exponent).min(max)
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self::new(PoolConfig::default())
    }
}

impl<C> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<C> Pool<C> {
    /// An empty pool.
    #[must_use]
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                index: HashMap::new(),
                by_model: HashMap::new(),
                any_model: Candidates::default(),
                known: Vec::new(),
            }),
        }
    }

    /// The pool's configuration.
    #[must_use]
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner<C>> {
        // No code panics while holding the lock, and every mutation leaves
        // the state consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a credential, or replaces the one with the same key (e.g. after
    /// a token refresh or a re-login). Replacing keeps its insertion
    /// position, cooldowns, backoff counters and rate window (trimmed to a
    /// lower cap), and re-enables it. `requests_per_minute: None` means no
    /// cap.
    pub fn upsert(
        &self,
        key: &str,
        credential: Arc<C>,
        models: Models,
        requests_per_minute: Option<NonZeroU32>,
    ) {
        let mut inner = self.lock();
        if let Some(&i) = inner.index.get(key) {
            let entry = &mut inner.entries[i];
            entry.credential = credential;
            entry.disabled = None;
            entry.rate = match (entry.rate.take(), requests_per_minute) {
                (_, None) => None,
                (Some(mut window), Some(cap)) => {
                    window.set_cap(cap);
                    Some(window)
                }
                (None, Some(cap)) => Some(RateWindow::new(cap)),
            };
            if entry.models != models {
                entry.models = models;
                inner.rebuild();
            }
            return;
        }
        inner.push(Entry {
            key: key.into(),
            credential,
            models,
            disabled: None,
            rate: requests_per_minute.map(RateWindow::new),
            backoff: HashMap::new(),
            refusal: None,
        });
    }

    /// Removes a credential; `false` when the key was unknown.
    pub fn remove(&self, key: &str) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        inner.entries.remove(i);
        inner.rebuild();
        true
    }

    /// Takes a credential out of rotation with a reason shown in
    /// [`Pool::statuses`] (e.g. its refresh token is dead and it needs a
    /// re-login), or puts it back with `None`. `false` when the key was
    /// unknown.
    pub fn set_disabled(&self, key: &str, reason: Option<String>) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        inner.entries[i].disabled = reason;
        true
    }

    /// The credential stored under `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Arc<C>> {
        let inner = self.lock();
        inner
            .index
            .get(key)
            .map(|&i| Arc::clone(&inner.entries[i].credential))
    }

    /// Picks a credential for one upstream attempt at `model`: one that
    /// serves it, is not disabled, is not cooling down for it, is below its
    /// rate cap and is not in `tried` (keys already tried for this request).
    /// Takes one rate slot on the chosen credential.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] says why nothing fits; see its docs for which reason
    /// wins when several apply.
    pub fn select(
        &self,
        model: &str,
        tried: &[Arc<str>],
        now: Instant,
    ) -> Result<Lease<C>, Unavailable> {
        let mut guard = self.lock();
        let Inner {
            entries,
            by_model,
            any_model,
            known,
            ..
        } = &mut *guard;
        let list = match by_model.get_mut(model) {
            Some(list) => list,
            None => any_model,
        };
        let start = match self.config.strategy {
            Strategy::RoundRobin => list.cursor,
            Strategy::FillFirst => 0,
        };
        let pos = first_usable(entries, &list.members, start, model, tried, now, known)?;
        let entry = &mut entries[list.members[pos]];
        if let Some(window) = entry.rate.as_mut() {
            window.record(now);
        }
        list.cursor = (pos + 1) % list.members.len();
        Ok(Lease {
            key: Arc::clone(&entry.key),
            credential: Arc::clone(&entry.credential),
        })
    }

    /// Whether some credential could serve `model` at `now`, as [`Pool::select`] would
    /// decide with nothing tried yet, without choosing one or taking a rate slot.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when none could, and why.
    pub fn availability(&self, model: &str, now: Instant) -> Result<(), Unavailable> {
        let mut guard = self.lock();
        let Inner {
            entries,
            by_model,
            any_model,
            known,
            ..
        } = &mut *guard;
        let list = by_model.get(model).unwrap_or(any_model);
        first_usable(entries, &list.members, 0, model, &[], now, known).map(|_| ())
    }

    /// Takes a rate slot on `key` for one more request of the same client request (the retry
    /// after a refreshed token).
    pub fn take_slot(&self, key: &str, now: Instant) -> Slot {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return Slot::Gone;
        };
        let entry = &mut inner.entries[i];
        if entry.disabled.is_some() {
            return Slot::Gone;
        }
        let Some(window) = entry.rate.as_mut() else {
            return Slot::Taken;
        };
        if window.wait(now).is_some() {
            return Slot::Capped;
        }
        window.record(now);
        Slot::Taken
    }

    /// Records what the upstream said about a request sent with `key` for
    /// `model`. Unknown keys (e.g. removed meanwhile) are ignored.
    pub fn report(&self, key: &str, model: &str, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        let entry = &mut inner.entries[i];
        match outcome {
            Outcome::Failed => {}
            Outcome::Success => {
                entry.backoff.remove(model);
                entry.refusal = None;
            }
            Outcome::Refused { status } => {
                let consecutive = entry
                    .refusal
                    .map_or(0, |refusal| refusal.consecutive)
                    .saturating_add(1);
                let delay = doubled(
                    self.config.refused_base,
                    consecutive,
                    self.config.refused_max,
                );
                let until = now.checked_add(delay).unwrap_or(now);
                entry.refusal = Some(Refusal {
                    until: entry
                        .refusal
                        .map_or(until, |previous| until.max(previous.until)),
                    status,
                    consecutive,
                });
            }
            Outcome::QuotaExceeded { retry_after } => {
                let previous = entry.backoff.get(model).copied();
                let failures = previous.map_or(0, |state| state.failures).saturating_add(1);
                let delay = retry_after
                    .unwrap_or_else(|| self.backoff_delay(failures))
                    .min(MAX_COOLDOWN);
                // Unreachable in practice (`now` plus at most a week); never panic.
                let mut until = now.checked_add(delay).unwrap_or(now);
                if let Some(previous) = previous {
                    until = until.max(previous.until);
                }
                let state = Backoff { until, failures };
                match entry.backoff.get_mut(model) {
                    Some(slot) => *slot = state,
                    None => {
                        entry.backoff.insert(model.into(), state);
                    }
                }
            }
        }
    }

    /// `backoff_base * 2^(failures - 1)`, capped at `backoff_max`.
    fn backoff_delay(&self, failures: u32) -> Duration {
        doubled(self.config.backoff_base, failures, self.config.backoff_max)
    }

    /// A snapshot of every credential, in insertion order.
    #[must_use]
    pub fn statuses(&self, now: Instant) -> Vec<CredentialStatus> {
        self.lock()
            .entries
            .iter()
            .map(|entry| entry.status(now))
            .collect()
    }

    /// Every model id named by some credential's [`Models::Only`] list,
    /// sorted and deduplicated (credentials with [`Models::All`] add none).
    #[must_use]
    pub fn models(&self) -> Vec<String> {
        self.lock().known.clone()
    }

    /// Number of credentials, disabled ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the pool holds no credential.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidate lists as comparable data: (model, members) sorted by model, the `any`
    /// members, the known models and the key index.
    type Shape = (
        Vec<(String, Vec<usize>)>,
        Vec<usize>,
        Vec<String>,
        Vec<(String, usize)>,
    );

    fn shape<C>(inner: &Inner<C>) -> Shape {
        let mut by_model: Vec<(String, Vec<usize>)> = inner
            .by_model
            .iter()
            .map(|(model, c)| (model.to_string(), c.members.clone()))
            .collect();
        by_model.sort();
        let mut index: Vec<(String, usize)> = inner
            .index
            .iter()
            .map(|(key, &i)| (key.to_string(), i))
            .collect();
        index.sort();
        (
            by_model,
            inner.any_model.members.clone(),
            inner.known.clone(),
            index,
        )
    }

    #[test]
    fn adding_in_place_builds_what_a_full_rebuild_builds() {
        let only = |models: &[&str]| Models::Only(models.iter().map(|m| (*m).to_owned()).collect());
        let additions = [
            only(&["b", "a"]),
            Models::All,
            only(&["c"]),
            only(&["a", "a", "d"]),
            Models::All,
            only(&[]),
            only(&["b", "e"]),
        ];
        let pool: Pool<()> = Pool::default();
        for (i, models) in additions.into_iter().enumerate() {
            pool.upsert(&format!("k{i}"), Arc::new(()), models, None);
            let mut inner = pool.lock();
            let incremental = shape(&inner);
            inner.rebuild();
            assert_eq!(incremental, shape(&inner), "after adding k{i}");
        }
    }
}
