//! `cargo xtask`: project automation for cliproxy, written in plain Rust
//! (the "xtask" pattern) so that it needs nothing but a Rust toolchain.
//!
//! The `cargo xtask` alias lives in `.cargo/config.toml`. Each task is in its
//! own module; this file only parses the command line and dispatches.

mod bench;
mod cmd;
mod deny;
mod dist;
mod soak;

use std::{env, process::ExitCode};

use anyhow::{Result, bail};

use cmd::project_root;

const HELP: &str = "\
cargo xtask <TASK> [ARGS...]

Tasks:
  dist    Build `cliproxy` in release mode (--locked) and package it as
          target/dist/cliproxy-<version>-<target triple>.tar.gz together with
          install.sh, the shell completions and man page it generates,
          README.md, LICENSE, config.example.toml, deploy/ and docs/, plus a
          `.sha256` file that `sha256sum -c` verifies.
  deny    Run `cargo deny --workspace check bans licenses sources` with the
          repository's deny.toml. `advisories` is left out on purpose: it
          has to fetch the RustSec advisory database from the internet, which
          is not reachable in our build environment. Extra ARGS are passed on
          to `cargo deny check` (e.g. `cargo xtask deny advisories` where you
          are online). Needs cargo-deny: `cargo install --locked cargo-deny`.
  bench   Benchmark cliproxy on 127.0.0.1 against an in-process upstream stub
          and a do-nothing pass-through proxy measured in the same run:
          throughput, latency, time to first byte, memory with 256 open
          streams, start-up with 1,000 accounts, peak memory with many large
          request bodies at once, and the credential pool's cost of one
          pick per strategy at 10 to 1,000 credentials; prints PASS/FAIL per
          budget line. Options: --duration SECS, --concurrency N, --quick,
          --check (exit non-zero on FAIL), --no-build, --pool (only the
          pool's selection cost). See docs/benchmarks.md.
  soak    Run the release cliproxy for minutes against the fake Qwen (a
          process) under mixed traffic, hang-ups, expired tokens, quota
          errors, refresh storms with rotating refresh tokens and hot
          reloads of the auth dir; report requests by outcome, accounts
          lost and RSS over time; exit non-zero unless no account was lost
          and RSS ended within 10 % of its value after the first minute.
          Options: --minutes N (default 10), --accounts N, --connections N,
          --json, --no-build. See docs/benchmarks.md.
  help    Show this message (also shown when no task is given).
";

fn main() -> ExitCode {
    // Report errors ourselves: a plain message with its causes, without the
    // backtrace `anyhow` would add when RUST_BACKTRACE is set.
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let mut args = env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("dist") => {
            if !rest.is_empty() {
                bail!("`dist` takes no arguments, got: {}", rest.join(" "));
            }
            dist::run(&project_root())
        }
        Some("deny") => deny::run(&project_root(), &rest),
        Some("bench") => bench::run(&project_root(), &rest),
        Some("soak") => soak::run(&project_root(), &rest),
        Some(other) => {
            eprint!("{HELP}");
            bail!("unknown task `{other}`")
        }
    }
}
