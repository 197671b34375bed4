//! The examples run as real processes: what they print when they cannot start (the
//! error's message and causes, never its `Debug` form), and what `notes_http`'s flags do.
//!
//! `cargo test -p rmcp-authz-examples` (and `cargo test --workspace`) builds the examples
//! before running this; when run alone (`--test examples`), a missing example, or one older
//! than its source or the examples' library, is built first with `cargo build --example`.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ErrorCode};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz_examples::report::Report;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long an example may take to start, or to fail.
const START: Duration = Duration::from_secs(60);

const ISSUER: &str = "https://auth.examples.test.invalid";
const AUDIENCE: &str = "https://notes.examples.test/mcp";

// ---------------------------------------------------------------------------------------
// Running the examples
// ---------------------------------------------------------------------------------------

/// The built example `name`, next to this test binary (`target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let _one_build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !is_fresh(name, &path) {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "-p", "rmcp-authz-examples", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        // The features this test binary was built with (`cedar_notes` needs `cedar`).
        if cfg!(feature = "cedar") {
            cargo.args(["--features", "cedar"]);
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "cargo build --example {name} failed");
    }
    path
}

/// Whether `binary`, example `name`, exists and is newer than its own source and the
/// examples' library (every `.rs` file here that is not another example's).
fn is_fresh(name: &str, binary: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(binary) else {
        return false;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let others = other_examples(dir, name);
    std::fs::read_dir(dir)
        .expect("the examples dir")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rs") && !others.contains(p))
        .all(|p| modified(&p).is_none_or(|m: SystemTime| m <= built))
}

/// The source files of the `[[example]]` targets in `dir/Cargo.toml` other than `name`.
fn other_examples(dir: &Path, name: &str) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("examples/Cargo.toml");
    let value = |line: &str, key: &str| {
        line.strip_prefix(key)
            .and_then(|rest| rest.trim_start().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    let mut examples: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut in_example = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_example = line == "[[example]]";
            if in_example {
                examples.push((None, None));
            }
        } else if let (true, Some(last)) = (in_example, examples.last_mut()) {
            if let Some(v) = value(line, "name") {
                last.0 = Some(v);
            } else if let Some(v) = value(line, "path") {
                last.1 = Some(v);
            }
        }
    }
    examples
        .into_iter()
        .filter(|(n, _)| n.as_deref() != Some(name))
        .filter_map(|(_, path)| path.map(|p| dir.join(p)))
        .collect()
}

/// Runs example `name` with `args` until it exits (killed after [`START`]).
fn run_to_exit(name: &str, args: &[&str]) -> Output {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let deadline = Instant::now() + START;
    while child.try_wait().expect("wait for the example").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the output");
            panic!(
                "{name} {args:?} did not exit within {START:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect the output")
}

/// Asserts that `out` is a start-up failure with exit status 1 whose standard error is
/// `error: ...` saying each of `says`, with no `Debug` form (no braces, no variant name).
fn assert_reported(out: &Output, says: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(stderr.starts_with("error: "), "{stderr}");
    for text in says {
        assert!(stderr.contains(text), "{text:?} is missing from: {stderr}");
    }
    for debug in ["{", "}", "TornTail", "Io ", "Os ", "kind: ", "Error: "] {
        assert!(
            !stderr.contains(debug),
            "a Debug form ({debug:?}) in: {stderr}"
        );
    }
    stderr
}

/// Asserts that `out` is clap's usage error (exit status 2) saying each of `says`.
fn assert_refused_flags(out: &Output, says: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{:?}: {stderr}", out.status);
    for text in says {
        assert!(stderr.contains(text), "{text:?} is missing from: {stderr}");
    }
}

/// A `notes_http` (or `cedar_notes`) process serving on a free port; killed on drop.
struct Server {
    child: Child,
    /// What it printed before its `Ctrl-C ...` line: tokens, the audit log, the URL.
    banner: Vec<String>,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_example("notes_http", args)
    }

    /// Example `name` (a server printing the same banner as `notes_http`) with `args`.
    fn start_example(name: &str, args: &[&str]) -> Server {
        let mut child = Command::new(example(name))
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line.starts_with("Ctrl-C") => {
                    let url = banner
                        .iter()
                        .find_map(|l: &String| l.strip_prefix("notes MCP server: "))
                        .and_then(|rest| rest.split_whitespace().next())
                        .expect("the banner names the server's URL")
                        .to_owned();
                    return Server { child, banner, url };
                }
                Ok(line) => banner.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut stderr);
                    }
                    let _ = child.wait();
                    panic!(
                        "{name} {args:?} did not start; stdout:\n{}\nstderr:\n{stderr}",
                        banner.join("\n")
                    );
                }
            }
        }
    }

    /// The banner's line that starts with `prefix`.
    fn banner_line(&self, prefix: &str) -> &str {
        self.banner
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:#?}", self.banner))
    }

    /// The development token printed for `agent`.
    fn dev_token(&self, agent: &str) -> String {
        let at = self
            .banner
            .iter()
            .position(|l| l.starts_with(&format!("{agent} (")))
            .unwrap_or_else(|| panic!("no token for {agent} in {:#?}", self.banner));
        self.banner[at + 1].clone()
    }

    /// Calls tool `name` with `arguments` as the holder of `token`.
    async fn call(
        &self,
        token: &str,
        name: &'static str,
        arguments: Value,
    ) -> Result<CallToolResult, ServiceError> {
        let client = connect(&self.url, token).await;
        let mut params = CallToolRequestParams::new(name);
        if let Value::Object(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let result = client.call_tool(params).await;
        let _ = client.cancel().await;
        result
    }

    /// Stops the server (its audit events are already written: the tests use --durable).
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(url: &str, token: &str) -> RunningService<RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .expect("connect to notes_http")
}

/// `name` in `dir`, as a command-line argument.
fn path_of(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

/// The one development issuer of this test binary.
fn issuer() -> &'static DevIssuer {
    static ISSUER_KEY: OnceLock<DevIssuer> = OnceLock::new();
    ISSUER_KEY.get_or_init(|| DevIssuer::new(ISSUER).expect("a development issuer"))
}

/// Writes `rmcp-authz.toml` in `dir`: a verifier trusting [`issuer`] for [`AUDIENCE`], the
/// notes policy's read and write rules, then `rest`.
fn write_config(dir: &TempDir, rest: &str) -> String {
    std::fs::write(dir.path().join("jwks.json"), issuer().jwks().to_string()).expect("write jwks");
    let text = format!(
        "[verifier]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"jwks.json\"\n\n\
         [policy.tools]\nlist_notes = \"notes:read\"\nwrite_note = \"notes:write\"\n{rest}"
    );
    std::fs::write(dir.path().join("rmcp-authz.toml"), text).expect("write the configuration");
    path_of(dir, "rmcp-authz.toml")
}

/// A token from [`issuer`] for [`AUDIENCE`] with `scopes`.
fn config_token(scopes: &[&str]) -> String {
    issuer()
        .token(AUDIENCE)
        .subject("alice")
        .client_id("notes-app")
        .scopes(scopes)
        .mint()
        .expect("mint a token")
}

/// The events of an audit file.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read the audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit event"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Start-up errors: the message and its causes, never the Debug form
// ---------------------------------------------------------------------------------------

#[test]
fn notes_http_audit_file_with_a_torn_tail_is_reported_by_its_message() {
    let dir = TempDir::new().unwrap();
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(&audit, "{\"schema_version\":1,\"id\":\"cut-short").unwrap();
    let out = run_to_exit(
        "notes_http",
        &["--port", "0", "--audit-file", &audit.display().to_string()],
    );
    assert_reported(
        &out,
        &[
            &format!("audit file {}", audit.display()),
            "the last record is incomplete",
            "rmcp-authz audit verify",
        ],
    );
}

#[test]
fn notes_http_missing_config_file_is_reported_by_its_message() {
    let dir = TempDir::new().unwrap();
    let missing = path_of(&dir, "missing.toml");
    let out = run_to_exit("notes_http", &["--port", "0", "--config", &missing]);
    assert_reported(
        &out,
        &[
            &format!("cannot read configuration file {missing}"),
            "No such file",
        ],
    );
}

#[test]
fn notes_http_port_in_use_names_the_port_and_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_to_exit("notes_http", &["--port", &port]);
    assert_reported(
        &out,
        &[&format!("cannot listen on 127.0.0.1:{port}"), "--port"],
    );
}

#[test]
fn notes_stdio_missing_jwks_file_is_reported_by_its_message() {
    let dir = TempDir::new().unwrap();
    let missing = path_of(&dir, "missing.jwks.json");
    let out = run_to_exit(
        "notes_stdio",
        &[
            "--issuer",
            ISSUER,
            "--jwks",
            &missing,
            "--audience",
            "urn:notes",
        ],
    );
    assert_reported(&out, &[&format!("cannot read key file {missing}")]);
}

/// An error whose message does not say its cause, over one that does.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot start the audit writer")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn report_adds_each_cause_the_message_does_not_say() {
    let error = Outer(std::io::Error::other("too many threads"));
    assert_eq!(
        Report(&error).to_string(),
        "cannot start the audit writer\n  caused by: too many threads"
    );
}

#[test]
fn report_leaves_out_a_cause_the_message_already_says() {
    let error = rmcp_authz::config::Config::from_file("/nonexistent/rmcp-authz.toml")
        .expect_err("no such file");
    let text = Report(&error).to_string();
    assert!(
        text.starts_with("cannot read configuration file /nonexistent/rmcp-authz.toml: "),
        "{text}"
    );
    assert!(!text.contains("caused by"), "{text}");
}

// ---------------------------------------------------------------------------------------
// notes_http: --config and the other flags
// ---------------------------------------------------------------------------------------

#[test]
fn notes_http_with_config_prints_the_configured_audience() {
    let dir = TempDir::new().unwrap();
    let config = write_config(&dir, "");
    let server = Server::start(&["--config", &config]);
    let line = server.banner_line("notes MCP server: ");
    assert!(line.ends_with(&format!("(audience {AUDIENCE})")), "{line}");
    let metadata = server.banner_line("metadata: ");
    assert!(
        metadata.contains("notes.examples.test"),
        "the metadata names the configured resource: {metadata}"
    );
}

#[test]
fn notes_http_config_refuses_a_different_audience_naming_both_flags() {
    let dir = TempDir::new().unwrap();
    let config = write_config(&dir, "");
    let out = run_to_exit(
        "notes_http",
        &[
            "--port",
            "0",
            "--config",
            &config,
            "--audience",
            "https://other.example/mcp",
        ],
    );
    assert_refused_flags(
        &out,
        &["--audience", "--config", AUDIENCE, "drop --audience"],
    );
}

#[test]
fn notes_http_config_refuses_issuer_and_jwks_saying_where_they_go() {
    let dir = TempDir::new().unwrap();
    let config = write_config(&dir, "");
    let jwks = path_of(&dir, "jwks.json");
    let out = run_to_exit(
        "notes_http",
        &[
            "--port", "0", "--config", &config, "--issuer", ISSUER, "--jwks", &jwks,
        ],
    );
    assert_refused_flags(&out, &["--issuer", "--jwks", "--config", "jwks_file"]);
}

#[test]
fn notes_http_config_with_an_audit_section_refuses_audit_flags_saying_where_to_set_them() {
    let dir = TempDir::new().unwrap();
    let config = write_config(&dir, "\n[audit]\nfile = \"audit.jsonl\"\n");
    let out = run_to_exit(
        "notes_http",
        &["--port", "0", "--config", &config, "--fail-closed"],
    );
    assert_refused_flags(
        &out,
        &[
            "--fail-closed",
            "--config",
            "[audit] section",
            "fail_closed = true",
        ],
    );
    assert!(
        !dir.path().join("audit.jsonl").exists(),
        "refused before opening the file's audit log"
    );
}

#[test]
fn notes_http_audit_flags_without_an_audit_file_are_refused() {
    let out = run_to_exit("notes_http", &["--port", "0", "--fail-closed"]);
    assert_refused_flags(&out, &["--fail-closed", "--audit-file"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_http_config_without_an_audit_section_takes_the_audit_flags() {
    let dir = TempDir::new().unwrap();
    let config = write_config(&dir, "");
    let audit = path_of(&dir, "audit.jsonl");
    let server = Server::start(&["--config", &config, "--audit-file", &audit, "--durable"]);
    assert!(server.banner_line("Audit log: ").contains("durable"));
    let result = server
        .call(&config_token(&["notes:read"]), "list_notes", json!({}))
        .await
        .expect("list_notes is allowed");
    assert_ne!(result.is_error, Some(true));
    server.stop();
    let events = events(Path::new(&audit));
    assert!(
        events
            .iter()
            .any(|e| e["target"] == "list_notes" && e["decision"] == "allow"),
        "{events:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// notes_http: the audit flags take effect
// ---------------------------------------------------------------------------------------

/// `/dev/full` opens, and every write to it fails (ENOSPC): an audit log that cannot be
/// written.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_http_fail_closed_refuses_requests_it_cannot_audit() {
    let server = Server::start(&["--audit-file", "/dev/full", "--fail-closed"]);
    assert!(server.banner_line("Audit log: ").contains("fail-closed"));
    let reader = server.dev_token("reader-agent");
    // Every request is audited, `initialize` too: the refusal comes at the first request.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header(reader),
    );
    let refused = match ClientConfig::default().serve(transport).await {
        Err(ClientInitializeError::JsonRpcError(e)) => e,
        Err(other) => panic!("expected a JSON-RPC refusal (-32005), got {other}"),
        Ok(client) => {
            let result = client
                .call_tool(CallToolRequestParams::new("list_notes"))
                .await;
            let _ = client.cancel().await;
            match result {
                Err(ServiceError::McpError(e)) => e,
                other => panic!("expected the call to be refused (-32005), got {other:?}"),
            }
        }
    };
    assert_eq!(refused.code, ErrorCode(-32005), "{refused:?}");
    server.stop();

    // Without --fail-closed the same call is served (and the failure counted).
    let server = Server::start(&["--audit-file", "/dev/full"]);
    let reader = server.dev_token("reader-agent");
    let result = server
        .call(&reader, "list_notes", json!({}))
        .await
        .expect("served without --fail-closed");
    assert_ne!(result.is_error, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_http_rotate_bytes_rotates_the_audit_file_and_keeps_the_chain() {
    let dir = TempDir::new().unwrap();
    let audit = path_of(&dir, "audit.jsonl");
    let server = Server::start(&["--audit-file", &audit, "--durable", "--rotate-bytes", "1"]);
    assert!(
        server
            .banner_line("Audit log: ")
            .contains("rotated at 1 bytes")
    );
    let reader = server.dev_token("reader-agent");
    for _ in 0..3 {
        server
            .call(&reader, "list_notes", json!({}))
            .await
            .expect("list_notes is allowed");
    }
    server.stop();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl."))
        })
        .collect();
    assert!(files.len() >= 2, "rotated files: {files:?}");
    files.sort();
    files.push(PathBuf::from(&audit));
    let report = rmcp_authz::audit::verify_chain(&files).expect("one chain across the files");
    assert!(report.records >= 3, "{report:?}");
    assert!(report.starts_at_genesis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_http_record_arguments_records_them_with_fields_redacted() {
    let dir = TempDir::new().unwrap();
    let audit = path_of(&dir, "audit.jsonl");
    let server = Server::start(&[
        "--audit-file",
        &audit,
        "--durable",
        "--record-arguments",
        "--redact",
        "text",
    ]);
    assert!(
        server
            .banner_line("Audit log: ")
            .contains("arguments in clear, text redacted")
    );
    let writer = server.dev_token("writer-agent");
    server
        .call(
            &writer,
            "write_note",
            json!({ "id": "n1", "text": "secret words" }),
        )
        .await
        .expect("write_note is allowed");
    server.stop();
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains("secret words"), "{text}");
    let events = events(Path::new(&audit));
    let call = events
        .iter()
        .find(|e| e["target"] == "write_note")
        .unwrap_or_else(|| panic!("no write_note event in {events:#?}"));
    assert_eq!(
        call["arguments"],
        json!({ "id": "n1", "text": "[redacted]" })
    );
    assert!(call["arguments_hmac"].is_string());
}

// ---------------------------------------------------------------------------------------
// cedar_notes: the Cedar policies decide on the arguments
// ---------------------------------------------------------------------------------------

/// The example as a process: the tokens it prints meet `examples/cedar/notes.cedar`, and
/// its audit log names the deciding policies. (`tests/tests/cedar_e2e.rs` covers the
/// policies in full.)
#[cfg(feature = "cedar")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cedar_notes_decides_writes_on_their_folder_and_prints_how_to_call_it() {
    let dir = TempDir::new().unwrap();
    let audit = path_of(&dir, "audit.jsonl");
    let server = Server::start_example("cedar_notes", &["--audit-file", &audit]);
    assert!(
        server
            .banner_line("Cedar policies: ")
            .ends_with("notes.cedar")
    );
    assert!(server.banner_line("  curl ").contains(&server.url));
    let writer = server.dev_token("writer");
    let note = |folder: &str| json!({"folder": folder, "title": "t", "text": "x"});
    let wrote = server
        .call(&writer, "write_note", note("alice"))
        .await
        .expect("alice's own folder");
    assert_ne!(wrote.is_error, Some(true), "{wrote:?}");
    let refused = server.call(&writer, "write_note", note("bob")).await;
    assert!(refused.is_err(), "bob's folder: {refused:?}");
    let delegated = server.dev_token("delegated");
    let refused = server.call(&delegated, "write_note", note("alice")).await;
    assert!(refused.is_err(), "a delegated write: {refused:?}");
    server.stop();
    let decided: Vec<(String, Value)> = events(Path::new(&audit))
        .into_iter()
        .filter(|e| e["target"] == "write_note")
        .map(|e| {
            (
                e["decision"].as_str().unwrap_or_default().to_owned(),
                e["policies"].clone(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("allow".to_owned(), json!(["write"])),
            ("deny".to_owned(), json!(["own-folder-only"])),
            ("deny".to_owned(), json!(["delegated-read-only"])),
        ]
    );
}
