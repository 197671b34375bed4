//! `Policy::decide_for` against a reference implementation written here, independently
//! of the crate: random policies (scope hierarchies with cycles, wildcards, nested
//! `all of` / `any of` rules, client restrictions) and random callers must get the same
//! answer from both, and a denial for missing scopes must name scopes that, once granted,
//! make the call allowed (the step-up promise).

use std::collections::BTreeSet;

use proptest::prelude::*;
use rmcp_authz::Principal;
use rmcp_authz::policy::{
    DenyReason, Operation, Policy, PolicyBuilder, Rule, ScopeExpr, all_of, any_of,
};

/// The crate's decision for a caller holding `granted` with `client`, whose token never
/// expires (so only the scopes and the client decide).
fn decide_for(
    policy: &Policy,
    granted: &[String],
    client: Option<&str>,
    op: Operation<'_>,
) -> rmcp_authz::policy::Decision {
    let mut caller = Principal::builder("https://as.test", i64::MAX).scopes(granted);
    if let Some(client) = client {
        caller = caller.client_id(client);
    }
    policy.decide(&caller.build().expect("a valid caller"), op)
}

/// Ordinary scopes.
const BASE: [&str; 6] = ["a:x", "a:y", "b:x", "b:y", "c:x", "top"];
/// Scopes with a star: `a:*` and `b:*` are wildcards; `*` and `a*` are plain scopes.
const STARRED: [&str; 4] = ["a:*", "b:*", "*", "a*"];
const CLIENTS: [&str; 3] = ["c1", "c2", "c3"];
/// Rules are declared for some of these; the others have none.
const TOOLS: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];

/// A scope requirement, as the reference sees it.
#[derive(Debug, Clone)]
enum Req {
    Scope(String),
    All(Vec<Req>),
    Any(Vec<Req>),
}

impl Req {
    fn to_expr(&self) -> ScopeExpr {
        match self {
            Req::Scope(s) => ScopeExpr::from(s.as_str()),
            Req::All(parts) => all_of(parts.iter().map(Req::to_expr)),
            Req::Any(parts) => any_of(parts.iter().map(Req::to_expr)),
        }
    }

    fn holds(&self, held: &BTreeSet<String>) -> bool {
        self.holds_with(held, true)
    }

    fn holds_with(&self, held: &BTreeSet<String>, wildcards: bool) -> bool {
        match self {
            Req::Scope(s) if wildcards => reference_has(held, s),
            Req::Scope(s) => held.contains(s),
            Req::All(parts) => parts.iter().all(|p| p.holds_with(held, wildcards)),
            Req::Any(parts) => parts.iter().any(|p| p.holds_with(held, wildcards)),
        }
    }

    fn mentions(&self, out: &mut BTreeSet<String>) {
        match self {
            Req::Scope(s) => {
                out.insert(s.clone());
            }
            Req::All(parts) | Req::Any(parts) => parts.iter().for_each(|p| p.mentions(out)),
        }
    }
}

#[derive(Debug, Clone)]
struct RefRule {
    req: Req,
    clients: Option<Vec<String>>,
}

impl RefRule {
    fn to_rule(&self) -> Rule {
        let rule = Rule::new(self.req.to_expr());
        match &self.clients {
            Some(clients) => rule.only_clients(clients.clone()),
            None => rule,
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    edges: Vec<(String, String)>,
    /// Rules for `TOOLS[i]` where `Some`.
    tools: Vec<Option<RefRule>>,
    unlisted: Option<RefRule>,
    granted: Vec<String>,
    client: Option<String>,
}

impl Case {
    fn policy(&self) -> Policy {
        let mut b: PolicyBuilder = Policy::builder();
        for (from, to) in &self.edges {
            b = b.implies(from.clone(), [to.clone()]);
        }
        for (name, rule) in TOOLS.iter().zip(&self.tools) {
            if let Some(rule) = rule {
                b = b
                    .tool(*name, rule.to_rule())
                    .prompt(*name, rule.to_rule())
                    .custom_request(*name, rule.to_rule());
            }
        }
        if let Some(rule) = &self.unlisted {
            b = b
                .unlisted_tools(rule.to_rule())
                .unlisted_prompts(rule.to_rule());
        }
        b.build().expect("generated policies are valid")
    }

    fn rule(&self, tool: usize, unlisted_applies: bool) -> Option<&RefRule> {
        match &self.tools[tool] {
            Some(rule) => Some(rule),
            None if unlisted_applies => self.unlisted.as_ref(),
            None => None,
        }
    }
}

/// What the reference expects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Allow,
    NoRule,
    Client,
    Scope,
}

/// Everything `granted` amounts to: a naive fixed point over the edges, where an edge
/// fires when its source is held literally or under a held wildcard (a wildcard holds
/// every scope it covers, and so what those imply).
fn reference_closure(granted: &[String], edges: &[(String, String)]) -> BTreeSet<String> {
    let mut held: BTreeSet<String> = granted.iter().cloned().collect();
    loop {
        let before = held.len();
        for (from, to) in edges {
            if reference_has(&held, from) {
                held.insert(to.clone());
            }
        }
        if held.len() == before {
            return held;
        }
    }
}

/// Whether `scope` is held: literally, or under a held `prefix:*` wildcard (a bare `*`,
/// or a star not after a colon, is just a scope name).
fn reference_has(held: &BTreeSet<String>, scope: &str) -> bool {
    held.contains(scope)
        || held.iter().any(|g| {
            g.strip_suffix(":*")
                .is_some_and(|p| scope.starts_with(&format!("{p}:")))
        })
}

fn reference(rule: Option<&RefRule>, held: &BTreeSet<String>, client: Option<&str>) -> Expected {
    let Some(rule) = rule else {
        return Expected::NoRule;
    };
    if let Some(clients) = &rule.clients
        && !client.is_some_and(|c| clients.iter().any(|a| a == c))
    {
        return Expected::Client;
    }
    if rule.req.holds(held) {
        Expected::Allow
    } else {
        Expected::Scope
    }
}

fn scope_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&BASE[..]),
        1 => proptest::sample::select(&STARRED[..]),
    ]
    .prop_map(str::to_owned)
}

fn requirement() -> impl Strategy<Value = Req> {
    let leaf = prop_oneof![
        8 => scope_name().prop_map(Req::Scope),
        1 => Just(Req::All(Vec::new())),
    ];
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Req::All),
            proptest::collection::vec(inner, 1..4).prop_map(Req::Any),
        ]
    })
}

fn rule() -> impl Strategy<Value = RefRule> {
    let clients = proptest::option::weighted(
        0.25,
        proptest::sample::subsequence(&CLIENTS[..], 0..=2)
            .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>()),
    );
    let req = prop_oneof![
        1 => Just(Req::All(Vec::new())),
        6 => requirement(),
    ];
    (req, clients).prop_map(|(req, clients)| RefRule { req, clients })
}

fn case() -> impl Strategy<Value = Case> {
    let edge = (
        prop_oneof![3 => scope_name(), 1 => Just("admin".to_owned())],
        scope_name(),
    );
    (
        proptest::collection::vec(edge, 0..8),
        proptest::collection::vec(proptest::option::weighted(0.8, rule()), TOOLS.len() - 1),
        proptest::option::weighted(0.2, rule()),
        proptest::collection::vec(
            prop_oneof![6 => scope_name(), 1 => Just("admin".to_owned())],
            0..5,
        ),
        proptest::option::weighted(
            0.7,
            prop_oneof![
                3 => proptest::sample::select(&CLIENTS[..]).prop_map(str::to_owned),
                1 => Just("other".to_owned()),
            ],
        ),
    )
        .prop_map(|(edges, mut tools, unlisted, granted, client)| {
            // The last tool never has a rule of its own.
            tools.push(None);
            Case {
                edges,
                tools,
                unlisted,
                granted,
                client,
            }
        })
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let policy = case.policy();
    let held = reference_closure(&case.granted, &case.edges);
    let client = case.client.as_deref();
    for (i, name) in TOOLS.iter().enumerate() {
        for (op, unlisted_applies) in [
            (Operation::CallTool(name), true),
            (Operation::GetPrompt(name), true),
            (Operation::Custom(name), false),
        ] {
            let rule = case.rule(i, unlisted_applies);
            let expected = reference(rule, &held, client);
            let decision = decide_for(&policy, &case.granted, client, op);
            let got = match decision.denial().map(|d| d.reason()) {
                None => Expected::Allow,
                Some(DenyReason::NoRule) => Expected::NoRule,
                Some(DenyReason::ClientNotPermitted { .. }) => Expected::Client,
                Some(DenyReason::InsufficientScope { .. }) => Expected::Scope,
                Some(other) => {
                    return Err(TestCaseError::fail(format!(
                        "{op}: unexpected reason {other:?}"
                    )));
                }
            };
            prop_assert_eq!(
                decision.is_allowed(),
                expected == Expected::Allow,
                "{}: held {:?}",
                op,
                held
            );
            prop_assert_eq!(&got, &expected, "{}: held {:?}", op, held);

            let Some(denial) = decision.denial() else {
                continue;
            };
            let DenyReason::InsufficientScope { required, missing } = denial.reason() else {
                prop_assert!(denial.challenge_scope().is_none());
                continue;
            };
            let rule = rule.expect("a scope denial has a rule");
            // `missing` is exactly the required scopes the caller does not hold.
            let not_held: Vec<&String> = required
                .iter()
                .filter(|s| !reference_has(&held, s))
                .collect();
            prop_assert!(!missing.is_empty(), "{}: nothing missing", op);
            prop_assert_eq!(missing.iter().collect::<Vec<_>>(), not_held, "{}", op);
            // Only scopes the rule mentions are asked for.
            let mut mentioned = BTreeSet::new();
            rule.req.mentions(&mut mentioned);
            prop_assert!(
                required.iter().all(|s| mentioned.contains(s)),
                "{}: {:?} asks for scopes outside {:?}",
                op,
                required,
                mentioned
            );
            // The step-up promise: granting the challenge's scopes makes the call allowed.
            let challenge = denial.challenge_scope().expect("a scope challenge");
            let mut stepped_up = case.granted.clone();
            stepped_up.extend(challenge.split(' ').map(str::to_owned));
            let stepped_held = reference_closure(&stepped_up, &case.edges);
            prop_assert_eq!(
                reference(Some(rule), &stepped_held, client),
                Expected::Allow,
                "{}: challenge {:?} does not satisfy the rule",
                op,
                challenge
            );
            prop_assert!(
                decide_for(&policy, &stepped_up, client, op).is_allowed(),
                "{}: the policy still denies after granting {:?}",
                op,
                challenge
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decide_for_agrees_with_the_reference(case in case()) {
        check(&case)?;
    }
}

/// The generators reach every kind of answer, so the property is not vacuous.
#[test]
fn generated_cases_reach_every_answer() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    // Allowed only because a wildcard covers a required scope.
    let mut wildcard_allow = false;
    for _ in 0..2000 {
        let case = case().new_tree(&mut runner).expect("a case").current();
        let held = reference_closure(&case.granted, &case.edges);
        for i in 0..TOOLS.len() {
            let answer = reference(case.rule(i, true), &held, case.client.as_deref());
            if answer == Expected::Allow
                && case
                    .rule(i, true)
                    .is_some_and(|r| !r.req.holds_with(&held, false))
            {
                wildcard_allow = true;
            }
            seen.insert(format!("{answer:?}"));
        }
    }
    assert_eq!(seen.len(), 4, "answers reached: {seen:?}");
    assert!(wildcard_allow, "no case was allowed through a wildcard");
}

/// Fixed examples of the reference itself, so a reference bug that the crate shares
/// cannot hide.
#[test]
fn reference_examples() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let edges = vec![
        ("top".to_owned(), "a:x".to_owned()),
        ("a:x".to_owned(), "b:y".to_owned()),
        ("b:y".to_owned(), "top".to_owned()),
        ("admin".to_owned(), "b:*".to_owned()),
    ];
    let held = reference_closure(&s(&["a:x"]), &edges);
    assert_eq!(held, s(&["a:x", "b:y", "top"]).into_iter().collect());
    let held = reference_closure(&s(&["admin"]), &edges);
    assert!(reference_has(&held, "b:x") && reference_has(&held, "b:zzz"));
    // b:* covers b:y, which implies top, which implies a:x.
    assert!(reference_has(&held, "a:x") && reference_has(&held, "top"));
    assert!(!reference_has(&held, "b"));
    let held = reference_closure(&s(&["a:*"]), &[("c:x".to_owned(), "d:y".to_owned())]);
    assert!(!reference_has(&held, "d:y"), "a:* covers no c: scope");
    let star = reference_closure(&s(&["*", "a*"]), &[]);
    assert!(!reference_has(&star, "a:x") && !reference_has(&star, "top"));
    assert!(reference_has(&star, "*"));

    // And the crate agrees on the same examples.
    let policy = Policy::builder()
        .implies("top", ["a:x"])
        .implies("a:x", ["b:y"])
        .implies("b:y", ["top"])
        .implies("admin", ["b:*"])
        .tool("bx", "b:x")
        .tool("ax", "a:x")
        .tool("top", "top")
        .build()
        .expect("policy");
    let allowed = |granted: &[&str], tool: &str| {
        decide_for(&policy, &s(granted), None, Operation::CallTool(tool)).is_allowed()
    };
    assert!(allowed(&["a:x"], "top"));
    assert!(allowed(&["b:y"], "ax"));
    assert!(allowed(&["admin"], "bx"));
    assert!(
        allowed(&["admin"], "ax"),
        "admin -> b:* covers b:y -> top -> a:x"
    );
    assert!(!allowed(&["b:x"], "ax"));
    assert!(!allowed(&["*"], "ax"));
    assert!(!allowed(&["a*"], "ax"));
}

/// A wildcard holds every scope it covers, so it must also hold what those scopes imply:
/// granting `a:*` cannot amount to less than granting `a:x`, which it covers.
#[test]
fn a_wildcard_grants_what_the_scopes_it_covers_imply() {
    let policy = Policy::builder()
        .implies("notes:admin", ["ops:audit"])
        .tool("audit", "ops:audit")
        .build()
        .expect("policy");
    let allowed = |granted: &str| {
        decide_for(
            &policy,
            &[granted.to_owned()],
            None,
            Operation::CallTool("audit"),
        )
        .is_allowed()
    };
    assert!(allowed("notes:admin"), "notes:admin implies ops:audit");
    assert!(
        allowed("notes:*"),
        "notes:* holds notes:admin, which implies ops:audit, yet the call is denied: \
         granting notes:* amounts to less than granting notes:admin"
    );
}
