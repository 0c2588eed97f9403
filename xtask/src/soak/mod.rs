//! `cargo xtask soak`: runs the release `cliproxy serve` for minutes under
//! mixed traffic and the failures it must survive, then reports errors,
//! accounts lost and memory over time, with a PASS/FAIL verdict.
//!
//! One run builds `cliproxy` and `fake-qwen` in release mode, starts the
//! fake Qwen as a process ([`fake`]) with short-lived tokens, slow refresh
//! answers and paced streams, writes the account files ([`accounts`]),
//! starts `cliproxy serve` on them, and then, until the time is up:
//! keep-alive clients send a mix of requests and hang-ups ([`traffic`]);
//! the fake expires access tokens, answers with quota errors and rotates
//! refresh tokens in storms, while accounts log in and out ([`chaos`]);
//! cliproxy's RSS is read every [`SAMPLE_EVERY`]. At the end cliproxy gets
//! SIGTERM, and the auth dir and the fake's refresh log tell which accounts
//! were lost ([`report`]).
//!
//! Every address is 127.0.0.1, every wait is bounded, and both children are
//! killed when the run ends, fails or panics.

pub(crate) mod accounts;
mod chaos;
mod report;
mod rng;
mod traffic;

use std::{
    collections::{BTreeSet, HashMap},
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use tokio::sync::watch;

use self::{
    accounts::{Accounts, Evidence},
    chaos::{Chaos, seed_now, unix_now},
    report::{Report, RssSample, ServerEnd, VerdictInputs},
    traffic::Clients,
};
use crate::{
    bench::{
        WorkDir,
        cliproxy::{self, Instance, Layout, Probe, rfc3339_utc, toml_string},
        fake_qwen::{self, FakeProcess, FakeSettings},
        git_commit, net,
    },
    cmd::{cargo, run_checked},
    dist::target_dir,
};

pub(crate) const HELP: &str = "\
cargo xtask soak [--minutes N] [--accounts N] [--connections N] [--json] [--keep]
                 [--no-build]

Runs the release cliproxy for N minutes against the fake Qwen (a process)
under mixed traffic: whole and streamed chat completions, Messages and
Responses, clients that hang up mid-stream or mid-refresh, expired access
tokens (401), quota errors, storms of refreshes with rotating refresh tokens,
and logins, logouts and new token files while it serves. Reports the
requests by outcome, the accounts lost, the refreshes and cliproxy's RSS over
time, and exits non-zero unless no account was lost and the final RSS is
within 10 % of its value after the first minute (see docs/benchmarks.md).

Options:
  --minutes N       how long the clients run (default 10; fractions such as
                    0.5 work)
  --accounts N      Qwen OAuth accounts at the start (default 32)
  --connections N   keep-alive client connections (default 8)
  --json            print the report as JSON instead of Markdown
  --keep            keep the work dir (cliproxy's log and config, the auth
                    dir, the fake's log) and print where it is
  --no-build        use the existing target/release/cliproxy and fake-qwen
";

/// Life of the access tokens the fake issues.
const TOKEN_LIFE: Duration = Duration::from_secs(60);
/// cliproxy's `refresh-lead`: with [`TOKEN_LIFE`], each account refreshes
/// about every 35 to 40 s.
const REFRESH_LEAD: &str = "20s";
/// The account files written at the start all expire this long after it,
/// so their first refreshes come together (a storm, 5 to 10 s in).
const FIRST_EXPIRY: Duration = Duration::from_secs(30);
/// Time between the fake retiring a refresh token and its answer leaving.
const REFRESH_LATENCY: Duration = Duration::from_millis(150);
/// Content chunks per streamed answer, and the pause between events.
const STREAM_CHUNKS: usize = 8;
const STREAM_INTERVAL: Duration = Duration::from_millis(10);
/// `Retry-After` of the fake's quota errors.
const QUOTA_RETRY_AFTER_SECS: u64 = 3;
/// How often cliproxy's RSS is read (more often in runs shorter than four times this).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for cliproxy to exit after SIGTERM (its `shutdown-grace` is 30 s).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(45);
/// WARN and ERROR lines of cliproxy's log quoted in the report.
const LOG_LINES_KEPT: usize = 8;

/// The command line of `cargo xtask soak`.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    duration: Duration,
    accounts: usize,
    connections: usize,
    json: bool,
    keep: bool,
    build: bool,
    help: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            duration: Duration::from_secs(600),
            accounts: 32,
            connections: 8,
            json: false,
            keep: false,
            build: true,
            help: false,
        }
    }
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .with_context(|| format!("`{name}` needs a value"))
            };
            match name {
                "--minutes" => {
                    let text = value()?;
                    let minutes: f64 = text
                        .parse()
                        .ok()
                        .filter(|m: &f64| m.is_finite() && *m >= 0.05 && *m <= 24.0 * 60.0)
                        .with_context(|| {
                            format!("--minutes {text:?}: give minutes from 0.05 to 1440, e.g. 0.5")
                        })?;
                    options.duration = Duration::from_secs_f64(minutes * 60.0);
                }
                "--accounts" => {
                    let text = value()?;
                    options.accounts = text
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .with_context(|| {
                            format!("--accounts {text:?}: give a number from 1 to 1000")
                        })?;
                }
                "--connections" => {
                    let text = value()?;
                    options.connections = text
                        .parse()
                        .ok()
                        .filter(|n| (1..=256).contains(n))
                        .with_context(|| {
                            format!("--connections {text:?}: give a number from 1 to 256")
                        })?;
                }
                "--json" => options.json = true,
                "--keep" => options.keep = true,
                "--no-build" => options.build = false,
                "-h" | "--help" => options.help = true,
                other => bail!("unknown option `{other}` for `soak`\n\n{HELP}"),
            }
        }
        Ok(options)
    }

    fn minutes(&self) -> f64 {
        self.duration.as_secs_f64() / 60.0
    }
}

/// The two release binaries the soak runs.
struct Binaries {
    cliproxy: PathBuf,
    fake_qwen: PathBuf,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    if options.help {
        print!("{HELP}");
        return Ok(());
    }
    if options.build {
        eprintln!("building cliproxy and fake-qwen (release) ...");
        run_checked(Command::new(cargo()).current_dir(root).args([
            "build",
            "--release",
            "--locked",
            "-p",
            "cliproxy",
            "-p",
            "fake-qwen",
        ]))?;
    }
    let release = target_dir(root).join("release");
    let binaries = Binaries {
        cliproxy: release.join(format!("cliproxy{}", env::consts::EXE_SUFFIX)),
        fake_qwen: release.join(format!("fake-qwen{}", env::consts::EXE_SUFFIX)),
    };
    for binary in [&binaries.cliproxy, &binaries.fake_qwen] {
        ensure!(
            binary.is_file(),
            "{} does not exist; build it or drop --no-build",
            binary.display()
        );
    }
    let heading = format!(
        "{} UTC, commit {}: {:.2} minutes, {} accounts, {} connections; access tokens live {} s \
         (refresh-lead {REFRESH_LEAD}), refresh answers take {} ms, streams of {STREAM_CHUNKS} \
         chunks {} ms apart",
        rfc3339_utc(unix_now())
            .trim_end_matches('Z')
            .replace('T', " "),
        git_commit(root),
        options.minutes(),
        options.accounts,
        options.connections,
        TOKEN_LIFE.as_secs(),
        REFRESH_LATENCY.as_millis(),
        STREAM_INTERVAL.as_millis(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut report = runtime.block_on(soak(&binaries, &options))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    report.heading = heading;

    if options.json {
        println!("{:#}", report.to_json());
    } else {
        print!("\n{}", report.render());
    }
    if !report.passed() {
        bail!("the soak failed (see the FAIL lines of the verdict)");
    }
    Ok(())
}

/// Sets everything up, runs the clients and the events, and collects the report.
async fn soak(binaries: &Binaries, options: &Options) -> Result<Report> {
    let work = WorkDir::create("cliproxy-soak")?;
    let layout = Layout::create(&work.path().join("serve"))?;
    let fake = FakeProcess::spawn(
        &binaries.fake_qwen,
        &work.path().join("fake-qwen.log"),
        FakeSettings {
            token_life: TOKEN_LIFE,
            refresh_latency: REFRESH_LATENCY,
            stream_chunks: STREAM_CHUNKS,
            stream_interval: STREAM_INTERVAL,
            quota_retry_after_secs: QUOTA_RETRY_AFTER_SECS,
        },
    )
    .await?;

    let mut accounts = Accounts::default();
    let now = unix_now();
    for i in 0..options.accounts {
        let email = format!("soak-{i}@example.com");
        let pair = fake.mint().await?;
        cliproxy::write_token_file(
            &layout.auth_dir,
            &email,
            &pair,
            &fake.chat_base_url,
            now,
            now + FIRST_EXPIRY.as_secs(),
        )?;
        accounts.logged_in(&email, pair.refresh_token);
    }
    let port = net::free_port()?;
    fs::write(&layout.config, config_text(port, &layout.auth_dir))
        .with_context(|| format!("cannot write {}", layout.config.display()))?;
    eprintln!("starting {} ...", binaries.cliproxy.display());
    let mut server = Instance::spawn_with_env(
        &binaries.cliproxy,
        &layout,
        port,
        &[("CLIPROXY_QWEN_OAUTH_BASE_URL", &fake.oauth_base_url)],
    )?;
    server.wait_ready(Probe::Health).await?;
    eprintln!(
        "cliproxy (pid {}) serves {} accounts on {}; soaking for {:.2} minutes ...",
        server.pid(),
        options.accounts,
        server.addr(),
        options.minutes()
    );

    let clients = Clients::new(server.addr());
    let (stop_tx, stop) = watch::channel(false);
    let start = Instant::now();
    let until = start + options.duration;
    let seed = seed_now();
    let workers: Vec<_> = (0..options.connections)
        .map(|i| {
            tokio::spawn(clients.clone().connection(
                until,
                stop.clone(),
                seed.wrapping_add(i as u64 * 1_000_003),
            ))
        })
        .collect();
    let chaos = Chaos {
        fake: &fake,
        clients: clients.clone(),
        binary: &binaries.cliproxy,
        layout: &layout,
        accounts,
        token_life: TOKEN_LIFE,
    };
    let ((chaos_log, accounts), (mut rss, crashed)) = tokio::join!(
        chaos.run(start, until, stop.clone()),
        watch_server(&mut server, &clients, start, until, stop_tx),
    );
    for worker in workers {
        // Each request is bounded by REQUEST_TIMEOUT; this is a hang guard.
        let _ = tokio::time::timeout(traffic::REQUEST_TIMEOUT * 2, worker).await;
    }
    if crashed.is_none()
        && let Some(memory) = cliproxy::memory_of(server.pid())
    {
        rss.push(RssSample {
            at: start.elapsed(),
            rss_kb: memory.rss_kb,
            requests: clients.finished(),
        });
    }

    eprintln!("stopping cliproxy (SIGTERM) ...");
    let stopping = Instant::now();
    let shutdown = match server.terminate(SHUTDOWN_WAIT).await? {
        Some(status) => format!(
            "{} after SIGTERM, {:.2} s later",
            describe_exit(status),
            stopping.elapsed().as_secs_f64()
        ),
        None => format!("still running {SHUTDOWN_WAIT:?} after SIGTERM; killed"),
    };

    let files = accounts::scan(&layout.auth_dir)?;
    let refreshes = fake.report().await?;
    let tokens: Vec<String> = accounts
        .all()
        .iter()
        .flat_map(|a| a.seen.iter().cloned())
        .chain(files.iter().filter_map(|f| f.refresh_token.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lookups: HashMap<String, fake_qwen::Lookup> = tokens
        .iter()
        .cloned()
        .zip(fake.lookup(&tokens).await?)
        .collect();
    let lost = accounts::lost_accounts(&Evidence {
        accounts: &accounts,
        files: &files,
        lookups: &lookups,
        dead: &refreshes.dead,
    });
    let back_after_logout = accounts
        .all()
        .iter()
        .filter(|a| !a.active)
        .filter(|a| accounts::refresh_token_of(&files, &a.email).is_some())
        .map(|a| a.email.clone())
        .collect();

    let (warnings, errors, first_problems) = log_problems(&layout.log);
    let tally = clients.tally();
    let baseline = report::baseline(&rss, options.duration);
    if options.keep {
        let kept = work.keep();
        eprintln!("kept the work dir: {}", kept.display());
    }
    let checks = report::verdict(&VerdictInputs {
        lost: lost.len(),
        baseline,
        final_rss: rss.last().copied(),
        succeeded: tally.total().success,
        crashed: crashed.clone(),
        chaos_failures: chaos_log.failed,
    });
    Ok(Report {
        heading: String::new(),
        minutes: options.minutes(),
        accounts: options.accounts,
        connections: options.connections,
        tally,
        chaos: chaos_log,
        refreshes,
        lost,
        back_after_logout,
        rss,
        baseline,
        server: ServerEnd {
            crashed,
            shutdown,
            warnings,
            errors,
            first_problems,
        },
        checks,
    })
}

/// Reads cliproxy's RSS every [`sample_interval`] until `until`, printing
/// progress; stops everyone early (through `stop`) when cliproxy exits.
/// Returns the samples and how cliproxy ended, if it did.
async fn watch_server(
    server: &mut Instance,
    clients: &Clients,
    start: Instant,
    until: Instant,
    stop: watch::Sender<bool>,
) -> (Vec<RssSample>, Option<String>) {
    let mut samples = Vec::new();
    let every = sample_interval(until - start);
    let mut next = start + every;
    // The final sample is taken once the clients are done.
    while next + every / 2 < until {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        if let Some(status) = server.exit_status() {
            let crashed = format!(
                "{} after {} s; its log ends:\n{}",
                describe_exit(status),
                start.elapsed().as_secs(),
                server.log_tail()
            );
            let _ = stop.send(true);
            return (samples, Some(crashed));
        }
        let Some(memory) = server.memory() else {
            continue;
        };
        let sample = RssSample {
            at: start.elapsed(),
            rss_kb: memory.rss_kb,
            requests: clients.finished(),
        };
        let total = clients.tally().total();
        eprintln!(
            "  [{:>4} s] {} requests: {} ok, {} cancelled on purpose, {} errors; RSS {:.1} MiB",
            sample.at.as_secs(),
            total.requests,
            total.success,
            total.cancelled,
            total.errors,
            memory.rss_kb as f64 / 1024.0
        );
        samples.push(sample);
    }
    (samples, None)
}

/// [`SAMPLE_EVERY`], or a quarter of a shorter run (so that it has a
/// baseline before its final sample).
fn sample_interval(run: Duration) -> Duration {
    SAMPLE_EVERY.min(run / 4).max(Duration::from_millis(100))
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}

/// Counts the WARN and ERROR lines of cliproxy's log and keeps the first
/// distinct ones (by their message, without timestamp and fields).
fn log_problems(log: &Path) -> (u64, u64, Vec<String>) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let (mut warnings, mut errors) = (0, 0);
    let mut seen = BTreeSet::new();
    let mut first = Vec::new();
    for line in text.lines() {
        let level = if line.contains(" WARN ") {
            warnings += 1;
            " WARN "
        } else if line.contains(" ERROR ") {
            errors += 1;
            " ERROR "
        } else {
            continue;
        };
        // The message without its fields (`key=value`, such as a request id).
        let message: Vec<&str> = line
            .split_once(level)
            .map_or(line, |(_, rest)| rest)
            .split(' ')
            .take_while(|word| !word.contains('='))
            .collect();
        if first.len() < LOG_LINES_KEPT && seen.insert(message.join(" ")) {
            first.push(line.to_owned());
        }
    }
    (warnings, errors, first)
}

/// cliproxy's config for the soak: loopback, the client key, the refresh
/// lead, and no per-account request cap (the soak's rate is not a user's).
fn config_text(port: u16, auth_dir: &Path) -> String {
    format!(
        "# Written by `cargo xtask soak`.\n\
         host = \"127.0.0.1\"\n\
         port = {port}\n\
         auth-dir = {auth}\n\
         api-keys = [\"{key}\"]\n\
         refresh-lead = \"{REFRESH_LEAD}\"\n\
         \n\
         [qwen]\n\
         requests-per-minute = 0\n",
        auth = toml_string(&auth_dir.to_string_lossy()),
        key = traffic::API_KEY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        assert_eq!(parse(&[]).unwrap(), Options::default());
        let o = parse(&[
            "--minutes",
            "0.5",
            "--accounts=4",
            "--connections",
            "2",
            "--json",
            "--keep",
            "--no-build",
        ])
        .unwrap();
        assert_eq!(o.duration, Duration::from_secs(30));
        assert_eq!((o.accounts, o.connections), (4, 2));
        assert!(o.json && o.keep && !o.build);
        assert!((o.minutes() - 0.5).abs() < 1e-9);
        for bad in [
            &["--minutes"][..],
            &["--minutes", "0"],
            &["--minutes", "-1"],
            &["--minutes", "NaN"],
            &["--accounts", "0"],
            &["--connections", "x"],
            &["--seconds", "3"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_runs_are_sampled_often_enough_for_a_baseline() {
        let ten = Duration::from_secs(10);
        assert_eq!(sample_interval(Duration::from_secs(600)), ten);
        assert_eq!(sample_interval(Duration::from_secs(40)), ten);
        assert_eq!(
            sample_interval(Duration::from_secs(3)),
            Duration::from_millis(750)
        );
        // A 30 s run: samples at 7.5, 15 and 22.5 s and the final one; the baseline is at 15 s.
        assert_eq!(
            sample_interval(Duration::from_secs(30)),
            Duration::from_millis(7500)
        );
    }

    #[test]
    fn config_is_loopback_with_a_key_and_no_request_cap() {
        let text = config_text(5000, Path::new("/tmp/a \"b\""));
        assert!(text.contains("host = \"127.0.0.1\"\n"));
        assert!(text.contains("port = 5000\n"));
        assert!(text.contains("auth-dir = \"/tmp/a \\\"b\\\"\"\n"));
        assert!(text.contains("api-keys = [\"soak-key\"]\n"));
        assert!(text.contains("refresh-lead = \"20s\"\n"));
        assert!(text.ends_with("[qwen]\nrequests-per-minute = 0\n"));
    }

    #[test]
    fn log_problems_are_counted_and_repeats_quoted_once() {
        let path = env::temp_dir().join(format!("xtask-soak-log-{}", std::process::id()));
        fs::write(
            &path,
            "2026-01-01T00:00:00Z  INFO listening\n\
             2026-01-01T00:00:01Z  WARN refresh failed request_id=1 account=a\n\
             2026-01-01T00:00:02Z  WARN refresh failed request_id=2 account=b\n\
             2026-01-01T00:00:03Z ERROR token not saved\n",
        )
        .unwrap();
        let (warnings, errors, first) = log_problems(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!((warnings, errors), (2, 1));
        assert_eq!(
            first,
            [
                "2026-01-01T00:00:01Z  WARN refresh failed request_id=1 account=a",
                "2026-01-01T00:00:03Z ERROR token not saved"
            ]
        );
    }
}
