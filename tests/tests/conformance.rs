//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `tests/conformance/package.json`), both sides:
//!
//! - its server scenarios against the everything server (`tests/src/everything/`),
//!   served twice on 127.0.0.1: bare (rmcp's `StreamableHttpService`) and behind
//!   `rmcp-authz`, reached through a local proxy (`tests/src/proxy.rs`) that adds a bearer
//!   token holding every scope of the policy, since the suite sends none. The suite runs all
//!   its server scenarios against each, and the test asserts, scenario by scenario, that
//!   the protected server's result equals the bare server's: the same verdict and the same
//!   status for every check the suite reports (its INFO records, which log traffic, aside).
//!   The authorization layer is meant to be transparent to a caller it allows;
//! - its client auth scenarios (the `auth/` ones) against the conformance client
//!   (`tests/src/bin/conformance_client/`), an MCP client built on the agent side
//!   (`rmcp_authz::agent::OAuthSession`, on rmcp's own client auth) that authorizes itself
//!   against the suite's mock authorization servers, which approve without a person. Each scenario runs on its own (several at a time), so that its
//!   verdict counts the client's exit status and time limit as the suite's does.
//!
//! Every result must match `tests/conformance/expected-failures.txt`: a scenario listed
//! there must fail (an entry for a scenario that now passes fails the test, which says to
//! remove it), and every other scenario must pass. A scenario passes when none of its
//! checks is a FAILURE or a WARNING, as the suite's own `--expected-failures` baseline
//! counts it, and, for a client scenario, the suite exits with success.
//!
//! The suite runs on Node 22 (the npm package `node`), installed with it under
//! `target/interop/conformance/` by `scripts/setup-interop.sh` (which `scripts/test.sh`
//! runs first). If it is missing the test fails, saying so; it never skips. The suite's
//! results (a `checks.json` per scenario, and for a client scenario the client's
//! `stdout.txt` and `stderr.txt`) and its output go to
//! `target/conformance/{bare,protected,client}/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;
use rmcp_authz::Authz;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz_tests::everything::{bare_app, everything_policy, protected_app};
use rmcp_authz_tests::proxy::Proxy;
use rmcp_authz_tests::server::ISSUER;
use serde_json::Value;
use tokio::task::JoinHandle;

/// How long one run of the whole suite may take before the test fails.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where `scripts/setup-interop.sh` installs the suite and Node 22.
fn install_dir() -> PathBuf {
    rmcp_authz_tests::repo_root().join("target/interop/conformance")
}

fn missing(what: &Path) -> ! {
    panic!(
        "{} is missing: run ./scripts/setup-interop.sh (it installs Node 22 and the MCP \
         conformance suite under target/interop/conformance/; scripts/test.sh runs it before \
         the tests)",
        what.display()
    )
}

/// The Node 22 binary of the npm package `node`.
fn node() -> PathBuf {
    let node = install_dir().join("node_modules/node/bin/node");
    if !node.exists() {
        missing(&node);
    }
    node
}

/// The suite's command-line entry point.
fn suite_script() -> PathBuf {
    let script = install_dir().join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    if !script.exists() {
        missing(&script);
    }
    script
}

/// The version of `package` pinned in `tests/conformance/package.json`.
fn pinned(package: &str) -> String {
    let path = rmcp_authz_tests::repo_root().join("tests/conformance/package.json");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read package.json"))
            .expect("package.json is JSON");
    json["dependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("{package} is not pinned in {}", path.display()))
        .to_owned()
}

/// The version of the suite installed under [`install_dir`].
fn installed_suite() -> String {
    let path = install_dir().join("node_modules/@modelcontextprotocol/conformance/package.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| missing(&path));
    let json: Value = serde_json::from_str(&text).expect("package.json is JSON");
    json["version"].as_str().unwrap_or_default().to_owned()
}

/// A command running the suite on Node 22, with Node 22 first in `PATH` for anything the
/// suite starts itself.
fn suite_command() -> tokio::process::Command {
    let node = node();
    let bin = node
        .parent()
        .expect("node sits in a directory")
        .to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)))
        .expect("PATH joins");
    let mut command = tokio::process::Command::new(&node);
    command
        .arg(suite_script())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The scenarios the suite lists for one side (`conformance list --server` or
/// `--client`).
async fn listed(side: &str) -> Vec<String> {
    let output = suite_command()
        .args(["list", &format!("--{side}")])
        .output()
        .await
        .expect("run conformance list");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "conformance list --{side} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let scenarios: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(|entry| entry.split_whitespace().next().unwrap_or(entry).to_owned())
        .collect();
    assert!(!scenarios.is_empty(), "no scenario listed:\n{stdout}");
    scenarios
}

/// The server scenarios the suite has.
async fn server_scenarios() -> Vec<String> {
    listed("server").await
}

/// The client scenarios of the suite that test authorization (`auth/...`); the others
/// (initialize, tools, elicitation, SSE retries) test an MCP client's core, not its auth.
async fn client_auth_scenarios() -> Vec<String> {
    let scenarios: Vec<String> = listed("client")
        .await
        .into_iter()
        .filter(|scenario| scenario.starts_with("auth/"))
        .collect();
    assert!(
        !scenarios.is_empty(),
        "the suite lists no client auth scenario"
    );
    scenarios
}

/// The entries of `tests/conformance/expected-failures.txt` that name neither a server
/// scenario nor a client auth scenario of the suite.
fn unknown_entries(
    expected: &BTreeMap<String, String>,
    server: &[String],
    client: &[String],
) -> Vec<String> {
    expected
        .keys()
        .filter(|entry| !server.contains(entry) && !client.contains(entry))
        .map(|entry| {
            format!(
                "{entry}: listed in tests/conformance/expected-failures.txt, but the suite \
                 has no such server or client auth scenario"
            )
        })
        .collect()
}

/// One check of a scenario, as the suite reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Check {
    id: String,
    status: String,
    message: String,
}

/// What the suite reported for one scenario.
#[derive(Debug, Clone)]
struct Outcome {
    /// Every check but the INFO records of traffic, sorted.
    checks: Vec<Check>,
}

impl Outcome {
    fn from_checks(checks: &Value) -> Outcome {
        let mut checks: Vec<Check> = checks
            .as_array()
            .expect("checks.json holds an array")
            .iter()
            .filter(|check| check["status"] != "INFO")
            .map(|check| Check {
                id: check["id"].as_str().unwrap_or_default().to_owned(),
                status: check["status"].as_str().unwrap_or_default().to_owned(),
                // Server checks explain a failure in `errorMessage`, client checks in
                // `description`.
                message: check["errorMessage"]
                    .as_str()
                    .or_else(|| check["description"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect();
        checks.sort();
        Outcome { checks }
    }

    /// No FAILURE and no WARNING.
    fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.status == "SUCCESS")
    }

    /// The verdict and each check's status, what the two servers must agree on.
    fn verdict(&self) -> (bool, Vec<(&str, &str)>) {
        let statuses = self
            .checks
            .iter()
            .map(|check| (check.id.as_str(), check.status.as_str()))
            .collect();
        (self.passed(), statuses)
    }

    fn summary(&self) -> String {
        let successes = self.checks.iter().filter(|c| c.status == "SUCCESS").count();
        let verdict = if self.passed() { "pass" } else { "FAIL" };
        format!("{verdict} ({successes}/{} checks)", self.checks.len())
    }

    /// The checks that did not succeed, with the suite's messages.
    fn problems(&self) -> String {
        self.checks
            .iter()
            .filter(|check| check.status != "SUCCESS")
            .map(|check| format!("{} {}: {}", check.status, check.id, check.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs every server scenario of the suite against `url`, writing its results under
/// `target/conformance/<label>/`, and reads them back.
async fn run_suite(label: &str, url: &str) -> BTreeMap<String, Outcome> {
    let out = rmcp_authz_tests::repo_root()
        .join("target/conformance")
        .join(label);
    let _ = std::fs::remove_dir_all(&out);
    let results = out.join("results");
    std::fs::create_dir_all(&results).expect("create the results directory");
    let log = std::fs::File::create(out.join("suite-output.txt")).expect("create the suite log");
    let mut command = suite_command();
    command
        .args(["server", "--suite", "all", "--url", url, "--output-dir"])
        .arg(&results)
        .current_dir(&out)
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: could not start the suite: {e}"));
    let status = tokio::time::timeout(SUITE_TIMEOUT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{label}: the suite did not finish in {SUITE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{label}: waiting for the suite: {e}"));
    println!(
        "conformance: {label}: the suite ran in {:.1} s ({status}); its output is in {}",
        started.elapsed().as_secs_f64(),
        out.join("suite-output.txt").display()
    );

    // Each scenario's results are in `server-<scenario>-<timestamp>/checks.json`.
    let mut outcomes = BTreeMap::new();
    for entry in std::fs::read_dir(&results).expect("read the results directory") {
        let dir = entry.expect("a results entry").path();
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let scenario = name
            .strip_prefix("server-")
            .and_then(|rest| rest.get(..rest.len().checked_sub(TIMESTAMP_SUFFIX)?))
            .unwrap_or_else(|| panic!("{label}: unexpected results entry {name}"))
            .to_owned();
        let checks = std::fs::read_to_string(dir.join("checks.json"))
            .unwrap_or_else(|e| panic!("{label}: {}: {e}", dir.display()));
        let checks: Value = serde_json::from_str(&checks).expect("checks.json is JSON");
        let previous = outcomes.insert(scenario.clone(), Outcome::from_checks(&checks));
        assert!(previous.is_none(), "{label}: {scenario} ran twice");
    }
    outcomes
}

/// `-<ISO 8601 timestamp with ':' and '.' as '-'>`, as in `-2026-01-31T12-00-00-000Z`.
const TIMESTAMP_SUFFIX: usize = "-2026-01-31T12-00-00-000Z".len();

/// The scenarios `tests/conformance/expected-failures.txt` lists, each with its reason.
fn expected_failures() -> BTreeMap<String, String> {
    let path = rmcp_authz_tests::repo_root().join("tests/conformance/expected-failures.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut expected = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (scenario, reason) = line
            .split_once(':')
            .map(|(s, r)| (s.trim(), r.trim()))
            .filter(|(s, r)| !s.is_empty() && !r.is_empty())
            .unwrap_or_else(|| {
                panic!("{}: {line:?} is not `<scenario>: <reason>`", path.display())
            });
        let repeated = expected.insert(scenario.to_owned(), reason.to_owned());
        assert!(
            repeated.is_none(),
            "{}: {scenario} is listed twice",
            path.display()
        );
    }
    expected
}

/// A server on 127.0.0.1, stopped when dropped.
struct Serving(JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The bare everything server; returns its MCP endpoint.
async fn start_bare() -> (String, Serving) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let url = format!("http://{}/mcp", listener.local_addr().expect("local addr"));
    // As `Authz::serve` does for the protected server: no Nagle delay on SSE events.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, bare_app()).await;
    });
    (url, Serving(task))
}

/// The everything server behind `rmcp-authz`, and the proxy in front of it that presents a
/// token with every scope of the policy. The resource URI (and token audience) is the
/// proxy's URL, which is where clients reach the server, as behind any reverse proxy; the
/// proxy forwards the `Host` its clients send. Returns the proxy's MCP endpoint.
async fn start_protected() -> (String, Serving, Proxy) {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let url = format!("http://{}/mcp", front.local_addr().expect("local addr"));
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let verifier = issuer.verifier(url.clone()).build().expect("verifier");
    let policy = everything_policy();
    let scopes = policy.scopes_supported().to_vec();
    let authz = Authz::new(verifier, policy);
    let app = protected_app(&authz).expect("the policy fits the everything server");
    let back = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let upstream = back.local_addr().expect("local addr");
    let served = authz.clone();
    let task = tokio::spawn(async move {
        let _ = served.serve(back, app, std::future::pending()).await;
    });
    let token = issuer
        .token(url.clone())
        .subject("conformance")
        .client_id("conformance-suite")
        .scopes(&scopes)
        .expires_in(Duration::from_secs(3600))
        .mint()
        .expect("mint");
    let proxy = Proxy::start(front, upstream, &token);
    let serving = Serving(task);

    // The layer is in the path: straight to the server, without the proxy's token, an
    // `initialize` is refused with 401.
    let refused = reqwest::Client::new()
        .post(format!("http://{upstream}/mcp"))
        .header("host", url.trim_start_matches("http://").trim_end_matches("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"conformance-test","version":"1"}}}"#,
        )
        .send()
        .await
        .expect("POST to the protected server");
    assert_eq!(refused.status(), 401, "no token must be a 401: {refused:?}");
    (url, serving, proxy)
}

/// Fails unless the suite and Node installed under [`install_dir`] are the pinned ones.
fn assert_pinned_install() {
    assert_eq!(
        installed_suite(),
        pinned("@modelcontextprotocol/conformance"),
        "the installed conformance suite is not the pinned one: run ./scripts/setup-interop.sh"
    );
    let version = std::process::Command::new(node())
        .arg("--version")
        .output()
        .expect("run node --version");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("v{}", pinned("node")),
        "the installed Node is not the pinned one: run ./scripts/setup-interop.sh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_scenarios_pass_protected_exactly_as_bare() {
    assert_pinned_install();
    let (scenarios, client_scenarios) = tokio::join!(server_scenarios(), client_auth_scenarios());
    let expected = expected_failures();
    let (bare_url, _bare) = start_bare().await;
    let (protected_url, _protected, _proxy) = start_protected().await;

    let started = Instant::now();
    let (bare, protected) = tokio::join!(
        run_suite("bare", &bare_url),
        run_suite("protected", &protected_url)
    );

    let mut problems = unknown_entries(&expected, &scenarios, &client_scenarios);
    let listed: BTreeSet<&String> = scenarios.iter().collect();
    for (label, outcomes) in [("bare", &bare), ("protected", &protected)] {
        for stray in outcomes.keys().filter(|s| !listed.contains(s)) {
            problems.push(format!(
                "{stray}: {label} has results for a scenario not listed"
            ));
        }
    }

    let (mut bare_passed, mut protected_passed) = (0, 0);
    for scenario in &scenarios {
        let (Some(b), Some(p)) = (bare.get(scenario), protected.get(scenario)) else {
            problems.push(format!(
                "{scenario}: no results (bare: {}, protected: {})",
                bare.contains_key(scenario),
                protected.contains_key(scenario)
            ));
            continue;
        };
        bare_passed += usize::from(b.passed());
        protected_passed += usize::from(p.passed());
        println!(
            "conformance: {scenario:<32} bare {:<18} protected {}",
            b.summary(),
            p.summary()
        );
        if b.verdict() != p.verdict() {
            problems.push(format!(
                "{scenario}: protected differs from bare:\n    bare:      {}: {}\n    \
                 protected: {}: {}",
                b.summary(),
                b.problems(),
                p.summary(),
                p.problems()
            ));
        }
        for (label, outcome) in [("bare", b), ("protected", p)] {
            match (expected.get(scenario), outcome.passed()) {
                (None, false) => problems.push(format!(
                    "{scenario}: fails {label}, unexpectedly: {}",
                    outcome.problems()
                )),
                (Some(reason), true) => problems.push(format!(
                    "{scenario}: passes {label}, but tests/conformance/expected-failures.txt \
                     expects it to fail ({reason}): remove it from the file"
                )),
                _ => {}
            }
        }
    }
    println!(
        "conformance: {} server scenarios: bare {bare_passed} pass, protected \
         {protected_passed} pass, {} expected to fail; {:.1} s",
        scenarios.len(),
        scenarios
            .iter()
            .filter(|s| expected.contains_key(*s))
            .count(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "the conformance suite's server scenarios did not come out as expected \
         (results under target/conformance/):\n  {}",
        problems.join("\n  ")
    );
}

/// How long one client scenario may take before the test fails; the suite gives the
/// client 30 s of it.
const CLIENT_SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Client scenarios run at the same time: each is a Node process (the suite's mock servers)
/// and the client, mostly waiting on each other.
const CLIENT_SCENARIOS_AT_ONCE: usize = 6;

/// The conformance client, as the suite's `--command`.
fn client_command() -> String {
    let path = env!("CARGO_BIN_EXE_conformance_client");
    assert!(
        !path.contains(char::is_whitespace),
        "the suite splits its --command at spaces, and the client's path has one: {path}"
    );
    path.to_owned()
}

/// What the suite reported for one client scenario.
#[derive(Debug)]
struct ClientOutcome {
    /// The scenario's checks; `None` when the suite wrote none.
    outcome: Option<Outcome>,
    /// The suite's exit status, which also counts the client's exit status (unless the
    /// scenario expects the client to fail) and its time limit.
    status: std::process::ExitStatus,
    elapsed: Duration,
    /// Where the suite's output and the scenario's results are.
    dir: PathBuf,
}

impl ClientOutcome {
    fn passed(&self) -> bool {
        self.status.success() && self.outcome.as_ref().is_some_and(Outcome::passed)
    }

    fn summary(&self) -> String {
        let verdict = if self.passed() { "pass" } else { "FAIL" };
        let checks = match &self.outcome {
            Some(outcome) => {
                let successes = outcome
                    .checks
                    .iter()
                    .filter(|c| c.status == "SUCCESS")
                    .count();
                format!("{successes}/{} checks", outcome.checks.len())
            }
            None => "no results".to_owned(),
        };
        let status = self
            .status
            .code()
            .map_or_else(|| self.status.to_string(), |code| format!("exit {code}"));
        format!(
            "{verdict} ({checks}, suite {status}) {:.1} s",
            self.elapsed.as_secs_f64()
        )
    }

    fn problems(&self) -> String {
        let checks = self
            .outcome
            .as_ref()
            .map(Outcome::problems)
            .unwrap_or_default();
        format!(
            "suite {}; {checks} (the suite's output, the client's stderr.txt and checks.json \
             are under {})",
            self.status,
            self.dir.display()
        )
    }
}

/// The files named `name` under `dir`, at any depth.
fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if path.file_name().is_some_and(|file| file == name) {
            found.push(path);
        }
    }
    found
}

/// Runs one client scenario of the suite against `client`, writing its results under
/// `target/conformance/client/<scenario>/`, and reads them back.
async fn run_client_scenario(scenario: &str, client: &str) -> ClientOutcome {
    let dir = rmcp_authz_tests::repo_root()
        .join("target/conformance/client")
        .join(scenario.replace('/', "-"));
    let results = dir.join("results");
    std::fs::create_dir_all(&results).expect("create the results directory");
    let log = std::fs::File::create(dir.join("suite-output.txt")).expect("create the suite log");
    let mut command = suite_command();
    command
        .args(["client", "--command", client, "--scenario", scenario])
        .arg("--output-dir")
        .arg(&results)
        .current_dir(&dir)
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{scenario}: could not start the suite: {e}"));
    let status = tokio::time::timeout(CLIENT_SCENARIO_TIMEOUT, child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!("{scenario}: the suite did not finish in {CLIENT_SCENARIO_TIMEOUT:?}")
        })
        .unwrap_or_else(|e| panic!("{scenario}: waiting for the suite: {e}"));
    let elapsed = started.elapsed();

    // The results are in `<scenario>-<timestamp>/checks.json`; the `/` in the scenario's
    // name makes a directory of its prefix.
    let checks = find_files(&results, "checks.json");
    assert!(
        checks.len() <= 1,
        "{scenario}: more than one checks.json: {checks:?}"
    );
    let outcome = checks.first().map(|path| {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{scenario}: {}: {e}", path.display()));
        Outcome::from_checks(&serde_json::from_str(&text).expect("checks.json is JSON"))
    });
    ClientOutcome {
        outcome,
        status,
        elapsed,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_auth_scenarios_pass_with_rmcp_client_auth() {
    use futures::StreamExt as _;

    assert_pinned_install();
    let (server_scenarios, scenarios) = tokio::join!(server_scenarios(), client_auth_scenarios());
    let expected = expected_failures();
    let client = client_command();
    let _ =
        std::fs::remove_dir_all(rmcp_authz_tests::repo_root().join("target/conformance/client"));

    let started = Instant::now();
    let outcomes: BTreeMap<String, ClientOutcome> = futures::stream::iter(scenarios.clone())
        .map(|scenario| {
            let client = client.clone();
            async move {
                let outcome = run_client_scenario(&scenario, &client).await;
                (scenario, outcome)
            }
        })
        .buffer_unordered(CLIENT_SCENARIOS_AT_ONCE)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut problems = unknown_entries(&expected, &server_scenarios, &scenarios);
    let mut passed = 0;
    for scenario in &scenarios {
        let outcome = &outcomes[scenario];
        passed += usize::from(outcome.passed());
        let listed = if expected.contains_key(scenario) {
            ", expected to fail"
        } else {
            ""
        };
        println!(
            "conformance: client {scenario:<44} {}{listed}",
            outcome.summary()
        );
        match (expected.get(scenario), outcome.passed()) {
            (None, false) => problems.push(format!(
                "{scenario}: fails, unexpectedly: {}",
                outcome.problems()
            )),
            (Some(reason), true) => problems.push(format!(
                "{scenario}: passes, but tests/conformance/expected-failures.txt expects it to \
                 fail ({reason}): remove it from the file"
            )),
            _ => {}
        }
    }
    println!(
        "conformance: {} client auth scenarios: {passed} pass, {} expected to fail; {:.1} s",
        scenarios.len(),
        scenarios
            .iter()
            .filter(|s| expected.contains_key(*s))
            .count(),
        elapsed.as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "the conformance suite's client auth scenarios did not come out as expected \
         (results under target/conformance/client/):\n  {}",
        problems.join("\n  ")
    );
}
