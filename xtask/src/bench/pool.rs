//! The credential pool's selection cost: runs credential-pool's `select_cost` example (an
//! optimised build) and returns its Markdown tables, one pick at 10, 100 and 1,000 credentials
//! for each strategy. Pure CPU in one process: no network, no child left behind.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::cargo;

/// The example's tables; `quick` measures 20 ms per cell instead of 200 ms.
pub(crate) fn selection_cost(root: &Path, quick: bool) -> Result<String> {
    eprintln!("  credential selection at 10, 100 and 1,000 credentials per strategy ...");
    let mut command = Command::new(cargo());
    command.current_dir(root).args([
        "run",
        "--release",
        "--locked",
        "--quiet",
        "-p",
        "credential-pool",
        "--example",
        "select_cost",
    ]);
    if quick {
        command.args(["--", "--quick"]);
    }
    let output = command
        .output()
        .context("cannot run cargo for the selection benchmark")?;
    if !output.status.success() {
        bail!(
            "the selection benchmark failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("the selection benchmark printed non-UTF-8")
}
