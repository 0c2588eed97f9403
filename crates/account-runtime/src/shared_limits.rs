//! Limits shared by the servers of one PostgreSQL store: keeps the pool's slot leases filled
//! from the shared count, tells the others of the states this server saw (cooldowns,
//! refusals, exhaustion, and their ends), and applies what they saw. Everything here runs in
//! tasks of its own; the request path only reads what they left in the pool.
//!
//! When the database cannot be reached, the pool falls back to its own windows and states
//! (logged once) and the sharer keeps asking, once a second, until it is back.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use account_store::{
    ChangeFeed, CredentialState, DayCount, Held, LimitsChange, PgStore, SLOT_LEASE, SlotAnswer,
    SlotAsk, StateKind, StoreError,
};
use credential_pool::{Counts, Pool, SharedState, SlotGrant, SlotNeed, StateChange};
use tokio::sync::mpsc;

/// How often the pool is looked at for leases to fill and states to tell.
const TICK: Duration = Duration::from_millis(50);
/// How long one exchange with the database may take before it counts as unreachable.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an unreachable database is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the counts of the day are added up across the servers.
const DAY_SYNC: Duration = Duration::from_secs(1);

/// Shares the limits until dropped.
pub struct SharedLimits {
    _feed: ChangeFeed,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SharedLimits {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts sharing `pool`'s limits through `store`: reads the states that hold and fills the
/// leases once before it returns, so the first requests find slots. Must run inside the Tokio
/// runtime.
pub async fn share_limits<C: Send + Sync + 'static>(
    pool: Arc<Pool<C>>,
    store: PgStore,
) -> SharedLimits {
    let (feed, changes) = store.follow_limits();
    let online = join(&pool, &store).await.is_ok() && step(&pool, &store).await.is_ok();
    if !online {
        pool.share_limits(false);
        warn_local(&store);
    }
    let heard = tokio::spawn(apply_heard(Arc::clone(&pool), store.clone(), changes));
    let synced = tokio::spawn(sync(pool, store, online));
    SharedLimits {
        _feed: feed,
        tasks: vec![heard, synced],
    }
}

/// Turns sharing on, with the states that hold now.
async fn join<C>(pool: &Pool<C>, store: &PgStore) -> Result<(), StoreError> {
    let states = exchange(store, store.credential_states()).await?;
    pool.share_limits(true);
    apply_all(pool, &states);
    Ok(())
}

fn warn_local(store: &PgStore) {
    tracing::warn!(
        "shared limits: the PostgreSQL store {} cannot be reached; each server keeps its own rate windows and credential states until it is back",
        store.target()
    );
}

/// Fills leases and tells states, forever; falls back to local limits while the store is
/// away (logged once), and rejoins when it is back.
async fn sync<C: Send + Sync + 'static>(pool: Arc<Pool<C>>, store: PgStore, mut online: bool) {
    let mut days_synced = Instant::now();
    loop {
        if !online {
            tokio::time::sleep(RETRY).await;
            if join(&pool, &store).await.is_err() {
                continue;
            }
            online = true;
            tracing::info!(
                "shared limits: the PostgreSQL store {} is back; rate caps and credential states are shared again",
                store.target()
            );
        }
        let mut stepped = step(&pool, &store).await;
        if stepped.is_ok() && days_synced.elapsed() >= DAY_SYNC {
            days_synced = Instant::now();
            stepped = share_days(&pool, &store).await;
        }
        if let Err(error) = stepped {
            pool.share_limits(false);
            online = false;
            tracing::debug!("shared limits: {error}");
            warn_local(&store);
            continue;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// One look at the pool: leases filled, states told.
async fn step<C>(pool: &Pool<C>, store: &PgStore) -> Result<(), StoreError> {
    let asked_at = Instant::now();
    let credentials = pool.slot_needs(asked_at);
    let clients = pool.client_slot_needs(asked_at);
    if !credentials.is_empty() || !clients.is_empty() {
        let asks: Vec<SlotAsk> = credentials
            .iter()
            .map(|need| ask(CREDENTIAL_CAP, need))
            .chain(clients.iter().map(|need| ask(CLIENT_CAP, need)))
            .collect();
        match exchange(store, store.take_slots(&asks)).await {
            Ok(answers) => {
                let now = Instant::now();
                let mut answers = answers.into_iter();
                for need in &credentials {
                    if let Some(Some(answer)) = answers.next() {
                        pool.grant_slots(&need.key, grant(answer, asked_at), now);
                    }
                }
                for need in &clients {
                    if let Some(Some(answer)) = answers.next() {
                        pool.grant_client_slots(&need.key, grant(answer, asked_at), now);
                    }
                }
            }
            Err(error) => {
                let retry = Instant::now() + RETRY;
                for need in credentials.iter().filter(|need| need.wanted > 0) {
                    pool.slots_failed(&need.key, retry);
                }
                for need in clients.iter().filter(|need| need.wanted > 0) {
                    pool.client_slots_failed(&need.key, retry);
                }
                return Err(error);
            }
        }
    }
    let changes = pool.take_state_changes(Instant::now());
    if !changes.is_empty() {
        let states: Vec<CredentialState> = changes.iter().map(state_of).collect();
        exchange(store, store.publish_states(&states)).await?;
    }
    Ok(())
}

/// Adds this server's counts of the day to the other servers', for credentials with a daily
/// limit and client keys with a `tokens-per-day`.
async fn share_days<C>(pool: &Pool<C>, store: &PgStore) -> Result<(), StoreError> {
    let wall = SystemTime::now();
    let days = pool.day_counts(Instant::now(), wall);
    if !days.is_empty() {
        let rows: Vec<(String, i64, DayCount)> = days
            .iter()
            .map(|(key, ends, counts)| {
                let counts = DayCount {
                    requests: counts.requests,
                    tokens: counts.tokens,
                };
                (key.to_string(), epoch_seconds(*ends), counts)
            })
            .collect();
        let others = exchange(store, store.sync_day_counts("credential", &rows)).await?;
        for ((key, ends, _), others) in days.iter().zip(others) {
            let others = Counts {
                requests: others.requests,
                tokens: others.tokens,
            };
            if pool.set_others_day(key, *ends, others, Instant::now()) {
                tracing::info!(
                    credential = %key,
                    "at its limit of the day, counting the other servers' requests and tokens; out of rotation until the quota reset"
                );
            }
        }
    }
    let clients = pool.client_day_counts(wall);
    if !clients.is_empty() {
        let rows: Vec<(String, i64, DayCount)> = clients
            .iter()
            .map(|(name, ends, tokens)| {
                let counts = DayCount {
                    requests: 0,
                    tokens: *tokens,
                };
                (name.to_string(), epoch_seconds(*ends), counts)
            })
            .collect();
        let others = exchange(store, store.sync_day_counts("client", &rows)).await?;
        for ((name, ends, _), others) in clients.iter().zip(others) {
            if pool.set_client_others_day(name, *ends, others.tokens) {
                tracing::debug!(
                    client = %name,
                    tokens = others.tokens,
                    "tokens of the day counted by the other servers"
                );
            }
        }
    }
    Ok(())
}

fn epoch_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

/// The prefix of a credential's cap in the shared count.
const CREDENTIAL_CAP: &str = "credential:";
/// The prefix of a client key's cap in the shared count.
const CLIENT_CAP: &str = "client:";

fn ask(prefix: &str, need: &SlotNeed) -> SlotAsk {
    SlotAsk {
        key: format!("{prefix}{}", need.key),
        cap: need.cap,
        wanted: need.wanted,
        unused: need
            .unused
            .iter()
            .map(|unused| (unused.ticket, unused.slots))
            .collect(),
    }
}

/// The parcel an answer grants, for a question asked at `asked_at`.
fn grant(answer: SlotAnswer, asked_at: Instant) -> SlotGrant {
    SlotGrant {
        ticket: answer.ticket,
        slots: answer.slots,
        // Read before asking: never later than the end the store recorded.
        expires: asked_at + SLOT_LEASE,
        frees: asked_at + answer.frees_in,
    }
}

/// Runs one exchange with the store within [`EXCHANGE_TIMEOUT`].
async fn exchange<T>(
    store: &PgStore,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unreachable {
                op: "share limits",
                target: store.target().to_owned(),
                detail: format!("no answer within {} s", EXCHANGE_TIMEOUT.as_secs()),
            })
        })
}

/// Applies the states other servers tell of, as they come.
async fn apply_heard<C>(
    pool: Arc<Pool<C>>,
    store: PgStore,
    mut changes: mpsc::UnboundedReceiver<LimitsChange>,
) {
    while let Some(change) = changes.recv().await {
        match change {
            LimitsChange::State(state) => {
                if pool.shares_limits() {
                    apply(&pool, &state, Instant::now());
                }
            }
            LimitsChange::Resync => {
                // Missed changes: read every state that holds.
                if pool.shares_limits()
                    && let Ok(states) = exchange(&store, store.credential_states()).await
                {
                    apply_all(&pool, &states);
                }
            }
        }
    }
}

fn apply_all<C>(pool: &Pool<C>, states: &[CredentialState]) {
    let now = Instant::now();
    for state in states {
        apply(pool, state, now);
    }
}

fn apply<C>(pool: &Pool<C>, state: &CredentialState, now: Instant) {
    if let Some(shared) = shared_of(state) {
        pool.apply_shared_state(&state.key, &shared, now);
        tracing::info!(
            credential = %state.key,
            "{} (heard from another server)",
            describe(&shared)
        );
    }
}

/// A state in words, for the log.
fn describe(state: &SharedState) -> String {
    match state {
        SharedState::Cooling {
            model, remaining, ..
        } => format!("cooling down for {model} for {} s", remaining.as_secs()),
        SharedState::CoolingEnded { model } => format!("cooldown for {model} ended"),
        SharedState::Refused { status } => {
            format!("refused by the upstream (HTTP {status}), out of rotation until a probe works")
        }
        SharedState::RefusalEnded => "the upstream accepts it again".to_owned(),
        SharedState::Exhausted { remaining } => {
            format!("quota used up for {} s", remaining.as_secs())
        }
        SharedState::ExhaustionEnded => "quota back".to_owned(),
    }
}

/// A state as the pool knows it.
fn shared_of(state: &CredentialState) -> Option<SharedState> {
    let model = state.model.clone();
    Some(match (state.kind, state.held) {
        (StateKind::Cooling, Some(held)) => SharedState::Cooling {
            model,
            remaining: held.remaining?,
            failures: held.failures,
        },
        (StateKind::Cooling, None) => SharedState::CoolingEnded { model },
        (StateKind::Refused, Some(held)) => SharedState::Refused {
            status: held.status.unwrap_or(401),
        },
        (StateKind::Refused, None) => SharedState::RefusalEnded,
        (StateKind::Exhausted, Some(held)) => SharedState::Exhausted {
            remaining: held.remaining?,
        },
        (StateKind::Exhausted, None) => SharedState::ExhaustionEnded,
    })
}

/// A state change as the store shares it.
fn state_of(change: &StateChange) -> CredentialState {
    let key = change.key.to_string();
    let state = |kind, model: &str, held| CredentialState {
        key: key.clone(),
        kind,
        model: model.to_owned(),
        held,
    };
    let lasting = |remaining, status, failures| {
        Some(Held {
            remaining,
            status,
            failures,
        })
    };
    match &change.state {
        SharedState::Cooling {
            model,
            remaining,
            failures,
        } => state(
            StateKind::Cooling,
            model,
            lasting(Some(*remaining), None, *failures),
        ),
        SharedState::CoolingEnded { model } => state(StateKind::Cooling, model, None),
        SharedState::Refused { status } => {
            state(StateKind::Refused, "", lasting(None, Some(*status), 0))
        }
        SharedState::RefusalEnded => state(StateKind::Refused, "", None),
        SharedState::Exhausted { remaining } => {
            state(StateKind::Exhausted, "", lasting(Some(*remaining), None, 0))
        }
        SharedState::ExhaustionEnded => state(StateKind::Exhausted, "", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_survives_the_trip_through_the_store() {
        let states = [
            SharedState::Cooling {
                model: "m".into(),
                remaining: Duration::from_secs(3),
                failures: 2,
            },
            SharedState::CoolingEnded { model: "m".into() },
            SharedState::Refused { status: 403 },
            SharedState::RefusalEnded,
            SharedState::Exhausted {
                remaining: Duration::from_secs(9),
            },
            SharedState::ExhaustionEnded,
        ];
        for shared in states {
            let change = StateChange {
                key: "qwen-a@b.com".into(),
                state: shared.clone(),
            };
            assert_eq!(shared_of(&state_of(&change)), Some(shared));
        }
    }
}
