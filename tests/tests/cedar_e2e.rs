//! Cedar argument-level policy end to end: the `cedar_notes` example's server
//! (`rmcp_authz_examples::folder_notes`, policies in `examples/cedar/notes.cedar`) on
//! 127.0.0.1, driven by rmcp's own Streamable HTTP client, raw HTTP and the official
//! Python MCP SDK, with tokens from the development issuer for user `alice`.
//!
//! - a write into alice's own folder is allowed (by `write`);
//! - a write into bob's folder is a 403 naming `own-folder-only`;
//! - a delegated token (an `act` claim) is refused `write_note` (`delegated-read-only`)
//!   but allowed `read_note`; `purge` through a chain is refused by both forbids;
//! - a write into `shared` without `notes:share` is a step-up challenge naming it, and
//!   succeeds with a token that holds it;
//! - `tools/list` for a delegated token leaves out `write_note` and `purge`;
//! - the JSON Lines audit log names the determining policies of each decision.
//!
//! The Python SDK is installed under `target/interop/` by `scripts/setup-interop.sh`
//! (which `scripts/test.sh` runs first); if it is missing the test fails, saying so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::InsufficientScopeError;
use rmcp_authz::Authz;
use rmcp_authz::audit::{Auditor, Durability, JsonLines};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz_examples::folder_notes::{cedar_policies, router, scope_policy};
use rmcp_authz_tests::http::{STEP, challenge, post_to, send};
use rmcp_authz_tests::server::legacy_client;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

type Client = RunningService<RoleClient, ClientConfig>;

/// The `cedar_notes` server on 127.0.0.1 with an audit log, stopped when dropped.
struct Server {
    url: String,
    issuer: DevIssuer,
    audit_file: PathBuf,
    _dir: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Builds the server as the example does: the scope rules, the Cedar policies file,
    /// a durable JSON Lines audit log (each event is on disk before its answer).
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}/mcp", listener.local_addr().expect("local addr"));
        let dir = tempfile::tempdir().expect("temp dir");
        let audit_file = dir.path().join("audit.jsonl");
        let auditor = Auditor::builder(Arc::new(JsonLines::open(&audit_file).expect("open")))
            .durability(Durability::Durable)
            .build()
            .expect("auditor");
        let issuer = DevIssuer::new("https://auth.cedar.test.invalid").expect("dev issuer");
        let authz = Authz::builder(
            issuer.verifier(url.clone()).build().expect("verifier"),
            scope_policy(),
        )
        .cedar(cedar_policies().expect("examples/cedar/notes.cedar parses"))
        .auditor(auditor)
        .build();
        let app = router(&authz).expect("the policies fit the server's tools");
        let task = tokio::spawn(async move {
            let _ = authz.serve(listener, app, std::future::pending()).await;
        });
        Server {
            url,
            issuer,
            audit_file,
            _dir: dir,
            task,
        }
    }

    /// A token for alice through client `notes-agent`, acted for by `actor` if given.
    fn token(&self, scopes: &[&str], actor: Option<&str>) -> String {
        let mut token = self
            .issuer
            .token(&self.url)
            .subject("alice")
            .client_id("notes-agent")
            .scopes(scopes);
        if let Some(actor) = actor {
            token = token.actor(actor);
        }
        token.mint().expect("mint")
    }

    async fn client(&self, token: &str) -> Client {
        tokio::time::timeout(STEP, legacy_client(&self.url, token))
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// The audit log's events (every one is written before its answer: durable).
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_file)
            .expect("read the audit log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }
}

async fn call(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().expect("an object"));
    tokio::time::timeout(STEP, client.call_tool(params))
        .await
        .expect("answered in time")
}

fn text_of(result: &CallToolResult) -> String {
    assert_ne!(result.is_error, Some(true), "tool error: {result:?}");
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

/// `err` and its sources, as text.
fn error_texts(err: &ServiceError) -> Vec<String> {
    let mut out = vec![err.to_string()];
    if let ServiceError::TransportSend(e) = err {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.error.as_ref());
        while let Some(current) = source {
            out.push(current.to_string());
            source = current.source();
        }
    }
    out
}

/// Asserts `err` is a plain 403 (no step-up) whose body names `policy`.
fn assert_forbidden_by(err: &ServiceError, policy: &str, what: &str) {
    assert!(
        insufficient_scope(err).is_none(),
        "{what}: no scope would help, yet a step-up: {err:?}"
    );
    let texts = error_texts(err).join(" | ");
    assert!(
        texts.contains("403") && texts.contains(policy),
        "{what}: expected a 403 naming {policy}: {texts}"
    );
}

fn insufficient_scope(err: &ServiceError) -> Option<&InsufficientScopeError> {
    let ServiceError::TransportSend(e) = err else {
        return None;
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.error.as_ref());
    while let Some(current) = source {
        if let Some(found) = current.downcast_ref::<InsufficientScopeError>() {
            return Some(found);
        }
        source = current.source();
    }
    None
}

/// The raw answer to a `tools/call` of `tool` with `arguments`.
async fn raw_call(server: &Server, token: &str, tool: &str, arguments: Value) -> (u16, Value) {
    let body = json!({
        "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": { "name": tool, "arguments": arguments }
    });
    let raw = send(
        post_to(&server.url, body.to_string()).header("authorization", format!("Bearer {token}")),
    )
    .await;
    (raw.status, raw.message())
}

/// The one audit event of a `tools/call` of `tool` with `decision`, and `policies`.
fn assert_audited(events: &[Value], tool: &str, decision: &str, policies: &[&str]) {
    let found = events.iter().any(|e| {
        e["method"] == "tools/call"
            && e["target"] == tool
            && e["decision"] == decision
            && e["policies"] == json!(policies)
    });
    assert!(
        found,
        "no {decision} event for {tool} naming {policies:?} in:\n{}",
        events
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn arguments_delegation_and_step_up_are_decided_by_the_cedar_policies() {
    let server = Server::start().await;

    // An allowed write into alice's own folder, by the `write` permit.
    let writer = server.client(&server.token(&["notes:write"], None)).await;
    let wrote = call(
        &writer,
        "write_note",
        json!({"folder": "alice", "title": "plan", "text": "ship it"}),
    )
    .await
    .expect("alice writes into her own folder");
    assert_eq!(text_of(&wrote), "wrote alice/plan");

    // Another user's folder: forbidden by `own-folder-only`, whatever the scopes.
    let err = call(
        &writer,
        "write_note",
        json!({"folder": "bob", "title": "plan", "text": "x"}),
    )
    .await
    .expect_err("bob's folder is not alice's");
    assert_forbidden_by(&err, "own-folder-only", "write into bob's folder");
    let (status, message) = raw_call(
        &server,
        &server.token(&["notes:write"], None),
        "write_note",
        json!({"folder": "bob", "title": "plan", "text": "x"}),
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert_eq!(message["error"]["code"], -32003, "{message}");
    assert_eq!(
        message["error"]["data"],
        json!({"error": "access_denied", "policies": ["own-folder-only"]})
    );

    // The shared folder: a step-up for notes:share ...
    let err = call(
        &writer,
        "write_note",
        json!({"folder": "shared", "title": "plan", "text": "x"}),
    )
    .await
    .expect_err("the shared folder needs notes:share");
    let denied = insufficient_scope(&err)
        .unwrap_or_else(|| panic!("expected a 403 insufficient_scope, got {err:?}"));
    let c = challenge(&denied.www_authenticate_header);
    c.assert_bearer();
    assert_eq!(c.param("error"), Some("insufficient_scope"), "{c:?}");
    assert_eq!(c.param("scope"), Some("notes:share"), "{c:?}");
    assert_eq!(denied.required_scope.as_deref(), Some("notes:share"));
    let _ = writer.cancel().await;
    // ... met by a token that holds it.
    let sharer = server
        .client(&server.token(&["notes:write", "notes:share"], None))
        .await;
    let wrote = call(
        &sharer,
        "write_note",
        json!({"folder": "shared", "title": "plan", "text": "for all"}),
    )
    .await
    .expect("notes:share writes into the shared folder");
    assert_eq!(text_of(&wrote), "wrote shared/plan");
    let _ = sharer.cancel().await;

    // A delegated token: read-only tools only, even with notes:write.
    let delegated = server
        .client(&server.token(&["notes:write"], Some("planner")))
        .await;
    let err = call(
        &delegated,
        "write_note",
        json!({"folder": "alice", "title": "plan", "text": "x"}),
    )
    .await
    .expect_err("a delegated token does not write");
    assert_forbidden_by(&err, "delegated-read-only", "delegated write_note");
    let read = call(
        &delegated,
        "read_note",
        json!({"folder": "alice", "title": "plan"}),
    )
    .await
    .expect("a delegated token reads");
    assert_eq!(text_of(&read), "ship it");
    let listed: BTreeSet<String> = tokio::time::timeout(STEP, delegated.list_all_tools())
        .await
        .expect("listed in time")
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from(["list_notes".to_owned(), "read_note".to_owned()]),
        "a delegated token sees the tools it may call"
    );
    let _ = delegated.cancel().await;

    // Purge through a chain: both forbids apply, even for an admin.
    let admin_chain = server
        .client(&server.token(&["notes:admin"], Some("planner")))
        .await;
    let err = call(&admin_chain, "purge", json!({"folder": "alice"}))
        .await
        .expect_err("no purge through a chain");
    assert_forbidden_by(&err, "no-purge-through-chain", "delegated purge");
    let _ = admin_chain.cancel().await;
    // The same token without a chain lists and purges.
    let admin = server.client(&server.token(&["notes:admin"], None)).await;
    let tools = tokio::time::timeout(STEP, admin.list_all_tools())
        .await
        .expect("listed in time")
        .expect("tools/list");
    assert_eq!(tools.len(), 4, "{tools:?}");
    let purged = call(&admin, "purge", json!({"folder": "shared"}))
        .await
        .expect("an admin purges");
    assert_eq!(text_of(&purged), "purged 1 from shared");
    let _ = admin.cancel().await;

    // The audit log names the policies that decided each call.
    let events = server.events();
    assert_audited(&events, "write_note", "allow", &["write"]);
    assert_audited(&events, "write_note", "deny", &["own-folder-only"]);
    assert_audited(&events, "write_note", "deny", &["write-shared"]);
    assert_audited(&events, "write_note", "allow", &["write-shared"]);
    assert_audited(&events, "write_note", "deny", &["delegated-read-only"]);
    assert_audited(&events, "read_note", "allow", &["baseline"]);
    assert_audited(
        &events,
        "purge",
        "deny",
        &["delegated-read-only", "no-purge-through-chain"],
    );
    assert_audited(&events, "purge", "allow", &["baseline"]);
    let forbidden = events
        .iter()
        .find(|e| e["policies"] == json!(["own-folder-only"]))
        .expect("the own-folder denial");
    assert_eq!(
        forbidden["reason_code"], "forbidden_by_policy",
        "{forbidden}"
    );
    let step_up = events
        .iter()
        .find(|e| e["decision"] == "deny" && e["policies"] == json!(["write-shared"]))
        .expect("the step-up");
    assert_eq!(step_up["reason_code"], "insufficient_scope", "{step_up}");
}

// ---------------------------------------------------------------------------------------
// A foreign client: the Python MCP SDK.
// ---------------------------------------------------------------------------------------

/// How long the Python client may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn python() -> PathBuf {
    let python = rmcp_authz_tests::repo_root().join("target/interop/venv/bin/python");
    if !python.exists() {
        missing(&python);
    }
    python
}

fn missing(what: &Path) -> ! {
    panic!(
        "{} is missing: run scripts/setup-interop.sh (it installs the Python and TypeScript \
         MCP SDKs under target/interop/; scripts/test.sh runs it before the tests)",
        what.display()
    )
}

/// Runs `tests/clients/py_calls.py` with `token`, making `calls`; its report.
async fn run_python(server: &Server, token: &str, calls: Value) -> Value {
    let script = rmcp_authz_tests::repo_root().join("tests/clients/py_calls.py");
    let child = tokio::process::Command::new(python())
        .arg(&script)
        .env("INTEROP_URL", &server.url)
        .env("INTEROP_TOKEN", token)
        .env("INTEROP_CALLS", calls.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", script.display()));
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the Python client did not finish in {CLIENT_TIMEOUT:?}"))
        .expect("wait for the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("the Python client printed nothing.\nstderr:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{stderr}"))
}

#[tokio::test]
async fn the_python_sdk_meets_the_same_decisions() {
    let server = Server::start().await;
    let report = run_python(
        &server,
        &server.token(&["notes:write"], None),
        json!([
            ["write_note", {"folder": "alice", "title": "py", "text": "from python"}],
            ["write_note", {"folder": "bob", "title": "py", "text": "x"}],
            ["write_note", {"folder": "shared", "title": "py", "text": "x"}],
            ["read_note", {"folder": "alice", "title": "py"}],
        ]),
    )
    .await;
    println!("python mcp: {report}");
    let tools: BTreeSet<&str> = report["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        tools,
        BTreeSet::from(["list_notes", "read_note", "write_note"]),
        "notes:write lists every tool but purge (notes:admin)"
    );
    let calls = report["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 4, "{report}");

    // Allowed: the tool's own answer.
    let own = &calls[0];
    assert_eq!(own["sdk_error"], Value::Null, "{own}");
    assert_eq!(own["result"]["isError"], false, "{own}");
    assert_eq!(
        own["result"]["content"][0]["text"], "wrote alice/py",
        "{own}"
    );

    // Forbidden: the SDK raises the body's JSON-RPC error, whose data names the policy.
    let bob = &calls[1];
    assert_eq!(bob["http"]["status"], 403, "{bob}");
    assert_eq!(bob["sdk_error"]["code"], -32003, "{bob}");
    assert_eq!(
        bob["sdk_error"]["data"],
        json!({"error": "access_denied", "policies": ["own-folder-only"]}),
        "{bob}"
    );
    assert_ne!(
        bob["http"]["challenge"]["error"], "insufficient_scope",
        "{bob}"
    );

    // Step-up: the challenge read with the SDK's own parser names notes:share.
    let shared = &calls[2];
    assert_eq!(shared["http"]["status"], 403, "{shared}");
    assert_eq!(
        shared["http"]["challenge"]["error"], "insufficient_scope",
        "{shared}"
    );
    assert_eq!(
        shared["http"]["challenge"]["scope"], "notes:share",
        "{shared}"
    );
    assert_eq!(
        shared["sdk_error"]["data"]["error"], "insufficient_scope",
        "{shared}"
    );

    let read = &calls[3];
    assert_eq!(read["sdk_error"], Value::Null, "{read}");
    assert_eq!(
        read["result"]["content"][0]["text"], "from python",
        "{read}"
    );

    // The server's audit log saw the same decisions.
    let events = server.events();
    assert_audited(&events, "write_note", "allow", &["write"]);
    assert_audited(&events, "write_note", "deny", &["own-folder-only"]);
    assert_audited(&events, "write_note", "deny", &["write-shared"]);
}
