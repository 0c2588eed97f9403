//! The credential pool: per-model candidates in priority tiers, the strategies, session
//! affinity, cooldowns, refusals, exhaustion and rate caps behind one short-lived mutex.
//!
//! A new credential joins the candidate lists in place; they are rebuilt when one leaves
//! ([`Pool::remove`]) or changes its models or tier. [`Pool::select`] does one hash lookup for
//! the model and then walks its tiers from each strategy's pick, skipping unavailable
//! credentials, without allocating on success.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::affinity::Affinity;
use crate::candidates::{Ask, Candidates, Scope, Shortfall};
use crate::config::{Models, PoolConfig, Strategy};
use crate::day::{DailyLimits, Day, DayStatus};
use crate::entry::{Backoff, Check, Entry, Exhaustion, Rank, Refusal, Routing};
use crate::error::Unavailable;
use crate::quota_reset::QuotaReset;
use crate::rate::{RateWindow, WINDOW};
use crate::upstream_said::{UpstreamSaid, UpstreamStatus};

mod shared;

pub use shared::{SharedState, StateChange};

/// Longest cooldown a single report can impose, whatever `Retry-After` says.
const MAX_COOLDOWN: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What the upstream said about a request sent with a leased credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request succeeded: clears the cooldown and backoff of this
    /// (credential, model) pair, and any refusal or exhaustion of the credential.
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
    /// The credential's quota for the day is used up (e.g. `insufficient_quota`): the whole
    /// credential leaves rotation until `until`, without probes.
    Exhausted {
        /// When the quota resets.
        until: Instant,
    },
    /// Server error or connection failure: no cooldown; the caller just
    /// tries the next credential.
    Failed,
    /// The upstream refused the credential itself (HTTP `status`: a 401 a token refresh did
    /// not cure, a 403 that is not about quota): the whole credential leaves rotation until a
    /// probe works ([`Pool::due_probes`]); probes come `refused_base`, then twice as long
    /// after each failed one, up to `refused_max`.
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
    /// The credential is at its rate cap or at a limit of its day.
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

/// One request's question to [`Pool::select_with`].
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The model to serve.
    pub model: &'a str,
    /// Keys already tried for this request.
    pub tried: &'a [Arc<str>],
    /// The conversation the request belongs to (a hash), to keep it on one credential.
    pub conversation: Option<u64>,
    /// Which credentials may serve it.
    pub scope: &'a Scope,
    /// Now.
    pub now: Instant,
    /// Now by the wall clock: which day the request counts toward.
    pub wall: SystemTime,
}

/// A snapshot of one credential, for status pages and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStatus {
    /// The credential's key.
    pub key: Arc<str>,
    /// The models it serves.
    pub models: Models,
    /// Its weight, tier and group.
    pub routing: Routing,
    /// Why it is out of rotation, when it is disabled.
    pub disabled: Option<String>,
    /// Models it currently cools down for, sorted by model id.
    pub cooling: Vec<ModelCooldown>,
    /// Requests sent with it within the last 60 s (counted only when it has
    /// a rate cap; 0 otherwise).
    pub requests_in_window: u32,
    /// Its rate cap, when it has one.
    pub requests_per_minute: Option<NonZeroU32>,
    /// At its cap: time until the oldest request leaves the window and frees a slot.
    pub capped_for: Option<Duration>,
    /// When the upstream refused it and it waits for a probe to work.
    pub refused: Option<RefusedStatus>,
    /// Time until its quota resets, when it is exhausted.
    pub exhausted_for: Option<Duration>,
    /// Its requests and tokens of the day against its daily limits.
    pub day: DayStatus,
    /// What the upstream last said about its limits, when it said anything.
    pub upstream: Option<UpstreamStatus>,
}

/// A credential out of rotation because the upstream refused it ([`Outcome::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedStatus {
    /// The HTTP status of the refusal.
    pub status: u16,
    /// How long ago it was refused.
    pub since: Duration,
    /// Time until the next probe (zero: due now).
    pub next_probe_in: Duration,
    /// Probes that failed so far.
    pub failed_probes: u32,
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
    affinity: Affinity,
    /// Whether some credential has a `tokens-per-day`, read without the lock.
    token_limits: AtomicBool,
    /// Client keys' caps shared with other servers.
    client_caps: crate::client_caps::ClientCaps,
}

struct Inner<C> {
    /// In insertion order.
    entries: Vec<Entry<C>>,
    /// Looked up several times a request: foldhash, not SipHash (the keys are configured).
    index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    /// Every model named by some `Models::Only`; includes `Models::All` entries.
    by_model: HashMap<Box<str>, Candidates, foldhash::fast::RandomState>,
    /// `Models::All` entries, for models no `Models::Only` names.
    any_model: Candidates,
    /// Sorted keys of `by_model`.
    known: Vec<String>,
    /// Under [`Strategy::Headroom`]: the sends of capped credentials in time order, so a
    /// credential's rank rises when one of its sends leaves the window.
    sends: VecDeque<(Instant, Arc<str>)>,
    /// Counts choices, for [`Entry::last_chosen`].
    choices: u64,
    /// How credentials are picked: the config's until [`Pool::set_strategy`].
    strategy: Strategy,
    /// When a day of [`DailyLimits`] ends: the config's until [`Pool::set_quota_reset`].
    reset: QuotaReset,
    /// Limits shared with other servers: `None` until [`Pool::share_limits`].
    sharing: Option<shared::Sharing>,
}

impl<C> Inner<C> {
    fn rank(&self, index: usize) -> Rank {
        let entry = &self.entries[index];
        let room = entry
            .rate
            .as_ref()
            .map_or(u32::MAX, RateWindow::room_unpruned);
        (Reverse(room), entry.last_chosen, index)
    }

    /// Under headroom: moves entry `index` from the rank the candidate lists hold for it to
    /// its current one. The held rank is the one recorded, not one computed again, because a
    /// check of the entry may have dropped old sends from its window since (which raises its
    /// room) without moving it.
    fn rerank(&mut self, index: usize) {
        let new = self.rank(index);
        let old = std::mem::replace(&mut self.entries[index].ranked, new);
        if old != new {
            for candidates in self.all_candidates() {
                candidates.rerank(old, new);
            }
        }
    }

    fn all_candidates(&mut self) -> impl Iterator<Item = &mut Candidates> {
        self.by_model
            .values_mut()
            .chain(std::iter::once(&mut self.any_model))
    }

    /// Adds entry `index` to the candidate lists in place, in time proportional to its models
    /// (not to the pool): loading n credentials stays O(n).
    fn place(&mut self, index: usize, strategy: Strategy) {
        let priority = self.entries[index].routing.priority;
        let rank = (strategy == Strategy::Headroom).then(|| self.rank(index));
        if let Some(rank) = rank {
            self.entries[index].ranked = rank;
        }
        match self.entries[index].models.clone() {
            Models::All => {
                for candidates in self.all_candidates() {
                    candidates.add(index, priority, rank);
                }
            }
            Models::Only(list) => {
                for model in list {
                    if let Some(candidates) = self.by_model.get_mut(model.as_str()) {
                        candidates.add(index, priority, rank);
                        continue;
                    }
                    // A new model: every `Models::All` entry serves it too.
                    let mut candidates = Candidates::default();
                    for tier in &self.any_model.tiers {
                        for &member in &tier.members {
                            let member_rank = (strategy == Strategy::Headroom)
                                .then(|| self.entries[member].ranked);
                            candidates.add(member, tier.priority, member_rank);
                        }
                    }
                    candidates.add(index, priority, rank);
                    self.by_model.insert(model.as_str().into(), candidates);
                    if let Err(at) = self.known.binary_search(&model) {
                        self.known.insert(at, model);
                    }
                }
            }
        }
    }

    /// Rebuilds the key index and candidate lists after entries were removed or changed
    /// models or tier. Rotation starts over.
    fn rebuild(&mut self, strategy: Strategy) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (Arc::clone(&e.key), i))
            .collect();
        self.by_model.clear();
        self.any_model = Candidates::default();
        self.known.clear();
        for index in 0..self.entries.len() {
            self.place(index, strategy);
        }
    }

    /// Under headroom, takes the sends that left the window by `now` into account.
    fn expire_sends(&mut self, now: Instant) {
        while let Some((sent, _)) = self.sends.front() {
            if now.saturating_duration_since(*sent) < WINDOW {
                break;
            }
            let Some((_, key)) = self.sends.pop_front() else {
                break;
            };
            let Some(&index) = self.index.get(&key) else {
                continue;
            };
            if let Some(window) = self.entries[index].rate.as_mut() {
                window.room(now);
            }
            self.rerank(index);
        }
    }

    /// Takes a rate slot on entry `index` at `now` (`wall` by the wall clock), counts a request
    /// of its day and, under headroom, moves it in the ranks.
    fn record(&mut self, index: usize, now: Instant, wall: SystemTime, strategy: Strategy) {
        self.choices += 1;
        let choices = self.choices;
        let reset = self.reset;
        let entry = &mut self.entries[index];
        entry.last_chosen = choices;
        Day::current(&mut entry.day, reset, now, wall).count_request();
        let capped = match entry.rate.as_mut() {
            Some(window) => {
                window.record(now);
                true
            }
            None => false,
        };
        if let Some(leases) = entry.leases.as_mut() {
            leases.take(now);
        }
        if strategy == Strategy::Headroom {
            if capped {
                let key = Arc::clone(&self.entries[index].key);
                self.sends.push_back((now, key));
            }
            self.rerank(index);
        }
    }
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

/// `base * 2^(n - 1)`, capped at `max` (`n` counts from 1).
fn doubled(base: Duration, n: u32, max: Duration) -> Duration {
    let exponent = n.saturating_sub(1).min(31);
    base.saturating_mul(1_u32 << exponent).min(max)
}

impl<C> Pool<C> {
    /// An empty pool.
    #[must_use]
    pub fn new(config: PoolConfig) -> Self {
        let (strategy, reset) = (config.strategy, config.quota_reset);
        Self {
            affinity: Affinity::new(config.affinity_capacity, config.affinity_ttl),
            config,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                index: HashMap::default(),
                by_model: HashMap::default(),
                any_model: Candidates::default(),
                known: Vec::new(),
                sends: VecDeque::new(),
                choices: 0,
                strategy,
                reset,
                sharing: None,
            }),
            token_limits: AtomicBool::new(false),
            client_caps: crate::client_caps::ClientCaps::default(),
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
    /// position, routing, cooldowns, refusal, backoff counters and rate window (trimmed to a
    /// lower cap), and re-enables it. `requests_per_minute: None` means no cap.
    pub fn upsert(
        &self,
        key: &str,
        credential: Arc<C>,
        models: Models,
        requests_per_minute: Option<NonZeroU32>,
    ) {
        let mut inner = self.lock();
        let strategy = inner.strategy;
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
            inner.fit_leases(i);
            let entry = &mut inner.entries[i];
            if entry.models != models {
                entry.models = models;
                inner.rebuild(strategy);
            } else if strategy == Strategy::Headroom {
                inner.rerank(i);
            }
            return;
        }
        let entry = Entry::new(
            key.into(),
            credential,
            models,
            requests_per_minute.map(RateWindow::new),
        );
        let index = inner.entries.len();
        inner.index.insert(Arc::clone(&entry.key), index);
        inner.entries.push(entry);
        inner.fit_leases(index);
        inner.place(index, strategy);
    }

    /// Sets a credential's weight, tier and group; `false` when the key is unknown.
    pub fn set_routing(&self, key: &str, routing: Routing) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        if inner.entries[i].routing == routing {
            return true;
        }
        let moves_tier = inner.entries[i].routing.priority != routing.priority;
        inner.entries[i].routing = routing;
        if moves_tier {
            let strategy = inner.strategy;
            inner.rebuild(strategy);
        } else {
            // The weight shapes the wheels; the group is read at each pick.
            for candidates in inner.all_candidates() {
                candidates.reweigh();
            }
        }
        true
    }

    /// Sets a credential's limits of the day (`requests-per-day`, `tokens-per-day`); what it
    /// used today stays. `false` when the key is unknown.
    pub fn set_daily_limits(&self, key: &str, limits: DailyLimits) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        inner.entries[i].limits = limits;
        self.note_token_limits(&inner);
        true
    }

    fn note_token_limits(&self, inner: &Inner<C>) {
        let any = inner
            .entries
            .iter()
            .any(|entry| entry.limits.tokens.is_some());
        self.token_limits.store(any, Ordering::Relaxed);
    }

    /// Whether some credential has a `tokens-per-day`, so answers' tokens must be counted
    /// ([`Pool::spend_tokens`]) even when nothing else counts them.
    #[must_use]
    pub fn counts_tokens(&self) -> bool {
        self.token_limits.load(Ordering::Relaxed)
    }

    /// Ends days of [`DailyLimits`] at `reset` from now on (a config reload). A day already
    /// running keeps its end.
    pub fn set_quota_reset(&self, reset: QuotaReset) {
        self.lock().reset = reset;
    }

    /// Counts `tokens` of an answer served with `key` toward its day (`now`, `wall` by the
    /// wall clock). At its `tokens-per-day` it leaves rotation until the day ends. Unknown
    /// keys are ignored.
    pub fn spend_tokens(&self, key: &str, tokens: u64, now: Instant, wall: SystemTime) {
        let mut inner = self.lock();
        let reset = inner.reset;
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        Day::current(&mut inner.entries[i].day, reset, now, wall).count_tokens(tokens);
    }

    /// Records what the upstream said about `key`'s limits at `now` (its rate-limit headers,
    /// `Retry-After`, a quota error's message), replacing what it said before. Unknown keys
    /// are ignored.
    pub fn heard(&self, key: &str, said: UpstreamSaid, now: Instant) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        inner.entries[i].heard = Some((said, now));
    }

    /// Picks credentials by `strategy` from now on (a config reload); pins, cooldowns and
    /// rate windows stay.
    pub fn set_strategy(&self, strategy: Strategy) {
        let mut inner = self.lock();
        if inner.strategy == strategy {
            return;
        }
        inner.strategy = strategy;
        // Headroom's send log is kept only under headroom: a fresh one starts now.
        inner.sends.clear();
        inner.rebuild(strategy);
    }

    /// The strategy credentials are picked by.
    pub fn strategy(&self) -> Strategy {
        self.lock().strategy
    }

    /// Removes a credential; `false` when the key was unknown.
    pub fn remove(&self, key: &str) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        inner.entries.remove(i);
        let strategy = inner.strategy;
        inner.rebuild(strategy);
        self.note_token_limits(&inner);
        true
    }

    /// Takes a credential out of rotation with a reason shown in
    /// [`Pool::statuses`] (e.g. its refresh token is dead and it needs a
    /// re-login, or the operator disabled it), or puts it back with `None`. `false` when the
    /// key was unknown.
    pub fn set_disabled(&self, key: &str, reason: Option<String>) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        inner.entries[i].disabled = reason;
        true
    }

    /// Forgets that the upstream refused the credential under `key` (the operator puts it
    /// back: `accounts enable`), so the next request tries it instead of waiting for a probe;
    /// `false` when the key is unknown.
    pub fn clear_refusal(&self, key: &str) -> bool {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return false;
        };
        if inner.entries[i].refusal.take().is_some() {
            inner.refusal_ended(i);
        }
        true
    }

    /// Why the credential under `key` is out of rotation, if it is disabled.
    #[must_use]
    pub fn disabled_reason(&self, key: &str) -> Option<String> {
        let inner = self.lock();
        let &i = inner.index.get(key)?;
        inner.entries[i].disabled.clone()
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

    /// Picks a credential for one upstream attempt at `model`, for any client and no
    /// conversation: [`Pool::select_with`] with [`Scope::all`].
    ///
    /// # Errors
    ///
    /// [`Unavailable`] says why nothing fits.
    pub fn select(
        &self,
        model: &str,
        tried: &[Arc<str>],
        now: Instant,
        wall: SystemTime,
    ) -> Result<Lease<C>, Unavailable> {
        self.select_with(Selection {
            model,
            tried,
            conversation: None,
            scope: &Scope::all(),
            now,
            wall,
        })
    }

    /// Picks a credential for one upstream attempt: one that serves the model, is in scope,
    /// is not disabled, refused or exhausted, is not cooling down for the model, is below its
    /// rate cap and its limits of the day, and was not tried. A conversation stays on the credential it is pinned to
    /// while that one is usable and no better tier is; otherwise it moves, and its pin
    /// follows. Takes one rate slot on the chosen credential and counts one request of its day.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] says why nothing fits; see its docs for which reason
    /// wins when several apply.
    pub fn select_with(&self, selection: Selection<'_>) -> Result<Lease<C>, Unavailable> {
        let pinned = selection
            .conversation
            .and_then(|conversation| self.affinity.pinned(conversation, selection.now));
        let ask = Ask {
            model: selection.model,
            tried: selection.tried,
            scope: selection.scope,
            now: selection.now,
        };
        let lease = {
            let mut guard = self.lock();
            let strategy = guard.strategy;
            if strategy == Strategy::Headroom {
                guard.expire_sends(selection.now);
            }
            let inner = &mut *guard;
            let candidates = match inner.by_model.get_mut(selection.model) {
                Some(list) => list,
                None => &mut inner.any_model,
            };
            if candidates.is_empty() {
                return Err(Unavailable::UnknownModel {
                    model: selection.model.to_owned(),
                    known: inner.known.clone(),
                });
            }
            let mut shortfall = Shortfall::default();
            let kept = pinned
                .and_then(|key| inner.index.get(&key).copied())
                .filter(|&index| keeps_pin(&mut inner.entries, candidates, index, strategy, &ask));
            let index = match kept {
                Some(index) => index,
                None => {
                    let Some(found) =
                        candidates.find(&mut inner.entries, strategy, &ask, &mut shortfall)
                    else {
                        return Err(shortfall.into_unavailable(selection.model));
                    };
                    candidates.chosen(found, strategy);
                    found.index
                }
            };
            inner.record(index, selection.now, selection.wall, strategy);
            let entry = &inner.entries[index];
            Lease {
                key: Arc::clone(&entry.key),
                credential: Arc::clone(&entry.credential),
            }
        };
        if let Some(conversation) = selection.conversation {
            self.affinity.pin(conversation, &lease.key, selection.now);
        }
        Ok(lease)
    }

    /// Whether some credential could serve `model` at `now`, as [`Pool::select`] would
    /// decide with nothing tried yet, without choosing one or taking a rate slot.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when none could, and why.
    pub fn availability(&self, model: &str, now: Instant) -> Result<(), Unavailable> {
        let scope = Scope::all();
        let ask = Ask {
            model,
            tried: &[],
            scope: &scope,
            now,
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        let strategy = inner.strategy;
        let candidates = match inner.by_model.get_mut(model) {
            Some(list) => list,
            None => &mut inner.any_model,
        };
        if candidates.is_empty() {
            return Err(Unavailable::UnknownModel {
                model: model.to_owned(),
                known: inner.known.clone(),
            });
        }
        let mut shortfall = Shortfall::default();
        match candidates.find(&mut inner.entries, strategy, &ask, &mut shortfall) {
            Some(_) => Ok(()),
            None => Err(shortfall.into_unavailable(model)),
        }
    }

    /// Takes a rate slot on `key` for one more request of the same client request (the retry
    /// after a refreshed token), counting it toward the credential's day.
    pub fn take_slot(&self, key: &str, now: Instant, wall: SystemTime) -> Slot {
        let mut inner = self.lock();
        let strategy = inner.strategy;
        let Some(&i) = inner.index.get(key) else {
            return Slot::Gone;
        };
        let entry = &mut inner.entries[i];
        if entry.disabled.is_some() || entry.refusal.is_some() {
            return Slot::Gone;
        }
        let day_limited = entry
            .day
            .as_ref()
            .is_some_and(|day| day.limited_for(entry.limits, now).is_some());
        if day_limited
            || entry
                .rate
                .as_mut()
                .is_some_and(|window| window.wait(now).is_some())
            || entry
                .leases
                .as_ref()
                .is_some_and(|leases| leases.wait(now).is_some())
        {
            return Slot::Capped;
        }
        inner.record(i, now, wall, strategy);
        Slot::Taken
    }

    /// Records what the upstream said about a request sent with `key` for
    /// `model`. Unknown keys (e.g. removed meanwhile) are ignored.
    pub fn report(&self, key: &str, model: &str, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        self.report_locked(&mut inner, i, model, outcome, now);
    }

    /// [`Pool::report`] of a success whose answer used `tokens`, counted in the credential's
    /// day as [`Pool::spend_tokens`] counts them, under the one lock.
    pub fn report_success_spending(
        &self,
        key: &str,
        model: &str,
        tokens: u64,
        now: Instant,
        wall: SystemTime,
    ) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        let reset = inner.reset;
        Day::current(&mut inner.entries[i].day, reset, now, wall).count_tokens(tokens);
        self.report_locked(&mut inner, i, model, Outcome::Success, now);
    }

    /// [`Pool::report`] of the credential at `i`, under the lock.
    fn report_locked(
        &self,
        inner: &mut Inner<C>,
        i: usize,
        model: &str,
        outcome: Outcome,
        now: Instant,
    ) {
        let before = inner.before_report(i, model);
        let entry = &mut inner.entries[i];
        match outcome {
            Outcome::Failed => {}
            Outcome::Success => {
                // Nearly always empty: a removal would hash the model for nothing.
                if !entry.backoff.is_empty() {
                    entry.backoff.remove(model);
                }
                entry.refusal = None;
                entry.exhaustion = None;
            }
            Outcome::Refused { status } => {
                let probe = self.config.refused_base;
                entry.refusal = Some(match entry.refusal {
                    Some(refusal) => Refusal { status, ..refusal },
                    None => Refusal {
                        since: now,
                        status,
                        next_probe: now.checked_add(probe).unwrap_or(now),
                        probes: 0,
                    },
                });
            }
            Outcome::Exhausted { until } => {
                let until = until.min(now.checked_add(MAX_COOLDOWN).unwrap_or(now));
                entry.exhaustion = Some(Exhaustion {
                    until: entry
                        .exhaustion
                        .map_or(until, |previous| until.max(previous.until)),
                });
            }
            Outcome::QuotaExceeded { retry_after } => {
                let previous = entry.backoff.get(model).copied();
                let failures = previous.map_or(0, |state| state.failures).saturating_add(1);
                let delay = retry_after
                    .unwrap_or_else(|| {
                        doubled(self.config.backoff_base, failures, self.config.backoff_max)
                    })
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
        inner.after_report(i, model, before);
    }

    /// The refused credentials whose probe is due at `now`. Each is handed out once per due
    /// time: its next probe is scheduled as if this one failed, until [`Pool::probed`] says
    /// how it went.
    #[must_use]
    pub fn due_probes(&self, now: Instant) -> Vec<Lease<C>> {
        let mut inner = self.lock();
        let mut due = Vec::new();
        for entry in &mut inner.entries {
            let Some(refusal) = entry.refusal.as_mut() else {
                continue;
            };
            if refusal.next_probe > now || entry.disabled.is_some() {
                continue;
            }
            let wait = doubled(
                self.config.refused_base,
                refusal.probes.saturating_add(2),
                self.config.refused_max,
            );
            refusal.next_probe = now.checked_add(wait).unwrap_or(now);
            due.push(Lease {
                key: Arc::clone(&entry.key),
                credential: Arc::clone(&entry.credential),
            });
        }
        due
    }

    /// How a probe of refused credential `key` went: `true` puts it back in rotation,
    /// `false` counts a failed probe (the next one is already scheduled, twice as far).
    pub fn probed(&self, key: &str, worked: bool) {
        let mut inner = self.lock();
        let Some(&i) = inner.index.get(key) else {
            return;
        };
        let entry = &mut inner.entries[i];
        if worked {
            if entry.refusal.take().is_some() {
                inner.refusal_ended(i);
            }
        } else if let Some(refusal) = entry.refusal.as_mut() {
            refusal.probes = refusal.probes.saturating_add(1);
        }
    }

    /// When the next refused credential's probe is due, if any is refused.
    #[must_use]
    pub fn next_probe(&self) -> Option<Instant> {
        self.lock()
            .entries
            .iter()
            .filter(|entry| entry.disabled.is_none())
            .filter_map(|entry| entry.refusal.map(|refusal| refusal.next_probe))
            .min()
    }

    /// A snapshot of every credential with the credential itself, in insertion order.
    #[must_use]
    pub fn snapshot(&self, now: Instant) -> Vec<(CredentialStatus, Arc<C>)> {
        self.lock()
            .entries
            .iter()
            .map(|entry| (status(entry, now), Arc::clone(&entry.credential)))
            .collect()
    }

    /// A snapshot of every credential, in insertion order.
    #[must_use]
    pub fn statuses(&self, now: Instant) -> Vec<CredentialStatus> {
        self.lock()
            .entries
            .iter()
            .map(|entry| status(entry, now))
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

    /// Conversations pinned now.
    #[must_use]
    pub fn pinned_conversations(&self) -> usize {
        self.affinity.len()
    }
}

/// Whether a conversation pinned to entry `index` stays there: it serves the model, is in
/// scope and usable, and no tier before its own has a usable credential.
fn keeps_pin<C>(
    entries: &mut [Entry<C>],
    candidates: &mut Candidates,
    index: usize,
    strategy: Strategy,
    ask: &Ask<'_>,
) -> bool {
    let entry = &mut entries[index];
    let usable = entry.models.serves(ask.model)
        && ask.scope.admits(entry)
        && matches!(entry.check(ask.model, ask.tried, ask.now), Check::Usable);
    let priority = entry.routing.priority;
    usable && !candidates.usable_before(priority, entries, strategy, ask)
}

fn status<C>(entry: &Entry<C>, now: Instant) -> CredentialStatus {
    let mut cooling: Vec<ModelCooldown> = entry
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
        key: Arc::clone(&entry.key),
        models: entry.models.clone(),
        routing: entry.routing.clone(),
        disabled: entry.disabled.clone(),
        cooling,
        requests_in_window: entry
            .rate
            .as_ref()
            .map_or(0, |window| window.in_window(now)),
        requests_per_minute: entry.rate.as_ref().map(RateWindow::cap),
        capped_for: entry
            .rate
            .as_ref()
            .and_then(|window| window.wait_at(now))
            .or_else(|| entry.leases.as_ref().and_then(|leases| leases.wait(now))),
        refused: entry.refusal.map(|refusal| RefusedStatus {
            status: refusal.status,
            since: now.saturating_duration_since(refusal.since),
            next_probe_in: refusal.next_probe.saturating_duration_since(now),
            failed_probes: refusal.probes,
        }),
        exhausted_for: entry
            .exhaustion
            .filter(|exhaustion| exhaustion.until > now)
            .map(|exhaustion| exhaustion.until.saturating_duration_since(now)),
        day: Day::status(entry.day.as_ref(), entry.limits, now),
        upstream: entry.heard.as_ref().map(|(said, at)| UpstreamStatus {
            said: said.clone(),
            ago: now.saturating_duration_since(*at),
        }),
    }
}

impl Shortfall {
    /// Why nothing fits, first match wins: no candidate is in scope, some candidate was
    /// tried, some waits, else all are out.
    fn into_unavailable(self, model: &str) -> Unavailable {
        let model = model.to_owned();
        if self.outside > 0 && self.out == 0 && self.tried == 0 && self.waiting == 0 {
            Unavailable::NotAllowed { model }
        } else if self.tried > 0 {
            Unavailable::Exhausted { model }
        } else if let Some(retry_after) = self.earliest {
            Unavailable::CoolingDown {
                model,
                retry_after,
                waiting: self.waiting,
            }
        } else {
            Unavailable::Disabled {
                model,
                count: self.out,
            }
        }
    }
}
