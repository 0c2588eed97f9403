//! Build script of the `cliproxy` binary: records the commit it is built from, for
//! `cliproxy --version`. From git when the sources are a checkout; from
//! `CLIPROXY_BUILD_COMMIT` when set (a container or tarball build names it that way);
//! `unknown` otherwise, so a build without `.git` and without git still works.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=CLIPROXY_BUILD_COMMIT");
    let commit = std::env::var("CLIPROXY_BUILD_COMMIT")
        .ok()
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=CLIPROXY_COMMIT={commit}");
}

/// The abbreviated commit of `HEAD`, and the files to watch so a new commit rebuilds.
fn git_commit() -> Option<String> {
    // Sources unpacked inside some other repository are not a checkout of their own.
    let top = std::fs::canonicalize(git(&["rev-parse", "--show-toplevel"])?).ok()?;
    let here = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).ok()?;
    if top != here {
        return None;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD itself (a checkout) and what it points to (a commit on the branch), which live in
    // the common dir when this is a worktree; packed-refs when git packed them.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        watch(&PathBuf::from(git_dir).join("HEAD"));
    }
    if let (Some(common), Some(reference)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let common = PathBuf::from(common);
        watch(&common.join(reference));
        watch(&common.join("packed-refs"));
    }
    Some(commit)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

/// `git ARGS` in the package's directory: its trimmed stdout when it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
