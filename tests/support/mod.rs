//! Runs the real `cliproxy` binary against a fake Qwen, as a user would, with a
//! private home directory so no real config or token file is ever touched.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use fake_qwen::FakeQwen;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// Polling waits run at a thousandth of real time: 5 s become 5 ms.
const POLL_TIME_SCALE: &str = "0.001";

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

/// Runs a prepared command to completion.
pub async fn run(mut command: Command, stdin: &str) -> Run {
    let mut child = command.spawn().expect("spawn cliproxy");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    Run(child.wait_with_output().await.expect("cliproxy runs"))
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
