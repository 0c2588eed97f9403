//! The `fake-qwen` binary: it prints where it listens and the keys it accepts, answers as the
//! in-process fake does with the tools it was told to prefer, and stops on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// A hang guard, not a timing assertion: the binary answers in milliseconds.
const HANG_GUARD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_binary_serves_preferred_tool_calls_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-qwen"))
        .args(["--api-key", "sk-bin-test"])
        .args(["--prefer-tool", r#"exec_command={"cmd":"cat notes.txt"}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(HANG_GUARD, async {
        while let Some(line) = lines.next_line().await.expect("stdout reads") {
            let last = line.starts_with("API_KEY=");
            printed.push(line);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the binary printed its address");
    let value = |name: &str| {
        printed
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} line in {printed:?}"))
            .to_owned()
    };
    assert_eq!(value("API_KEY"), "sk-bin-test");
    assert!(value("OAUTH_BASE_URL").starts_with("http://127.0.0.1:"));

    let answer: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
        .post(format!("{}/chat/completions", value("CHAT_BASE_URL")))
        .bearer_auth("sk-bin-test")
        .json(&json!({
            "model": "any-model",
            "messages": [{ "role": "user", "content": "What is in notes.txt?" }],
            "tools": [
                { "type": "function", "function": { "name": "view_image", "parameters": { "type": "object" } } },
                { "type": "function", "function": { "name": "exec_command", "parameters": { "type": "object" } } },
            ],
        }))
        .send()
        .await
        .expect("the binary answers")
        .json()
        .await
        .expect("JSON");
    let call = &answer["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "exec_command", "{answer}");
    assert_eq!(call["arguments"], r#"{"cmd":"cat notes.txt"}"#);

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("the binary stops on SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn bad_arguments_are_refused_with_the_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-qwen"))
        .args(["--prefer-tool", "Bash"])
        .output()
        .await
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NAME=JSON"), "{stderr}");
}
