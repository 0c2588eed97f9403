//! `cliproxy run` and `cliproxy env` end to end with stand-in agents: shell scripts named
//! `claude`, `codex` and `qwen` that record the arguments and environment they got, and exit
//! as told. (tests/e2e/agents.rs runs the real agents the same way.)

use std::path::{Path, PathBuf};

use crate::support::Sandbox;
use crate::support::server::{API_KEY, Server, write_account};
use fake_qwen::FakeQwen;

/// Writes an executable `name` into `dir` that saves its arguments to `name.args` and its
/// environment to `name.env` beside it, runs `body`, and exits with `$?` of the body.
fn stand_in(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$0.args\"\nenv > \"$0.env\"\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A `PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// A config for `port` with the tests' client key.
fn config(sandbox: &Sandbox, port: u16) -> String {
    let path = sandbox.home.path().join("run.toml");
    std::fs::write(
        &path,
        format!("port = {port}\napi-keys = [\"{API_KEY}\"]\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// A loopback port nothing listens on (it was free a moment ago).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[tokio::test]
async fn run_points_claude_at_the_running_server_and_passes_its_exit_code() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox).start().await;
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let bin = sandbox.home.path().join("bin");
    let claude = stand_in(&bin, "claude", "exit 7");
    let config = config(&sandbox, port);
    let mut command = sandbox.command(&[
        "--config", &config, "run", "--model", "m-1", "claude", "-p", "hi there", "--config", "x",
    ]);
    command.env("PATH", path_with(&bin));
    let run = crate::support::run(command, "").await;
    let stderr = run.failure(7);
    assert!(
        !stderr.contains("started one"),
        "the running server is used: {stderr}"
    );
    assert_eq!(
        read(claude.with_extension("args")),
        "-p\nhi there\n--config\nx\n"
    );
    let env = read(claude.with_extension("env"));
    for line in [
        format!("ANTHROPIC_BASE_URL={}", server.base),
        format!("ANTHROPIC_AUTH_TOKEN={API_KEY}"),
        "ANTHROPIC_API_KEY=".to_owned(),
        "ANTHROPIC_MODEL=m-1".to_owned(),
    ] {
        assert!(env.lines().any(|got| got == line), "no {line:?} in\n{env}");
    }
}

#[tokio::test]
async fn run_starts_a_server_for_the_agent_s_lifetime_when_none_answers() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    write_account(&sandbox, &fake, "run@example.com", 86_400);
    let bin = sandbox.home.path().join("bin");
    // Asks the server it was given for /v1/models with its key, and keeps the status line.
    let qwen = stand_in(
        &bin,
        "qwen",
        r#"hostport=${OPENAI_BASE_URL#http://}; hostport=${hostport%/v1}
exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 90
printf 'GET /v1/models HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' "$hostport" "$OPENAI_API_KEY" >&3
head -n 1 <&3 > "$0.answer"
exit 0"#,
    );
    let configured = free_port();
    let config = config(&sandbox, configured);
    let mut command = sandbox.command(&["--config", &config, "run", "qwen", "-p", "hello"]);
    command.env("PATH", path_with(&bin));
    let run = crate::support::run(command, "").await;
    let stderr = run.stderr();
    assert_eq!(run.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("no server answered on 127.0.0.1:{configured}; started one for this session on 127.0.0.1:")),
        "{stderr}"
    );
    assert!(
        read(qwen.with_extension("answer")).starts_with("HTTP/1.1 200"),
        "the started server served the agent"
    );
    assert_eq!(
        read(qwen.with_extension("args")),
        "--auth-type\nopenai\n-p\nhello\n"
    );
    let env = read(qwen.with_extension("env"));
    assert!(
        env.lines()
            .any(|line| line == format!("OPENAI_API_KEY={API_KEY}")),
        "{env}"
    );
    assert!(
        env.lines()
            .any(|line| line == "OPENAI_MODEL=qwen3-coder-plus"),
        "the first of [qwen] models: {env}"
    );
    assert!(!env.contains(&format!(":{configured}/")), "{env}");
    // The server was stopped cleanly when the agent exited, and its log went to a file.
    let log = read(sandbox.home.path().join(".local/state/cliproxy/run.log"));
    assert!(log.contains("listening on http://127.0.0.1:"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn run_reports_an_agent_killed_by_a_signal_as_the_shell_does_and_a_missing_one() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox).start().await;
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let bin = sandbox.home.path().join("bin");
    stand_in(&bin, "codex", "kill -TERM $$");
    let config = config(&sandbox, port);
    let mut command = sandbox.command(&["--config", &config, "run", "codex", "exec", "hi"]);
    command.env("PATH", path_with(&bin));
    crate::support::run(command, "").await.failure(128 + 15);

    let mut command = sandbox.command(&["--config", &config, "run", "claude"]);
    command.env("PATH", sandbox.home.path().join("empty"));
    let shown = crate::support::run(command, "").await.failure(1);
    assert!(
        shown.contains(
            "`claude` is not on PATH; install it (npm install -g @anthropic-ai/claude-code)"
        ),
        "{shown}"
    );
}

#[tokio::test]
async fn run_refuses_a_server_that_does_not_take_the_key() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox).start().await;
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let path = sandbox.home.path().join("other.toml");
    std::fs::write(
        &path,
        format!("port = {port}\napi-keys = [\"another-key\"]\n"),
    )
    .unwrap();
    let bin = sandbox.home.path().join("bin");
    let claude = stand_in(&bin, "claude", "exit 0");
    let mut command = sandbox.command(&["--config", path.to_str().unwrap(), "run", "claude"]);
    command.env("PATH", path_with(&bin));
    let shown = crate::support::run(command, "").await.failure(1);
    assert!(
        !claude.with_extension("args").exists(),
        "the agent was not started"
    );
    assert!(
        shown.contains("refuses this config's client key"),
        "{shown}"
    );
    assert!(!shown.contains("another-key"), "{shown}");
}

#[tokio::test]
async fn env_prints_each_agent_s_set_up_as_shell_commands() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = config(&sandbox, 9555);
    let claude = sandbox
        .run(&["--config", &config, "env", "claude"], "")
        .await
        .success();
    assert!(
        claude.contains("export ANTHROPIC_BASE_URL='http://127.0.0.1:9555'\n"),
        "{claude}"
    );
    assert!(claude.contains("export ANTHROPIC_API_KEY=''\n"), "{claude}");
    let codex = sandbox
        .run(
            &[
                "--config",
                &config,
                "env",
                "--model",
                "coder-model",
                "codex",
            ],
            "",
        )
        .await
        .success();
    assert!(
        codex.contains(&format!("export CLIPROXY_CLIENT_KEY='{API_KEY}'\n")),
        "{codex}"
    );
    assert!(
        codex.contains("'model_providers.cliproxy.base_url=\"http://127.0.0.1:9555/v1\"'"),
        "{codex}"
    );
    assert!(codex.contains("'model=\"coder-model\"'"), "{codex}");

    // The output is what a shell runs: the function adds the provider to each codex call.
    let bin = sandbox.home.path().join("bin");
    let stand = stand_in(&bin, "codex", "exit 0");
    let script = format!("{codex}\ncodex exec hi\n");
    let status = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path_with(&bin))
        .status()
        .expect("bash runs");
    assert!(status.success());
    let args = read(stand.with_extension("args"));
    assert!(
        args.starts_with("-c\nmodel_provider=\"cliproxy\"\n"),
        "{args}"
    );
    assert!(
        args.ends_with("wire_api=\"responses\"\nexec\nhi\n"),
        "{args}"
    );
}

/// SIGTERM to `cliproxy run` (a service manager, a closed terminal's SIGHUP alike) reaches the
/// agent; `run` waits for it, stops the server it started, and exits with the agent's code.
#[tokio::test]
async fn run_passes_sigterm_to_the_agent_and_still_stops_its_server() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let bin = sandbox.home.path().join("bin");
    stand_in(
        &bin,
        "claude",
        "trap 'exit 5' TERM\necho agent-ready >&2\nwhile :; do sleep 1 & wait $!; done",
    );
    let config = config(&sandbox, free_port());
    let mut command = sandbox.command(&["--config", &config, "run", "claude"]);
    command.env("PATH", path_with(&bin));
    let mut running = crate::support::Running::spawn(command);
    running.wait_for("agent-ready").await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &running.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let finished = running.finish().await;
    assert_eq!(finished.code, Some(5), "{}", finished.shown);
    let log = read(sandbox.home.path().join(".local/state/cliproxy/run.log"));
    assert!(log.contains("stopped"), "the server was stopped: {log}");
}
