//! The notes server of the `cedar_notes` example and its end-to-end test: notes kept in
//! folders, with typed arguments (schemars) that Cedar policies can read. Scope rules say
//! which tool a token may call ([`scope_policy`]); the Cedar policies of
//! `cedar/notes.cedar` ([`cedar_policies`]) say with which arguments, and by whom.
//!
//! The server knows nothing about authorization but its tools' annotations:
//! `read_note` and `list_notes` are read-only, `write_note` is not, `purge` is
//! destructive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use rmcp_authz::policy::Policy;
use rmcp_authz::policy::cedar::{CedarError, CedarPolicies};
use serde::Deserialize;

/// The notes server: notes by folder, then by title.
#[derive(Clone)]
pub struct FolderNotes {
    notes: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for FolderNotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderNotes").finish_non_exhaustive()
    }
}

impl Default for FolderNotes {
    fn default() -> Self {
        Self::new()
    }
}

/// Arguments naming a folder.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Folder {
    /// The folder.
    pub folder: String,
}

/// Arguments naming one note.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NoteRef {
    /// The note's folder.
    pub folder: String,
    /// The note's title.
    pub title: String,
}

/// Arguments of `write_note`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewNote {
    /// The note's folder.
    pub folder: String,
    /// The note's title.
    pub title: String,
    /// The note's text.
    pub text: String,
}

#[tool_router]
impl FolderNotes {
    /// An empty server.
    pub fn new() -> Self {
        FolderNotes {
            notes: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, String>>> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[tool(
        description = "Create or replace a note in a folder",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn write_note(
        &self,
        Parameters(NewNote {
            folder,
            title,
            text,
        }): Parameters<NewNote>,
    ) -> String {
        self.lock()
            .entry(folder.clone())
            .or_default()
            .insert(title.clone(), text);
        format!("wrote {folder}/{title}")
    }

    #[tool(description = "Read one note", annotations(read_only_hint = true))]
    async fn read_note(
        &self,
        Parameters(NoteRef { folder, title }): Parameters<NoteRef>,
    ) -> Result<String, String> {
        self.lock()
            .get(&folder)
            .and_then(|notes| notes.get(&title))
            .cloned()
            .ok_or_else(|| format!("no note {folder}/{title}"))
    }

    #[tool(
        description = "List the titles of a folder's notes",
        annotations(read_only_hint = true)
    )]
    async fn list_notes(&self, Parameters(Folder { folder }): Parameters<Folder>) -> String {
        self.lock()
            .get(&folder)
            .map(|notes| notes.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    }

    #[tool(
        description = "Delete every note of a folder",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn purge(&self, Parameters(Folder { folder }): Parameters<Folder>) -> String {
        let n = self.lock().remove(&folder).map_or(0, |notes| notes.len());
        format!("purged {n} from {folder}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FolderNotes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The scope rules: which tools a token may call at all (admin > write > read). The
/// Cedar policies run after these, on the calls they let through.
pub fn scope_policy() -> Policy {
    Policy::builder()
        .implies("notes:admin", ["notes:write"])
        .implies("notes:write", ["notes:read"])
        .tool("list_notes", "notes:read")
        .tool("read_note", "notes:read")
        .tool("write_note", "notes:write")
        .tool("purge", "notes:admin")
        .build()
        .expect("the scope rules are valid")
}

/// The Cedar policy file, `examples/cedar/notes.cedar`.
pub fn cedar_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cedar/notes.cedar")
}

/// The Cedar policies of [`cedar_file`], parsed (they are checked against the server's
/// tools when the server starts: [`router`]).
///
/// # Errors
/// When the file cannot be read or does not parse.
pub fn cedar_policies() -> Result<CedarPolicies, CedarError> {
    CedarPolicies::from_file(cedar_file())
}

/// The server behind `authz` over Streamable HTTP at `/mcp` (with the metadata routes).
///
/// # Errors
/// [`rmcp_authz::ConfigError::Cedar`] when a policy does not fit the server's tools (a
/// tool it does not have, an argument of the wrong type), checked here, at start-up.
pub fn router(authz: &rmcp_authz::Authz) -> Result<axum::Router, rmcp_authz::ConfigError> {
    // One store for every request: clones of `FolderNotes` share their notes.
    let notes = FolderNotes::new();
    authz.router("/mcp", move || notes.clone())
}
