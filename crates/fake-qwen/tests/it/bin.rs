//! The `fake-qwen` binary: it prints where it listens and the keys it accepts, answers as the
//! in-process fake does with the tools it was told to prefer, serves its control API, and stops
//! on SIGTERM.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::support::{HANG_GUARD, chat_at, client, refresh_at};

#[tokio::test]
async fn the_binary_serves_preferred_tool_calls_until_sigterm() {
    let (mut child, printed) = spawn(&[
        "--api-key",
        "sk-bin-test",
        "--prefer-tool",
        r#"exec_command={"cmd":"cat notes.txt"}"#,
    ])
    .await;
    let value = |name: &str| printed.value(name);
    assert_eq!(value("API_KEY"), "sk-bin-test");
    assert!(value("OAUTH_BASE_URL").starts_with("http://127.0.0.1:"));

    let answer: Value = client()
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

/// The `NAME=value` lines the binary printed on start.
struct Printed(Vec<(String, String)>);

impl Printed {
    fn value(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no {name} line in {:?}", self.0))
    }
}

/// Starts the binary with `args` and reads its `NAME=value` lines up to the first `API_KEY`.
async fn spawn(args: &[&str]) -> (tokio::process::Child, Printed) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-qwen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(HANG_GUARD, async {
        while let Some(line) = lines.next_line().await.expect("stdout reads") {
            let (name, value) = line.split_once('=').expect("NAME=value");
            printed.push((name.to_owned(), value.to_owned()));
            if name == "API_KEY" {
                break;
            }
        }
    })
    .await
    .expect("the binary printed its addresses");
    (child, Printed(printed))
}

async fn control(url: &str, path: &str, body: Option<Value>) -> Value {
    let request = match body {
        Some(body) => client().post(format!("{url}{path}")).json(&body),
        None => client().get(format!("{url}{path}")),
    };
    let answer = request.send().await.expect("the control API answers");
    assert_eq!(answer.status().as_u16(), 200, "{path}");
    answer.json().await.expect("JSON")
}

async fn refresh(oauth: &str, refresh_token: &str) -> (u16, Value) {
    let answer = refresh_at(oauth, refresh_token).await;
    (answer.status, answer.json())
}

async fn chat(chat_base: &str, access_token: &str) -> u16 {
    let body = json!({
        "model": "coder-model",
        "messages": [{ "role": "user", "content": "hi" }],
    });
    chat_at(chat_base, access_token, &body)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_control_api_expires_tokens_injects_quota_and_reports_spent_refresh_tokens() {
    let (_child, printed) = spawn(&[
        "--control",
        "--token-expires-in",
        "60",
        "--quota-retry-after",
        "3",
        "--http-resource-url",
    ])
    .await;
    let value = |name: &str| printed.value(name);
    let (oauth, chat_base, url) = (
        value("OAUTH_BASE_URL"),
        value("CHAT_BASE_URL"),
        value("CONTROL_URL"),
    );

    let login = control(&url, "/mint", Some(json!({}))).await;
    let root = login["refresh_token"].as_str().expect("a refresh token");
    let other = control(&url, "/mint", Some(json!({}))).await;
    let (status, rotated) = refresh(&oauth, root).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["expires_in"], 60);
    assert_eq!(rotated["resource_url"], chat_base);
    let access = rotated["access_token"].as_str().expect("an access token");
    let second = rotated["refresh_token"]
        .as_str()
        .expect("a new refresh token");
    assert_eq!(refresh(&oauth, root).await.0, 400, "spent by the rotation");

    let report = control(&url, "/report", None).await;
    assert_eq!(report["issued"], 1);
    assert_eq!(report["chains"], 2);
    assert_eq!(
        report["dead"],
        json!([{ "refresh_token": root, "root": root, "spent": true }])
    );
    let looked_up = control(
        &url,
        "/lookup",
        Some(json!({ "refresh_tokens": [second, other["refresh_token"]] })),
    )
    .await;
    assert_eq!(
        looked_up["tokens"],
        json!([
            { "refresh_token": second, "root": root, "live": true },
            { "refresh_token": other["refresh_token"], "root": other["refresh_token"], "live": true },
        ])
    );

    // Quota for half the chains: the first chain's newest access token, once, then answers.
    assert_eq!(chat(&chat_base, access).await, 200);
    let scripted = control(&url, "/quota", Some(json!({ "share": 0.5, "answers": 1 }))).await;
    assert_eq!(scripted["scripted"], 1);
    assert_eq!(chat(&chat_base, access).await, 429);
    assert_eq!(chat(&chat_base, access).await, 200);
    // Expiring every chain refuses the newest access tokens, and only those.
    let expired = control(&url, "/expire", Some(json!({ "share": 1.0 }))).await;
    assert_eq!(expired["expired"], 2);
    assert_eq!(chat(&chat_base, access).await, 401);
    assert_eq!(
        chat(&chat_base, other["access_token"].as_str().expect("a token")).await,
        401
    );
    assert_eq!(
        chat(&chat_base, login["access_token"].as_str().expect("a token")).await,
        200
    );
    control(&url, "/forget", Some(json!({}))).await;

    let refused = client()
        .post(format!("{url}/expire"))
        .json(&json!({ "share": 2 }))
        .send()
        .await
        .expect("the control API answers");
    assert_eq!(refused.status().as_u16(), 400);
}
