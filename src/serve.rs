//! `cliproxy serve`: wires the auth dir, the credential pool, token refresh,
//! the dir watch and the HTTP server together, and runs until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use account_runtime::{AccountOverride, AccountSettings, Accounts, status};
use anyhow::Context as _;
use auth_core::OAuthClient;
use credential_pool::{
    Access, Credential, Flavor, Models, Pool, PoolConfig, Routing, StaticAccess,
};
use proxy_server::Proxy;
use token_store::AuthDir;

use cliproxy::config::{AccountSection, OpenAiCompatEntry, Settings};

/// Runs the server until a shutdown signal, then drains in-flight requests.
pub async fn run(settings: &Settings, oauth: OAuthClient) -> anyhow::Result<()> {
    let serve = &settings.serve;
    let address = SocketAddr::new(serve.host, serve.port);
    let config = serve.server.clone();
    config.check_bind(&address)?;

    let pool = Arc::new(Pool::new(PoolConfig {
        strategy: serve.routing_strategy,
        affinity_ttl: serve.session_ttl,
        refused_base: serve.probe_after,
        refused_max: serve.probe_after.max(MAX_PROBE_INTERVAL),
        ..PoolConfig::default()
    }));
    add_api_keys(&pool, &serve.openai_compat);
    let store = AuthDir::open(&settings.auth_dir)?;
    crate::permissions::enforce_private_auth_dir(&store, settings.strict_permissions)?;
    let accounts = Accounts::new(
        store,
        oauth,
        Arc::clone(&pool),
        AccountSettings {
            models: serve.server.models.clone(),
            requests_per_minute: serve.qwen_requests_per_minute,
            refresh_lead: serve.refresh_lead,
            overrides: account_overrides(&serve.accounts),
        },
    );
    let loaded = accounts.reconcile()?;
    let _watch = account_runtime::watch(Arc::clone(&accounts))?;
    let _status = status::listen(&settings.auth_dir, Arc::clone(&accounts), Arc::clone(&pool));
    if pool.is_empty() {
        tracing::warn!(
            "no accounts in {} and no [[openai-compat]] keys: add one with `cliproxy login qwen`; the server picks it up without a restart",
            settings.auth_dir.display()
        );
    }

    let proxy = Proxy::new(config, Arc::clone(&pool))?;
    let listener = proxy_server::bind(address)
        .await
        .with_context(|| format!("could not listen on {address}; is another server using the port? Pick another with --port"))?;
    let signalled = Arc::new(OnceLock::new());
    let shutdown = {
        let signal = shutdown_signal();
        let signalled = Arc::clone(&signalled);
        async move {
            signal.await;
            let _ = signalled.set(tokio::time::Instant::now());
        }
    };
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(
        accounts = loaded.added,
        api_keys = pool.len() - accounts.len(),
        "listening on http://{bound}"
    );
    // proxy-server logs "shutting down" and "stopped".
    let served = proxy.serve(listener, shutdown).await;
    // Refreshes in flight and unsaved tokens share the grace period with open requests.
    let signalled = signalled
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now);
    accounts.stop(signalled + serve.server.shutdown_grace).await;
    served?;
    Ok(())
}

/// The longest wait between two probes of a refused credential.
const MAX_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// `[accounts."EMAIL"]` sections as the account runtime takes them.
fn account_overrides(
    sections: &std::collections::BTreeMap<String, AccountSection>,
) -> HashMap<String, AccountOverride> {
    sections
        .iter()
        .map(|(email, section)| {
            (
                email.clone(),
                AccountOverride {
                    routing: Routing {
                        weight: section.weight.unwrap_or(NonZeroU32::MIN),
                        priority: section.priority.unwrap_or(0),
                        group: section.group.as_deref().map(Arc::from),
                    },
                    requests_per_minute: section.requests_per_minute.map(NonZeroU32::new),
                },
            )
        })
        .collect()
}

/// Adds every `[[openai-compat]]` key to the pool, each with its entry's rate cap.
fn add_api_keys(pool: &Pool<Credential>, entries: &[OpenAiCompatEntry]) {
    for key in api_key_credentials(entries) {
        let pool_key = format!("openai-compat:{}", key.credential.label);
        pool.upsert(
            &pool_key,
            Arc::new(key.credential),
            key.models,
            key.requests_per_minute,
        );
        pool.set_routing(&pool_key, key.routing);
    }
}

/// One key of an `[[openai-compat]]` entry, as a credential of its own.
pub(crate) struct ApiKeyCredential {
    /// Labelled `<name>#<n>`; names are unique and free of `#` (checked at config load).
    pub(crate) credential: Credential,
    pub(crate) models: Models,
    pub(crate) requests_per_minute: Option<NonZeroU32>,
    /// Its entry's weight, tier and group.
    pub(crate) routing: Routing,
}

/// Each key of each `[[openai-compat]]` entry, with the models and rate cap of its entry.
pub(crate) fn api_key_credentials(entries: &[OpenAiCompatEntry]) -> Vec<ApiKeyCredential> {
    let mut credentials = Vec::new();
    for entry in entries {
        let base_url: Arc<str> = entry.base_url.trim_end_matches('/').into();
        let models = if entry.models.is_empty() {
            Models::All
        } else {
            Models::Only(entry.models.clone())
        };
        for (index, key) in entry.api_keys.iter().enumerate() {
            let access = StaticAccess(Access {
                bearer: key.as_str().into(),
                base_url: Arc::clone(&base_url),
            });
            credentials.push(ApiKeyCredential {
                credential: Credential {
                    label: format!("{}#{}", entry.name, index + 1).into(),
                    flavor: Flavor::OpenAiCompatible(entry.reasoning.0),
                    access: Arc::new(access),
                },
                models: models.clone(),
                requests_per_minute: entry.requests_per_minute,
                routing: Routing {
                    weight: entry.weight.unwrap_or(NonZeroU32::MIN),
                    priority: entry.priority.unwrap_or(0),
                    group: entry.group.as_deref().map(Arc::from),
                },
            });
        }
    }
    credentials
}

/// Starts listening for SIGINT and SIGTERM at once, so a signal right after start-up is not
/// left to its default action (killing the process), and resolves on the first of them.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut interrupt), Err(error)) => {
                tracing::warn!("cannot listen for SIGTERM ({error}); stop the server with Ctrl-C");
                interrupt.recv().await;
            }
            (Err(error), Ok(mut terminate)) => {
                tracing::warn!("cannot listen for Ctrl-C ({error}); stop the server with SIGTERM");
                terminate.recv().await;
            }
            (Err(error), Err(_)) => {
                tracing::warn!(
                    "cannot listen for Ctrl-C or SIGTERM ({error}); stop the server with SIGKILL"
                );
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credential_pool::ReasoningStyle;

    fn entry(name: &str, keys: usize, rpm: Option<u32>) -> OpenAiCompatEntry {
        OpenAiCompatEntry {
            name: name.to_owned(),
            base_url: "https://x.example/v1/".to_owned(),
            api_keys: (0..keys).map(|i| format!("{name}-key-{i}")).collect(),
            models: Vec::new(),
            requests_per_minute: rpm.and_then(NonZeroU32::new),
            weight: None,
            priority: None,
            group: None,
            reasoning: Default::default(),
        }
    }

    #[test]
    fn each_key_asks_for_reasoning_in_the_style_of_its_own_entry() {
        let mut qwen = entry("dashscope", 2, None);
        qwen.reasoning.0 = ReasoningStyle::Qwen;
        let entries = [entry("openai", 1, None), qwen];
        let flavors: Vec<Flavor> = api_key_credentials(&entries)
            .iter()
            .map(|key| key.credential.flavor)
            .collect();
        assert_eq!(
            flavors,
            [
                Flavor::OpenAiCompatible(ReasoningStyle::Effort),
                Flavor::OpenAiCompatible(ReasoningStyle::Qwen),
                Flavor::OpenAiCompatible(ReasoningStyle::Qwen),
            ]
        );
    }

    #[test]
    fn each_key_carries_the_rate_cap_of_its_own_entry() {
        let entries = [
            entry("a", 2, Some(7)),
            entry("ab", 1, None),
            entry("b", 1, Some(3)),
        ];
        let keys: Vec<(String, Option<u32>)> = api_key_credentials(&entries)
            .iter()
            .map(|key| {
                (
                    key.credential.label.to_string(),
                    key.requests_per_minute.map(NonZeroU32::get),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("a#1".to_owned(), Some(7)),
                ("a#2".to_owned(), Some(7)),
                ("ab#1".to_owned(), None),
                ("b#1".to_owned(), Some(3)),
            ]
        );
        let access = api_key_credentials(&entries)[0].credential.access.current();
        assert_eq!(&*access.base_url, "https://x.example/v1");
    }
}
