//! Runs the real `cliproxy` binary against a fake Qwen, as a user would, with a
//! private home directory so no real config or token file is ever touched.

pub mod server;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use fake_qwen::{DeviceAnswer, FakeQwen};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

/// Polling waits run at a thousandth of real time: 5 s become 5 ms.
const POLL_TIME_SCALE: &str = "0.001";

/// Lifetime of the device codes of [`fake_qwen`]: a day.
pub const LONG_CODE_LIFETIME_SECS: u64 = 86_400;

/// A fake Qwen whose device codes live a day. At the tests' time scale the default 600 s code
/// lasts 0.6 s of real time: a hidden deadline for every test that is not about expiry.
pub async fn fake_qwen() -> FakeQwen {
    let fake = FakeQwen::start().await;
    fake.set_device_answer(DeviceAnswer {
        expires_in: LONG_CODE_LIFETIME_SECS,
        ..DeviceAnswer::default()
    });
    fake
}

/// A sandbox for one test: a home directory with an auth dir inside.
pub struct Sandbox {
    pub home: tempfile::TempDir,
    pub oauth_base_url: String,
}

impl Sandbox {
    pub fn new(fake: &FakeQwen) -> Self {
        Self {
            home: tempfile::tempdir().expect("temp home"),
            oauth_base_url: fake.base_url(),
        }
    }

    /// The auth dir every command of this sandbox uses (it does not exist until a command creates it).
    pub fn auth_dir(&self) -> PathBuf {
        self.home.path().join("auth")
    }

    /// Where the server keeps the usage ledger by default: beside the auth dir.
    pub fn usage_db(&self) -> PathBuf {
        self.home.path().join("auth-usage.sqlite3")
    }

    /// `cliproxy ARGS` with the sandbox's environment and no display or browser.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cliproxy"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("CLIPROXY_AUTH_DIR", self.auth_dir())
            .env("CLIPROXY_QWEN_OAUTH_BASE_URL", &self.oauth_base_url)
            .env("CLIPROXY_POLL_TIME_SCALE", POLL_TIME_SCALE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `cliproxy ARGS`, writing `stdin` to it, and waits for it to exit.
    pub async fn run(&self, args: &[&str], stdin: &str) -> Run {
        run(self.command(args), stdin).await
    }

    /// Runs `cliproxy ARGS` with `stdin` bytes that need not be UTF-8, and waits for it to exit.
    pub async fn run_bytes(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = self.command(args).spawn().expect("spawn cliproxy");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).await.expect("write stdin");
        drop(input);
        Run(child.wait_with_output().await.expect("cliproxy runs"))
    }

    /// Copies the sandbox's token files into the database at `url` (`cliproxy store migrate`),
    /// then removes the auth dir, so that servers can use only the database.
    pub async fn move_into_database(&self, url: &str) {
        let auth_dir = self.auth_dir();
        let from = auth_dir.to_str().expect("a UTF-8 path");
        self.run(&["store", "migrate", "--from", from, "--to", url], "")
            .await
            .success();
        std::fs::remove_dir_all(&auth_dir).expect("remove the auth dir");
    }

    /// Starts `cliproxy ARGS`, to follow its stderr while it runs.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::spawn(self.command(args))
    }

    /// Starts `cliproxy ARGS` on a pseudo-terminal (through util-linux `script`), as in an
    /// interactive session: stdin, stdout and stderr are the terminal, and what it shows is
    /// read from `script`'s stdout.
    pub fn spawn_in_terminal(&self, args: &[&str]) -> Running {
        let inner = self.command(args);
        let std = inner.as_std();
        let mut line = format!("exec {}", shell_quote(std.get_program()));
        for arg in std.get_args() {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        let mut command = Command::new("script");
        command.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
        command.env_clear();
        for (name, value) in std.get_envs() {
            if let Some(value) = value {
                command.env(name, value);
            }
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .expect("run `script` from util-linux, which the terminal tests need");
        let shown = child.stdout.take().expect("stdout");
        Running::new(child, Box::new(shown))
    }

    /// The token files in the auth dir, sorted.
    pub fn token_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.auth_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|entry| entry.expect("dir entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files
    }

    /// The only token file, parsed.
    pub fn only_token_file(&self) -> (PathBuf, serde_json::Value) {
        let files = self.token_files();
        assert_eq!(
            files.len(),
            1,
            "expected exactly one token file, found {files:?}"
        );
        let path = files.into_iter().next().expect("one file");
        let text = std::fs::read_to_string(&path).expect("read token file");
        (
            path,
            serde_json::from_str(&text).expect("token file is JSON"),
        )
    }
}

/// Runs a prepared command to completion. A command that exits without reading its stdin
/// (one that fails early) is no error of the test's.
pub async fn run(mut command: Command, stdin: &str) -> Run {
    let mut child = command.spawn().expect("spawn cliproxy");
    let mut input = child.stdin.take().expect("stdin");
    match input.write_all(stdin.as_bytes()).await {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            panic!("write stdin: {error}")
        }
        _ => {}
    }
    drop(input);
    Run(child.wait_with_output().await.expect("cliproxy runs"))
}

/// `command` run by `sh` after `prelude` (shell commands such as `ulimit -f 0`), with the same
/// arguments, environment and pipes; `sh` then `exec`s it, so the process id is the command's.
pub fn after_shell_prelude(command: &Command, prelude: &str) -> Command {
    let std = command.as_std();
    let mut line = format!("{prelude}; exec {}", shell_quote(std.get_program()));
    for arg in std.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut shell = Command::new("sh");
    shell.args(["-c", &line]).env_clear();
    for (name, value) in std.get_envs() {
        if let Some(value) = value {
            shell.env(name, value);
        }
    }
    shell
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    shell
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &std::ffi::OsStr) -> String {
    format!("'{}'", text.to_string_lossy().replace('\'', "'\\''"))
}

/// How long [`Running::wait_for`] waits for more output before it calls the test hung.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

/// A running command whose output (stderr, or a terminal's output) a test follows as it comes.
pub struct Running {
    child: Child,
    shown: Box<dyn AsyncRead + Unpin + Send>,
    /// Everything read so far.
    seen: Vec<u8>,
    /// Where the next [`Running::wait_for`] starts searching.
    cursor: usize,
}

impl Running {
    /// Starts a prepared command (see [`Sandbox::command`]), following its stderr.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("spawn cliproxy");
        let shown = child.stderr.take().expect("stderr");
        Self::new(child, Box::new(shown))
    }

    fn new(child: Child, shown: Box<dyn AsyncRead + Unpin + Send>) -> Self {
        Self {
            child,
            shown,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    /// Reads until `needle` appears after the end of the previous match; panics if the output
    /// ends first.
    pub async fn wait_for(&mut self, needle: &str) {
        let needle = needle.as_bytes();
        loop {
            if let Some(at) = self.seen[self.cursor..]
                .windows(needle.len())
                .position(|window| window == needle)
            {
                self.cursor += at + needle.len();
                return;
            }
            let mut chunk = [0_u8; 4096];
            // Not a synchronisation: only turns a hang (the text never comes) into a failure.
            let read = tokio::time::timeout(HANG_GUARD, self.shown.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {:?} after {HANG_GUARD:?}:\n{}",
                        String::from_utf8_lossy(needle),
                        self.shown()
                    )
                })
                .expect("read output");
            assert!(
                read > 0,
                "the output ended before {:?}:\n{}",
                String::from_utf8_lossy(needle),
                self.shown()
            );
            self.seen.extend_from_slice(&chunk[..read]);
        }
    }

    /// Everything shown so far.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Writes `text` to stdin.
    pub async fn write(&mut self, text: &str) {
        let input = self.child.stdin.as_mut().expect("stdin is open");
        input.write_all(text.as_bytes()).await.expect("write stdin");
        input.flush().await.expect("flush stdin");
    }

    /// The process id, to send it signals.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Closes stdin, reads the rest of the output (and drains stdout, when that is not what was
    /// followed) and waits for the exit.
    pub async fn finish(mut self) -> Finished {
        drop(self.child.stdin.take());
        self.finish_keeping_stdin().await
    }

    /// Like [`Running::finish`], but stdin stays open until the process has exited, so it
    /// never sees the end of its input.
    pub async fn finish_keeping_stdin(mut self) -> Finished {
        let mut out = self.child.stdout.take();
        let ended = async {
            let (rest, _) = tokio::join!(self.shown.read_to_end(&mut self.seen), async {
                if let Some(out) = out.as_mut() {
                    tokio::io::copy(out, &mut tokio::io::sink())
                        .await
                        .expect("read stdout");
                }
            });
            rest.expect("read output");
            self.child.wait().await.expect("wait")
        };
        // Not a synchronisation: only turns a process that never exits into a failure.
        let status = tokio::time::timeout(HANG_GUARD, ended)
            .await
            .unwrap_or_else(|_| panic!("the process did not exit within {HANG_GUARD:?}"));
        drop(self.child.stdin.take());
        Finished {
            code: status.code(),
            shown: self.shown(),
        }
    }
}

/// How a [`Running`] command ended.
pub struct Finished {
    pub code: Option<i32>,
    /// Everything the followed output showed.
    pub shown: String,
}

/// A finished run of the binary.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn success(&self) -> String {
        assert_eq!(
            self.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts the exit code and returns stderr.
    #[track_caller]
    pub fn failure(&self, code: i32) -> String {
        assert_eq!(
            self.code(),
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Asserts that `shown` refuses the auth dir `dir`, made world-writable (mode 0777), and names
/// both ways out: `chmod 700` and `strict-permissions = false`.
#[track_caller]
pub fn assert_refuses_open_auth_dir(shown: &str, dir: &Path) {
    assert!(
        shown.contains(&format!(
            "the auth dir {} is writable by its group and all users (mode 0777)",
            dir.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("chmod 700 {}", dir.display())),
        "{shown}"
    );
    assert!(shown.contains("strict-permissions = false"), "{shown}");
}

/// A JSON file (a token file), parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read the file")).expect("JSON")
}

/// An RFC 3339 field of a token file.
pub fn stamp(json: &serde_json::Value, field: &str) -> time::OffsetDateTime {
    let text = json[field].as_str().expect(field);
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}
