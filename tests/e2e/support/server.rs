//! A running `cliproxy serve` child process for end-to-end tests: started on a
//! free port, with its log readable line by line so tests wait for events, not time.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use fake_qwen::{FakeQwen, IssuedToken};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::Sandbox;

/// The client key every test server accepts.
pub const API_KEY: &str = "test-key";

/// How long a wait for an event (a log line, a signal of the fake) may take before the test is
/// called hung. Not a synchronisation: it only turns a hang into a failure.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Awaits `event`, failing the test with `what` if it has not happened within [`HANG_GUARD`].
#[track_caller]
pub fn guarded<F: Future>(what: &str, event: F) -> impl Future<Output = F::Output> {
    let what = what.to_owned();
    let caller = std::panic::Location::caller();
    async move {
        tokio::time::timeout(HANG_GUARD, event)
            .await
            .unwrap_or_else(|_| panic!("{caller}: no {what} within {HANG_GUARD:?}"))
    }
}

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: mpsc::UnboundedReceiver<String>,
    /// Every log line read so far.
    pub seen: Vec<String>,
}

impl Server {
    /// Starts `cliproxy serve` in `sandbox` with `api-keys = [API_KEY]`, port 0 and `extra_config`.
    pub async fn start(sandbox: &Sandbox, extra_config: &str) -> Server {
        Self::start_with_env(sandbox, extra_config, &[]).await
    }

    /// [`Server::start`] with more environment variables (the sandbox's are cleared).
    pub async fn start_with_env(
        sandbox: &Sandbox,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let config = Self::write_config(sandbox, extra_config);
        let mut command = sandbox.command(&["--config", config.to_str().unwrap(), "serve"]);
        command
            .env("CLIPROXY_LOG", "info")
            .envs(env.iter().copied());
        Self::spawn(command).await
    }

    /// Starts `cliproxy serve` in `sandbox` without client keys (port 0, `extra_config`).
    pub async fn start_without_keys(sandbox: &Sandbox, extra_config: &str) -> Server {
        let config = sandbox
            .home
            .path()
            .join(format!("config-{}.toml", unique()));
        std::fs::write(&config, format!("port = 0\n{extra_config}\n")).expect("write config");
        let mut command = sandbox.command(&["--config", config.to_str().unwrap(), "serve"]);
        command.env("CLIPROXY_LOG", "info");
        Self::spawn(command).await
    }

    /// Writes the config [`Server::start`] uses into `sandbox` and returns its path, for tests
    /// that build the command themselves.
    pub fn write_config(sandbox: &Sandbox, extra_config: &str) -> PathBuf {
        let config = sandbox
            .home
            .path()
            .join(format!("config-{}.toml", unique()));
        std::fs::write(
            &config,
            format!("port = 0\napi-keys = [\"{API_KEY}\"]\n{extra_config}\n"),
        )
        .expect("write config");
        config
    }

    /// Runs a prepared `cliproxy serve` command and waits until it listens.
    pub async fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().expect("spawn cliproxy serve");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            log,
            seen: Vec::new(),
        };
        let listening = server.wait_for_log("listening on http://").await;
        let start = listening.find("http://").expect("address");
        let address: String = listening[start..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        server.base = address;
        server
    }

    /// Reads the log until a line contains `needle`, and returns that line.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        self.next_log_containing(needle).await
    }

    /// Reads new log lines until one contains `needle` (lines seen before are not searched).
    /// Fails the test if the server exits first, or logs nothing new for [`HANG_GUARD`].
    pub async fn next_log_containing(&mut self, needle: &str) -> String {
        loop {
            let line = self.next_line(needle).await;
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The next log line, read while waiting for `needle`.
    async fn next_line(&mut self, needle: &str) -> String {
        let line = match tokio::time::timeout(HANG_GUARD, self.log.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the server exited before logging {needle:?}; its log:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "no {needle:?} in the server's log within {HANG_GUARD:?}; its log:\n{}",
                self.seen.join("\n")
            ),
        };
        self.seen.push(line.clone());
        line
    }

    /// Reads both servers' logs until one of them logs a line containing `needle`; returns
    /// which one (0 for `a`, 1 for `b`) and the line.
    pub async fn first_to_log(a: &mut Server, b: &mut Server, needle: &str) -> (usize, String) {
        for (index, server) in [&*a, &*b].into_iter().enumerate() {
            if let Some(line) = server.seen.iter().find(|line| line.contains(needle)) {
                return (index, line.clone());
            }
        }
        loop {
            let (index, line) = tokio::select! {
                line = a.next_line(needle) => (0, line),
                line = b.next_line(needle) => (1, line),
            };
            if line.contains(needle) {
                return (index, line);
            }
        }
    }

    /// Kills the process (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        guarded("exit after SIGKILL", self.child.wait())
            .await
            .expect("wait");
    }

    /// A client that sends the API key.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {API_KEY}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a chat completion for `model` and returns the response.
    pub async fn chat(&self, model: &str, stream: bool) -> reqwest::Response {
        send_chat(
            &self.client(),
            &self.url("/v1/chat/completions"),
            model,
            stream,
        )
        .await
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Waits for the process to exit, and reads the rest of its log.
    pub async fn wait(&mut self) -> ExitStatus {
        let status = guarded("server exit", self.child.wait())
            .await
            .expect("wait");
        while let Some(line) = guarded("end of the server's log", self.log.recv()).await {
            self.seen.push(line);
        }
        status
    }
}

/// POSTs a one-message chat completion to `url`.
pub async fn send_chat(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    stream: bool,
) -> reqwest::Response {
    client
        .post(url)
        .json(&serde_json::json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        }))
        .send()
        .await
        .expect("request reaches the server")
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Writes a token file for a fresh account of `fake`, expiring in `expires_in_secs`.
pub fn write_account(
    sandbox: &Sandbox,
    fake: &FakeQwen,
    email: &str,
    expires_in_secs: i64,
) -> (PathBuf, IssuedToken) {
    let tokens = fake.mint_tokens();
    let path = write_token_file(sandbox, fake, email, &tokens, expires_in_secs);
    (path, tokens)
}

/// Writes a token file with `tokens` into the sandbox's auth dir, atomically (as a login would).
pub fn write_token_file(
    sandbox: &Sandbox,
    fake: &FakeQwen,
    email: &str,
    tokens: &IssuedToken,
    expires_in_secs: i64,
) -> PathBuf {
    // Qwen answers refreshes with a host like `portal.qwen.ai`, which means https; the fake
    // speaks plain http, so it must name its scheme for refreshed tokens to reach it.
    fake.set_answered_resource_url(Some(fake.chat_base_url()));
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    let json = serde_json::json!({
        "type": "qwen",
        "email": email,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "resource_url": fake.chat_base_url(),
        "expired": (now + time::Duration::seconds(expires_in_secs)).format(format).unwrap(),
        "last_refresh": now.format(format).unwrap(),
    });
    let dir = sandbox.auth_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("qwen-{email}-1700000000.json"));
    let temp = dir.join(format!(".{email}.tmp"));
    std::fs::write(&temp, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    path
}
