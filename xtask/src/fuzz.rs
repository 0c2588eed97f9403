//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` one after the other, each for a
//! fixed time, and reports per target what ran and whether it crashed.
//!
//! cargo-fuzz needs nightly compiler flags; `RUSTC_BOOTSTRAP=1` lets the pinned stable
//! toolchain take them. Targets are built with debug assertions (overflow checks) and without
//! a sanitizer: `unsafe_code` is forbidden in the workspace, so AddressSanitizer would only
//! watch the dependencies' unsafe code, at a fifth of the executions per second. Each target reads the seed corpus in the repository
//! (`fuzz/corpus/<target>`, never written) and keeps what it finds in
//! `fuzz/target/corpus/<target>` (ignored by git), so later runs start where earlier ones
//! stopped. A target with a dictionary (`fuzz/dicts/<target>.dict`: pieces of the format it
//! reads, which mutations insert whole) gets it. libFuzzer's output goes to
//! `fuzz/target/logs/<target>.log`; a crash leaves its input in `fuzz/artifacts/<target>/`.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::cargo;

/// Seconds per target unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 60;
/// A single input that takes longer than this is a hang, reported as a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;
/// How `cargo fuzz run` builds the targets (and how to reproduce a crash).
const BUILD_FLAGS: [&str; 3] = ["--sanitizer=none", "--debug-assertions", "--release"];

/// What one target's run came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    runs: Option<u64>,
    /// Seconds spent fuzzing (libFuzzer's `Done N runs in S second(s)`; none after a crash).
    seconds: Option<u64>,
    /// libFuzzer's last `exec/s`.
    rate: Option<u64>,
    /// Coverage counters reached (libFuzzer's `cov`), and features (`ft`).
    cov: Option<u64>,
    features: Option<u64>,
    /// The crashing input libFuzzer wrote, if any.
    artifact: Option<String>,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let (seconds, mut targets) = parse_args(args)?;
    let fuzz_dir = root.join("fuzz");
    let installed = Command::new(cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        bail!(
            "cargo-fuzz is not installed.\n\
             Install it with:\n\n    cargo install --locked cargo-fuzz\n\n\
             then run `cargo xtask fuzz` again (no nightly toolchain needed: this task sets \
             RUSTC_BOOTSTRAP=1)."
        );
    }
    let known = list_targets(&fuzz_dir)?;
    if targets.is_empty() {
        targets.clone_from(&known);
    }
    if let Some(unknown) = targets.iter().find(|target| !known.contains(target)) {
        bail!(
            "no fuzz target `{unknown}`; the targets are: {}",
            known.join(", ")
        );
    }
    let logs = fuzz_dir.join("target/logs");
    fs::create_dir_all(&logs).with_context(|| format!("could not create {}", logs.display()))?;

    let mut crashed = Vec::new();
    let mut lines = Vec::new();
    for target in &targets {
        println!("fuzzing {target} for {seconds} s ...");
        let started = Instant::now();
        let (success, outcome) = fuzz_one(&fuzz_dir, target, seconds)?;
        // Without libFuzzer's figure (a crash), the wall time, which includes the build.
        let fuzzed = outcome
            .seconds
            .unwrap_or_else(|| started.elapsed().as_secs());
        let runs = outcome.runs.map_or("?".to_owned(), |runs| runs.to_string());
        let rate = outcome.rate.map_or("?".to_owned(), |rate| rate.to_string());
        let coverage = match (outcome.cov, outcome.features) {
            (Some(cov), Some(ft)) => format!("cov {cov}, ft {ft}"),
            _ => "cov ?".to_owned(),
        };
        let verdict = if success {
            "ok".to_owned()
        } else {
            crashed.push(target.clone());
            match &outcome.artifact {
                Some(artifact) => format!(
                    "CRASH: input {artifact}; reproduce with `cd fuzz && RUSTC_BOOTSTRAP=1 \
                     cargo fuzz run {} {target} {artifact}`",
                    BUILD_FLAGS.join(" ")
                ),
                None => format!("FAILED: see fuzz/target/logs/{target}.log"),
            }
        };
        let line = format!(
            "{target:<20} {fuzzed:>5} s  {runs:>11} runs  {rate:>7}/s  {coverage:<22} {verdict}"
        );
        println!("{line}");
        lines.push(line);
    }
    println!("\nsummary ({seconds} s per target; logs in fuzz/target/logs/):");
    for line in &lines {
        println!("  {line}");
    }
    if !crashed.is_empty() {
        bail!("{} crashed: {}", plural(crashed.len()), crashed.join(", "));
    }
    Ok(())
}

fn plural(count: usize) -> String {
    if count == 1 {
        "1 target".to_owned()
    } else {
        format!("{count} targets")
    }
}

/// `--seconds N` and the target names.
fn parse_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number of seconds")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|&seconds| seconds > 0)
                    .with_context(|| {
                        format!("--seconds {value:?}: give a whole number of seconds above 0")
                    })?;
            }
            flag if flag.starts_with('-') => {
                bail!("unknown option `{flag}`; `fuzz` takes --seconds N and target names")
            }
            target => targets.push(target.to_owned()),
        }
    }
    Ok((seconds, targets))
}

/// The targets `cargo fuzz list` names.
fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let output = Command::new(cargo())
        .args(["fuzz", "list"])
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .context("could not run `cargo fuzz list`")?;
    if !output.status.success() {
        bail!(
            "`cargo fuzz list` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Runs one target for `seconds`; whether it ended cleanly, and what its log says.
fn fuzz_one(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<(bool, Outcome)> {
    let work_corpus = format!("target/corpus/{target}");
    fs::create_dir_all(fuzz_dir.join(&work_corpus))
        .with_context(|| format!("could not create fuzz/{work_corpus}"))?;
    let log_path = fuzz_dir.join(format!("target/logs/{target}.log"));
    let log = File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let mut command = Command::new(cargo());
    command
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run"])
        .args(BUILD_FLAGS)
        .arg(target)
        .arg(&work_corpus)
        .arg(format!("corpus/{target}"))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1");
    let dictionary = format!("dicts/{target}.dict");
    if fuzz_dir.join(&dictionary).is_file() {
        command.arg(format!("-dict={dictionary}"));
    }
    let status = command
        .stdout(log.try_clone().context("could not share the log file")?)
        .stderr(log)
        .status()
        .context("could not start `cargo fuzz run`")?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let outcome = read_log(&text);
    if !status.success() {
        // The panic message and libFuzzer's summary: the end of the log.
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for line in tail.iter().rev() {
            eprintln!("  | {line}");
        }
    }
    Ok((status.success(), outcome))
}

/// The figures of a libFuzzer log: runs, coverage, and the crash artifact.
fn read_log(text: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in text.lines() {
        if let Some(runs) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.runs = runs.trim().parse().ok();
        }
        if line.starts_with('#') {
            let field = |name: &str| {
                line.split_whitespace()
                    .skip_while(|word| *word != name)
                    .nth(1)
                    .and_then(|value| value.parse().ok())
            };
            outcome.cov = field("cov:").or(outcome.cov);
            outcome.features = field("ft:").or(outcome.features);
            outcome.rate = field("exec/s:").or(outcome.rate);
        }
        if let Some(done) = line.strip_prefix("Done ") {
            outcome.seconds = done
                .split_whitespace()
                .nth(3)
                .and_then(|seconds| seconds.parse().ok());
        }
        if let Some(rest) = line.split("Test unit written to ").nth(1) {
            outcome.artifact = Some(rest.trim().to_owned());
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn arguments_are_seconds_and_targets() {
        assert_eq!(parse_args(&[]).unwrap(), (DEFAULT_SECONDS, Vec::new()));
        assert_eq!(
            parse_args(&strings(&["--seconds", "180", "sse_parser", "token_file"])).unwrap(),
            (180, strings(&["sse_parser", "token_file"]))
        );
        for bad in [
            &["--seconds"][..],
            &["--seconds", "0"],
            &["--seconds", "x"],
            &["-j"],
        ] {
            assert!(parse_args(&strings(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_log_gives_runs_coverage_and_the_crash() {
        let log = "\
INFO: Seed: 1
#2\tINITED cov: 120 ft: 130 corp: 1/9b exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 811 ft: 2043 corp: 88/3Kb lim: 43 exec/s: 2048 rss: 52Mb
thread '<unnamed>' panicked at fuzz_targets/x.rs:3:5:
==1== ERROR: libFuzzer: deadly signal
artifact_prefix='/w/fuzz/artifacts/x/'; Test unit written to /w/fuzz/artifacts/x/crash-ab12
stat::number_of_executed_units: 5000
";
        assert_eq!(
            read_log(log),
            Outcome {
                runs: Some(5000),
                seconds: None,
                rate: Some(2048),
                cov: Some(811),
                features: Some(2043),
                artifact: Some("/w/fuzz/artifacts/x/crash-ab12".to_owned()),
            }
        );
        assert_eq!(read_log("").runs, None);
        let done = read_log(
            "#9\tDONE cov: 5 ft: 6 corp: 1/1b exec/s: 3 rss: 1Mb\nDone 9 runs in 181 second(s)\n",
        );
        assert_eq!((done.seconds, done.rate), (Some(181), Some(3)));
    }
}
