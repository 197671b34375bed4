//! The `Authorized` wrapper must forward every `ServerHandler` method: rmcp gives each one
//! a default, so a method the wrapper forgets silently answers with rmcp's default instead
//! of the wrapped server's. These tests put a spy handler behind the wrapper and call
//! methods through it; nothing here reads source text.
//!
//! `every_method_is_forwarded_or_gated` calls every method of rmcp's `ServerHandler`, one
//! by one, through `Authz::wrap_for` over an in-memory pipe (as on stdio): for a caller the
//! policy allows, each must reach the spy, which records the name of every method that
//! runs; once that caller's token has expired (on a `ManualClock`), each request must be
//! refused with the wrapper's error and never reach the spy, a custom notification must be
//! dropped, MCP's own notifications pass (docs/policy.md: on stdio they need nothing more),
//! and the methods that are no request (`get_info`, `get_tool`, ...) still answer with the
//! spy's data.
//!
//! How "every method" is ensured without parsing rmcp's source:
//! - the spy's `impl ServerHandler` carries `#[deny(clippy::missing_trait_methods)]` (as
//!   the wrapper's does), so when rmcp adds a method, CI's clippy fails until the spy
//!   implements it;
//! - the impl is written inside `spy_handler!`, which also emits `SPY_METHODS`, the names of
//!   the methods in the impl: the list the test walks is read off the impl, so it holds
//!   every trait method and cannot drift from it;
//! - each spy method records its own name; the test calls every name in `SPY_METHODS`
//!   (`call` panics on a name it has no call for, so a new method needs a call written),
//!   checks that each call reached the spy as that method, and that the set the spy
//!   recorded for the allowed caller is exactly `SPY_METHODS`. A method the wrapper does
//!   not forward, a spy method recording the wrong name and a method never called all
//!   fail it.
//!
//! The other tests check details: what the forwarded calls carry (the principal, the
//! spy's data and errors) and that custom requests and notifications without a rule are
//! refused.

#![allow(deprecated)] // logging/setLevel and resources/(un)subscribe: legacy, still forwarded.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ArgumentInfo, CallToolRequestParams, CallToolResponse, CancelTaskParams,
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientNotification,
    ClientRequest, CompleteRequestParams, CompleteResult, CreateTaskResult, CustomNotification,
    CustomRequest, CustomResult, DetailedTask, DiscoverResult, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, GetSkillRequestParams, GetTaskParams, GetTaskResult, Implementation,
    InitializeRequestParams, InitializeResult, InputResponses, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListSkillsResult, ListToolsResult,
    LoggingLevel, NumberOrString, PaginatedRequestParams, PingRequest, ProgressNotificationParam,
    ProgressToken, ProtocolVersion, ReadResourceDirectoryRequestParams,
    ReadResourceDirectoryResult, ReadResourceRequestParams, ReadResourceResponse, Reference,
    RequestMetaObject, ServerCapabilities, ServerConfig, ServerResult, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, SubscriptionsListenRequest,
    SubscriptionsListenRequestParams, Task, TaskPayload, TaskStatus, Tool,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{
    ClientInitializeError, NotificationContext, RequestContext, RoleClient, RunningService,
    ServiceError, SubscriptionContext,
};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt as _};
use rmcp_authz::codes::{AUDIT_UNAVAILABLE, FORBIDDEN, UNAUTHENTICATED};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Policy, PolicyBuilder, ScopeExpr};
use rmcp_authz::server::Authorized;
use rmcp_authz::{Authz, Clock, ManualClock, Principal, SystemClock};
use rmcp_authz_tests::server::{connect_in_memory, serve_in_memory};
use serde_json::json;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------------------
// The spy.
// ---------------------------------------------------------------------------------------

const SPY_NAME: &str = "forwarding-spy-5e1c";
/// The version the spy answers `initialize` with.
const SPY_VERSION: ProtocolVersion = ProtocolVersion::V_2025_03_26;
/// The versions the spy supports: 2026-07-28 too, for `server/discover` and
/// `subscriptions/listen`, which the test sends with 2026-07-28 `_meta`.
const SUPPORTED: &[ProtocolVersion] = &[SPY_VERSION, ProtocolVersion::V_2026_07_28];
const AUDIENCE: &str = "urn:forwarding:test";
/// The spy's tool, prompt, resource and directory; the policy gives each the scope `spy:use`.
const TOOL: &str = "spy_tool";
const PROMPT: &str = "spy_prompt";
const RESOURCE: &str = "spy://r";
const DIRECTORY: &str = "spy://dir/";
/// The id of the task the spy's tool starts.
const TASK_ID: &str = "spy-task-1";

/// One call that reached the spy: the `ServerHandler` method that ran, and what it saw.
#[derive(Debug, Clone)]
struct Seen {
    method: &'static str,
    what: String,
}

/// A handler that records what reached it.
#[derive(Debug, Clone, Default)]
struct Spy {
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Spy {
    /// Records that `method` ran.
    fn record(&self, method: &'static str) {
        self.record_as(method, method);
    }

    /// Records that `method` ran and saw `what`.
    fn record_as(&self, method: &'static str, what: impl Into<String>) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Seen {
                method,
                what: what.into(),
            });
    }

    fn log(&self) -> Vec<Seen> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What reached the spy, in order.
    fn calls(&self) -> Vec<String> {
        self.log().into_iter().map(|s| s.what).collect()
    }

    /// Waits (briefly) until `what` has been recorded: notifications have no reply.
    async fn saw(&self, what: &str) -> bool {
        let deadline = tokio::time::Instant::now() + STEP;
        while tokio::time::Instant::now() < deadline {
            if self.calls().iter().any(|c| c == what) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// A position in the log, to ask what ran after it.
    fn mark(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The methods that ran since `mark`.
    fn methods_since(&self, mark: usize) -> Vec<&'static str> {
        self.log()
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .map(|s| s.method)
            .collect()
    }

    /// Whether `method` ran since `mark`.
    fn ran_since(&self, mark: usize, method: &str) -> bool {
        self.methods_since(mark).contains(&method)
    }

    /// Waits (briefly) until `method` has run since `mark`.
    async fn runs_since(&self, mark: usize, method: &str) -> bool {
        let deadline = tokio::time::Instant::now() + STEP;
        while tokio::time::Instant::now() < deadline {
            if self.ran_since(mark, method) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// The spy's configuration: what `get_info`, `initialize` and `server/discover` answer.
fn spy_config() -> ServerConfig {
    let mut info = ServerConfig::new(
        ServerCapabilities::builder()
            .enable_resources()
            .enable_skills_with_directory_read()
            .enable_tasks()
            .build(),
    );
    info.protocol_version = SPY_VERSION;
    info.server_info = Implementation::new(SPY_NAME, "9.9.9");
    info.instructions = Some("spy instructions".to_owned());
    info
}

fn spy_tool() -> Tool {
    Tool::new(TOOL, "a tool", serde_json::Map::new())
}

/// The filter the spy accepts for `subscriptions/listen`.
fn spy_filter() -> SubscriptionFilter {
    SubscriptionFilter::builder().prompts_list_changed().build()
}

/// The task the spy's tool starts.
fn spy_task() -> Task {
    let at = "2026-01-01T00:00:00Z";
    Task::new(TASK_ID, TaskStatus::Working, at, at)
}

/// The error the spy answers where it has nothing to give (the client must see it).
fn spy_error(method: &str) -> McpError {
    McpError::invalid_params(format!("spy has nothing for {method}"), None)
}

/// Writes out `impl ServerHandler for Spy` as given, under
/// `#[deny(clippy::missing_trait_methods)]`, and `SPY_METHODS`: the names of the methods in
/// it, in order (`sync { .. }` holds the methods written as `fn`, `async { .. }` those
/// written as `async fn`). The test walks `SPY_METHODS`, so it is read off the impl and
/// cannot leave a method out.
macro_rules! spy_handler {
    (
        sync {$(
            $(#[$sync_attr:meta])*
            fn $sync_name:ident $sync_args:tt -> $sync_ret:ty $sync_body:block
        )*}
        async {$(
            $(#[$async_attr:meta])*
            async fn $async_name:ident $async_args:tt $(-> $async_ret:ty)? $async_body:block
        )*}
    ) => {
        #[deny(clippy::missing_trait_methods)]
        impl ServerHandler for Spy {
            $($(#[$sync_attr])* fn $sync_name $sync_args -> $sync_ret $sync_body)*
            $($(#[$async_attr])* async fn $async_name $async_args $(-> $async_ret)? $async_body)*
        }

        /// Every method of `impl ServerHandler for Spy`, so (by the `deny` on it) every
        /// method of rmcp's `ServerHandler`.
        const SPY_METHODS: &[&str] = &[$(stringify!($sync_name),)* $(stringify!($async_name),)*];
    };
}

spy_handler! {
    sync {
        fn get_info(&self) -> ServerConfig {
            self.record("get_info");
            spy_config()
        }

        fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
            self.record("supported_protocol_versions");
            Cow::Borrowed(SUPPORTED)
        }

        fn negotiate_initialize(
            &self,
            _request: &InitializeRequestParams,
        ) -> Result<InitializeResult, McpError> {
            self.record("negotiate_initialize");
            Ok(spy_config())
        }

        fn get_tool(&self, name: &str) -> Option<Tool> {
            self.record("get_tool");
            (name == TOOL).then(spy_tool)
        }

        fn accepted_subscription_filter(
            &self,
            _requested: &SubscriptionFilter,
        ) -> Option<SubscriptionFilter> {
            self.record("accepted_subscription_filter");
            Some(spy_filter())
        }
    }
    async {
        async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), McpError> {
            self.record("ping");
            Ok(())
        }

        /// As rmcp's default, without asking `negotiate_initialize` (which would record it).
        async fn initialize(
            &self,
            request: InitializeRequestParams,
            context: RequestContext<RoleServer>,
        ) -> Result<InitializeResult, McpError> {
            self.record("initialize");
            context.peer.set_peer_info(request);
            Ok(spy_config())
        }

        async fn discover(
            &self,
            _context: RequestContext<RoleServer>,
        ) -> Result<DiscoverResult, McpError> {
            self.record("discover");
            Ok(DiscoverResult::from_server_info(
                SUPPORTED.to_vec(),
                spy_config(),
            ))
        }

        async fn complete(
            &self,
            _request: CompleteRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<CompleteResult, McpError> {
            self.record("complete");
            Ok(CompleteResult::default())
        }

        async fn set_level(
            &self,
            _request: SetLevelRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<(), McpError> {
            self.record("set_level");
            Ok(())
        }

        async fn get_prompt(
            &self,
            _request: GetPromptRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<GetPromptResponse, McpError> {
            self.record("get_prompt");
            Err(spy_error("get_prompt"))
        }

        async fn list_prompts(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListPromptsResult, McpError> {
            self.record("list_prompts");
            Ok(ListPromptsResult::default())
        }

        async fn list_resources(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListResourcesResult, McpError> {
            self.record("list_resources");
            Ok(ListResourcesResult::default())
        }

        async fn list_resource_templates(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListResourceTemplatesResult, McpError> {
            self.record("list_resource_templates");
            Ok(ListResourceTemplatesResult::default())
        }

        async fn read_resource(
            &self,
            _request: ReadResourceRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<ReadResourceResponse, McpError> {
            self.record("read_resource");
            Err(spy_error("read_resource"))
        }

        /// Ends the subscription at once (rmcp then answers its final result).
        async fn listen(&self, _context: SubscriptionContext) -> Result<(), McpError> {
            self.record("listen");
            Ok(())
        }

        async fn subscribe(
            &self,
            _request: SubscribeRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<(), McpError> {
            self.record("subscribe");
            Ok(())
        }

        async fn unsubscribe(
            &self,
            _request: UnsubscribeRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<(), McpError> {
            self.record("unsubscribe");
            Ok(())
        }

        /// The spy's tool starts a task (so the wrapper records who owns it).
        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, McpError> {
            self.record("call_tool");
            if request.name != TOOL {
                return Err(spy_error("call_tool"));
            }
            Ok(CallToolResponse::Task(CreateTaskResult::new(spy_task())))
        }

        async fn list_tools(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListToolsResult, McpError> {
            self.record("list_tools");
            Ok(ListToolsResult::with_all_items(vec![spy_tool()]))
        }

        async fn on_custom_request(
            &self,
            request: CustomRequest,
            context: RequestContext<RoleServer>,
        ) -> Result<CustomResult, McpError> {
            self.record_as("on_custom_request", format!("request {}", request.method));
            let subject = context
                .extensions
                .get::<Principal>()
                .and_then(|p| p.subject().map(str::to_owned));
            Ok(CustomResult::new(
                json!({ "echo": request.params, "subject": subject }),
            ))
        }

        async fn on_cancelled(
            &self,
            _notification: CancelledNotificationParam,
            _context: NotificationContext<RoleServer>,
        ) {
            self.record("on_cancelled");
        }

        async fn on_progress(
            &self,
            _notification: ProgressNotificationParam,
            _context: NotificationContext<RoleServer>,
        ) {
            self.record("on_progress");
        }

        async fn on_initialized(&self, _context: NotificationContext<RoleServer>) {
            self.record_as("on_initialized", "initialized");
        }

        async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
            self.record_as("on_roots_list_changed", "roots_list_changed");
        }

        async fn on_custom_notification(
            &self,
            notification: CustomNotification,
            _context: NotificationContext<RoleServer>,
        ) {
            let what = format!("notification {}", notification.method);
            self.record_as("on_custom_notification", what);
        }

        async fn get_task(
            &self,
            _request: GetTaskParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<GetTaskResult, McpError> {
            self.record("get_task");
            Ok(GetTaskResult::new(DetailedTask::new(
                spy_task(),
                TaskPayload::Working,
            )))
        }

        async fn update_task(
            &self,
            _request: UpdateTaskParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<(), McpError> {
            self.record("update_task");
            Ok(())
        }

        async fn cancel_task(
            &self,
            _request: CancelTaskParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<(), McpError> {
            self.record("cancel_task");
            Ok(())
        }

        async fn list_skills(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListSkillsResult, McpError> {
            self.record("list_skills");
            Ok(ListSkillsResult::with_all_items(Vec::new()))
        }

        async fn get_skill(
            &self,
            request: GetSkillRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<rmcp::model::GetSkillResult, McpError> {
            self.record("get_skill");
            Err(McpError::invalid_params(
                format!("spy has no skill {}", request.uri),
                None,
            ))
        }

        async fn read_resource_directory(
            &self,
            _request: ReadResourceDirectoryRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<ReadResourceDirectoryResult, McpError> {
            self.record("read_resource_directory");
            Ok(ReadResourceDirectoryResult::default())
        }
    }
}

/// The spy's policy, before it is built (the tests give it their clock).
fn spy_rules() -> PolicyBuilder {
    Policy::builder()
        .tool(TOOL, "spy:use")
        .custom_request("spy/echo", ScopeExpr::authenticated())
        .custom_request("spy/admin", "spy:admin")
        .custom_request("spy/poke", ScopeExpr::authenticated())
        .skill("nope", "spy:use")
        .prompt(PROMPT, "spy:use")
        .resource(RESOURCE, "spy:use")
        .resource(DIRECTORY, "spy:use")
}

/// How long the caller's token is valid.
const LIFETIME: Duration = Duration::from_secs(600);

/// The spy behind `Authz::wrap_for` for a caller `spy-user` with scope `spy:use`.
async fn wrapped_spy() -> (Spy, Authorized<Spy>) {
    wrapped_spy_with(Arc::new(SystemClock)).await
}

/// As [`wrapped_spy`], on `clock`: the caller's token expires [`LIFETIME`] after the
/// clock's now.
async fn wrapped_spy_with(clock: Arc<dyn Clock>) -> (Spy, Authorized<Spy>) {
    let issuer = DevIssuer::new("https://auth.forwarding.test.invalid")
        .expect("issuer")
        .clock(clock.clone());
    let verifier = issuer.verifier(AUDIENCE).build().expect("verifier");
    let policy = spy_rules().clock(clock).build().expect("spy policy");
    let authz = Authz::new(verifier, policy);
    let token = issuer
        .token(AUDIENCE)
        .subject("spy-user")
        .scopes(["spy:use"])
        .expires_in(LIFETIME)
        .mint()
        .expect("mint");
    let principal = authz.verifier().verify(&token).await.expect("verify");
    let spy = Spy::default();
    let wrapped = authz
        .wrap_for(spy.clone(), principal)
        .expect("the policy fits the spy");
    (spy, wrapped)
}

/// Serves `wrapped` on one end of an in-memory pipe and connects a client to the other.
async fn connect(wrapped: Authorized<Spy>) -> RunningService<RoleClient, ()> {
    connect_in_memory(wrapped).await.0
}

async fn request(
    client: &RunningService<RoleClient, ()>,
    request: ClientRequest,
) -> Result<ServerResult, ServiceError> {
    timeout(STEP, client.send_request(request))
        .await
        .expect("answered in time")
}

// ---------------------------------------------------------------------------------------
// Every method, called.
// ---------------------------------------------------------------------------------------

/// A client that declares the tasks extension (`tasks/*` need it).
type Client = RunningService<RoleClient, ClientConfig>;

/// Connects a new [`Client`] to `wrapped` over an in-memory pipe: an `initialize` handshake.
async fn open(wrapped: Authorized<Spy>) -> Result<Client, ClientInitializeError> {
    let mut config = ClientConfig::default();
    config.capabilities = ClientCapabilities::builder().enable_tasks().build();
    let (io, _server) = serve_in_memory(wrapped);
    timeout(STEP, config.serve(io))
        .await
        .expect("initialize answered in time")
}

/// The `_meta` of a 2026-07-28 request (`server/discover`, `subscriptions/listen`).
fn modern_meta() -> RequestMetaObject {
    RequestMetaObject::with_client_context(
        ProtocolVersion::V_2026_07_28,
        Implementation::new("forwarding-test", "0"),
        ClientCapabilities::builder().enable_tasks().build(),
    )
}

/// What calling one method gave.
#[derive(Debug)]
enum Outcome {
    /// A request's answer: the handler's result or error, or the gate's refusal.
    Answer(Result<(), McpError>),
    /// A notification was sent; it has no answer. `gated`: the wrapper drops it from a
    /// caller it refuses (custom notifications), where MCP's own notifications pass.
    Notification { gated: bool },
    /// A method of the wrapper value itself, which no client sends: whether it answered
    /// with the spy's data.
    Local { spy_data: bool },
}

fn answer<T>(method: &str, result: Result<T, ServiceError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Answer(Ok(())),
        Err(ServiceError::McpError(e)) => Outcome::Answer(Err(e)),
        Err(other) => panic!("{method}: expected an answer, got {other:?}"),
    }
}

fn notification(method: &str, sent: Result<(), ServiceError>, gated: bool) -> Outcome {
    sent.unwrap_or_else(|e| panic!("{method}: send: {e:?}"));
    Outcome::Notification { gated }
}

/// Calls the `ServerHandler` method `method` of `wrapped`: as `client` sends it over its
/// connection (`initialize`: a new connection), or on the wrapper value itself.
async fn call(method: &str, wrapped: &Authorized<Spy>, client: &Client) -> Outcome {
    let called = async {
        match method {
            // The wrapper value itself.
            "get_info" => Outcome::Local {
                spy_data: wrapped.get_info().server_info.name == SPY_NAME,
            },
            "supported_protocol_versions" => Outcome::Local {
                spy_data: wrapped.supported_protocol_versions().as_ref() == SUPPORTED,
            },
            "negotiate_initialize" => Outcome::Local {
                spy_data: wrapped
                    .negotiate_initialize(&InitializeRequestParams::default())
                    .is_ok_and(|info| info.server_info.name == SPY_NAME),
            },
            "get_tool" => Outcome::Local {
                spy_data: wrapped.get_tool(TOOL).is_some_and(|t| t.name == TOOL),
            },
            "accepted_subscription_filter" => Outcome::Local {
                spy_data: wrapped.accepted_subscription_filter(&SubscriptionFilter::new())
                    == Some(spy_filter()),
            },

            // Requests.
            "initialize" => match open(wrapped.clone()).await {
                Ok(other) => {
                    let _ = other.cancel().await;
                    Outcome::Answer(Ok(()))
                }
                Err(ClientInitializeError::JsonRpcError(e)) => Outcome::Answer(Err(e)),
                Err(other) => panic!("initialize: expected an answer, got {other:?}"),
            },
            "ping" => answer(
                method,
                client
                    .send_request(ClientRequest::PingRequest(PingRequest::default()))
                    .await,
            ),
            "discover" => answer(method, client.discover(modern_meta()).await),
            "complete" => {
                let params = CompleteRequestParams::new(
                    Reference::for_prompt(PROMPT),
                    ArgumentInfo::new("topic", "a"),
                );
                answer(method, client.complete(params).await)
            }
            "set_level" => answer(
                method,
                client
                    .set_level(SetLevelRequestParams::new(LoggingLevel::Info))
                    .await,
            ),
            "get_prompt" => answer(
                method,
                client
                    .get_prompt_once(GetPromptRequestParams::new(PROMPT))
                    .await,
            ),
            "list_prompts" => answer(method, client.list_prompts(None).await),
            "list_resources" => answer(method, client.list_resources(None).await),
            "list_resource_templates" => answer(method, client.list_resource_templates(None).await),
            "read_resource" => answer(
                method,
                client
                    .read_resource_once(ReadResourceRequestParams::new(RESOURCE))
                    .await,
            ),
            "listen" => {
                let mut params = SubscriptionsListenRequestParams::new(spy_filter());
                params.meta = Some(modern_meta());
                let request = SubscriptionsListenRequest::new(params);
                answer(
                    method,
                    client
                        .send_request(ClientRequest::SubscriptionsListenRequest(request))
                        .await,
                )
            }
            "subscribe" => answer(
                method,
                client
                    .subscribe(SubscribeRequestParams::new(RESOURCE))
                    .await,
            ),
            "unsubscribe" => answer(
                method,
                client
                    .unsubscribe(UnsubscribeRequestParams::new(RESOURCE))
                    .await,
            ),
            "call_tool" => answer(
                method,
                client
                    .call_tool_once(CallToolRequestParams::new(TOOL))
                    .await,
            ),
            "list_tools" => answer(method, client.list_tools(None).await),
            "on_custom_request" => answer(
                method,
                client
                    .send_request(ClientRequest::CustomRequest(CustomRequest::new(
                        "spy/echo",
                        Some(json!({})),
                    )))
                    .await,
            ),
            "get_task" => answer(method, client.get_task(GetTaskParams::new(TASK_ID)).await),
            "update_task" => answer(
                method,
                client
                    .update_task(UpdateTaskParams::new(TASK_ID, InputResponses::new()))
                    .await,
            ),
            "cancel_task" => answer(
                method,
                client.cancel_task(CancelTaskParams::new(TASK_ID)).await,
            ),
            "list_skills" => answer(method, client.list_skills(None).await),
            "get_skill" => answer(
                method,
                client
                    .get_skill(GetSkillRequestParams::new("skill://nope/SKILL.md"))
                    .await,
            ),
            "read_resource_directory" => answer(
                method,
                client
                    .read_resource_directory(ReadResourceDirectoryRequestParams::new(DIRECTORY))
                    .await,
            ),

            // Notifications.
            "on_cancelled" => {
                let params = CancelledNotificationParam::new(
                    Some(NumberOrString::Number(4_242)),
                    Some("spy".to_owned()),
                );
                notification(method, client.notify_cancelled(params).await, false)
            }
            "on_progress" => {
                let token = ProgressToken(NumberOrString::String("spy".into()));
                let params = ProgressNotificationParam::new(token, 0.5);
                notification(method, client.notify_progress(params).await, false)
            }
            "on_initialized" => notification(method, client.notify_initialized().await, false),
            "on_roots_list_changed" => {
                notification(method, client.notify_roots_list_changed().await, false)
            }
            "on_custom_notification" => {
                let custom = CustomNotification::new("spy/poke", Some(json!({})));
                let sent = client
                    .send_notification(ClientNotification::CustomNotification(custom))
                    .await;
                notification(method, sent, true)
            }

            other => panic!(
                "no call written for ServerHandler::{other}: add one to `call` in {}",
                file!()
            ),
        }
    };
    timeout(STEP, called)
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer in time"))
}

/// Whether `error` is a refusal by `rmcp-authz` (rather than the handler's answer).
fn is_refusal(error: &McpError) -> bool {
    [FORBIDDEN, UNAUTHENTICATED, AUDIT_UNAVAILABLE].contains(&error.code)
}

/// Every method of rmcp's `ServerHandler` (`SPY_METHODS`, see the module docs), called
/// through the wrapper: for a caller the policy allows, each reaches the spy as itself;
/// once the caller's token has expired, each request is refused (`-32003`,
/// `invalid_token`) without reaching the spy, a custom notification is dropped, MCP's own
/// notifications pass, and the wrapper value's own methods still answer with the spy's data.
#[tokio::test]
async fn every_method_is_forwarded_or_gated() {
    const T0: i64 = 1_900_000_000;
    let clock = Arc::new(ManualClock::new(T0));
    let (spy, wrapped) = wrapped_spy_with(clock.clone()).await;
    let all: BTreeSet<&str> = SPY_METHODS.iter().copied().collect();

    // Two connections while the token is valid: one for the allowed caller, one left idle
    // until the token has expired (rmcp's client answers a second `server/discover` from
    // its cache instead of sending it).
    let allowed = open(wrapped.clone()).await.expect("the client connects");
    let late = open(wrapped.clone()).await.expect("the client connects");
    // A task of this caller's, for `tasks/*` to act on, whatever order the methods come in.
    let started = timeout(
        STEP,
        allowed.call_tool_once(CallToolRequestParams::new(TOOL)),
    )
    .await
    .expect("answered in time");
    assert!(
        matches!(started, Ok(CallToolResponse::Task(_))),
        "{started:?}"
    );

    // The caller the policy allows: every method reaches the spy, as itself.
    let start = spy.mark();
    let mut reached = BTreeSet::new();
    let mut problems = Vec::new();
    for &method in SPY_METHODS {
        let mark = spy.mark();
        match call(method, &wrapped, &allowed).await {
            Outcome::Answer(Err(e)) if is_refusal(&e) => {
                problems.push(format!("{method}: refused: {e:?}"));
            }
            Outcome::Local { spy_data: false } => {
                problems.push(format!("{method}: answered without the spy's data"));
            }
            _ => {}
        }
        if spy.runs_since(mark, method).await {
            reached.insert(method);
        } else {
            problems.push(format!("{method}: did not reach the spy"));
        }
    }
    assert!(
        problems.is_empty(),
        "not forwarded for an allowed caller:\n{}",
        problems.join("\n")
    );
    assert_eq!(reached, all, "every method reached the spy as itself");
    let recorded: BTreeSet<&str> = spy.methods_since(start).into_iter().collect();
    assert_eq!(
        recorded, all,
        "the spy recorded exactly the methods of its impl"
    );

    // The same caller once its token has expired.
    clock.advance(LIFETIME);
    let mut problems = Vec::new();
    for &method in SPY_METHODS {
        let mark = spy.mark();
        match call(method, &wrapped, &late).await {
            Outcome::Answer(answer) => {
                match answer {
                    Ok(()) => problems.push(format!("{method}: served after exp")),
                    Err(e) => {
                        let data = e.data.as_ref().map(|d| &d["error"]);
                        if e.code != FORBIDDEN || data != Some(&json!("invalid_token")) {
                            problems.push(format!("{method}: not the expiry refusal: {e:?}"));
                        }
                    }
                }
                if spy.ran_since(mark, method) {
                    problems.push(format!("{method}: reached the spy after exp"));
                }
            }
            Outcome::Notification { gated: true } => {
                // Sent after it, a notification that passes: once the spy has it, the one
                // before was handled too.
                let barrier = "on_roots_list_changed";
                timeout(STEP, late.notify_roots_list_changed())
                    .await
                    .expect("sent in time")
                    .expect("send roots/list_changed");
                if !spy.runs_since(mark, barrier).await {
                    problems.push(format!("{method}: {barrier} after it did not pass"));
                }
                if spy.ran_since(mark, method) {
                    problems.push(format!("{method}: reached the spy after exp"));
                }
            }
            Outcome::Notification { gated: false } => {
                if !spy.runs_since(mark, method).await {
                    problems.push(format!("{method}: MCP's notification did not pass"));
                }
            }
            Outcome::Local { spy_data } => {
                if !spy_data || !spy.ran_since(mark, method) {
                    problems.push(format!("{method}: did not answer with the spy's data"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "not gated for a caller whose token expired:\n{}",
        problems.join("\n")
    );

    for client in [allowed, late] {
        let _ = timeout(STEP, client.cancel()).await;
    }
}

// ---------------------------------------------------------------------------------------
// What forwarded calls carry.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn synchronous_methods_answer_for_the_wrapped_handler() {
    let (spy, wrapped) = wrapped_spy().await;
    assert_eq!(wrapped.get_info().server_info.name, SPY_NAME);
    assert_eq!(
        wrapped.supported_protocol_versions().as_ref(),
        spy.supported_protocol_versions().as_ref()
    );
    assert!(wrapped.get_tool("spy_tool").is_some());
    assert!(wrapped.get_tool("other").is_none());
    assert_eq!(
        wrapped.accepted_subscription_filter(&SubscriptionFilter::new()),
        Some(SubscriptionFilter::builder().prompts_list_changed().build())
    );
    let negotiated = wrapped
        .negotiate_initialize(&InitializeRequestParams::default())
        .expect("negotiate");
    assert_eq!(negotiated.server_info.name, SPY_NAME);
    assert_eq!(negotiated.protocol_version, SPY_VERSION);
}

#[tokio::test]
async fn initialize_and_notifications_reach_the_wrapped_handler() {
    let (spy, wrapped) = wrapped_spy().await;
    let client = connect(wrapped).await;
    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some(SPY_NAME)
    );
    assert_eq!(info.instructions.as_deref(), Some("spy instructions"));
    assert_eq!(info.protocol_version, SPY_VERSION);
    assert!(spy.saw("initialized").await, "calls: {:?}", spy.calls());

    // A custom notification no rule names is dropped; one with a rule goes through (in
    // order, so by the time the second arrives the first was dropped, not delayed).
    for method in ["spy/unruled", "spy/poke"] {
        client
            .send_notification(ClientNotification::CustomNotification(
                CustomNotification::new(method, Some(json!({"n": 1}))),
            ))
            .await
            .expect("send notification");
    }
    assert!(
        spy.saw("notification spy/poke").await,
        "calls: {:?}",
        spy.calls()
    );
    assert!(
        !spy.calls().contains(&"notification spy/unruled".to_owned()),
        "calls: {:?}",
        spy.calls()
    );
    client
        .notify_roots_list_changed()
        .await
        .expect("send roots/list_changed");
    assert!(
        spy.saw("roots_list_changed").await,
        "calls: {:?}",
        spy.calls()
    );

    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
}

#[tokio::test]
async fn requests_reach_the_wrapped_handler() {
    let (spy, wrapped) = wrapped_spy().await;
    let client = connect(wrapped).await;

    let pong = request(&client, ClientRequest::PingRequest(PingRequest::default())).await;
    assert!(matches!(pong, Ok(ServerResult::EmptyResult(_))), "{pong:?}");
    assert!(
        spy.calls().contains(&"ping".to_owned()),
        "{:?}",
        spy.calls()
    );

    let skills = timeout(STEP, client.list_skills(None))
        .await
        .expect("answered in time")
        .expect("skills/list reaches the spy");
    assert!(skills.skills.is_empty());
    assert!(
        spy.calls().contains(&"list_skills".to_owned()),
        "{:?}",
        spy.calls()
    );

    let skill = timeout(
        STEP,
        client.get_skill(GetSkillRequestParams::new("skill://nope/SKILL.md")),
    )
    .await
    .expect("answered in time");
    match skill {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
            assert!(e.message.contains("spy has no skill"), "{e:?}");
        }
        other => panic!("skills/get: expected the spy's error, got {other:?}"),
    }

    // A custom request with a rule reaches the spy, with the principal in its context.
    let echo = request(
        &client,
        ClientRequest::CustomRequest(CustomRequest::new("spy/echo", Some(json!({"x": 1})))),
    )
    .await;
    match echo {
        Ok(ServerResult::CustomResult(CustomResult(value))) => {
            assert_eq!(value["echo"], json!({"x": 1}), "{value}");
            assert_eq!(value["subject"], "spy-user", "{value}");
        }
        other => panic!("spy/echo: {other:?}"),
    }
    assert!(
        spy.calls().contains(&"request spy/echo".to_owned()),
        "{:?}",
        spy.calls()
    );

    // Without the scope, or without a rule, it is refused before the spy sees it.
    for method in ["spy/admin", "spy/unruled"] {
        let refused = request(
            &client,
            ClientRequest::CustomRequest(CustomRequest::new(method, None)),
        )
        .await;
        match refused {
            Err(ServiceError::McpError(e)) => assert_eq!(e.code, ErrorCode(-32003), "{e:?}"),
            other => panic!("{method}: expected a denial, got {other:?}"),
        }
        let seen = format!("request {method}");
        assert!(!spy.calls().contains(&seen), "{method} reached the spy");
    }

    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
}
