//! `cargo xtask bench`: measures cliproxy's overhead as a proxy, on loopback
//! only, against a baseline measured in the same run.
//!
//! One run builds `cliproxy` in release mode, starts an in-process upstream
//! stub ([`stub`]) and a do-nothing pass-through proxy ([`baseline`]; once
//! in-process, once in a child process of its own), starts
//! `cliproxy serve` in front of the stub ([`cliproxy`]), and drives all three
//! with the in-process load generator ([`load`]): non-streaming and streaming
//! chat completions, at one connection (latency) and at many (throughput).
//! It then holds [`report::OPEN_STREAMS`] streams open through cliproxy to
//! read its memory, times its start-up with 0 and 1,000 account files, sends
//! many large bodies at once to fresh instances for their peak memory
//! ([`bodies`]), and prints the tables and the budget ([`report`]). Last, it measures the
//! credential pool's cost of one pick per strategy at 10 to 1,000 credentials ([`pool`]);
//! `--pool` runs that part alone.
//!
//! Every phase is bounded in time, every address is 127.0.0.1, and every
//! child process is killed when the run ends, fails or panics.

mod baseline;
mod bodies;
pub(crate) mod cliproxy;
mod external;
pub(crate) mod fake_qwen;
mod ledger;
pub(crate) mod load;
pub(crate) mod net;
mod pool;
mod refresh_window;
mod report;
mod stub;
mod summary;

use std::{
    env, fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};

use self::{
    baseline::Baseline,
    cliproxy::{Instance, Layout, Probe, Upstream},
    load::{Plan, Target},
    report::UNRECORDED,
    report::{HeldStreams, OPEN_STREAMS, Results, Row, Startup},
    stub::Stub,
};
use crate::{
    cmd::{cargo, run_checked},
    dist::target_dir,
};

pub(crate) const HELP: &str = "\
cargo xtask bench [--duration SECS] [--concurrency N] [--quick] [--check] [--no-build]
cargo xtask bench --pool [--quick]
cargo xtask bench --ledger [--pairs N] [--quick] [--check] [--no-build]

Measures cliproxy against an in-process upstream stub, next to a do-nothing
pass-through proxy as the baseline, all on 127.0.0.1, and prints the results
and the budget (see docs/benchmarks.md).

Options:
  --duration SECS   measured time per scenario and target (default 5), in
                    3 rounds that take turns across the targets, each after
                    a warm-up (a fifth of the time in all, 0.2 s to 1 s)
  --concurrency N   connections of the throughput scenarios (default 32)
  --quick           1 s per scenario: a smoke run
  --check           exit non-zero when a budget line fails
  --no-build        use the existing target/release/cliproxy
  --pool            only the credential pool's selection cost per strategy
                    at 10, 100 and 1,000 credentials (credential-pool's
                    select_cost example, ~1 min; ~10 s with --quick)
  --ledger          only the usage ledger's cost: cliproxy with and without
                    it in 48 paired rounds per kind of request, over 8
                    fresh starts of both servers (~2 min)
  --pairs N         paired rounds of the ledger's measurement (default 48);
                    more pairs narrow the median's 95 % interval
";

/// Each scenario's time is split into this many rounds that take turns
/// across the targets, so that a slow spell of the shared machine, or a
/// lucky or unlucky placement of threads on the cores, does not fall on one
/// target only. The rounds' samples are pooled.
const ROUNDS: u32 = 3;
/// Pairs of rounds of the usage ledger's measurement ([`ledger`]), and the length of each.
const LEDGER_PAIRS: usize = 48;
const LEDGER_ROUND: Duration = Duration::from_millis(500);
const LEDGER_PAIRS_QUICK: usize = 4;
const LEDGER_ROUND_QUICK: Duration = Duration::from_millis(200);
/// Fresh starts of both servers the ledger's pairs are shared out among: two identical
/// processes can differ by a few percent for their whole lives, so the more starts, the less
/// one unlucky pair of processes weighs.
const LEDGER_STARTS: usize = 8;
/// Account files of the start-up measurement.
const STARTUP_ACCOUNTS: usize = 1000;
/// Qwen accounts of the `cliproxy-qwen` target, as many as the API keys of `cliproxy`.
const QWEN_ACCOUNTS: usize = 4;
/// Start-up runs per account count.
const STARTUP_RUNS: usize = 3;
/// Longest wait for all held streams to get their first event.
const OPEN_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for the held streams to end after the release.
const FINISH_WAIT: Duration = Duration::from_secs(30);

/// The command line of `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    measure: Duration,
    concurrency: usize,
    check: bool,
    build: bool,
    help: bool,
    /// `--quick` was given.
    quick: bool,
    /// Only the pool's selection cost.
    pool_only: bool,
    /// Only the usage ledger's paired rounds.
    ledger_only: bool,
    /// Pairs of the ledger's rounds, when `--pairs` sets them.
    pairs: Option<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            measure: Duration::from_secs(5),
            concurrency: 32,
            check: false,
            build: true,
            help: false,
            quick: false,
            pool_only: false,
            ledger_only: false,
            pairs: None,
        }
    }
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options::default();
        let mut duration = None;
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
                "--duration" => {
                    let text = value()?;
                    let secs: f64 = text
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 600.0)
                        .with_context(|| {
                            format!("--duration {text:?}: give seconds between 0 and 600")
                        })?;
                    duration = Some(Duration::from_secs_f64(secs));
                }
                "--concurrency" => {
                    let text = value()?;
                    options.concurrency = text
                        .parse()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .with_context(|| {
                            format!("--concurrency {text:?}: give a number from 1 to 1024")
                        })?;
                }
                "--pairs" => {
                    let text = value()?;
                    options.pairs = Some(
                        text.parse()
                            .ok()
                            .filter(|n| (1..=1000).contains(n))
                            .with_context(|| {
                                format!("--pairs {text:?}: give a number from 1 to 1000")
                            })?,
                    );
                }
                "--quick" => options.quick = true,
                "--pool" => options.pool_only = true,
                "--ledger" => options.ledger_only = true,
                "--check" => options.check = true,
                "--no-build" => options.build = false,
                "-h" | "--help" => options.help = true,
                other => bail!("unknown option `{other}` for `bench`\n\n{HELP}"),
            }
        }
        options.measure = match (duration, options.quick) {
            (Some(duration), _) => duration,
            (None, true) => Duration::from_secs(1),
            (None, false) => options.measure,
        };
        Ok(options)
    }

    /// Warm-up before each measured period: a fifth of it, 0.2 s to 1 s.
    fn warmup(&self) -> Duration {
        (self.measure / 5).clamp(Duration::from_millis(200), Duration::from_secs(1))
    }
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    if let [flag, upstream] = args
        && flag == "--serve-baseline"
    {
        return baseline::serve_process(upstream);
    }
    let options = Options::parse(args)?;
    if options.help {
        print!("{HELP}");
        return Ok(());
    }
    if options.pool_only {
        // Cargo builds the example optimised; xtask itself only waits.
        println!("\n## cargo xtask bench --pool\n");
        println!("{}\n", pool_facts(root));
        print!("{}", pool::selection_cost(root, options.quick)?);
        return Ok(());
    }
    if cfg!(debug_assertions) {
        // `cargo xtask` builds xtask unoptimised; the stub, the baseline and
        // the load generator must not be the bottleneck, so run them from
        // an optimised build of xtask instead.
        println!("re-running the benchmark from a release build of xtask ...");
        let status = Command::new(cargo())
            .current_dir(root)
            .args(["run", "--release", "--quiet", "-p", "xtask", "--", "bench"])
            .args(args)
            .status()
            .context("cannot run cargo")?;
        std::process::exit(status.code().unwrap_or(1));
    }
    if options.build {
        println!("building cliproxy and fake-qwen (release) ...");
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if options.ledger_only {
        let costs = runtime.block_on(measure_ledger(&binaries.cliproxy, &options))?;
        runtime.shutdown_timeout(Duration::from_secs(1));
        println!("\n## cargo xtask bench --ledger\n");
        println!("{}\n", machine_facts(root, &options));
        let checks = report::ledger_checks(&costs, options.concurrency);
        for check in &checks {
            println!("{check}");
        }
        if options.check && checks.iter().any(|check| check.pass == Some(false)) {
            bail!("the usage ledger is over budget (see the FAIL lines above)");
        }
        return Ok(());
    }
    let results = runtime.block_on(measure(&binaries, &options))?;
    runtime.shutdown_timeout(Duration::from_secs(1));

    println!("\n## cargo xtask bench\n");
    println!("{}\n", machine_facts(root, &options));
    print!("{}", results.render());
    match pool::selection_cost(root, options.quick) {
        Ok(tables) => print!("\n{tables}"),
        Err(error) => println!("\nThe credential selection benchmark failed: {error:#}"),
    }
    if options.check && !results.passed() {
        bail!("cliproxy is over budget (see the FAIL lines above)");
    }
    Ok(())
}

/// The release binaries a run uses.
struct Binaries {
    cliproxy: PathBuf,
    fake_qwen: PathBuf,
}

/// cliproxy with and without the usage ledger, started afresh [`LEDGER_STARTS`] times (the
/// pairs shared out among them, the one started first alternating): two identical servers
/// differ by a few percent for the life of their processes (memory placement, which core their
/// threads favour), which one pair of processes would carry into every round.
async fn measure_ledger(binary: &Path, options: &Options) -> Result<Vec<ledger::LedgerCost>> {
    let work = WorkDir::create("cliproxy-bench-ledger")?;
    let stub = Stub::start().await?;
    let (pairs, each) = ledger_rounds(options);
    let starts = LEDGER_STARTS.clamp(1, pairs);
    eprintln!(
        "  the usage ledger: {pairs} pairs of {each:?} rounds, with and without, over {starts} starts of both ..."
    );
    let mut costs: Vec<ledger::LedgerCost> = Vec::new();
    let mut pairs_done = 0;
    for start in 0..starts {
        let mut kinds = [("cliproxy", ""), (UNRECORDED, "usage-db = \"off\"\n")];
        if start % 2 == 1 {
            kinds.reverse();
        }
        let mut servers = Vec::new();
        for (name, extra) in kinds {
            let layout = Layout::create(&work.path().join(format!("{name}-{start}")))?;
            let port = net::free_port()?;
            layout.write_config_with(port, stub.addr(), Upstream::ApiKeys, extra)?;
            let mut instance = Instance::spawn(binary, &layout, port)?;
            instance.wait_ready(Probe::Health).await?;
            let target = Target {
                name,
                addr: instance.addr(),
            };
            for stream in [false, true] {
                load::once(target, stream).await.map_err(|error| {
                    anyhow::anyhow!("{name} does not serve: {error}\n{}", instance.log_tail())
                })?;
            }
            servers.push((
                ledger::Server {
                    target,
                    pid: instance.pid(),
                },
                instance,
                layout,
            ));
        }
        if start % 2 == 1 {
            servers.reverse();
        }
        let share = pairs / starts + usize::from(start < pairs % starts);
        let measured = ledger::measure(
            servers[0].0,
            servers[1].0,
            options.concurrency,
            pairs_done..pairs_done + share,
            each,
        )
        .await;
        pairs_done += share;
        for (_, instance, _) in &servers {
            for line in instance.log_problems() {
                eprintln!("cliproxy logged: {line}");
            }
        }
        if costs.is_empty() {
            costs = measured;
        } else {
            for (total, more) in costs.iter_mut().zip(measured) {
                total.merge(more);
            }
        }
    }
    Ok(costs)
}

/// Pairs of rounds of the [`ledger`] phase, and the length of each.
fn ledger_rounds(options: &Options) -> (usize, Duration) {
    let (pairs, each) = if options.quick {
        (LEDGER_PAIRS_QUICK, LEDGER_ROUND_QUICK)
    } else {
        (LEDGER_PAIRS, LEDGER_ROUND)
    };
    (options.pairs.unwrap_or(pairs), each)
}

/// Runs every phase and collects the results.
async fn measure(binaries: &Binaries, options: &Options) -> Result<Results> {
    let binary = binaries.cliproxy.as_path();
    let work = WorkDir::create("cliproxy-bench")?;
    let stub = Stub::start().await?;
    let baseline = Baseline::start(stub.addr()).await?;
    let baseline_proc = baseline::BaselineProcess::spawn(stub.addr())?;

    let layout = Layout::create(&work.path().join("serve"))?;
    let port = net::free_port()?;
    layout.write_config(port, stub.addr(), Upstream::ApiKeys)?;
    eprintln!("starting {} ...", binary.display());
    let mut proxy = Instance::spawn(binary, &layout, port)?;
    let ready = proxy.wait_ready(Probe::Health).await?;
    eprintln!(
        "cliproxy (pid {}) answers /healthz on {} after {}",
        proxy.pid(),
        proxy.addr(),
        report::fmt_duration(ready)
    );
    let qwen_layout = Layout::create(&work.path().join("serve-qwen"))?;
    qwen_layout.write_qwen_accounts(QWEN_ACCOUNTS, stub.addr())?;
    let qwen_port = net::free_port()?;
    qwen_layout.write_config(qwen_port, stub.addr(), Upstream::QwenAccounts)?;
    let mut qwen_proxy = Instance::spawn(binary, &qwen_layout, qwen_port)?;
    qwen_proxy.wait_ready(Probe::Health).await?;
    // The same as `cliproxy` with the usage ledger off: what recording usage costs.
    let unrecorded_layout = Layout::create(&work.path().join("serve-unrecorded"))?;
    let unrecorded_port = net::free_port()?;
    unrecorded_layout.write_config_with(
        unrecorded_port,
        stub.addr(),
        Upstream::ApiKeys,
        "usage-db = \"off\"\n",
    )?;
    let mut unrecorded_proxy = Instance::spawn(binary, &unrecorded_layout, unrecorded_port)?;
    unrecorded_proxy.wait_ready(Probe::Health).await?;
    let targets = [
        Target {
            name: "direct",
            addr: stub.addr(),
        },
        Target {
            name: "baseline",
            addr: baseline.addr(),
        },
        Target {
            name: "baseline-proc",
            addr: baseline_proc.addr(),
        },
        Target {
            name: "cliproxy",
            addr: proxy.addr(),
        },
        Target {
            name: "cliproxy-qwen",
            addr: qwen_proxy.addr(),
        },
        Target {
            name: UNRECORDED,
            addr: unrecorded_proxy.addr(),
        },
    ];
    for target in targets {
        for stream in [false, true] {
            if let Err(error) = load::once(target, stream).await {
                let log = match target.name {
                    "cliproxy" => format!("\ncliproxy's log:\n{}", proxy.log_tail()),
                    "cliproxy-qwen" => format!("\ncliproxy's log:\n{}", qwen_proxy.log_tail()),
                    UNRECORDED => format!("\ncliproxy's log:\n{}", unrecorded_proxy.log_tail()),
                    _ => String::new(),
                };
                bail!(
                    "{} does not serve a {} chat completion: {error}{log}",
                    target.name,
                    if stream { "streaming" } else { "non-streaming" },
                );
            }
        }
    }

    let mut results = Results {
        concurrency: options.concurrency,
        rss_idle_kb: proxy.memory().map(|m| m.rss_kb),
        ..Results::default()
    };
    let mut levels = vec![1, options.concurrency];
    levels.dedup();
    for stream in [false, true] {
        for &concurrency in &levels {
            eprintln!(
                "  {} x{concurrency}: {ROUNDS} rounds over {} ...",
                if stream { "stream" } else { "non-stream" },
                targets.map(|t| t.name).join(", ")
            );
            let mut outcomes: Vec<load::Outcome> = vec![load::Outcome::default(); targets.len()];
            for _ in 0..ROUNDS {
                for (target, total) in targets.iter().zip(&mut outcomes) {
                    let plan = Plan {
                        stream,
                        concurrency,
                        warmup: options.warmup() / ROUNDS,
                        measure: options.measure / ROUNDS,
                    };
                    total.merge(load::run(*target, plan).await);
                }
            }
            for (target, mut outcome) in targets.iter().zip(outcomes) {
                outcome.summarise();
                results.rows.push(Row {
                    stream,
                    concurrency,
                    target: target.name,
                    outcome,
                });
            }
        }
    }

    results.ledger = measure_ledger(binary, options).await?;

    results.external = external::measure(
        &targets[1..],
        options.concurrency,
        options.measure,
        work.path(),
    )
    .await;

    eprintln!("  {OPEN_STREAMS} streams held open -> cliproxy ...");
    results.held = hold_streams(&stub, targets[3], &proxy).await;
    results.peak_rss_kb = proxy.memory().map(|m| m.hwm_kb);
    for line in proxy
        .log_problems()
        .into_iter()
        .chain(qwen_proxy.log_problems())
        .chain(unrecorded_proxy.log_problems())
    {
        eprintln!("cliproxy logged: {line}");
    }
    drop(proxy);
    drop(qwen_proxy);
    drop(unrecorded_proxy);

    for accounts in [0, STARTUP_ACCOUNTS] {
        eprintln!("  start-up with {accounts} account files ...");
        results
            .startup
            .push(startup(binary, work.path(), stub.addr(), accounts).await);
    }
    for shape in [bodies::Shape::Chat, bodies::Shape::Messages] {
        for budget in [None, bodies::unbounded()] {
            eprintln!(
                "  {} × {} MiB {shape:?} bodies at once -> a fresh cliproxy{} ...",
                bodies::BODY_CLIENTS,
                bodies::BODY_BYTES >> 20,
                if budget.is_some() {
                    " without the body memory bound"
                } else {
                    ""
                }
            );
            results.large_bodies.push(
                bodies::measure(binary, work.path(), stub.addr(), shape, budget)
                    .await
                    .unwrap_or_else(|error| bodies::LargeBodies::failed(shape, budget, &error)),
            );
        }
    }
    eprintln!(
        "  {} refresh storms of {} accounts -> a fresh cliproxy each ...",
        refresh_window::STORMS,
        refresh_window::STORM_ACCOUNTS
    );
    results.refresh_window =
        refresh_window::measure(binary, &binaries.fake_qwen, work.path()).await;
    results.unexpected = stub.unexpected();
    eprintln!("the stub answered {} chat requests", stub.chat_requests());
    Ok(results)
}

/// Opens [`OPEN_STREAMS`] streams through cliproxy that the stub holds
/// after their first event, reads cliproxy's memory, then lets them end.
async fn hold_streams(stub: &Stub, target: Target, proxy: &Instance) -> HeldStreams {
    let gate = stub.hold();
    let open = load::open_streams(target, OPEN_STREAMS, OPEN_WAIT).await;
    // The stub counts a stream once its first event is written, so this is
    // normally true at once.
    for _ in 0..100 {
        if stub.held() >= open.opened {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held_upstream = stub.held();
    let rss_kb = proxy.memory().map(|m| m.rss_kb);
    let opened = open.opened;
    let mut errors = open.errors.clone();
    gate.release();
    let (completed, finish_errors) = open.finish(FINISH_WAIT).await;
    for error in finish_errors {
        if !errors.contains(&error) {
            errors.push(error);
        }
    }
    HeldStreams {
        opened,
        held_upstream,
        rss_kb,
        completed,
        errors,
    }
}

/// Times [`STARTUP_RUNS`] start-ups with `accounts` Qwen token files.
async fn startup(binary: &Path, work: &Path, stub: SocketAddr, accounts: usize) -> Startup {
    let mut result = Startup {
        accounts,
        runs: Vec::new(),
        error: None,
    };
    if let Err(error) = startup_runs(binary, work, stub, &mut result).await {
        result.error = Some(format!("{error:#}"));
    }
    result
}

async fn startup_runs(
    binary: &Path,
    work: &Path,
    stub: SocketAddr,
    result: &mut Startup,
) -> Result<()> {
    let layout = Layout::create(&work.join(format!("startup-{}", result.accounts)))?;
    layout.write_qwen_accounts(result.accounts, stub)?;
    for _ in 0..STARTUP_RUNS {
        let port = net::free_port()?;
        layout.write_config(port, stub, Upstream::ApiKeys)?;
        let mut instance = Instance::spawn(binary, &layout, port)?;
        result.runs.push(instance.wait_ready(Probe::Models).await?);
    }
    Ok(())
}

/// A scratch directory under the system temp dir, removed on drop.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    /// Creates `$TMPDIR/<prefix>-<pid>-<nanos>`.
    pub(crate) fn create(prefix: &str) -> Result<WorkDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Keeps the directory and its files after the run; returns its path.
    pub(crate) fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// The short hash of the checked-out commit, or `unknown`.
pub(crate) fn git_commit(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or("unknown".to_owned(), |out| {
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
}

/// Date, commit and CPU of a `--pool` run, for the record.
fn pool_facts(root: &Path) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{} UTC, commit {}, {} CPUs ({})",
        cliproxy::rfc3339_utc(now)
            .trim_end_matches('Z')
            .replace('T', " "),
        git_commit(root),
        std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model()
    )
}

/// The CPU's model name from /proc/cpuinfo.
fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Date, commit, CPU and options of this run, for the record.
fn machine_facts(root: &Path, options: &Options) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let commit = git_commit(root);
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = cpu_model();
    let plan = if options.ledger_only {
        let (pairs, each) = ledger_rounds(options);
        format!(
            "{pairs} pairs of {} ms rounds per kind of request",
            each.as_millis()
        )
    } else {
        format!(
            "{} s measured per scenario and target in {ROUNDS} rounds, {} ms warm-up in all",
            options.measure.as_secs_f64(),
            options.warmup().as_millis(),
        )
    };
    format!(
        "{} UTC, commit {commit}, {cpus} CPUs ({model}); {plan}; throughput at {} connections",
        cliproxy::rfc3339_utc(now)
            .trim_end_matches('Z')
            .replace('T', " "),
        options.concurrency
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
            "--duration",
            "2.5",
            "--concurrency=8",
            "--check",
            "--no-build",
        ])
        .unwrap();
        assert_eq!(o.measure, Duration::from_millis(2500));
        assert_eq!(o.concurrency, 8);
        assert!(o.check && !o.build);
        assert_eq!(parse(&["--quick"]).unwrap().measure, Duration::from_secs(1));
        assert_eq!(
            parse(&["--quick", "--duration", "3"]).unwrap().measure,
            Duration::from_secs(3)
        );
        assert!(parse(&["--duration"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        let pool = parse(&["--pool", "--quick"]).unwrap();
        assert!(pool.pool_only && pool.quick);
        assert!(!parse(&[]).unwrap().pool_only);
        let ledger = parse(&["--ledger", "--quick"]).unwrap();
        assert!(ledger.ledger_only && !ledger.pool_only);
        assert_eq!(
            ledger_rounds(&ledger),
            (LEDGER_PAIRS_QUICK, LEDGER_ROUND_QUICK)
        );
        assert_eq!(
            ledger_rounds(&parse(&["--ledger"]).unwrap()),
            (LEDGER_PAIRS, LEDGER_ROUND)
        );
        assert_eq!(
            ledger_rounds(&parse(&["--ledger", "--pairs", "40"]).unwrap()),
            (40, LEDGER_ROUND)
        );
        assert!(parse(&["--pairs", "0"]).is_err());
    }

    #[test]
    fn warmup_is_bounded() {
        let with = |secs| Options {
            measure: Duration::from_secs(secs),
            ..Options::default()
        };
        assert_eq!(with(1).warmup(), Duration::from_millis(200));
        assert_eq!(with(3).warmup(), Duration::from_millis(600));
        assert_eq!(with(60).warmup(), Duration::from_secs(1));
    }
}

/// The stub, the baseline and the load generator against each other (no
/// cliproxy needed): short, bounded runs on loopback.
#[cfg(test)]
mod loopback_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_through_baseline_has_no_errors() {
        let stub = Stub::start().await.unwrap();
        let baseline = Baseline::start(stub.addr()).await.unwrap();
        for target in [
            Target {
                name: "direct",
                addr: stub.addr(),
            },
            Target {
                name: "baseline",
                addr: baseline.addr(),
            },
        ] {
            for stream in [false, true] {
                load::once(target, stream).await.unwrap();
                let plan = Plan {
                    stream,
                    concurrency: 4,
                    warmup: Duration::from_millis(50),
                    measure: Duration::from_millis(200),
                };
                let outcome = load::run(target, plan).await;
                assert_eq!(
                    outcome.errors, 0,
                    "{}: {:?}",
                    target.name, outcome.error_samples
                );
                assert!(outcome.requests > 0, "{}", target.name);
                let latency = outcome.latency.unwrap();
                assert_eq!(latency.count as u64, outcome.requests);
                assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
                assert_eq!(outcome.ttfb.is_some(), stream);
            }
        }
        assert!(stub.chat_requests() > 0);
        assert_eq!(stub.unexpected().0, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_streams_stay_open_until_released() {
        let stub = Stub::start().await.unwrap();
        let baseline = Baseline::start(stub.addr()).await.unwrap();
        let target = Target {
            name: "baseline",
            addr: baseline.addr(),
        };
        let gate = stub.hold();
        let open = load::open_streams(target, 16, Duration::from_secs(10)).await;
        assert_eq!(open.opened, 16, "{:?}", open.errors);
        assert_eq!(stub.held(), 16);
        gate.release();
        let (complete, errors) = open.finish(Duration::from_secs(10)).await;
        assert_eq!(complete, 16, "{errors:?}");
        assert_eq!(stub.held(), 0);
        // Without a gate, streams run through at once.
        load::once(target, true).await.unwrap();
    }

    #[tokio::test]
    async fn a_dead_target_counts_errors_and_stops() {
        let port = net::free_port().unwrap();
        let target = Target {
            name: "nobody",
            addr: SocketAddr::from((net::LOOPBACK, port)),
        };
        let plan = Plan {
            stream: false,
            concurrency: 2,
            warmup: Duration::ZERO,
            measure: Duration::from_millis(100),
        };
        let outcome = load::run(target, plan).await;
        assert_eq!(outcome.requests, 0);
        assert!(outcome.errors > 0);
        assert!(!outcome.error_samples.is_empty());
        assert!(load::once(target, false).await.is_err());
    }
}
