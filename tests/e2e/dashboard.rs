//! The dashboard in a real browser: Debian's `chromium`, headless, driven by playwright-core
//! (`dashboard/driver.cjs`, run with node). The page loads, refuses a wrong key, shows the
//! fake's accounts and their states, a Disable click takes the account out of the pool (the
//! API and the requests that follow say so), and a device login started on the page ends with
//! a token file. The screenshot lands in `target/dashboard.png`; with
//! `CLIPROXY_UPDATE_SCREENSHOT=1` also in `docs/dashboard.png`.
//!
//! playwright-core comes from npm (`.ci/run` installs it with the agent clients into
//! `target/agent-clients`; `CLIPROXY_AGENT_CLIENTS` names another prefix), the browser from
//! apt (`chromium`; `CLIPROXY_CHROMIUM` names another). Without them the test prints SKIPPED
//! and passes, unless `CLIPROXY_REQUIRE_BROWSER_TESTS=1` (CI), where it fails.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fake_qwen::PollStep;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::server::{MODEL, Server, guarded};
use crate::support::{Sandbox, fake_qwen, mode};

/// The playwright-core version `.ci/run` installs.
const PLAYWRIGHT_CORE_VERSION: &str = "1.65.2";
const KEY: &str = "browser-management-key-0123456789";
/// A hang guard for the whole browser run (a few seconds normally).
const RUN_GUARD: Duration = Duration::from_secs(240);

/// The browser and playwright-core, when both are here. Otherwise the test is skipped with a
/// note, or fails when `CLIPROXY_REQUIRE_BROWSER_TESTS=1`.
fn browser(test: &str) -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("CLIPROXY_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let prefix = std::env::var_os("CLIPROXY_AGENT_CLIENTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/agent-clients"),
        PathBuf::from,
    );
    let playwright = prefix.join("node_modules/playwright-core");
    let installed = std::fs::read_to_string(playwright.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|json| json["version"].as_str().map(str::to_owned));
    let why = if !chromium.exists() {
        format!(
            "{} is not installed (apt-get install chromium)",
            chromium.display()
        )
    } else if installed.as_deref() != Some(PLAYWRIGHT_CORE_VERSION) {
        format!(
            "playwright-core {PLAYWRIGHT_CORE_VERSION} is not in {} (found {installed:?})",
            playwright.display()
        )
    } else if std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_or(true, |status| !status.success())
    {
        "node is not on PATH".to_owned()
    } else {
        return Some((chromium, playwright));
    };
    let install = format!(
        "apt-get install chromium; npm install --prefix target/agent-clients --no-save \
         @anthropic-ai/claude-code@2.1.328 @openai/codex@0.169.0 @qwen-code/qwen-code@0.24.4 \
         playwright-core@{PLAYWRIGHT_CORE_VERSION} (one command, as .ci/run does: --no-save drops what it does not name)"
    );
    let required = std::env::var("CLIPROXY_REQUIRE_BROWSER_TESTS").is_ok_and(|value| value == "1");
    assert!(
        !required,
        "{test}: the browser test is required (CLIPROXY_REQUIRE_BROWSER_TESTS=1) but {why}; run `{install}`"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; `{install}` runs it."
    );
    None
}

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|step| step["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

fn state_of<'a>(rows: &'a Value, label: &str) -> &'a str {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|row| row["label"] == label)
        .and_then(|row| row["state"].as_str())
        .unwrap_or_else(|| panic!("no row {label} in {rows}"))
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser_disables_and_adds_accounts() {
    let test = "the_dashboard_in_a_real_browser_disables_and_adds_accounts";
    let Some((chromium, playwright)) = browser(test) else {
        return;
    };
    let fake = fake_qwen().await;
    fake.add_api_key("sk-team");
    fake.script_polls(vec![PollStep::Pending, PollStep::Approve]);
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["alice@example.com", "bob@example.com"])
        .config(&format!(
            "management-key = \"{KEY}\"\n[[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\napi-keys = [\"sk-team\"]\nmodels = [\"other-model\"]",
            fake.chat_base_url()
        ))
        .start()
        .await;
    // Tokens of the new login name the fake's plain-http chat endpoint.
    fake.set_answered_resource_url(Some(fake.chat_base_url()));
    for _ in 0..3 {
        assert_eq!(server.chat(MODEL, false).await.status(), StatusCode::OK);
    }
    // The page shows usage once the ledger has written it.
    guarded("the ledger's first write", async {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            let usage = reqwest::Client::new()
                .get(server.url("/v0/management/usage?by=hour"))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            if usage.status() == StatusCode::OK
                && usage.json::<Value>().await.unwrap()["total"]["requests"] == 3
            {
                break;
            }
        }
    })
    .await;

    let profile = tempfile::tempdir().unwrap();
    let screenshot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dashboard/driver.cjs");
    let run = tokio::process::Command::new("node")
        .arg(&driver)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .env("BASE", &server.base)
        .env("KEY", KEY)
        .env("DISABLE", "alice@example.com")
        .env("EMAIL", "carol@example.com")
        .env("SCREENSHOT", &screenshot)
        .env("USER_DATA_DIR", profile.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_GUARD, run)
        .await
        .expect("the browser run hung")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();

    let wrong = step(&steps, "wrong-key")["message"].as_str().unwrap();
    assert!(wrong.contains("wrong management key"), "{wrong}");
    let loaded = step(&steps, "loaded");
    assert_eq!(loaded["stored"], true, "the key is in sessionStorage");
    assert_eq!(loaded["local"], 0, "and nothing in localStorage");
    for label in ["alice@example.com", "bob@example.com", "team#1"] {
        assert_eq!(state_of(&loaded["rows"], label), "ok", "{label}");
    }
    assert_eq!(
        state_of(&step(&steps, "disabled")["rows"], "alice@example.com"),
        "disabled"
    );
    let shown = step(&steps, "login-shown");
    assert!(!shown["code"].as_str().unwrap().is_empty(), "{shown}");
    assert!(
        shown["link"]
            .as_str()
            .unwrap()
            .starts_with(&fake.base_url()),
        "{shown}"
    );
    assert_eq!(shown["qr"], true, "the QR code is drawn: {shown}");
    assert!(
        step(&steps, "login-saved")["result"]
            .as_str()
            .unwrap()
            .contains("carol@example.com")
    );
    assert_eq!(
        state_of(&step(&steps, "listed")["rows"], "carol@example.com"),
        "ok"
    );
    let problems = &step(&steps, "screenshot")["problems"];
    assert_eq!(problems.as_array().unwrap().len(), 0, "{problems}");

    // The click took effect in the pool: the API says so, and no request goes to alice.
    let listed: Value = reqwest::Client::new()
        .get(server.url("/v0/management/credentials"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "alice@example.com")
        .unwrap();
    assert_eq!(alice["state"], "disabled");
    fake.forget_requests();
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), StatusCode::OK);
    }
    let alice_token = &server.account("alice@example.com").tokens.access_token;
    assert!(
        fake.chat_requests()
            .iter()
            .all(|request| request.bearer() != Some(alice_token.as_str())),
        "a disabled account served a request"
    );
    // The login from the page ended with a private token file.
    let carol = sandbox
        .token_files()
        .into_iter()
        .find(|path| path.to_string_lossy().contains("carol@example.com"))
        .expect("carol's token file");
    assert_eq!(mode(&carol), 0o600);

    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if std::env::var("CLIPROXY_UPDATE_SCREENSHOT").is_ok_and(|value| value == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, &png).expect("write docs/dashboard.png");
    }
}
