//! Interop tests: the official MCP client SDKs — Python (`mcp` on PyPI) and TypeScript
//! (`@modelcontextprotocol/sdk` on npm) — against the notes server behind `rmcp-authz`
//! over real HTTP on 127.0.0.1, stateful and stateless.
//!
//! Each test starts a [`TestServer`], mints a `notes:read` token and runs a client script
//! from `tests/clients/` as a child process. The script prints one JSON object with what
//! it observed, and the test asserts on it:
//!
//! - `tools/list` through the SDK shows exactly the tools `notes:read` may call;
//! - `list_notes` through the SDK succeeds and returns `welcome`;
//! - `write_note` (needs `notes:write`) is refused with a 403 whose `WWW-Authenticate`
//!   carries `error="insufficient_scope"` and `scope="notes:write"`;
//! - connecting with no token is refused with a 401 challenge naming the metadata.
//!
//! Neither SDK hands the HTTP status or the `WWW-Authenticate` header of a refused request
//! to the caller when no OAuth provider is configured (the tests send the token as a plain
//! header and never use the SDKs' OAuth machinery), so each script also records the HTTP
//! response that the SDK's own transport received for that request (an `httpx2` response
//! hook on the HTTP client given to the Python SDK, a `fetch` wrapper given to the
//! TypeScript transport) and reads the challenge with the SDK's own parser
//! (`mcp.client.auth.utils.extract_field_from_www_auth`, `extractWWWAuthenticateParams`).
//! What each SDK itself reports is asserted separately:
//!
//! - Python `mcp` 2.3.0 (`mcp.Client` over `streamable_http_client`, with an
//!   `httpx2.AsyncClient` carrying `Authorization`): a non-2xx answer whose body is an
//!   `application/json` JSON-RPC error is surfaced as that error, `MCPError` with the
//!   body's code and message; the status and headers are dropped. So the 403 reaches the
//!   caller as `MCPError(-32003, "tools/call write_note needs scopes [\"notes:write\"];
//!   ...")` (the body's `data` carries `{"error": "insufficient_scope", "scope": ...}`),
//!   and the 401 as `MCPError(-32004, "this MCP server needs an OAuth access token
//!   ...")` (-32004 rather than -32001, which both SDKs use for their own request
//!   timeouts). With `mode="auto"` the SDK probes `server/discover` (401), falls back to
//!   `initialize` (401 again) and raises the second error.
//! - TypeScript `@modelcontextprotocol/sdk` 1.32.2 (`Client` over
//!   `StreamableHTTPClientTransport` with `requestInit.headers.Authorization`):
//!   `StreamableHTTPError` whose `code` is the HTTP status (403, 401) and whose message is
//!   "Streamable HTTP error: Error POSTing to endpoint: " and the body text. It reads
//!   `WWW-Authenticate` only when an `authProvider` is set.
//!
//! The SDKs are installed under `target/interop/` by `scripts/setup-interop.sh` (which
//! `scripts/test.sh` runs first), at the versions pinned in `tests/clients/`. If they are
//! missing the tests fail, saying so; they never skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp_authz_tests::server::TestServer;
use serde_json::Value;

/// How long one client script may run before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a `notes:read` token may call.
const READ_TOOLS: [&str; 3] = ["list_notes", "read_note", "whoami"];

fn clients_dir() -> PathBuf {
    rmcp_authz_tests::repo_root().join("tests/clients")
}

fn interop_dir() -> PathBuf {
    rmcp_authz_tests::repo_root().join("target/interop")
}

fn missing(what: &Path) -> ! {
    panic!(
        "{} is missing: run scripts/setup-interop.sh (it installs the Python and TypeScript \
         MCP SDKs under target/interop/; scripts/test.sh runs it before the tests)",
        what.display()
    )
}

/// The `mcp` version pinned in `tests/clients/requirements.txt`.
fn pinned_python_sdk() -> String {
    let path = clients_dir().join("requirements.txt");
    let text = std::fs::read_to_string(&path).expect("read requirements.txt");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("mcp=="))
        .unwrap_or_else(|| panic!("no mcp== pin in {}", path.display()))
        .to_owned()
}

/// The `@modelcontextprotocol/sdk` version pinned in `tests/clients/package.json`.
fn pinned_ts_sdk() -> String {
    let path = clients_dir().join("package.json");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read package.json"))
            .expect("package.json is JSON");
    json["dependencies"]["@modelcontextprotocol/sdk"]
        .as_str()
        .expect("@modelcontextprotocol/sdk pinned")
        .to_owned()
}

/// Runs a client script to completion (bounded by [`CLIENT_TIMEOUT`]) and parses the JSON
/// object it prints last.
async fn run_client(
    what: &str,
    mut command: tokio::process::Command,
    server: &TestServer,
    token: &str,
) -> Value {
    command
        .env("INTEROP_URL", &server.url)
        .env("INTEROP_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: could not start {command:?}: {e}"));
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: the client did not finish in {CLIENT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: waiting for the client: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: the client failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what}: the client printed nothing.\nstderr:\n{stderr}"));
    let report: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}\nstderr:\n{stderr}"));
    println!("{what}: {report}");
    if !stderr.trim().is_empty() {
        println!("{what}: stderr:\n{stderr}");
    }
    report
}

/// The Python SDK client (`tests/clients/py_client.py`) with `Client(mode=mode)`.
async fn run_python(server: &TestServer, token: &str, mode: &str) -> Value {
    let python = interop_dir().join("venv/bin/python");
    if !python.exists() {
        missing(&python);
    }
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(clients_dir().join("py_client.py"))
        .env("INTEROP_MODE", mode)
        .env("PYTHONUNBUFFERED", "1");
    run_client(&format!("python mcp ({mode})"), command, server, token).await
}

/// The TypeScript SDK client (`tests/clients/ts_client.mjs`), copied next to the
/// `node_modules/` it imports the SDK from.
async fn run_typescript(server: &TestServer, token: &str) -> Value {
    let node_dir = interop_dir().join("node");
    let sdk = node_dir.join("node_modules/@modelcontextprotocol/sdk/package.json");
    if !sdk.exists() {
        missing(&sdk);
    }
    let source = std::fs::read(clients_dir().join("ts_client.mjs")).expect("read ts_client.mjs");
    // Written under a unique name, then renamed: concurrent tests never see a partial file.
    let script = node_dir.join("ts_client.mjs");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let staged = node_dir.join(format!(".ts_client.{}.{nanos}.tmp", std::process::id()));
    std::fs::write(&staged, source).expect("stage ts_client.mjs");
    std::fs::rename(&staged, &script).expect("place ts_client.mjs");
    let mut command = tokio::process::Command::new("node");
    command.arg(&script).current_dir(&node_dir);
    run_client("typescript sdk", command, server, token).await
}

fn str_at<'a>(report: &'a Value, pointer: &str) -> Option<&'a str> {
    report.pointer(pointer).and_then(Value::as_str)
}

/// The checks both SDKs share: the tool listing, the allowed call, and the HTTP exchanges
/// of the refused call and of the connection without a token, as the SDK's own transport
/// received them and as the SDK's own challenge parser reads them.
fn assert_common(what: &str, server: &TestServer, report: &Value, pinned: &str) {
    assert_eq!(
        str_at(report, "/sdk_version"),
        Some(pinned),
        "{what}: the installed SDK is not the pinned one: run scripts/setup-interop.sh"
    );

    // tools/list, filtered to what notes:read may call.
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no tool list: {report}"))
        .iter()
        .map(|t| t.as_str().expect("tool names are strings"))
        .collect();
    let listed: BTreeSet<&str> = tools.iter().copied().collect();
    assert_eq!(listed.len(), tools.len(), "{what}: duplicates in {tools:?}");
    assert_eq!(
        listed,
        READ_TOOLS.into_iter().collect::<BTreeSet<_>>(),
        "{what}: tools/list"
    );

    // An allowed call.
    assert_eq!(
        report["allowed"]["is_error"],
        Value::Bool(false),
        "{what}: {report}"
    );
    assert_eq!(
        report["allowed"]["texts"],
        serde_json::json!(["welcome"]),
        "{what}: list_notes"
    );

    // The refused call: 403 with the insufficient_scope challenge naming notes:write.
    let forbidden = &report["forbidden"];
    assert!(
        forbidden.get("result").is_none(),
        "{what}: write_note returned a result: {forbidden}"
    );
    let http = &forbidden["http"];
    assert_eq!(
        http["status"], 403,
        "{what}: write_note status: {forbidden}"
    );
    let headers = http["www_authenticate"].as_array().expect("header list");
    assert_eq!(headers.len(), 1, "{what}: one WWW-Authenticate: {http}");
    assert!(
        headers[0].as_str().unwrap().starts_with("Bearer "),
        "{what}: {http}"
    );
    assert_eq!(
        str_at(http, "/challenge/error"),
        Some("insufficient_scope"),
        "{what}: {http}"
    );
    assert_eq!(
        str_at(http, "/challenge/scope"),
        Some("notes:write"),
        "{what}: {http}"
    );
    let metadata = server.authz.resource_metadata_url();
    assert_eq!(
        str_at(http, "/challenge/resource_metadata"),
        Some(metadata.as_str()),
        "{what}: {http}"
    );

    // No token: 401 with a challenge pointing at the metadata, and no error code (RFC
    // 6750 section 3.1: a request with no credentials gets no error code).
    let no_token = &report["no_token"];
    assert!(
        no_token.get("connected").is_none(),
        "{what}: connected without a token: {no_token}"
    );
    let http = &no_token["http"];
    assert_eq!(http["status"], 401, "{what}: no token: {no_token}");
    let headers = http["www_authenticate"].as_array().expect("header list");
    assert_eq!(headers.len(), 1, "{what}: one WWW-Authenticate: {http}");
    assert!(
        headers[0].as_str().unwrap().starts_with("Bearer "),
        "{what}: {http}"
    );
    assert_eq!(http["challenge"]["error"], Value::Null, "{what}: {http}");
    assert_eq!(
        str_at(http, "/challenge/resource_metadata"),
        Some(metadata.as_str()),
        "{what}: {http}"
    );
}

/// What the Python SDK itself raises: the JSON-RPC error from the body of the refusal
/// (`MCPError`, code and message); it keeps neither the status nor the headers.
fn assert_python(what: &str, server: &TestServer, report: &Value) {
    assert_common(what, server, report, &pinned_python_sdk());

    let err = &report["forbidden"]["sdk_error"];
    assert_eq!(str_at(err, "/type"), Some("MCPError"), "{what}: {err}");
    assert_eq!(
        err["code"],
        rmcp_authz::server::FORBIDDEN.0,
        "{what}: {err}"
    );
    let message = str_at(err, "/message").unwrap_or_default();
    assert!(
        message.contains("write_note") && message.contains("notes:write"),
        "{what}: the refusal names the tool and the scope it needs: {err}"
    );

    // The code of this error is the body's: UNAUTHENTICATED, which is not the SDKs' own
    // REQUEST_TIMEOUT (-32001), so a caller cannot mistake it for a timeout.
    let err = &report["no_token"]["sdk_error"];
    assert_eq!(str_at(err, "/type"), Some("MCPError"), "{what}: {err}");
    assert_eq!(
        err.pointer("/code").and_then(Value::as_i64),
        Some(i64::from(rmcp_authz::server::UNAUTHENTICATED.0)),
        "{what}: {err}"
    );
    assert!(
        str_at(err, "/message").is_some_and(|m| m.contains("access token")),
        "{what}: {err}"
    );
}

/// What the TypeScript SDK itself throws: `StreamableHTTPError` with the HTTP status as
/// its `code` and the body text in its message; it does not read `WWW-Authenticate`
/// without an `authProvider`.
fn assert_typescript(what: &str, server: &TestServer, report: &Value) {
    assert_common(what, server, report, &pinned_ts_sdk());

    let err = &report["forbidden"]["sdk_error"];
    assert_eq!(
        str_at(err, "/type"),
        Some("StreamableHTTPError"),
        "{what}: {err}"
    );
    assert_eq!(err["code"], 403, "{what}: {err}");
    let message = str_at(err, "/message").unwrap_or_default();
    assert!(
        message.contains("write_note") && message.contains("notes:write"),
        "{what}: the refusal names the tool and the scope it needs: {err}"
    );

    let err = &report["no_token"]["sdk_error"];
    assert_eq!(
        str_at(err, "/type"),
        Some("StreamableHTTPError"),
        "{what}: {err}"
    );
    assert_eq!(err["code"], 401, "{what}: {err}");
}

/// `mode` is the Python SDK's `Client(mode=...)`; `protocol` the version it must settle
/// on with our server.
async fn python_case(stateful: bool, mode: &str, protocol: &str) {
    let server = TestServer::start(stateful).await;
    let token = server.token(&["notes:read"]);
    let report = run_python(&server, &token, mode).await;
    let what = format!("python mcp, {mode} mode, stateful={stateful}");
    assert_eq!(
        str_at(&report, "/protocol_version"),
        Some(protocol),
        "{what}: negotiated protocol"
    );
    assert_python(&what, &server, &report);
}

async fn typescript_case(stateful: bool) {
    let server = TestServer::start(stateful).await;
    let token = server.token(&["notes:read"]);
    let report = run_typescript(&server, &token).await;
    let what = format!("typescript sdk, stateful={stateful}");
    assert_eq!(
        str_at(&report, "/protocol_version"),
        Some("2025-11-25"),
        "{what}: negotiated protocol"
    );
    assert_typescript(&what, &server, &report);
}

/// Python SDK, initialize handshake (protocol 2025-11-25), server with sessions.
#[tokio::test]
async fn python_sdk_legacy_handshake_stateful() {
    python_case(true, "legacy", "2025-11-25").await;
}

/// Python SDK, initialize handshake, server without sessions.
#[tokio::test]
async fn python_sdk_legacy_handshake_stateless() {
    python_case(false, "legacy", "2025-11-25").await;
}

/// Python SDK, `mode="auto"`: `server/discover` settles on protocol 2026-07-28 (no
/// handshake, `Mcp-Method`/`Mcp-Name` headers), server with sessions.
#[tokio::test]
async fn python_sdk_auto_stateful() {
    python_case(true, "auto", "2026-07-28").await;
}

/// Python SDK, `mode="auto"` (protocol 2026-07-28), server without sessions.
#[tokio::test]
async fn python_sdk_auto_stateless() {
    python_case(false, "auto", "2026-07-28").await;
}

/// TypeScript SDK (initialize handshake, protocol 2025-11-25), server with sessions.
#[tokio::test]
async fn typescript_sdk_stateful() {
    typescript_case(true).await;
}

/// TypeScript SDK (initialize handshake), server without sessions.
#[tokio::test]
async fn typescript_sdk_stateless() {
    typescript_case(false).await;
}
