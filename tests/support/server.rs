//! A running `cliproxy serve` child process for end-to-end tests: started on a
//! free port, with its log readable line by line so tests wait for events, not time.

use std::path::PathBuf;
use std::process::ExitStatus;

use fake_qwen::{FakeQwen, IssuedToken};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::support::Sandbox;

/// The client key every test server accepts.
pub const API_KEY: &str = "test-key";

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
        let config = sandbox
            .home
            .path()
            .join(format!("config-{}.toml", unique()));
        std::fs::write(
            &config,
            format!("port = 0\napi-keys = [\"{API_KEY}\"]\n{extra_config}\n"),
        )
        .expect("write config");
        let mut command = sandbox.command(&["--config", config.to_str().unwrap(), "serve"]);
        command
            .env("CLIPROXY_LOG", "info")
            .envs(env.iter().copied());
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
    pub async fn next_log_containing(&mut self, needle: &str) -> String {
        loop {
            let Some(line) = self.log.recv().await else {
                panic!(
                    "the server exited before logging {needle:?}; its log:\n{}",
                    self.seen.join("\n")
                );
            };
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
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

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().await.expect("wait");
        while let Some(line) = self.log.recv().await {
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
