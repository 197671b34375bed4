//! `policy check` and `policy show`: a configuration's policy linted, and its effective
//! rules printed. Both read what the policy keeps to itself (`Policy::rules`,
//! `Policy::shadowed_templates`, `Policy::implied_by`).

use std::path::Path;

use serde_json::{Value, json};

use super::{Outcome, error_message, print_json};
use crate::config::Config;
use crate::policy::Policy;

/// One lint finding.
struct Finding {
    severity: &'static str,
    code: &'static str,
    message: String,
}

/// The policy of the configuration file at `path`.
fn load(path: &Path) -> Result<Policy, String> {
    Ok(Config::from_file(path)
        .map_err(|e| error_message(&e))?
        .into_parts()
        .1)
}

/// Lints the policy; with the server's tool list (`listed`: a `tools/list` answer, or the
/// running server's), against its tools, the `[cedar]` policies included.
pub(super) fn check(
    config: &Path,
    tools: &[String],
    #[cfg(feature = "cedar")] listed: super::cedar::ToolList,
    #[cfg(not(feature = "cedar"))] _listed: (),
    as_json: bool,
) -> Result<Outcome, String> {
    let config = Config::from_file(config).map_err(|e| error_message(&e))?;
    #[cfg_attr(not(feature = "cedar"), allow(unused_mut))]
    let mut tools = tools.to_vec();
    #[cfg_attr(not(feature = "cedar"), allow(unused_mut))]
    let mut findings = Vec::new();
    #[cfg(feature = "cedar")]
    {
        let listed = listed.load()?;
        if let Some(listed) = &listed {
            tools.extend(listed.iter().map(|t| t.name.to_string()));
        }
        if let Some(policies) = config.cedar() {
            match &listed {
                Some(listed) => {
                    findings.extend(super::cedar::problems(policies, listed).into_iter().map(
                        |message| Finding {
                            severity: "error",
                            code: "cedar",
                            message,
                        },
                    ));
                }
                None => findings.push(Finding {
                    severity: "warning",
                    code: "cedar-unchecked",
                    message: "the [cedar] policies parse, but are checked against the server's tools only with --tools-json or --server".to_owned(),
                }),
            }
        }
    }
    let policy = config.into_parts().1;
    findings.splice(0..0, lint(&policy, &tools));
    let errors = findings.iter().filter(|f| f.severity == "error").count();
    if as_json {
        print_json(&json!({
            "errors": errors,
            "findings": findings.iter().map(|f| json!({"severity": f.severity, "code": f.code, "message": f.message})).collect::<Vec<Value>>(),
        }));
    } else if findings.is_empty() {
        println!("no problems found ({} rules)", policy.rules().len());
    } else {
        for f in &findings {
            println!("{}[{}]: {}", f.severity, f.code, f.message);
        }
        println!(
            "\n{errors} error(s), {} warning(s)",
            findings.len() - errors
        );
    }
    Ok(if errors == 0 {
        Outcome::Ok
    } else {
        Outcome::Refused
    })
}

/// What is wrong with `policy`, or suspicious, for a server with `tools` (none: unknown).
fn lint(policy: &Policy, tools: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    let rules = policy.rules();
    for (kind, name, rule) in &rules {
        if rule.clients().is_some_and(<[String]>::is_empty) {
            out.push(Finding {
                severity: "error",
                code: "unreachable-rule",
                message: format!(
                    "{kind} {name:?} admits no client (clients = []), so nobody can ever use it"
                ),
            });
        }
        if rule.requirement().scopes().contains(&"offline_access") {
            out.push(Finding {
                severity: "warning",
                code: "offline-access",
                message: format!("{kind} {name:?} requires offline_access, a refresh-token scope that is never advertised to clients"),
            });
        }
    }
    for (template, shadows) in policy.shadowed_templates() {
        if !shadows.is_empty() {
            out.push(Finding {
                severity: "warning",
                code: "shadowed-template",
                message: format!("resource template {template:?} is tried after {shadows:?}, which match some of its URIs first"),
            });
        }
    }
    let scopes = policy.scopes_supported();
    for (i, a) in scopes.iter().enumerate() {
        for b in &scopes[i + 1..] {
            if similar(a, b) {
                out.push(Finding {
                    severity: "warning",
                    code: "similar-scopes",
                    message: format!("scopes {a:?} and {b:?} differ only slightly: a typo?"),
                });
            }
        }
    }
    if !tools.is_empty() {
        let has_unlisted = rules.iter().any(|(k, _, _)| *k == "unlisted tools");
        for tool in tools {
            if !policy.tool_names().any(|t| t == tool) && !has_unlisted {
                out.push(Finding {
                    severity: "warning",
                    code: "tool-without-rule",
                    message: format!("tool {tool:?} has no rule and is denied to everyone"),
                });
            }
        }
        for name in policy.tool_names() {
            if !tools.iter().any(|t| t == name) {
                out.push(Finding {
                    severity: "error",
                    code: "rule-without-tool",
                    message: format!("the rule for tool {name:?} names no tool of the server; Authz::wrap refuses this policy"),
                });
            }
        }
    }
    out
}

/// Case-insensitively equal, or one edit apart (for names of 4+ characters).
fn similar(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().min(b.len()) < 4 || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Levenshtein distance, stopping early beyond 1.
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 1
}

/// Prints the effective rules.
pub(super) fn show(config: &Path, tools: &[String], as_json: bool) -> Result<Outcome, String> {
    let policy = load(config)?;
    let mut rows: Vec<(String, String, String, String)> = policy
        .rules()
        .into_iter()
        .map(|(kind, name, rule)| {
            let clients = match rule.clients() {
                None => "(any)".to_owned(),
                Some([]) => "(none: unreachable)".to_owned(),
                Some(list) => list.join(", "),
            };
            (
                kind.to_owned(),
                name.to_owned(),
                rule.requirement().to_string(),
                clients,
            )
        })
        .collect();
    let unlisted = policy
        .rules()
        .iter()
        .any(|(k, _, _)| *k == "unlisted tools");
    for tool in tools {
        if !policy.tool_names().any(|t| t == tool) && !unlisted {
            rows.push((
                "tool".into(),
                tool.clone(),
                "(no rule: denied)".into(),
                "-".into(),
            ));
        }
    }
    let hierarchy: Vec<(String, Vec<String>)> = policy
        .scopes_supported()
        .iter()
        .filter(|s| !policy.implied_by(s).is_empty())
        .map(|s| (s.clone(), policy.implied_by(s).to_vec()))
        .collect();
    if as_json {
        print_json(&json!({
            "rules": rows.iter().map(|(k, n, r, c)| json!({"kind": k, "name": n, "requires": r, "clients": c})).collect::<Vec<_>>(),
            "hierarchy": hierarchy.iter().map(|(s, i)| json!({"scope": s, "implies": i})).collect::<Vec<_>>(),
            "scopes_supported": policy.scopes_supported(),
        }));
        return Ok(Outcome::Ok);
    }
    let width = |f: fn(&(String, String, String, String)) -> &String, title: &str| {
        rows.iter()
            .map(|r| f(r).len())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (wk, wn, wr) = (
        width(|r| &r.0, "kind"),
        width(|r| &r.1, "name"),
        width(|r| &r.2, "requires"),
    );
    println!(
        "{:wk$}  {:wn$}  {:wr$}  clients",
        "kind", "name", "requires"
    );
    for (k, n, r, c) in &rows {
        println!("{k:wk$}  {n:wn$}  {r:wr$}  {c}");
    }
    if !hierarchy.is_empty() {
        println!("\nhierarchy:");
        for (scope, implied) in &hierarchy {
            println!("  {scope} implies {}", implied.join(", "));
        }
    }
    println!(
        "\nscopes_supported: {}",
        policy.scopes_supported().join(" ")
    );
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::similar;

    #[test]
    fn similar_names_are_one_edit_apart() {
        assert!(similar("notes:read", "note:read"));
        assert!(similar("notes:read", "Notes:Read"));
        assert!(similar("notes:read", "notes:reed"));
        assert!(!similar("notes:read", "notes:write"));
        assert!(!similar("a:b", "a:c"), "short names are not compared");
    }
}
