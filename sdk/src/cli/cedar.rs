//! The Cedar side of `policy check` and `policy explain` (feature `cedar`): a
//! configuration's Cedar policies checked against a server's tool list (the JSON a
//! `tools/list` answers), and one call decided with the reasons printed.

use std::path::{Path, PathBuf};

use rmcp::model::Tool;
use serde_json::{Map, Value, json};

use super::{Outcome, error_message, print_json};
use crate::clock::{Clock as _, SystemClock};
use crate::config::Config;
use crate::error::CedarError;
use crate::policy::Operation;
use crate::policy::cedar::CedarPolicies;

/// The tools in a file holding what a `tools/list` answered: the JSON-RPC response, its
/// `result`, or the list of tools itself.
pub(super) fn tools_from(path: &Path) -> Result<Vec<Tool>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let list = value
        .pointer("/result/tools")
        .or_else(|| value.get("tools"))
        .unwrap_or(&value);
    serde_json::from_value(list.clone()).map_err(|e| {
        format!(
            "{}: expected a tools/list answer (a JSON-RPC response, its result, or a list of tools): {e}",
            path.display()
        )
    })
}

/// Where a server's tools come from: a file with its `tools/list` answer, or the running
/// server itself (its endpoint and a token; feature `jwks`).
#[derive(Debug)]
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
pub(super) enum ToolList {
    None,
    File(PathBuf),
    Server { url: String, token: String },
}

impl ToolList {
    pub(super) fn of(file: Option<PathBuf>, server: Option<(String, String)>) -> ToolList {
        match (file, server) {
            (Some(file), _) => ToolList::File(file),
            (None, Some((url, token))) => ToolList::Server { url, token },
            (None, None) => ToolList::None,
        }
    }

    /// The tools, `None` when no list was given.
    pub(super) fn load(&self) -> Result<Option<Vec<Tool>>, String> {
        match self {
            ToolList::None => Ok(None),
            ToolList::File(path) => tools_from(path).map(Some),
            #[cfg(feature = "jwks")]
            ToolList::Server { url, token } => {
                let token = super::token::read(token)?;
                tools_from_server(url, &token).map(Some)
            }
            #[cfg(not(feature = "jwks"))]
            ToolList::Server { .. } => Err(
                "asking a running server for its tools needs the crate feature `jwks`".to_owned(),
            ),
        }
    }
}

/// The problems of `policies` against `tools`, one line each (none when they check).
pub(super) fn problems(policies: &CedarPolicies, tools: &[Tool]) -> Vec<String> {
    match policies.compile(tools) {
        Ok(_) => Vec::new(),
        Err(CedarError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(other) => vec![other.to_string()],
    }
}

/// Verifies `token` with the configuration at `config`, and decides a call of `tool`
/// with `arguments` by its scope rules and its Cedar policies, compiled against the tools
/// `listed`; prints the decision and why.
pub(super) fn explain(
    config: &Path,
    listed: ToolList,
    token: &str,
    tool: &str,
    arguments: Option<&str>,
    as_json: bool,
) -> Result<Outcome, String> {
    let config = Config::from_file(config).map_err(|e| error_message(&e))?;
    let policies = config
        .cedar()
        .cloned()
        .ok_or("the configuration has no [cedar] section: nothing for Cedar to explain")?;
    // The tools the server compiles against: those with a scope rule and those the
    // policies name (a tool only `unlisted_tools` admits is refused when a policy applies
    // to every tool, as the server refuses it).
    let checked = policies.tools_to_check(config.policy());
    let tools: Vec<Tool> = listed
        .load()?
        .ok_or("give the server's tools: --tools-json FILE or --server URL")?
        .into_iter()
        .filter(|t| checked.iter().any(|n| *n == t.name))
        .collect();
    let cedar = policies.compile(&tools).map_err(|e| error_message(&e))?;
    let arguments: Option<Map<String, Value>> = arguments
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| format!("--arguments must be a JSON object: {e}"))
        })
        .transpose()?;
    let (verifier, policy) = config.into_parts();
    let principal = verifier
        .verify_sync(token)
        .map_err(|e| format!("the token is refused: {e}"))?;
    let operation = Operation::CallTool(tool);
    let scope_decision = policy.decide(&principal, operation);
    let scopes = policy.held_scopes(&principal);
    let verdict = scope_decision
        .is_allowed()
        .then(|| {
            cedar.decide(
                &principal,
                &scopes,
                operation,
                arguments.as_ref(),
                SystemClock.now_unix(),
            )
        })
        .flatten();
    let (decision, by) = match &verdict {
        Some(v) => (&v.decision, "cedar"),
        None if scope_decision.is_allowed() => {
            (&scope_decision, "scopes (no Cedar policy applies)")
        }
        None => (&scope_decision, "scopes"),
    };
    let policies_named = verdict
        .as_ref()
        .map(|v| v.policies.clone())
        .unwrap_or_default();
    if as_json {
        print_json(&json!({
            "tool": tool,
            "allowed": decision.is_allowed(),
            "decided_by": by,
            "policies": policies_named,
            "reason_code": decision.denial().map(|d| d.code()),
            "reason": decision.denial().map(ToString::to_string),
            "error_data": decision.denial().map(|d| d.error_data()),
            "scopes_held": scopes,
        }));
    } else {
        let verb = if decision.is_allowed() {
            "ALLOWED"
        } else {
            "DENIED"
        };
        println!("tools/call {tool}: {verb} (decided by {by})");
        if !policies_named.is_empty() {
            println!("  determining policies: {}", policies_named.join(", "));
        }
        if let Some(denial) = decision.denial() {
            println!("  reason [{}]: {denial}", denial.code());
            if let Some(scope) = denial.challenge_scope() {
                println!(
                    "  a server answers 403 with WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                );
            } else {
                println!(
                    "  a server answers 403 with error data {}",
                    denial.error_data()
                );
            }
        }
        println!("  scopes held (with the hierarchy): {}", scopes.join(" "));
    }
    Ok(if decision.is_allowed() {
        Outcome::Ok
    } else {
        Outcome::Refused
    })
}

/// The tools a running MCP server lists (feature `jwks`, for its HTTP client): the
/// initialize handshake over Streamable HTTP with `token`, then every page of
/// `tools/list`. Answers may be JSON or a server-sent event stream.
#[cfg(feature = "jwks")]
pub(super) fn tools_from_server(url: &str, token: &str) -> Result<Vec<Tool>, String> {
    super::runtime()?.block_on(list_tools(url, token))
}

#[cfg(feature = "jwks")]
async fn list_tools(url: &str, token: &str) -> Result<Vec<Tool>, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut session: Option<String> = None;
    let mut post = async |body: Value| -> Result<Option<Value>, String> {
        let mut request = client
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(id) = &session {
            request = request.header("mcp-session-id", id);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if let Some(id) = response.headers().get("mcp-session-id") {
            session = id.to_str().ok().map(str::to_owned);
        }
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url} answered {status}: {}", text.trim()));
        }
        Ok(answer_of(&text, &body["id"]))
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "rmcp-authz policy check", "version": env!("CARGO_PKG_VERSION")}}});
    post(initialize).await?;
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for id in 2.. {
        let mut params = json!({});
        if let Some(cursor) = cursor.take() {
            params["cursor"] = cursor;
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
        let answer = post(body)
            .await?
            .ok_or_else(|| format!("{url} sent no answer to tools/list"))?;
        if let Some(error) = answer.get("error") {
            return Err(format!("{url} refused tools/list: {error}"));
        }
        let page: Vec<Tool> = serde_json::from_value(answer["result"]["tools"].clone())
            .map_err(|e| format!("{url}: tools/list answered something else: {e}"))?;
        tools.extend(page);
        match answer["result"].get("nextCursor") {
            Some(next) if !next.is_null() && id < 1_000 => cursor = Some(next.clone()),
            _ => break,
        }
    }
    Ok(tools)
}

/// The JSON-RPC answer with `id` in a body: the body itself, or one of the `data:` events
/// of a server-sent event stream.
#[cfg(feature = "jwks")]
fn answer_of(text: &str, id: &Value) -> Option<Value> {
    let is_answer = |v: &Value| !id.is_null() && v.get("id") == Some(id);
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return is_answer(&value).then_some(value);
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(is_answer)
}
