//! The `ServerHandler` implementation of [`Authorized`]: every method of rmcp's trait
//! written out, each gated, filtered or forwarded as the module documentation of
//! [`server`](super) says.

use std::borrow::Cow;
use std::future::Future;

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

use crate::audit::EventKind;
use crate::gate::{self, Call};
use crate::guard::{CallerId, TaskOwner};
use crate::policy::{Denial, DenyReason, Operation};
use crate::principal::Principal;
use crate::request_state::Originating;

use super::{Authorized, Check, basic_call, resource_call, skill_name, success, tool_outcome};

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
        // Digested from the borrowed arguments, before the request is handed on.
        let arguments = gate::describe_arguments(self.guard.auditor(), request.arguments.as_ref());
        let name_ref = &name;
        let run = move |ctx, principal: Principal| async move {
            let mut request = request;
            let origin = Originating::Prompt(name_ref);
            self.guard
                .open_state(&principal, origin, &mut request.request_state)?;
            let mut response = self.inner.get_prompt(request, ctx).await?;
            if let GetPromptResponse::InputRequired(r) = &mut response {
                self.guard
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
        let list = |ctx| self.inner.list_prompts(request, ctx);
        self.listed(
            context,
            "prompts/list",
            list,
            |r: &mut ListPromptsResult, principal| {
                r.prompts
                    .retain(|p| self.allows(principal, Operation::GetPrompt(&p.name)));
                r.cache_scope = Some(CacheScope::Private);
            },
        )
        .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let list = |ctx| self.inner.list_resources(request, ctx);
        self.listed(
            context,
            "resources/list",
            list,
            |r: &mut ListResourcesResult, principal| {
                r.resources
                    .retain(|res| self.allows(principal, Operation::ReadResource(&res.uri)));
                r.cache_scope = Some(CacheScope::Private);
            },
        )
        .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let list = |ctx| self.inner.list_resource_templates(request, ctx);
        self.listed(
            context,
            "resources/templates/list",
            list,
            |r: &mut ListResourceTemplatesResult, principal| {
                let policy = self.guard.policy();
                r.resource_templates.retain(|t| {
                    policy
                        .decide_template(principal, &t.uri_template)
                        .is_allowed()
                });
                r.cache_scope = Some(CacheScope::Private);
            },
        )
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
            self.guard
                .open_state(&principal, origin, &mut request.request_state)?;
            let mut response = self.inner.read_resource(request, ctx).await?;
            if let ReadResourceResponse::InputRequired(r) = &mut response {
                self.guard
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
        // Digested from the borrowed arguments, before the request is handed on.
        let arguments = gate::describe_arguments(self.guard.auditor(), request.arguments.as_ref());
        // Cedar policies that apply to the tool decide on its arguments: a copy, as the
        // request goes on to the handler (none when the HTTP layer decided the call).
        let operation = Operation::CallTool(&tool);
        let for_policy = (self.guard.needs_arguments(operation)
            && !gate::Decided::allowed_in(&context, self.guard.id(), operation))
        .then(|| request.arguments.clone())
        .flatten();
        let tool_ref = &tool;
        let run = move |ctx, principal: Principal| async move {
            let mut request = request;
            let origin = Originating::Tool(tool_ref);
            self.guard
                .open_state(&principal, origin, &mut request.request_state)?;
            let mut response = self.inner.call_tool(request, ctx).await?;
            match &mut response {
                CallToolResponse::Task(created) => self.guard.record_task(
                    created.task.task_id.clone(),
                    TaskOwner {
                        tool: tool_ref.clone(),
                        caller: CallerId::of(&principal),
                    },
                ),
                CallToolResponse::InputRequired(r) => {
                    self.guard
                        .seal_state(&principal, origin, &mut r.request_state)?;
                }
                _ => {}
            }
            Ok(response)
        };
        self.gated(
            context,
            call,
            Check::Call(Operation::CallTool(&tool), for_policy.as_ref()),
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
        let list = |ctx| self.inner.list_tools(request, ctx);
        self.listed(
            context,
            "tools/list",
            list,
            |r: &mut ListToolsResult, principal| {
                r.tools
                    .retain(|t| self.allows(principal, Operation::CallTool(&t.name)));
                r.cache_scope = Some(CacheScope::Private);
            },
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
            self.guard
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
        let run = |ctx| self.inner.get_task(request, ctx);
        self.task_operation(context, "tasks/get", &task_id, run)
            .await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let task_id = request.task_id.clone();
        let run = |ctx| self.inner.update_task(request, ctx);
        self.task_operation(context, "tasks/update", &task_id, run)
            .await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let task_id = request.task_id.clone();
        let run = |ctx| self.inner.cancel_task(request, ctx);
        self.task_operation(context, "tasks/cancel", &task_id, run)
            .await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        let list = |ctx| self.inner.list_skills(request, ctx);
        self.listed(
            context,
            "skills/list",
            list,
            |r: &mut ListSkillsResult, principal| {
                r.skills.retain(|skill| {
                    skill_name(&skill.uri)
                        .is_some_and(|name| self.allows(principal, Operation::GetSkill(name)))
                });
                r.cache_scope = Some(CacheScope::Private);
            },
        )
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
