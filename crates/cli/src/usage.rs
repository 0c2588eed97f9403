//! `cliproxy usage`: what the usage ledger holds, as a table for people or JSON for scripts.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use account_store::PgLedger;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use usage_ledger::{GroupBy, LedgerStore as _, SqliteStore, UsageQuery, UsageReport, UsageTotals};

use crate::args::{UsageGroup, UsageOptions};
use crate::error::CliError;
use crate::output::{Align, render_table};

/// Where the usage ledger is kept, as `usage-db` and `[store]` resolve it.
#[derive(Clone, PartialEq, Eq)]
pub enum UsageDb {
    /// `usage-db = "off"`: nothing is recorded.
    Off,
    /// A SQLite file (`usage-db = PATH`, or the default beside the auth dir).
    File(std::path::PathBuf),
    /// The PostgreSQL store's database (`[store] kind = "postgres"` without a `usage-db`),
    /// at this URL, which may hold a password: `Debug` hides it.
    Postgres(String),
}

impl std::fmt::Debug for UsageDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageDb::Off => f.write_str("Off"),
            UsageDb::File(path) => f.debug_tuple("File").field(path).finish(),
            UsageDb::Postgres(_) => f.write_str("Postgres(<the store's URL>)"),
        }
    }
}

/// What `cliproxy usage` prints for `options`, reading the ledger at `db`; `now` is what
/// `--since 24h` counts back from.
///
/// Blocks (it reads a database): call it on a blocking thread, not inside async code.
pub fn usage(db: &UsageDb, options: &UsageOptions, now: SystemTime) -> Result<String, CliError> {
    let query = UsageQuery {
        since: parse_since(&options.since, now)?,
        by: group_by(options.by),
    };
    let (report, source) = match db {
        UsageDb::Off => return Err(CliError::UsageOff),
        UsageDb::File(path) => (
            SqliteStore::open_existing(path)?.usage(&query)?,
            path.display().to_string(),
        ),
        UsageDb::Postgres(url) => {
            let ledger = PgLedger::open_existing(url)?;
            (ledger.usage(&query)?, ledger.target().to_owned())
        }
    };
    if options.json {
        let mut json = serde_json::to_string_pretty(&report)
            .expect("a usage report is plain data and always serializes");
        json.push('\n');
        return Ok(json);
    }
    Ok(render_usage_table(&report, &source))
}

fn group_by(group: UsageGroup) -> GroupBy {
    match group {
        UsageGroup::Credential => GroupBy::Credential,
        UsageGroup::Model => GroupBy::Model,
        UsageGroup::ClientKey => GroupBy::ClientKey,
        UsageGroup::Day => GroupBy::Day,
        UsageGroup::Hour => GroupBy::Hour,
    }
}

/// `--since`: `24h` or `7d` back from `now`, a UTC date, or an RFC 3339 time.
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, CliError> {
    let invalid = || CliError::InvalidSince {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    if let Some((number, unit)) = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&at| at > 0)
        .map(|at| trimmed.split_at(at))
    {
        let hours_each = match unit {
            "h" => Some(1),
            "d" => Some(24),
            _ => None,
        };
        if let Some(hours_each) = hours_each {
            let number: u64 = number.parse().map_err(|_| invalid())?;
            let back = number
                .checked_mul(hours_each * 3600)
                .map(Duration::from_secs)
                .ok_or_else(invalid)?;
            return Ok(now
                .checked_sub(back)
                .filter(|since| *since > SystemTime::UNIX_EPOCH)
                .unwrap_or(SystemTime::UNIX_EPOCH));
        }
    }
    if let Ok(date) = time::Date::parse(trimmed, format_description!("[year]-[month]-[day]")) {
        return Ok(date.midnight().assume_utc().into());
    }
    OffsetDateTime::parse(trimmed, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| invalid())
}

/// The report as a table: a title, one line per group, a total, and notes.
/// `source` names the database (a file, or the PostgreSQL store without its password).
pub fn render_usage_table(report: &UsageReport, source: &str) -> String {
    let mut out = format!(
        "Usage since {} by {}, from {}\n",
        report.since.replace('T', " ").replace('Z', " UTC"),
        report.by.as_str(),
        source
    );
    if report.rows.is_empty() {
        out.push_str("No requests recorded in that time.\n");
        return out;
    }
    out.push('\n');
    let header = [
        group_title(report.by),
        "REQUESTS",
        "OK",
        "FAILED",
        "PROMPT",
        "COMPLETION",
        "CACHED",
        "LATENCY P50",
        "P95",
        "TTFT P50",
    ]
    .map(str::to_owned);
    let mut rows = vec![header];
    rows.extend(
        report
            .rows
            .iter()
            .map(|row| cells(&empty_key_label(report.by, &row.key), &row.totals)),
    );
    if report.rows.len() > 1 {
        rows.push(cells("TOTAL", &report.total));
    }
    let align = [
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
    ];
    out.push_str(&render_table(&rows, &align));
    if report.total.estimated_requests > 0 {
        let _ = writeln!(
            out,
            "\n* includes estimates: {} request(s) whose upstream sent no token counts",
            report.total.estimated_requests
        );
    }
    out
}

fn group_title(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Credential => "CREDENTIAL",
        GroupBy::Model => "MODEL",
        GroupBy::ClientKey => "CLIENT KEY",
        GroupBy::Day => "DAY (UTC)",
        GroupBy::Hour => "HOUR (UTC)",
    }
}

/// What an empty key means in its group: no credential served, no client key was sent.
fn empty_key_label(by: GroupBy, key: &str) -> String {
    match (by, key.is_empty()) {
        (GroupBy::Credential, true) => "(none)".to_owned(),
        (GroupBy::ClientKey, true) => "(no key)".to_owned(),
        (GroupBy::Model, true) => "(unknown)".to_owned(),
        _ => key.to_owned(),
    }
}

fn cells(key: &str, totals: &UsageTotals) -> [String; 10] {
    let estimated = if totals.estimated_requests > 0 {
        "*"
    } else {
        ""
    };
    let failures: Vec<String> = totals
        .failures_by_class
        .by_class()
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(class, count)| format!("{} {count}", class.as_str()))
        .collect();
    let failed = if failures.is_empty() {
        totals.failures.to_string()
    } else {
        format!("{} ({})", totals.failures, failures.join(", "))
    };
    [
        key.to_owned(),
        totals.requests.to_string(),
        totals.successes.to_string(),
        failed,
        format!("{}{estimated}", totals.prompt_tokens),
        format!("{}{estimated}", totals.completion_tokens),
        totals.cached_tokens.to_string(),
        millis(totals.latency_ms.p50),
        millis(totals.latency_ms.p95),
        millis(totals.ttft_ms.p50),
    ]
}

/// `850ms`, `2.4s`, `1m 05s`; `-` for nothing observed.
fn millis(value: Option<u64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(ms @ 0..1000) => format!("{ms}ms"),
        Some(ms @ 1000..60_000) => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap().into()
    }

    #[test]
    fn since_takes_spans_dates_and_times() {
        let now = at("2026-12-05T14:30:00Z");
        assert_eq!(parse_since("24h", now).unwrap(), at("2026-12-04T14:30:00Z"));
        assert_eq!(parse_since("7d", now).unwrap(), at("2026-11-28T14:30:00Z"));
        assert_eq!(
            parse_since("2026-12-01", now).unwrap(),
            at("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_since("2026-12-01T08:00:00+02:00", now).unwrap(),
            at("2026-12-01T06:00:00Z")
        );
        assert_eq!(
            parse_since("100000d", now).unwrap(),
            SystemTime::UNIX_EPOCH,
            "before the epoch is from the start"
        );
        for bad in ["yesterday", "7w", "h", "-3d", "2026-13-01", ""] {
            let error = parse_since(bad, now).unwrap_err();
            assert!(matches!(error, CliError::InvalidSince { .. }), "{bad}");
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
            assert!(error.to_string().contains("like 24h, 7d"), "{error}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(millis(None), "-");
        assert_eq!(millis(Some(375)), "375ms");
        assert_eq!(millis(Some(2400)), "2.4s");
        assert_eq!(millis(Some(65_000)), "1m 05s");
    }
}
