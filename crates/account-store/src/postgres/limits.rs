//! Limits the servers of one database share: parcels of rate-cap slots taken from a shared
//! count (`cliproxy_rate_grants`), and the states that take a credential out of rotation
//! (`cliproxy_credential_states`), announced on the channel `cliproxy_limits` so every server
//! hears of them within moments. All times are the database's (`now()`), so servers whose
//! clocks disagree still agree on windows; durations travel, never instants.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::PgStore;
use super::listen::{self, Channels};
use crate::error::StoreError;

/// The channel of credential states; the payload is `<origin> <JSON>`.
pub(crate) const LIMITS_CHANNEL: &str = "cliproxy_limits";

/// How long a parcel of slots lives. Its slots count against the cap for a minute after
/// that, so the longer it lives the less of the cap is usable (60 / (60 + 3): about 95 %);
/// the shorter, the more often each server asks.
pub const SLOT_LEASE: Duration = Duration::from_secs(3);

/// A server's ask for slots of one shared cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAsk {
    /// The cap's key: `credential:<key>` or `client:<name>`.
    pub key: String,
    /// Sends allowed a minute.
    pub cap: u32,
    /// Slots wanted (zero: only hand back `unused`).
    pub wanted: u32,
    /// Slots of ended parcels (ticket, slots) handed back.
    pub unused: Vec<(i64, u32)>,
}

/// What the shared count granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAnswer {
    /// Names the parcel, to hand back what it does not use.
    pub ticket: i64,
    /// Slots granted, at most the ones wanted; zero when none was free.
    pub slots: u32,
    /// Time until the shared window frees a slot (with none granted), else the parcel's life.
    pub frees_in: Duration,
}

/// Which state of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Cooling down for one model.
    Cooling,
    /// Refused by the upstream until a probe works.
    Refused,
    /// Its quota is used up.
    Exhausted,
}

impl StateKind {
    fn as_str(self) -> &'static str {
        match self {
            StateKind::Cooling => "cooling",
            StateKind::Refused => "refused",
            StateKind::Exhausted => "exhausted",
        }
    }

    fn parse(text: &str) -> Option<StateKind> {
        match text {
            "cooling" => Some(StateKind::Cooling),
            "refused" => Some(StateKind::Refused),
            "exhausted" => Some(StateKind::Exhausted),
            _ => None,
        }
    }
}

/// A state of a credential as servers share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialState {
    /// The credential's key.
    pub key: String,
    /// Which state.
    pub kind: StateKind,
    /// The model, for [`StateKind::Cooling`]; empty otherwise.
    pub model: String,
    /// The state as it holds; `None`: it ended.
    pub held: Option<Held>,
}

/// A state that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Time left; `None` for a refusal (it lasts until a probe works).
    pub remaining: Option<Duration>,
    /// The HTTP status of a refusal.
    pub status: Option<u16>,
    /// Consecutive quota failures of a cooldown.
    pub failures: u32,
}

/// One server's counts of a day of a credential, or the other servers' sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayCount {
    /// Requests of the day.
    pub requests: u64,
    /// Tokens of the day.
    pub tokens: u64,
}

/// What the limits feed says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsChange {
    /// Another server saw a state change.
    State(CredentialState),
    /// The feed (re)started: read every state anew ([`PgStore::credential_states`]).
    Resync,
}

impl PgStore {
    /// Takes slots of shared caps and hands back unused ones, in one transaction; the answers
    /// come in the order of `asks`, `None` for asks that wanted no slots.
    pub async fn take_slots(
        &self,
        asks: &[SlotAsk],
    ) -> Result<Vec<Option<SlotAnswer>>, StoreError> {
        let op = "take rate-cap slots";
        let transaction = self.begin(op).await?;
        let client = transaction.client();
        let fail = |error: tokio_postgres::Error| self.fail(op, &error);
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            for &(ticket, slots) in &ask.unused {
                let slots = i32::try_from(slots).unwrap_or(i32::MAX);
                client
                    .execute(
                        "UPDATE cliproxy_rate_grants SET slots = greatest(slots - $2, 0) \
                         WHERE id = $1",
                        &[&ticket, &slots],
                    )
                    .await
                    .map_err(fail)?;
            }
            if ask.wanted == 0 {
                answers.push(None);
                continue;
            }
            // One server at a time per cap, until the transaction ends.
            client
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('cliproxy_rate:' || $1, 0))",
                    &[&ask.key],
                )
                .await
                .map_err(fail)?;
            let row = client
                .query_one(
                    "WITH gone AS (
                         DELETE FROM cliproxy_rate_grants
                         WHERE key = $1 AND expires_at + interval '60 seconds' <= now()
                     ), live AS (
                         SELECT coalesce(sum(slots), 0)::bigint AS used,
                                min(expires_at) FILTER (WHERE slots > 0) AS oldest
                         FROM cliproxy_rate_grants
                         WHERE key = $1 AND expires_at + interval '60 seconds' > now()
                     ), granted AS (
                         INSERT INTO cliproxy_rate_grants (key, slots, expires_at)
                         SELECT $1, least($3::bigint, $2::bigint - used)::integer,
                                now() + $4::float8 * interval '1 second'
                         FROM live WHERE $2::bigint - used > 0
                         RETURNING id, slots
                     )
                     SELECT (SELECT id FROM granted), (SELECT slots FROM granted),
                            (SELECT extract(epoch FROM oldest + interval '60 seconds' - now())::float8
                             FROM live)",
                    &[
                        &ask.key,
                        &i64::from(ask.cap),
                        &i64::from(ask.wanted),
                        &SLOT_LEASE.as_secs_f64(),
                    ],
                )
                .await
                .map_err(fail)?;
            let ticket: Option<i64> = row.get(0);
            let slots: Option<i32> = row.get(1);
            let frees: Option<f64> = row.get(2);
            answers.push(Some(match (ticket, slots) {
                (Some(ticket), Some(slots)) => SlotAnswer {
                    ticket,
                    slots: u32::try_from(slots).unwrap_or(0),
                    frees_in: SLOT_LEASE,
                },
                _ => SlotAnswer {
                    ticket: 0,
                    slots: 0,
                    frees_in: seconds(frees.unwrap_or(1.0)),
                },
            }));
        }
        transaction.commit().await?;
        Ok(answers)
    }

    /// Records state changes this server saw and announces each to the other servers, in one
    /// transaction.
    pub async fn publish_states(&self, states: &[CredentialState]) -> Result<(), StoreError> {
        let op = "share credential states";
        let transaction = self.begin(op).await?;
        let client = transaction.client();
        let fail = |error: tokio_postgres::Error| self.fail(op, &error);
        client
            .execute(
                "DELETE FROM cliproxy_credential_states WHERE until <= now()",
                &[],
            )
            .await
            .map_err(fail)?;
        for state in states {
            let kind = state.kind.as_str();
            match &state.held {
                Some(held) => {
                    let remaining = held.remaining.map(|left| left.as_secs_f64());
                    let status = held.status.map(i32::from);
                    let failures = i32::try_from(held.failures).unwrap_or(i32::MAX);
                    client
                        .execute(
                            "INSERT INTO cliproxy_credential_states \
                             (key, kind, model, until, status, failures) \
                             VALUES ($1, $2, $3, now() + $4::float8 * interval '1 second', $5, $6) \
                             ON CONFLICT (key, kind, model) DO UPDATE SET until = EXCLUDED.until, \
                             status = EXCLUDED.status, failures = EXCLUDED.failures, \
                             updated_at = now()",
                            &[
                                &state.key,
                                &kind,
                                &state.model,
                                &remaining,
                                &status,
                                &failures,
                            ],
                        )
                        .await
                        .map_err(fail)?;
                }
                None => {
                    client
                        .execute(
                            "DELETE FROM cliproxy_credential_states \
                             WHERE key = $1 AND kind = $2 AND model = $3",
                            &[&state.key, &kind, &state.model],
                        )
                        .await
                        .map_err(fail)?;
                }
            }
            let payload = format!("{} {}", self.inner.origin, payload_of(state));
            transaction.notify(LIMITS_CHANNEL, &payload).await?;
        }
        transaction.commit().await
    }

    /// Writes this server's counts of the days of credentials or client keys (`scope`:
    /// `credential` or `client`; key, when the day ends in seconds since the Unix epoch,
    /// counts) and returns, for each, what the other servers counted in the same day. Days that
    /// ended over a day ago are deleted.
    pub async fn sync_day_counts(
        &self,
        scope: &str,
        days: &[(String, i64, DayCount)],
    ) -> Result<Vec<DayCount>, StoreError> {
        let op = "share the counts of the day";
        let transaction = self.begin(op).await?;
        let client = transaction.client();
        let fail = |error: tokio_postgres::Error| self.fail(op, &error);
        client
            .execute(
                "DELETE FROM cliproxy_day_counts WHERE day_ends < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(fail)?;
        let mut others = Vec::with_capacity(days.len());
        for (key, ends, counts) in days {
            let requests = i64::try_from(counts.requests).unwrap_or(i64::MAX);
            let tokens = i64::try_from(counts.tokens).unwrap_or(i64::MAX);
            let row = client
                .query_one(
                    "WITH mine AS (
                         INSERT INTO cliproxy_day_counts
                             (scope, key, day_ends, server, requests, tokens)
                         VALUES ($6, $1, to_timestamp($2::bigint), $3, $4, $5)
                         ON CONFLICT (scope, key, day_ends, server) DO UPDATE
                         SET requests = EXCLUDED.requests, tokens = EXCLUDED.tokens
                     )
                     SELECT coalesce(sum(requests), 0)::bigint, coalesce(sum(tokens), 0)::bigint
                     FROM cliproxy_day_counts
                     WHERE scope = $6 AND key = $1
                       AND day_ends = to_timestamp($2::bigint) AND server <> $3",
                    &[key, ends, &self.inner.origin, &requests, &tokens, &scope],
                )
                .await
                .map_err(fail)?;
            let (requests, tokens): (i64, i64) = (row.get(0), row.get(1));
            others.push(DayCount {
                requests: u64::try_from(requests).unwrap_or(0),
                tokens: u64::try_from(tokens).unwrap_or(0),
            });
        }
        transaction.commit().await?;
        Ok(others)
    }

    /// Every state that holds now.
    pub async fn credential_states(&self) -> Result<Vec<CredentialState>, StoreError> {
        let op = "read credential states";
        let connection = self.connection(op).await?;
        let rows = connection
            .client()
            .query(
                "SELECT key, kind, model, extract(epoch FROM until - now())::float8, status, \
                 failures FROM cliproxy_credential_states WHERE until IS NULL OR until > now()",
                &[],
            )
            .await
            .map_err(|error| self.fail(op, &error))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let kind = StateKind::parse(row.get(1))?;
                let remaining: Option<f64> = row.get(3);
                let status: Option<i32> = row.get(4);
                let failures: i32 = row.get(5);
                Some(CredentialState {
                    key: row.get(0),
                    kind,
                    model: row.get(2),
                    held: Some(Held {
                        remaining: remaining.map(seconds),
                        status: status.and_then(|status| u16::try_from(status).ok()),
                        failures: u32::try_from(failures).unwrap_or(0),
                    }),
                })
            })
            .collect())
    }

    /// Starts following the states other servers share; a [`LimitsChange::Resync`] comes
    /// first and after every reconnection. Must run inside the Tokio runtime.
    pub fn follow_limits(&self) -> (super::ChangeFeed, mpsc::UnboundedReceiver<LimitsChange>) {
        listen::follow_channels(
            self.inner.pool.config().clone(),
            self.inner.target.clone(),
            self.inner.origin.clone(),
            Channels {
                names: &[LIMITS_CHANNEL],
                parse: limits_change_of,
                resync: LimitsChange::Resync,
                logs: false,
            },
            || {},
        )
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::ZERO)
}

fn payload_of(state: &CredentialState) -> Value {
    json!({
        "key": state.key,
        "kind": state.kind.as_str(),
        "model": state.model,
        "held": state.held.map(|held| json!({
            "remaining_ms": held.remaining.map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            "status": held.status,
            "failures": held.failures,
        })),
    })
}

fn state_of(payload: &Value) -> Option<CredentialState> {
    let held = match payload.get("held")? {
        Value::Null => None,
        held => Some(Held {
            remaining: held
                .get("remaining_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
            status: held
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|status| u16::try_from(status).ok()),
            failures: held
                .get("failures")
                .and_then(Value::as_u64)
                .and_then(|failures| u32::try_from(failures).ok())
                .unwrap_or(0),
        }),
    };
    Some(CredentialState {
        key: payload.get("key")?.as_str()?.to_owned(),
        kind: StateKind::parse(payload.get("kind")?.as_str()?)?,
        model: payload.get("model")?.as_str()?.to_owned(),
        held,
    })
}

/// The state a notification on the limits channel carries; `None` for this server's own and
/// for payloads it does not know.
fn limits_change_of(channel: &str, payload: &str, origin: &str) -> Option<LimitsChange> {
    let (from, rest) = payload.split_once(' ')?;
    if from == origin || channel != LIMITS_CHANNEL {
        return None;
    }
    let value: Value = serde_json::from_str(rest).ok()?;
    state_of(&value).map(LimitsChange::State)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_travel_through_notifications_and_our_own_are_skipped() {
        let state = CredentialState {
            key: "qwen-a@b.com".into(),
            kind: StateKind::Cooling,
            model: "coder-model".into(),
            held: Some(Held {
                remaining: Some(Duration::from_millis(1500)),
                status: None,
                failures: 2,
            }),
        };
        let payload = format!("other {}", payload_of(&state));
        assert_eq!(
            limits_change_of(LIMITS_CHANNEL, &payload, "me"),
            Some(LimitsChange::State(state.clone()))
        );
        assert_eq!(limits_change_of(LIMITS_CHANNEL, &payload, "other"), None);
        let ended = CredentialState {
            held: None,
            ..state
        };
        let payload = format!("other {}", payload_of(&ended));
        assert_eq!(
            limits_change_of(LIMITS_CHANNEL, &payload, "me"),
            Some(LimitsChange::State(ended))
        );
        assert_eq!(limits_change_of(LIMITS_CHANNEL, "other {}", "me"), None);
    }
}
