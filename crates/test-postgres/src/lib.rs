//! Test support: a throwaway PostgreSQL cluster per test binary, and a fresh database per test.
//!
//! The cluster is made with Debian's binaries (`/usr/lib/postgresql/*/bin`, newest first, or
//! `initdb` on `PATH`): `initdb` into a temporary dir, then `pg_ctl start` on a free loopback
//! port with its socket in that dir. Run as root, the cluster runs as the unprivileged
//! `postgres` (or `nobody`) user, since PostgreSQL refuses to run as root.
//!
//! The cluster outlives no test binary: a watchdog child holds a pipe from the test process
//! and, when that process ends (however it ends) or the [`Cluster`] is dropped, stops the
//! cluster and removes its dir. A test that stops the server takes a [`Cluster::private`] one.
//!
//! Without PostgreSQL, [`database`] prints why and returns `None`, and the test skips; with
//! `CLIPROXY_REQUIRE_POSTGRES_TESTS=1` (as CI sets it) it panics instead.

use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The environment variable that turns a missing PostgreSQL from a skip into a failure.
pub const REQUIRE_VAR: &str = "CLIPROXY_REQUIRE_POSTGRES_TESTS";

/// The superuser of the test cluster (trusted: no password, loopback and socket only).
const SUPERUSER: &str = "cliproxy_test";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// The user the cluster runs as, when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// Holds the watchdog's stdin open: when this process ends, the pipe closes and the
    /// watchdog stops the cluster.
    _watchdog: Mutex<Child>,
}

impl Cluster {
    /// The cluster of this test binary, started on first use; `Err` says why there is none.
    pub fn get() -> Result<&'static Cluster, String> {
        static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
        CLUSTER
            .get_or_init(Cluster::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A cluster of the caller's own, for a test that stops and starts it (which would break
    /// the connections of every other test on the shared one); `None` (after printing why)
    /// when there is no PostgreSQL here. Dropping it stops the cluster and removes its dir.
    ///
    /// # Panics
    /// When there is no PostgreSQL and [`REQUIRE_VAR`] is `1`.
    pub fn private() -> Option<Cluster> {
        Cluster::start()
            .map_err(|reason| skip_or_fail(&reason))
            .ok()
    }

    /// A fresh, empty database on this cluster, and its URL.
    pub async fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|error| panic!("cannot connect to the test cluster: {error}"));
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        drop(client);
        let _ = driver.await;
        self.url(&name)
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the cluster (fast shutdown: connections are closed), for tests of a database
    /// that goes away.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"])
    }

    /// Starts the cluster again after [`Cluster::stop`].
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.data.display(),
            self.port
        );
        let log = self.data.join("server.log");
        self.pg_ctl(&["start", "-w", "-l", &log.to_string_lossy(), "-o", &options])
    }

    fn start() -> Result<Cluster, String> {
        let bin = find_binaries()?;
        let run_as = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let root = tempfile::Builder::new()
            .prefix("cliproxy-pg-")
            .tempdir()
            .map_err(|error| format!("cannot make a temporary dir: {error}"))?
            .keep();
        let data = root.join("data");
        std::fs::create_dir(&data).map_err(|error| format!("cannot make {data:?}: {error}"))?;
        if let Some((uid, gid)) = run_as {
            for dir in [&root, &data] {
                chown(dir, Some(uid), Some(gid))
                    .map_err(|error| format!("cannot hand {dir:?} to uid {uid}: {error}"))?;
            }
        }
        let watchdog = watchdog(&bin, &root, &data, run_as)?;
        let port = free_port()?;
        let cluster = Cluster {
            port,
            bin,
            data,
            run_as,
            _watchdog: Mutex::new(watchdog),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.to_string_lossy(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-D", self.data.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new(self.bin.join(program));
        command
            .args(args)
            .current_dir(&self.data)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        let output = command
            .output()
            .map_err(|error| format!("cannot run {program}: {error}"))?;
        if output.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        Err(format!(
            "{program} {args:?} failed ({}): {}{}\n{log}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A fresh, empty database on this binary's cluster, and its URL; `None` (after printing why)
/// when there is no PostgreSQL here and the tests may skip.
///
/// # Panics
/// When there is no PostgreSQL and [`REQUIRE_VAR`] is `1`.
pub async fn database() -> Option<String> {
    match Cluster::get() {
        Ok(cluster) => Some(cluster.database().await),
        Err(reason) => {
            skip_or_fail(&reason);
            None
        }
    }
}

/// Prints why the PostgreSQL tests skip, or panics when they are required.
pub fn skip_or_fail(reason: &str) {
    if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
        panic!("{REQUIRE_VAR}=1 but there is no PostgreSQL to test against: {reason}");
    }
    eprintln!("skipping a PostgreSQL test: {reason} (install Debian's postgresql to run it)");
}

/// The directory of `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/*/bin`, or the
/// one `initdb` on `PATH` is in.
fn find_binaries() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin or on PATH".to_owned())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(false)
}

/// The uid and gid of `postgres`, or else `nobody`, from `/etc/passwd`.
fn unprivileged_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|error| format!("cannot read /etc/passwd: {error}"))?;
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    find("postgres").or_else(|| find("nobody")).ok_or_else(|| {
        "running as root, and there is no postgres or nobody user to run PostgreSQL as".to_owned()
    })
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| format!("no free loopback port: {error}"))
}

/// A shell that waits for its stdin to close (this process ended), then stops the cluster and
/// removes its dir.
fn watchdog(
    bin: &Path,
    root: &Path,
    data: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<Child, String> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"cat >/dev/null; "$1" stop -D "$2" -m immediate -w >/dev/null 2>&1; rm -rf "$3""#)
        .arg("watchdog")
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    command
        .spawn()
        .map_err(|error| format!("cannot start the cluster's watchdog: {error}"))
}
