//! The Cedar side of `policy check` and `policy explain` (feature `cedar`): a
//! configuration's Cedar policies checked against a server's tool list (the JSON a
//! `tools/list` answers), and one call decided with the reasons printed.

use std::path::Path;

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
/// of `tools_json`; prints the decision and why.
pub(super) fn explain(
    config: &Path,
    tools_json: &Path,
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
    let scope_rules: Vec<String> = config.policy().tool_names().map(str::to_owned).collect();
    let named = policies.tool_names();
    let tools: Vec<Tool> = tools_from(tools_json)?
        .into_iter()
        .filter(|t| scope_rules.iter().chain(&named).any(|n| *n == t.name))
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
