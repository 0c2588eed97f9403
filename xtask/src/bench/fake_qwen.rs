//! The fake Qwen as a child process (`target/release/fake-qwen --control ...`, see
//! `crates/fake-qwen/src/bin/fake-qwen/`) and a client for its control API.
//!
//! xtask depends on no workspace crate, so it talks to the fake only over
//! loopback HTTP, as cliproxy does. The child is killed when the
//! [`FakeProcess`] is dropped.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request,
    header::{CONTENT_TYPE, HOST, HeaderValue},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use super::net;

/// Longest wait for the fake to print its addresses, and for one control call.
const WAIT: Duration = Duration::from_secs(20);

/// How the fake is asked to behave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FakeSettings {
    /// `expires_in` of the access tokens it issues.
    pub(crate) token_life: Duration,
    /// Delay of each refresh answer after the old refresh token was retired.
    pub(crate) refresh_latency: Duration,
    /// Content chunks per streamed answer.
    pub(crate) stream_chunks: usize,
    /// Pause between streamed events.
    pub(crate) stream_interval: Duration,
    /// `Retry-After` of quota answers, in seconds.
    pub(crate) quota_retry_after_secs: u64,
}

/// A token pair the fake minted, as after a login.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

/// What the fake knows of one refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// The first refresh token of its chain (the login it descends from).
    pub(crate) root: String,
    /// Whether a refresh with it would succeed now.
    pub(crate) live: bool,
}

/// A refresh the fake refused because its token was dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadRefresh {
    pub(crate) root: String,
    /// Used up by an earlier rotation (else never issued by the fake).
    pub(crate) spent: bool,
}

/// The fake's refresh log in short.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefreshReport {
    /// Refreshes answered with a new pair.
    pub(crate) issued: u64,
    /// Refreshes refused for another reason than a dead token.
    pub(crate) failed: u64,
    pub(crate) dead: Vec<DeadRefresh>,
}

/// The running fake; killed on drop.
pub(crate) struct FakeProcess {
    /// Held only to be killed on drop (`kill_on_drop`).
    _child: Child,
    /// `http://127.0.0.1:PORT`: OAuth base URL for cliproxy.
    pub(crate) oauth_base_url: String,
    /// `http://127.0.0.1:PORT/v1`: the `resource_url` of the token files.
    pub(crate) chat_base_url: String,
    control: SocketAddr,
}

impl FakeProcess {
    /// Starts `binary` with the control API and `settings`, stderr to `log`,
    /// and reads the addresses it prints.
    pub(crate) async fn spawn(
        binary: &Path,
        log: &Path,
        settings: FakeSettings,
    ) -> Result<FakeProcess> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(binary)
            .arg("--control")
            .arg("--http-resource-url")
            .args([
                "--token-expires-in",
                &settings.token_life.as_secs().max(1).to_string(),
            ])
            .args([
                "--refresh-latency-ms",
                &settings.refresh_latency.as_millis().to_string(),
            ])
            .args(["--stream-chunks", &settings.stream_chunks.to_string()])
            .args([
                "--stream-interval-ms",
                &settings.stream_interval.as_millis().to_string(),
            ])
            .args([
                "--quota-retry-after",
                &settings.quota_retry_after_secs.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout from fake-qwen")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let read = async {
            while let Some(line) = lines.next_line().await? {
                let done = line.starts_with("API_KEY=");
                printed.push(line);
                if done {
                    break;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(WAIT, read)
            .await
            .context("fake-qwen printed no addresses in time")??;
        let value = |name: &str| {
            printed
                .iter()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
                .with_context(|| format!("fake-qwen printed no {name} line: {printed:?}"))
        };
        let control: SocketAddr = value("CONTROL_URL")?
            .trim_start_matches("http://")
            .parse()
            .context("fake-qwen printed a bad CONTROL_URL")?;
        net::ensure_loopback(control)?;
        Ok(FakeProcess {
            _child: child,
            oauth_base_url: value("OAUTH_BASE_URL")?,
            chat_base_url: value("CHAT_BASE_URL")?,
            control,
        })
    }

    /// A new token pair, as after a login.
    pub(crate) async fn mint(&self) -> Result<Pair> {
        let answer = self.call(Method::POST, "/mint", Some(json!({}))).await?;
        Ok(Pair {
            access_token: string(&answer, "access_token")?,
            refresh_token: string(&answer, "refresh_token")?,
        })
    }

    /// Expires the newest access token of `share` of the token chains;
    /// returns how many it expired.
    pub(crate) async fn expire(&self, share: f64) -> Result<u64> {
        let answer = self
            .call(Method::POST, "/expire", Some(json!({ "share": share })))
            .await?;
        number(&answer, "expired")
    }

    /// Makes the newest access token of `share` of the chains get `answers`
    /// quota errors; returns how many tokens it scripted.
    pub(crate) async fn quota(&self, share: f64, answers: u64) -> Result<u64> {
        let answer = self
            .call(
                Method::POST,
                "/quota",
                Some(json!({ "share": share, "answers": answers })),
            )
            .await?;
        number(&answer, "scripted")
    }

    /// The chain root and liveness of each of `refresh_tokens`, in order.
    pub(crate) async fn lookup(&self, refresh_tokens: &[String]) -> Result<Vec<Lookup>> {
        let answer = self
            .call(
                Method::POST,
                "/lookup",
                Some(json!({ "refresh_tokens": refresh_tokens })),
            )
            .await?;
        let tokens = answer["tokens"]
            .as_array()
            .context("fake-qwen's /lookup answer has no `tokens` list")?;
        ensure!(
            tokens.len() == refresh_tokens.len(),
            "fake-qwen's /lookup answered {} tokens for {}",
            tokens.len(),
            refresh_tokens.len()
        );
        tokens
            .iter()
            .map(|token| {
                Ok(Lookup {
                    root: string(token, "root")?,
                    live: token["live"]
                        .as_bool()
                        .context("fake-qwen's /lookup answer has no `live`")?,
                })
            })
            .collect()
    }

    /// The refresh log in short.
    pub(crate) async fn report(&self) -> Result<RefreshReport> {
        let answer = self.call(Method::GET, "/report", None).await?;
        let dead = answer["dead"]
            .as_array()
            .context("fake-qwen's /report answer has no `dead` list")?
            .iter()
            .map(|dead| {
                Ok(DeadRefresh {
                    root: string(dead, "root")?,
                    spent: dead["spent"]
                        .as_bool()
                        .context("fake-qwen's /report answer has no `spent`")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(RefreshReport {
            issued: number(&answer, "issued")?,
            failed: number(&answer, "failed")?,
            dead,
        })
    }

    /// Lets the fake drop the requests it recorded.
    pub(crate) async fn forget(&self) -> Result<()> {
        self.call(Method::POST, "/forget", Some(json!({})))
            .await
            .map(drop)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let exchange = async {
            let mut sender = net::connect::<Full<Bytes>>(self.control).await?;
            let bytes = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
            let mut request = Request::new(Full::new(bytes));
            *request.method_mut() = method.clone();
            *request.uri_mut() = path.parse()?;
            let headers = request.headers_mut();
            headers.insert(HOST, net::host_header(self.control));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                bail!("{status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(serde_json::from_slice::<Value>(&body)?)
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .with_context(|| format!("fake-qwen's control API did not answer {method} {path}"))?
            .with_context(|| format!("fake-qwen's control API: {method} {path}"))
    }
}

fn string(value: &Value, key: &str) -> Result<String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("fake-qwen's answer has no `{key}` string"))
}

fn number(value: &Value, key: &str) -> Result<u64> {
    value[key]
        .as_u64()
        .with_context(|| format!("fake-qwen's answer has no `{key}` number"))
}
