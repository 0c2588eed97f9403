//! `cliproxy serve`: wires the account store (the auth dir or the shared database), the
//! credential pool, token refresh, the dir watch (or the database's change feed) and the HTTP
//! server together, and runs until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::{Arc, OnceLock};

use account_runtime::{AccountOverride, AccountSettings, Accounts, status};
use account_store::AccountStore;
use anyhow::Context as _;
use auth_core::OAuthClient;
use credential_pool::{Pool, PoolConfig, Routing};
use proxy_server::Proxy;

use crate::config::{AccountSection, Settings, UsageDb};
use crate::upstreams::add_api_keys;

/// Runs the server until a shutdown signal, then drains in-flight requests.
/// `load` reads the config again for a reload; `config_path` is the file whose changes trigger
/// one ([`crate::reload`]).
pub async fn run(
    settings: &Settings,
    oauth: OAuthClient,
    load: crate::reload::Load,
    config_path: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let serve = &settings.serve;
    let address = SocketAddr::new(serve.host, serve.port);
    let config = serve.server.clone();
    config.check_bind(&address)?;

    let pool = Arc::new(Pool::new(PoolConfig {
        strategy: serve.routing_strategy,
        affinity_ttl: serve.session_ttl,
        refused_base: serve.probe_after,
        refused_max: serve.probe_after.max(MAX_PROBE_INTERVAL),
        quota_reset: serve.server.quota_reset,
        ..PoolConfig::default()
    }));
    add_api_keys(&pool, &serve.openai_compat);
    crate::client_limits::set_client_caps(&pool, &serve.server.client_keys);
    let store = crate::store::open(settings, crate::store::Trust::TokenFiles).await?;
    if let AccountStore::Postgres(_) = store {
        // No token files, but the status sockets `accounts list` reads live states from.
        token_store::AuthDir::open(&settings.auth_dir)?;
    }
    let accounts = Accounts::new(
        store.clone(),
        oauth.clone(),
        Arc::clone(&pool),
        AccountSettings {
            models: serve.server.models.clone(),
            requests_per_minute: serve.qwen_requests_per_minute,
            daily: serve.qwen_daily,
            refresh_lead: serve.refresh_lead,
            overrides: account_overrides(&serve.accounts),
        },
    );
    let loaded = accounts.reconcile().await?;
    let _follow = follow_store(&accounts, &store)?;
    // Rate caps, cooldowns and refusals hold across the servers of one database.
    let _shared_limits = match &store {
        AccountStore::Postgres(pg) => {
            Some(account_runtime::share_limits(Arc::clone(&pool), pg.clone()).await)
        }
        AccountStore::Dir(_) => None,
    };
    let _status = status::listen(&settings.auth_dir, Arc::clone(&accounts), Arc::clone(&pool));
    if pool.is_empty() {
        tracing::warn!(
            "no accounts in {} and no [[openai-compat]] keys: add one with `cliproxy login qwen`; the server picks it up without a restart",
            store.describe()
        );
    }

    let (usage, ledger) = open_ledger(settings);
    // Request metrics are fed by the ledger's flusher, off the request path.
    let metrics = Arc::new(management::Metrics::new(settings.management.hash_emails));
    if let Some(ledger) = &ledger {
        ledger.observe(Arc::clone(&metrics) as Arc<dyn usage_ledger::TallyObserver>);
    }
    let proxy = Proxy::recording(config, Arc::clone(&pool), usage)?.mount(
        crate::management_routes::routes(
            settings,
            oauth,
            Arc::clone(&accounts),
            Arc::clone(&pool),
            metrics,
        )?,
    );
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
    let reloads = tokio::spawn(crate::reload::run(
        crate::reload::ConfigReload {
            load,
            path: config_path,
            reloader: proxy.reloader(),
            pool: Arc::clone(&pool),
            bound,
        },
        settings.clone(),
    ));
    let served = proxy.serve(listener, shutdown).await;
    reloads.abort();
    // Refreshes in flight and unsaved tokens share the grace period with open requests.
    let signalled = signalled
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now);
    accounts.stop(signalled + serve.server.shutdown_grace).await;
    if let Some(ledger) = ledger
        && let Err(error) = ledger.flush_and_close().await
    {
        tracing::warn!("the last usage counts could not be saved: {error}");
    }
    served?;
    Ok(())
}

/// Starts what keeps the accounts in step with the store while the server runs: the auth
/// dir's watch, or the database's change feed. It stops when the returned value is dropped.
fn follow_store(
    accounts: &Arc<Accounts>,
    store: &AccountStore,
) -> anyhow::Result<Box<dyn std::any::Any + Send>> {
    Ok(match store {
        AccountStore::Dir(dir) => Box::new(account_runtime::watch(
            Arc::clone(accounts),
            dir.path().to_owned(),
        )?),
        AccountStore::Postgres(pg) => Box::new(account_runtime::follow(Arc::clone(accounts), pg)),
    })
}

/// The usage ledger's recorder and flusher, unless `usage-db = "off"`: in the SQLite file, or
/// in the PostgreSQL store's database (`UsageSettings::db` says which). A ledger that
/// cannot be opened (a full disk, a directory it may not write) leaves the server serving
/// without it: serving matters more than counting. The PostgreSQL ledger connects on its
/// first flush, so a database that is away now only delays the writes.
fn open_ledger(
    settings: &Settings,
) -> (usage_ledger::Recorder, Option<usage_ledger::FlusherHandle>) {
    let retention = settings.usage.retention;
    let every = usage_ledger::DEFAULT_FLUSH_EVERY;
    let opened = match &settings.usage.db {
        UsageDb::Off => return (usage_ledger::Recorder::disabled(), None),
        UsageDb::File(path) => {
            usage_ledger::Ledger::open(path, retention, every).map_err(|error| error.to_string())
        }
        UsageDb::Postgres(url) => account_store::PgLedger::new(url)
            .map(|ledger| {
                tracing::info!(
                    "usage is recorded in the PostgreSQL store {}",
                    ledger.target()
                );
                usage_ledger::Ledger::start(ledger, retention, every)
            })
            .map_err(|error| error.to_string()),
    };
    match opened {
        Ok((recorder, flusher)) => (recorder, Some(flusher)),
        Err(error) => {
            tracing::error!("usage is not recorded while this server runs: {error}");
            (usage_ledger::Recorder::disabled(), None)
        }
    }
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
                    requests_per_day: section.requests_per_day.map(NonZeroU64::new),
                    tokens_per_day: section.tokens_per_day.map(NonZeroU64::new),
                },
            )
        })
        .collect()
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
