//! Config reload while `cliproxy serve` runs: on SIGHUP, and when the config file changes
//! (its directory is watched, as the auth dir is, and events settle before a reload), the
//! config is read and checked again and, when valid, applied for new requests: client keys,
//! the browser policy, upstream settings, aliases, models and limits (proxy-server's
//! `Reloader`), the routing strategy and the `[[openai-compat]]` credentials (the pool). An
//! invalid config is refused with a log line and the running one stays. Settings that only a
//! restart applies are named in the log.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use credential_pool::{Credential, Pool};
use notify::{RecursiveMode, Watcher as _};
use proxy_server::Reloader;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::upstreams::{add_api_keys, api_key_credentials};

/// How long the config file's directory must be quiet before a change is read.
const SETTLE: Duration = Duration::from_millis(200);

/// Reads the config again: the file, the environment and the command line's overrides.
pub type Load = Box<dyn Fn() -> anyhow::Result<Settings> + Send>;

/// What a reload changes, and how it reads the config.
pub struct ConfigReload {
    pub load: Load,
    /// The config file, when there is one: its changes trigger a reload.
    pub path: Option<PathBuf>,
    pub reloader: Reloader,
    pub pool: Arc<Pool<Credential>>,
    /// The address the server listens on.
    pub bound: SocketAddr,
}

/// Runs reloads until the task is aborted. Watching the file is best effort: when it cannot
/// be watched, SIGHUP still reloads (and the log says so).
pub async fn run(reload: ConfigReload, running: Settings) {
    let mut running = running;
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            tracing::warn!(
                "SIGHUP cannot be caught ({error}); the config is reloaded only when its file changes"
            );
            None
        }
    };
    let (changed, mut changes) = mpsc::unbounded_channel();
    let _watch = reload.path.as_deref().and_then(|path| watch(path, changed));
    loop {
        tokio::select! {
            Some(()) = async { match &mut hangups { Some(h) => h.recv().await, None => None } } => {
                tracing::info!("SIGHUP: reloading the config");
            }
            Some(()) = changes.recv() => {
                settle(&mut changes).await;
                tracing::info!("the config file changed: reloading it");
            }
            else => return,
        }
        if let Some(settings) = apply(&reload, &running) {
            running = settings;
        }
    }
}

/// Waits until no change came for [`SETTLE`] (an editor's save is several events).
async fn settle(changes: &mut mpsc::UnboundedReceiver<()>) {
    while let Ok(Some(())) = tokio::time::timeout(SETTLE, changes.recv()).await {}
}

/// Watches the directory of `path` (an editor's save or an atomic rename replaces the file,
/// which ends a watch on the file itself) and sends on `changed` for events on the file.
fn watch(path: &Path, changed: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())?
        .to_owned();
    let name = path.file_name()?.to_owned();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|p| p.file_name() == Some(&name))
            && !event.kind.is_access()
        {
            let _ = changed.send(());
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watched {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(
                "could not watch {} ({error}); send SIGHUP to reload the config",
                dir.display()
            );
            None
        }
    }
}

/// Reads and applies the config; the new settings, or `None` when it was refused.
fn apply(reload: &ConfigReload, running: &Settings) -> Option<Settings> {
    let settings = match (reload.load)() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("config reload refused, the running config stays: {error:#}");
            return None;
        }
    };
    let serve = &settings.serve;
    let applied = match reload.reloader.reload(&serve.server, reload.bound) {
        Ok(applied) => applied,
        Err(error) => {
            tracing::error!("config reload refused, the running config stays: {error}");
            return None;
        }
    };
    reload.pool.set_strategy(serve.routing_strategy);
    reload.pool.set_quota_reset(serve.server.quota_reset);
    crate::client_limits::set_client_caps(&reload.pool, &serve.server.client_keys);
    let upstreams = replace_api_keys(&reload.pool, running, &settings);
    let mut restart_needed: Vec<&str> = applied.restart_needed;
    restart_needed.extend(restart_needed_here(running, &settings));
    tracing::info!(
        api_keys = serve.server.api_keys.len(),
        client_keys = serve.server.client_keys.len(),
        upstream_keys = upstreams,
        "config reloaded; new requests use it"
    );
    if !restart_needed.is_empty() {
        tracing::warn!(
            "these settings changed but apply only after a restart: {}",
            restart_needed.join(", ")
        );
    }
    Some(settings)
}

/// Puts the new `[[openai-compat]]` keys in the pool (a key that stays keeps its cooldowns,
/// rate window and counts of the day, under its new limits) and takes out those that are gone; the number of keys now.
fn replace_api_keys(pool: &Pool<Credential>, running: &Settings, new: &Settings) -> usize {
    let keys_of = |settings: &Settings| -> HashSet<String> {
        api_key_credentials(&settings.serve.openai_compat)
            .into_iter()
            .map(|key| format!("openai-compat:{}", key.credential.label))
            .collect()
    };
    let (before, after) = (keys_of(running), keys_of(new));
    for gone in before.difference(&after) {
        pool.remove(gone);
    }
    add_api_keys(pool, &new.serve.openai_compat);
    after.len()
}

/// Settings outside the proxy's own config that only a restart applies, when they changed.
fn restart_needed_here(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let (old, now) = (&running.serve, &new.serve);
    [
        (old.host != now.host, "host"),
        (old.port != now.port, "port"),
        (running.auth_dir != new.auth_dir, "auth-dir"),
        (running.usage != new.usage, "usage-db / usage-retention"),
        (running.store != new.store, "[store]"),
        (
            running.management != new.management,
            "management-key / [management] / [metrics]",
        ),
        (old.refresh_lead != now.refresh_lead, "refresh-lead"),
        (
            old.qwen_requests_per_minute != now.qwen_requests_per_minute,
            "[qwen] requests-per-minute",
        ),
        (
            old.qwen_daily != now.qwen_daily,
            "[qwen] requests-per-day / tokens-per-day",
        ),
        (old.accounts != now.accounts, "[accounts.\"EMAIL\"]"),
        (old.session_ttl != now.session_ttl, "session-ttl"),
        (old.probe_after != now.probe_after, "probe-after"),
    ]
    .into_iter()
    .filter_map(|(changed, key)| changed.then_some(key))
    .collect()
}
