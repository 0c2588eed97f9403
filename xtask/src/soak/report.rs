//! The soak's report (Markdown, or JSON with `--json`) and its verdict.
//!
//! The verdict passes when every check does: no account lost, the final
//! RSS at most [`RSS_GROWTH_PERCENT`] % above its value after the first
//! minute (a drop is fine), cliproxy served the whole run, some requests
//! succeeded (else the run proved nothing), and every injected event could
//! be carried out.

use std::{fmt::Write as _, time::Duration};

use serde_json::{Value, json};

use super::{
    accounts::Lost,
    chaos::ChaosLog,
    traffic::{Counts, Tally},
};
use crate::bench::fake_qwen::RefreshReport;

/// Largest growth of RSS from after the first minute to the end.
pub(crate) const RSS_GROWTH_PERCENT: u64 = 10;
/// The RSS baseline is read this long into the run (or at half of a run
/// shorter than twice this).
pub(crate) const BASELINE_AT: Duration = Duration::from_secs(60);

/// One reading of cliproxy's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RssSample {
    /// Since the clients started.
    pub(crate) at: Duration,
    pub(crate) rss_kb: u64,
    /// Requests finished by then.
    pub(crate) requests: u64,
}

/// The sample the final RSS is compared with: the first at or after
/// [`BASELINE_AT`], or after half the run when it is shorter than twice
/// that. The last sample (the final value) is never its own baseline.
pub(crate) fn baseline(samples: &[RssSample], run: Duration) -> Option<RssSample> {
    let target = BASELINE_AT.min(run / 2);
    let (_, before_last) = samples.split_last()?;
    before_last.iter().find(|s| s.at >= target).copied()
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) pass: bool,
    pub(crate) line: String,
}

/// What the verdict is computed from.
#[derive(Debug, Clone, Default)]
pub(crate) struct VerdictInputs {
    pub(crate) lost: usize,
    pub(crate) baseline: Option<RssSample>,
    pub(crate) final_rss: Option<RssSample>,
    pub(crate) succeeded: u64,
    /// How cliproxy ended before the run was over, if it did.
    pub(crate) crashed: Option<String>,
    /// Injected events that could not be carried out.
    pub(crate) chaos_failures: u64,
}

/// The checks, in the order they are printed.
pub(crate) fn verdict(inputs: &VerdictInputs) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(Check {
        pass: inputs.lost == 0,
        line: match inputs.lost {
            0 => "no account lost".to_owned(),
            1 => "1 account lost".to_owned(),
            n => format!("{n} accounts lost"),
        },
    });
    checks.push(match (inputs.baseline, inputs.final_rss) {
        (Some(base), Some(last)) => {
            let pass = last.rss_kb * 100 <= base.rss_kb * (100 + RSS_GROWTH_PERCENT);
            Check {
                pass,
                line: format!(
                    "final RSS {} is {} the value at {} s, {} (need at most +{RSS_GROWTH_PERCENT} %)",
                    mib(last.rss_kb),
                    percent_change(base.rss_kb, last.rss_kb),
                    base.at.as_secs(),
                    mib(base.rss_kb),
                ),
            }
        }
        _ => Check {
            pass: false,
            line: "cliproxy's RSS could not be read twice (is /proc mounted?)".to_owned(),
        },
    });
    checks.push(match &inputs.crashed {
        None => Check {
            pass: true,
            line: "cliproxy served the whole run".to_owned(),
        },
        Some(how) => Check {
            pass: false,
            line: format!("cliproxy stopped during the run: {how}"),
        },
    });
    checks.push(Check {
        pass: inputs.succeeded > 0,
        line: format!("{} requests succeeded (need some)", inputs.succeeded),
    });
    checks.push(Check {
        pass: inputs.chaos_failures == 0,
        line: match inputs.chaos_failures {
            0 => "every injected event was carried out".to_owned(),
            n => format!("{n} injected events failed (see above)"),
        },
    });
    checks
}

/// `+4.2 %` or `-1.0 %` from `base` to `value`.
fn percent_change(base: u64, value: u64) -> String {
    if base == 0 {
        return "n/a vs".to_owned();
    }
    let change = (value as f64 - base as f64) * 100.0 / base as f64;
    format!("{change:+.1} % vs")
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// How cliproxy's process ended and what it logged.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerEnd {
    /// How it ended before the run was over, if it did.
    pub(crate) crashed: Option<String>,
    /// How it answered SIGTERM at the end.
    pub(crate) shutdown: String,
    pub(crate) warnings: u64,
    pub(crate) errors: u64,
    /// The first distinct WARN and ERROR lines.
    pub(crate) first_problems: Vec<String>,
}

/// Everything the soak found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    /// Date, commit, options.
    pub(crate) heading: String,
    pub(crate) minutes: f64,
    pub(crate) accounts: usize,
    pub(crate) connections: usize,
    pub(crate) tally: Tally,
    pub(crate) chaos: ChaosLog,
    pub(crate) refreshes: RefreshReport,
    pub(crate) lost: Vec<Lost>,
    /// Logged-out accounts that have a token file again at the end.
    pub(crate) back_after_logout: Vec<String>,
    pub(crate) rss: Vec<RssSample>,
    pub(crate) baseline: Option<RssSample>,
    pub(crate) server: ServerEnd,
    pub(crate) checks: Vec<Check>,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    fn final_rss(&self) -> Option<RssSample> {
        self.rss.last().copied()
    }

    /// The report as Markdown.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## cargo xtask soak\n\n{}\n", self.heading);

        let _ = writeln!(out, "### Requests\n");
        let _ = writeln!(
            out,
            "| requests | sent | success | cancelled on purpose | errors |\n|---|---:|---:|---:|---:|"
        );
        let row = |out: &mut String, name: &str, c: &Counts| {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} |",
                c.requests, c.success, c.cancelled, c.errors
            );
        };
        for (name, counts) in &self.tally.rows {
            row(&mut out, name, counts);
        }
        row(&mut out, "**all**", &self.tally.total());

        let _ = writeln!(out, "\n### Errors the clients saw\n");
        if self.tally.errors.is_empty() {
            let _ = writeln!(out, "none");
        } else {
            let _ = writeln!(out, "| error | count | first seen |\n|---|---:|---|");
            for (class, error) in &self.tally.errors {
                let sample = error.sample.replace('|', "\\|");
                let _ = writeln!(out, "| {class} | {} | {sample} |", error.count);
            }
        }

        if self.tally.naming_an_email > 0 {
            let _ = writeln!(
                out,
                "\n{} error answers named an account's email (clients must never see one)",
                self.tally.naming_an_email
            );
        }

        let c = &self.chaos;
        let _ = writeln!(out, "\n### Injected\n");
        let _ = writeln!(
            out,
            "- access tokens expired by the fake (401 on next use): {}, plus {} in {} storms of every account at once",
            c.expired, c.storm_expired, c.storms
        );
        let _ = writeln!(
            out,
            "- clients that hung up early sent right after the storms: {}",
            c.storm_clients
        );
        let _ = writeln!(
            out,
            "- access tokens that got quota errors (429 insufficient_quota): {}",
            c.quota_scripted
        );
        let _ = writeln!(
            out,
            "- hot reloads: {} logins of new accounts, {} re-logins, {} logouts, {} token files dropped in",
            c.logins, c.relogins, c.logouts, c.drop_ins
        );
        for failure in &c.failures {
            let _ = writeln!(out, "- failed: {failure}");
        }

        let r = &self.refreshes;
        let spent = r.dead.iter().filter(|d| d.spent).count();
        let _ = writeln!(out, "\n### Accounts and refreshes\n");
        let _ = writeln!(
            out,
            "- refreshes answered with a new pair: {}; refused as spent (sent again after a rotation): {spent}; refused as never issued: {}; failed otherwise: {}",
            r.issued,
            r.dead.len() - spent,
            r.failed
        );
        let _ = writeln!(out, "- accounts lost: {}", self.lost.len());
        for lost in &self.lost {
            let _ = writeln!(out, "  - {}: {}", lost.account, lost.reasons.join("; "));
        }
        if !self.back_after_logout.is_empty() {
            let _ = writeln!(
                out,
                "- logged out, but a token file is back at the end: {}",
                self.back_after_logout.join(", ")
            );
        }

        let _ = writeln!(out, "\n### cliproxy's memory (VmRSS)\n");
        let _ = writeln!(out, "| time | RSS | requests so far |\n|---:|---:|---:|");
        for sample in &self.rss {
            let _ = writeln!(
                out,
                "| {} s | {} | {} |",
                sample.at.as_secs(),
                mib(sample.rss_kb),
                sample.requests
            );
        }

        let s = &self.server;
        let _ = writeln!(out, "\n### cliproxy\n");
        if let Some(crashed) = &s.crashed {
            let _ = writeln!(out, "- stopped during the run: {crashed}");
        }
        let _ = writeln!(out, "- at the end: {}", s.shutdown);
        let _ = writeln!(
            out,
            "- its log: {} WARN and {} ERROR lines",
            s.warnings, s.errors
        );
        for line in &s.first_problems {
            let _ = writeln!(out, "  - `{line}`");
        }

        let _ = writeln!(out, "\n### Verdict\n");
        for check in &self.checks {
            let _ = writeln!(
                out,
                "- {}  {}",
                if check.pass { "PASS" } else { "FAIL" },
                check.line
            );
        }
        let _ = writeln!(out, "\n**{}**", if self.passed() { "PASS" } else { "FAIL" });
        out
    }

    /// The report as JSON.
    pub(crate) fn to_json(&self) -> Value {
        let counts = |c: &Counts| json!({ "sent": c.requests, "success": c.success, "cancelled": c.cancelled, "errors": c.errors });
        let rows: serde_json::Map<String, Value> = self
            .tally
            .rows
            .iter()
            .map(|(name, c)| (name.clone(), counts(c)))
            .collect();
        let errors: Vec<Value> = self
            .tally
            .errors
            .iter()
            .map(|(class, e)| json!({ "class": class, "count": e.count, "first": e.sample }))
            .collect();
        let sample = |s: &RssSample| json!({ "at_secs": s.at.as_secs(), "rss_kb": s.rss_kb, "requests": s.requests });
        let c = &self.chaos;
        let spent = self.refreshes.dead.iter().filter(|d| d.spent).count();
        json!({
            "heading": self.heading,
            "minutes": self.minutes,
            "accounts": self.accounts,
            "connections": self.connections,
            "requests": { "by_kind": rows, "total": counts(&self.tally.total()) },
            "errors": errors,
            "errors_naming_an_email": self.tally.naming_an_email,
            "injected": {
                "expired": c.expired,
                "storms": c.storms,
                "storm_expired": c.storm_expired,
                "storm_clients": c.storm_clients,
                "quota_scripted": c.quota_scripted,
                "logins": c.logins,
                "relogins": c.relogins,
                "logouts": c.logouts,
                "drop_ins": c.drop_ins,
                "failed": c.failed,
                "failures": c.failures,
            },
            "refreshes": {
                "issued": self.refreshes.issued,
                "refused_spent": spent,
                "refused_unknown": self.refreshes.dead.len() - spent,
                "failed": self.refreshes.failed,
            },
            "accounts_lost": self.lost.iter().map(|l| json!({ "account": l.account, "reasons": l.reasons })).collect::<Vec<_>>(),
            "back_after_logout": self.back_after_logout,
            "rss": {
                "samples": self.rss.iter().map(sample).collect::<Vec<_>>(),
                "baseline": self.baseline.as_ref().map(sample),
                "final": self.final_rss().as_ref().map(sample),
            },
            "cliproxy": {
                "crashed": self.server.crashed,
                "shutdown": self.server.shutdown,
                "log_warnings": self.server.warnings,
                "log_errors": self.server.errors,
                "log_first_problems": self.server.first_problems,
            },
            "checks": self.checks.iter().map(|c| json!({ "pass": c.pass, "check": c.line })).collect::<Vec<_>>(),
            "verdict": if self.passed() { "PASS" } else { "FAIL" },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, rss_kb: u64) -> RssSample {
        RssSample {
            at: Duration::from_secs(secs),
            rss_kb,
            requests: secs * 10,
        }
    }

    fn inputs(base: u64, last: u64) -> VerdictInputs {
        VerdictInputs {
            lost: 0,
            baseline: Some(at(60, base)),
            final_rss: Some(at(600, last)),
            succeeded: 1000,
            crashed: None,
            chaos_failures: 0,
        }
    }

    fn passes(inputs: &VerdictInputs) -> bool {
        verdict(inputs).iter().all(|c| c.pass)
    }

    #[test]
    fn rss_may_grow_by_ten_percent_and_may_shrink() {
        assert!(passes(&inputs(10_000, 11_000)));
        assert!(!passes(&inputs(10_000, 11_001)));
        assert!(passes(&inputs(10_000, 8_000)));
        let checks = verdict(&inputs(10_240, 11_264));
        assert_eq!(
            checks[1].line,
            "final RSS 11.0 MiB is +10.0 % vs the value at 60 s, 10.0 MiB (need at most +10 %)"
        );
        let unread = VerdictInputs {
            final_rss: None,
            ..inputs(1, 1)
        };
        assert!(!passes(&unread));
    }

    #[test]
    fn a_lost_account_a_crash_no_success_or_a_failed_event_fails() {
        let good = inputs(10_000, 10_000);
        assert!(passes(&good));
        let lost = VerdictInputs {
            lost: 2,
            ..good.clone()
        };
        let checks = verdict(&lost);
        assert_eq!(
            checks[0],
            Check {
                pass: false,
                line: "2 accounts lost".to_owned()
            }
        );
        assert!(!passes(&VerdictInputs {
            crashed: Some("signal 9".to_owned()),
            ..good.clone()
        }));
        assert!(!passes(&VerdictInputs {
            succeeded: 0,
            ..good.clone()
        }));
        assert!(!passes(&VerdictInputs {
            chaos_failures: 1,
            ..good
        }));
    }

    #[test]
    fn the_baseline_is_after_the_first_minute_or_half_a_short_run() {
        let long = [at(10, 1), at(50, 2), at(60, 3), at(70, 4), at(600, 5)];
        assert_eq!(baseline(&long, Duration::from_secs(600)), Some(at(60, 3)));
        let short = [at(10, 1), at(20, 2), at(30, 3)];
        assert_eq!(baseline(&short, Duration::from_secs(30)), Some(at(20, 2)));
        // The final sample is never its own baseline.
        assert_eq!(
            baseline(&[at(10, 1), at(30, 3)], Duration::from_secs(60)),
            None
        );
        assert_eq!(baseline(&[], Duration::from_secs(60)), None);
    }

    #[test]
    fn the_report_says_pass_only_when_every_check_passes() {
        let mut report = Report {
            rss: vec![at(60, 10_000), at(120, 10_100)],
            ..Report::default()
        };
        assert!(!report.passed(), "no checks, no pass");
        report.checks = verdict(&inputs(10_000, 10_100));
        assert!(report.passed());
        assert!(report.render().ends_with("**PASS**\n"));
        assert_eq!(report.to_json()["verdict"], "PASS");
        report.checks = verdict(&VerdictInputs {
            lost: 1,
            ..inputs(10_000, 10_100)
        });
        assert!(report.render().contains("- FAIL  1 account lost\n"));
        assert_eq!(report.to_json()["verdict"], "FAIL");
    }
}
