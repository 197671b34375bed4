//! `requestState` (SEP-2322 multi round-trip requests, MCP 2026-07-28) bound to the
//! caller end to end: a handler answers `tools/call`, `prompts/get` and `resources/read`
//! with an `InputRequiredResult` carrying a plain state; the client receives it sealed to
//! its principal and the request; the owner's retry reaches the handler with the plain
//! state; another principal's replay, a replay against another tool, an altered state and
//! a state the client made up are refused with `-32602` before the handler runs. Over
//! real HTTP on 127.0.0.1 with rmcp's own 2026-07-28 client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock, ErrorCode,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, InputRequiredResult,
    ListToolsResult, PaginatedRequestParams, PromptMessage, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ResourceContents, Role,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{
    ClientLifecycleMode, RequestContext, RoleClient, RunningService, ServiceError,
};
use rmcp::{ClientServiceExt as _, ErrorData as McpError, RoleServer, ServerHandler};
use rmcp_authz::Authz;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::Policy;
use rmcp_authz_tests::server::{ISSUER, transport};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const STEP: Duration = Duration::from_secs(8);
const SCOPE: &str = "travel:book";
const RESOURCE: &str = "booking://current";

/// A server whose every answer takes two rounds: the first asks for input with a plain
/// state naming the request, the second completes with the state it got back.
#[derive(Clone, Default)]
struct Booking {
    /// Every `requestState` that reached the handler (`None` for a first round).
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Booking {
    fn saw(&self, state: Option<&String>) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state.cloned());
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn tool(name: &'static str) -> Tool {
    let Value::Object(schema) = json!({"type": "object", "properties": {}}) else {
        unreachable!()
    };
    Tool::new(name, "two rounds", Arc::new(schema))
}

impl ServerHandler for Booking {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        ["book", "cancel"]
            .into_iter()
            .find(|t| *t == name)
            .map(tool)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("book"),
            tool("cancel"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.saw(request.request_state.as_ref());
        Ok(match request.request_state {
            None => {
                InputRequiredResult::from_request_state(format!("{}:seat=14C", request.name)).into()
            }
            Some(state) => {
                CallToolResult::success(vec![ContentBlock::text(format!("done: {state}"))]).into()
            }
        })
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.saw(request.request_state.as_ref());
        Ok(match request.request_state {
            None => InputRequiredResult::from_request_state("prompt:draft=1").into(),
            Some(state) => {
                GetPromptResult::new(vec![PromptMessage::new_text(Role::User, state)]).into()
            }
        })
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.saw(request.request_state.as_ref());
        Ok(match request.request_state {
            None => InputRequiredResult::from_request_state("resource:page=2").into(),
            Some(state) => {
                ReadResourceResult::new(vec![ResourceContents::text(state, request.uri)]).into()
            }
        })
    }
}

/// The booking server behind `rmcp-authz`, sessionless, on 127.0.0.1.
struct Served {
    url: String,
    issuer: DevIssuer,
    booking: Booking,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    async fn start() -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
        let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
        let verifier = issuer.verifier(url.clone()).build().expect("verifier");
        let policy = Policy::builder()
            .tool("book", SCOPE)
            .tool("cancel", SCOPE)
            .prompt("confirm", SCOPE)
            .resource(RESOURCE, SCOPE)
            .build()
            .expect("policy");
        let authz = Authz::new(verifier, policy);
        let booking = Booking::default();
        // One store for every request: rmcp makes a handler per request (per session with
        // sessions on), and clones share the store.
        let handler = booking.clone();
        let config = authz.http_config().with_legacy_session_mode(false);
        let app = authz
            .router_with("/mcp", move || handler.clone(), config)
            .expect("the policy fits");
        let task = tokio::spawn(async move {
            let _ = authz.serve(listener, app, std::future::pending()).await;
        });
        Served {
            url,
            issuer,
            booking,
            task,
        }
    }

    /// A 2026-07-28 client of `subject` via `client`.
    async fn client(
        &self,
        subject: &str,
        client: &str,
    ) -> RunningService<RoleClient, ClientConfig> {
        let token = self
            .issuer
            .token(&self.url)
            .subject(subject)
            .client_id(client)
            .scopes([SCOPE])
            .mint()
            .expect("mint");
        let connect = ClientConfig::default().serve_with_lifecycle(
            transport(&self.url, &token),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        );
        tokio::time::timeout(STEP, connect)
            .await
            .expect("connect timed out")
            .expect("connect")
    }
}

async fn step<T>(f: impl Future<Output = Result<T, ServiceError>>) -> Result<T, ServiceError> {
    tokio::time::timeout(STEP, f)
        .await
        .expect("request timed out")
}

/// The first round of `tool`: its sealed state.
async fn first_round(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
) -> String {
    match step(client.call_tool_once(CallToolRequestParams::new(tool)))
        .await
        .expect("first round")
    {
        CallToolResponse::InputRequired(r) => r.request_state.expect("a requestState"),
        other => panic!("expected input_required, got {other:?}"),
    }
}

/// A retry of `tool` with `state`.
async fn retry(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
    state: &str,
) -> Result<CallToolResponse, ServiceError> {
    step(client.call_tool_once(CallToolRequestParams::new(tool).with_request_state(state))).await
}

/// Asserts `result` is the one refusal of a state that does not open.
fn assert_state_refused<T: std::fmt::Debug>(result: Result<T, ServiceError>, what: &str) {
    match result {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{what}: {e:?}");
            assert_eq!(
                e.data,
                Some(json!({"error": "invalid_request_state"})),
                "{what}: {e:?}"
            );
        }
        other => panic!("{what}: expected -32602, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tool_state_opens_only_for_its_caller_and_tool() {
    let server = Served::start().await;
    let alice = server.client("alice", "travel-agent").await;
    let bob = server.client("bob", "travel-agent").await;
    let alice_elsewhere = server.client("alice", "other-agent").await;

    let sealed = first_round(&alice, "book").await;
    assert_ne!(sealed, "book:seat=14C", "the client gets the state sealed");
    assert!(
        !sealed.contains("alice"),
        "the state names no caller: {sealed}"
    );

    // Refused before the handler: another principal, another client of the same user,
    // another tool, an altered state, a state the client made up.
    assert_state_refused(
        retry(&bob, "book", &sealed).await,
        "bob replays alice's state",
    );
    assert_state_refused(
        retry(&alice_elsewhere, "book", &sealed).await,
        "alice through another client",
    );
    assert_state_refused(retry(&alice, "cancel", &sealed).await, "another tool");
    let mut altered = sealed.clone();
    let last = altered.pop().expect("non-empty");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert_state_refused(retry(&alice, "book", &altered).await, "an altered state");
    assert_state_refused(
        retry(&alice, "book", "book:seat=1A").await,
        "a made-up state",
    );
    assert_eq!(
        server.booking.seen(),
        [None],
        "only alice's first round reached the handler"
    );

    // Alice's own retry reaches the handler with the state it emitted.
    match retry(&alice, "book", &sealed).await.expect("alice's retry") {
        CallToolResponse::Complete(result) => {
            let text = serde_json::to_value(&result.content).expect("content");
            assert_eq!(text[0]["text"], "done: book:seat=14C", "{result:?}");
        }
        other => panic!("expected a result, got {other:?}"),
    }
    assert_eq!(
        server.booking.seen(),
        [None, Some("book:seat=14C".to_owned())]
    );
}

#[tokio::test]
async fn prompt_and_resource_states_are_bound_too() {
    let server = Served::start().await;
    let alice = server.client("alice", "travel-agent").await;
    let bob = server.client("bob", "travel-agent").await;

    let prompt = match step(alice.get_prompt_once(GetPromptRequestParams::new("confirm")))
        .await
        .expect("first round")
    {
        GetPromptResponse::InputRequired(r) => r.request_state.expect("a requestState"),
        other => panic!("expected input_required, got {other:?}"),
    };
    let resource = match step(alice.read_resource_once(ReadResourceRequestParams::new(RESOURCE)))
        .await
        .expect("first round")
    {
        ReadResourceResponse::InputRequired(r) => r.request_state.expect("a requestState"),
        other => panic!("expected input_required, got {other:?}"),
    };
    assert_ne!(prompt, "prompt:draft=1");
    assert_ne!(resource, "resource:page=2");

    let bob_prompt = step(
        bob.get_prompt_once(GetPromptRequestParams::new("confirm").with_request_state(&prompt)),
    )
    .await;
    assert_state_refused(bob_prompt, "bob replays alice's prompt state");
    let bob_resource = step(bob.read_resource_once(
        ReadResourceRequestParams::new(RESOURCE).with_request_state(&resource),
    ))
    .await;
    assert_state_refused(bob_resource, "bob replays alice's resource state");
    // A prompt's state is not a resource's.
    let swapped =
        step(alice.read_resource_once(
            ReadResourceRequestParams::new(RESOURCE).with_request_state(&prompt),
        ))
        .await;
    assert_state_refused(swapped, "a prompt state on a resource read");
    assert_eq!(server.booking.seen(), [None, None]);

    let done = step(
        alice.get_prompt_once(GetPromptRequestParams::new("confirm").with_request_state(&prompt)),
    )
    .await
    .expect("alice's prompt retry");
    assert!(matches!(done, GetPromptResponse::Complete(_)), "{done:?}");
    let done = step(alice.read_resource_once(
        ReadResourceRequestParams::new(RESOURCE).with_request_state(&resource),
    ))
    .await
    .expect("alice's resource retry");
    assert!(
        matches!(done, ReadResourceResponse::Complete(_)),
        "{done:?}"
    );
    assert_eq!(
        server.booking.seen(),
        [
            None,
            None,
            Some("prompt:draft=1".to_owned()),
            Some("resource:page=2".to_owned())
        ]
    );
}
