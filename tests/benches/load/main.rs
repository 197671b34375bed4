//! End-to-end load harness: the same tiny rmcp Streamable HTTP server with and without
//! `rmcp-authz`, driven over 127.0.0.1 with the same request mix, alternating the two.
//!
//! Run with:
//!
//! ```sh
//! cargo bench -p rmcp-authz-tests --bench load              # the full run, ~5 minutes
//! cargo bench -p rmcp-authz-tests --bench load -- --quick   # a smoke run, ~30 s
//! cargo bench -p rmcp-authz-tests --bench load -- --help
//! ```
//!
//! The harness re-executes itself as `load serve ...` for each server, pinned to CPU 0
//! with `taskset` on a 1-worker tokio runtime (the audit writer thread shares that CPU);
//! the load generator (this process) runs on CPU 1 on a current-thread runtime.
//!
//! - Variants: `bare` (plain rmcp `StreamableHttpService`), `authz` (layer + wrapper +
//!   buffered JSON Lines audit + verified-token cache, ES256), `authz-nocache` (the same
//!   without the cache). All serve the same `#[tool_router]` server.
//! - Modes: stateless 2026-07-28 with JSON responses (`json`) or SSE (`sse`), and
//!   2025-06-18 sessions (`session`, SSE; each client initializes its own session and
//!   deletes it at the end; no standalone GET stream is opened).
//! - Clients: N tasks, each with its own keep-alive connection, calling back to back.
//!   The generator is a minimal HTTP/1.1 client sending prebuilt requests with the
//!   headers rmcp 3.11's client sends, so it costs far less per call than the server.
//!   Every response is checked (status, JSON-RPC id, result, or the 403 with -32003 the
//!   policy gives the denied call); failures are counted, shown, and fail the run.
//! - Each cell starts one server per variant, then runs them in turn, `--rounds` times
//!   (the order reversed every other round), and reports the median rate; p50/p99 pool
//!   every round's latencies. Server CPU per call: the server's CPU time
//!   (`/proc/<pid>/task/*/schedstat`) over the measured window / calls in it. A server's
//!   CPU per call over bare is the median, over the rounds, of its figure minus bare's in
//!   the same round (the host's slow and fast phases then move both sides of each
//!   difference), shown with the middle half of those differences.
//! - The `overhead` rows (allowed calls only, so every server runs the tool; at 1 and 16
//!   clients) give what the SDK adds per call beyond the signature check: CPU/call
//!   (authz-nocache) − CPU/call(bare) − one `JwtVerifier::verify_sync` of the same token,
//!   timed in this process (pinned, CPU time) before and after the cell. They also say
//!   where the cached path's time goes, one component added per variant:
//!   `authz-noaudit` (the HTTP layer with the cache and the wrapper, no audit), then
//!   `authz` (with the audit log). The layer alone is not a variant: it builds only in
//!   front of wrapped handlers.
//! - The main matrix runs `bare`, `authz-noaudit` and `authz` (and `authz-nocache` for
//!   stateless JSON) in every mode and at every client count, and its targets table gives
//!   each authz server's CPU per call over bare in the same cell, with its calls/s and p99
//!   ratios.
//! - `--before EXE` (EXE: this harness built from an earlier commit; `BEFORE=<rev>
//!   scripts/bench.sh` builds it) adds every authz variant of that build to the main and
//!   overhead cells as `<variant> (before)`, alternating with this build's: before and
//!   after measured in the same run.
//! - The `nagle` row is the bare server without TCP_NODELAY on its sockets (SSE, one
//!   client); every other server sets it with `ListenerExt::tap_io`.
//! - The `sweep` rows: 10,000 tools in the server and the policy (with and without
//!   `tools/list` in the mix) and a ~4 KB token, at 16 clients, stateless JSON.
//! - On a shared machine, `--nice -10` (root) lowers the chance that other work preempts
//!   the server or the generator; it sets this process's and its session's autogroup
//!   nice value, which the servers inherit.
//!
//! Results: stdout, `target/load/results.md`, `target/load/throughput.svg`.

mod client;
mod report;
mod server;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Kind, Load, RunResult};
use report::{Panel, Row};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::token::JwtVerifier;
use server::ServeArgs;

/// The issuer of the benchmark's tokens.
const ISSUER: &str = "https://auth.load.invalid";
/// The audience the servers expect (the port is not known before they start).
const AUDIENCE: &str = "https://mcp.load.invalid/mcp";
/// What `read_note` answers.
const NOTE_TEXT: &str = "Hello from the load harness.";
/// Rules in the default policy (two real tools, eight fillers).
const DEFAULT_POLICY_TOOLS: usize = 10;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Authz,
    AuthzNoCache,
    /// Layer + wrapper, cache on, no audit: the `overhead` rows only.
    NoAudit,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Authz => "authz",
            Variant::AuthzNoCache => "authz-nocache",
            Variant::NoAudit => "authz-noaudit",
        }
    }

    fn parse(s: &str) -> Result<Variant, String> {
        match s {
            "bare" => Ok(Variant::Bare),
            "authz" => Ok(Variant::Authz),
            "authz-nocache" => Ok(Variant::AuthzNoCache),
            "authz-noaudit" => Ok(Variant::NoAudit),
            other => Err(format!(
                "unknown variant {other:?} (bare, authz, authz-nocache, authz-noaudit)"
            )),
        }
    }
}

/// A server in a cell: a variant built from this tree, or from the `--before` build (an
/// earlier commit's harness binary, for before/after figures measured in the same run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Server {
    variant: Variant,
    before: bool,
}

impl Server {
    /// A server of this build.
    fn now(variant: Variant) -> Server {
        Server {
            variant,
            before: false,
        }
    }

    /// The same variant from the `--before` build.
    fn before(self) -> Server {
        Server {
            before: true,
            ..self
        }
    }

    fn name(self) -> String {
        if self.before {
            format!("{} (before)", self.variant.name())
        } else {
            self.variant.name().to_owned()
        }
    }
}

/// Which transport mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stateless 2026-07-28, JSON responses.
    Json,
    /// Stateless 2026-07-28, SSE responses.
    Sse,
    /// 2025-06-18 with sessions (SSE responses).
    Session,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Json => "json",
            Mode::Sse => "sse",
            Mode::Session => "session",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Json => "stateless JSON",
            Mode::Sse => "stateless SSE",
            Mode::Session => "session SSE",
        }
    }

    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "json" => Ok(Mode::Json),
            "sse" => Ok(Mode::Sse),
            "session" => Ok(Mode::Session),
            other => Err(format!("unknown mode {other:?} (json, sse, session)")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// CPU time from /proc.
// ---------------------------------------------------------------------------------------

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`, else 100).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The audit writer thread's name as `/proc` shows it (cut to 15 bytes).
const WRITER_COMM: &str = "rmcp-authz-audi";

/// CPU seconds used so far by process `pid`: the sum of its threads' run time from
/// `/proc/<pid>/task/*/schedstat` (nanoseconds), else `utime + stime` from
/// `/proc/<pid>/stat` (clock ticks, coarser).
fn cpu_seconds(pid: u32) -> Option<f64> {
    if let Some(seconds) = threads_cpu_seconds(pid, |_| true) {
        return Some(seconds);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU seconds used so far by the audit writer thread of process `pid`, if it has one.
fn writer_cpu_seconds(pid: u32) -> Option<f64> {
    threads_cpu_seconds(pid, |comm| comm.trim_end() == WRITER_COMM)
}

/// The summed run time of the threads of `pid` whose name `pick` accepts, from
/// `/proc/<pid>/task/*/schedstat`; `None` when no such thread could be read.
fn threads_cpu_seconds(pid: u32, pick: impl Fn(&str) -> bool) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total_ns = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !pick(&comm) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        {
            total_ns += ns;
            any = true;
        }
    }
    any.then_some(total_ns as f64 / 1e9)
}

fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

// ---------------------------------------------------------------------------------------
// Server child processes.
// ---------------------------------------------------------------------------------------

/// A server child process, stopped (stdin closed, then killed) when dropped.
struct ServerProc {
    child: Child,
    pid: u32,
    addr: std::net::SocketAddr,
    _audit_dir: tempfile::TempDir,
}

impl ServerProc {
    /// Starts `variant` of the harness binary `exe` as `cell` asks, pinned to `server_cpu`.
    fn start(
        exe: &Path,
        variant: Variant,
        cell: &Cell,
        jwks: &Path,
        server_cpu: usize,
        nice: Option<i32>,
    ) -> Result<ServerProc, String> {
        let audit_dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            variant,
            mode: cell.mode,
            nodelay: cell.nodelay,
            policy_tools: cell.policy_tools,
            jwks: jwks.to_owned(),
            audit_dir: audit_dir.path().to_path_buf(),
        };
        let mut command = Command::new("taskset");
        command.arg("-c").arg(server_cpu.to_string());
        if let Some(nice) = nice {
            command.args(["nice", "-n", &nice.to_string()]);
        }
        let mut child = command
            .arg(exe)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning the {} server: {e}", variant.name()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the server's port: {e}"))?;
        let port: u16 = line.trim().parse().map_err(|_| {
            let _ = child.kill();
            format!(
                "the {} server did not print its port (got {line:?})",
                variant.name()
            )
        })?;
        Ok(ServerProc {
            child,
            pid,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            _audit_dir: audit_dir,
        })
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Options.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    clients: Vec<usize>,
    modes: Vec<Mode>,
    rounds: usize,
    warmup: Duration,
    measure: Duration,
    mix: Vec<Kind>,
    nocache: bool,
    nagle: bool,
    main: bool,
    sweep: bool,
    out: PathBuf,
    nice: Option<i32>,
    before: Option<PathBuf>,
}

const HELP: &str = "\
load: the end-to-end load harness (bare rmcp vs rmcp + rmcp-authz)

  --quick              smoke run: clients 1,16, 1 round, 0.3 s warm-up, 0.7 s measured
  --clients 1,16,256   concurrent clients (each its own connection, closed loop)
  --modes json,sse,session
  --rounds N           rounds per cell, variants alternating (default 3)
  --warmup-ms N        warm-up per run, not measured (default 1000)
  --measure-ms N       measured window per run (default 2000)
  --mix list,allowed,denied   the request mix, round robin (default all three)
  --no-nocache         skip the authz-nocache variant and the overhead rows
  --no-nagle           skip the TCP_NODELAY demonstration row
  --no-main            skip the main matrix (e.g. to repeat the overhead rows with
                       more rounds: --no-main --no-nagle --no-sweep --rounds 9)
  --no-sweep           skip the policy-size and token-size rows
  --out DIR            where results.md and throughput.svg go (default target/load)
  --before EXE         also run every authz variant from EXE, the load harness binary
                       built from an earlier commit (see scripts/bench.sh before), as
                       `<variant> (before)` in the same cells: before/after in one run
  --nice N             run the servers and the load generator at this nice value
                       (e.g. -10, as root) so other work on a shared machine
                       preempts them less; default: unchanged
";

fn default_out() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("load"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/load"),
    }
}

fn parse_list<T>(s: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(f)
        .collect()
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        clients: vec![1, 16, 256],
        modes: vec![Mode::Json, Mode::Sse, Mode::Session],
        rounds: 3,
        warmup: Duration::from_millis(1000),
        measure: Duration::from_millis(2000),
        mix: vec![Kind::List, Kind::Allowed, Kind::Denied],
        nocache: true,
        nagle: true,
        main: true,
        sweep: true,
        out: default_out(),
        nice: None,
        before: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            // `cargo bench` passes --bench to harness = false targets.
            "--bench" => {}
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--quick" => {
                o.clients = vec![1, 16];
                o.rounds = 1;
                o.warmup = Duration::from_millis(300);
                o.measure = Duration::from_millis(700);
            }
            "--clients" => {
                o.clients = parse_list(&value()?, |s| {
                    s.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("bad client count {s:?}"))
                })?
            }
            "--modes" => o.modes = parse_list(&value()?, Mode::parse)?,
            "--rounds" => o.rounds = number(value()?)?.max(1) as usize,
            "--warmup-ms" => o.warmup = Duration::from_millis(number(value()?)?),
            "--measure-ms" => o.measure = Duration::from_millis(number(value()?)?.max(100)),
            "--mix" => o.mix = parse_list(&value()?, Kind::parse)?,
            "--no-nocache" => o.nocache = false,
            "--no-nagle" => o.nagle = false,
            "--no-main" => o.main = false,
            "--no-sweep" => o.sweep = false,
            "--out" => o.out = PathBuf::from(value()?),
            "--nice" => o.nice = Some(value()?.parse().map_err(|e| format!("--nice: {e}"))?),
            "--before" => {
                let exe = PathBuf::from(value()?);
                if !exe.is_file() {
                    return Err(format!("--before {}: no such file", exe.display()));
                }
                o.before = Some(exe);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{HELP}")),
        }
    }
    if o.mix.is_empty() {
        return Err("--mix needs at least one kind".to_owned());
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// Machine facts and pinning.
// ---------------------------------------------------------------------------------------

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn machine_facts() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    format!(
        "nproc {} ({cpu}), kernel {kernel}, load average {} (1, 5, 15 min)",
        command_output("nproc", &["--all"]).unwrap_or_else(|| "?".to_owned()),
        loadavg()
    )
}

/// Pins this process (all its threads, present and future) to `cpu`.
fn pin_self(cpu: usize) -> Result<(), String> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -p -c {cpu} failed: {status}"))
    }
}

// ---------------------------------------------------------------------------------------
// Running cells.
// ---------------------------------------------------------------------------------------

/// Everything the runs share.
struct Bench {
    opts: Options,
    jwks: PathBuf,
    token: Arc<str>,
    big_token: Arc<str>,
    verifier: JwtVerifier,
    server_cpu: usize,
    runtime: tokio::runtime::Runtime,
    rows: Vec<Row>,
    failed_runs: usize,
}

/// What a cell asks for.
#[derive(Debug, Clone)]
struct Cell {
    section: &'static str,
    mode: Mode,
    clients: usize,
    variants: Vec<Variant>,
    policy_tools: usize,
    big_token: bool,
    nodelay: bool,
    rounds: usize,
    mix: Vec<Kind>,
    note: String,
}

/// A variant's runs in a cell, summarized.
#[derive(Debug)]
struct Summary {
    server: Server,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
    /// Server CPU per call over bare's: the median, over the rounds, of this variant's
    /// figure minus bare's in the same round (NaN for bare, or without a bare run).
    over_bare_us: f64,
    /// The middle half of those per-round differences (first and third quartiles): how
    /// far the rounds agree.
    over_bare_spread: (f64, f64),
    /// Of `cpu_us`, the audit writer thread's.
    writer_cpu_us: f64,
    failures: u64,
    first_failure: Option<String>,
    generator_cpu: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The first and third quartiles of `v` (each the median of its half, the middle value
/// left out of both when `v` is odd); the one value twice when there is one (`--quick`).
fn quartiles(mut v: Vec<f64>) -> (f64, f64) {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    if v.len() < 2 {
        let only = median(v);
        return (only, only);
    }
    let half = v.len() / 2;
    (
        median(v[..half].to_vec()),
        median(v[v.len() - half..].to_vec()),
    )
}

fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1000.0
}

/// Server CPU per call of one run, in µs.
fn cpu_per_call_us(run: &RunResult) -> f64 {
    run.server_cpu / run.rate * 1e6
}

/// `runs` summarized; `bare` holds bare's CPU per call in the same rounds, in order, to
/// pair each round with (`None` for bare itself).
fn summarize(server: Server, runs: Vec<RunResult>, bare: Option<&[f64]>) -> Summary {
    let rate = median(runs.iter().map(|r| r.rate).collect());
    let cpu_us = median(runs.iter().map(cpu_per_call_us).collect());
    let over: Vec<f64> = bare.map_or_else(Vec::new, |bare| {
        runs.iter()
            .zip(bare)
            .map(|(r, b)| cpu_per_call_us(r) - b)
            .collect()
    });
    let over_bare_us = median(over.clone());
    let over_bare_spread = quartiles(over);
    let writer_cpu_us = median(runs.iter().map(|r| r.writer_cpu / r.rate * 1e6).collect());
    let generator_cpu = runs.iter().map(|r| r.generator_cpu).fold(0.0f64, f64::max);
    let failures = runs.iter().map(|r| r.failures_total).sum();
    let first_failure = runs.iter().find_map(|r| r.first_failure.clone());
    let mut latencies: Vec<u64> = runs.into_iter().flat_map(|r| r.latencies).collect();
    latencies.sort_unstable();
    Summary {
        server,
        rate,
        p50_us: percentile_us(&latencies, 50.0),
        p99_us: percentile_us(&latencies, 99.0),
        cpu_us,
        over_bare_us,
        over_bare_spread,
        writer_cpu_us,
        failures,
        first_failure,
        generator_cpu,
    }
}

impl Bench {
    /// Runs one cell: a server per variant, then `rounds` rounds of every variant in
    /// turn (the order reversed every other round), and adds its rows.
    ///
    /// With `--before`, the main and overhead cells also run every authz variant of the
    /// earlier build.
    fn cell(&mut self, cell: &Cell) -> Result<Vec<Summary>, String> {
        let mut entries: Vec<Server> = cell.variants.iter().map(|&v| Server::now(v)).collect();
        if self.opts.before.is_some() && matches!(cell.section, "main" | "overhead") {
            let earlier: Vec<Server> = entries
                .iter()
                .filter(|s| s.variant != Variant::Bare)
                .map(|s| s.before())
                .collect();
            entries.extend(earlier);
        }
        let current = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let servers: Vec<ServerProc> = entries
            .iter()
            .map(|&s| {
                let exe = match (&self.opts.before, s.before) {
                    (Some(before), true) => before.as_path(),
                    _ => current.as_path(),
                };
                ServerProc::start(
                    exe,
                    s.variant,
                    cell,
                    &self.jwks,
                    self.server_cpu,
                    self.opts.nice,
                )
            })
            .collect::<Result<_, _>>()?;
        let pids: Vec<String> = servers
            .iter()
            .zip(&entries)
            .map(|(s, v)| format!("{} pid {}", v.name(), s.pid))
            .collect();
        eprintln!(
            "{} {}, {} clients: servers {}",
            cell.section,
            cell.mode.label(),
            cell.clients,
            pids.join(", ")
        );
        let token = if cell.big_token {
            Arc::clone(&self.big_token)
        } else {
            Arc::clone(&self.token)
        };
        let mut runs: Vec<Vec<RunResult>> = entries.iter().map(|_| Vec::new()).collect();
        for round in 0..cell.rounds {
            let mut order: Vec<usize> = (0..entries.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let load = Load {
                    addr: servers[i].addr,
                    mode: cell.mode,
                    token: Arc::clone(&token),
                    mix: cell.mix.clone(),
                    enforcing: entries[i].variant != Variant::Bare,
                    clients: cell.clients,
                    warmup: self.opts.warmup,
                    measure: self.opts.measure,
                };
                let result = self.runtime.block_on(client::run(load, servers[i].pid));
                let mut sorted = result.latencies.clone();
                sorted.sort_unstable();
                eprintln!(
                    "    round {round} {:<23} {:>8.0} calls/s  server CPU {:>4.0}%  generator CPU {:>4.0}%  p50/p90/p99/max {:.0}/{:.0}/{:.0}/{:.0} µs  failures {}",
                    entries[i].name(),
                    result.rate,
                    result.server_cpu * 100.0,
                    result.generator_cpu * 100.0,
                    percentile_us(&sorted, 50.0),
                    percentile_us(&sorted, 90.0),
                    percentile_us(&sorted, 99.0),
                    percentile_us(&sorted, 100.0),
                    result.failures_total
                );
                runs[i].push(result);
            }
        }
        drop(servers);
        // Each variant's rounds paired with bare's: a slow or fast phase of the host then
        // moves both figures of a pair.
        let bare_cpu: Option<Vec<f64>> = entries
            .iter()
            .position(|s| s.variant == Variant::Bare)
            .map(|i| runs[i].iter().map(cpu_per_call_us).collect());
        let summaries: Vec<Summary> = entries
            .iter()
            .zip(runs)
            .map(|(&v, r)| {
                let bare = bare_cpu.as_deref().filter(|_| v.variant != Variant::Bare);
                summarize(v, r, bare)
            })
            .collect();
        let bare_rate = summaries
            .iter()
            .find(|s| s.server.variant == Variant::Bare)
            .map(|s| s.rate);
        for s in &summaries {
            let mut notes = cell.note.clone();
            if s.generator_cpu > 0.9 {
                if !notes.is_empty() {
                    notes.push_str("; ");
                }
                notes.push_str(&format!(
                    "load generator {:.0}% busy",
                    s.generator_cpu * 100.0
                ));
            }
            if let Some(f) = &s.first_failure {
                self.failed_runs += 1;
                eprintln!(
                    "FAILURES: {} {} clients {}: {} failed; first: {f}",
                    cell.mode.label(),
                    cell.clients,
                    s.server.name(),
                    s.failures
                );
            }
            let row = Row {
                section: cell.section.to_owned(),
                mode: cell.mode.label().to_owned(),
                clients: cell.clients,
                variant: s.server.name(),
                rate: s.rate,
                p50_us: s.p50_us,
                p99_us: s.p99_us,
                ratio: bare_rate
                    .filter(|_| s.server.variant != Variant::Bare)
                    .map(|b| s.rate / b),
                cpu_us: s.cpu_us,
                failures: s.failures,
                notes,
            };
            eprintln!(
                "  {:<9} {:<15} {:>3} clients {:<23} {:>8.0} calls/s  p50 {:>8.1} µs  p99 {:>8.1} µs  cpu {:>6.1} µs/call{}",
                row.section,
                row.mode,
                row.clients,
                row.variant,
                row.rate,
                row.p50_us,
                row.p99_us,
                row.cpu_us,
                row.ratio
                    .map_or(String::new(), |r| format!("  ratio {r:.3}"))
            );
            self.rows.push(row);
        }
        Ok(summaries)
    }

    /// The CPU time of one `verify_sync` of `token` in this process, in µs: the median
    /// of 20 ms batches over about `budget`.
    fn verify_cost_us(&self, token: &str, budget: Duration) -> f64 {
        for _ in 0..50 {
            let _ = self
                .verifier
                .verify_sync(token)
                .expect("the token verifies");
        }
        let mut per_call = Vec::new();
        let stop = Instant::now() + budget;
        while Instant::now() < stop {
            let (t0, c0) = (Instant::now(), own_cpu_seconds());
            let mut n = 0u32;
            while t0.elapsed() < Duration::from_millis(20) {
                let _ = std::hint::black_box(self.verifier.verify_sync(token));
                n += 1;
            }
            // CPU time, not wall time, so a preemption does not count.
            let cpu = match (c0, own_cpu_seconds()) {
                (Some(a), Some(b)) => b - a,
                _ => t0.elapsed().as_secs_f64(),
            };
            per_call.push(cpu / f64::from(n) * 1e6);
        }
        median(per_call)
    }
}

fn mint(issuer: &DevIssuer, groups: usize) -> Result<String, String> {
    let mut request = issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("load-agent")
        .scopes(["notes:read"])
        .expires_in(Duration::from_secs(6 * 3600));
    if groups > 0 {
        let groups: Vec<String> = (0..groups)
            .map(|i| format!("group-{i:05}-of-the-organisation"))
            .collect();
        request = request.claim("groups", serde_json::json!(groups));
    }
    request.mint().map_err(|e| e.to_string())
}

/// A token of at least `bytes` bytes: the small token plus a `groups` claim.
fn mint_big(issuer: &DevIssuer, bytes: usize) -> Result<String, String> {
    let mut groups = 1;
    loop {
        let token = mint(issuer, groups)?;
        if token.len() >= bytes {
            return Ok(token);
        }
        groups += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = if args.first().map(String::as_str) == Some("serve") {
        ServeArgs::parse(&args[1..]).and_then(server::serve_main)
    } else {
        parse_options(&args).and_then(run_all)
    };
    if let Err(e) = outcome {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

fn run_all(opts: Options) -> Result<(), String> {
    if command_output("taskset", &["--version"]).is_none() {
        return Err(
            "`taskset` (util-linux) is needed to pin the servers and the load generator to \
             their CPUs; install util-linux"
                .to_owned(),
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let facts_before = machine_facts();
    let (server_cpu, generator_cpu) = if cpus >= 2 {
        (0, 1)
    } else {
        eprintln!("warning: one CPU: the servers and the load generator share it");
        (0, 0)
    };
    pin_self(generator_cpu)?;
    if let Some(nice) = opts.nice {
        // Before any other thread exists: threads inherit their creator's nice value.
        let status = Command::new("renice")
            .args([
                "-n",
                &nice.to_string(),
                "-p",
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("renice: {e}"))?;
        if !status.success() {
            return Err(format!(
                "renice -n {nice} failed (negative values need root)"
            ));
        }
        // With autogroup scheduling, CPU time is shared between sessions first, so the
        // nice value of this session's group (the servers are in it) matters too.
        if let Err(e) = std::fs::write("/proc/self/autogroup", nice.to_string()) {
            eprintln!("note: cannot set the autogroup nice value ({e})");
        }
    }
    eprintln!("machine: {facts_before}");
    eprintln!(
        "servers on CPU {server_cpu} (1 tokio worker), load generator on CPU {generator_cpu}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::new(ISSUER).map_err(|e| e.to_string())?;
    let jwks = tmp.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).map_err(|e| e.to_string())?;
    let token = mint(&issuer, 0)?;
    let big_token = mint_big(&issuer, 4096)?;
    let verifier = JwtVerifier::builder(ISSUER, AUDIENCE)
        .jwks_file(&jwks)
        .build()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut bench = Bench {
        opts: opts.clone(),
        jwks,
        token: token.clone().into(),
        big_token: big_token.clone().into(),
        verifier,
        server_cpu,
        runtime,
        rows: Vec::new(),
        failed_runs: 0,
    };
    let started = Instant::now();
    let mix_names: Vec<&str> = opts.mix.iter().map(|k| k.name()).collect();
    let mix_label = mix_names.join(" + ");

    // The main matrix, and the issue's binding targets: server CPU per call over bare with
    // the cache on, without and with the audit log, in every mode and at every client count.
    let mut main_rates: Vec<(Mode, usize, Variant, f64)> = Vec::new();
    let mut targets = String::new();
    for &mode in opts.modes.iter().filter(|_| opts.main) {
        for &clients in &opts.clients {
            let mut variants = vec![Variant::Bare, Variant::NoAudit, Variant::Authz];
            if opts.nocache && mode == Mode::Json {
                variants.push(Variant::AuthzNoCache);
            }
            let cell = Cell {
                section: "main",
                mode,
                clients,
                variants,
                policy_tools: DEFAULT_POLICY_TOOLS,
                big_token: false,
                nodelay: true,
                rounds: opts.rounds,
                mix: opts.mix.clone(),
                note: String::new(),
            };
            let summaries = bench.cell(&cell)?;
            targets.push_str(&target_rows(mode, clients, &summaries));
            for s in summaries.iter().filter(|s| !s.server.before) {
                main_rates.push((mode, clients, s.server.variant, s.rate));
            }
        }
    }
    if !targets.is_empty() {
        targets.insert_str(0, TARGET_HEADER);
    }

    // What the SDK adds beyond the signature check, cache off, and where the time of the
    // cached path goes: allowed calls only, so every server does the same work per call
    // (a denied call never reaches rmcp). One component is added per variant: the layer
    // and the wrapper, then the audit log.
    let mut overhead = String::new();
    if opts.nocache {
        let mut counts: Vec<usize> = [1, 16]
            .into_iter()
            .filter(|c| opts.clients.contains(c))
            .collect();
        if counts.is_empty() {
            counts.push(opts.clients[0]);
        }
        for clients in counts {
            let cell = Cell {
                section: "overhead",
                mode: Mode::Json,
                clients,
                variants: vec![
                    Variant::Bare,
                    Variant::NoAudit,
                    Variant::Authz,
                    Variant::AuthzNoCache,
                ],
                policy_tools: DEFAULT_POLICY_TOOLS,
                big_token: false,
                nodelay: true,
                rounds: opts.rounds,
                mix: vec![Kind::Allowed],
                note: "allowed calls only".to_owned(),
            };
            let before = bench.verify_cost_us(&token, Duration::from_millis(300));
            let summaries = bench.cell(&cell)?;
            let after = bench.verify_cost_us(&token, Duration::from_millis(300));
            let verify = (before + after) / 2.0;
            for earlier in [false, true] {
                let summary = |v: Variant| {
                    summaries.iter().find(|s| {
                        s.server.variant == v && (s.server.before == earlier || v == Variant::Bare)
                    })
                };
                if earlier && summary(Variant::Authz).is_none() {
                    continue;
                }
                let cpu = |v: Variant| summary(v).map_or(f64::NAN, |s| s.cpu_us);
                // Over bare: the median of the per-round differences (see `Summary`).
                let over = |v: Variant| summary(v).map_or(f64::NAN, |s| s.over_bare_us);
                let spread = |v: Variant| {
                    summary(v).map_or(String::new(), |s| {
                        let (low, high) = s.over_bare_spread;
                        format!(" (middle half of the rounds {low:+.1} to {high:+.1})")
                    })
                };
                let writer = summary(Variant::Authz).map_or(f64::NAN, |s| s.writer_cpu_us);
                let added = over(Variant::AuthzNoCache) - verify;
                let line = format!(
                    "{}Cache off, stateless JSON, {clients} client(s), allowed calls only: server \
                     CPU per call {:.1} µs (authz-nocache), {:+.1} µs over bare ({:.1} µs) in \
                     the same rounds, − {verify:.1} µs (one ES256 `verify_sync` of the same \
                     token in the harness process, measured before and after: {before:.1} / \
                     {after:.1} µs) = **{added:.1} µs added beyond the signature check** \
                     (target ≤ 5 µs: {}). Cache on, server CPU per call over bare (the median \
                     of the rounds' differences), one component at a time: layer and wrapper \
                     {:+.1} µs{}, audit log {:+.1} µs (of which {writer:.1} µs on the audit \
                     writer thread); in all {:+.1} µs{}.",
                    if earlier {
                        "**Before** (the `--before` build): "
                    } else {
                        ""
                    },
                    cpu(Variant::AuthzNoCache),
                    over(Variant::AuthzNoCache),
                    cpu(Variant::Bare),
                    if added <= 5.0 { "met" } else { "NOT met" },
                    over(Variant::NoAudit),
                    spread(Variant::NoAudit),
                    over(Variant::Authz) - over(Variant::NoAudit),
                    over(Variant::Authz),
                    spread(Variant::Authz),
                );
                eprintln!("{line}");
                if !overhead.is_empty() {
                    overhead.push_str("\n\n");
                }
                overhead.push_str(&line);
            }
        }
    }

    // Nagle: bare, stateless SSE, one client, server without TCP_NODELAY.
    let mut nagle = String::new();
    if opts.nagle {
        let cell = Cell {
            section: "nagle",
            mode: Mode::Sse,
            clients: 1,
            variants: vec![Variant::Bare],
            policy_tools: DEFAULT_POLICY_TOOLS,
            big_token: false,
            nodelay: false,
            rounds: 1,
            mix: opts.mix.clone(),
            note: "server listener WITHOUT TCP_NODELAY".to_owned(),
        };
        let s = bench.cell(&cell)?;
        let with = main_rates
            .iter()
            .find(|(m, c, v, _)| *m == Mode::Sse && *c == 1 && *v == Variant::Bare)
            .map(|r| r.3);
        nagle = format!(
            "Without TCP_NODELAY on the server's sockets (bare, stateless SSE, 1 client): {:.0} \
             calls/s, p50 {:.1} ms{}.",
            s[0].rate,
            s[0].p50_us / 1000.0,
            with.map_or(String::new(), |w| format!(
                ", against {w:.0} calls/s with it (main rows)"
            ))
        );
        eprintln!("{nagle}");
    }

    // How cost grows with policy size and token size.
    let mut sweep: Vec<(String, f64, f64)> = Vec::new();
    if opts.sweep {
        let clients = if opts.clients.contains(&16) {
            16
        } else {
            opts.clients[0]
        };
        if let Some(base) = main_row_pair(&bench.rows, Mode::Json, clients) {
            sweep.push(("10 tools (main)".to_owned(), base.0, base.1));
        }
        let calls_only = vec![Kind::Allowed, Kind::Denied];
        let big_label = format!("{:.1} KB token", big_token.len() as f64 / 1024.0);
        let cases = [
            ("10k tools".to_owned(), 10_000, false, opts.mix.clone()),
            (
                "10 tools, calls".to_owned(),
                DEFAULT_POLICY_TOOLS,
                false,
                calls_only.clone(),
            ),
            ("10k tools, calls".to_owned(), 10_000, false, calls_only),
            (big_label, DEFAULT_POLICY_TOOLS, true, opts.mix.clone()),
        ];
        for (label, policy_tools, big, mix) in cases {
            let mix_names: Vec<&str> = mix.iter().map(|k| k.name()).collect();
            let cell = Cell {
                section: "sweep",
                mode: Mode::Json,
                clients,
                variants: vec![Variant::Bare, Variant::Authz],
                policy_tools,
                big_token: big,
                nodelay: true,
                rounds: opts.rounds,
                mix,
                note: format!(
                    "{policy_tools} tools in server and policy, {} B token, mix {}",
                    if big { big_token.len() } else { token.len() },
                    mix_names.join(" + ")
                ),
            };
            let s = bench.cell(&cell)?;
            sweep.push((label, s[0].rate, s[1].rate));
        }
    }

    let facts_after = loadavg();
    let elapsed = started.elapsed().as_secs_f64();
    let table = report::table(&bench.rows);
    let mut md = String::new();
    md.push_str("# rmcp-authz end-to-end load\n\n");
    md.push_str(&format!(
        "Machine: {facts_before}; load average after: {facts_after}.\n\n"
    ));
    md.push_str(&format!(
        "Servers pinned to CPU {server_cpu} (1 tokio worker), load generator on CPU \
         {generator_cpu}{}. Mix: {mix_label}, round robin per client. {} round(s) per cell, \
         {:.1} s warm-up + {:.1} s measured per run, variants alternating; calls/s is the \
         median round, p50/p99 pool all rounds; ratio = calls/s / bare's calls/s in the same \
         cell; server CPU from /proc/<pid>/task/*/schedstat. Token: ES256, {} bytes, the same \
         for every client. Run took {elapsed:.0} s.\n\n",
        opts.nice
            .map_or(String::new(), |n| format!(", both at nice {n}")),
        opts.rounds,
        opts.warmup.as_secs_f64(),
        opts.measure.as_secs_f64(),
        token.len(),
    ));
    md.push_str(&table);
    md.push('\n');
    if !targets.is_empty() {
        md.push_str(&targets);
        md.push('\n');
    }
    for line in [&overhead, &nagle] {
        if !line.is_empty() {
            md.push_str(line);
            md.push_str("\n\n");
        }
    }
    if bench.failed_runs > 0 {
        md.push_str("**Some runs had failures: see the failures column.**\n");
    }
    println!("\n{md}");

    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let md_path = opts.out.join("results.md");
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    let svg_path = opts.out.join("throughput.svg");
    let svg = chart(&opts, &main_rates, &sweep, &facts_before);
    std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    if bench.failed_runs > 0 {
        return Err(format!("{} row(s) had failures", bench.failed_runs));
    }
    Ok(())
}

/// The head of the targets table: one row per main cell and authz server.
const TARGET_HEADER: &str = "\
Server CPU per call over bare in the same cell, cache on: the median of the rounds' \
differences, then the middle half of them (targets: at most 1.5 µs without the audit log, \
4 µs with the buffered audit log, its writer thread included; p99 under 1.5x bare's):

| mode | clients | server | CPU over bare | target | calls/s ratio | p99 ratio |
|---|---:|---|---:|---|---:|---:|
";

/// The targets table's rows for one main cell.
fn target_rows(mode: Mode, clients: usize, summaries: &[Summary]) -> String {
    let Some(bare) = summaries.iter().find(|s| s.server.variant == Variant::Bare) else {
        return String::new();
    };
    let mut out = String::new();
    for s in summaries {
        let budget = match s.server.variant {
            Variant::NoAudit => 1.5,
            Variant::Authz => 4.0,
            Variant::Bare | Variant::AuthzNoCache => continue,
        };
        let over = s.over_bare_us;
        let (low, high) = s.over_bare_spread;
        let p99 = s.p99_us / bare.p99_us;
        let met = over <= budget && p99 < 1.5;
        out.push_str(&format!(
            "| {} | {clients} | {} | {over:+.1} µs ({low:+.1} to {high:+.1}) | ≤ {budget} µs, p99 < 1.5x: {} | {:.3} | {p99:.2} |\n",
            mode.label(),
            s.server.name(),
            if met { "met" } else { "**not met**" },
            s.rate / bare.rate,
        ));
    }
    out
}

/// Bare and authz calls/s of the main row for `mode` and `clients`.
fn main_row_pair(rows: &[Row], mode: Mode, clients: usize) -> Option<(f64, f64)> {
    let find = |v: Variant| {
        rows.iter()
            .find(|r| {
                r.section == "main"
                    && r.mode == mode.label()
                    && r.clients == clients
                    && r.variant == v.name()
            })
            .map(|r| r.rate)
    };
    Some((find(Variant::Bare)?, find(Variant::Authz)?))
}

fn chart(
    opts: &Options,
    main_rates: &[(Mode, usize, Variant, f64)],
    sweep: &[(String, f64, f64)],
    facts: &str,
) -> String {
    let mut panels = Vec::new();
    for &mode in &opts.modes {
        let series = [Variant::Bare, Variant::Authz, Variant::AuthzNoCache]
            .iter()
            .map(|&v| {
                let values: Vec<Option<f64>> = opts
                    .clients
                    .iter()
                    .map(|&c| {
                        main_rates
                            .iter()
                            .find(|r| r.0 == mode && r.1 == c && r.2 == v)
                            .map(|r| r.3)
                    })
                    .collect();
                (v.name().to_owned(), values)
            })
            .filter(|(_, v)| v.iter().any(Option::is_some))
            .collect();
        panels.push(Panel {
            title: format!("{}: calls/s by clients", mode.label()),
            x_labels: opts
                .clients
                .iter()
                .map(|c| format!("{c} clients"))
                .collect(),
            series,
            bars: false,
        });
    }
    if !sweep.is_empty() {
        panels.push(Panel {
            title: "stateless JSON, 16 clients: policy and token size".to_owned(),
            x_labels: sweep.iter().map(|s| s.0.clone()).collect(),
            series: vec![
                ("bare".to_owned(), sweep.iter().map(|s| Some(s.1)).collect()),
                (
                    "authz".to_owned(),
                    sweep.iter().map(|s| Some(s.2)).collect(),
                ),
            ],
            bars: true,
        });
    }
    report::svg(
        "rmcp vs rmcp + rmcp-authz over 127.0.0.1 (server on one core)",
        facts,
        &panels,
    )
}
