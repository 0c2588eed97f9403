//! A running `cliproxy serve` child process for end-to-end tests: started on a
//! free port, with its log readable line by line so tests wait for events, not time.

use std::ffi::{OsStr, OsString};
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

/// The model the tests ask for: one that Qwen OAuth accounts serve.
pub const MODEL: &str = "coder-model";

/// A day in seconds: a token file expiring in a day is not refreshed while a test runs.
pub const DAY: i64 = 86_400;

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
    /// The accounts its [`Builder`] wrote.
    accounts: Vec<Account>,
}

/// An account a [`Builder`] wrote into the sandbox's auth dir.
#[derive(Clone)]
pub struct Account {
    pub email: String,
    /// Its token file.
    pub path: PathBuf,
    /// The tokens in that file, as the fake issued them.
    pub tokens: IssuedToken,
}

/// A `cliproxy serve` to start: its config, environment and accounts (see [`Server::builder`]).
pub struct Builder<'a> {
    sandbox: &'a Sandbox,
    keys: bool,
    affinity: bool,
    config: String,
    env: Vec<(String, OsString)>,
    accounts: Vec<Account>,
}

impl Builder<'_> {
    /// Writes a token file for a fresh account of `fake` for each of `emails`, valid for a day
    /// (so no refresh is due while a test runs).
    pub fn accounts(mut self, fake: &FakeQwen, emails: &[&str]) -> Self {
        for email in emails {
            self = self.account_expiring(fake, email, DAY);
        }
        self
    }

    /// Writes a token file for a fresh account of `fake` whose access token expires in
    /// `expires_in_secs` (60 is inside the refresh lead: the server refreshes it at once).
    pub fn account_expiring(mut self, fake: &FakeQwen, email: &str, expires_in_secs: i64) -> Self {
        let (path, tokens) = write_account(self.sandbox, fake, email, expires_in_secs);
        self.accounts.push(Account {
            email: email.to_owned(),
            path,
            tokens,
        });
        self
    }

    /// Config lines after `port` and `api-keys`.
    pub fn config(mut self, extra: &str) -> Self {
        self.config.push_str(extra);
        self.config.push('\n');
        self
    }

    /// `[models.aliases]` that send the model ids Claude Code and Codex ask for (`claude-*`,
    /// `gpt-5*`) to [`MODEL`], as their users configure it.
    pub fn client_aliases(self) -> Self {
        self.config(&format!(
            "[models.aliases]\n\"claude-*\" = \"{MODEL}\"\n\"gpt-5*\" = \"{MODEL}\""
        ))
    }

    /// An environment variable of the server (the sandbox's environment is cleared).
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Session affinity on, as it is by default outside the tests: requests of one
    /// conversation keep to one credential. The tests' servers run without it, so that the
    /// identical requests of tests about rotation and failover are spread as they expect.
    pub fn session_affinity(mut self) -> Self {
        self.affinity = true;
        self
    }

    /// No `api-keys`: the server then serves loopback clients without a key.
    pub fn without_keys(mut self) -> Self {
        self.keys = false;
        self
    }

    /// Writes the config and returns the `cliproxy --config CONFIG serve` command, for a test
    /// that runs it its own way ([`Server::spawn`] starts it).
    pub fn command(&self) -> Command {
        let keys = if self.keys {
            format!("api-keys = [\"{API_KEY}\"]\n")
        } else {
            String::new()
        };
        let config = self
            .sandbox
            .home
            .path()
            .join(format!("config-{}.toml", unique()));
        let affinity = self.affinity;
        std::fs::write(
            &config,
            format!(
                "port = 0\nsession-affinity = {affinity}\n{keys}{}",
                self.config
            ),
        )
        .expect("write config");
        let mut command = self
            .sandbox
            .command(&["--config", config.to_str().unwrap(), "serve"]);
        command.env("CLIPROXY_LOG", "info");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Starts the server and waits until it listens.
    pub async fn start(self) -> Server {
        let mut server = Server::spawn(self.command()).await;
        server.accounts = self.accounts;
        server
    }
}

impl Server {
    /// How to start a `cliproxy serve` in `sandbox`: with `api-keys = [API_KEY]`, on port 0,
    /// logging at info, until the builder says otherwise.
    pub fn builder(sandbox: &Sandbox) -> Builder<'_> {
        Builder {
            sandbox,
            keys: true,
            affinity: false,
            config: String::new(),
            env: Vec::new(),
            accounts: Vec::new(),
        }
    }

    /// Starts `cliproxy serve` in `sandbox` with a fresh account of `fake` for each of `emails`
    /// (see [`Builder::accounts`]).
    pub async fn with_accounts(sandbox: &Sandbox, fake: &FakeQwen, emails: &[&str]) -> Server {
        Self::builder(sandbox).accounts(fake, emails).start().await
    }

    /// Starts `cliproxy serve` in `sandbox` with `extra_config` and the accounts already there.
    pub async fn start(sandbox: &Sandbox, extra_config: &str) -> Server {
        Self::builder(sandbox).config(extra_config).start().await
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
            accounts: Vec::new(),
        };
        let listening = server.wait_for_log("listening on http://").await;
        let start = listening.find("http://").expect("address");
        // Up to the end of the word, or of the JSON string (`--log-format json`).
        let address: String = listening[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        server.base = address;
        server
    }

    /// The account with `email` that its builder wrote.
    #[track_caller]
    pub fn account(&self, email: &str) -> &Account {
        self.accounts
            .iter()
            .find(|account| account.email == email)
            .unwrap_or_else(|| panic!("the builder wrote no account {email}"))
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

/// A fake Qwen with one account and a `cliproxy serve` in front of it, in a sandbox of their
/// own: what the tests of real clients (the SDKs, the agents) drive.
pub struct Stack {
    pub fake: FakeQwen,
    pub server: Server,
    pub sandbox: Sandbox,
}

impl Stack {
    /// Starts a fake with the account `email`, and a server with [`Builder::client_aliases`] and
    /// whatever `configure` adds (it may prepare the fake too).
    pub async fn start(
        email: &str,
        configure: impl for<'a> FnOnce(&FakeQwen, Builder<'a>) -> Builder<'a>,
    ) -> Stack {
        let fake = FakeQwen::start().await;
        let sandbox = Sandbox::new(&fake);
        let builder = Server::builder(&sandbox).accounts(&fake, &[email]);
        let server = configure(&fake, builder).client_aliases().start().await;
        Stack {
            fake,
            server,
            sandbox,
        }
    }

    /// The server's log so far and the last `requests` chat requests the fake received (each
    /// cut to 2,000 bytes), for a failure message.
    pub async fn diagnostics(&mut self, requests: usize) -> String {
        // Reads whatever the server has logged by now into `seen`; nothing contains the needle.
        let _ = tokio::time::timeout(
            Duration::from_millis(300),
            self.server.next_log_containing("\u{0}"),
        )
        .await;
        let received = self.fake.chat_requests();
        let upstream: Vec<String> = received[received.len().saturating_sub(requests)..]
            .iter()
            .map(|request| {
                let body = &request.body;
                let mut end = body.len().min(2_000);
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                format!("  {}", &body[..end])
            })
            .collect();
        format!(
            "--- cliproxy log:\n{}\n--- the last requests fake Qwen received:\n{}",
            self.server.seen.join("\n"),
            upstream.join("\n")
        )
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
