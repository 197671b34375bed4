//! End to end over stdio: the `notes_stdio` fixture binary as a child process, an rmcp
//! client on its stdin and stdout, tokens from a [`DevIssuer`] whose JWK Set the child
//! trusts through a temporary file; and, in process, a token that expires during a
//! session.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorCode, JsonObject};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{ErrorData as McpError, ServiceExt};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::stdio::DEFAULT_TOKEN_VAR;
use rmcp_authz::{Authz, ManualClock};
use rmcp_authz_tests::notes::{Notes, notes_rules};
use rmcp_authz_tests::server::connect_in_memory;
use serde_json::json;
use tokio::process::Command;
use tokio::time::timeout;

const ISSUER: &str = "https://auth.stdio.test.invalid";
const AUDIENCE: &str = "urn:notes:stdio";
/// Upper bound for any one step that talks to a child process.
const STEP: Duration = Duration::from_secs(8);

/// A JWK Set file under the temp dir with a name no other test (or test run) uses,
/// removed on drop.
struct JwksFile {
    path: tempfile::TempPath,
}

impl JwksFile {
    fn new(issuer: &DevIssuer) -> JwksFile {
        let path = tempfile::Builder::new()
            .suffix(".jwks.json")
            .tempfile()
            .expect("create the JWK Set file")
            .into_temp_path();
        std::fs::write(&path, issuer.jwks().to_string()).expect("write the JWK Set file");
        JwksFile { path }
    }
}

/// The fixture command, configured to trust `jwks`, with the token variable set to
/// `token` (or removed).
fn notes_command(jwks: &JwksFile, token: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notes_stdio"));
    cmd.env("NOTES_JWKS_FILE", &jwks.path)
        .env("NOTES_ISSUER", ISSUER)
        .env("NOTES_AUDIENCE", AUDIENCE)
        .kill_on_drop(true);
    match token {
        Some(token) => cmd.env(DEFAULT_TOKEN_VAR, token),
        None => cmd.env_remove(DEFAULT_TOKEN_VAR),
    };
    cmd
}

/// Runs the fixture, expecting it to refuse to start: returns its exit status and stderr.
async fn run_to_failure(
    jwks: &JwksFile,
    token: Option<&str>,
) -> (std::process::ExitStatus, String) {
    let mut cmd = notes_command(jwks, token);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn notes_stdio");
    let output = timeout(STEP, child.wait_with_output())
        .await
        .expect("notes_stdio should exit on its own when the token is not usable")
        .expect("wait for notes_stdio");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, stderr)
}

fn args(value: serde_json::Value) -> JsonObject {
    value.as_object().cloned().expect("a JSON object")
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

fn mcp_error(result: Result<CallToolResult, ServiceError>, what: &str) -> McpError {
    match result {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("{what}: expected an MCP error, got {other:?}"),
    }
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    params: CallToolRequestParams,
) -> Result<CallToolResult, ServiceError> {
    timeout(STEP, client.call_tool(params))
        .await
        .expect("tools/call answered in time")
}

#[tokio::test]
async fn valid_token_serves_the_allowed_tools_and_refuses_the_rest() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let token = issuer
        .token(AUDIENCE)
        .subject("alice-stdio")
        .client_id("stdio-agent")
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let transport =
        TokioChildProcess::new(notes_command(&jwks, Some(&token))).expect("spawn notes_stdio");
    let client = timeout(STEP, ().serve(transport))
        .await
        .expect("initialize in time")
        .expect("the client connects");

    let tools = timeout(STEP, client.list_tools(None))
        .await
        .expect("tools/list in time")
        .expect("tools/list");
    let mut names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["list_notes", "read_note", "whoami"]);

    let listed = call(&client, CallToolRequestParams::new("list_notes"))
        .await
        .expect("list_notes is allowed with notes:read");
    assert_eq!(text_of(&listed), "welcome");
    let read = call(
        &client,
        CallToolRequestParams::new("read_note").with_arguments(args(json!({"id": "welcome"}))),
    )
    .await
    .expect("read_note is allowed with notes:read");
    assert_eq!(text_of(&read), "Hello from the notes server.");

    let denied = mcp_error(
        call(
            &client,
            CallToolRequestParams::new("write_note")
                .with_arguments(args(json!({"id": "x", "text": "y"}))),
        )
        .await,
        "write_note with notes:read",
    );
    assert_eq!(denied.code, ErrorCode(-32003), "{denied:?}");
    let data = denied.data.as_ref().expect("denial data");
    assert_eq!(data["error"], "insufficient_scope", "{data}");
    assert_eq!(data["scope"], "notes:write", "{data}");
    // The refused write did not happen.
    let listed = call(&client, CallToolRequestParams::new("list_notes"))
        .await
        .expect("list_notes");
    assert_eq!(text_of(&listed), "welcome");

    let purge = mcp_error(
        call(&client, CallToolRequestParams::new("purge")).await,
        "purge with notes:read",
    );
    assert_eq!(purge.code, ErrorCode(-32003), "{purge:?}");

    let who = call(&client, CallToolRequestParams::new("whoami"))
        .await
        .expect("whoami needs only a valid token");
    let who: serde_json::Value = serde_json::from_str(&text_of(&who)).expect("whoami JSON");
    assert_eq!(who["subject"], "alice-stdio", "{who}");
    assert_eq!(who["client"], "stdio-agent", "{who}");

    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
}

#[tokio::test]
async fn the_server_exits_cleanly_when_the_client_closes() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let token = issuer
        .token(AUDIENCE)
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let mut cmd = notes_command(&jwks, Some(&token));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn notes_stdio");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let client = timeout(STEP, ().serve((stdout, stdin)))
        .await
        .expect("initialize in time")
        .expect("the client connects");
    let listed = call(&client, CallToolRequestParams::new("list_notes"))
        .await
        .expect("list_notes");
    assert_eq!(text_of(&listed), "welcome");
    // Closing the client closes the child's stdin: serve_stdio returns Ok, exit 0.
    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
    let output = timeout(STEP, child.wait_with_output())
        .await
        .expect("notes_stdio exits once its stdin is closed")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains(&token), "the token leaked to stderr");
}

#[tokio::test]
async fn missing_token_is_refused_at_start_naming_the_variable() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let (status, stderr) = run_to_failure(&jwks, None).await;
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("MCP_ACCESS_TOKEN"), "{stderr}");
    assert!(stderr.contains("no access token"), "{stderr}");

    // An empty (or blank) variable counts as missing.
    let (status, stderr) = run_to_failure(&jwks, Some("   ")).await;
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("no access token"), "{stderr}");
}

#[tokio::test]
async fn garbage_token_is_refused_at_start_without_echoing_it() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let garbage = "garbage-token-Zq9xW7";
    let (status, stderr) = run_to_failure(&jwks, Some(garbage)).await;
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("was refused"), "{stderr}");
    assert!(stderr.contains("MCP_ACCESS_TOKEN"), "{stderr}");
    assert!(
        !stderr.contains(garbage),
        "the token leaked to stderr: {stderr}"
    );
}

#[tokio::test]
async fn token_from_an_untrusted_issuer_key_is_refused_at_start() {
    let trusted = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&trusted);
    // Same issuer name, another key: the signature cannot be checked with the trusted set.
    let impostor = DevIssuer::new(ISSUER).expect("dev issuer");
    let token = impostor
        .token(AUDIENCE)
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let (status, stderr) = run_to_failure(&jwks, Some(&token)).await;
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("was refused"), "{stderr}");
    assert!(!stderr.contains(&token), "the token leaked to stderr");
}

#[tokio::test]
async fn expired_token_is_refused_at_start() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let token = issuer
        .token(AUDIENCE)
        .claim("iat", 1_600_000_000)
        .expires_in(Duration::from_secs(60))
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let (status, stderr) = run_to_failure(&jwks, Some(&token)).await;
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("was refused"), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(!stderr.contains(&token), "the token leaked to stderr");
}

/// A DPoP-bound token cannot be proven over stdio: refused at start, as it would be over
/// HTTP as a bearer token.
#[tokio::test]
async fn a_dpop_bound_token_is_refused_at_start() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let token = issuer
        .token(AUDIENCE)
        .scopes(["notes:read"])
        .dpop_bound("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        .mint()
        .expect("mint");
    let (status, stderr) = run_to_failure(&jwks, Some(&token)).await;
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("DPoP-bound"), "{stderr}");
    assert!(!stderr.contains(&token), "the token leaked to stderr");
}

/// The per-call expiry check, in process: the same manual clock dates the token, drives
/// the verifier and drives `Authz`, and moves past `exp` during the session.
#[tokio::test]
async fn token_expiring_during_the_session_is_refused_per_call() {
    const T0: i64 = 1_900_000_000;
    let clock = Arc::new(ManualClock::new(T0));
    let issuer = DevIssuer::new(ISSUER)
        .expect("dev issuer")
        .clock(clock.clone());
    let verifier = issuer.verifier(AUDIENCE).build().expect("verifier");
    let policy = notes_rules().clock(clock.clone()).build().expect("policy");
    let authz = Authz::new(verifier, policy);
    let token = issuer
        .token(AUDIENCE)
        .subject("carol")
        .scopes(["notes:read"])
        .expires_in(Duration::from_secs(60))
        .mint()
        .expect("mint");
    let principal = authz.verifier().verify(&token).await.expect("valid now");
    assert_eq!(principal.expires_at(), T0 + 60);
    let wrapped = authz
        .wrap_for(Notes::new(), principal)
        .expect("the policy fits the notes server");

    let (client, server) = connect_in_memory(wrapped).await;

    let ok = call(&client, CallToolRequestParams::new("list_notes"))
        .await
        .expect("valid token: list_notes is allowed");
    assert_eq!(text_of(&ok), "welcome");

    // One second before exp: still fine.
    clock.advance(Duration::from_secs(59));
    call(&client, CallToolRequestParams::new("whoami"))
        .await
        .expect("still valid one second before exp");

    // At exp: refused, with a message that says why.
    clock.advance(Duration::from_secs(1));
    let expired = mcp_error(
        call(&client, CallToolRequestParams::new("list_notes")).await,
        "list_notes after exp",
    );
    assert_eq!(expired.code, ErrorCode(-32003), "{expired:?}");
    assert!(expired.message.contains("expired"), "{}", expired.message);
    let data = expired.data.as_ref().expect("denial data");
    assert_eq!(data["error"], "invalid_token", "{data}");

    // Every call is refused now, including the ones that need no scope, and listings.
    clock.advance(Duration::from_secs(3600));
    let whoami = mcp_error(
        call(&client, CallToolRequestParams::new("whoami")).await,
        "whoami after exp",
    );
    assert_eq!(whoami.code, ErrorCode(-32003), "{whoami:?}");
    assert!(whoami.message.contains("expired"), "{}", whoami.message);
    let listing = timeout(STEP, client.list_tools(None))
        .await
        .expect("tools/list answered in time");
    match listing {
        Err(ServiceError::McpError(e)) => assert_eq!(e.code, ErrorCode(-32003), "{e:?}"),
        other => panic!("tools/list after exp: expected a denial, got {other:?}"),
    }

    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
    timeout(STEP, server)
        .await
        .expect("server stops when the client closes")
        .expect("server task");
}

/// The events of an audit file, in order.
fn audit_events(path: &std::path::Path) -> Vec<rmcp_authz::audit::AuditEvent> {
    let report = rmcp_authz::audit::verify_chain(&[path]).expect("the audit chain verifies");
    let text = std::fs::read_to_string(path).expect("the audit file");
    let events: Vec<_> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit event"))
        .collect();
    assert_eq!(events.len(), report.records);
    events
}

#[tokio::test]
async fn stdio_calls_are_audited_with_the_stdio_transport() {
    use rmcp_authz::audit::{DecisionKind, EventKind, Outcome};
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let audit = jwks.path.with_extension("audit.jsonl");
    let token = issuer
        .token(AUDIENCE)
        .subject("alice-stdio")
        .client_id("stdio-agent")
        .actor("stdio-planner")
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let mut cmd = notes_command(&jwks, Some(&token));
    cmd.env("NOTES_AUDIT_FILE", &audit);
    let transport = TokioChildProcess::new(cmd).expect("spawn notes_stdio");
    let client = timeout(STEP, ().serve(transport))
        .await
        .expect("initialize in time")
        .expect("the client connects");
    call(&client, CallToolRequestParams::new("list_notes"))
        .await
        .expect("list_notes");
    let denied = call(&client, CallToolRequestParams::new("purge")).await;
    assert!(denied.is_err());
    // Durable: every event is on disk before its answer.
    let events = audit_events(&audit);
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.target.as_deref(), e.decision, e.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            (
                EventKind::Other,
                None,
                DecisionKind::Allow,
                Outcome::Success
            ),
            (
                EventKind::ToolCall,
                Some("list_notes"),
                DecisionKind::Allow,
                Outcome::Success
            ),
            (
                EventKind::ToolCall,
                Some("purge"),
                DecisionKind::Deny,
                Outcome::Denied
            ),
        ]
    );
    for e in &events {
        assert_eq!(e.transport.as_deref(), Some("stdio"));
        assert_eq!(e.agent.as_deref(), Some("stdio-planner"));
        assert_eq!(e.delegation_chain, ["stdio-planner"]);
        assert!(e.remote_addr.is_none() && e.session_id.is_none());
    }
    assert_eq!(events[0].method.as_deref(), Some("initialize"));
    assert_eq!(events[2].reason_code.as_deref(), Some("insufficient_scope"));
    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn a_refused_stdio_start_is_audited_without_the_token() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let jwks = JwksFile::new(&issuer);
    let audit = jwks.path.with_extension("refused.jsonl");
    let garbage = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.SECRET-STDIO-MARKER";
    let mut cmd = notes_command(&jwks, Some(garbage));
    cmd.env("NOTES_AUDIT_FILE", &audit)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = timeout(STEP, cmd.spawn().expect("spawn").wait_with_output())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(!output.status.success());
    let events = audit_events(&audit);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.kind, rmcp_authz::audit::EventKind::AuthenticationFailure);
    assert_eq!(e.reason_code.as_deref(), Some("invalid_token"));
    assert_eq!(e.transport.as_deref(), Some("stdio"));
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !text.contains("SECRET-STDIO-MARKER") && !text.contains("eyJ"),
        "{text}"
    );
    let _ = std::fs::remove_file(&audit);
}
