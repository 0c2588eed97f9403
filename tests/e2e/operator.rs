//! What operators use around `serve`: `--version` with the commit, shell completions and the
//! man page, and JSON logs (`--log-format json`, `CLIPROXY_LOG_FORMAT`) that parse line by
//! line and never hold a token or key.

use crate::support::Sandbox;
use crate::support::server::{API_KEY, MODEL, Server, write_account};
use fake_qwen::FakeQwen;
use serde_json::Value;

#[tokio::test]
async fn version_names_the_commit() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let shown = sandbox.run(&["--version"], "").await.success();
    let expected = format!("cliproxy {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(shown.starts_with(&expected), "{shown}");
    let commit = shown[expected.len()..].trim_end().trim_end_matches(')');
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{shown}"
    );
}

#[tokio::test]
async fn completions_and_the_man_page_are_generated() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    for (shell, marker) in [
        ("bash", "complete -F _cliproxy"),
        ("zsh", "#compdef cliproxy"),
        ("fish", "complete -c cliproxy"),
    ] {
        let script = sandbox.run(&["completions", shell], "").await.success();
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["init", "run", "env", "config", "serve", "login"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    // The bash script is valid bash, where bash is installed.
    let bash = sandbox.run(&["completions", "bash"], "").await.success();
    let path = sandbox.home.path().join("cliproxy.bash");
    std::fs::write(&path, bash).unwrap();
    if let Ok(status) = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
    {
        assert!(status.success(), "bash -n rejects the completion script");
    }
    let page = sandbox.run(&["man"], "").await.success();
    assert!(page.contains(".TH cliproxy 1"), "{page}");
    assert!(
        page.contains("(commit "),
        "the man page names the version and commit"
    );
    for command in ["init", "run", "completions", "log\\-format"] {
        assert!(page.contains(command), "the man page lacks {command}");
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_a_token() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    // Due for a refresh at once: the log then covers a refresh and a saved token file.
    let (path, tokens) = write_account(&sandbox, &fake, "json@example.com", 60);
    let config = sandbox.home.path().join("c.toml");
    std::fs::write(&config, format!("port = 0\napi-keys = [\"{API_KEY}\"]\n")).unwrap();
    let mut command = sandbox.command(&[
        "--log-format",
        "json",
        "--config",
        config.to_str().unwrap(),
        "serve",
    ]);
    command.env("CLIPROXY_LOG", "debug");
    let mut server = Server::spawn(command).await;
    server.wait_for_log("refreshed the access token").await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(server.chat("no-such-model", false).await.status(), 404);
    server.signal("TERM");
    assert!(server.wait().await.success());

    let saved = crate::support::read_json(&path);
    let secrets = [
        tokens.access_token.as_str(),
        tokens.refresh_token.as_str(),
        saved["access_token"].as_str().unwrap(),
        saved["refresh_token"].as_str().unwrap(),
        API_KEY,
    ];
    assert!(server.seen.len() >= 4, "{:?}", server.seen);
    for line in &server.seen {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        assert!(event["message"].is_string(), "{line}");
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
    let listening = server
        .seen
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|event| {
            event["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("listening on")
        })
        .expect("the listening line");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(
        listening["accounts"], 1,
        "fields sit beside the message: {listening}"
    );
}

#[tokio::test]
async fn the_environment_chooses_json_logs_too() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::builder(&sandbox)
        .env("CLIPROXY_LOG_FORMAT", "json")
        .start()
        .await;
    server.signal("TERM");
    server.wait().await;
    for line in &server.seen {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
    }
}

/// A command that fails under `--log-format json` says why in one more JSON line, not in text.
#[tokio::test]
async fn a_failure_is_a_json_line_too() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = sandbox.home.path().join("c.toml");
    std::fs::write(&config, "port = \"8317\"\n").unwrap();
    let run = sandbox
        .run(
            &[
                "--log-format",
                "json",
                "--config",
                config.to_str().unwrap(),
                "serve",
            ],
            "",
        )
        .await;
    let stderr = run.failure(1);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 1, port: invalid type"),
        "{stderr}"
    );
}
