//! `cliproxy run AGENT [ARGS...]` and `cliproxy env AGENT`: a coding agent pointed at
//! cliproxy. `run` uses the server that answers at the configured address, or starts one
//! (a child `cliproxy serve` on a free loopback port, in a process group of its own so the
//! terminal's Ctrl-C reaches only the agent) for the agent's lifetime; the agent's exit
//! code is `run`'s. SIGTERM and SIGHUP are passed on to the agent, so that `run` outlives
//! it and stops that server.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use cli::AgentOptions;
use cli::agents::{Endpoint, setup, shell_script};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::config::Settings;
use crate::init::connect_address;

/// How long the probe of a running server may take to connect and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The placeholder key agents get from a server that takes none (they want a non-empty one).
const NO_KEY: &str = "unused";

/// `env AGENT`: the agent's set-up against the configured server, as shell commands.
pub fn print_env(settings: &Settings, options: &AgentOptions) -> anyhow::Result<u8> {
    let serve = &settings.serve;
    let address = connect_address(&serve.host.to_string(), serve.port);
    let endpoint = endpoint(settings, options, &address);
    println!(
        "# {} pointed at cliproxy on http://{address}: eval \"$(cliproxy env {})\"",
        options.agent.program(),
        options.agent.program()
    );
    print!("{}", shell_script(&setup(options.agent, &endpoint)));
    Ok(0)
}

/// `run AGENT ARGS`: starts the agent, with a server of its own when none answers; returns
/// the agent's exit code (128 + the signal that ended it, as shells report it).
pub async fn run(
    settings: &Settings,
    config: Option<&Path>,
    log_format: cli::LogFormat,
    options: &AgentOptions,
    args: Vec<OsString>,
) -> anyhow::Result<u8> {
    let program = options.agent.program();
    // Before anything is started for it.
    let Some(executable) = find_on_path(program) else {
        anyhow::bail!(
            "`{program}` is not on PATH; install it ({}) or add its directory to PATH",
            options.agent.install_hint()
        );
    };
    let serve = &settings.serve;
    let configured = connect_address(&serve.host.to_string(), serve.port);
    let key = client_key(settings);
    let mut own_server = None;
    let address = match probe(&configured, &key).await? {
        Probe::Cliproxy => configured,
        Probe::Nobody => {
            let server = OwnServer::start(settings, config, log_format).await?;
            eprintln!(
                "cliproxy: no server answered on {configured}; started one for this session on {} (log: {})",
                server.address,
                server.log.display()
            );
            let address = server.address.clone();
            own_server = Some(server);
            address
        }
    };
    let outcome = run_agent(&executable, options, &address, settings, args).await;
    if let Some(server) = own_server {
        server.stop().await;
    }
    let status = outcome?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Runs the agent to its end. The terminal's Ctrl-C goes to the agent (Claude Code cancels a
/// turn with it): cliproxy ignores it and waits. SIGTERM and SIGHUP (a closed terminal) are
/// passed on to the agent, and cliproxy waits for it to end, so that a server started for it
/// is stopped too, not left behind.
async fn run_agent(
    executable: &Path,
    options: &AgentOptions,
    address: &str,
    settings: &Settings,
    args: Vec<OsString>,
) -> anyhow::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let agent_setup = setup(options.agent, &endpoint(settings, options, address));
    let _interrupts = signal(SignalKind::interrupt())?;
    let mut hangups = signal(SignalKind::hangup())?;
    let mut terminations = signal(SignalKind::terminate())?;
    let mut agent = tokio::process::Command::new(executable)
        .args(&agent_setup.args)
        .args(&args)
        .envs(agent_setup.env.iter().map(|(name, value)| (name, value)))
        .spawn()
        .with_context(|| format!("could not start `{}`", executable.display()))?;
    let pid = agent.id();
    loop {
        tokio::select! {
            status = agent.wait() => return Ok(status?),
            _ = hangups.recv() => pid.into_iter().for_each(|pid| send_signal(pid, libc::SIGHUP)),
            _ = terminations.recv() => pid.into_iter().for_each(|pid| send_signal(pid, libc::SIGTERM)),
        }
    }
}

/// The first executable file called `program` in a directory of `PATH`.
fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// What answers at the configured address.
enum Probe {
    /// A cliproxy that takes the config's client key.
    Cliproxy,
    /// Nothing listens.
    Nobody,
}

/// Asks `address` for `/v1/models` with `key`: a cliproxy taking the key answers 200.
async fn probe(address: &str, key: &str) -> anyhow::Result<Probe> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!(
            "GET /v1/models HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0_u8; 512];
        let mut read = 0;
        while read < head.len() && !head[..read].contains(&b'\n') {
            let n = stream.read(&mut head[read..]).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        head.truncate(read);
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head).into_owned())
    };
    let head = match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(Ok(head)) => head,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Ok(Probe::Nobody);
        }
        Ok(Err(error)) => {
            anyhow::bail!(
                "could not ask {address} whether cliproxy serves there ({error}); stop what listens there, or give cliproxy another port (`port` in the config)"
            )
        }
        Err(_) => anyhow::bail!(
            "{address} did not answer within {PROBE_TIMEOUT:?}; stop what listens there, or give cliproxy another port (`port` in the config)"
        ),
    };
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    match status {
        "200" => Ok(Probe::Cliproxy),
        "401" => anyhow::bail!(
            "the server on {address} refuses this config's client key: it runs with another config. Stop it, or run `cliproxy --config ITS-CONFIG run ...`"
        ),
        _ => anyhow::bail!(
            "something on {address} answers, but not as cliproxy does (status {status:?} for /v1/models); stop it, or give cliproxy another port (`port` in the config)"
        ),
    }
}

/// A key the server takes: the config's first client key, or a placeholder without keys.
fn client_key(settings: &Settings) -> String {
    settings
        .serve
        .server
        .api_keys
        .first()
        .cloned()
        .unwrap_or_else(|| NO_KEY.to_owned())
}

/// The endpoint at `address` with the config's key and the chosen model (else the first of
/// `[qwen] models`).
fn endpoint(settings: &Settings, options: &AgentOptions, address: &str) -> Endpoint {
    let model = options
        .model
        .clone()
        .or_else(|| settings.serve.server.models.first().cloned())
        .unwrap_or_else(|| "coder-model".to_owned());
    Endpoint {
        base: format!("http://{address}"),
        key: client_key(settings),
        model,
    }
}

/// A `cliproxy serve` started for one agent session.
struct OwnServer {
    child: tokio::process::Child,
    /// `127.0.0.1:PORT`.
    address: String,
    /// Where its log goes.
    log: PathBuf,
    /// Copies the rest of its log to the file.
    copier: tokio::task::JoinHandle<()>,
}

impl OwnServer {
    /// Starts `cliproxy serve` on a free loopback port with this config and auth dir, and
    /// waits until it listens.
    async fn start(
        settings: &Settings,
        config: Option<&Path>,
        log_format: cli::LogFormat,
    ) -> anyhow::Result<Self> {
        let log = log_path()?;
        let mut log_file = tokio::fs::File::create(&log)
            .await
            .with_context(|| format!("could not create the server log {}", log.display()))?;
        let exe = std::env::current_exe().context("could not find cliproxy's own executable")?;
        let mut command = tokio::process::Command::new(exe);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let format = match log_format {
            cli::LogFormat::Text => "text",
            cli::LogFormat::Json => "json",
        };
        command
            .args(["--log-format", format, "--auth-dir"])
            .arg(&settings.auth_dir)
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            // "listening on" is logged at info.
            .env("CLIPROXY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .context("could not start a cliproxy server for the agent")?;
        let stderr = child.stderr.take().context("the server's log")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let address = loop {
            let Some(line) = lines.next_line().await? else {
                let _ = log_file.write_all(seen.join("\n").as_bytes()).await;
                anyhow::bail!(
                    "the server started for the agent stopped before it listened:\n{}",
                    seen.join("\n")
                );
            };
            log_file.write_all(line.as_bytes()).await?;
            log_file.write_all(b"\n").await?;
            if let Some(address) = listening_address(&line) {
                break address;
            }
            seen.push(line);
        };
        let copier = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if log_file.write_all(line.as_bytes()).await.is_err()
                    || log_file.write_all(b"\n").await.is_err()
                {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            address,
            log,
            copier,
        })
    }

    /// Asks the server to stop (SIGTERM: it drains and saves tokens) and waits for it.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            send_signal(pid, libc::SIGTERM);
        }
        let _ = self.child.wait().await;
        let _ = self.copier.await;
    }
}

/// The address in the server's "listening on http://ADDRESS" line, text or JSON.
fn listening_address(line: &str) -> Option<String> {
    let start = line.find("listening on http://")? + "listening on http://".len();
    let address: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    (!address.is_empty()).then_some(address)
}

/// `$XDG_STATE_HOME/cliproxy/run.log`, else `~/.local/state/cliproxy/run.log`; the directory
/// is created 0700.
fn log_path() -> anyhow::Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".local/state")))
        .context(
            "neither XDG_STATE_HOME nor HOME is set, so there is nowhere for the server's log",
        )?;
    let dir = state.join("cliproxy");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir.join("run.log"))
}

/// Sends `signal` to `pid`.
#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) only sends a signal; `pid` is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_text_and_json_logs() {
        assert_eq!(
            listening_address(
                "2026-01-01T00:00:00Z  INFO listening on http://127.0.0.1:4242 accounts=1"
            )
            .as_deref(),
            Some("127.0.0.1:4242")
        );
        assert_eq!(
            listening_address(
                r#"{"level":"INFO","message":"listening on http://127.0.0.1:4242","accounts":1}"#
            )
            .as_deref(),
            Some("127.0.0.1:4242")
        );
        assert_eq!(listening_address("stopped"), None);
    }
}
