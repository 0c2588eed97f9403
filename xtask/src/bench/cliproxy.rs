//! Running `target/release/cliproxy serve` for the benchmark: a private
//! HOME, auth dir and config file per instance, readiness polling, memory
//! from `/proc/<pid>/status`, and the Qwen token files of the start-up test,
//! the refresh-window storms and the soak.
//!
//! The child is killed when its [`Instance`] is dropped, so it also goes
//! away when the benchmark fails or panics.

use std::{
    fs::{self, OpenOptions},
    io::Write as _,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{
    Request,
    header::{AUTHORIZATION, HOST, HeaderValue},
};

use super::{
    fake_qwen::Pair,
    load::{API_KEY, MODEL},
    net::{self, LOOPBACK},
};

/// Interval between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// Readiness probes before giving up (about 20 s with the interval above).
const PROBE_TRIES: u32 = 10_000;
/// Longest wait for one probe's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream keys of the `[[openai-compat]]` entry: several credentials to rotate.
const UPSTREAM_KEYS: [&str; 4] = ["sk-bench-1", "sk-bench-2", "sk-bench-3", "sk-bench-4"];
/// Environment variables never passed to the child: its own settings (which
/// would override the config file) and proxy settings (which could send its
/// upstream traffic off the machine).
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// What a probe asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe {
    /// `GET /healthz`, unauthenticated.
    Health,
    /// `GET /v1/models` with the API key.
    Models,
}

/// The files of one instance under its work dir.
pub(crate) struct Layout {
    pub(crate) home: PathBuf,
    pub(crate) auth_dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
}

impl Layout {
    /// Creates `<dir>/home` and `<dir>/auth` (mode 0700); the config and log
    /// files are written later.
    pub(crate) fn create(dir: &Path) -> Result<Layout> {
        let layout = Layout {
            home: dir.join("home"),
            auth_dir: dir.join("auth"),
            config: dir.join("config.toml"),
            log: dir.join("cliproxy.log"),
        };
        for path in [&layout.home, &layout.auth_dir] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        Ok(layout)
    }

    /// Writes a config for `port` that points Qwen OAuth at the stub and, with
    /// [`Upstream::ApiKeys`], sends chat requests to it as an
    /// `[[openai-compat]]` upstream.
    pub(crate) fn write_config(
        &self,
        port: u16,
        stub: SocketAddr,
        upstream: Upstream,
    ) -> Result<()> {
        fs::write(
            &self.config,
            config_text(port, stub, &self.auth_dir, upstream),
        )
        .with_context(|| format!("cannot write {}", self.config.display()))
    }

    /// [`Layout::write_config`] with `extra` settings (top-level TOML lines) added.
    pub(crate) fn write_config_with(
        &self,
        port: u16,
        stub: SocketAddr,
        upstream: Upstream,
        extra: &str,
    ) -> Result<()> {
        fs::write(
            &self.config,
            format!(
                "{extra}{}",
                config_text(port, stub, &self.auth_dir, upstream)
            ),
        )
        .with_context(|| format!("cannot write {}", self.config.display()))
    }

    /// Writes `count` valid Qwen token files whose access tokens expire in a
    /// day and whose API host is the stub.
    pub(crate) fn write_qwen_accounts(&self, count: usize, stub: SocketAddr) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let expired = rfc3339_utc(now + 24 * 60 * 60);
        let last_refresh = rfc3339_utc(now);
        for i in 0..count {
            let email = format!("user{i}@example.com");
            let record = serde_json::json!({
                "type": "qwen",
                "email": email,
                "access_token": format!("bench-access-{i}"),
                "refresh_token": format!("bench-refresh-{i}"),
                "token_type": "Bearer",
                "resource_url": format!("http://{stub}"),
                "expired": expired,
                "last_refresh": last_refresh,
            });
            let path = self.auth_dir.join(format!("qwen-{email}-1700000000.json"));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(record.to_string().as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Which credentials serve the benchmark's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// [`UPSTREAM_KEYS`] of an `[[openai-compat]]` entry: requests pass as the client sent them.
    ApiKeys,
    /// Qwen OAuth account files ([`Layout::write_qwen_accounts`]), with no requests-per-minute
    /// cap: requests get Qwen's body shape and headers, the product's OAuth path.
    QwenAccounts,
}

/// The config file of a benchmark instance.
fn config_text(port: u16, stub: SocketAddr, auth_dir: &Path, upstream: Upstream) -> String {
    let mut text = format!(
        "# Written by `cargo xtask bench`.\n\
         host = \"{LOOPBACK}\"\n\
         port = {port}\n\
         auth-dir = {auth}\n\
         api-keys = [\"{API_KEY}\"]\n\
         \n\
         [qwen]\n\
         oauth-base-url = \"http://{stub}\"\n",
        auth = toml_string(&auth_dir.to_string_lossy()),
    );
    match upstream {
        Upstream::ApiKeys => {
            let keys: Vec<String> = UPSTREAM_KEYS.iter().map(|k| format!("\"{k}\"")).collect();
            text.push_str(&format!(
                "\n\
                 [[openai-compat]]\n\
                 name = \"bench\"\n\
                 base-url = \"http://{stub}/v1\"\n\
                 api-keys = [{keys}]\n\
                 models = [\"{MODEL}\"]\n",
                keys = keys.join(", "),
            ));
        }
        Upstream::QwenAccounts => {
            text.push_str(&format!(
                "models = [\"{MODEL}\"]\n\
                 requests-per-minute = 0\n"
            ));
        }
    }
    text
}

/// A TOML basic string.
pub(crate) fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a Qwen token file for `email` with `pair`, its access token
/// expiring at `expires_at` (Unix seconds), atomically and 0600 from birth
/// (a hidden temp file renamed into place), as another tool dropping a file
/// into the auth dir would.
pub(crate) fn write_token_file(
    auth_dir: &Path,
    email: &str,
    pair: &Pair,
    resource_url: &str,
    now: u64,
    expires_at: u64,
) -> Result<()> {
    let record = serde_json::json!({
        "type": "qwen",
        "email": email,
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "resource_url": resource_url,
        "expired": rfc3339_utc(expires_at),
        "last_refresh": rfc3339_utc(now),
    });
    let name = format!("qwen-{email}.json");
    let temp = auth_dir.join(format!(".{name}.soak.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(record.to_string().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    let target = auth_dir.join(&name);
    fs::rename(&temp, &target)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), target.display()))
}

/// `secs` since the Unix epoch as RFC 3339 in UTC, e.g. `2023-11-14T22:13:20Z`.
pub(crate) fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `binary --config <config>` with HOME and the XDG dirs in the layout, and no
/// `CLIPROXY_*` or proxy variables from the caller's environment; the caller
/// adds the command and its arguments.
pub(crate) fn command(binary: &Path, layout: &Layout) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(&layout.config)
        .env("HOME", &layout.home)
        .env("XDG_CONFIG_HOME", layout.home.join(".config"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CLIPROXY_") || PROXY_VARS.contains(&name_text.as_ref()) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// A running `cliproxy serve`; killed on drop.
pub(crate) struct Instance {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    spawned: Instant,
}

impl Instance {
    /// Spawns `binary --config <config> serve` with HOME and the XDG dirs in
    /// the layout, no `CLIPROXY_*` or proxy variables, and stderr to the log.
    pub(crate) fn spawn(binary: &Path, layout: &Layout, port: u16) -> Result<Instance> {
        Instance::spawn_with_env(binary, layout, port, &[])
    }

    /// [`Instance::spawn`] with `env` set on top (e.g. a `CLIPROXY_*` setting).
    pub(crate) fn spawn_with_env(
        binary: &Path,
        layout: &Layout,
        port: u16,
        env: &[(&str, &str)],
    ) -> Result<Instance> {
        let log = fs::File::create(&layout.log)
            .with_context(|| format!("cannot create {}", layout.log.display()))?;
        let mut cmd = command(binary, layout);
        cmd.arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .envs(env.iter().copied());
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Instance {
            child,
            addr: SocketAddr::from((LOOPBACK, port)),
            log: layout.log.clone(),
            spawned,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `probe` until it answers 200 (a bounded number of tries) and
    /// returns the time since the spawn.
    pub(crate) async fn wait_ready(&mut self, probe: Probe) -> Result<Duration> {
        let mut last_error = String::from("no answer yet");
        for _ in 0..PROBE_TRIES {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "cliproxy exited ({status}) before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            match tokio::time::timeout(PROBE_TIMEOUT, probe_once(self.addr, probe)).await {
                Ok(Ok(())) => return Ok(self.spawned.elapsed()),
                Ok(Err(error)) => last_error = format!("{error:#}"),
                Err(_) => last_error = format!("no answer within {PROBE_TIMEOUT:?}"),
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        bail!(
            "cliproxy on {} did not become ready ({probe:?}): {last_error}; its log:\n{}",
            self.addr,
            self.log_tail()
        )
    }

    /// How the process ended, if it has.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `wait` for the process to exit; `None`
    /// when it is still running then (it is killed on drop).
    pub(crate) async fn terminate(&mut self, wait: Duration) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.exit_status() {
            return Ok(Some(status));
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed ({sent})", self.pid());
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Ok(Some(status));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// VmRSS and VmHWM of the process, in KiB (Linux only).
    pub(crate) fn memory(&self) -> Option<Memory> {
        memory_of(self.pid())
    }

    /// The last lines of the child's stderr.
    pub(crate) fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Lines of the child's stderr at WARN or ERROR level (first few).
    pub(crate) fn log_problems(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .take(5)
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory use of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
}

/// VmRSS and VmHWM of process `pid`, in KiB, from `/proc/<pid>/status` (Linux only).
pub(crate) fn memory_of(pid: u32) -> Option<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kb: status_kb(&status, "VmRSS")?,
        hwm_kb: status_kb(&status, "VmHWM")?,
    })
}

/// The kB value of `key` in a `/proc/<pid>/status` text.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// One readiness probe on a fresh connection.
async fn probe_once(addr: SocketAddr, probe: Probe) -> Result<()> {
    let mut sender = net::connect::<Empty<Bytes>>(addr).await?;
    let path = match probe {
        Probe::Health => "/healthz",
        Probe::Models => "/v1/models",
    };
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = hyper::Uri::from_static(path);
    req.headers_mut().insert(HOST, net::host_header(addr));
    if let Probe::Models = probe {
        req.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {API_KEY}"))?,
        );
    }
    let response = sender.send_request(req).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn proc_status_values() {
        let status = "Name:\tcliproxy\nVmHWM:\t   14820 kB\nVmRSS:\t   12004 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(12004));
        assert_eq!(status_kb(status, "VmHWM"), Some(14820));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn config_is_loopback_only() {
        let stub: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let text = config_text(5000, stub, Path::new("/tmp/a \"b\""), Upstream::ApiKeys);
        assert!(text.contains("host = \"127.0.0.1\"\n"));
        assert!(text.contains("port = 5000\n"));
        assert!(text.contains("auth-dir = \"/tmp/a \\\"b\\\"\"\n"));
        assert!(text.contains("base-url = \"http://127.0.0.1:4000/v1\"\n"));
        assert!(text.contains("oauth-base-url = \"http://127.0.0.1:4000\"\n"));
        assert!(!text.contains("requests-per-minute"));

        let text = config_text(5000, stub, Path::new("/tmp/x"), Upstream::QwenAccounts);
        assert!(text.contains("host = \"127.0.0.1\"\n"));
        assert!(!text.contains("[[openai-compat]]"));
        assert!(text.contains("[qwen]\noauth-base-url = \"http://127.0.0.1:4000\"\n"));
        assert!(text.contains(&format!(
            "models = [\"{MODEL}\"]\nrequests-per-minute = 0\n"
        )));
    }
}
