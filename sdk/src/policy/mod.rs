//! What a [`Principal`] may do: scope requirements per tool, resource, prompt and custom
//! request, scope hierarchies, and the [`Decision`] every other layer acts on.
//!
//! A [`Policy`] is built once, with [`Policy::builder`] or from tool metadata
//! ([`tool_meta`], read back by [`PolicyBuilder::tools_from_meta`]), and then only read.
//! Deny by default: a tool, resource, prompt, skill or custom request without a rule is refused
//! unless an `unlisted_*` rule says otherwise. `initialize`, `ping` and the `*/list`
//! methods need only a valid token ([`Operation::Basic`]); lists are filtered to what
//! the caller may use. Task operations are decided as calls of the tool that started
//! the task.
//!
//! Building compiles the policy: every scope it names is interned, hierarchies and
//! wildcards are resolved into bit sets, each rule's requirement becomes a few masks and
//! its conditions are merged with the defaults. A decision is then one map lookup and a
//! few bit tests; what a [`Principal`]'s scopes amount to is computed once and kept in
//! the principal.

mod builder;
#[cfg(feature = "cedar")]
pub mod cedar;
mod compiled;
mod conditions;
mod decision;
mod hierarchy;
mod inspect;
mod rule;
mod scope;
mod template;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rmcp::model::MetaObject;
use serde_json::Value;

pub use crate::error::{ExprError, PolicyError};
pub use builder::PolicyBuilder;
pub use conditions::{Conditions, DpopRequirement};
pub use decision::{Decision, Denial, DenyReason, challenge_scope};
pub use rule::{Operation, Rule};
#[cfg_attr(not(feature = "config"), allow(unused_imports))]
pub(crate) use scope::from_text as scope_text;
pub use scope::{ScopeExpr, all_of, any_of};

use crate::clock::Clock;
use crate::principal::Principal;
use compiled::{Held, Requirement, ScopeTable, holds};
use hierarchy::Hierarchy;
use scope::valid_scope;
use template::UriTemplate;

/// Whether `scope` is a valid scope name (RFC 6749 section 3.3).
pub fn is_valid_scope(scope: &str) -> bool {
    valid_scope(scope)
}

/// Whether `template` is a URI or a URI template a resource rule accepts; `Some(true)`
/// when it has variables.
pub fn is_valid_template(template: &str) -> Option<bool> {
    UriTemplate::parse(template).map(|t| t.has_variables())
}

/// The `_meta` key under which [`tool_meta`] stores a tool's scope requirement.
pub const TOOL_META_KEY: &str = "rmcp-authz/requires";

/// Tool metadata that states the scopes a tool needs, for `#[tool(meta = ...)]`.
///
/// [`PolicyBuilder::tools_from_meta`] reads it back, so the requirement can sit next to
/// the tool and still produce the same [`Policy`] as the builder.
///
/// ```
/// use rmcp_authz::policy::{Policy, tool_meta};
/// use rmcp::model::Tool;
/// let tool = Tool::new("list_notes", "List notes", serde_json::Map::new())
///     .with_meta(tool_meta("notes:read"));
/// let policy = Policy::builder().tools_from_meta([tool]).build()?;
/// assert_eq!(policy.tool_names().collect::<Vec<_>>(), ["list_notes"]);
/// # Ok::<(), rmcp_authz::policy::PolicyError>(())
/// ```
pub fn tool_meta(requirement: impl Into<ScopeExpr>) -> MetaObject {
    let mut object = serde_json::Map::new();
    object.insert(
        TOOL_META_KEY.to_owned(),
        Value::String(requirement.into().to_string()),
    );
    MetaObject::from(object)
}

/// A built, immutable authorization policy. Cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    /// This policy's identity, never reused: principals cache grant sets under it.
    id: u64,
    hierarchy: Hierarchy,
    scopes: ScopeTable,
    tools: HashMap<String, Entry>,
    prompts: HashMap<String, Entry>,
    custom: HashMap<String, Entry>,
    resources: HashMap<String, Entry>,
    resource_templates: Vec<(String, UriTemplate, Entry)>,
    unlisted_tools: Option<Entry>,
    unlisted_resources: Option<Entry>,
    unlisted_prompts: Option<Entry>,
    skills: HashMap<String, Entry>,
    unlisted_skills: Option<Entry>,
    scopes_supported: Vec<String>,
    max_token_lifetime: Option<std::time::Duration>,
    /// The time of every decision.
    clock: Arc<dyn Clock>,
}

/// The source of [`Inner::id`].
static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(0);

/// A rule and its compiled form.
#[derive(Debug, Clone)]
struct Entry {
    rule: Rule,
    requirement: Requirement,
    /// The rule's conditions over the policy's defaults; `None` when nothing is required.
    conditions: Option<Conditions>,
}

impl Entry {
    fn new(rule: Rule, scopes: &ScopeTable, defaults: &Conditions) -> Entry {
        let conditions = rule.conditions.over(defaults);
        Entry {
            requirement: Requirement::new(&rule.requirement, scopes),
            conditions: (!conditions.is_empty()).then_some(conditions),
            rule,
        }
    }

    /// The denial when the rule admits only some clients and `client` is not one.
    fn client_denial(&self, client: Option<&str>, operation: Operation<'_>) -> Option<Decision> {
        let clients = self.rule.clients.as_ref()?;
        if client.is_some_and(|c| clients.iter().any(|a| a == c)) {
            return None;
        }
        Some(Decision::Deny(Denial::new(
            operation.to_string(),
            DenyReason::ClientNotPermitted {
                client: client.map(str::to_owned),
            },
        )))
    }
}

/// The decision for an operation no rule governs: basic access is allowed, anything
/// else denied.
fn unruled(operation: Operation<'_>) -> Decision {
    match operation {
        Operation::Basic => Decision::Allow,
        _ => Decision::Deny(Denial::new(operation.to_string(), DenyReason::NoRule)),
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tools: Vec<_> = self.inner.tools.iter().map(|(n, e)| (n, &e.rule)).collect();
        tools.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_struct("Policy")
            .field("tools", &tools)
            .field("prompts", &self.inner.prompts.len())
            .field(
                "resources",
                &(self.inner.resources.len() + self.inner.resource_templates.len()),
            )
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Starts an empty policy (which denies everything but basic access).
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Decides `operation` for `principal`, at the time of the policy's clock
    /// ([`PolicyBuilder::clock`]; the system clock by default): the client restriction,
    /// the delegation chain, the token's lifetime, the scopes, then the token's age.
    ///
    /// This is the one way to ask the policy: [`Authz`](crate::Authz), the HTTP layer and
    /// the [`Authorized`](crate::server::Authorized) wrapper all decide through it.
    pub fn decide(&self, principal: &Principal, operation: Operation<'_>) -> Decision {
        self.decide_at(principal, operation, self.now())
    }

    /// The time of the policy's clock, in seconds since the epoch.
    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_unix()
    }

    /// [`Policy::decide`] at `now` (seconds since the epoch).
    pub(crate) fn decide_at(
        &self,
        principal: &Principal,
        operation: Operation<'_>,
        now: i64,
    ) -> Decision {
        let Some(entry) = self.entry_for(operation) else {
            return unruled(operation);
        };
        if let Some(denied) = entry.client_denial(principal.client_id(), operation) {
            return denied;
        }
        let deny = |reason| Decision::Deny(Denial::new(operation.to_string(), reason));
        // The chain first: no token the caller could get would help.
        let freshness = match entry
            .conditions
            .as_ref()
            .and_then(|c| c.check(principal, now))
        {
            Some(reason @ (DenyReason::TokenTooOld { .. } | DenyReason::IssuedInFuture { .. })) => {
                Some(reason)
            }
            Some(reason) => return deny(reason),
            None => None,
        };
        if let Some(max) = self.inner.max_token_lifetime {
            // Counted from now when `iat` is later (beyond the verifier's leeway): a token
            // dated in the future is usable from now on, so its `iat` cannot shorten its
            // lifetime.
            let lifetime = principal.issued_at().map(|iat| {
                let from = iat.min(now.saturating_add(principal.clock_leeway_secs()));
                principal.expires_at().saturating_sub(from)
            });
            let max_secs = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            if lifetime.is_none_or(|l| l > max_secs) {
                return deny(DenyReason::LifetimeTooLong {
                    lifetime_secs: lifetime,
                    max_secs: max.as_secs(),
                });
            }
        }
        // Missing scopes before age: a step-up token is new, so it fixes both.
        let held = self.held_by(principal);
        if !entry.requirement.is_met(held.words()) {
            return self.insufficient(entry, held.words(), operation);
        }
        match freshness {
            Some(reason) => deny(reason),
            None => Decision::Allow,
        }
    }

    /// What `principal`'s scopes amount to under this policy: kept in the principal for
    /// the first few policies that ask, computed afresh for any further one.
    fn held_by<'p>(&self, principal: &'p Principal) -> Held<'p> {
        let id = self.inner.id;
        for slot in principal.grant_slots() {
            let cached =
                slot.get_or_init(|| self.inner.scopes.cached_grants(principal.scopes(), id));
            if cached.policy == id {
                return Held::Cached(cached);
            }
        }
        Held::Computed(self.inner.scopes.grants(principal.scopes()))
    }

    /// The scopes `principal` holds under this policy: the token's, and those the
    /// hierarchy or a wildcard grants among the scopes the policy names; sorted. Kept
    /// beside the principal's grant set once made, so a token's calls make them once.
    #[cfg_attr(not(feature = "cedar"), allow(dead_code))]
    pub(crate) fn held_scopes<'p>(&self, principal: &'p Principal) -> Cow<'p, [String]> {
        let named = |words: &[u64]| -> Vec<String> {
            let mut scopes: Vec<String> = self
                .inner
                .scopes
                .names()
                .iter()
                .enumerate()
                .filter(|(i, _)| u32::try_from(*i).is_ok_and(|i| holds(words, i)))
                .map(|(_, name)| name.to_string())
                .chain(principal.scopes().iter().cloned())
                .collect();
            scopes.sort_unstable();
            scopes.dedup();
            scopes
        };
        match self.held_by(principal) {
            Held::Cached(cached) => {
                Cow::Borrowed(cached.names.get_or_init(|| named(&cached.words).into()))
            }
            Held::Computed(set) => Cow::Owned(named(set.words())),
        }
    }

    /// The denial for a caller holding `held` that does not meet `entry`'s requirement:
    /// every scope of the cheapest way to meet it, and those of them not held.
    fn insufficient(&self, entry: &Entry, held: &[u64], operation: Operation<'_>) -> Decision {
        let scopes = &self.inner.scopes;
        let has = |s: &str| scopes.index(s).is_some_and(|i| holds(held, i));
        let required = entry.rule.requirement.scopes_to_request(&has);
        let missing = required.iter().filter(|s| !has(s)).cloned().collect();
        Decision::Deny(Denial::new(
            operation.to_string(),
            DenyReason::InsufficientScope { required, missing },
        ))
    }

    /// The rule that governs `operation`, if any (`Basic` has none).
    pub fn rule_for(&self, operation: Operation<'_>) -> Option<&Rule> {
        self.entry_for(operation).map(|e| &e.rule)
    }

    fn entry_for(&self, operation: Operation<'_>) -> Option<&Entry> {
        let i = &self.inner;
        match operation {
            Operation::CallTool(name) => i.tools.get(name).or(i.unlisted_tools.as_ref()),
            Operation::GetPrompt(name) => i.prompts.get(name).or(i.unlisted_prompts.as_ref()),
            Operation::GetSkill(name) => i.skills.get(name).or(i.unlisted_skills.as_ref()),
            Operation::Custom(method) => i.custom.get(method),
            Operation::ReadResource(uri) => i
                .resources
                .get(uri)
                .or_else(|| {
                    i.resource_templates
                        .iter()
                        .find(|(_, t, _)| t.matches(uri))
                        .map(|(_, _, r)| r)
                })
                .or(i.unlisted_resources.as_ref()),
            Operation::Basic => None,
        }
    }

    /// Decides a resource template (as listed by `resources/templates/list`): allowed when
    /// a rule was declared for exactly this template, or for unlisted resources, and the
    /// caller meets it.
    pub(crate) fn decide_template(&self, principal: &Principal, template: &str) -> Decision {
        let declared =
            self.inner.resources.contains_key(template) || self.inner.unlisted_resources.is_some();
        if declared {
            self.decide(principal, Operation::ReadResource(template))
        } else {
            Decision::Deny(Denial::new(
                format!("resources/templates {template}"),
                DenyReason::NoRule,
            ))
        }
    }

    /// The tools that have a rule of their own.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.inner.tools.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// Every scope the policy mentions (rules and hierarchy), sorted, without
    /// `offline_access`: the `scopes_supported` of the Protected Resource Metadata.
    pub fn scopes_supported(&self) -> &[String] {
        &self.inner.scopes_supported
    }
}

/// For the crate's unit tests: a decision for a caller holding `granted` with `client`,
/// as a principal whose token never expires.
#[cfg(test)]
impl Policy {
    pub(crate) fn decide_for(
        &self,
        granted: &[String],
        client: Option<&str>,
        operation: Operation<'_>,
    ) -> Decision {
        let mut caller = Principal::builder("https://as.test", i64::MAX).scopes(granted);
        if let Some(client) = client {
            caller = caller.client_id(client);
        }
        self.decide(&caller.build().expect("a test caller"), operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::Tool;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn notes() -> Policy {
        Policy::builder()
            .implies("notes:admin", ["notes:write"])
            .implies("notes:write", ["notes:read"])
            .tool("list_notes", "notes:read")
            .tool("write_note", "notes:write")
            .tool("purge", all_of(["notes:admin", "ops:purge"]))
            .tool(
                "console",
                Rule::new("notes:admin").only_clients(["admin-console"]),
            )
            .resource("notes://{id}", "notes:read")
            .resource("notes://index", ScopeExpr::authenticated())
            .prompt("summarize", any_of(["notes:read", "summaries"]))
            .build()
            .unwrap()
    }

    #[test]
    fn hierarchy_grants_lower_scopes() {
        let p = notes();
        let admin = s(&["notes:admin"]);
        assert!(
            p.decide_for(&admin, None, Operation::CallTool("list_notes"))
                .is_allowed()
        );
        assert!(
            p.decide_for(&admin, None, Operation::CallTool("write_note"))
                .is_allowed()
        );
        let read = s(&["notes:read"]);
        assert!(
            !p.decide_for(&read, None, Operation::CallTool("write_note"))
                .is_allowed()
        );
    }

    #[test]
    fn denial_names_every_scope_the_call_needs() {
        let p = notes();
        let d = p.decide_for(&s(&["notes:admin"]), None, Operation::CallTool("purge"));
        let denial = d.denial().unwrap();
        assert_eq!(
            denial.challenge_scope().as_deref(),
            Some("notes:admin ops:purge")
        );
        assert_eq!(
            denial.reason(),
            &DenyReason::InsufficientScope {
                required: s(&["notes:admin", "ops:purge"]),
                missing: s(&["ops:purge"]),
            }
        );
        assert!(denial.to_string().contains("tools/call purge"));
    }

    #[test]
    fn tools_without_rules_are_denied_by_default() {
        let p = notes();
        let d = p.decide_for(&s(&["notes:admin"]), None, Operation::CallTool("unknown"));
        assert_eq!(d.denial().unwrap().reason(), &DenyReason::NoRule);
        let open = Policy::builder()
            .unlisted_tools(ScopeExpr::authenticated())
            .build()
            .unwrap();
        assert!(
            open.decide_for(&[], None, Operation::CallTool("anything"))
                .is_allowed()
        );
    }

    #[test]
    fn basic_access_needs_no_scope() {
        assert!(notes().decide_for(&[], None, Operation::Basic).is_allowed());
    }

    #[test]
    fn client_restriction_applies_before_scopes() {
        let p = notes();
        let admin = s(&["notes:admin"]);
        assert!(
            p.decide_for(
                &admin,
                Some("admin-console"),
                Operation::CallTool("console")
            )
            .is_allowed()
        );
        let d = p.decide_for(&admin, Some("agent"), Operation::CallTool("console"));
        assert!(matches!(
            d.denial().unwrap().reason(),
            DenyReason::ClientNotPermitted { client: Some(c) } if c == "agent"
        ));
        assert!(
            !p.decide_for(&admin, None, Operation::CallTool("console"))
                .is_allowed()
        );
    }

    #[test]
    fn resources_match_exact_uri_first_then_templates() {
        let p = notes();
        assert!(
            p.decide_for(&[], None, Operation::ReadResource("notes://index"))
                .is_allowed()
        );
        assert!(
            !p.decide_for(&[], None, Operation::ReadResource("notes://42"))
                .is_allowed()
        );
        let read = s(&["notes:read"]);
        assert!(
            p.decide_for(&read, None, Operation::ReadResource("notes://42"))
                .is_allowed()
        );
        assert!(
            !p.decide_for(&read, None, Operation::ReadResource("files://42"))
                .is_allowed()
        );
    }

    #[test]
    fn prompts_accept_any_alternative() {
        let p = notes();
        let summaries = s(&["summaries"]);
        assert!(
            p.decide_for(&summaries, None, Operation::GetPrompt("summarize"))
                .is_allowed()
        );
        assert!(
            !p.decide_for(&[], None, Operation::GetPrompt("other"))
                .is_allowed()
        );
    }

    #[test]
    fn custom_requests_are_denied_without_a_rule() {
        let p = notes();
        assert!(
            !p.decide_for(&s(&["notes:admin"]), None, Operation::Custom("x/y"))
                .is_allowed()
        );
    }

    #[test]
    fn duplicate_and_invalid_rules_are_build_errors() {
        let err = Policy::builder()
            .tool("a", "x")
            .tool("a", "y")
            .build()
            .unwrap_err();
        assert!(matches!(err, PolicyError::DuplicateRule { .. }), "{err}");
        // (A space separates scopes in the text form, as in configuration files; a scope
        // with a space can only be written as the literal variant.)
        let err = Policy::builder()
            .tool("a", Rule::new(ScopeExpr::Scope("bad scope".into())))
            .build()
            .unwrap_err();
        assert!(matches!(err, PolicyError::Expr { .. }), "{err}");
        let err = Policy::builder()
            .resource("notes://{", "x")
            .build()
            .unwrap_err();
        assert!(matches!(err, PolicyError::BadTemplate { .. }), "{err}");
        let err = Policy::builder().implies("a b", ["c"]).build().unwrap_err();
        assert!(matches!(err, PolicyError::Expr { .. }), "{err}");
    }

    #[test]
    fn meta_rules_equal_builder_rules() {
        let plain = |name: &'static str| Tool::new(name, "", serde_json::Map::new());
        let tool = |name: &'static str, expr: &str| {
            plain(name).with_meta(tool_meta(ScopeExpr::parse(expr).unwrap()))
        };
        let from_meta = Policy::builder()
            .tools_from_meta([tool("a", "x y | z"), plain("plain")])
            .build()
            .unwrap();
        let from_builder = Policy::builder()
            .tool("a", any_of([all_of(["x", "y"]), "z".into()]))
            .build()
            .unwrap();
        assert_eq!(
            from_meta.rule_for(Operation::CallTool("a")),
            from_builder.rule_for(Operation::CallTool("a"))
        );
        assert_eq!(from_meta.tool_names().collect::<Vec<_>>(), ["a"]);
        let bad = plain("b").with_meta(MetaObject::from(
            serde_json::json!({ TOOL_META_KEY: 3 })
                .as_object()
                .unwrap()
                .clone(),
        ));
        assert!(matches!(
            Policy::builder()
                .tools_from_meta([bad])
                .build()
                .unwrap_err(),
            PolicyError::BadMeta { .. }
        ));
    }

    #[test]
    fn scopes_supported_lists_every_scope_but_offline_access() {
        let p = Policy::builder()
            .implies("notes:admin", ["notes:write"])
            .tool("a", any_of(["notes:read", "offline_access"]))
            .build()
            .unwrap();
        assert_eq!(
            p.scopes_supported(),
            ["notes:admin", "notes:read", "notes:write"]
        );
    }

    #[test]
    fn a_principal_keeps_its_grants_per_policy_and_every_policy_decides_right() {
        let dev = crate::dev::DevIssuer::new("https://as").unwrap();
        let v = dev.verifier("https://rs").build().unwrap();
        let token = dev
            .token("https://rs")
            .scopes(["notes:admin", "files:*"])
            .mint()
            .unwrap();
        let admin = v.verify_sync(&token).unwrap();
        let first = notes();
        let other = || {
            Policy::builder()
                .implies("notes:admin", ["ops:purge"])
                .tool("purge", all_of(["notes:admin", "ops:purge"]))
                .tool("list_notes", "notes:read")
                .tool("files", "files:read")
                .build()
                .unwrap()
        };
        let second = other();
        let call =
            |p: &Policy, who: &Principal, tool| p.decide_at(who, Operation::CallTool(tool), 0);
        let kept = |who: &Principal| {
            who.grant_slots()
                .iter()
                .filter_map(|s| s.get().map(|c| c.policy))
                .collect::<Vec<_>>()
        };
        // `first` fills a slot; clones share it, and so do clones of the policy.
        assert!(call(&first, &admin, "list_notes").is_allowed());
        assert!(!call(&first.clone(), &admin.clone(), "purge").is_allowed());
        assert_eq!(kept(&admin), [first.inner.id]);
        // `second` is another policy: its own hierarchy applies, from its own slot.
        for _ in 0..2 {
            assert!(call(&second, &admin, "purge").is_allowed());
            assert!(!call(&second, &admin, "list_notes").is_allowed());
            assert!(call(&second, &admin.clone(), "files").is_allowed());
        }
        assert_eq!(kept(&admin), [first.inner.id, second.inner.id]);
        // More policies than slots: the rest compute the grant set per call.
        let more: Vec<Policy> = (0..4).map(|_| other()).collect();
        for tool in [
            "list_notes",
            "write_note",
            "purge",
            "console",
            "files",
            "unknown",
        ] {
            for p in [&first, &second].into_iter().chain(&more) {
                for _ in 0..2 {
                    assert_eq!(
                        call(p, &admin, tool),
                        p.decide_for(admin.scopes(), admin.client_id(), Operation::CallTool(tool)),
                        "{tool}"
                    );
                }
            }
        }
        assert_eq!(kept(&admin).len(), admin.grant_slots().len());
        assert!(!kept(&admin).contains(&more[3].inner.id));
    }

    #[test]
    fn templates_are_decided_by_their_declared_rule() {
        let p = notes();
        let dev = crate::dev::DevIssuer::new("https://as").unwrap();
        let v = dev.verifier("https://rs").build().unwrap();
        let read = v
            .verify_sync(
                &dev.token("https://rs")
                    .scopes(["notes:read"])
                    .mint()
                    .unwrap(),
            )
            .unwrap();
        assert!(p.decide_template(&read, "notes://{id}").is_allowed());
        assert!(!p.decide_template(&read, "files://{id}").is_allowed());
    }
}
