//! The real client SDKs against `cliproxy serve`: the OpenAI Python SDK on chat completions
//! and on Responses, and the Anthropic Python SDK on Messages, each through the real binary
//! in front of the fake Qwen. The clients are the scripts in `tests/sdk/`; this file starts
//! the fake and the server, runs a script with `python3` and asserts it passed.
//!
//! The fake serves [`MODEL`] to an OAuth account and, as `[[openai-compat]]` upstreams (with
//! the default `reasoning = "effort"`): [`THINKING_MODEL`], which the translations ask to
//! think (`reasoning_effort`; the fake then answers with `reasoning`); and models whose upstream
//! fails in its own way, on every request: [`BROKEN_MODEL`] breaks its stream off mid-answer,
//! [`ERRORING_MODEL`] sends an error chunk mid-answer, [`OVERLOADED_MODEL`] one saying it is
//! overloaded, [`TRUNCATED_MODEL`] stops at the output-token limit. `[models.aliases]` maps Claude Code's and Codex's own model ids
//! ([`CLAUDE_MODEL`], [`CODEX_MODEL`]) to [`MODEL`].
//!
//! Each script runs twice: first with the fake's default answers (one tool call per turn,
//! no text before it), then only its tool tests with two calls per turn and text first.
//!
//! Without the pinned SDKs (`pip install -r tests/sdk/requirements.txt`) these tests print
//! SKIPPED and pass, unless `CLIPROXY_REQUIRE_SDK_TESTS=1` (CI sets it), where they fail.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::support::server::{API_KEY, MODEL, Stack};
use fake_qwen::ChatStep;

/// A model that takes Qwen's `enable_thinking` switch (a Qwen3 model that is not a coder one),
/// served by an API-key upstream: OAuth accounts serve only coder models.
const THINKING_MODEL: &str = "qwen3-235b-a22b";
const THINKING_KEY: &str = "sk-fake-thinking";
/// Models whose upstream fails on every request, with the key and the step that does it.
const BROKEN_MODEL: &str = "broken-model";
const ERRORING_MODEL: &str = "erroring-model";
const OVERLOADED_MODEL: &str = "overloaded-model";
const TRUNCATED_MODEL: &str = "truncated-model";
const FAILING_UPSTREAMS: [(&str, &str, ChatStep); 4] = [
    (BROKEN_MODEL, "sk-fake-broken", ChatStep::CutAfter(2)),
    (ERRORING_MODEL, "sk-fake-erroring", ChatStep::ErrorAfter(2)),
    (
        OVERLOADED_MODEL,
        "sk-fake-overloaded",
        ChatStep::OverloadedAfter(2),
    ),
    (TRUNCATED_MODEL, "sk-fake-truncated", ChatStep::Length),
];
/// Model ids as Claude Code and Codex send them, which `[models.aliases]` maps to [`MODEL`].
const CLAUDE_MODEL: &str = "claude-sonnet-4-5-20250929";
const CODEX_MODEL: &str = "gpt-5-codex";
/// A hang guard for one script run; the fake answers in milliseconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// Client settings that must not leak from the developer's shell into the scripts.
const CLIENT_ENV: [&str; 15] = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "CLIPROXY_SDK_ONLY",
    "CLIPROXY_SDK_LEADING_TEXT",
];

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name)
}

/// Whether the SDK tests can run here. Without `python3` or the SDKs they are skipped with a
/// note, or fail when `CLIPROXY_REQUIRE_SDK_TESTS=1`.
fn sdks_available(test: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import openai, anthropic; print(openai.__version__, anthropic.__version__)",
        ])
        .output();
    let why = match probe {
        Ok(output) if output.status.success() => {
            let versions = String::from_utf8_lossy(&output.stdout);
            eprintln!("{test}: openai and anthropic SDKs {}", versions.trim());
            return true;
        }
        Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        Err(error) => format!("python3 cannot run: {error}"),
    };
    let required = std::env::var("CLIPROXY_REQUIRE_SDK_TESTS").is_ok_and(|value| value == "1");
    assert!(
        !required,
        "{test}: the Python SDKs are required (CLIPROXY_REQUIRE_SDK_TESTS=1) but not importable; \
         run `python3 -m pip install -r tests/sdk/requirements.txt`.\n{why}"
    );
    // Straight to the process's stderr, past the test harness's capture, so a plain
    // `cargo test` shows it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: the Python SDKs are not importable; \
         `python3 -m pip install -r tests/sdk/requirements.txt` runs them. ({why})"
    );
    false
}

/// The stack the scripts run against, with the thinking model's API-key upstream.
struct Setup(Stack);

impl Setup {
    async fn start() -> Setup {
        let stack = Stack::start("sdk@example.com", |fake, server| {
            let upstream = |name: &str, key: &str, model: &str| {
                fake.add_api_key(key);
                format!(
                    "[[openai-compat]]\nname = \"{name}\"\nbase-url = \"{}\"\n\
                     api-keys = [\"{key}\"]\nmodels = [\"{model}\"]\n",
                    fake.chat_base_url()
                )
            };
            let mut config = upstream("fake-thinking", THINKING_KEY, THINKING_MODEL);
            for (model, key, step) in FAILING_UPSTREAMS {
                config.push_str(&upstream(model, key, model));
                fake.script_chat(key, vec![step]);
            }
            server.config(&config)
        })
        .await;
        Setup(stack)
    }

    /// Runs `name` with `python3` against the server, with `env` on top of the usual settings.
    async fn run(&self, name: &str, env: &[(&str, &str)]) -> Output {
        let mut command = tokio::process::Command::new("python3");
        command
            .arg(script(name))
            .env("CLIPROXY_BASE_URL", &self.0.server.base)
            .env("CLIPROXY_API_KEY", API_KEY)
            .env("CLIPROXY_MODEL", MODEL)
            .env("CLIPROXY_THINKING_MODEL", THINKING_MODEL)
            .env("CLIPROXY_SDK_CLAUDE_MODEL", CLAUDE_MODEL)
            .env("CLIPROXY_SDK_CODEX_MODEL", CODEX_MODEL)
            .env("CLIPROXY_SDK_BROKEN_MODEL", BROKEN_MODEL)
            .env("CLIPROXY_SDK_ERRORING_MODEL", ERRORING_MODEL)
            .env("CLIPROXY_SDK_OVERLOADED_MODEL", OVERLOADED_MODEL)
            .env("CLIPROXY_SDK_TRUNCATED_MODEL", TRUNCATED_MODEL)
            .env("CLIPROXY_SDK_FAKE_UPSTREAM", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true);
        for name in CLIENT_ENV {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish within {SCRIPT_TIMEOUT:?}"))
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!(
            "{name} {env:?}: {}",
            stdout.lines().last().unwrap_or("(no output)")
        );
        output
    }
}

/// Runs `name` in both fake set-ups and asserts every run passed.
async fn sdk_script(test: &str, name: &str) {
    if !sdks_available(test) {
        return;
    }
    let mut setup = Setup::start().await;
    let mut failures = Vec::new();

    let single = setup.run(name, &[("CLIPROXY_SDK_TOOL_CALLS", "1")]).await;
    if !single.status.success() {
        failures.push(("default answers, one tool call per turn", single));
    }

    setup.0.fake.set_chat_step(ChatStep::ToolCalls {
        calls: 2,
        leading_text: true,
    });
    let double = setup
        .run(
            name,
            &[
                ("CLIPROXY_SDK_ONLY", "tool"),
                ("CLIPROXY_SDK_TOOL_CALLS", "2"),
                ("CLIPROXY_SDK_LEADING_TEXT", "1"),
            ],
        )
        .await;
    if !double.status.success() {
        failures.push(("two tool calls per turn after text", double));
    }

    if failures.is_empty() {
        return;
    }
    let mut report = String::new();
    for (phase, output) in &failures {
        report.push_str(&format!(
            "=== {name} failed ({phase}), {}\n{}{}\n",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    report.push_str(&setup.0.diagnostics(8).await);
    panic!("{report}");
}

#[tokio::test]
async fn openai_sdk_chat_completions() {
    sdk_script("openai_sdk_chat_completions", "openai_chat.py").await;
}

#[tokio::test]
async fn openai_sdk_responses() {
    sdk_script("openai_sdk_responses", "openai_responses.py").await;
}

#[tokio::test]
async fn anthropic_sdk_messages() {
    sdk_script("anthropic_sdk_messages", "anthropic_messages.py").await;
}
