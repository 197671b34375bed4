//! Argument-level policy with Cedar (feature `cedar`): who may call which tool with which
//! arguments, read which resource, get which prompt.
//!
//! [`CedarPolicies`] are Cedar policies as written, parsed and given ids. Compiled against
//! the server's own tools ([`CedarPolicies::compile`]) they become a [`Cedar`] stage: a
//! Cedar schema is generated from the tools' `inputSchema`s and the principal model, and
//! every policy is type-checked against it, so a policy that names an argument a tool
//! does not have, or compares one with the wrong type, stops the server with the policy's
//! id and position. The stage runs after the scope check, only for the operations some
//! policy applies to (the others pay nothing): deny by default, `forbid` wins.
//!
//! The model (docs/policy.md, "Cedar", has it whole):
//! - principal `Agent::"<agent>"` (the current actor, else the client) with `user`
//!   (`sub`), `client`, `issuer`, `delegated`, `depth`, `chain` (every actor), `origin`
//!   (the actor the user delegated to first), `scopes` (with the hierarchy's implied
//!   scopes) and `claims` (the claims chosen with [`CedarPolicies::claim`]);
//! - actions `Action::"tools/call"`, `Action::"resources/read"`, `Action::"prompts/get"`;
//! - resources `Tool::"<name>"` (its annotations `readOnlyHint`, `destructiveHint`,
//!   `idempotentHint`, `openWorldHint`, with MCP's defaults, and `name`),
//!   `Resource::"<uri>"` (`uri`), `Prompt::"<name>"` (`name`);
//! - context `arguments` (a `tools/call`'s, typed per tool), `now` and `token_age`
//!   (seconds).
//!
//! A `permit` annotated `@scopes("a b")` applies only to callers holding those scopes; a
//! call it would permit but for them is refused as `insufficient_scope` naming them, so
//! the agent can step up. Lists show a tool when partial evaluation, with the arguments
//! unknown, does not find the call denied whatever they are.

mod arguments;
mod compile;
mod evaluate;
mod numbers;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cedar_policy::{Authorizer, Entity, PolicyId, PolicySet};

pub use crate::error::{CedarError, PolicyProblem, SourcePosition};
use arguments::ToolArgs;
pub use evaluate::Verdict;

/// The Cedar type of a token claim handed to policies as `principal.claims.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimType {
    /// A string claim.
    String,
    /// An integer claim.
    Long,
    /// A boolean claim.
    Bool,
    /// An array of strings (or one string, taken as a set of one).
    StringSet,
}

/// Cedar policies as written: parsed and given ids, not yet checked against a server's
/// tools. Give them to [`AuthzBuilder::cedar`](crate::AuthzBuilder::cedar) (or
/// `[cedar] policies` in a configuration file); the server checks them when it starts.
///
/// ```
/// use rmcp_authz::policy::cedar::CedarPolicies;
/// let policies = CedarPolicies::parse("inline", r#"
///     @id("read-only-for-agents")
///     forbid(principal, action == Action::"tools/call", resource)
///     when { principal.delegated } unless { resource.readOnlyHint };
/// "#)?;
/// assert_eq!(policies.ids().collect::<Vec<_>>(), ["read-only-for-agents"]);
/// assert!(CedarPolicies::parse("bad", "permit(principal, action, resource").is_err());
/// # Ok::<(), rmcp_authz::policy::cedar::CedarError>(())
/// ```
#[derive(Clone, Default)]
pub struct CedarPolicies {
    policies: Vec<Loaded>,
    claims: Vec<(String, ClaimType)>,
}

/// One parsed policy.
#[derive(Clone)]
struct Loaded {
    policy: cedar_policy::Policy,
    /// Where it starts.
    position: SourcePosition,
    /// Its source's text, for the positions of problems found later.
    text: Arc<str>,
    /// Whether it has an `@id` (else its id is `policyN`, N its place among all).
    named: bool,
    /// Its `@scopes`, split.
    scopes: Option<Box<[String]>>,
}

impl fmt::Debug for CedarPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPolicies")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("claims", &self.claims)
            .finish()
    }
}

impl CedarPolicies {
    /// Parses `text` (Cedar policy syntax), naming it `source` in error positions. A
    /// policy's id is its `@id("...")` annotation, else `policyN` with N its place among
    /// all the policies (from 0).
    pub fn parse(source: &str, text: &str) -> Result<CedarPolicies, CedarError> {
        let set: PolicySet = text.parse().map_err(|e: cedar_policy::ParseErrors| {
            let offset = first_offset(&e);
            CedarError::Parse {
                position: SourcePosition::at(source, text, offset),
                message: e.to_string(),
            }
        })?;
        if let Some(template) = set.templates().next() {
            let start = text.find(&template.to_string()).unwrap_or(0);
            return Err(CedarError::Template {
                policy: template
                    .annotation("id")
                    .map_or_else(|| template.id().to_string(), str::to_owned),
                position: SourcePosition::at(source, text, start),
            });
        }
        let text: Arc<str> = Arc::from(text);
        // Cedar numbers the policies of one text in the order written (`policy0`, ...);
        // the text of each is a slice of the source, found again, after the previous one,
        // for its position.
        let mut in_order: Vec<(usize, cedar_policy::Policy)> = set
            .policies()
            .map(|p| {
                let n = p
                    .id()
                    .to_string()
                    .strip_prefix("policy")
                    .and_then(|n| n.parse().ok());
                (n.unwrap_or(usize::MAX), p.clone())
            })
            .collect();
        in_order.sort_by_key(|(n, _)| *n);
        let mut policies = CedarPolicies::default();
        let mut from = 0;
        for (_, policy) in in_order {
            let written = policy.to_string();
            let start = text
                .get(from..)
                .and_then(|rest| rest.find(&written))
                .map_or(from, |i| from + i);
            from = start + written.len();
            let position = SourcePosition::at(source, &text, start);
            let id = policy.annotation("id").map(str::to_owned);
            let scopes = match policy.annotation("scopes") {
                None => None,
                Some(value) => Some(scope_list(value).ok_or_else(|| CedarError::BadScopes {
                    policy: id.clone().unwrap_or_else(|| policy.id().to_string()),
                    position: position.clone(),
                    value: value.to_owned(),
                })?),
            };
            policies.push(Loaded {
                named: id.is_some(),
                policy: match id {
                    Some(id) => policy.new_id(PolicyId::new(id)),
                    None => policy,
                },
                position,
                text: text.clone(),
                scopes,
            })?;
        }
        Ok(policies)
    }

    /// Reads and parses a policy file (named by its path in error positions).
    pub fn from_file(path: impl AsRef<Path>) -> Result<CedarPolicies, CedarError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CedarError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        CedarPolicies::parse(&path.display().to_string(), &text)
    }

    /// These policies and `more`'s, in that order (ids of `more`'s unnamed policies
    /// continue the count).
    pub fn and(mut self, more: CedarPolicies) -> Result<CedarPolicies, CedarError> {
        for loaded in more.policies {
            self.push(loaded)?;
        }
        for (name, ty) in more.claims {
            self = self.claim(name, ty);
        }
        Ok(self)
    }

    /// Hands the token claim `name` to policies as `principal.claims.<name>` (an
    /// optional attribute: test it with `has`). A claim of another type is absent.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, ty: ClaimType) -> CedarPolicies {
        let name = name.into();
        self.claims.retain(|(n, _)| *n != name);
        self.claims.push((name, ty));
        self
    }

    /// The policies' ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|l| l.policy.id().as_ref())
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The tools the policies name (`resource == Tool::"..."` or `in`), sorted: the
    /// server must have each.
    pub fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .policies
            .iter()
            .filter_map(|l| compile::named_tool(&l.policy))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The tools the policies are compiled against for a server whose scope rules are
    /// `scope_rules`: those the rules name (deny by default: the only ones a call can reach
    /// unless `unlisted_tools` admits more) and those the policies name; sorted.
    pub(crate) fn tools_to_check(&self, scope_rules: &super::Policy) -> Vec<String> {
        let mut names: Vec<String> = scope_rules.tool_names().map(str::to_owned).collect();
        names.extend(self.tool_names());
        names.sort_unstable();
        names.dedup();
        names
    }

    fn push(&mut self, mut loaded: Loaded) -> Result<(), CedarError> {
        if !loaded.named {
            let id = format!("policy{}", self.policies.len());
            loaded.policy = loaded.policy.new_id(PolicyId::new(id));
        }
        let id = loaded.policy.id();
        if self.policies.iter().any(|l| l.policy.id() == id) {
            return Err(CedarError::DuplicateId {
                policy: id.to_string(),
                position: loaded.position,
            });
        }
        if loaded.scopes.is_some() && loaded.policy.effect() == cedar_policy::Effect::Forbid {
            return Err(CedarError::ScopesOnForbid {
                policy: id.to_string(),
                position: loaded.position,
            });
        }
        self.policies.push(loaded);
        Ok(())
    }
}

/// A `@scopes` value as scope names, `None` when it is empty or one is invalid.
fn scope_list(value: &str) -> Option<Box<[String]>> {
    let scopes: Box<[String]> = value.split_whitespace().map(str::to_owned).collect();
    (!scopes.is_empty() && scopes.iter().all(|s| super::is_valid_scope(s))).then_some(scopes)
}

/// The first byte offset a Cedar diagnostic points at.
fn first_offset(diagnostic: &dyn miette::Diagnostic) -> usize {
    diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(0, |label| label.offset())
}

/// Cedar policies compiled against a server's tools: the stage that decides the
/// operations some policy applies to. Made by [`CedarPolicies::compile`]; cheap to clone.
#[derive(Clone)]
pub struct Cedar {
    inner: Arc<Stage>,
}

struct Stage {
    /// This stage's identity, never reused: principals keep their entity under it.
    id: u64,
    /// The tools some policy applies to.
    tools: HashMap<String, Governed>,
    /// `resources/read`, when some policy applies to it.
    resources: Option<PolicySet>,
    /// `prompts/get`, when some policy applies to it.
    prompts: Option<PolicySet>,
    /// Whether some policy applies to every tool: then a tool the server did not declare
    /// at start-up (one only `unlisted_tools` admits) is refused, never left unchecked.
    every_tool: bool,
    /// Each policy's effect and `@scopes`.
    policies: HashMap<PolicyId, Info>,
    claims: Vec<(String, ClaimType)>,
    authorizer: Authorizer,
    names: compile::Names,
    /// The generated schema of each tool, in Cedar's JSON schema format.
    schemas: Vec<(String, serde_json::Value)>,
}

/// What a decision needs of one tool.
struct Governed {
    /// Its place among the governed tools: where a principal keeps its entities for it.
    index: usize,
    policies: PolicySet,
    /// The tool's entity, built once.
    entity: Entity,
    /// The arguments' type, without the top-level members no applicable policy names
    /// (Cedar is handed only what it may read).
    args: ToolArgs,
    /// Whether some applicable policy may read `context.now` or `context.token_age`.
    times: bool,
}

/// A policy's effect and the scopes that unlock it.
struct Info {
    forbid: bool,
    scopes: Option<Box<[String]>>,
}

impl fmt::Debug for Cedar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tools: Vec<&str> = self.inner.tools.keys().map(String::as_str).collect();
        tools.sort_unstable();
        f.debug_struct("Cedar")
            .field("policies", &self.inner.policies.len())
            .field("tools", &tools)
            .field("resources", &self.inner.resources.is_some())
            .field("prompts", &self.inner.prompts.is_some())
            .finish_non_exhaustive()
    }
}

impl Cedar {
    /// The Cedar schema generated for each tool, in Cedar's JSON schema format (what the
    /// policies were checked against), sorted by tool.
    pub fn schemas(&self) -> &[(String, serde_json::Value)] {
        &self.inner.schemas
    }

    /// The tools some policy applies to, sorted.
    pub fn governed_tools(&self) -> Vec<&str> {
        let mut tools: Vec<&str> = self.inner.tools.keys().map(String::as_str).collect();
        tools.sort_unstable();
        tools
    }
}

#[cfg(test)]
mod tests;
