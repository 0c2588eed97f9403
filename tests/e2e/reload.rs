//! Config reload while serving: a changed config file (or SIGHUP) swaps client keys and
//! upstreams for new requests with no failed request under load; an invalid config is refused
//! and the running one stays; what needs a restart says so.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fake_qwen::FakeQwen;
use serde_json::json;

use crate::support::Sandbox;
use crate::support::server::{DAY, MODEL, Server, write_account};

/// Replaces the config file at once, as an editor's atomic save does.
fn save(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write the new config");
    std::fs::rename(&next, path).expect("replace the config");
}

/// The config: on port `port`, with `keys`, the account uncapped, and `extra` lines.
fn config(port: u16, keys: &[&str], extra: &str) -> String {
    format!(
        "port = {port}\nsession-affinity = false\napi-keys = {keys:?}\n\
         [qwen]\nrequests-per-minute = 0\n{extra}"
    )
}

/// The status of a chat completion for `model` with key `key`.
async fn status(server: &Server, key: &str, model: &str) -> u16 {
    reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .expect("request reaches the server")
        .status()
        .as_u16()
}

async fn start(sandbox: &Sandbox, path: &Path) -> Server {
    let mut command = sandbox.command(&["--config", path.to_str().unwrap(), "serve"]);
    command.env("CLIPROXY_LOG", "info");
    Server::spawn(command).await
}

#[tokio::test]
async fn a_changed_config_swaps_keys_and_upstreams_under_load_without_a_failed_request() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-team");
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "user0@example.com", DAY);
    let path = sandbox.home.path().join("config.toml");
    save(&path, &config(0, &["key-a"], ""));
    let mut server = start(&sandbox, &path).await;
    assert_eq!(status(&server, "key-b", MODEL).await, 401);
    assert_eq!(status(&server, "key-a", "team-model").await, 404);

    // Key a keeps sending while the config changes under it.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, stop) = (server.url("/v1/chat/completions"), Arc::clone(&stop));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) || statuses.len() < 20 {
                let response = client
                    .post(&url)
                    .bearer_auth("key-a")
                    .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .expect("request reaches the server");
                statuses.push(response.status().as_u16());
            }
            statuses
        })
    };
    let team = format!(
        "[[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\napi-keys = [\"sk-team\"]\n\
         models = [\"team-model\"]\n",
        fake.chat_base_url()
    );
    save(&path, &config(0, &["key-a", "key-b"], &team));
    let reloaded = server.wait_for_log("config reloaded").await;
    assert!(reloaded.contains("api_keys=2"), "{reloaded}");
    assert!(reloaded.contains("upstream_keys=1"), "{reloaded}");
    assert_eq!(status(&server, "key-b", MODEL).await, 200);
    assert_eq!(status(&server, "key-b", "team-model").await, 200);
    let team_served: Vec<Option<String>> = fake
        .chat_requests()
        .iter()
        .filter(|request| request.json()["model"] == "team-model")
        .map(|request| request.bearer().map(str::to_owned))
        .collect();
    assert_eq!(
        team_served,
        [Some("sk-team".to_owned())],
        "the new upstream serves its model"
    );

    // A broken config is refused; the running one stays.
    save(&path, "api-keys = [\"key-c\"\n");
    let refused = server.next_log_containing("config reload refused").await;
    assert!(refused.contains("the running config stays"), "{refused}");
    assert!(!refused.contains("key-c"), "never quotes a key: {refused}");
    assert_eq!(status(&server, "key-b", MODEL).await, 200);
    assert_eq!(status(&server, "key-c", MODEL).await, 401);

    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();
    assert!(
        statuses.iter().all(|&status| status == 200),
        "no request failed during the reloads: {statuses:?}"
    );

    // SIGHUP reloads too; a key taken out is refused from then on, and a port change waits
    // for a restart.
    std::fs::write(&path, config(1, &["key-b"], "")).unwrap();
    server.next_log_containing("config reloaded").await;
    let restart = server
        .next_log_containing("apply only after a restart")
        .await;
    assert!(restart.contains("port"), "{restart}");
    server.signal("HUP");
    server
        .next_log_containing("SIGHUP: reloading the config")
        .await;
    server.next_log_containing("config reloaded").await;
    assert_eq!(status(&server, "key-a", MODEL).await, 401);
    assert_eq!(status(&server, "key-b", MODEL).await, 200);
    assert_eq!(
        status(&server, "key-b", "team-model").await,
        404,
        "the upstream taken out of the config left the pool"
    );
    let log = server.seen.join("\n");
    for secret in ["key-a", "key-b", "key-c", "sk-team"] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}
