//! A real PostgreSQL server for the tests of the `postgres` feature: a fresh cluster made
//! with `initdb` in a temporary directory under `target/pg-tests/`, started with `pg_ctl`
//! on a free port of 127.0.0.1, stopped and removed when dropped.
//!
//! The binaries come from the Debian `postgresql` package (`/usr/lib/postgresql/N/bin`,
//! installed by `scripts/setup-postgres.sh`, which `scripts/test.sh` runs), or from the
//! `PG_BINDIR` environment variable. PostgreSQL refuses to run as root, so when the tests
//! run as root (as CI does) the cluster belongs to the `postgres` user and its commands
//! run through `runuser`. A missing installation fails the test and says how to install
//! it; no test skips. The `sdk` crate's tests include this file too (`#[path]`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root: the parent of the crate whose tests include this file (the
/// `tests` crate, or `sdk`, which includes it with `#[path]`).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// A running PostgreSQL cluster.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `postgres://rmcp@127.0.0.1:PORT/postgres`.
    pub url: String,
}

/// The directory of `initdb` and `pg_ctl`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no PG_BINDIR): run scripts/setup-postgres.sh, or `apt-get install postgresql`"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command running `program`, as `postgres` when the tests run as root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `program args`, failing the test with its output.
fn run(program: &Path, args: &[&str]) {
    let output = command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}\n{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh directory under `parent` for a cluster, owned by `postgres` when root.
fn cluster_dir(parent: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pg-")
        .tempdir_in(parent)
        .unwrap_or_else(|e| panic!("a temporary directory under {}: {e}", parent.display()));
    if is_root() {
        let uid = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .expect("a `postgres` user (the postgresql package creates it)");
        std::os::unix::fs::chown(dir.path(), Some(uid), None).expect("chown to postgres");
    }
    dir
}

/// Whether the `postgres` user can write in `dir` (every directory above it must let it
/// through).
fn postgres_can_write(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl TestPostgres {
    /// Makes and starts a cluster; its superuser is `rmcp`, trusted on 127.0.0.1.
    pub fn start() -> TestPostgres {
        let bin = bin_dir();
        let parent = repo_root().join("target/pg-tests");
        std::fs::create_dir_all(&parent).expect("create target/pg-tests");
        let mut dir = cluster_dir(&parent);
        if is_root() && !postgres_can_write(dir.path()) {
            // The checkout is somewhere the `postgres` user cannot reach (under /root,
            // say): use the system's temporary directory instead.
            dir = cluster_dir(&std::env::temp_dir());
            assert!(
                postgres_can_write(dir.path()),
                "the postgres user cannot write {}",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-A",
                "trust",
                "-U",
                "rmcp",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = free_port();
        let pg = TestPostgres {
            port,
            url: format!("postgres://rmcp@127.0.0.1:{port}/postgres"),
            bin,
            dir,
        };
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300",
            self.port
        );
        let log = self.dir.path().join("log").display().to_string();
        run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn kill(&self) {
        run(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Stops the server cleanly but without waiting for clients (`-m fast`): sessions are
    /// ended, committed work is flushed, as in a planned restart.
    pub fn stop(&self) {
        run(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts it again after [`TestPostgres::kill`] or [`TestPostgres::stop`] (same
    /// port, same data).
    pub fn restart(&self) {
        self.start_server();
    }

    /// A durable auditor writing chain `chain` of this cluster (the schema migrated).
    pub fn durable_auditor(&self, chain: &str) -> rmcp_authz::audit::Auditor {
        let database = rmcp_authz::postgres::Database::parse(&self.url).expect("the cluster's URL");
        let sink = rmcp_authz::postgres::PostgresSink::builder(database, chain)
            .migrate(true)
            .connect()
            .expect("connect the sink");
        rmcp_authz::audit::Auditor::builder(std::sync::Arc::new(sink))
            .durability(rmcp_authz::audit::Durability::Durable)
            .build()
            .expect("start the auditor")
    }

    /// Runs `sql` with `psql`, returning its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([
                &self.url,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// Records `events` through `auditor`, one after another, each acknowledged.
pub async fn record_all(
    auditor: &rmcp_authz::audit::Auditor,
    events: impl IntoIterator<Item = rmcp_authz::audit::AuditEvent>,
) {
    for event in events {
        let slot = auditor.reserve().await.expect("a place in the queue");
        slot.record(event).await.expect("the event is recorded");
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = command(&self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}
