//! The real coding agents end to end: Claude Code (`claude -p`), Codex CLI (`codex exec`) and
//! Qwen Code (`qwen -p`), at the versions in [`CLAUDE_CODE_VERSION`], [`CODEX_VERSION`] and
//! [`QWEN_CODE_VERSION`], each run one tool-using session through the real `cliproxy serve`
//! binary in front of the fake Qwen. The fake's model asks the agent to read a file (Claude
//! Code's `Read` tool; `cat` through Codex's `exec_command`; Qwen Code's `read_file`), the
//! agent really runs it, and the model answers with what the tool returned, so the file's
//! contents reach the agent's final answer only through a second round trip of tool results.
//! Claude Code and Codex must also report the token counts the upstream gave (input, cached,
//! output: the fake reports half of each prompt as cached), and report a stream that breaks
//! off mid-answer, with cliproxy's message, instead of hanging.
//!
//! Each client runs with its telemetry, update checks and other non-essential traffic turned
//! off, and with a [`tripwire::Tripwire`] as its HTTP(S) proxy: any request to anywhere but
//! cliproxy fails the test.
//!
//! The clients come from npm (`.ci/run` installs them with `npm install --prefix
//! target/agent-clients`; `CLIPROXY_AGENT_CLIENTS` names another prefix). Without them these
//! tests print SKIPPED and pass, unless `CLIPROXY_REQUIRE_AGENT_TESTS=1` (CI), where they fail.

mod tripwire;

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::server::{API_KEY, MODEL, Stack};
use fake_qwen::ChatStep;
use serde_json::{Value, json};
use tripwire::Tripwire;

/// The versions in docs/clients.md, which `.ci/run` installs.
const CLAUDE_CODE_VERSION: &str = "2.1.328";
const CODEX_VERSION: &str = "0.169.0";
const QWEN_CODE_VERSION: &str = "0.24.4";
/// What the file the agents read says.
const MARKER: &str = "cliproxy-agents-marker 7f3a";
/// A hang guard for one agent run; a run takes about a second.
const RUN_GUARD: Duration = Duration::from_secs(180);

/// The installed clients' `node_modules/.bin`.
fn clients_bin() -> PathBuf {
    let prefix = std::env::var_os("CLIPROXY_AGENT_CLIENTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/agent-clients"),
        PathBuf::from,
    );
    prefix.join("node_modules/.bin")
}

/// The client `name` when it is installed at `version`. Otherwise the test is skipped with a
/// note, or fails when `CLIPROXY_REQUIRE_AGENT_TESTS=1`.
fn client(test: &str, name: &str, version: &str) -> Option<PathBuf> {
    let path = clients_bin().join(name);
    let why = match std::process::Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if String::from_utf8_lossy(&output.stdout).contains(version) => {
            return Some(path);
        }
        Ok(output) => format!(
            "{} is {}, not {version}",
            path.display(),
            String::from_utf8_lossy(&output.stdout).trim()
        ),
        Err(error) => format!("{} cannot run: {error}", path.display()),
    };
    let install = "npm install --prefix target/agent-clients --no-save \
                   @anthropic-ai/claude-code@2.1.328 @openai/codex@0.169.0 \
                   @qwen-code/qwen-code@0.24.4 playwright-core@1.65.2";
    let required = std::env::var("CLIPROXY_REQUIRE_AGENT_TESTS").is_ok_and(|value| value == "1");
    assert!(
        !required,
        "{test}: the agent CLIs are required (CLIPROXY_REQUIRE_AGENT_TESTS=1) but {why}; run \
         `{install}`"
    );
    // Straight to the process's stderr, past the test harness's capture.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; `{install}` runs it."
    );
    None
}

/// The text of a chat message's content: a string, or the `text` of its parts (Qwen Code
/// sends tool results as parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// A fake Qwen with one account, `cliproxy serve` in front of it, a work dir with the file
/// to read, and the tripwire.
struct Session {
    stack: Stack,
    tripwire: Tripwire,
    /// The agent's working directory, with `marker.txt`.
    work: PathBuf,
}

impl Session {
    async fn start() -> Session {
        // The agents' own model ids map to MODEL by alias.
        let stack = Stack::start("agents@example.com", |_, server| server).await;
        let work = stack.sandbox.home.path().join("work");
        std::fs::create_dir_all(&work).expect("create the work dir");
        std::fs::write(work.join("marker.txt"), format!("{MARKER}\n")).expect("write marker.txt");
        Session {
            stack,
            tripwire: Tripwire::start().await,
            work,
        }
    }

    /// A directory of the sandbox for one client's home and config.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.stack.sandbox.home.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a client dir");
        dir
    }

    /// `program ARGS` in the work dir, with only `PATH`, the tripwire as proxy and `env`.
    async fn run(&self, program: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Output {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HTTP_PROXY", &self.tripwire.url)
            .env("HTTPS_PROXY", &self.tripwire.url)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(RUN_GUARD, command.output())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish within {RUN_GUARD:?}", program.display()))
            .expect("the agent runs")
    }

    /// `cliproxy --config CONFIG ARGS` (a `run`) in the work dir, with the clients on `PATH`,
    /// the tripwire as proxy and `env`; the config names `port` and the tests' client key.
    async fn cliproxy_run(&self, port: u16, args: &[&str], env: &[(&str, &OsStr)]) -> Output {
        let config = self.dir("run").join("config.toml");
        std::fs::write(
            &config,
            format!("port = {port}\napi-keys = [\"{API_KEY}\"]\n"),
        )
        .expect("write the config");
        let mut all = vec!["--config", config.to_str().expect("UTF-8")];
        all.extend_from_slice(args);
        let mut paths = vec![clients_bin()];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let mut command = self.stack.sandbox.command(&all);
        command
            .current_dir(&self.work)
            .env("PATH", std::env::join_paths(paths).expect("a PATH"))
            .env("HTTP_PROXY", &self.tripwire.url)
            .env("HTTPS_PROXY", &self.tripwire.url)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        tokio::time::timeout(RUN_GUARD, command.output())
            .await
            .unwrap_or_else(|_| panic!("cliproxy run did not finish within {RUN_GUARD:?}"))
            .expect("cliproxy runs")
    }

    /// The port of the session's server.
    fn port(&self) -> u16 {
        self.stack
            .server
            .base
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("a port")
    }

    /// Asserts that `client`'s final answer reports what the tool returned: the file's contents.
    async fn check_answer(&mut self, client: &str, answer: &str, output: &Output) {
        assert!(
            answer.starts_with("The tool returned: ") && answer.contains(MARKER),
            "{client}'s answer after the tool result: {answer:?}\n{}",
            self.report(output).await
        );
    }

    /// Asserts that the fake got the file's contents back as a tool result, and that the
    /// agent made no request past cliproxy.
    async fn check_round_trip(&mut self, output: &Output) {
        let results: Vec<Value> = self
            .stack
            .fake
            .chat_requests()
            .iter()
            .flat_map(|request| {
                request.json()["messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|message| message["role"] == "tool")
            .collect();
        assert!(
            results
                .iter()
                .any(|result| text_of(&result["content"]).contains(MARKER)),
            "the tool's output did not come back as a tool result; tool messages: {results:?}\n{}",
            self.report(output).await
        );
        let stray = self.tripwire.requests().await;
        assert!(
            stray.is_empty(),
            "the agent sent requests past cliproxy: {stray:?}"
        );
    }

    /// `claude -p PROMPT --output-format json` with the environment of the Claude Code
    /// section of docs/clients.md, and `extra`.
    async fn claude(&self, claude: &Path, prompt: &str, extra: &[(&str, &OsStr)]) -> Output {
        let home = self.dir("claude-home");
        let mut env: Vec<(&str, &OsStr)> = vec![
            ("HOME", home.as_os_str()),
            ("ANTHROPIC_BASE_URL", OsStr::new(&self.stack.server.base)),
            ("ANTHROPIC_AUTH_TOKEN", OsStr::new(API_KEY)),
            ("ANTHROPIC_API_KEY", OsStr::new("")),
            ("ANTHROPIC_MODEL", OsStr::new(MODEL)),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", OsStr::new("1")),
            ("DISABLE_AUTOUPDATER", OsStr::new("1")),
            ("DISABLE_TELEMETRY", OsStr::new("1")),
            ("DISABLE_ERROR_REPORTING", OsStr::new("1")),
        ];
        env.extend_from_slice(extra);
        self.run(claude, &["-p", prompt, "--output-format", "json"], &env)
            .await
    }

    /// `codex exec --json PROMPT` with the provider block of the Codex CLI section of
    /// docs/clients.md, plus `provider_extra` (lines of that block), and what keeps it from
    /// other servers: no plugin sync (GitHub, chatgpt.com), no analytics (ab.chatgpt.com), no
    /// update check.
    async fn codex(&self, codex: &Path, prompt: &str, provider_extra: &str) -> Output {
        let codex_home = self.dir("codex-home");
        let config = format!(
            "model = \"gpt-5-codex\"\nmodel_provider = \"cliproxy\"\n\
             check_for_update_on_startup = false\n\n\
             [model_providers.cliproxy]\nname = \"cliproxy\"\nbase_url = \"{}/v1\"\n\
             env_key = \"CLIPROXY_CLIENT_KEY\"\nwire_api = \"responses\"\n{provider_extra}\n\
             [analytics]\nenabled = false\n\n[features]\nplugins = false\n",
            self.stack.server.base
        );
        std::fs::write(codex_home.join("config.toml"), config).expect("write config.toml");
        let home = self.dir("codex-user-home");
        self.run(
            codex,
            &["exec", "--json", "--skip-git-repo-check", prompt],
            &[
                ("HOME", home.as_os_str()),
                ("CODEX_HOME", codex_home.as_os_str()),
                ("CLIPROXY_CLIENT_KEY", OsStr::new(API_KEY)),
            ],
        )
        .await
    }

    /// Makes the fake break every stream off after its first two events; the events come
    /// 100 ms apart, so cliproxy has passed the first one on (and cannot fail over any more)
    /// when the cut comes.
    fn cut_streams(&self) {
        self.stack.fake.set_chat_step(ChatStep::CutAfter(2));
        self.stack
            .fake
            .set_stream_interval(Duration::from_millis(100));
    }

    /// The prompt tokens the fake reported over all its requests, and how many of them it
    /// reported as cached (a token per four bytes of a request, half of them cached).
    fn fake_prompt_tokens(&self) -> (u64, u64) {
        let prompts: Vec<u64> = self
            .stack
            .fake
            .chat_requests()
            .iter()
            .map(|request| u64::try_from(request.body.len() / 4).unwrap_or(u64::MAX))
            .collect();
        (
            prompts.iter().sum(),
            prompts.iter().map(|prompt| prompt / 2).sum(),
        )
    }

    /// The agent's output, cliproxy's log and the fake's last requests, for a failure message.
    async fn report(&mut self, output: &Output) -> String {
        format!(
            "--- agent {}\n{}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.stack.diagnostics(4).await
        )
    }
}

#[tokio::test]
async fn claude_code_runs_a_tool_through_cliproxy() {
    let test = "claude_code_runs_a_tool_through_cliproxy";
    let Some(claude) = client(test, "claude", CLAUDE_CODE_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    let marker = session.work.join("marker.txt");
    session
        .stack
        .fake
        .prefer_tool("Read", &json!({ "file_path": marker }));
    let output = session
        .claude(&claude, "What does marker.txt say?", &[])
        .await;
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if !output.status.success() || result["is_error"] != false {
        panic!("Claude Code failed\n{}", session.report(&output).await);
    }
    let answer = result["result"].as_str().unwrap_or_default();
    session.check_answer("Claude Code", answer, &output).await;
    assert!(result["num_turns"].as_u64() >= Some(2), "{result}");
    session.check_round_trip(&output).await;

    // The token counts the upstream reported reach its status: Anthropic counts cache reads
    // apart from the input tokens.
    let (prompt, cached) = session.fake_prompt_tokens();
    let usage = &result["usage"];
    assert_eq!(usage["input_tokens"], prompt - cached, "{usage}");
    assert_eq!(usage["cache_read_input_tokens"], cached, "{usage}");
    assert!(usage["output_tokens"].as_u64() > Some(0), "{usage}");
}

#[tokio::test]
async fn codex_runs_a_command_through_cliproxy() {
    let test = "codex_runs_a_command_through_cliproxy";
    let Some(codex) = client(test, "codex", CODEX_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    session
        .stack
        .fake
        .prefer_tool("exec_command", &json!({ "cmd": "cat marker.txt" }));
    let output = session.codex(&codex, "What does marker.txt say?", "").await;
    if !output.status.success() {
        panic!("Codex failed\n{}", session.report(&output).await);
    }
    // `--json`: one event per line; the answer is the last agent message.
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let answer = events
        .iter()
        .rev()
        .find(|event| event["item"]["type"] == "agent_message")
        .and_then(|event| event["item"]["text"].as_str())
        .unwrap_or_default()
        .to_owned();
    session.check_answer("Codex", &answer, &output).await;
    session.check_round_trip(&output).await;

    // The token counts the upstream reported reach its status line.
    let (prompt, cached) = session.fake_prompt_tokens();
    let usage = events
        .iter()
        .find(|event| event["type"] == "turn.completed")
        .map(|event| &event["usage"])
        .unwrap_or(&Value::Null);
    assert_eq!(usage["input_tokens"], prompt, "{usage}");
    assert_eq!(usage["cached_input_tokens"], cached, "{usage}");
    assert!(usage["output_tokens"].as_u64() > Some(0), "{usage}");
}

/// A stream that breaks off mid-answer ends with Anthropic's error event; Claude Code reports
/// it with cliproxy's message and exits. (With its retries and non-streamed fallback turned
/// off, so that the run is about the stream: by default it retries up to 10 times with backoff,
/// then reports the last error.)
#[tokio::test]
async fn claude_code_reports_a_stream_that_breaks_off() {
    let test = "claude_code_reports_a_stream_that_breaks_off";
    let Some(claude) = client(test, "claude", CLAUDE_CODE_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    session.cut_streams();
    let output = session
        .claude(
            &claude,
            "Say hello",
            &[
                ("CLAUDE_CODE_MAX_RETRIES", OsStr::new("0")),
                ("CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK", OsStr::new("1")),
            ],
        )
        .await;
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let reported = result["result"].as_str().unwrap_or_default();
    if output.status.success()
        || result["is_error"] != true
        || !reported.contains("the upstream stream broke off")
        || !reported.contains("the answer is incomplete")
    {
        panic!(
            "Claude Code did not report the broken stream\n{}",
            session.report(&output).await
        );
    }
}

/// A stream that breaks off mid-answer ends with an error event and `response.failed`; Codex
/// reports it with cliproxy's message and exits. (With `stream_max_retries = 0`: by default it
/// reconnects five times first.)
#[tokio::test]
async fn codex_reports_a_stream_that_breaks_off() {
    let test = "codex_reports_a_stream_that_breaks_off";
    let Some(codex) = client(test, "codex", CODEX_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    session.cut_streams();
    let output = session
        .codex(&codex, "Say hello", "stream_max_retries = 0\n")
        .await;
    // `--json`: the failed turn is an event with the error's message.
    let failed = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["type"] == "turn.failed")
        .and_then(|event| event["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if output.status.success()
        || !failed.contains("the upstream stream broke off")
        || !failed.contains("the answer is incomplete")
    {
        panic!(
            "Codex did not report the broken stream\n{}",
            session.report(&output).await
        );
    }
}

#[tokio::test]
async fn qwen_code_reads_a_file_through_cliproxy() {
    let test = "qwen_code_reads_a_file_through_cliproxy";
    let Some(qwen) = client(test, "qwen", QWEN_CODE_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    let marker = session.work.join("marker.txt");
    session
        .stack
        .fake
        .prefer_tool("read_file", &json!({ "file_path": marker }));
    let home = session.dir("qwen-home");
    // As docs/clients.md sets Qwen Code up, plus its usage statistics turned off (they go to
    // Alibaba Cloud's RUM service otherwise).
    std::fs::create_dir_all(home.join(".qwen")).expect("create ~/.qwen");
    std::fs::write(
        home.join(".qwen/settings.json"),
        r#"{"privacy":{"usageStatisticsEnabled":false}}"#,
    )
    .expect("write settings.json");
    let base_url = format!("{}/v1", session.stack.server.base);
    let output = session
        .run(
            &qwen,
            &["-p", "What does marker.txt say?"],
            &[
                ("HOME", home.as_os_str()),
                ("OPENAI_BASE_URL", OsStr::new(&base_url)),
                ("OPENAI_API_KEY", OsStr::new(API_KEY)),
                ("OPENAI_MODEL", OsStr::new(MODEL)),
            ],
        )
        .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        panic!("Qwen Code failed\n{}", session.report(&output).await);
    }
    session.check_answer("Qwen Code", &stdout, &output).await;
    session.check_round_trip(&output).await;
}

/// `cliproxy run claude` against the running server: the same tool-using session, with
/// nothing set up by hand.
#[tokio::test]
async fn claude_code_runs_a_tool_through_cliproxy_run() {
    let test = "claude_code_runs_a_tool_through_cliproxy_run";
    let Some(_) = client(test, "claude", CLAUDE_CODE_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    let marker = session.work.join("marker.txt");
    session
        .stack
        .fake
        .prefer_tool("Read", &json!({ "file_path": marker }));
    let home = session.dir("claude-home");
    let port = session.port();
    let output = session
        .cliproxy_run(
            port,
            &[
                "run",
                "--model",
                MODEL,
                "claude",
                "-p",
                "What does marker.txt say?",
                "--output-format",
                "json",
            ],
            &[
                ("HOME", home.as_os_str()),
                ("DISABLE_AUTOUPDATER", OsStr::new("1")),
                ("DISABLE_TELEMETRY", OsStr::new("1")),
                ("DISABLE_ERROR_REPORTING", OsStr::new("1")),
            ],
        )
        .await;
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if !output.status.success() || result["is_error"] != false {
        panic!(
            "cliproxy run claude failed\n{}",
            session.report(&output).await
        );
    }
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("started one"),
        "the running server serves"
    );
    let answer = result["result"].as_str().unwrap_or_default();
    session.check_answer("Claude Code", answer, &output).await;
    session.check_round_trip(&output).await;
}

/// `cliproxy run codex` with no server at the configured port: it starts one for the
/// session, Codex's provider comes from `-c` overrides (its config.toml only turns its
/// other traffic off), and Codex's exit code is `run`'s.
#[tokio::test]
async fn codex_runs_a_command_through_cliproxy_run_with_a_server_of_its_own() {
    let test = "codex_runs_a_command_through_cliproxy_run_with_a_server_of_its_own";
    let Some(_) = client(test, "codex", CODEX_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    session
        .stack
        .fake
        .prefer_tool("exec_command", &json!({ "cmd": "cat marker.txt" }));
    let codex_home = session.dir("codex-home");
    std::fs::write(
        codex_home.join("config.toml"),
        "check_for_update_on_startup = false\n[analytics]\nenabled = false\n[features]\nplugins = false\n",
    )
    .expect("write config.toml");
    let home = session.dir("codex-user-home");
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("an address").port();
    drop(free);
    let output = session
        .cliproxy_run(
            port,
            &[
                "run",
                "--model",
                MODEL,
                "codex",
                "exec",
                "--json",
                "--skip-git-repo-check",
                "What does marker.txt say?",
            ],
            &[
                ("HOME", home.as_os_str()),
                ("CODEX_HOME", codex_home.as_os_str()),
            ],
        )
        .await;
    if !output.status.success() {
        panic!(
            "cliproxy run codex failed\n{}",
            session.report(&output).await
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("started one for this session"), "{stderr}");
    let answer = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["item"]["type"] == "agent_message")
        .filter_map(|event| event["item"]["text"].as_str().map(str::to_owned))
        .next_back()
        .unwrap_or_default();
    session.check_answer("Codex", &answer, &output).await;
    session.check_round_trip(&output).await;
}

/// `cliproxy run qwen` against the running server, in a home whose Qwen Code settings chose
/// its own Qwen OAuth login: `--auth-type openai` wins over it.
#[tokio::test]
async fn qwen_code_reads_a_file_through_cliproxy_run() {
    let test = "qwen_code_reads_a_file_through_cliproxy_run";
    let Some(_) = client(test, "qwen", QWEN_CODE_VERSION) else {
        return;
    };
    let mut session = Session::start().await;
    let marker = session.work.join("marker.txt");
    session
        .stack
        .fake
        .prefer_tool("read_file", &json!({ "file_path": marker }));
    let home = session.dir("qwen-home");
    std::fs::create_dir_all(home.join(".qwen")).expect("create ~/.qwen");
    std::fs::write(
        home.join(".qwen/settings.json"),
        r#"{"privacy":{"usageStatisticsEnabled":false},"security":{"auth":{"selectedType":"qwen-oauth"}}}"#,
    )
    .expect("write settings.json");
    let port = session.port();
    let output = session
        .cliproxy_run(
            port,
            &[
                "run",
                "--model",
                MODEL,
                "qwen",
                "-p",
                "What does marker.txt say?",
            ],
            &[("HOME", home.as_os_str())],
        )
        .await;
    if !output.status.success() {
        panic!(
            "cliproxy run qwen failed\n{}",
            session.report(&output).await
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    session.check_answer("Qwen Code", &stdout, &output).await;
    session.check_round_trip(&output).await;
}
