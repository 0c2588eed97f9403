//! Brings refused credentials back: the pool keeps a credential the upstream refused (a 401
//! a refresh did not cure, a 403) out of rotation and says when its next probe is due (1, 2,
//! 4 ... 60 minutes after the refusal, by default); this sends each due credential one tiny
//! request and tells the pool whether the upstream accepts it again.
//!
//! A probe works when the upstream takes the credential: any answer but 401 and 403 (a 404
//! for the probe's model, a quota answer, a success). A Qwen account is refreshed once after
//! a 401, as a request would be. Network trouble proves nothing: the probe counts as failed
//! and the next one waits twice as long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credential_pool::{Credential, Lease, Models, Outcome, RefreshFailure};
use serde_json::json;

use super::Upstream;
use super::classify::Failure;
use super::forward::Attempt;
use super::request::ChatRequest;
use crate::layers::request_id::LoggedId;

/// The longest the prober sleeps without looking at the pool again.
const IDLE_CHECK: Duration = Duration::from_secs(60);

impl Upstream {
    /// Probes refused credentials as their probes fall due, until the future is dropped.
    /// [`Upstream::probe_wake`] is notified when a credential is refused, so its schedule is
    /// read at once.
    pub(crate) async fn probe_refused(&self) {
        loop {
            let now = Instant::now();
            for lease in self.pool.due_probes(now) {
                let worked = self.probe(&lease).await;
                self.pool.probed(&lease.key, worked);
                if worked {
                    tracing::info!(account = %lease.credential.label, "the upstream accepts the refused credential again: back in rotation");
                } else {
                    tracing::info!(account = %lease.credential.label, "probe of the refused credential failed; the next one waits longer");
                }
            }
            let wait = self
                .pool
                .next_probe()
                .map_or(IDLE_CHECK, |due| {
                    due.saturating_duration_since(Instant::now())
                })
                .min(IDLE_CHECK);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.probe_wake.notified() => {}
            }
        }
    }

    /// One tiny request with `lease`'s credential; whether the upstream accepted it.
    async fn probe(&self, lease: &Lease<Credential>) -> bool {
        let credential = &lease.credential;
        let model = self.probe_model(&lease.key);
        let json = json!({
            "model": model,
            "messages": [{ "role": "user", "content": "ping" }],
            "max_tokens": 1,
        });
        let mut outgoing = ChatRequest::from_json(
            usage_ledger::Api::ChatCompletions,
            &model,
            false,
            json,
            None,
            LoggedId::default(),
        )
        .into_outgoing();
        let Ok(body) = outgoing.for_flavor(credential.flavor, &model) else {
            return false;
        };
        let id = LoggedId::default();
        let mut access = credential.access.current();
        let mut refreshed = false;
        loop {
            match self
                .attempt(&access, credential.flavor, false, &body, &id)
                .await
            {
                Attempt::Success(_) | Attempt::PassThrough(_) => {
                    self.pool
                        .report(&lease.key, &model, Outcome::Success, Instant::now());
                    return true;
                }
                Attempt::Failed(Failure::Unauthorized { .. }) if !refreshed => {
                    refreshed = true;
                    match Arc::clone(&credential.access).refresh().await {
                        Ok(fresh) => access = fresh,
                        Err(RefreshFailure::ReloginRequired) => {
                            self.pool.set_disabled(
                                &lease.key,
                                Some(super::forward::RELOGIN_REASON.to_owned()),
                            );
                            return false;
                        }
                        Err(_) => return false,
                    }
                }
                // Quota answers come only for credentials the upstream accepts.
                Attempt::Failed(Failure::Quota { .. }) => return true,
                Attempt::Failed(_) => return false,
            }
        }
    }

    /// A model for the probe of credential `key`: the first it serves, else the first
    /// configured one (any answer but 401/403 proves the credential, so a model the upstream
    /// does not know does too).
    fn probe_model(&self, key: &str) -> String {
        let statuses = self.pool.statuses(Instant::now());
        let served = statuses
            .iter()
            .find(|status| &*status.key == key)
            .and_then(|status| match &status.models {
                Models::Only(models) => models.first().cloned(),
                Models::All => None,
            });
        served
            .or_else(|| self.probe_models.first().cloned())
            .unwrap_or_else(|| "qwen3-coder-plus".to_owned())
    }
}
