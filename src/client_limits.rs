//! What the pool must know of the client keys' limits so that a shared PostgreSQL store can
//! share them across servers: which keys have a `requests-per-minute` or a `tokens-per-day`.
//! `serve` tells it at start, a config reload again.

use std::sync::Arc;

use credential_pool::Pool;
use proxy_server::ClientKeyConfig;

/// Tells the pool which client keys have a `requests-per-minute` or a `tokens-per-day`, so a
/// shared store shares them too.
pub(crate) fn set_client_caps<C>(pool: &Pool<C>, client_keys: &[ClientKeyConfig]) {
    let daily: Vec<Arc<str>> = client_keys
        .iter()
        .filter(|key| key.tokens_per_day.is_some())
        .map(|key| key.name.as_str().into())
        .collect();
    pool.set_client_caps(
        client_keys
            .iter()
            .filter_map(|key| Some((key.name.as_str().into(), key.requests_per_minute?.get())))
            .collect(),
        &daily,
    );
}
