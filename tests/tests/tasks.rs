//! Task ownership end to end (MCP Tasks extension, SEP-2663, 2026-07-28): a task belongs
//! to the caller who started it (issuer, subject and client), and `tasks/get`,
//! `tasks/update` and `tasks/cancel` of anyone else are refused before the server sees
//! them, over real HTTP on 127.0.0.1 with rmcp's own client, in sessionless (2026-07-28)
//! and session (2025-06-18) mode.
//!
//! The server is a small handler with one task-capable tool, `report`, run by rmcp's own
//! `TaskManager`. The task waits until the test releases it (or it is cancelled), so the
//! test sees it both working and finished. The handler logs every task request it
//! receives: a refused request must never appear there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, ContentBlock, CreateTaskResult, CustomRequest, CustomResult, ErrorCode,
    GetTaskParams, GetTaskResult, InputResponses, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig, TaskPayload, TaskStatus, Tool,
    UpdateTaskParams,
};
use rmcp::service::{
    ClientLifecycleMode, RequestContext, RoleClient, RunningService, ServiceError,
};
use rmcp::task_manager::{TaskExit, TaskManager, TaskOptions};
use rmcp::{ClientServiceExt as _, ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use rmcp_authz::audit::{AuditEvent, Auditor, Durability, MemorySink};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::Policy;
use rmcp_authz::server::FORBIDDEN;
use rmcp_authz::{Authz, Principal};
use rmcp_authz_tests::http::{bearer, post_to, send};
use rmcp_authz_tests::server::{ISSUER, transport};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Every step is bounded, so a hang fails the test instead of stalling the run.
const STEP: Duration = Duration::from_secs(8);

/// The scope `report` needs.
const SCOPE: &str = "reports:read";

// ---------------------------------------------------------------------------------------
// The server: one task-capable tool.
// ---------------------------------------------------------------------------------------

/// A server whose `report` tool runs as a task, held until the test releases it.
#[derive(Clone)]
struct Reports {
    tasks: TaskManager,
    release: Arc<watch::Sender<bool>>,
    /// Every task request that reached this handler, as `method taskId`.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Reports {
    fn new() -> Self {
        Reports {
            tasks: TaskManager::new(),
            release: Arc::new(watch::channel(false).0),
            seen: Arc::default(),
        }
    }

    fn saw(&self, method: &str, task_id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{method} {task_id}"));
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets every running `report` finish.
    fn release(&self) {
        self.release.send_replace(true);
    }
}

fn report_tool() -> Tool {
    let schema = json!({"type": "object", "properties": {}});
    let Value::Object(schema) = schema else {
        unreachable!()
    };
    Tool::new("report", "A slow report, run as a task", Arc::new(schema))
}

impl ServerHandler for Reports {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == "report").then(report_tool)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![report_tool()]))
    }

    /// `report` becomes a task whose result names the caller who started it: the data
    /// another caller must not read.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != "report" {
            return Err(McpError::invalid_params("no such tool", None));
        }
        let owner = context
            .extensions
            .get::<Principal>()
            .and_then(|p| p.subject().map(str::to_owned))
            .unwrap_or_default();
        let mut released = self.release.subscribe();
        let task = self.tasks.spawn(TaskOptions::new(), move |task| {
            Box::pin(async move {
                tokio::select! {
                    () = task.cancelled() => Err(TaskExit::Cancelled),
                    _ = released.wait_for(|r| *r) => Ok(CallToolResult::success(vec![
                        ContentBlock::text(format!("the report of {owner}")),
                    ])),
                }
            })
        });
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.saw("tasks/get", &request.task_id);
        Ok(GetTaskResult::new(self.tasks.get_task(&request.task_id)?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.saw("tasks/update", &request.task_id);
        self.tasks
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.saw("tasks/cancel", &request.task_id);
        self.tasks.cancel_task(&request.task_id)
    }

    /// Methods rmcp does not know (`tasks/result`, `tasks/list` of older drafts) arrive
    /// here; a refused one must not.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.saw(&request.method, "");
        Err(McpError::new(
            ErrorCode::METHOD_NOT_FOUND,
            request.method,
            None,
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Starting it behind rmcp-authz, and clients.
// ---------------------------------------------------------------------------------------

/// The reports server behind `rmcp-authz` on 127.0.0.1, stopped when dropped.
struct Served {
    url: String,
    issuer: DevIssuer,
    reports: Reports,
    audit: Arc<MemorySink>,
    stateful: bool,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    /// Starts the server with sessions (`stateful`, 2025-06-18 clients) or without
    /// (2026-07-28 clients).
    async fn start(stateful: bool) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
        let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
        let verifier = issuer.verifier(url.clone()).build().expect("verifier");
        let policy = Policy::builder()
            .tool("report", SCOPE)
            .build()
            .expect("policy");
        let audit = Arc::new(MemorySink::new());
        let auditor = Auditor::builder(audit.clone())
            .durability(Durability::Durable)
            .build()
            .expect("auditor");
        let authz = Authz::builder(verifier, policy).auditor(auditor).build();

        let reports = Reports::new();
        // One store for every request: rmcp makes a handler per request (per session with
        // sessions on), and clones share the store.
        let handler = reports.clone();
        let config = authz.http_config().with_legacy_session_mode(stateful);
        let app = authz
            .router_with("/mcp", move || handler.clone(), config)
            .expect("the policy fits");
        let task = tokio::spawn(async move {
            let _ = authz.serve(listener, app, std::future::pending()).await;
        });
        Served {
            url,
            issuer,
            reports,
            audit,
            stateful,
            task,
        }
    }

    /// A token for this server naming `subject` via `client`, with `scopes`.
    fn token(&self, subject: &str, client: &str, scopes: &[&str]) -> String {
        self.issuer
            .token(&self.url)
            .subject(subject)
            .client_id(client)
            .scopes(scopes)
            .mint()
            .expect("mint")
    }

    /// An rmcp client presenting `token` and declaring the tasks extension: 2026-07-28
    /// (discover, no session) on a sessionless server, 2025-06-18 (initialize, a session)
    /// on a stateful one.
    async fn client(&self, token: &str) -> RunningService<RoleClient, ClientConfig> {
        let mut config = ClientConfig::default();
        config.capabilities = ClientCapabilities::builder().enable_tasks().build();
        let connect = async {
            if self.stateful {
                config
                    .with_protocol_version(ProtocolVersion::V_2025_06_18)
                    .serve(transport(&self.url, token))
                    .await
            } else {
                config
                    .serve_with_lifecycle(
                        transport(&self.url, token),
                        ClientLifecycleMode::Discover {
                            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                        },
                    )
                    .await
            }
        };
        tokio::time::timeout(STEP, connect)
            .await
            .expect("connect timed out")
            .expect("connect")
    }

    /// The audit events of `method` on `task_id` so far.
    fn events(&self, method: &str, task_id: &str) -> Vec<AuditEvent> {
        self.audit
            .events()
            .into_iter()
            .filter(|e| e.method.as_deref() == Some(method) && e.target.as_deref() == Some(task_id))
            .collect()
    }
}

/// A client's call, bounded by [`STEP`].
async fn step<T>(f: impl Future<Output = Result<T, ServiceError>>) -> Result<T, ServiceError> {
    tokio::time::timeout(STEP, f)
        .await
        .expect("request timed out")
}

/// Starts `report` as `client`'s task; returns the task id.
async fn start_report(client: &RunningService<RoleClient, ClientConfig>) -> String {
    match step(client.call_tool_once(CallToolRequestParams::new("report")))
        .await
        .expect("report starts")
    {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            created.task.task_id
        }
        other => panic!("expected a task, got {other:?}"),
    }
}

/// The JSON-RPC error of a refused call.
fn refusal(result: Result<impl std::fmt::Debug, ServiceError>) -> McpError {
    match result {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

/// Asserts `error` is the wrapper's denial of a task operation, and that exactly one
/// audit event records `method` on `task_id` as denied for `subject` with `reason`.
fn assert_denied(
    server: &Served,
    error: &McpError,
    method: &str,
    task_id: &str,
    subject: &str,
    reason: &str,
) {
    assert_eq!(error.code, FORBIDDEN, "{method}: {error:?}");
    assert_eq!(
        error.data,
        Some(json!({"error": "access_denied"})),
        "{method}: {error:?}"
    );
    let denied: Vec<_> = server
        .events(method, task_id)
        .into_iter()
        .filter(|e| e.subject.as_deref() == Some(subject) && e.reason_code.is_some())
        .collect();
    assert_eq!(
        denied.len(),
        1,
        "one denial of {method} by {subject}: {denied:?}"
    );
    assert_eq!(denied[0].reason_code.as_deref(), Some(reason), "{denied:?}");
}

/// Polls `tasks/get` as `client` until the task reaches a terminal status.
async fn wait_terminal(
    client: &RunningService<RoleClient, ClientConfig>,
    task_id: &str,
) -> GetTaskResult {
    tokio::time::timeout(STEP, async {
        loop {
            let got = client
                .get_task(GetTaskParams::new(task_id))
                .await
                .expect("the owner polls its task");
            if got.task.status().is_terminal() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the task did not finish")
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

/// Alice starts a task; bob (same client, same scopes) and alice through another client
/// are refused `tasks/get`, `tasks/update` and `tasks/cancel` on it, before the handler
/// sees them, while it works and after it completed; alice reads it throughout, and
/// because bob's cancel never reached the handler, her task completes with her result.
async fn only_the_owner_reaches_a_task(stateful: bool) {
    let server = Served::start(stateful).await;
    let alice = server
        .client(&server.token("alice", "reports-agent", &[SCOPE]))
        .await;
    let bob = server
        .client(&server.token("bob", "reports-agent", &[SCOPE]))
        .await;
    let alice_elsewhere = server
        .client(&server.token("alice", "other-agent", &[SCOPE]))
        .await;

    let task_id = start_report(&alice).await;

    let get = step(bob.get_task(GetTaskParams::new(&task_id))).await;
    assert_denied(
        &server,
        &refusal(get),
        "tasks/get",
        &task_id,
        "bob",
        "not_owner",
    );
    let update =
        step(bob.update_task(UpdateTaskParams::new(&task_id, InputResponses::new()))).await;
    assert_denied(
        &server,
        &refusal(update),
        "tasks/update",
        &task_id,
        "bob",
        "not_owner",
    );
    let cancel = step(bob.cancel_task(CancelTaskParams::new(&task_id))).await;
    assert_denied(
        &server,
        &refusal(cancel),
        "tasks/cancel",
        &task_id,
        "bob",
        "not_owner",
    );
    // Same subject, another client: another caller.
    let elsewhere = step(alice_elsewhere.get_task(GetTaskParams::new(&task_id))).await;
    let error = refusal(elsewhere);
    assert_eq!(error.code, FORBIDDEN, "{error:?}");
    // The same answer as for a task that does not exist: task ids are not disclosed.
    assert_eq!(
        error.message,
        format!("tasks/get {task_id} refused: no task started by this caller has this id"),
        "{error:?}"
    );
    assert_eq!(
        server.reports.seen(),
        Vec::<String>::new(),
        "no refused request reaches the handler"
    );

    let working = step(alice.get_task(GetTaskParams::new(&task_id)))
        .await
        .expect("alice reads her task");
    assert_eq!(
        working.task.status(),
        TaskStatus::Working,
        "bob's cancel took no effect"
    );

    server.reports.release();
    let done = wait_terminal(&alice, &task_id).await;
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("alice's task completed, not cancelled by bob: {done:?}");
    };
    assert_eq!(
        result["content"][0]["text"], "the report of alice",
        "{result:?}"
    );

    // A finished task's result is as private as a running one.
    let after = step(bob.get_task(GetTaskParams::new(&task_id))).await;
    let error = refusal(after);
    assert_eq!(error.code, FORBIDDEN, "{error:?}");
    assert!(
        !format!("{error:?}").contains("the report of alice"),
        "{error:?}"
    );
    assert!(
        server
            .reports
            .seen()
            .iter()
            .all(|s| s == &format!("tasks/get {task_id}")),
        "only alice's polls reached the handler: {:?}",
        server.reports.seen()
    );
}

#[tokio::test]
async fn only_the_owner_reaches_a_task_sessionless() {
    only_the_owner_reaches_a_task(false).await;
}

#[tokio::test]
async fn only_the_owner_reaches_a_task_with_sessions() {
    only_the_owner_reaches_a_task(true).await;
}

#[tokio::test]
async fn the_owner_cancels_their_task() {
    let server = Served::start(false).await;
    let alice = server
        .client(&server.token("alice", "reports-agent", &[SCOPE]))
        .await;
    let task_id = start_report(&alice).await;
    step(alice.cancel_task(CancelTaskParams::new(&task_id)))
        .await
        .expect("alice cancels her task");
    let done = wait_terminal(&alice, &task_id).await;
    assert_eq!(done.task.status(), TaskStatus::Cancelled, "{done:?}");
    assert!(
        server
            .reports
            .seen()
            .contains(&format!("tasks/cancel {task_id}")),
        "{:?}",
        server.reports.seen()
    );
}

/// A task id no one was given is refused like a foreign one: by the wrapper, before the
/// handler, whoever asks.
#[tokio::test]
async fn a_task_id_never_issued_is_refused() {
    let server = Served::start(false).await;
    let alice = server
        .client(&server.token("alice", "reports-agent", &[SCOPE]))
        .await;
    // A real task exists, so the store is not empty.
    let _real = start_report(&alice).await;
    let invented = "0190c5d0-0000-7000-8000-000000000000";

    let get = step(alice.get_task(GetTaskParams::new(invented))).await;
    let get = refusal(get);
    assert_eq!(
        get.message,
        format!("tasks/get {invented} refused: no task started by this caller has this id"),
        "{get:?}"
    );
    assert_denied(&server, &get, "tasks/get", invented, "alice", "no_rule");
    let update =
        step(alice.update_task(UpdateTaskParams::new(invented, InputResponses::new()))).await;
    assert_denied(
        &server,
        &refusal(update),
        "tasks/update",
        invented,
        "alice",
        "no_rule",
    );
    let cancel = step(alice.cancel_task(CancelTaskParams::new(invented))).await;
    assert_denied(
        &server,
        &refusal(cancel),
        "tasks/cancel",
        invented,
        "alice",
        "no_rule",
    );
    assert_eq!(server.reports.seen(), Vec::<String>::new());
}

/// The task's owner still needs the scope of the tool that started it: a token of the
/// same caller without it is refused with the step-up scope.
#[tokio::test]
async fn a_task_needs_the_scope_of_its_tool() {
    let server = Served::start(false).await;
    let alice = server
        .client(&server.token("alice", "reports-agent", &[SCOPE]))
        .await;
    let task_id = start_report(&alice).await;
    // Over HTTP the layer answers with the step-up challenge a client acts on.
    let narrowed = server.token("alice", "reports-agent", &["other"]);
    let body = json!({
        "jsonrpc": "2.0", "id": 9, "method": "tasks/get",
        "params": {
            "taskId": task_id,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {
                    "extensions": {"io.modelcontextprotocol/tasks": {}}
                },
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
            }
        }
    });
    let raw = send(mcp_post_2026(&server, &narrowed, &body, "tasks/get")).await;
    assert_eq!(raw.status, 403, "{raw:?}");
    assert_eq!(
        raw.bearer_challenge().param("scope"),
        Some(SCOPE),
        "{raw:?}"
    );
    let message = raw.message();
    assert_eq!(message["id"], 9, "{message}");
    assert_eq!(
        message["error"]["data"],
        json!({"error": "insufficient_scope", "scope": SCOPE}),
        "{message}"
    );
    let text = message["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("tasks/get (decided as tools/call "),
        "{text}"
    );
    assert_eq!(server.reports.seen(), Vec::<String>::new());

    // Another caller with the same narrow scopes learns nothing from the layer: the
    // wrapper answers, as for a task never issued.
    let bob = server.token("bob", "reports-agent", &["other"]);
    let raw =
        send(mcp_post_2026(&server, &bob, &body, "tasks/get").header("mcp-name", &task_id)).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(
        raw.message()["error"]["code"],
        json!(FORBIDDEN.0),
        "{raw:?}"
    );
}

/// `tasks/result` and `tasks/list` (2025-11-25 tasks, removed by SEP-2663) are no
/// methods of rmcp 3.11: they arrive as custom requests, which no rule names, so they are
/// refused for the owner and everyone else, before the handler.
#[tokio::test]
async fn tasks_result_and_tasks_list_are_refused() {
    let server = Served::start(false).await;
    let alice = server
        .client(&server.token("alice", "reports-agent", &[SCOPE]))
        .await;
    let task_id = start_report(&alice).await;
    for subject in ["alice", "bob"] {
        let token = server.token(subject, "reports-agent", &[SCOPE]);
        for (method, params) in [
            ("tasks/result", json!({"taskId": task_id})),
            ("tasks/list", json!({})),
        ] {
            let mut params = params;
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {
                    "extensions": {"io.modelcontextprotocol/tasks": {}}
                },
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
            });
            let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
            let raw = send(mcp_post_2026(&server, &token, &body, method)).await;
            let message = raw.message();
            assert_eq!(
                message["error"]["code"],
                json!(FORBIDDEN.0),
                "{subject} {method}: {raw:?}"
            );
        }
    }
    assert_eq!(server.reports.seen(), Vec::<String>::new());
    for method in ["tasks/result", "tasks/list"] {
        let reasons: Vec<_> = server
            .audit
            .events()
            .into_iter()
            .filter(|e| e.method.as_deref() == Some(method))
            .map(|e| e.reason_code)
            .collect();
        assert_eq!(
            reasons,
            [Some("no_rule".to_owned()), Some("no_rule".to_owned())],
            "{method}: denied by the wrapper for alice and bob"
        );
    }
}

/// A raw 2026-07-28 POST of `body` with `token` and the `Mcp-Method` header.
fn mcp_post_2026(
    server: &Served,
    token: &str,
    body: &Value,
    method: &str,
) -> reqwest::RequestBuilder {
    post_to(&server.url, body.to_string())
        .header("authorization", bearer(token))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
}
