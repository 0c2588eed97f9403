//! `cliproxy init` end to end: the file it writes is private, checks clean, and serves with
//! the key it printed; it never replaces a config without `--force`.

use crate::support::server::{MODEL, Server, send_chat, write_account};
use crate::support::{Sandbox, mode};
use fake_qwen::FakeQwen;
use serde_json::Value;

#[tokio::test]
async fn init_writes_a_private_config_that_checks_clean_and_serves_with_its_key() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = sandbox.home.path().join("etc/cliproxy/config.toml");
    let config_arg = config.to_str().unwrap();
    let printed = sandbox
        .run(
            &["--config", config_arg, "init", "--json", "--port", "0"],
            "",
        )
        .await
        .success();
    let report: Value = serde_json::from_str(&printed).expect("--json prints JSON");
    let key = report["client_key"].as_str().expect("the key").to_owned();
    assert!(key.starts_with("cliproxy-") && key.len() > 40, "{report}");
    assert_eq!(report["config"], config_arg);
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(config.parent().unwrap()), 0o700);
    assert_eq!(mode(&sandbox.auth_dir()), 0o700);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("api-keys = [\"{key}\"]")), "{text}");
    assert!(text.contains(&format!("auth-dir = \"{}\"", sandbox.auth_dir().display())));
    for snippet in [
        "ANTHROPIC_BASE_URL",
        "[model_providers.cliproxy]",
        "OPENAI_BASE_URL",
    ] {
        assert!(text.contains(snippet), "no {snippet} in\n{text}");
    }

    let checked = sandbox
        .run(&["--config", config_arg, "config", "check"], "")
        .await
        .success();
    assert!(checked.contains(": ok."), "{checked}");

    write_account(&sandbox, &fake, "init@example.com", 86_400);
    let mut command = sandbox.command(&["--config", config_arg, "serve"]);
    command.env("CLIPROXY_LOG", "info");
    let server = Server::spawn(command).await;
    let client = reqwest::Client::new();
    let url = server.url("/v1/chat/completions");
    let refused = send_chat(&client, &url, MODEL, false).await;
    assert_eq!(refused.status(), 401, "the config's key is required");
    let keyed = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {key}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let served = send_chat(&keyed, &url, MODEL, false).await;
    assert_eq!(served.status(), 200, "{}", served.text().await.unwrap());
}

#[tokio::test]
async fn init_keeps_an_existing_config_unless_forced_and_prints_no_key_without_json() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    // The default place: $HOME/.config/cliproxy/config.toml.
    let config = sandbox.home.path().join(".config/cliproxy/config.toml");
    let shown = sandbox.run(&["init"], "").await.success();
    assert!(
        shown.contains(&format!("Wrote {}", config.display())),
        "{shown}"
    );
    assert!(shown.contains("cliproxy login qwen"), "{shown}");
    let first = std::fs::read_to_string(&config).unwrap();
    let key_line = first
        .lines()
        .find(|line| line.starts_with("api-keys"))
        .unwrap()
        .to_owned();
    let key = key_line.split('"').nth(1).unwrap();
    assert!(!shown.contains(key), "the key is only printed with --json");

    let refused = sandbox.run(&["init"], "").await;
    let message = refused.failure(1);
    assert!(
        message.contains("already exists; nothing was changed"),
        "{message}"
    );
    assert!(message.contains("--force"), "{message}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), first);

    sandbox.run(&["init", "--force"], "").await.success();
    let replaced = std::fs::read_to_string(&config).unwrap();
    assert_ne!(replaced, first, "a new key");
    assert_eq!(mode(&config), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(config.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["config.toml"], "no temp file is left");
}
