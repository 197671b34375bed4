//! The "everything" server of the official MCP conformance suite
//! (`@modelcontextprotocol/conformance` 0.1.16), built with rmcp: every tool, resource,
//! resource template, prompt, completion and logging behaviour its server scenarios call,
//! each answering as the scenario's description asks. `tests/tests/conformance.rs` serves
//! it bare and behind `rmcp-authz`, and runs the suite against both.
//!
//! The tools, resources and prompts are written as the JSON the scenarios describe, so
//! what goes on the wire is what the suite expects, not what a macro makes of a Rust
//! signature. The server holds sessions (the suite's client keeps one, and sampling,
//! elicitation, logging and SSE polling need one); each session gets its own handler,
//! with its own logging level and subscriptions.
//!
//! The 2025-06-18 and 2025-11-25 features the scenarios exercise (logging, sampling,
//! `resources/subscribe`) are deprecated in rmcp for protocol 2026-07-28, hence the
//! `allow(deprecated)` below.
#![allow(deprecated)]

mod content;
pub mod sessions;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult, CompleteRequestParams,
    CompleteResult, ContentBlock, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities,
    ServerConfig, ServerRequest, SetLevelRequestParams, SubscribeRequestParams, Tool,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use rmcp_authz::Authz;
use rmcp_authz::policy::Policy;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::sessions::Sessions;

/// The everything server: one per session.
#[derive(Clone)]
pub struct Everything {
    sessions: Arc<Sessions>,
    level: Arc<Mutex<LoggingLevel>>,
    subscriptions: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Everything {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Everything").finish_non_exhaustive()
    }
}

/// Reads a value of an rmcp model type from the JSON the scenario describes.
fn from_json<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("the fixture's JSON fits rmcp's model")
}

/// `level`'s rank: a message is sent when its rank is at least the session's level's.
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl Everything {
    /// A handler for one session; `sessions` is the session manager serving it (the
    /// reconnection tool closes its own stream through it).
    pub fn new(sessions: Arc<Sessions>) -> Everything {
        Everything {
            sessions,
            level: Arc::new(Mutex::new(LoggingLevel::Info)),
            subscriptions: Arc::default(),
        }
    }

    /// Sends a log message, if the session's level lets it through.
    async fn log(&self, context: &RequestContext<RoleServer>, level: LoggingLevel, text: &str) {
        let threshold = *self.level.lock().unwrap_or_else(|e| e.into_inner());
        if rank(level) >= rank(threshold) {
            let message =
                LoggingMessageNotificationParam::new(level, json!(text)).with_logger("everything");
            let _ = context.peer.notify_logging_message(message).await;
        }
    }

    async fn with_logging(&self, context: &RequestContext<RoleServer>) -> CallToolResult {
        self.log(context, LoggingLevel::Info, "Tool execution started")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log(context, LoggingLevel::Info, "Tool processing data")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log(context, LoggingLevel::Info, "Tool execution completed")
            .await;
        CallToolResult::success(vec![ContentBlock::text(
            "Tool with logging executed successfully",
        )])
    }

    async fn with_progress(&self, context: &RequestContext<RoleServer>) -> CallToolResult {
        let token = context.meta.get_progress_token();
        for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                let params = ProgressNotificationParam::new(token.clone(), progress)
                    .with_total(100.0)
                    .with_message(format!("{progress}/100"));
                let _ = context.peer.notify_progress(params).await;
            }
        }
        CallToolResult::success(vec![ContentBlock::text(
            "Tool with progress executed successfully",
        )])
    }

    async fn sampling(
        &self,
        context: &RequestContext<RoleServer>,
        prompt: &str,
    ) -> Result<CallToolResult, McpError> {
        let params: CreateMessageRequestParams = from_json(json!({
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": 100,
        }));
        let reply = context
            .peer
            .create_message(params)
            .await
            .map_err(|e| McpError::internal_error(format!("sampling failed: {e}"), None))?;
        let reply = serde_json::to_value(&reply.message.content).unwrap_or_default();
        let text = reply["text"].as_str().unwrap_or_default();
        Ok(text_result(format!("LLM response: {text}")))
    }

    /// Sends `elicitation/create` with `message` and `schema`, and says what came back.
    async fn elicit(
        &self,
        context: &RequestContext<RoleServer>,
        message: &str,
        schema: Value,
        answer_prefix: &str,
    ) -> Result<CallToolResult, McpError> {
        let params: ElicitRequestParams = from_json(json!({
            "mode": "form",
            "message": message,
            "requestedSchema": schema,
        }));
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        let reply = context
            .peer
            .send_request(request)
            .await
            .map_err(|e| McpError::internal_error(format!("elicitation failed: {e}"), None))?;
        let ClientResult::ElicitResult(reply) = reply else {
            return Err(McpError::internal_error(
                "elicitation/create was answered with another result",
                None,
            ));
        };
        let reply = serde_json::to_value(&reply).unwrap_or_default();
        Ok(text_result(format!(
            "{answer_prefix}action={}, content={}",
            reply["action"].as_str().unwrap_or_default(),
            reply.get("content").cloned().unwrap_or(json!({}))
        )))
    }

    /// Closes this call's SSE stream (SEP-1699), waits for the client to resume it with
    /// `Last-Event-ID`, then answers on the resumed stream.
    async fn reconnection(&self, context: &RequestContext<RoleServer>) -> CallToolResult {
        let session = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let Some(session) = session else {
            return CallToolResult::error(vec![ContentBlock::text(
                "test_reconnection needs a session: its stream is resumed within it",
            )]);
        };
        match self
            .sessions
            .close_stream(&session, &context.id, Duration::from_millis(500))
            .await
        {
            Ok(stream) => {
                let resumed = self
                    .sessions
                    .resumed(&session, stream, Duration::from_secs(5))
                    .await;
                text_result(if resumed {
                    "Reconnection test completed successfully".to_owned()
                } else {
                    "Reconnection test completed: the client did not resume the stream".to_owned()
                })
            }
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                "test_reconnection could not close its stream: {e}"
            ))]),
        }
    }
}

fn text_result(text: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// The string argument `name` of a call, or `invalid_params`.
fn string_argument<'a>(
    request: &'a CallToolRequestParams,
    name: &str,
) -> Result<&'a str, McpError> {
    request
        .arguments
        .as_ref()
        .and_then(|arguments| arguments.get(name))
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params(format!("the argument {name:?} is required"), None))
}

impl ServerHandler for Everything {
    fn get_info(&self) -> ServerConfig {
        let capabilities: ServerCapabilities = from_json(json!({
            "tools": {},
            "resources": { "subscribe": true },
            "prompts": {},
            "completions": {},
            "logging": {},
        }));
        ServerConfig::new(capabilities).with_server_info(Implementation::new(
            "rmcp-authz-everything",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(content::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        content::tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let result = match request.name.as_ref() {
            "test_tool_with_logging" => self.with_logging(&context).await,
            "test_tool_with_progress" => self.with_progress(&context).await,
            "test_sampling" => {
                self.sampling(&context, string_argument(&request, "prompt")?)
                    .await?
            }
            "test_elicitation" => {
                let message = string_argument(&request, "message")?;
                self.elicit(&context, message, content::user_schema(), "User response: ")
                    .await?
            }
            "test_elicitation_sep1034_defaults" => {
                self.elicit(
                    &context,
                    "Please review and update the form fields with defaults",
                    content::defaults_schema(),
                    "Elicitation completed: ",
                )
                .await?
            }
            "test_elicitation_sep1330_enums" => {
                self.elicit(
                    &context,
                    "Please select options from the enum fields",
                    content::enums_schema(),
                    "Elicitation completed: ",
                )
                .await?
            }
            sessions::RECONNECTION_TOOL => self.reconnection(&context).await,
            name => match content::fixed_result(name) {
                Some(result) => from_json(result),
                None => {
                    return Err(McpError::invalid_params(
                        format!("no tool named {name:?}"),
                        None,
                    ));
                }
            },
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(from_json(
            content::resources(),
        )))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(from_json(
            content::resource_templates(),
        )))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let contents = content::read(&request.uri).ok_or_else(|| {
            McpError::resource_not_found(format!("no resource {}", request.uri), None)
        })?;
        let result: ReadResourceResult = from_json(json!({ "contents": [contents] }));
        Ok(result.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(from_json(
            content::prompts(),
        )))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let argument = |name: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|arguments| arguments.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    McpError::invalid_params(format!("the argument {name:?} is required"), None)
                })
        };
        let messages = match request.name.as_str() {
            "test_prompt_with_arguments" => {
                content::prompt_with_arguments(&argument("arg1")?, &argument("arg2")?)
            }
            "test_prompt_with_embedded_resource" => {
                content::prompt_with_embedded_resource(&argument("resourceUri")?)
            }
            name => content::fixed_prompt(name).ok_or_else(|| {
                McpError::invalid_params(format!("no prompt named {name:?}"), None)
            })?,
        };
        let result: GetPromptResult = from_json(json!({ "messages": messages }));
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let reference = serde_json::to_value(&request.r#ref).unwrap_or_default();
        let values =
            content::completions(&reference, &request.argument.name, &request.argument.value);
        let total = values.len();
        Ok(from_json(json!({
            "completion": { "values": values, "total": total, "hasMore": false }
        })))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        *self.level.lock().unwrap_or_else(|e| e.into_inner()) = request.level;
        Ok(())
    }
}

/// The policy protecting the everything server: a rule for every tool, resource, resource
/// template and prompt, with scopes by kind (the interactive tools, which send requests to
/// the client, need a scope of their own).
pub fn everything_policy() -> Policy {
    let mut policy = Policy::builder();
    for tool in content::tools() {
        let scope = if content::INTERACTIVE_TOOLS.contains(&tool.name.as_ref()) {
            "everything:interact"
        } else {
            "everything:tools"
        };
        policy = policy.tool(tool.name.to_string(), scope);
    }
    for uri in content::RESOURCE_URIS {
        policy = policy.resource(*uri, "everything:resources");
    }
    for name in content::PROMPT_NAMES {
        policy = policy.prompt(*name, "everything:prompts");
    }
    policy.build().expect("the everything policy is valid")
}

/// rmcp's configuration for the bare server: rmcp's defaults (sessions on, SSE responses,
/// loopback `Host`s only).
pub fn bare_config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
}

/// The everything server without authorization, at `/mcp`: rmcp's `StreamableHttpService`
/// with [`bare_config`].
pub fn bare_app() -> axum::Router {
    let sessions = Arc::new(Sessions::default());
    let for_handlers = sessions.clone();
    let service = StreamableHttpService::new(
        move || Ok(Everything::new(for_handlers.clone())),
        sessions,
        bare_config(),
    );
    axum::Router::new().nest_service("/mcp", service)
}

/// The everything server behind `authz`, at `/mcp`, as `Authz::router_with` builds it
/// (the metadata routes, the layer, each session's handler wrapped), with the
/// configuration `Authz::http_config` starts from, sessions on and SSE responses as in
/// [`bare_config`]. It is assembled from `Authz::wrap`, `Authz::protect` and
/// `Authz::metadata_routes` rather than by `router_with` only because `router_with`
/// serves sessions with rmcp's `LocalSessionManager`, and the reconnection tool needs
/// [`Sessions`], which is that manager plus a note of each stream.
///
/// # Errors
/// [`rmcp_authz::ConfigError::UnknownTools`] when the policy names a tool the server
/// does not have.
pub fn protected_app(authz: &Authz) -> Result<axum::Router, rmcp_authz::ConfigError> {
    let sessions = Arc::new(Sessions::default());
    // Once, here, as `router_with` does: every tool the policy names must exist.
    authz.wrap(Everything::new(sessions.clone()))?;
    let config = authz
        .http_config()
        .with_legacy_session_mode(true)
        .with_json_response(false);
    let for_handlers = sessions.clone();
    let wrapping = authz.clone();
    let service = StreamableHttpService::new(
        move || {
            wrapping
                .wrap(Everything::new(for_handlers.clone()))
                .map_err(std::io::Error::other)
        },
        sessions,
        config,
    );
    Ok(axum::Router::new()
        .nest_service("/mcp", authz.protect(service))
        .merge(authz.metadata_routes()))
}
