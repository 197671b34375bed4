//! The audit log end to end over HTTP: the notes server on 127.0.0.1 behind the layer and
//! the wrapper, driven by rmcp's own client and by raw HTTP, recording to real sinks.
//!
//! - every allowed, denied and failed request leaves exactly one event, with the caller,
//!   the delegation chain, the decision, the reason and the outcome;
//! - authentication failures are recorded, without the token;
//! - each request's span carries OpenTelemetry attribute names;
//! - fail-closed: when the audit file cannot be written (a full tmpfs, or a directory
//!   without write permission for a non-root user) calls are refused; without it they go
//!   on and the failure is counted and logged;
//! - tokens and clear arguments never reach a sink unless configured;
//! - a huge tool name or request id is cut to its bound, and a restart continues the chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use rmcp_authz::AUDIT_UNAVAILABLE;
use rmcp_authz::audit::{
    ArgumentRecording, AuditEvent, AuditSink, Auditor, DecisionKind, Durability, EventKind, FanOut,
    JsonLines, MAX_FIELD_BYTES, MemorySink, Outcome, REDACTED, TRUNCATION_MARKER, TracingSink,
    verify_chain,
};
use rmcp_authz_tests::http::{bearer, call_body, call_body_2026, mcp_post, post, post_2026, send};
use rmcp_authz_tests::server::TestServer;
use serde_json::{Value, json};
use tempfile::TempDir;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>,
    tool: &str,
    arguments: Value,
) -> Result<rmcp::model::CallToolResult, ServiceError> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    client.call_tool(params).await
}

/// A delegated token: alice, through client notes-agent, acted for by `planner`.
fn delegated(server: &TestServer, scopes: &[&str]) -> String {
    server
        .issuer
        .token(&server.url)
        .subject("alice")
        .client_id("notes-agent")
        .actor("planner")
        .scopes(scopes)
        .mint()
        .expect("mint")
}

fn durable_memory() -> (Arc<MemorySink>, Auditor) {
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .expect("auditor");
    (sink, auditor)
}

#[tokio::test]
async fn every_request_leaves_exactly_one_event_with_its_fields() {
    let (sink, auditor) = durable_memory();
    let server = TestServer::start_audited(true, auditor).await;
    let reader = server
        .legacy_client(&delegated(&server, &["notes:read"]))
        .await
        .expect("connect");

    // 0. initialize; 1. a list, allowed; 2. a call, allowed; 3. a call beyond the scopes,
    // denied by the layer; 4. an allowed call that fails with a JSON-RPC error.
    reader.list_tools(None).await.expect("tools/list");
    call(&reader, "list_notes", json!({}))
        .await
        .expect("list_notes");
    let denied = call(&reader, "write_note", json!({"id": "a", "text": "b"})).await;
    assert!(denied.is_err(), "{denied:?}");
    let failed = call(&reader, "read_note", json!({"id": "nope"})).await;
    assert!(
        matches!(failed, Err(ServiceError::McpError(_))),
        "{failed:?}"
    );
    reader.cancel().await.expect("close");

    // 5. initialize; 6. an allowed call whose tool reports an error (`isError: true`).
    let writer = server
        .legacy_client(&delegated(&server, &["notes:write"]))
        .await
        .expect("connect");
    let tool_error = call(&writer, "write_note", json!({"id": "", "text": "x"}))
        .await
        .expect("a tool error is a result");
    assert_eq!(tool_error.is_error, Some(true));
    writer.cancel().await.expect("close");

    // Durable mode: every event was written before its response, so they are all here.
    let events = sink.events();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.target.as_deref(), e.decision, e.outcome))
        .collect();
    use DecisionKind::{Allow, Deny};
    let initialize = (EventKind::Other, None, Allow, Outcome::Success);
    assert_eq!(
        summary,
        [
            initialize,
            (EventKind::List, None, Allow, Outcome::Success),
            (
                EventKind::ToolCall,
                Some("list_notes"),
                Allow,
                Outcome::Success
            ),
            (
                EventKind::ToolCall,
                Some("write_note"),
                Deny,
                Outcome::Denied
            ),
            (
                EventKind::ToolCall,
                Some("read_note"),
                Allow,
                Outcome::ProtocolError
            ),
            initialize,
            (
                EventKind::ToolCall,
                Some("write_note"),
                Allow,
                Outcome::ToolError
            ),
        ],
        "{events:#?}"
    );
    for e in &events {
        assert_eq!(e.agent.as_deref(), Some("planner"), "{e:?}");
        assert_eq!(e.subject.as_deref(), Some("alice"), "{e:?}");
        assert_eq!(e.client_id.as_deref(), Some("notes-agent"), "{e:?}");
        assert_eq!(e.delegation_chain, ["planner"], "{e:?}");
        assert_eq!(e.issuer.as_deref(), Some(rmcp_authz_tests::server::ISSUER));
        assert!(e.token_id.is_some(), "{e:?}");
        assert_eq!(e.transport.as_deref(), Some("http"), "{e:?}");
        // The session is opened by the answer to `initialize`.
        let opening = e.method.as_deref() == Some("initialize");
        assert_eq!(e.session_id.is_some(), !opening, "stateful: {e:?}");
        assert!(e.request_id.is_some(), "{e:?}");
        let addr = e.remote_addr.as_deref().unwrap_or_default();
        assert!(addr.starts_with("127.0.0.1:"), "{e:?}");
        assert!(
            e.arguments.is_none(),
            "clear arguments are off by default: {e:?}"
        );
    }
    let [init, list, listed, refused, failed, _, tool_error] = &events[..] else {
        unreachable!()
    };
    assert_eq!(init.method.as_deref(), Some("initialize"));
    assert_eq!(list.method.as_deref(), Some("tools/list"));
    assert_eq!(listed.scopes_granted, ["notes:read"]);
    assert!(listed.duration_ms.is_some() && listed.arguments_hmac.is_some());
    assert_eq!(refused.reason_code.as_deref(), Some("insufficient_scope"));
    assert_eq!(refused.scopes_required, ["notes:write"]);
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("notes:write"),
        "{refused:?}"
    );
    assert_eq!(
        failed.error_code,
        Some(-32602),
        "invalid_params: {failed:?}"
    );
    assert_eq!(tool_error.error_code, None);
    assert_ne!(
        listed.arguments_hmac, refused.arguments_hmac,
        "different arguments, different digests"
    );
}

#[tokio::test]
async fn denials_inside_the_server_and_lists_are_recorded_once() {
    // The wrapper decides what the layer cannot see: here a prompt the token may not get
    // is refused at the layer, and a resource list is filtered in the wrapper.
    let (sink, auditor) = durable_memory();
    let server = TestServer::start_audited(false, auditor).await;
    let client = server
        .modern_client(&delegated(&server, &["notes:read"]))
        .await
        .expect("connect");
    client.list_resources(None).await.expect("resources/list");
    let refused = client
        .get_prompt(rmcp::model::GetPromptRequestParams::new("audit_report"))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    client.cancel().await.expect("close");
    let events = sink.events();
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e.kind != EventKind::Other)
        .map(|e| (e.kind, e.decision, e.reason_code.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::List, DecisionKind::Allow, None),
            (
                EventKind::PromptGet,
                DecisionKind::Deny,
                Some("insufficient_scope")
            ),
        ],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e.session_id.is_none()), "stateless");
}

#[tokio::test]
async fn authentication_failures_are_recorded_without_the_token() {
    let (sink, auditor) = durable_memory();
    let server = TestServer::start_audited(false, auditor).await;

    let none = send(mcp_post(&server, None, &call_body(1, "list_notes"))).await;
    assert_eq!(none.status, 401);
    let wrong_audience = server
        .issuer
        .token("https://another-server.invalid/mcp")
        .subject("mallory")
        .mint()
        .unwrap();
    let bad = send(mcp_post(
        &server,
        Some(&wrong_audience),
        &call_body(2, "list_notes"),
    ))
    .await;
    assert_eq!(bad.status, 401);
    let garbage = "not-a-jwt-SECRET-MARKER";
    let bad = send(mcp_post(
        &server,
        Some(garbage),
        &call_body(3, "list_notes"),
    ))
    .await;
    assert_eq!(bad.status, 401);

    let events = sink.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    let codes: Vec<_> = events.iter().map(|e| e.reason_code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            Some("missing_token"),
            Some("invalid_token"),
            Some("invalid_token")
        ]
    );
    for e in &events {
        assert_eq!(e.kind, EventKind::AuthenticationFailure, "{e:?}");
        assert_eq!(e.decision, DecisionKind::Deny);
        assert_eq!(e.outcome, Outcome::Denied);
        assert!(
            e.subject.is_none(),
            "an unverified token names nobody: {e:?}"
        );
        assert!(e.remote_addr.is_some(), "{e:?}");
        let json = serde_json::to_string(e).unwrap();
        assert!(
            !json.contains(&wrong_audience) && !json.contains("SECRET-MARKER"),
            "{json}"
        );
    }
    assert_eq!(
        events[0].target.as_deref(),
        Some("list_notes"),
        "read for the scope hint"
    );
    // The body was read, so each event and each answer carry the request's id.
    let ids: Vec<_> = events.iter().map(|e| e.request_id.as_deref()).collect();
    assert_eq!(ids, [Some("1"), Some("2"), Some("3")]);
}

// ---------------------------------------------------------------------------------------
// Spans and logs, captured.
// ---------------------------------------------------------------------------------------

/// A span's name or an event's target, and its fields as text.
type Record = (String, BTreeMap<String, String>);

/// Every span's fields and every event's message and fields, as text.
#[derive(Default, Clone)]
struct Captured {
    spans: Arc<Mutex<Vec<Record>>>,
    events: Arc<Mutex<Vec<Record>>>,
}

struct FieldText<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldText<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Where in `Captured::spans` a span's fields are.
struct SpanIndex(usize);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Captured {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldText(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push((attrs.metadata().name().to_owned(), fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanIndex(spans.len() - 1));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanIndex(i)) = span.extensions().get::<SpanIndex>()
        {
            values.record(&mut FieldText(&mut self.spans.lock().unwrap()[*i].1));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut FieldText(&mut fields));
        self.events
            .lock()
            .unwrap()
            .push((event.metadata().target().to_owned(), fields));
    }
}

impl Captured {
    /// Captures everything from now on, in every thread (the audit writer is one).
    fn install() -> Captured {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(captured.clone());
        tracing::subscriber::set_global_default(subscriber)
            .expect("one global subscriber per test binary");
        captured
    }

    /// Everything rmcp-authz emitted, as one text.
    fn text_of_rmcp_authz(&self) -> String {
        let events = self.events.lock().unwrap();
        let spans = self.spans.lock().unwrap();
        let from_events = events
            .iter()
            .filter(|(target, _)| target.starts_with("rmcp_authz"))
            .map(|(_, fields)| format!("{fields:?}"));
        let from_spans = spans.iter().map(|(_, fields)| format!("{fields:?}"));
        from_events.chain(from_spans).collect::<Vec<_>>().join("\n")
    }
}

/// The global subscriber, installed once for this test binary.
fn captured() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(Captured::install)
}

#[tokio::test]
async fn request_spans_carry_opentelemetry_attributes() {
    let captured = captured();
    let (_sink, auditor) = durable_memory();
    let server = TestServer::start_audited(true, auditor).await;
    let client = server
        .legacy_client(&delegated(&server, &["notes:read"]))
        .await
        .expect("connect");
    call(&client, "read_note", json!({"id": "welcome"}))
        .await
        .expect("read_note");
    client.cancel().await.expect("close");

    let spans = captured.spans.lock().unwrap();
    let span = spans
        .iter()
        .filter(|(name, _)| name == "mcp.request")
        .map(|(_, fields)| fields)
        .find(|f| {
            f.get("gen_ai.tool.name").map(String::as_str) == Some("read_note")
                && f.get("rmcp_authz.client_id").map(String::as_str) == Some("notes-agent")
        })
        .unwrap_or_else(|| panic!("no span for the read_note call: {spans:#?}"));
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.operation.name", "execute_tool"),
        ("otel.name", "tools/call read_note"),
        ("otel.kind", "server"),
        ("network.transport", "tcp"),
        ("enduser.id", "alice"),
        ("rmcp_authz.agent", "planner"),
        ("rmcp_authz.decision", "allow"),
    ] {
        assert_eq!(
            span.get(key).map(String::as_str),
            Some(value),
            "{key}: {span:#?}"
        );
    }
    for key in ["mcp.session.id", "jsonrpc.request.id", "client.address"] {
        assert!(span.contains_key(key), "{key}: {span:#?}");
    }
}

#[tokio::test]
async fn tokens_and_clear_arguments_never_reach_a_sink_unless_configured() {
    let captured = captured();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let memory = Arc::new(MemorySink::new());
    let sinks: Vec<Arc<dyn AuditSink>> = vec![
        Arc::new(JsonLines::open(&file).unwrap()),
        Arc::new(TracingSink),
        memory.clone(),
    ];
    let auditor = Auditor::builder(Arc::new(FanOut::new(sinks)))
        .durability(Durability::Durable)
        .build()
        .unwrap();
    let server = TestServer::start_audited(true, auditor).await;
    let token = delegated(&server, &["notes:write"]);
    let client = server.legacy_client(&token).await.expect("connect");
    let secret_text = "clear-argument-value-7c1e";
    call(
        &client,
        "write_note",
        json!({"id": "n1", "text": secret_text}),
    )
    .await
    .expect("write_note");
    let denied = call(&client, "delete_note", json!({"id": secret_text})).await;
    assert!(denied.is_err());
    client.cancel().await.expect("close");
    // A refused token and one sent twice: neither may be written anywhere.
    let expired = server
        .issuer
        .token(&server.url)
        .subject("alice")
        .claim("exp", 1_000_000_000)
        .mint()
        .unwrap();
    let refused = send(mcp_post(
        &server,
        Some(&expired),
        &call_body(7, "list_notes"),
    ))
    .await;
    assert_eq!(refused.status, 401);
    let twice = post(&server, call_body(8, "list_notes").to_string())
        .header("authorization", bearer(&token))
        .header("authorization", bearer(&token));
    assert_eq!(send(twice).await.status, 400);

    let file_text = std::fs::read_to_string(&file).unwrap();
    let memory_text = serde_json::to_string(&memory.events()).unwrap();
    let traced = captured.text_of_rmcp_authz();
    assert!(
        traced.contains("write_note"),
        "the tracing sink saw the events"
    );
    for (sink, text) in [
        ("file", &file_text),
        ("memory", &memory_text),
        ("tracing", &traced),
    ] {
        for secret in [token.as_str(), expired.as_str(), secret_text] {
            assert!(!text.contains(secret), "{sink} sink holds {secret:?}");
        }
        // Not even the signature part of a token.
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "{sink} sink holds a token signature"
        );
    }
    assert_eq!(
        verify_chain(&[&file]).unwrap().records,
        memory.events().len()
    );
}

#[tokio::test]
async fn clear_arguments_appear_when_configured_with_fields_redacted() {
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .arguments(
            ArgumentRecording::with_key(&[9; 32])
                .unwrap()
                .clear_with_redaction(["text"]),
        )
        .build()
        .unwrap();
    let server = TestServer::start_audited(false, auditor).await;
    let client = server
        .modern_client(&server.token(&["notes:write"]))
        .await
        .expect("connect");
    let arguments = json!({"id": "n2", "text": "private words"});
    call(&client, "write_note", arguments.clone())
        .await
        .expect("write");
    client.cancel().await.expect("close");
    let event = sink
        .events()
        .into_iter()
        .find(|e| e.target.as_deref() == Some("write_note"))
        .expect("the write_note event");
    assert_eq!(event.arguments, Some(json!({"id": "n2", "text": REDACTED})));
    let expected = ArgumentRecording::with_key(&[9; 32])
        .unwrap()
        .digest(&arguments);
    assert_eq!(event.arguments_hmac.as_deref(), Some(expected.as_str()));
}

// ---------------------------------------------------------------------------------------
// Fail-closed and fail-open, with an audit file that stops being writable.
// ---------------------------------------------------------------------------------------

/// A place for an audit file that can be made unwritable and writable again: a 256 KiB
/// tmpfs filled up (a full filesystem) when this process may mount one (root), else a
/// directory whose write permission is taken away, with the file rotating on every
/// write so each write needs the directory.
struct Unwritable {
    dir: TempDir,
    tmpfs: bool,
}

impl Unwritable {
    fn new(name: &str) -> Unwritable {
        let dir = TempDir::with_prefix(name).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        assert!(
            mounted || !root,
            "running as root, but a tmpfs could not be mounted at {}: this test needs either \
             to mount a small tmpfs (root with CAP_SYS_ADMIN) or to run as a non-root user",
            dir.path().display()
        );
        Unwritable {
            dir,
            tmpfs: mounted,
        }
    }

    fn sink(&self) -> JsonLines {
        let file = JsonLines::open(self.path()).unwrap();
        if self.tmpfs { file } else { file.rotate_at(1) }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    fn break_it(&self) {
        if self.tmpfs {
            use std::io::Write as _;
            let mut f = std::fs::File::create(self.filler()).unwrap();
            let chunk = vec![b'x'; 4096];
            // Fill to the last byte: the next audit write fails with ENOSPC.
            while f.write_all(&chunk).is_ok() {}
            let mut byte = [b'x'];
            while f.write_all(&byte).is_ok() {
                byte = [b'x'];
            }
        } else {
            set_mode(self.dir.path(), 0o500);
        }
    }

    fn mend(&self) {
        if self.tmpfs {
            std::fs::remove_file(self.filler()).unwrap();
        } else {
            set_mode(self.dir.path(), 0o700);
        }
    }

    /// The audit files, oldest first.
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("audit.jsonl."))
            })
            .collect();
        files.sort();
        files.push(self.path());
        files
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.tmpfs {
            // Lazily: the audit file may still be open in a writer thread being stopped.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        } else {
            set_mode(self.dir.path(), 0o700);
        }
    }
}

fn error_code(result: &Result<rmcp::model::CallToolResult, ServiceError>) -> Option<i32> {
    match result {
        Err(ServiceError::McpError(e)) => Some(e.code.0),
        _ => None,
    }
}

#[tokio::test]
async fn fail_closed_refuses_calls_while_the_audit_file_cannot_be_written() {
    let place = Unwritable::new("fail-closed");
    let auditor = Auditor::builder(Arc::new(place.sink()))
        .fail_closed(true)
        .build()
        .unwrap();
    let server = TestServer::start_audited(true, auditor.clone()).await;
    let client = server
        .legacy_client(&server.token(&["notes:read"]))
        .await
        .expect("connect");
    call(&client, "list_notes", json!({}))
        .await
        .expect("writable: served");

    place.break_it();
    // A full tmpfs still takes writes into the file's last page, so calls go on until
    // that is full (a few events). Then a call's intent cannot be written: it is refused
    // before its tool runs (tests/tests/audit_intent.rs checks that it did not run).
    let mut served = 0;
    loop {
        let result = call(&client, "list_notes", json!({})).await;
        if error_code(&result) == Some(AUDIT_UNAVAILABLE.0) {
            break;
        }
        result.expect("served while the file still takes writes");
        served += 1;
        assert!(served < 64, "the audit file never filled up");
    }
    // The next calls are refused before they run, as the log is known to be failing.
    for _ in 0..2 {
        let refused = call(&client, "list_notes", json!({})).await;
        assert_eq!(
            error_code(&refused),
            Some(AUDIT_UNAVAILABLE.0),
            "{refused:?}"
        );
        let Err(ServiceError::McpError(e)) = &refused else {
            unreachable!()
        };
        assert!(
            !e.message.contains("No space") && !e.message.contains("ermission"),
            "no detail: {e:?}"
        );
    }
    let stats = auditor.stats();
    assert!(
        stats.failed >= 2 && stats.fail_closed_refusals >= 2,
        "{stats:?}"
    );

    place.mend();
    // The refusal of the next call is recorded, which shows the log works again...
    let _ = call(&client, "list_notes", json!({})).await;
    // ...and from then on calls are served.
    call(&client, "list_notes", json!({}))
        .await
        .expect("writable again: served");
    client.cancel().await.expect("close");
    auditor.close().await;

    // No partial record was left behind by the failed writes: the chain holds.
    let report = verify_chain(&place.files()).expect("the chain verifies");
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert!(report.records >= 3, "{report:?}");
}

#[tokio::test]
async fn without_fail_closed_calls_go_on_and_the_failure_is_counted_and_logged() {
    let captured = captured();
    let place = Unwritable::new("fail-open");
    let auditor = Auditor::builder(Arc::new(place.sink())).build().unwrap();
    let server = TestServer::start_audited(true, auditor.clone()).await;
    let client = server
        .legacy_client(&server.token(&["notes:read"]))
        .await
        .expect("connect");
    place.break_it();
    // Until the file's last page is full a full tmpfs still takes writes (see above);
    // every call is served either way.
    for _ in 0..64 {
        call(&client, "list_notes", json!({}))
            .await
            .expect("served all the same");
        // Buffered mode: the write happens after the answer; let the writer catch up.
        for _ in 0..100 {
            if auditor.stats().queued == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if auditor.stats().failed >= 3 {
            break;
        }
    }
    client.cancel().await.expect("close");
    let stats = auditor.stats();
    assert!(stats.failed >= 3, "{stats:?}");
    assert_eq!(stats.fail_closed_refusals, 0);
    assert!(auditor.is_failing());
    let logged = captured
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|(target, fields)| {
            target == "rmcp_authz::audit"
                && fields
                    .get("message")
                    .is_some_and(|m| m.contains("could not be written"))
        });
    assert!(logged, "the failure is logged on rmcp_authz::audit");
    place.mend();
    auditor.close().await;
    assert!(verify_chain(&place.files()).unwrap().torn_tail.is_none());
}

// ---------------------------------------------------------------------------------------
// Oversized requests (issue 13).
// ---------------------------------------------------------------------------------------

/// A tool name of 600 KB made one record (the name, and the denial's reason quoting it)
/// longer than the 1 MiB a restart reads back to find the last record's hash, so the next
/// start refused the file: any token holder could stop a restart. Every field from the
/// request is bounded now, and a restart continues the chain.
#[tokio::test]
async fn a_huge_tool_name_or_request_id_does_not_stop_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let auditor = Auditor::builder(Arc::new(JsonLines::open(&path).unwrap()))
        .durability(Durability::Durable)
        .build()
        .unwrap();
    let server = TestServer::start_audited(false, auditor.clone()).await;
    let token = server.token(&["notes:read"]);

    // Allowed, through the wrapper, with an id near the body limit.
    let id = "i".repeat(900 * 1024);
    let mut body = call_body_2026(1, "list_notes");
    body["id"] = json!(id);
    let allowed = send(post_2026(
        &server,
        &token,
        &body,
        "tools/call",
        "list_notes",
    ))
    .await;
    assert_eq!(
        allowed.status,
        200,
        "{}",
        &allowed.body[..allowed.body.len().min(300)]
    );
    // Denied, last (the record a restart reads back), by the HTTP layer: no rule names this tool.
    let name = "n".repeat(600 * 1024);
    let refused = send(mcp_post(&server, Some(&token), &call_body(2, &name))).await;
    assert_eq!(
        refused.status,
        403,
        "{}",
        &refused.body[..refused.body.len().min(300)]
    );
    auditor.close().await;
    drop(server);

    // The restart.
    let restarted = JsonLines::open(&path).expect("a restart continues the chain");
    restarted
        .write(&[AuditEvent::new(
            EventKind::Other,
            DecisionKind::Allow,
            Outcome::Success,
        )])
        .unwrap();
    restarted.flush(true).unwrap();
    let report = verify_chain(&[&path]).unwrap();
    assert_eq!(report.records, 3);
    assert!(report.starts_at_genesis);

    let records: Vec<AuditEvent> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (allowed, refused) = (&records[0], &records[1]);
    assert_eq!(allowed.outcome, Outcome::Success, "{allowed:?}");
    assert_eq!(allowed.truncated, ["request_id"]);
    assert_eq!(refused.reason_code.as_deref(), Some("no_rule"));
    assert_eq!(refused.truncated, ["reason", "target"]);
    for cut in [&allowed.request_id, &refused.target, &refused.reason] {
        let cut = cut.as_deref().unwrap();
        assert!(cut.len() <= MAX_FIELD_BYTES, "{}", cut.len());
        assert!(cut.ends_with(TRUNCATION_MARKER), "{cut}");
    }
    assert!(refused.target.as_deref().unwrap().starts_with("nnnn"));
    assert!(records[2].truncated.is_empty());
}
