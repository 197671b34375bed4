//! [`Authorized<H>`]: any rmcp `ServerHandler`, with every request authorized.
//!
//! The wrapper implements `ServerHandler` by writing out the delegation of every method
//! (rmcp gives each one a default, so a forgotten method would silently fall back to it;
//! `#[deny(clippy::missing_trait_methods)]` on the impl, and a test that calls every method
//! through the wrapper to a spy handler, catch that). It gates `tools/call`,
//! `resources/read` (and subscriptions and directory reads), `prompts/get`, completions,
//! task operations and custom requests through the
//! [`Policy`](crate::policy::Policy); filters `tools/list`, `resources/list`,
//! `resources/templates/list` and `prompts/list` to what the caller may use and marks those
//! results `cacheScope: private`; and puts the [`Principal`] in the request context, where
//! `#[tool]` functions read it with rmcp's `Extension<Principal>` extractor.
//!
//! Over HTTP the principal comes from the request (the HTTP layer verified it); over stdio
//! it is the one verified at start-up, whose expiry is checked on every call.

use std::borrow::Cow;
use std::future::Future;

use rmcp::model::Extensions;
#[allow(deprecated)] // SetLevelRequestParams: forwarded, not used.
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CancelTaskParams,
    CancelledNotificationParam, CompleteRequestParams, CompleteResult, CustomNotification,
    CustomRequest, CustomResult, DiscoverResult, GetPromptRequestParams, GetPromptResponse,
    GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListSkillsResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult,
    ReadResourceRequestParams, ReadResourceResponse, Reference, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use serde_json::Value;
use tracing::Instrument as _;

use crate::audit::{AuditEvent, AuditFailure, EventKind, Outcome};
use crate::authz::{Authz, CallerId, TaskOwner};
use crate::gate::{self, Audit, Call, Origin};
use crate::policy::{Denial, DenyReason, Operation};
use crate::principal::Principal;
use crate::request_state::Originating;

pub use crate::codes::{FORBIDDEN, UNAUTHENTICATED};

/// A `ServerHandler` whose every request is authorized by an [`Authz`].
///
/// Made by [`Authz::wrap`] (HTTP, with the principal of each request) or by the stdio
/// server (with the principal verified at start-up).
#[derive(Debug, Clone)]
pub struct Authorized<H> {
    inner: H,
    authz: Authz,
    session_principal: Option<Principal>,
}

impl<H> Authorized<H> {
    pub(crate) fn new(inner: H, authz: Authz, session_principal: Option<Principal>) -> Self {
        Authorized {
            inner,
            authz,
            session_principal,
        }
    }

    /// The wrapped handler.
    pub fn get_ref(&self) -> &H {
        &self.inner
    }

    /// The wrapped handler, mutably.
    pub fn get_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    /// Unwraps the handler.
    pub fn into_inner(self) -> H {
        self.inner
    }

    /// The caller of this `method` request: the principal the HTTP layer put in the
    /// request, or the stdio session's principal while its token is valid.
    fn principal(&self, extensions: &Extensions, method: &str) -> Result<Principal, NoCaller> {
        // Only what this `Authz`'s own layer verified.
        let from_http = extensions
            .get::<http::request::Parts>()
            .filter(|parts| gate::VerifiedBy::is(parts, self.authz.id()))
            .and_then(|parts| parts.extensions.get::<Principal>());
        if let Some(p) = from_http {
            return Ok(p.clone());
        }
        let Some(p) = &self.session_principal else {
            return Err(NoCaller::Missing);
        };
        let now = self.authz.now();
        if now >= p.expires_at() {
            let denial = Denial::new(
                method.to_owned(),
                DenyReason::TokenExpired {
                    exp: p.expires_at(),
                    now,
                },
            );
            return Err(NoCaller::Expired(Box::new((p.clone(), denial))));
        }
        Ok(p.clone())
    }

    /// The denial of a task operation, if any: the task must have been started by this
    /// caller, with a tool the caller may still call.
    fn task_denial(&self, principal: &Principal, method: &str, task_id: &str) -> Option<Denial> {
        let operation = format!("{method} {task_id}");
        let Some(owner) = self.authz.task_owner(task_id) else {
            return Some(Denial::new(operation, DenyReason::NoRule));
        };
        if !owner.caller.is(principal) {
            return Some(Denial::new(operation, DenyReason::NotOwner));
        }
        self.authz
            .decide(principal, Operation::CallTool(&owner.tool))
            .denial()
            .cloned()
    }

    /// One request, start to end: authenticates the caller, applies `check`, runs the
    /// operation with the principal in its context, and records one audit event and one
    /// span for it whatever happens.
    async fn gated<C, T, F, Fut>(
        &self,
        carrier: C,
        call: Call<'_>,
        check: Check<'_>,
        arguments: Option<Value>,
        run: F,
        ok: fn(&T) -> Outcome,
    ) -> Result<T, McpError>
    where
        C: Carrier,
        F: FnOnce(C, Principal) -> Fut,
        Fut: Future<Output = Result<T, McpError>>,
    {
        let origin = Origin::of(carrier.request());
        let span = gate::span(&call, &origin);
        let auditor = self.authz.auditor();
        let mut audit = Audit::begin(auditor, |a| {
            let mut event = call.event(&origin);
            if let Some(arguments) = &arguments {
                gate::describe_arguments(a, &mut event, arguments);
            }
            event
        })
        .await?;

        let principal = match self.principal(&carrier.request().extensions, call.method) {
            Ok(p) => p,
            Err(no_caller) => {
                audit.update(|e| no_caller.describe(e));
                gate::record_decision(&span, Some(no_caller.code()));
                let _ = audit.finish(Outcome::Denied).await;
                return Err(no_caller.error());
            }
        };
        gate::record_principal(&span, &principal);
        audit.update(|e| e.set_principal(&principal));
        let task_id = match check {
            Check::Task(id) => Some(id),
            _ => None,
        };
        let denial = match check {
            // The HTTP layer decided this operation for this request already.
            Check::Operation(op)
                if gate::Decided::allowed_in(carrier.request(), self.authz.id(), op) =>
            {
                None
            }
            Check::Operation(op) => self.authz.decide(&principal, op).denial().cloned(),
            Check::Operations(operations) => operations
                .iter()
                .find_map(|op| self.authz.decide(&principal, *op).denial().cloned()),
            Check::Task(task_id) => self.task_denial(&principal, call.method, task_id),
            Check::Authenticated => None,
            Check::Refused(denial) => Some(denial),
        }
        .map(|denial| denial.for_method(call.method));
        if let Some(denial) = denial {
            tracing::debug!(target: "rmcp_authz::rejection", %denial, "request denied");
            audit.update(|e| e.set_denied_by(&denial));
            gate::record_decision(&span, Some(denial.code()));
            let _ = audit.finish(Outcome::Denied).await;
            return Err(match (task_id, denial.reason()) {
                // Another caller's task and a task that does not exist look the same, so a
                // caller cannot learn which task ids exist (the audit event tells them apart).
                (Some(id), DenyReason::NotOwner | DenyReason::NoRule) => McpError::new(
                    FORBIDDEN,
                    format!(
                        "{} {id} refused: no task started by this caller has this id",
                        call.method
                    ),
                    Some(serde_json::json!({ "error": "access_denied" })),
                ),
                _ => denied(&denial),
            });
        }
        if audit.must_refuse() {
            const CODE: &str = "audit_unavailable";
            audit.update(|e| {
                e.set_denied(CODE, "the audit log is failing and fail_closed is set");
            });
            gate::record_decision(&span, Some(CODE));
            if let Some(a) = auditor {
                a.count_fail_closed_refusal();
            }
            // Recording the refusal also tells whether the log works again.
            let _ = audit.finish(Outcome::Denied).await;
            return Err(gate::unavailable(&AuditFailure::Closed));
        }
        gate::record_decision(&span, None);

        let cancelled = carrier.request().ct.clone();
        let mut carrier = carrier;
        carrier.attach(principal.clone());
        let result = run(carrier, principal).instrument(span.clone()).await;
        let outcome = if cancelled.is_cancelled() {
            Outcome::Cancelled
        } else {
            gate::outcome_of(&result, ok)
        };
        audit.update(|e| e.error_code = gate::error_code_of(&result));
        if let Err(e) = &result {
            span.record("error.type", e.code.0);
        }
        audit.finish(outcome).await?;
        result
    }
}

/// Why a request has no caller.
enum NoCaller {
    /// No verified token came with it.
    Missing,
    /// The stdio session's token has expired.
    Expired(Box<(Principal, Denial)>),
}

impl NoCaller {
    fn error(&self) -> McpError {
        match self {
            NoCaller::Missing => McpError::new(
                UNAUTHENTICATED,
                "unauthenticated: no verified access token for this request",
                None,
            ),
            NoCaller::Expired(expired) => denied(&expired.1),
        }
    }

    /// The reason code audited and traced.
    fn code(&self) -> &'static str {
        match self {
            NoCaller::Missing => "missing_token",
            NoCaller::Expired(expired) => expired.1.code(),
        }
    }

    fn describe(&self, event: &mut AuditEvent) {
        match self {
            NoCaller::Missing => {
                event.set_denied(self.code(), "no verified access token");
                event.kind = EventKind::AuthenticationFailure;
            }
            NoCaller::Expired(expired) => {
                event.set_principal(&expired.0);
                event.set_denied_by(&expired.1);
            }
        }
    }
}

/// What must hold before an operation runs.
enum Check<'a> {
    /// The policy allows this operation.
    Operation(Operation<'a>),
    /// The policy allows every one of these operations (one per resource for a
    /// subscription).
    Operations(Vec<Operation<'a>>),
    /// The caller started the task, and may still call the tool that started it.
    Task(&'a str),
    /// A verified caller suffices (lists, which are filtered to what the caller may use).
    Authenticated,
    /// Refused whoever asks (a request that names its target in a form no rule can match).
    Refused(Denial),
}

/// What carries a request's context into the operation.
trait Carrier {
    fn request(&self) -> &RequestContext<RoleServer>;
    /// Puts the principal where the operation's extractors find it.
    fn attach(&mut self, principal: Principal);
}

impl Carrier for RequestContext<RoleServer> {
    fn request(&self) -> &RequestContext<RoleServer> {
        self
    }

    fn attach(&mut self, principal: Principal) {
        self.extensions.insert(principal);
    }
}

impl Carrier for SubscriptionContext {
    fn request(&self) -> &RequestContext<RoleServer> {
        self.request_context()
    }

    fn attach(&mut self, _principal: Principal) {}
}

/// Successful unless the tool says otherwise.
fn tool_outcome(response: &CallToolResponse) -> Outcome {
    match response {
        CallToolResponse::Complete(result) if result.is_error == Some(true) => Outcome::ToolError,
        _ => Outcome::Success,
    }
}

fn success<T>(_: &T) -> Outcome {
    Outcome::Success
}

/// The skill a `SKILL.md` URI names: the path segment before `SKILL.md`, when it is a plain
/// name (ASCII letters, digits, `-`, `_`, `.`). A URI that names none, or names one in any
/// other form, is refused whatever the rules say.
pub(crate) fn skill_name(uri: &str) -> Option<&str> {
    // Only plain names: a percent-encoded or non-ASCII segment could name, once decoded and
    // normalised (as rmcp compares skill names), a skill whose rule it would not match.
    rmcp::model::skill_name_from_uri(uri).filter(|name| {
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

/// A request that needs only a verified caller.
fn basic_call(method: &str) -> Call<'_> {
    Call {
        kind: EventKind::Other,
        method,
        target: None,
    }
}

fn list_call(method: &str) -> Call<'_> {
    Call {
        kind: EventKind::List,
        method,
        target: None,
    }
}

fn resource_call<'a>(method: &'a str, uri: &'a str) -> Call<'a> {
    Call {
        kind: EventKind::ResourceRead,
        method,
        target: Some(uri),
    }
}

fn task_call<'a>(method: &'a str, task_id: &'a str) -> Call<'a> {
    Call {
        kind: EventKind::Other,
        method,
        target: Some(task_id),
    }
}

/// The MCP error for a denial: the reason in words, and for missing scopes the scopes in
/// `data` (`{"error": "insufficient_scope", "scope": "..."}`) so a client can step up.
pub(crate) fn denied(denial: &Denial) -> McpError {
    McpError::new(FORBIDDEN, denial.to_string(), Some(denial.error_data()))
}

/// `ServerHandler` for the wrapper. Every method is written out: the `deny` below turns a
/// method rmcp adds later, and we forget, into a build error under clippy.
#[deny(clippy::missing_trait_methods)]
impl<H: ServerHandler> ServerHandler for Authorized<H> {
    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        let call = basic_call("ping");
        self.gated(
            context,
            call,
            Check::Authenticated,
            None,
            |ctx, _| self.inner.ping(ctx),
            success,
        )
        .await
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let call = basic_call("initialize");
        self.gated(
            context,
            call,
            Check::Authenticated,
            None,
            |ctx, _| self.inner.initialize(request, ctx),
            success,
        )
        .await
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        let call = basic_call("server/discover");
        self.gated(
            context,
            call,
            Check::Authenticated,
            None,
            |ctx, _| self.inner.discover(ctx),
            success,
        )
        .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let reference = request.r#ref.clone();
        let (operation, target) = match &reference {
            Reference::Prompt(p) => (Operation::GetPrompt(&p.name), Some(p.name.as_str())),
            Reference::Resource(r) => (Operation::ReadResource(&r.uri), Some(r.uri.as_str())),
            // A kind of reference this crate does not know is governed like a custom
            // request, and so denied unless a rule names it.
            _ => (Operation::Custom("completion/complete"), None),
        };
        let call = Call {
            kind: EventKind::Other,
            method: "completion/complete",
            target,
        };
        self.gated(
            context,
            call,
            Check::Operation(operation),
            None,
            |ctx, _| self.inner.complete(request, ctx),
            success,
        )
        .await
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let call = basic_call("logging/setLevel");
        self.gated(
            context,
            call,
            Check::Authenticated,
            None,
            |ctx, _| self.inner.set_level(request, ctx),
            success,
        )
        .await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let name = request.name.clone();
        let call = Call {
            kind: EventKind::PromptGet,
            method: "prompts/get",
            target: Some(&name),
        };
        let arguments = self
            .authz
            .auditor()
            .and_then(|_| request.arguments.clone())
            .map(Value::Object);
        let name_ref = &name;
        let run = move |ctx, principal: Principal| async move {
            let mut request = request;
            let origin = Originating::Prompt(name_ref);
            self.authz
                .open_state(&principal, origin, &mut request.request_state)?;
            let mut response = self.inner.get_prompt(request, ctx).await?;
            if let GetPromptResponse::InputRequired(r) = &mut response {
                self.authz
                    .seal_state(&principal, origin, &mut r.request_state)?;
            }
            Ok(response)
        };
        self.gated(
            context,
            call,
            Check::Operation(Operation::GetPrompt(&name)),
            arguments,
            run,
            success,
        )
        .await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let run = |ctx, principal: Principal| async move {
            let mut result = self.inner.list_prompts(request, ctx).await?;
            result.prompts.retain(|p| {
                self.authz
                    .decide(&principal, Operation::GetPrompt(&p.name))
                    .is_allowed()
            });
            result.cache_scope = Some(CacheScope::Private);
            Ok(result)
        };
        self.gated(
            context,
            list_call("prompts/list"),
            Check::Authenticated,
            None,
            run,
            success,
        )
        .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let run = |ctx, principal: Principal| async move {
            let mut result = self.inner.list_resources(request, ctx).await?;
            result.resources.retain(|r| {
                self.authz
                    .decide(&principal, Operation::ReadResource(&r.uri))
                    .is_allowed()
            });
            result.cache_scope = Some(CacheScope::Private);
            Ok(result)
        };
        self.gated(
            context,
            list_call("resources/list"),
            Check::Authenticated,
            None,
            run,
            success,
        )
        .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let run = |ctx, principal: Principal| async move {
            let mut result = self.inner.list_resource_templates(request, ctx).await?;
            let policy = self.authz.policy();
            result.resource_templates.retain(|t| {
                policy
                    .decide_template(&principal, &t.uri_template)
                    .is_allowed()
            });
            result.cache_scope = Some(CacheScope::Private);
            Ok(result)
        };
        let call = list_call("resources/templates/list");
        self.gated(context, call, Check::Authenticated, None, run, success)
            .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let uri_ref = &uri;
        let run = move |ctx, principal: Principal| async move {
            let mut request = request;
            let origin = Originating::Resource(uri_ref);
            self.authz
                .open_state(&principal, origin, &mut request.request_state)?;
            let mut response = self.inner.read_resource(request, ctx).await?;
            if let ReadResourceResponse::InputRequired(r) = &mut response {
                self.authz
                    .seal_state(&principal, origin, &mut r.request_state)?;
            }
            Ok(response)
        };
        self.gated(
            context,
            resource_call("resources/read", &uri),
            Check::Operation(Operation::ReadResource(&uri)),
            None,
            run,
            success,
        )
        .await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    /// A subscription may only watch resources the caller may read: rmcp acknowledges the
    /// subscription before `listen` runs, so the check is here, before any notification
    /// can flow.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let uris: Vec<String> = context
            .accepted()
            .resource_subscriptions
            .iter()
            .flatten()
            .cloned()
            .collect();
        let operations = uris.iter().map(|u| Operation::ReadResource(u)).collect();
        let call = Call {
            kind: EventKind::ResourceRead,
            method: "subscriptions/listen",
            target: (uris.len() == 1).then(|| uris[0].as_str()),
        };
        self.gated(
            context,
            call,
            Check::Operations(operations),
            None,
            |ctx, _| self.inner.listen(ctx),
            success,
        )
        .await
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let uri = request.uri.clone();
        self.gated(
            context,
            resource_call("resources/subscribe", &uri),
            Check::Operation(Operation::ReadResource(&uri)),
            None,
            |ctx, _| self.inner.subscribe(request, ctx),
            success,
        )
        .await
    }

    /// Dropping a subscription gives nothing away: a verified caller suffices.
    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let uri = request.uri.clone();
        let call = resource_call("resources/unsubscribe", &uri);
        self.gated(
            context,
            call,
            Check::Authenticated,
            None,
            |ctx, _| self.inner.unsubscribe(request, ctx),
            success,
        )
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.to_string();
        let call = Call {
            kind: EventKind::ToolCall,
            method: "tools/call",
            target: Some(&tool),
        };
        let arguments = self
            .authz
            .auditor()
            .and_then(|_| request.arguments.clone())
            .map(Value::Object);
        let tool_ref = &tool;
        let run = move |ctx, principal: Principal| async move {
            let mut request = request;
            let origin = Originating::Tool(tool_ref);
            self.authz
                .open_state(&principal, origin, &mut request.request_state)?;
            let mut response = self.inner.call_tool(request, ctx).await?;
            match &mut response {
                CallToolResponse::Task(created) => self.authz.record_task(
                    created.task.task_id.clone(),
                    TaskOwner {
                        tool: tool_ref.clone(),
                        caller: CallerId::of(&principal),
                    },
                ),
                CallToolResponse::InputRequired(r) => {
                    self.authz
                        .seal_state(&principal, origin, &mut r.request_state)?;
                }
                _ => {}
            }
            Ok(response)
        };
        self.gated(
            context,
            call,
            Check::Operation(Operation::CallTool(&tool)),
            arguments,
            run,
            tool_outcome,
        )
        .await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let run = |ctx, principal: Principal| async move {
            let mut result = self.inner.list_tools(request, ctx).await?;
            result.tools.retain(|t| {
                self.authz
                    .decide(&principal, Operation::CallTool(&t.name))
                    .is_allowed()
            });
            result.cache_scope = Some(CacheScope::Private);
            Ok(result)
        };
        self.gated(
            context,
            list_call("tools/list"),
            Check::Authenticated,
            None,
            run,
            success,
        )
        .await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        let method = request.method.clone();
        let call = Call {
            kind: EventKind::Other,
            method: &method,
            target: None,
        };
        self.gated(
            context,
            call,
            Check::Operation(Operation::Custom(&method)),
            None,
            |ctx, _| self.inner.on_custom_request(request, ctx),
            success,
        )
        .await
    }

    fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_cancelled(notification, context)
    }

    fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_progress(notification, context)
    }

    fn on_initialized(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_initialized(context)
    }

    fn on_roots_list_changed(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_roots_list_changed(context)
    }

    /// A custom notification reaches the handler only from a verified caller whose policy
    /// has a rule for its method (as a custom request needs); any other is dropped (a
    /// notification has no answer to refuse with), with a DEBUG event on target
    /// `rmcp_authz::rejection`.
    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) {
        let method = notification.method.as_str();
        let allowed = self.principal(&context.extensions, method).is_ok_and(|p| {
            self.authz
                .decide(&p, Operation::Custom(method))
                .is_allowed()
        });
        if allowed {
            self.inner
                .on_custom_notification(notification, context)
                .await;
        } else {
            tracing::debug!(target: "rmcp_authz::rejection", method, "custom notification dropped");
        }
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let task_id = request.task_id.clone();
        self.gated(
            context,
            task_call("tasks/get", &task_id),
            Check::Task(&task_id),
            None,
            |ctx, _| self.inner.get_task(request, ctx),
            success,
        )
        .await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let task_id = request.task_id.clone();
        self.gated(
            context,
            task_call("tasks/update", &task_id),
            Check::Task(&task_id),
            None,
            |ctx, _| self.inner.update_task(request, ctx),
            success,
        )
        .await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let task_id = request.task_id.clone();
        self.gated(
            context,
            task_call("tasks/cancel", &task_id),
            Check::Task(&task_id),
            None,
            |ctx, _| self.inner.cancel_task(request, ctx),
            success,
        )
        .await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        let run = |ctx, principal: Principal| async move {
            let mut result = self.inner.list_skills(request, ctx).await?;
            result.skills.retain(|skill| {
                skill_name(&skill.uri).is_some_and(|name| {
                    self.authz
                        .decide(&principal, Operation::GetSkill(name))
                        .is_allowed()
                })
            });
            result.cache_scope = Some(CacheScope::Private);
            Ok(result)
        };
        let call = list_call("skills/list");
        self.gated(context, call, Check::Authenticated, None, run, success)
            .await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        let uri = request.uri.clone();
        let call = Call {
            kind: EventKind::Other,
            method: "skills/get",
            target: Some(&uri),
        };
        let check = match skill_name(&uri) {
            Some(name) => Check::Operation(Operation::GetSkill(name)),
            None => Check::Refused(Denial::new(format!("skills/get {uri}"), DenyReason::NoRule)),
        };
        self.gated(
            context,
            call,
            check,
            None,
            |ctx, _| self.inner.get_skill(request, ctx),
            success,
        )
        .await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        let uri = request.uri.clone();
        self.gated(
            context,
            resource_call("resources/directory/read", &uri),
            Check::Operation(Operation::ReadResource(&uri)),
            None,
            |ctx, _| self.inner.read_resource_directory(request, ctx),
            success,
        )
        .await
    }
}
