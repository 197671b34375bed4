//! The notes server of the examples and tests, built with rmcp's ordinary macros: tools to
//! list, read, write and delete notes, an admin `purge`, a `whoami` tool that reads the
//! caller's [`Principal`], one resource per note plus an index, a template, and two
//! prompts. The server itself knows nothing about authorization except `purge`'s scope
//! requirement, which sits in its tool metadata; [`notes_policy`] holds the rest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, Prompt,
    PromptMessage, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use rmcp_authz::Principal;
use rmcp_authz::policy::{Policy, PolicyBuilder, ScopeExpr, all_of, tool_meta};
use serde::Deserialize;
use serde_json::json;

/// The notes server.
#[derive(Clone)]
pub struct Notes {
    notes: Arc<Mutex<BTreeMap<String, String>>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notes").finish_non_exhaustive()
    }
}

/// Arguments naming one note.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NoteId {
    /// The note's id.
    pub id: String,
}

/// Arguments of `write_note`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewNote {
    /// The note's id.
    pub id: String,
    /// The note's text.
    pub text: String,
}

impl Default for Notes {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Notes {
    /// A server holding one note, `welcome`.
    pub fn new() -> Self {
        let mut notes = BTreeMap::new();
        notes.insert(
            "welcome".to_owned(),
            "Hello from the notes server.".to_owned(),
        );
        Notes {
            notes: Arc::new(Mutex::new(notes)),
            tool_router: Self::tool_router(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[tool(description = "List the ids of all notes")]
    async fn list_notes(&self) -> String {
        self.lock().keys().cloned().collect::<Vec<_>>().join(",")
    }

    #[tool(description = "Read one note")]
    async fn read_note(
        &self,
        Parameters(NoteId { id }): Parameters<NoteId>,
    ) -> Result<String, McpError> {
        self.lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| McpError::invalid_params(format!("no note {id:?}"), None))
    }

    /// An empty id is the tool's own error (`isError: true`), not a protocol error.
    #[tool(description = "Create or replace a note")]
    async fn write_note(
        &self,
        Parameters(NewNote { id, text }): Parameters<NewNote>,
    ) -> Result<String, String> {
        if id.is_empty() {
            return Err("a note needs a non-empty id".to_owned());
        }
        self.lock().insert(id.clone(), text);
        Ok(format!("wrote {id}"))
    }

    #[tool(description = "Delete a note")]
    async fn delete_note(&self, Parameters(NoteId { id }): Parameters<NoteId>) -> String {
        match self.lock().remove(&id) {
            Some(_) => format!("deleted {id}"),
            None => format!("no note {id}"),
        }
    }

    /// Its scope requirement sits next to it, in the tool's metadata.
    #[tool(description = "Delete every note", meta = tool_meta(all_of(["notes:admin", "ops:purge"])))]
    async fn purge(&self) -> String {
        let mut notes = self.lock();
        let n = notes.len();
        notes.clear();
        format!("purged {n}")
    }

    #[tool(description = "Who is calling, as the server sees it")]
    async fn whoami(&self, Extension(who): Extension<Principal>) -> String {
        json!({
            "subject": who.subject(),
            "client": who.client_id(),
            "agent": who.agent(),
            "scopes": who.scopes(),
            "chain": who.delegation_chain().iter().map(|a| a.id()).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let mut resources = vec![Resource::new("notes://index", "index")];
        resources.extend(
            self.lock()
                .keys()
                .map(|id| Resource::new(format!("notes://{id}"), id.clone())),
        );
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("notes://{id}", "note"),
            ResourceTemplate::new("drafts://{id}", "draft"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let text = if uri == "notes://index" {
            self.lock().keys().cloned().collect::<Vec<_>>().join("\n")
        } else {
            let id = uri.strip_prefix("notes://").unwrap_or_default();
            self.lock()
                .get(id)
                .cloned()
                .ok_or_else(|| McpError::resource_not_found(format!("no resource {uri}"), None))?
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri)]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(vec![
            Prompt::new("summarize", Some("Summarize the notes"), None),
            Prompt::new("audit_report", Some("An audit report (admins)"), None),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let text = format!(
            "{}: {}",
            request.name,
            self.lock().keys().cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }
}

/// The policy for the notes server: a hierarchy admin > write > read, rules per tool
/// (`purge`'s from its metadata), resources, prompts.
pub fn notes_policy() -> Policy {
    notes_rules().build().expect("the notes policy is valid")
}

/// The rules of [`notes_policy`], before it is built (to add a clock, say).
pub fn notes_rules() -> PolicyBuilder {
    Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:delete"])
        .implies("notes:write", ["notes:read"])
        .tools_from_meta(Notes::tool_router().list_all())
        .tool("list_notes", "notes:read")
        .tool("read_note", "notes:read")
        .tool("write_note", "notes:write")
        .tool("delete_note", "notes:delete")
        .tool("whoami", ScopeExpr::authenticated())
        .resource("notes://index", ScopeExpr::authenticated())
        .resource("notes://{id}", "notes:read")
        .prompt("summarize", "notes:read")
        .prompt("audit_report", "notes:admin")
}

/// Where the stdio notes server finds its keys.
#[derive(Debug, Clone)]
pub struct StdioSettings {
    /// The issuer tokens must come from.
    pub issuer: String,
    /// The issuer's JWK Set file.
    pub jwks_file: std::path::PathBuf,
    /// The audience tokens must name.
    pub audience: String,
    /// A JSON Lines audit file to record every decision to (`durable`), if any.
    pub audit_file: Option<std::path::PathBuf>,
}

/// Serves the notes server on stdin/stdout for the token in `MCP_ACCESS_TOKEN`, until the
/// client closes the connection. Errors are messages for stderr (never containing the
/// token).
pub async fn serve_stdio(settings: StdioSettings) -> Result<(), String> {
    let verifier = rmcp_authz::token::JwtVerifier::builder(settings.issuer, settings.audience)
        .jwks_file(&settings.jwks_file)
        .build()
        .map_err(|e| e.to_string())?;
    let mut authz = rmcp_authz::Authz::builder(verifier, notes_policy());
    if let Some(path) = &settings.audit_file {
        let file = rmcp_authz::audit::JsonLines::open(path).map_err(|e| e.to_string())?;
        let auditor = rmcp_authz::audit::Auditor::builder(Arc::new(file))
            .durability(rmcp_authz::audit::Durability::Durable)
            .build()
            .map_err(|e| e.to_string())?;
        authz = authz.auditor(auditor);
    }
    authz
        .build()
        .serve_stdio(Notes::new(), rmcp_authz::stdio::DEFAULT_TOKEN_VAR)
        .await
        .map_err(|e| e.to_string())
}

/// The notes server behind `authz` over Streamable HTTP, as a server written from the
/// README would build it: `Authz::router` with its defaults (stateless: every client
/// version and raw HTTP), the metadata routes included.
///
/// # Errors
/// [`rmcp_authz::ConfigError::UnknownTools`] when the policy names a tool the notes server
/// does not have: checked here, at start-up, not on the first request.
pub fn router(authz: &rmcp_authz::Authz) -> Result<axum::Router, rmcp_authz::ConfigError> {
    // One store for every request: rmcp makes a handler per request, and clones of
    // `Notes` share their notes.
    let notes = Notes::new();
    authz.router("/mcp", move || notes.clone())
}

/// [`router`] with rmcp's service configured by `config` (the tests run both session
/// modes).
///
/// # Errors
/// [`rmcp_authz::ConfigError::UnknownTools`] when the policy names a tool the notes server
/// does not have: checked here, at start-up, not on the first request.
pub fn http_app(
    authz: &rmcp_authz::Authz,
    config: rmcp::transport::streamable_http_server::StreamableHttpServerConfig,
) -> Result<axum::Router, rmcp_authz::ConfigError> {
    // One store for every request: rmcp makes a handler per request (per session with
    // sessions on), and clones of `Notes` share their notes.
    let notes = Notes::new();
    authz.router_with("/mcp", move || notes.clone(), config)
}
