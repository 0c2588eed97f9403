//! `cargo xtask deny`: dependency policy checks with cargo-deny, configured by
//! `deny.toml` at the workspace root (allowed licenses, banned crates,
//! allowed sources).
//!
//! Only `bans licenses sources` are checked by default. `advisories` needs to
//! download the RustSec advisory database from the internet, which is not
//! reachable from our build machines; pass `advisories` as an extra argument
//! to include it where there is network access.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::cmd::{cargo, run_checked};

/// The checks run when no extra arguments are given.
const CHECKS: [&str; 3] = ["bans", "licenses", "sources"];

pub(crate) fn run(root: &Path, extra: &[String]) -> Result<()> {
    let installed = Command::new(cargo())
        .args(["deny", "--version"])
        .current_dir(root)
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        bail!(
            "cargo-deny is not installed.\n\
             Install it with:\n\n    cargo install --locked cargo-deny\n\n\
             then run `cargo xtask deny` again."
        );
    }

    // `--workspace`: the root manifest is also the `cliproxy` package, so
    // without it cargo-deny would only walk cliproxy's graph and skip the
    // dependencies of other members that cliproxy does not use (xtask).
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args(["deny", "--workspace", "check"])
        .args(CHECKS)
        .args(extra);
    println!("running: {cmd:?}");
    run_checked(&mut cmd)
}
