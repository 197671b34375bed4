//! The Cedar stage against a reference evaluator written here from Cedar's semantics, for
//! the subset of the language the tests generate: random policy sets (permits and
//! forbids, scoped to one tool or to all, with `@scopes` on some permits, and conditions
//! over the caller, the tool's annotations and the call's arguments) and random calls.
//!
//! The reference decides as Cedar does (a forbid that applies denies, naming every forbid
//! that applies; else the permits that apply allow, naming them; else deny by default),
//! with this crate's one addition (a permit whose `@scopes` the caller lacks does not
//! apply, and when only such permits apply the denial asks for the scopes of the one
//! missing the fewest). The generated conditions are evaluated here in Rust, from the
//! same syntax tree that is rendered to Cedar text for the stage.

#![cfg(feature = "cedar")]

use proptest::prelude::*;
use rmcp::model::{Tool, ToolAnnotations};
use rmcp_authz::policy::cedar::CedarPolicies;
use rmcp_authz::policy::{DenyReason, Operation};
use rmcp_authz::{Actor, Principal};
use serde_json::json;

/// The tools: `(name, read-only)`; each takes `{folder: string, amount: number}`.
const TOOLS: [(&str, bool); 3] = [("write", false), ("read", true), ("purge", false)];
const USERS: [&str; 2] = ["alice", "bob"];
const SCOPES: [&str; 2] = ["s1", "s2"];

/// A condition of the subset.
#[derive(Debug, Clone)]
enum Cond {
    True,
    Delegated,
    UserIs(&'static str),
    FolderIsUser,
    FolderIs(&'static str),
    /// `amount < n` (hundredths, compared as Cedar decimals).
    AmountBelow(i64),
    ReadOnly,
    HasScope(&'static str),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

/// What a condition is evaluated against.
struct Call<'a> {
    user: &'static str,
    delegated: bool,
    scopes: &'a [&'static str],
    tool: usize,
    folder: &'static str,
    /// Hundredths.
    amount: i64,
}

impl Cond {
    fn cedar(&self) -> String {
        match self {
            Cond::True => "true".into(),
            Cond::Delegated => "principal.delegated".into(),
            Cond::UserIs(u) => format!("(principal has user && principal.user == \"{u}\")"),
            Cond::FolderIsUser => {
                "(principal has user && context.arguments.folder == principal.user)".into()
            }
            Cond::FolderIs(f) => format!("context.arguments.folder == \"{f}\""),
            Cond::AmountBelow(n) => format!(
                "context.arguments.amount.lessThan(decimal(\"{}.{:02}\"))",
                n / 100,
                n % 100
            ),
            Cond::ReadOnly => "resource.readOnlyHint".into(),
            Cond::HasScope(s) => format!("principal.scopes.contains(\"{s}\")"),
            Cond::Not(c) => format!("!({})", c.cedar()),
            Cond::And(a, b) => format!("({} && {})", a.cedar(), b.cedar()),
            Cond::Or(a, b) => format!("({} || {})", a.cedar(), b.cedar()),
        }
    }

    fn holds(&self, call: &Call<'_>) -> bool {
        match self {
            Cond::True => true,
            Cond::Delegated => call.delegated,
            Cond::UserIs(u) => call.user == *u,
            Cond::FolderIsUser => call.folder == call.user,
            Cond::FolderIs(f) => call.folder == *f,
            Cond::AmountBelow(n) => call.amount < *n,
            Cond::ReadOnly => TOOLS[call.tool].1,
            Cond::HasScope(s) => call.scopes.contains(s),
            Cond::Not(c) => !c.holds(call),
            Cond::And(a, b) => a.holds(call) && b.holds(call),
            Cond::Or(a, b) => a.holds(call) || b.holds(call),
        }
    }
}

/// A generated policy.
#[derive(Debug, Clone)]
struct Rule {
    forbid: bool,
    /// The tool it names, or every tool.
    tool: Option<usize>,
    /// `@scopes` (permits only).
    scopes: Vec<&'static str>,
    when: Cond,
}

impl Rule {
    fn cedar(&self, id: usize) -> String {
        let mut text = format!("@id(\"r{id}\")\n");
        if !self.scopes.is_empty() {
            text.push_str(&format!("@scopes(\"{}\")\n", self.scopes.join(" ")));
        }
        let resource = match self.tool {
            Some(t) => format!("resource == Tool::\"{}\"", TOOLS[t].0),
            None => "resource".into(),
        };
        text.push_str(&format!(
            "{}(principal, action == Action::\"tools/call\", {resource})\nwhen {{ {} }};\n",
            if self.forbid { "forbid" } else { "permit" },
            self.when.cedar()
        ));
        text
    }

    fn applies(&self, call: &Call<'_>) -> bool {
        self.tool.is_none_or(|t| t == call.tool) && self.when.holds(call)
    }
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        Just(Cond::True),
        Just(Cond::Delegated),
        prop::sample::select(USERS.to_vec()).prop_map(Cond::UserIs),
        Just(Cond::FolderIsUser),
        prop::sample::select(vec!["alice", "bob", "shared"]).prop_map(Cond::FolderIs),
        (0_i64..20_000).prop_map(Cond::AmountBelow),
        Just(Cond::ReadOnly),
        prop::sample::select(SCOPES.to_vec()).prop_map(Cond::HasScope),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        prop::option::of(0..TOOLS.len()),
        prop::sample::subsequence(SCOPES.to_vec(), 0..=2),
        cond(),
    )
        .prop_map(|(forbid, tool, scopes, when)| Rule {
            forbid,
            tool,
            scopes: if forbid { Vec::new() } else { scopes },
            when,
        })
}

fn tools() -> Vec<Tool> {
    let schema = json!({
        "type": "object",
        "required": ["folder", "amount"],
        "properties": { "folder": { "type": "string" }, "amount": { "type": "number" } },
    });
    TOOLS
        .iter()
        .map(|(name, read_only)| {
            Tool::new(*name, "", schema.as_object().unwrap().clone())
                .annotate(ToolAnnotations::new().read_only(*read_only))
        })
        .collect()
}

/// The reference decision: `Ok(policies that allowed)` or `Err((reason, policies))`.
fn reference(rules: &[Rule], call: &Call<'_>) -> Result<Vec<String>, (DenyReason, Vec<String>)> {
    let ids = |pick: &dyn Fn(&Rule) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| pick(r))
            .map(|(i, _)| format!("r{i}"))
            .collect();
        ids.sort();
        ids
    };
    let forbids = ids(&|r| r.forbid && r.applies(call));
    if !forbids.is_empty() {
        return Err((
            DenyReason::Forbidden {
                policies: forbids.clone(),
            },
            forbids,
        ));
    }
    let held = |r: &Rule| r.scopes.iter().all(|s| call.scopes.contains(s));
    let allowed = ids(&|r| !r.forbid && r.applies(call) && held(r));
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    let locked = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.forbid && r.applies(call))
        .map(|(i, r)| {
            let missing = r.scopes.iter().filter(|s| !call.scopes.contains(s)).count();
            (missing, format!("r{i}"), r)
        })
        .min_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    match locked {
        Some((_, id, r)) => {
            let required: Vec<String> = r.scopes.iter().map(|s| s.to_string()).collect();
            let missing = required
                .iter()
                .filter(|s| !call.scopes.contains(&s.as_str()))
                .cloned()
                .collect();
            Err((
                DenyReason::InsufficientScope { required, missing },
                vec![id],
            ))
        }
        None => Err((DenyReason::NotPermitted, Vec::new())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_stage_decides_as_the_reference(
        rules in prop::collection::vec(rule(), 1..8),
        calls in prop::collection::vec(
            (0..USERS.len(), any::<bool>(), prop::sample::subsequence(SCOPES.to_vec(), 0..=2),
             0..TOOLS.len(), prop::sample::select(vec!["alice", "bob", "shared"]), 0_i64..20_000),
            1..6,
        ),
    ) {
        let text: String = rules.iter().enumerate().map(|(i, r)| r.cedar(i)).collect();
        let cedar = CedarPolicies::parse("generated.cedar", &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .compile(&tools())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        for (user, delegated, scopes, tool, folder, amount) in calls {
            let call = Call { user: USERS[user], delegated, scopes: &scopes, tool, folder, amount };
            let mut who = Principal::builder("https://as", i64::MAX)
                .subject(call.user)
                .client_id("client")
                .scopes(scopes.iter().copied());
            if delegated {
                who = who.actor(Actor::new(Some("agent".into()), None, None).unwrap());
            }
            let who = who.build().unwrap();
            let held: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            let arguments = json!({ "folder": folder, "amount": amount as f64 / 100.0 });
            let operation = Operation::CallTool(TOOLS[tool].0);
            let governed = rules.iter().any(|r| r.tool.is_none_or(|t| t == tool));
            let verdict = cedar.decide(&who, &held, operation, arguments.as_object(), 0);
            prop_assert_eq!(verdict.is_some(), governed, "{}", text);
            let Some(verdict) = verdict else { continue };
            match reference(&rules, &call) {
                Ok(policies) => {
                    prop_assert!(verdict.decision.is_allowed(), "{:?}\n{}", verdict, text);
                    prop_assert_eq!(verdict.policies, policies, "{}", text);
                }
                Err((reason, policies)) => {
                    let denial = verdict.decision.denial();
                    prop_assert!(denial.is_some(), "{:?}\n{}", verdict, text);
                    prop_assert_eq!(denial.unwrap().reason(), &reason, "{}", text);
                    prop_assert_eq!(verdict.policies, policies, "{}", text);
                }
            }
        }
    }
}
