//! The results table and the budget check.
//!
//! The tables are printed as Markdown so a run can be pasted into
//! `docs/benchmarks.md` as is.

use std::{fmt::Write as _, time::Duration};

use super::{
    bodies::LargeBodies, external::External, ledger::LedgerCost, load::Outcome,
    refresh_window::RefreshWindow, summary::Summary,
};

/// Largest cliproxy slowdown in throughput: it must reach this share of the
/// baseline pass-through's requests per second.
pub(crate) const MIN_THROUGHPUT_RATIO: f64 = 0.8;
/// Throughput with the usage ledger on, at least, against the same server with it off.
pub(crate) const MIN_RECORDED_RATIO: f64 = 0.97;
/// The target that is `cliproxy` with `usage-db = "off"`.
pub(crate) const UNRECORDED: &str = "cliproxy-unrecorded";
/// Largest p50 latency cliproxy may add over the baseline at one connection.
pub(crate) const MAX_ADDED_P50: Duration = Duration::from_micros(100);
/// Largest resident memory of cliproxy with [`OPEN_STREAMS`] streams open.
pub(crate) const MAX_RSS_KB: u64 = 30 * 1024;
/// Streams held open at once for the memory budget.
pub(crate) const OPEN_STREAMS: usize = 256;
/// Most cliproxy's resident memory may grow, over its idle RSS, while many large bodies
/// arrive at once with the default `body-memory-budget` (512 MiB): the budget, and room for
/// each connection's buffers and the allocator's slack.
pub(crate) const MAX_BODIES_GROWTH_KB: u64 = (512 + 64) * 1024;
/// Longest p99 of the refresh window (Qwen's answer to the renamed, flushed token file)
/// under a storm of refreshes: what a kill -9 can hit.
pub(crate) const MAX_REFRESH_WINDOW_P99: Duration = Duration::from_millis(10);

/// One row of the load table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) stream: bool,
    pub(crate) concurrency: usize,
    pub(crate) target: &'static str,
    pub(crate) outcome: Outcome,
}

/// The hold-open measurement.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldStreams {
    /// Streams that received their first event.
    pub(crate) opened: usize,
    /// Streams the stub held at the moment memory was read.
    pub(crate) held_upstream: usize,
    /// cliproxy's VmRSS then.
    pub(crate) rss_kb: Option<u64>,
    /// Streams that ended complete after the release.
    pub(crate) completed: usize,
    pub(crate) errors: Vec<String>,
}

/// Start-up with a number of account files.
#[derive(Debug, Clone)]
pub(crate) struct Startup {
    pub(crate) accounts: usize,
    /// Spawn to first served `GET /v1/models`, one per run.
    pub(crate) runs: Vec<Duration>,
    pub(crate) error: Option<String>,
}

/// Everything one `cargo xtask bench` run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Results {
    pub(crate) rows: Vec<Row>,
    /// The connection count of the throughput runs.
    pub(crate) concurrency: usize,
    /// cliproxy's VmRSS once ready, before any load.
    pub(crate) rss_idle_kb: Option<u64>,
    pub(crate) held: HeldStreams,
    /// cliproxy's VmHWM after every load phase.
    pub(crate) peak_rss_kb: Option<u64>,
    pub(crate) startup: Vec<Startup>,
    /// Many large bodies at once, each against a fresh cliproxy.
    pub(crate) large_bodies: Vec<LargeBodies>,
    /// The refresh windows of the refresh storms.
    pub(crate) refresh_window: RefreshWindow,
    /// Requests the stub did not expect, and the first of them.
    pub(crate) unexpected: (u64, Vec<String>),
    /// The throughput as `wrk` measured it, when it is installed.
    pub(crate) external: External,
    /// The usage ledger's cost, in paired rounds.
    pub(crate) ledger: Vec<LedgerCost>,
}

/// A line of the budget check; `pass` is `None` for information only.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) pass: Option<bool>,
    pub(crate) text: String,
}

impl std::fmt::Display for Check {
    /// `- PASS  text`, `- FAIL  text` or `- info  text`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "info",
        };
        write!(f, "- {tag}  {}", self.text)
    }
}

impl Results {
    fn row(&self, stream: bool, concurrency: usize, target: &str) -> Option<&Outcome> {
        self.rows
            .iter()
            .find(|r| r.stream == stream && r.concurrency == concurrency && r.target == target)
            .map(|r| &r.outcome)
    }

    /// Evaluates the budget against this run's own baseline.
    pub(crate) fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        for stream in [false, true] {
            let kind = if stream { "streaming" } else { "non-streaming" };
            let c = self.concurrency;
            checks.push(
                match (self.row(stream, c, "cliproxy"), self.row(stream, c, "baseline")) {
                    (Some(proxy), Some(base)) => {
                        let (p, b) = (proxy.requests_per_sec(), base.requests_per_sec());
                        let ratio = if b > 0.0 { p / b } else { 0.0 };
                        Check {
                            pass: Some(ratio >= MIN_THROUGHPUT_RATIO),
                            text: format!(
                                "{kind} throughput at {c} connections: cliproxy {p:.0} req/s = {:.0} % of baseline {b:.0} req/s (need >= {:.0} %)",
                                ratio * 100.0,
                                MIN_THROUGHPUT_RATIO * 100.0
                            ),
                        }
                    }
                    _ => missing(format!("{kind} throughput at {c} connections")),
                },
            );
        }

        checks.extend(ledger_checks(&self.ledger, self.concurrency));

        for stream in [false, true] {
            let kind = if stream { "streaming" } else { "non-streaming" };
            let c = self.concurrency;
            if let (Some(qwen), Some(base)) = (
                self.row(stream, c, "cliproxy-qwen"),
                self.row(stream, c, "baseline"),
            ) {
                let (q, b) = (qwen.requests_per_sec(), base.requests_per_sec());
                let ratio = if b > 0.0 { q / b } else { 0.0 };
                checks.push(Check {
                    pass: None,
                    text: format!(
                        "{kind} throughput at {c} connections through Qwen OAuth accounts (body reshaped, Qwen headers): cliproxy-qwen {q:.0} req/s = {:.0} % of baseline",
                        ratio * 100.0
                    ),
                });
            }
        }

        let p50 = |target| {
            self.row(false, 1, target)
                .and_then(|o| o.latency)
                .map(|s| s.p50)
        };
        checks.push(match (p50("cliproxy"), p50("baseline")) {
            (Some(proxy), Some(base)) => {
                let added = signed_micros(proxy, base);
                Check {
                    pass: Some(added < MAX_ADDED_P50.as_micros() as i64),
                    text: format!(
                        "added p50 latency at 1 connection (non-streaming): cliproxy {} - baseline {} = {added} µs (need < {} µs)",
                        fmt_duration(proxy),
                        fmt_duration(base),
                        MAX_ADDED_P50.as_micros()
                    ),
                }
            }
            _ => missing("added p50 latency at 1 connection".to_owned()),
        });
        if let (Some(proxy), Some(direct)) = (p50("cliproxy"), p50("direct")) {
            checks.push(Check {
                pass: None,
                text: format!(
                    "added p50 latency vs the stub direct (non-streaming, 1 connection): {} µs",
                    signed_micros(proxy, direct)
                ),
            });
        }
        let ttfb = |target| {
            self.row(true, 1, target)
                .and_then(|o| o.ttfb)
                .map(|s| s.p50)
        };
        if let (Some(proxy), Some(base)) = (ttfb("cliproxy"), ttfb("baseline")) {
            checks.push(Check {
                pass: None,
                text: format!(
                    "added p50 time to first byte vs baseline (streaming, 1 connection): {} µs",
                    signed_micros(proxy, base)
                ),
            });
        }

        let held = &self.held;
        checks.push(match held.rss_kb {
            Some(rss) if held.opened == OPEN_STREAMS => Check {
                pass: Some(rss < MAX_RSS_KB),
                text: format!(
                    "cliproxy RSS with {OPEN_STREAMS} streams open: {} (need < {})",
                    fmt_kb(rss),
                    fmt_kb(MAX_RSS_KB)
                ),
            },
            Some(rss) => Check {
                pass: Some(false),
                text: format!(
                    "only {} of {OPEN_STREAMS} streams opened through cliproxy (RSS then {})",
                    held.opened,
                    fmt_kb(rss)
                ),
            },
            None => missing(format!("cliproxy RSS with {OPEN_STREAMS} streams open")),
        });

        for run in &self.large_bodies {
            checks.push(bodies_check(run));
        }
        checks.push(refresh_window_check(&self.refresh_window));

        let errors: u64 = self
            .rows
            .iter()
            .filter(|r| r.target.starts_with("cliproxy"))
            .map(|r| r.outcome.errors)
            .sum();
        checks.push(Check {
            pass: Some(errors == 0),
            text: format!("failed requests through cliproxy and cliproxy-qwen: {errors} (need 0)"),
        });
        checks
    }

    /// The whole report: load table, memory, start-up, budget.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### Load\n");
        let _ = writeln!(
            out,
            "| requests | conns | target | req/s | p50 | p90 | p99 | max | TTFB p50 | TTFB p99 | errors |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &self.rows {
            let o = &row.outcome;
            let lat = |f: fn(&Summary) -> Duration| {
                o.latency
                    .as_ref()
                    .map_or("-".into(), |s| fmt_duration(f(s)))
            };
            let ttfb = |f: fn(&Summary) -> Duration| {
                o.ttfb.as_ref().map_or("-".into(), |s| fmt_duration(f(s)))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                if row.stream { "stream" } else { "non-stream" },
                row.concurrency,
                row.target,
                o.requests_per_sec(),
                lat(|s| s.p50),
                lat(|s| s.p90),
                lat(|s| s.p99),
                lat(|s| s.max),
                ttfb(|s| s.p50),
                ttfb(|s| s.p99),
                o.errors,
            );
        }
        let errors: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.outcome.error_samples.iter().map(move |e| {
                    let kind = if r.stream { "stream" } else { "non-stream" };
                    format!("- {} {kind} c={}: {e}", r.target, r.concurrency)
                })
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "\nErrors seen:\n{}", errors.join("\n"));
        }
        let _ = writeln!(
            out,
            "\n`direct`: the upstream stub itself; `baseline`: a do-nothing pass-through \
             proxy in the benchmark's own process; `baseline-proc`: the same pass-through \
             in a process of its own, like cliproxy; `cliproxy`: `cliproxy serve` with \
             API keys of an OpenAI-compatible upstream (the budget's target); \
             `cliproxy-qwen`: `cliproxy serve` with Qwen OAuth accounts. For streams, the latency columns are the whole stream (send to `[DONE]`) \
             and TTFB is send to the first body byte.\n"
        );

        out.push_str(&self.external.render());

        let _ = writeln!(out, "### cliproxy memory and start-up\n");
        let _ = writeln!(out, "| measure | value |");
        let _ = writeln!(out, "|---|---:|");
        let kb = |v: Option<u64>| v.map_or("n/a".to_owned(), fmt_kb);
        let _ = writeln!(out, "| RSS idle after start | {} |", kb(self.rss_idle_kb));
        let held = &self.held;
        let _ = writeln!(
            out,
            "| RSS with {} of {OPEN_STREAMS} streams open ({} held at the stub) | {} |",
            held.opened,
            held.held_upstream,
            kb(held.rss_kb)
        );
        let _ = writeln!(
            out,
            "| held streams complete after the release | {} of {} |",
            held.completed, held.opened
        );
        let _ = writeln!(
            out,
            "| peak RSS (VmHWM) after all load | {} |",
            kb(self.peak_rss_kb)
        );
        for startup in &self.startup {
            let value = match (&startup.error, Summary::of(&mut startup.runs.clone())) {
                (Some(error), _) => format!("failed: {error}"),
                (None, Some(s)) => format!(
                    "median {} (min {}, max {}, {} runs)",
                    fmt_duration(s.p50),
                    fmt_duration(startup.runs.iter().min().copied().unwrap_or_default()),
                    fmt_duration(s.max),
                    s.count
                ),
                (None, None) => "n/a".to_owned(),
            };
            let _ = writeln!(
                out,
                "| start-up to first `GET /v1/models`, {} account files | {value} |",
                startup.accounts
            );
        }
        for run in &self.large_bodies {
            let _ = writeln!(
                out,
                "| {} | {} (idle {}; {} of {} served in {}) |",
                run.label(),
                kb(run.peak_kb),
                kb(run.rss_idle_kb),
                run.served,
                run.clients,
                fmt_duration(run.elapsed)
            );
        }
        let window = &self.refresh_window;
        let _ = writeln!(
            out,
            "| refresh window (Qwen's answer to the renamed, flushed file), {} storms of {} accounts | {} |",
            window.storms,
            super::refresh_window::STORM_ACCOUNTS,
            match (&window.error, window_summary(window)) {
                (Some(error), _) => format!("failed: {error}"),
                (None, Some(s)) => format!(
                    "p50 {}, p99 {}, max {} ({} refreshes)",
                    fmt_duration(s.p50),
                    fmt_duration(s.p99),
                    fmt_duration(s.max),
                    s.count
                ),
                (None, None) => "n/a".to_owned(),
            }
        );
        if !held.errors.is_empty() {
            let _ = writeln!(out, "\nStream errors:\n- {}", held.errors.join("\n- "));
        }
        for run in &self.large_bodies {
            if !run.errors.is_empty() {
                let _ = writeln!(
                    out,
                    "\nErrors with large bodies ({}):\n- {}",
                    run.label(),
                    run.errors.join("\n- ")
                );
            }
        }
        let (unexpected, seen) = &self.unexpected;
        if *unexpected > 0 {
            let _ = writeln!(
                out,
                "\nThe stub got {unexpected} unexpected request(s), e.g. {}",
                seen.join(", ")
            );
        }

        let _ = writeln!(out, "\n### Budget\n");
        for check in self.checks() {
            let _ = writeln!(out, "{check}");
        }
        out
    }

    /// True when no budget line failed.
    pub(crate) fn passed(&self) -> bool {
        self.checks().iter().all(|c| c.pass != Some(false))
    }
}

/// The budget lines of the usage ledger's paired rounds at `concurrency` connections.
pub(crate) fn ledger_checks(costs: &[LedgerCost], concurrency: usize) -> Vec<Check> {
    let mut checks = Vec::new();
    for cost in costs {
        let kind = if cost.stream {
            "streaming"
        } else {
            "non-streaming"
        };
        let c = concurrency;
        let (Some(median), Some((low, high))) = (cost.median(), cost.spread()) else {
            checks.push(missing(format!("{kind} throughput with the usage ledger")));
            continue;
        };
        let interval = cost.median_interval().map_or(String::new(), |(low, high)| {
            format!(
                "; 95 % interval of the median {:.1} to {:.1} %",
                low * 100.0,
                high * 100.0
            )
        });
        let cpu = match (
            cost.on.per_request(),
            cost.off.per_request(),
            cost.cpu_ratio(),
        ) {
            (Some(on), Some(off), Some(ratio)) => format!(
                "; CPU per request {} with, {} without ({:+.1} %)",
                fmt_duration(on),
                fmt_duration(off),
                (ratio - 1.0) * 100.0
            ),
            _ => String::new(),
        };
        checks.push(Check {
            pass: Some(cost.errors == 0 && median >= MIN_RECORDED_RATIO),
            text: format!(
                "{kind} throughput at {c} connections with the usage ledger: cliproxy = {:.1} % of {UNRECORDED} (median of {} paired rounds{interval}, {:.1} to {:.1} % in all; need >= {:.0} %){cpu}{}",
                median * 100.0,
                cost.ratios.len(),
                low * 100.0,
                high * 100.0,
                MIN_RECORDED_RATIO * 100.0,
                if cost.errors > 0 {
                    format!(", {} failed requests", cost.errors)
                } else {
                    String::new()
                }
            ),
        });
    }
    checks
}

/// The refresh windows as durations, summarised.
fn window_summary(window: &RefreshWindow) -> Option<Summary> {
    let mut samples: Vec<Duration> = window
        .samples_us
        .iter()
        .map(|&us| Duration::from_micros(us))
        .collect();
    Summary::of(&mut samples)
}

/// The budget line of the refresh storms: every account refreshed, p99 within
/// [`MAX_REFRESH_WINDOW_P99`].
fn refresh_window_check(window: &RefreshWindow) -> Check {
    match (&window.error, window_summary(window)) {
        (None, Some(summary)) => Check {
            pass: Some(summary.p99 <= MAX_REFRESH_WINDOW_P99),
            text: format!(
                "refresh window p99 {} over {} refreshes in storms of {} accounts (need <= {})",
                fmt_duration(summary.p99),
                summary.count,
                super::refresh_window::STORM_ACCOUNTS,
                fmt_duration(MAX_REFRESH_WINDOW_P99)
            ),
        },
        _ => missing("the refresh window under refresh storms".to_owned()),
    }
}

/// The budget line of one large-bodies run: with the default budget, every request served
/// and the growth over idle within [`MAX_BODIES_GROWTH_KB`]; without it, information.
fn bodies_check(run: &LargeBodies) -> Check {
    let (Some(peak), Some(idle)) = (run.peak_kb, run.rss_idle_kb) else {
        return missing(run.label());
    };
    let growth = peak.saturating_sub(idle);
    let text = format!(
        "{}: {} over idle ({} of {} served){}",
        run.label(),
        fmt_kb(growth),
        run.served,
        run.clients,
        if run.bounded() {
            format!(" (need < {} and all served)", fmt_kb(MAX_BODIES_GROWTH_KB))
        } else {
            String::new()
        }
    );
    Check {
        pass: run
            .bounded()
            .then_some(growth < MAX_BODIES_GROWTH_KB && run.served == run.clients),
        text,
    }
}

fn missing(what: String) -> Check {
    Check {
        pass: Some(false),
        text: format!("{what}: not measured"),
    }
}

/// `a - b` in whole microseconds, negative when `a` is smaller.
fn signed_micros(a: Duration, b: Duration) -> i64 {
    a.as_micros() as i64 - b.as_micros() as i64
}

/// A duration with a unit that keeps three significant digits or so.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1e6 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// Kibibytes as MiB with one decimal.
pub(crate) fn fmt_kb(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_readable() {
        assert_eq!(fmt_duration(Duration::from_micros(87)), "87 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1250)), "1.25 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.50 s");
        assert_eq!(fmt_kb(15 * 1024 + 512), "15.5 MiB");
    }

    fn outcome(requests: u64, p50_us: u64) -> Outcome {
        let mut samples = vec![Duration::from_micros(p50_us)];
        Outcome {
            requests,
            elapsed: Duration::from_secs(1),
            latency: Summary::of(&mut samples),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_slow_or_missing_refresh_window_fails_its_line() {
        let window = |samples_us: Vec<u64>| RefreshWindow {
            samples_us,
            storms: 1,
            error: None,
        };
        assert_eq!(
            refresh_window_check(&window(vec![800; 99])).pass,
            Some(true)
        );
        let mut slow = vec![800; 98];
        slow.extend([40_000, 50_000]);
        assert_eq!(refresh_window_check(&window(slow)).pass, Some(false));
        assert_eq!(refresh_window_check(&window(Vec::new())).pass, Some(false));
    }

    #[test]
    fn budget_is_relative_to_the_baseline() {
        let mut results = Results {
            concurrency: 4,
            held: HeldStreams {
                opened: OPEN_STREAMS,
                rss_kb: Some(20 * 1024),
                ..HeldStreams::default()
            },
            refresh_window: RefreshWindow {
                samples_us: vec![900, 1200, 4000],
                storms: 1,
                error: None,
            },
            ..Results::default()
        };
        for stream in [false, true] {
            for (concurrency, base, proxy) in [(1, 1000, 900), (4, 4000, 3300)] {
                for (target, rps, p50) in [("baseline", base, 100), ("cliproxy", proxy, 180)] {
                    results.rows.push(Row {
                        stream,
                        concurrency,
                        target,
                        outcome: outcome(rps, p50),
                    });
                }
            }
        }
        let checks = results.checks();
        let failed: Vec<_> = checks.iter().filter(|c| c.pass == Some(false)).collect();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(results.passed());

        // 3300 / 4000 passes; 3100 / 4000 does not.
        results.rows[3].outcome.requests = 3100;
        assert!(!results.passed());
        results.rows[3].outcome.requests = 3300;
        results.held.rss_kb = Some(31 * 1024);
        assert!(!results.passed());
        results.held.rss_kb = Some(20 * 1024);
        results.rows[1].outcome = outcome(900, 200);
        assert!(!results.passed(), "100 µs added is over budget");
    }
}
