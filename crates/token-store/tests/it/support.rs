//! What the tests share: a fresh auth dir, a complete login record, file modes and JSON, and re-running
//! one test of this binary in a child process (another process, another user, another `HOME`).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use time::OffsetDateTime;
use time::macros::datetime;
use token_store::{AuthDir, TokenRecord};

/// The time of a save, unless a test needs another.
pub const NOW: OffsetDateTime = datetime!(2025-08-20 07:04:05 UTC);

/// A fresh auth dir in a temp dir; the temp dir removes it when dropped.
pub fn auth_dir() -> (tempfile::TempDir, AuthDir) {
    let root = temp();
    let dir = AuthDir::open(root.path()).expect("open");
    (root, dir)
}

pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The JSON of a file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("json")
}

/// A Qwen login of `email` as `cliproxy login` saves it, with access token `access`.
pub fn login(email: &str, access: &str) -> TokenRecord {
    let mut record = TokenRecord::new("qwen", access);
    record.email = Some(email.to_owned());
    record.refresh_token = Some(format!("{access}-refresh"));
    record.token_type = Some("Bearer".into());
    record.resource_url = Some("portal.qwen.ai".into());
    record.expired = Some(datetime!(2025-08-20 13:04:05 +06:00));
    record.last_refresh = Some(NOW);
    record
}

/// Saves [`login`] of `email` with access token `access` at [`NOW`]; the path of its file.
pub fn saved(dir: &AuthDir, email: &str, access: &str) -> PathBuf {
    dir.save_login(&login(email, access), NOW)
        .expect("save")
        .path
}

/// This test binary, set to run only the test `name` of the module `module` (pass
/// `module_path!()`), one thread at a time. The caller adds the environment that tells the
/// child test what to do.
pub fn rerun(module: &str, name: &str) -> Command {
    let test = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    };
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command.args(["--exact", &test, "--test-threads=1"]);
    command
}

/// Asserts that a child from [`rerun`] ran its one test and passed; `context` says which run.
pub fn assert_child_passed(output: &Output, context: &str) {
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{context}:\n{shown}");
    assert!(
        shown.contains("1 passed"),
        "the test ran ({context}):\n{shown}"
    );
}
