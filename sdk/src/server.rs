//! [`Authorized<H>`]: any rmcp `ServerHandler`, with every request authorized.
//!
//! The wrapper implements `ServerHandler` by writing out the delegation of every method
//! (rmcp gives each one a default, so a forgotten method would silently fall back to it;
//! `#[deny(clippy::missing_trait_methods)]` on the impl and a test against rmcp's source
//! catch that). It gates `tools/call`, `resources/read` (and subscriptions and directory
//! reads), `prompts/get`, completions, task operations and custom requests through the
//! [`Policy`](crate::policy::Policy); filters `tools/list`, `resources/list`,
//! `resources/templates/list` and `prompts/list` to what the caller may use and marks those
//! results `cacheScope: private`; and puts the [`Principal`] in the request context, where
//! `#[tool]` functions read it with rmcp's `Extension<Principal>` extractor.
//!
//! Over HTTP the principal comes from the request (the HTTP layer verified it); over stdio
//! it is the one verified at start-up, whose expiry is checked on every call.

use std::borrow::Cow;
use std::future::Future;

#[allow(deprecated)] // SetLevelRequestParams: forwarded, not used.
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CancelTaskParams,
    CancelledNotificationParam, CompleteRequestParams, CompleteResult, CustomNotification,
    CustomRequest, CustomResult, DiscoverResult, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListSkillsResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, ReadResourceDirectoryRequestParams,
    ReadResourceDirectoryResult, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::authz::{Authz, CallerId, TaskOwner};
use crate::policy::{Decision, Denial, DenyReason, Operation};
use crate::principal::Principal;

/// The JSON-RPC error code of an authorization denial (in the implementation-defined
/// server error range of JSON-RPC 2.0).
pub const FORBIDDEN: ErrorCode = ErrorCode(-32003);

/// The JSON-RPC error code when a request carries no (valid) access token. Not -32001,
/// which the MCP SDKs use for their request timeouts.
pub const UNAUTHENTICATED: ErrorCode = ErrorCode(-32004);

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

    /// The caller of this request: the principal the HTTP layer put in the request, or
    /// the stdio session's principal while its token is valid.
    fn principal(&self, ctx: &RequestContext<RoleServer>) -> Result<Principal, McpError> {
        let from_http = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>());
        if let Some(p) = from_http.or_else(|| ctx.extensions.get::<Principal>()) {
            return Ok(p.clone());
        }
        let Some(p) = &self.session_principal else {
            return Err(McpError::new(
                UNAUTHENTICATED,
                "unauthenticated: no verified access token for this request",
                None,
            ));
        };
        let now = self.authz.now();
        if now >= p.expires_at() {
            let denial = Denial::new(
                "request".to_owned(),
                DenyReason::TokenExpired {
                    exp: p.expires_at(),
                    now,
                },
            );
            return Err(denied(&denial));
        }
        Ok(p.clone())
    }

    /// Authorizes `operation`, and on success puts the principal into the context.
    fn authorize(
        &self,
        ctx: &mut RequestContext<RoleServer>,
        operation: Operation<'_>,
    ) -> Result<Principal, McpError> {
        let principal = self.principal(ctx)?;
        if let Decision::Deny(denial) = self.authz.decide(&principal, operation) {
            tracing::debug!(target: "rmcp_authz::rejection", %denial, "request denied");
            return Err(denied(&denial));
        }
        ctx.extensions.insert(principal.clone());
        Ok(principal)
    }

    /// Authorizes a task operation: the task must have been started by this caller, with a
    /// tool the caller may still call.
    fn authorize_task(
        &self,
        ctx: &mut RequestContext<RoleServer>,
        task_id: &str,
    ) -> Result<(), McpError> {
        let principal = self.principal(ctx)?;
        let operation = format!("tasks {task_id}");
        let Some(owner) = self.authz.task_owner(task_id) else {
            return Err(denied(&Denial::new(operation, DenyReason::NoRule)));
        };
        if owner.caller != CallerId::of(&principal) {
            return Err(denied(&Denial::new(operation, DenyReason::NotOwner)));
        }
        self.authorize(ctx, Operation::CallTool(&owner.tool))
            .map(|_| ())
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
    fn ping(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.ping(context)
    }

    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.initialize(request, context)
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

    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.discover(context)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let operation = match &request.r#ref {
            Reference::Prompt(p) => Operation::GetPrompt(&p.name),
            Reference::Resource(r) => Operation::ReadResource(&r.uri),
            // A kind of reference this crate does not know is governed like a custom
            // request, and so denied unless a rule names it.
            _ => Operation::Custom("completion/complete"),
        };
        self.authorize(&mut context, operation)?;
        self.inner.complete(request, context).await
    }

    #[allow(deprecated)]
    fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.set_level(request, context)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.authorize(&mut context, Operation::GetPrompt(&request.name))?;
        self.inner.get_prompt(request, context).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let principal = self.principal(&context)?;
        let mut result = self.inner.list_prompts(request, context).await?;
        result.prompts.retain(|p| {
            self.authz
                .decide(&principal, Operation::GetPrompt(&p.name))
                .is_allowed()
        });
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let principal = self.principal(&context)?;
        let mut result = self.inner.list_resources(request, context).await?;
        result.resources.retain(|r| {
            self.authz
                .decide(&principal, Operation::ReadResource(&r.uri))
                .is_allowed()
        });
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let principal = self.principal(&context)?;
        let mut result = self.inner.list_resource_templates(request, context).await?;
        let policy = self.authz.policy();
        result.resource_templates.retain(|t| {
            policy
                .decide_template(&principal, &t.uri_template)
                .is_allowed()
        });
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.authorize(&mut context, Operation::ReadResource(&request.uri))?;
        self.inner.read_resource(request, context).await
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
        let principal = self.principal(context.request_context())?;
        for uri in context.accepted().resource_subscriptions.iter().flatten() {
            if let Decision::Deny(denial) =
                self.authz.decide(&principal, Operation::ReadResource(uri))
            {
                return Err(denied(&denial));
            }
        }
        self.inner.listen(context).await
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.authorize(&mut context, Operation::ReadResource(&request.uri))?;
        self.inner.subscribe(request, context).await
    }

    #[allow(deprecated)]
    fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.unsubscribe(request, context)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.to_string();
        let principal = self.authorize(&mut context, Operation::CallTool(&tool))?;
        let response = self.inner.call_tool(request, context).await?;
        if let CallToolResponse::Task(created) = &response {
            self.authz.record_task(
                created.task.task_id.clone(),
                TaskOwner {
                    tool,
                    caller: CallerId::of(&principal),
                },
            );
        }
        Ok(response)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let principal = self.principal(&context)?;
        let mut result = self.inner.list_tools(request, context).await?;
        result.tools.retain(|t| {
            self.authz
                .decide(&principal, Operation::CallTool(&t.name))
                .is_allowed()
        });
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.authorize(&mut context, Operation::Custom(&request.method))?;
        self.inner.on_custom_request(request, context).await
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

    fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_custom_notification(notification, context)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.authorize_task(&mut context, &request.task_id)?;
        self.inner.get_task(request, context).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.authorize_task(&mut context, &request.task_id)?;
        self.inner.update_task(request, context).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.authorize_task(&mut context, &request.task_id)?;
        self.inner.cancel_task(request, context).await
    }

    fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListSkillsResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.list_skills(request, context)
    }

    fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetSkillResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.get_skill(request, context)
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        self.authorize(&mut context, Operation::ReadResource(&request.uri))?;
        self.inner.read_resource_directory(request, context).await
    }
}
