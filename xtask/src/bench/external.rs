//! The same throughput measured by an external load tool: `wrk` with one thread and the
//! benchmark's connection count, against the same stub, baselines and cliproxy instances, when
//! `wrk` is on `PATH`. A second opinion on the in-process load generator (which shares its
//! process with the stub and the in-process baseline), and what issue #10 asks to compare.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::load::{API_KEY, Target, request_body};

/// One target's figures, or why there are none.
#[derive(Debug, Clone)]
pub(crate) struct ExternalRow {
    pub(crate) stream: bool,
    pub(crate) target: &'static str,
    pub(crate) measured: Result<Measured, String>,
}

/// What `wrk` printed for one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    pub(crate) requests_per_sec: f64,
    /// Non-2xx answers and socket errors together.
    pub(crate) errors: u64,
}

/// The external runs: `None` when `wrk` is not installed (the report says so).
#[derive(Debug, Clone, Default)]
pub(crate) struct External {
    pub(crate) rows: Option<Vec<ExternalRow>>,
    pub(crate) connections: usize,
}

/// Runs `wrk -t1 -c<connections>` for `duration` against each target, non-streaming and
/// streaming, writing its request scripts into `dir`.
pub(crate) async fn measure(
    targets: &[Target],
    connections: usize,
    duration: Duration,
    dir: &Path,
) -> External {
    let installed = tokio::process::Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok();
    if !installed {
        return External {
            rows: None,
            connections,
        };
    }
    let mut rows = Vec::new();
    for stream in [false, true] {
        let script = dir.join(if stream { "stream.lua" } else { "plain.lua" });
        if let Err(error) = std::fs::write(&script, lua_script(stream)) {
            return External {
                rows: Some(vec![ExternalRow {
                    stream,
                    target: "all",
                    measured: Err(format!("cannot write {}: {error}", script.display())),
                }]),
                connections,
            };
        }
        for target in targets {
            eprintln!(
                "  wrk -t1 -c{connections} {} -> {} ...",
                if stream { "stream" } else { "non-stream" },
                target.name
            );
            rows.push(ExternalRow {
                stream,
                target: target.name,
                measured: run_wrk(target, connections, duration, &script).await,
            });
        }
    }
    External {
        rows: Some(rows),
        connections,
    }
}

async fn run_wrk(
    target: &Target,
    connections: usize,
    duration: Duration,
    script: &Path,
) -> Result<Measured, String> {
    let output = tokio::process::Command::new("wrk")
        .args(["-t1", &format!("-c{connections}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(script)
        .arg(format!("http://{}/v1/chat/completions", target.addr))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| format!("cannot run wrk: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("no Requests/sec in wrk's output: {}", text.trim()))
}

/// The request `wrk` sends: the in-process generator's, with its key.
fn lua_script(stream: bool) -> String {
    let body = String::from_utf8_lossy(&request_body(stream)).into_owned();
    format!(
        "wrk.method = \"POST\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {API_KEY}\"\n\
         wrk.body = [[{body}]]\n"
    )
}

/// Requests a second and errors from `wrk`'s report.
fn parse_wrk(text: &str) -> Option<Measured> {
    let number_after = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
    };
    let requests_per_sec = number_after("Requests/sec:")?.parse().ok()?;
    let non_2xx: u64 = number_after("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let socket: u64 = number_after("Socket errors:")
        .map(|errors| {
            errors
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Some(Measured {
        requests_per_sec,
        errors: non_2xx + socket,
    })
}

impl External {
    /// The section of the report: a table and the ratios against `baseline`.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### External load tool: wrk -t1 -c{}\n",
            self.connections
        );
        let Some(rows) = &self.rows else {
            let _ = writeln!(out, "skipped: `wrk` is not on PATH\n");
            return out;
        };
        let _ = writeln!(out, "| requests | target | req/s | errors | of baseline |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|");
        for row in rows {
            let kind = if row.stream { "stream" } else { "non-stream" };
            match &row.measured {
                Ok(measured) => {
                    let ratio = self.baseline(row.stream).map_or("-".to_owned(), |base| {
                        format!("{:.0} %", 100.0 * measured.requests_per_sec / base)
                    });
                    let _ = writeln!(
                        out,
                        "| {kind} | {} | {:.0} | {} | {ratio} |",
                        row.target, measured.requests_per_sec, measured.errors
                    );
                }
                Err(error) => {
                    let _ = writeln!(out, "| {kind} | {} | - | {error} | - |", row.target);
                }
            }
        }
        out.push('\n');
        out
    }

    fn baseline(&self, stream: bool) -> Option<f64> {
        self.rows.as_ref()?.iter().find_map(|row| {
            (row.stream == stream && row.target == "baseline")
                .then(|| row.measured.as_ref().ok().map(|m| m.requests_per_sec))
                .flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_report() {
        let report = "Running 5s test @ http://127.0.0.1:1/v1/chat/completions\n\
                      \x20 1 threads and 32 connections\n\
                      \x20 Socket errors: connect 0, read 2, write 1, timeout 0\n\
                      \x20 Non-2xx or 3xx responses: 3\n\
                      Requests/sec:  21450.37\n\
                      Transfer/sec:      9.63MB\n";
        assert_eq!(
            parse_wrk(report),
            Some(Measured {
                requests_per_sec: 21450.37,
                errors: 6
            })
        );
        assert_eq!(parse_wrk("wrk: connection refused"), None);
    }

    #[test]
    fn the_script_posts_the_benchmarks_request() {
        let script = lua_script(true);
        assert!(script.contains("wrk.method = \"POST\""));
        assert!(script.contains(&format!("Bearer {API_KEY}")));
        assert!(script.contains("\"stream\":true"));
    }
}
