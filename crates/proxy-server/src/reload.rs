//! Config reload while serving: [`Reloader::reload`] builds the parts of the proxy a config
//! decides (client keys, the browser policy, and the routes' state: upstream settings,
//! aliases, models, limits) from a new [`ServerConfig`] and swaps them in at once for new
//! requests, while requests in flight finish with the parts they started with. What outlives
//! a reload ([`Fixed`]: the pool, the usage recorder, the body reader and its memory budget,
//! the conversation hashing, the prober's wake-up) is shared by every generation, and each
//! client key whose settings did not change keeps its counts.

use std::net::SocketAddr;
use std::sync::Arc;

use credential_pool::{Credential, Pool};

use crate::config::ServerConfig;
use crate::conversation::Conversations;
use crate::error::BuildError;
use crate::layers::auth::ClientKeys;
use crate::layers::browser::BrowserPolicy;
use crate::live::Live;
use crate::meter::UsageSink;
use crate::request_body::BodyReader;
use crate::routes::State;
use crate::upstream::Upstream;

/// What every generation of the proxy's parts shares.
#[derive(Debug)]
pub(crate) struct Fixed {
    pub(crate) pool: Arc<Pool<Credential>>,
    pub(crate) usage: UsageSink,
    /// `created` of listed models: when the proxy was built, in Unix seconds.
    pub(crate) created: u64,
    pub(crate) bodies: Arc<BodyReader>,
    pub(crate) conversations: Conversations,
    pub(crate) probe_wake: Arc<tokio::sync::Notify>,
}

/// The parts of the proxy one config decides.
pub(crate) struct Parts {
    pub(crate) state: State,
    pub(crate) keys: ClientKeys,
    pub(crate) browsers: BrowserPolicy,
}

impl Parts {
    /// The parts for `config`; client keys unchanged since `previous` keep their counts.
    pub(crate) fn build(
        config: &ServerConfig,
        fixed: &Fixed,
        previous: Option<&ClientKeys>,
    ) -> Result<Parts, BuildError> {
        let keys = ClientKeys::new(
            &config.api_keys,
            &config.client_keys,
            config.quota_reset,
            previous,
        )?;
        let browsers = BrowserPolicy::new(
            &config.allowed_origins,
            config.api_keys.is_empty() && config.client_keys.is_empty(),
        )?;
        let state = State {
            upstream: Upstream::new(
                config,
                Arc::clone(&fixed.pool),
                fixed.usage.clone(),
                Arc::clone(&fixed.probe_wake),
            )?,
            models: config.models.clone(),
            created: fixed.created,
            bodies: Arc::clone(&fixed.bodies),
            session_affinity: config.session_affinity,
            conversations: fixed.conversations.clone(),
        };
        Ok(Parts {
            state,
            keys,
            browsers,
        })
    }
}

/// Applies new configs to a running [`Proxy`](crate::Proxy) (from
/// [`Proxy::reloader`](crate::Proxy::reloader)).
pub struct Reloader {
    /// The config the proxy was started with: what only a restart changes is compared to it.
    pub(crate) running: ServerConfig,
    pub(crate) state: Arc<Live<State>>,
    pub(crate) keys: Arc<Live<ClientKeys>>,
    pub(crate) browsers: Arc<Live<BrowserPolicy>>,
    pub(crate) fixed: Arc<Fixed>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The running config's `Debug` hides its keys; the parts are left out.
        f.debug_struct("Reloader")
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

/// What a reload did not apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reloaded {
    /// Config keys whose new values wait for a restart (the listener's and the body
    /// reader's settings, which every connection or body in flight holds).
    pub restart_needed: Vec<&'static str>,
}

impl Reloader {
    /// Builds the parts for `config` and swaps them in for new requests. The proxy listens on
    /// `bound`: a config that may not serve there (no client keys on a public address) is
    /// refused like any invalid one, and the running config stays.
    ///
    /// # Errors
    ///
    /// [`BuildError`] as [`Proxy::new`](crate::Proxy::new) gives it, or
    /// [`BuildError::Bind`] for a config that may not serve on `bound`; nothing changed.
    pub fn reload(&self, config: &ServerConfig, bound: SocketAddr) -> Result<Reloaded, BuildError> {
        config.check_bind(&bound).map_err(BuildError::Bind)?;
        let parts = Parts::build(config, &self.fixed, Some(&self.keys.load()))?;
        self.keys.store(parts.keys);
        self.browsers.store(parts.browsers);
        self.state.store(parts.state);
        Ok(Reloaded {
            restart_needed: self.restart_needed(config),
        })
    }

    fn restart_needed(&self, config: &ServerConfig) -> Vec<&'static str> {
        let running = &self.running;
        [
            (
                running.max_body_bytes != config.max_body_bytes,
                "max-body-bytes",
            ),
            (
                running.body_read_timeout != config.body_read_timeout,
                "body-read-timeout",
            ),
            (
                running.body_memory_budget != config.body_memory_budget,
                "body-memory-budget",
            ),
            (
                running.header_read_timeout != config.header_read_timeout,
                "header-read-timeout",
            ),
            (
                running.max_connections != config.max_connections,
                "max-connections",
            ),
            (
                running.shutdown_grace != config.shutdown_grace,
                "shutdown-grace",
            ),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect()
    }
}
