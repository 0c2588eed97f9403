//! The credential pool's selection cost: runs credential-pool's `select_cost` example (an
//! optimised build) and returns its Markdown tables, one pick at 10, 100 and 1,000 credentials
//! for each strategy, then its `shared_cost` example (a pick with rate caps shared through
//! slot leases). Pure CPU in one process: no network, no child left behind.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::cargo;

/// The examples' tables: `select_cost` (`quick` measures 20 ms per cell instead of 200 ms),
/// then `shared_cost`, what slot leases shared through a PostgreSQL store add to a pick.
pub(crate) fn selection_cost(root: &Path, quick: bool) -> Result<String> {
    eprintln!("  credential selection at 10, 100 and 1,000 credentials per strategy ...");
    let mut tables = example(root, "select_cost", quick)?;
    eprintln!("  credential selection with shared rate caps (slot leases) ...");
    tables.push('\n');
    tables.push_str(&example(root, "shared_cost", quick)?);
    Ok(tables)
}

/// Runs credential-pool's example `name` (an optimised build) and returns what it printed.
fn example(root: &Path, name: &str, quick: bool) -> Result<String> {
    let mut command = Command::new(cargo());
    command.current_dir(root).args([
        "run",
        "--release",
        "--locked",
        "--quiet",
        "-p",
        "credential-pool",
        "--example",
        name,
    ]);
    if quick {
        command.args(["--", "--quick"]);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run cargo for the {name} benchmark"))?;
    if !output.status.success() {
        bail!(
            "the {name} benchmark failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("the {name} benchmark printed non-UTF-8"))
}
