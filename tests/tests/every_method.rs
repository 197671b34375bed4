//! Every request method goes through the gate (issue 13, "every request method goes
//! through the gate"): `ping`, `logging/setLevel`, `resources/unsubscribe`,
//! `server/discover`, lists, completions and custom requests are refused once the stdio
//! token has expired, and every one of them leaves exactly one audit event naming its
//! method, on stdio (a real `notes_stdio` child process, and in process with a manual
//! clock) and over HTTP (the endpoint `Authz::router` builds, an rmcp client and raw
//! requests).

#![allow(deprecated)] // logging/setLevel and resources/(un)subscribe: legacy, still served.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmcp::model::{
    ArgumentInfo, ClientCapabilities, ClientRequest, CompleteRequestParams, CustomRequest,
    Implementation, LoggingLevel, PingRequest, ProtocolVersion, Reference, RequestMetaObject,
    ServerResult, SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{ErrorData as McpError, Peer, ServiceExt as _};
use rmcp_authz::audit::{AuditEvent, Auditor, DecisionKind, Durability, MemorySink, Outcome};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Policy, PolicyBuilder, ScopeExpr, all_of};
use rmcp_authz::stdio::DEFAULT_TOKEN_VAR;
use rmcp_authz::{Authz, ManualClock};
use rmcp_authz_tests::http::{STEP, mcp_post, send};
use rmcp_authz_tests::notes::Notes;
use rmcp_authz_tests::server::{TestServer, connect_in_memory};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const ISSUER: &str = "https://auth.every-method.test.invalid";
const AUDIENCE: &str = "urn:notes:every-method";
/// The custom request method the policy has a rule for.
const ECHO: &str = "notes/echo";

/// The notes policy, plus a rule for the custom request [`ECHO`].
fn policy() -> Policy {
    rules().build().expect("the policy is valid")
}

/// The rules of [`policy`], before it is built.
fn rules() -> PolicyBuilder {
    Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:delete"])
        .implies("notes:write", ["notes:read"])
        .tool("list_notes", "notes:read")
        .tool("read_note", "notes:read")
        .tool("write_note", "notes:write")
        .tool("delete_note", "notes:delete")
        .tool("purge", all_of(["notes:admin", "ops:purge"]))
        .tool("whoami", ScopeExpr::authenticated())
        .resource("notes://index", ScopeExpr::authenticated())
        .resource("notes://{id}", "notes:read")
        .prompt("summarize", "notes:read")
        .prompt("audit_report", "notes:admin")
        .custom_request(ECHO, ScopeExpr::authenticated())
}

/// One request of each method the gate must see, by the client's own API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Ping,
    SetLevel,
    Unsubscribe,
    Subscribe,
    Discover,
    ListTools,
    ListResources,
    ListPrompts,
    CallTool,
    Complete,
    Custom,
}

impl Method {
    const ALL: [Method; 11] = [
        Method::Ping,
        Method::SetLevel,
        Method::Unsubscribe,
        Method::Subscribe,
        Method::Discover,
        Method::ListTools,
        Method::ListResources,
        Method::ListPrompts,
        Method::CallTool,
        Method::Complete,
        Method::Custom,
    ];

    /// The JSON-RPC method name the audit event must carry.
    fn name(self) -> &'static str {
        match self {
            Method::Ping => "ping",
            Method::SetLevel => "logging/setLevel",
            Method::Unsubscribe => "resources/unsubscribe",
            Method::Subscribe => "resources/subscribe",
            Method::Discover => "server/discover",
            Method::ListTools => "tools/list",
            Method::ListResources => "resources/list",
            Method::ListPrompts => "prompts/list",
            Method::CallTool => "tools/call",
            Method::Complete => "completion/complete",
            Method::Custom => ECHO,
        }
    }

    /// Sends the request; the JSON-RPC error, if any.
    async fn send(self, client: &Peer<RoleClient>) -> Result<(), McpError> {
        let sent = timeout(STEP, self.request(client))
            .await
            .unwrap_or_else(|_| panic!("{self:?} answered in time"));
        match sent {
            Ok(()) => Ok(()),
            Err(ServiceError::McpError(e)) => Err(e),
            Err(other) => panic!("{self:?}: expected an answer, got {other:?}"),
        }
    }

    async fn request(self, client: &Peer<RoleClient>) -> Result<(), ServiceError> {
        match self {
            Method::Ping => client
                .send_request(ClientRequest::PingRequest(PingRequest::default()))
                .await
                .map(drop),
            Method::SetLevel => {
                client
                    .set_level(SetLevelRequestParams::new(LoggingLevel::Info))
                    .await
            }
            Method::Unsubscribe => {
                client
                    .unsubscribe(UnsubscribeRequestParams::new("notes://welcome"))
                    .await
            }
            Method::Subscribe => {
                client
                    .subscribe(SubscribeRequestParams::new("notes://welcome"))
                    .await
            }
            Method::Discover => client.discover(discover_meta()).await.map(drop),
            Method::ListTools => client.list_tools(None).await.map(drop),
            Method::ListResources => client.list_resources(None).await.map(drop),
            Method::ListPrompts => client.list_prompts(None).await.map(drop),
            Method::CallTool => client
                .call_tool(rmcp::model::CallToolRequestParams::new("whoami"))
                .await
                .map(drop),
            Method::Complete => client
                .complete(CompleteRequestParams::new(
                    Reference::for_prompt("summarize"),
                    ArgumentInfo::new("topic", "a"),
                ))
                .await
                .map(drop),
            Method::Custom => client
                .send_request(ClientRequest::CustomRequest(CustomRequest::new(
                    ECHO,
                    Some(json!({})),
                )))
                .await
                .map(|result| {
                    assert!(
                        matches!(result, ServerResult::CustomResult(_)),
                        "{result:?}"
                    );
                }),
        }
    }
}

/// The `_meta` a `server/discover` request must carry (2026-07-28 keys).
fn discover_meta() -> RequestMetaObject {
    RequestMetaObject::with_client_context(
        ProtocolVersion::V_2026_07_28,
        Implementation::new("every-method", "0"),
        ClientCapabilities::default(),
    )
}

/// Asserts `error` is the refusal of an expired token.
fn assert_expired(method: Method, error: &McpError) {
    assert_eq!(error.code.0, -32003, "{method:?}: {error:?}");
    assert!(error.message.contains("expired"), "{method:?}: {error:?}");
    let data = error.data.as_ref().expect("denial data");
    assert_eq!(data["error"], "invalid_token", "{method:?}: {data}");
}

/// Asserts `error`, if any, is not a refusal by the gate (the notes server answers some
/// of these methods with "method not found" of its own).
fn assert_not_refused(method: Method, result: &Result<(), McpError>) {
    if let Err(error) = result {
        assert_ne!(error.code.0, -32003, "{method:?}: {error:?}");
        assert_ne!(error.code.0, -32004, "{method:?}: {error:?}");
    }
}

/// The one event `new` holds, which must name `method` and have `decision`.
fn one_event<'a>(new: &'a [AuditEvent], method: &str, decision: DecisionKind) -> &'a AuditEvent {
    assert_eq!(new.len(), 1, "{method}: exactly one event: {new:#?}");
    let event = &new[0];
    assert_eq!(event.method.as_deref(), Some(method), "{event:?}");
    assert_eq!(event.decision, decision, "{method}: {event:?}");
    event
}

// ---------------------------------------------------------------------------------------
// stdio, in process, with a manual clock.
// ---------------------------------------------------------------------------------------

/// The notes server wrapped for carol on stdio, in process: her 60 s token, verified at
/// `T0` on a manual clock the verifier and the policy share, every decision recorded
/// (durably) to a memory sink, and an rmcp client connected over an in-memory pipe.
struct Session {
    clock: Arc<ManualClock>,
    sink: Arc<MemorySink>,
    client: RunningService<RoleClient, ()>,
    server: JoinHandle<()>,
}

impl Session {
    async fn start() -> Session {
        const T0: i64 = 1_900_000_000;
        let clock = Arc::new(ManualClock::new(T0));
        let issuer = DevIssuer::new(ISSUER)
            .expect("dev issuer")
            .clock(clock.clone());
        let verifier = issuer.verifier(AUDIENCE).build().expect("verifier");
        let sink = Arc::new(MemorySink::new());
        let auditor = Auditor::builder(sink.clone())
            .durability(Durability::Durable)
            .build()
            .expect("auditor");
        let policy = rules().clock(clock.clone()).build().expect("policy");
        let authz = Authz::builder(verifier, policy).auditor(auditor).build();
        let token = issuer
            .token(AUDIENCE)
            .subject("carol")
            .scopes(["notes:read"])
            .expires_in(Duration::from_secs(60))
            .mint()
            .expect("mint");
        let principal = authz.verifier().verify(&token).await.expect("valid now");
        let wrapped = authz
            .wrap_for(Notes::new(), principal)
            .expect("the policy fits the notes server");
        let (client, server) = connect_in_memory(wrapped).await;
        Session {
            clock,
            sink,
            client,
            server,
        }
    }
}

/// Each method, before and after the token's `exp` on the injected clock: served (or
/// answered by the handler) before, refused after; exactly one event for each request.
#[tokio::test]
async fn every_method_is_gated_and_audited_on_stdio_with_a_manual_clock() {
    let Session {
        clock,
        sink,
        client,
        server,
    } = Session::start().await;
    let mut seen = sink.events().len();
    assert_eq!(seen, 1, "initialize: {:?}", sink.events());

    // Before exp: through the gate (discover last: the client caches its answer).
    for method in Method::ALL {
        let result = method.send(&client).await;
        assert_not_refused(method, &result);
        let events = sink.events();
        let event = one_event(&events[seen..], method.name(), DecisionKind::Allow);
        assert_eq!(event.subject.as_deref(), Some("carol"));
        assert_eq!(event.transport.as_deref(), Some("stdio"));
        seen = events.len();
    }

    // At exp: every method is refused, and recorded as refused.
    clock.advance(Duration::from_secs(60));
    // A new client: the first one holds a cached discover answer.
    for method in Method::ALL {
        if method == Method::Discover {
            continue;
        }
        let error = method.send(&client).await.expect_err("refused after exp");
        assert_expired(method, &error);
        let events = sink.events();
        let event = one_event(&events[seen..], method.name(), DecisionKind::Deny);
        assert_eq!(event.reason_code.as_deref(), Some("token_expired"));
        assert_eq!(event.outcome, Outcome::Denied);
        assert_eq!(event.subject.as_deref(), Some("carol"), "{event:?}");
        seen = events.len();
    }
    let _ = client.cancel().await;
    let _ = server.await;
}

/// `server/discover` after exp, on a client that never asked before (rmcp's client
/// caches a discover answer, and serves a stale one when the request fails).
#[tokio::test]
async fn discover_is_refused_after_exp_on_stdio() {
    let Session {
        clock,
        sink,
        client,
        server,
    } = Session::start().await;
    clock.advance(Duration::from_secs(61));
    let seen = sink.events().len();
    let error = Method::Discover
        .send(&client)
        .await
        .expect_err("discover after exp");
    assert_expired(Method::Discover, &error);
    let events = sink.events();
    let event = one_event(&events[seen..], "server/discover", DecisionKind::Deny);
    assert_eq!(event.reason_code.as_deref(), Some("token_expired"));
    let _ = client.cancel().await;
    let _ = server.await;
}

// ---------------------------------------------------------------------------------------
// stdio, a real child process, a token that expires during the session.
// ---------------------------------------------------------------------------------------

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_secs()).expect("fits")
}

/// The events of an audit file, in order.
fn audit_events(path: &Path) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("an audit event"))
        .collect()
}

/// The `notes_stdio` fixture with a token that expires three seconds after it is minted:
/// after `exp` (waited for on the wall clock, a few seconds, never asserted on), every
/// method is refused, and each refusal is one event in the durable audit file.
#[tokio::test]
async fn an_expired_token_is_refused_for_every_method_by_the_stdio_server() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).expect("write the JWK Set");
    let audit = dir.path().join("audit.jsonl");
    let token = issuer
        .token(AUDIENCE)
        .subject("dave")
        .scopes(["notes:read"])
        .expires_in(Duration::from_secs(3))
        .mint()
        .expect("mint");
    let exp = issuer
        .verifier(AUDIENCE)
        .build()
        .expect("verifier")
        .verify_sync(&token)
        .expect("valid now")
        .expires_at();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notes_stdio"));
    cmd.env("NOTES_JWKS_FILE", &jwks)
        .env("NOTES_ISSUER", ISSUER)
        .env("NOTES_AUDIENCE", AUDIENCE)
        .env("NOTES_AUDIT_FILE", &audit)
        .env(DEFAULT_TOKEN_VAR, &token)
        .kill_on_drop(true);
    let transport = TokioChildProcess::new(cmd).expect("spawn notes_stdio");
    let client = timeout(STEP, ().serve(transport))
        .await
        .expect("initialize in time")
        .expect("the client connects before exp");

    // Wait for exp on the wall clock the child reads.
    while unix_now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = audit_events(&audit).len();
    assert!(seen >= 1, "initialize was recorded");
    for method in [
        Method::Ping,
        Method::SetLevel,
        Method::Unsubscribe,
        Method::Discover,
        Method::ListTools,
        Method::CallTool,
        Method::Complete,
        Method::Custom,
    ] {
        let error = method.send(&client).await.expect_err("refused after exp");
        assert_expired(method, &error);
        let events = audit_events(&audit);
        let event = one_event(&events[seen..], method.name(), DecisionKind::Deny);
        assert_eq!(event.reason_code.as_deref(), Some("token_expired"));
        assert_eq!(event.subject.as_deref(), Some("dave"));
        assert_eq!(event.transport.as_deref(), Some("stdio"));
        seen = events.len();
    }
    let _ = client.cancel().await;
    let report = rmcp_authz::audit::verify_chain(&[&audit]).expect("the chain verifies");
    assert_eq!(report.records, seen);
}

// ---------------------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------------------

/// Over the endpoint `Authz::router` builds, with an audit log: each request leaves
/// exactly one event naming its method, allowed ones (recorded by the wrapper) and
/// denied ones (recorded by the layer) alike.
#[tokio::test]
async fn every_method_leaves_exactly_one_event_over_http() {
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .expect("auditor");
    let server = TestServer::start_router(policy(), Some(auditor)).await;
    let token = server.token(&["notes:read"]);
    let client = timeout(STEP, server.legacy_client(&token))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut seen = sink.events().len();
    let initialize = one_event(&sink.events()[..], "initialize", DecisionKind::Allow).clone();
    assert_eq!(initialize.transport.as_deref(), Some("http"));

    // With rmcp's client: every method, allowed.
    for method in Method::ALL {
        // server/discover belongs to 2026-07-28 clients; a 2025-06-18 client sends none.
        if method == Method::Discover {
            continue;
        }
        let result = method.send(&client).await;
        assert_not_refused(method, &result);
        let events = sink.events();
        let event = one_event(&events[seen..], method.name(), DecisionKind::Allow);
        assert_eq!(event.subject.as_deref(), Some("alice"), "{event:?}");
        seen = events.len();
    }

    // Raw requests the layer refuses: one event each, naming the method; the message
    // names it too.
    let refused = [
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "audit_report"},
                   "argument": {"name": "topic", "value": "a"}}),
            403,
        ),
        ("notes/unruled", json!({}), 403),
        ("resources/subscribe", json!({"uri": "drafts://x"}), 403),
        ("resources/read", json!({"uri": "drafts://x"}), 403),
        ("tools/call", json!({"name": "purge", "arguments": {}}), 403),
    ];
    for (i, (method, params, status)) in refused.into_iter().enumerate() {
        let body = json!({"jsonrpc": "2.0", "id": 100 + i, "method": method, "params": params});
        let raw = send(mcp_post(&server, Some(&token), &body)).await;
        assert_eq!(raw.status, status, "{method}: {raw:?}");
        let message = raw.message();
        let text = message["error"]["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(method), "{method}: {text}");
        let events = sink.events();
        let event = one_event(&events[seen..], method, DecisionKind::Deny);
        assert_eq!(
            event.request_id.as_deref(),
            Some((100 + i).to_string().as_str())
        );
        seen = events.len();
    }

    // Raw requests that pass: ping and resources/unsubscribe without rmcp's client.
    for (i, (method, params)) in [
        ("ping", Value::Null),
        ("resources/unsubscribe", json!({"uri": "notes://welcome"})),
        ("tools/list", json!({})),
        (ECHO, json!({})),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = json!({"jsonrpc": "2.0", "id": 200 + i, "method": method});
        if !params.is_null() {
            body["params"] = params;
        }
        let raw = send(
            mcp_post(&server, Some(&token), &body).header("mcp-protocol-version", "2025-06-18"),
        )
        .await;
        assert_eq!(raw.status, 200, "{method}: {raw:?}");
        let events = sink.events();
        one_event(&events[seen..], method, DecisionKind::Allow);
        seen = events.len();
    }

    // A 2026-07-28 client opens with server/discover: one event.
    let modern = timeout(STEP, server.modern_client(&token))
        .await
        .expect("connect in time")
        .expect("a 2026-07-28 client connects");
    let events = sink.events();
    one_event(&events[seen..], "server/discover", DecisionKind::Allow);
    let _ = modern.cancel().await;
    let _ = client.cancel().await;
}

/// "Every message names the method it refused": a request refused because the stdio
/// token has expired says `ping refused: ...`, `tools/call whoami refused: ...`, not a
/// bare `request refused: ...` (the audit event names the method too).
#[tokio::test]
async fn an_expiry_refusal_names_the_method_it_refused() {
    let Session {
        clock,
        client,
        server,
        ..
    } = Session::start().await;
    clock.advance(Duration::from_secs(60));
    let mut unnamed = Vec::new();
    for method in [
        Method::Ping,
        Method::SetLevel,
        Method::ListTools,
        Method::CallTool,
        Method::Custom,
    ] {
        let error = method.send(&client).await.expect_err("refused after exp");
        assert_expired(method, &error);
        if !error.message.starts_with(method.name()) {
            unnamed.push(format!("{}: {:?}", method.name(), error.message));
        }
    }
    assert!(
        unnamed.is_empty(),
        "messages not naming the method: {unnamed:#?}"
    );
    let _ = client.cancel().await;
    let _ = server.await;
}
