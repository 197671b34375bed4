//! `Policy::decide` against a reference implementation written here, independently of the
//! crate: random policies (scope hierarchies with cycles, wildcards, nested `all of` /
//! `any of` rules, client restrictions) and random callers must get the same answer from
//! both, and a denial for missing scopes must name scopes that, once granted, make the
//! call allowed (the step-up promise). A second property adds what a decision reads
//! beyond scopes: delegation conditions over the policy's defaults, the token lifetime
//! cap and the token and authentication ages, at the policy's clock, for callers with
//! delegation chains and token times around every boundary.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use rmcp_authz::policy::{
    Conditions, DenyReason, Operation, Policy, PolicyBuilder, Rule, ScopeExpr, all_of, any_of,
};
use rmcp_authz::{Actor, ManualClock, Principal};

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

// ---------------------------------------------------------------------------------------
// Conditions, freshness and the lifetime cap, against the reference.
// ---------------------------------------------------------------------------------------

/// The policy's clock in the timed cases.
const NOW: i64 = 1_900_000_000;
const ISSUER: &str = "https://as.test";
const OTHER_ISSUER: &str = "https://other.test";
/// Actors name themselves by `sub` or by `client_id`; agents and clients share names so
/// an agent list can admit a plain client.
const AGENTS: [&str; 4] = ["ag1", "ag2", "ag3", "c1"];

/// A rule's conditions as the reference sees them: every setting optional, a rule's own
/// setting taken over the policy's default.
#[derive(Debug, Clone, Default)]
struct RefConditions {
    user_only: Option<bool>,
    agents: Option<Vec<String>>,
    max_depth: Option<usize>,
    actor_issuers: Option<Vec<String>>,
    forbidden: Option<Vec<String>>,
    max_token_age: Option<i64>,
    max_auth_age: Option<i64>,
}

impl RefConditions {
    fn over(&self, defaults: &RefConditions) -> RefConditions {
        RefConditions {
            user_only: self.user_only.or(defaults.user_only),
            agents: self.agents.clone().or_else(|| defaults.agents.clone()),
            max_depth: self.max_depth.or(defaults.max_depth),
            actor_issuers: self
                .actor_issuers
                .clone()
                .or_else(|| defaults.actor_issuers.clone()),
            forbidden: self
                .forbidden
                .clone()
                .or_else(|| defaults.forbidden.clone()),
            max_token_age: self.max_token_age.or(defaults.max_token_age),
            max_auth_age: self.max_auth_age.or(defaults.max_auth_age),
        }
    }

    fn to_conditions(&self) -> Conditions {
        let mut c = Conditions::new();
        match self.user_only {
            Some(true) => c = c.user_only(),
            Some(false) => c = c.allow_delegation(),
            None => {}
        }
        if let Some(agents) = &self.agents {
            c = c.only_agents(agents.clone());
        }
        if let Some(depth) = self.max_depth {
            c = c.max_chain_depth(depth);
        }
        if let Some(issuers) = &self.actor_issuers {
            c = c.actor_issuers(issuers.clone());
        }
        if let Some(forbidden) = &self.forbidden {
            c = c.forbid_actors(forbidden.clone());
        }
        if let Some(age) = self.max_token_age {
            c = c.max_token_age(Duration::from_secs(age.unsigned_abs()));
        }
        if let Some(age) = self.max_auth_age {
            c = c.max_auth_age(Duration::from_secs(age.unsigned_abs()));
        }
        c
    }
}

/// One actor of a delegation chain.
#[derive(Debug, Clone)]
struct RefActor {
    name: String,
    /// Named by `sub` (else by `client_id`).
    by_subject: bool,
    issuer: Option<String>,
}

/// A caller with a delegation chain and token times.
#[derive(Debug, Clone)]
struct RefCaller {
    granted: Vec<String>,
    client: Option<String>,
    actors: Vec<RefActor>,
    iat: Option<i64>,
    exp: i64,
    auth_time: Option<i64>,
    leeway: i64,
}

impl RefCaller {
    fn principal(&self) -> Principal {
        let mut b = Principal::builder(ISSUER, self.exp)
            .subject("alice")
            .scopes(&self.granted)
            .clock_leeway(Duration::from_secs(self.leeway.unsigned_abs()));
        if let Some(client) = &self.client {
            b = b.client_id(client.clone());
        }
        for actor in &self.actors {
            let (sub, client) = if actor.by_subject {
                (Some(actor.name.clone()), None)
            } else {
                (None, Some(actor.name.clone()))
            };
            b = b.actor(Actor::new(sub, actor.issuer.clone(), client).expect("a named actor"));
        }
        if let Some(iat) = self.iat {
            b = b.issued_at(iat);
        }
        if let Some(auth_time) = self.auth_time {
            let mut claims = serde_json::Map::new();
            claims.insert("auth_time".into(), auth_time.into());
            b = b.claims(claims);
        }
        b.build().expect("a valid caller")
    }

    /// The agent: the current actor, else the client.
    fn agent(&self) -> Option<&str> {
        match self.actors.first() {
            Some(actor) => Some(&actor.name),
            None => self.client.as_deref(),
        }
    }
}

/// A timed case: rules with conditions, defaults, a lifetime cap, a caller.
#[derive(Debug, Clone)]
struct TimedCase {
    edges: Vec<(String, String)>,
    rules: Vec<Option<(RefRule, RefConditions)>>,
    defaults: RefConditions,
    max_lifetime: Option<i64>,
    caller: RefCaller,
}

impl TimedCase {
    fn policy(&self) -> Policy {
        let mut b = Policy::builder()
            .clock(ManualClock::new(NOW))
            .default_conditions(self.defaults.to_conditions());
        if let Some(max) = self.max_lifetime {
            b = b.max_token_lifetime(Duration::from_secs(max.unsigned_abs()));
        }
        for (from, to) in &self.edges {
            b = b.implies(from.clone(), [to.clone()]);
        }
        for (name, rule) in TOOLS.iter().zip(&self.rules) {
            if let Some((rule, conditions)) = rule {
                b = b.tool(*name, rule.to_rule().with(conditions.to_conditions()));
            }
        }
        b.build().expect("generated policies are valid")
    }
}

/// The age check of one claim: `None` when it passes.
fn reference_age(claim: &str, at: Option<i64>, max: Option<i64>, leeway: i64) -> Option<String> {
    let max = max?;
    match at {
        Some(t) if t > NOW + leeway => Some(format!("token_issued_in_future ({claim})")),
        Some(t) if NOW - t <= max => None,
        _ => Some(format!("token_too_old ({claim})")),
    }
}

/// The reference decision, as the denial's code (`allow` when allowed): the client
/// restriction, the chain, the lifetime, the scopes, then the ages.
fn reference_timed(case: &TimedCase, tool: usize) -> String {
    let Some((rule, own)) = &case.rules[tool] else {
        return "no_rule".into();
    };
    let caller = &case.caller;
    if let Some(clients) = &rule.clients
        && !caller
            .client
            .as_deref()
            .is_some_and(|c| clients.iter().any(|a| a == c))
    {
        return "client_not_permitted".into();
    }
    let c = own.over(&case.defaults);
    let chain = &caller.actors;
    if c.user_only == Some(true) && !chain.is_empty() {
        return "delegation_not_allowed".into();
    }
    if c.max_depth.is_some_and(|max| chain.len() > max) {
        return "chain_too_deep".into();
    }
    if let Some(forbidden) = &c.forbidden
        && chain.iter().any(|a| forbidden.contains(&a.name))
    {
        return "forbidden_actor".into();
    }
    if let Some(issuers) = &c.actor_issuers
        && chain.iter().any(|a| {
            !issuers
                .iter()
                .any(|i| i == a.issuer.as_deref().unwrap_or(ISSUER))
        })
    {
        return "actor_issuer_not_allowed".into();
    }
    if let Some(agents) = &c.agents
        && !caller
            .agent()
            .is_some_and(|a| agents.iter().any(|x| x == a))
    {
        return "agent_not_allowed".into();
    }
    if let Some(max) = case.max_lifetime {
        let lifetime = caller
            .iat
            .map(|iat| caller.exp - iat.min(NOW + caller.leeway));
        if lifetime.is_none_or(|l| l > max) {
            return "token_lifetime_too_long".into();
        }
    }
    let held = reference_closure(&caller.granted, &case.edges);
    if !rule.req.holds(&held) {
        return "insufficient_scope".into();
    }
    let age = reference_age("iat", caller.iat, c.max_token_age, caller.leeway)
        .or_else(|| reference_age("auth_time", caller.auth_time, c.max_auth_age, caller.leeway));
    age.map_or_else(
        || "allow".into(),
        |reason| reason.split(' ').next().unwrap_or("").into(),
    )
}

fn ref_conditions() -> impl Strategy<Value = RefConditions> {
    let names = || {
        proptest::option::weighted(
            0.2,
            proptest::sample::subsequence(&AGENTS[..], 0..=2)
                .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>()),
        )
    };
    let ages = || proptest::option::weighted(0.25, prop_oneof![Just(0_i64), Just(60), Just(600)]);
    (
        proptest::option::weighted(0.2, any::<bool>()),
        names(),
        proptest::option::weighted(0.2, 0_usize..3),
        proptest::option::weighted(
            0.2,
            prop_oneof![
                Just(vec![ISSUER.to_owned()]),
                Just(vec![OTHER_ISSUER.to_owned()]),
            ],
        ),
        names(),
        ages(),
        ages(),
    )
        .prop_map(
            |(
                user_only,
                agents,
                max_depth,
                actor_issuers,
                forbidden,
                max_token_age,
                max_auth_age,
            )| {
                RefConditions {
                    user_only,
                    agents,
                    max_depth,
                    actor_issuers,
                    forbidden,
                    max_token_age,
                    max_auth_age,
                }
            },
        )
}

fn ref_caller() -> impl Strategy<Value = RefCaller> {
    let actor = (
        proptest::sample::select(&AGENTS[..]).prop_map(str::to_owned),
        any::<bool>(),
        proptest::option::weighted(
            0.5,
            prop_oneof![Just(ISSUER.to_owned()), Just(OTHER_ISSUER.to_owned())],
        ),
    )
        .prop_map(|(name, by_subject, issuer)| RefActor {
            name,
            by_subject,
            issuer,
        });
    // Times around the edges: the leeway, the ages, the lifetime cap.
    let offset = prop_oneof![
        Just(-100_000_i64),
        Just(-700),
        Just(-601),
        Just(-600),
        Just(-61),
        Just(-60),
        Just(-1),
        Just(0),
        Just(1),
        Just(30),
        Just(31),
        Just(60),
        Just(61),
        Just(5_000),
    ];
    (
        proptest::collection::vec(
            prop_oneof![6 => scope_name(), 1 => Just("admin".to_owned())],
            0..5,
        ),
        proptest::option::weighted(
            0.7,
            prop_oneof![
                3 => proptest::sample::select(&CLIENTS[..]).prop_map(str::to_owned),
                1 => Just("ag2".to_owned()),
            ],
        ),
        proptest::collection::vec(actor, 0..4),
        proptest::option::weighted(0.85, offset.clone()),
        prop_oneof![Just(60_i64), Just(600), Just(3_600), Just(86_400)],
        proptest::option::weighted(0.5, offset),
        prop_oneof![Just(0_i64), Just(30), Just(60)],
    )
        .prop_map(|(granted, client, actors, iat, life, auth_time, leeway)| {
            let iat = iat.map(|o| NOW + o);
            RefCaller {
                granted,
                client,
                actors,
                iat,
                exp: iat.unwrap_or(NOW) + life,
                auth_time: auth_time.map(|o| NOW + o),
                leeway,
            }
        })
}

fn timed_case() -> impl Strategy<Value = TimedCase> {
    let edge = (
        prop_oneof![3 => scope_name(), 1 => Just("admin".to_owned())],
        scope_name(),
    );
    (
        proptest::collection::vec(edge, 0..6),
        proptest::collection::vec(
            proptest::option::weighted(0.85, (rule(), ref_conditions())),
            TOOLS.len(),
        ),
        ref_conditions(),
        proptest::option::weighted(0.3, prop_oneof![Just(600_i64), Just(3_600)]),
        ref_caller(),
    )
        .prop_map(|(edges, rules, defaults, max_lifetime, caller)| TimedCase {
            edges,
            rules,
            defaults,
            max_lifetime,
            caller,
        })
}

fn check_timed(case: &TimedCase) -> Result<(), TestCaseError> {
    let policy = case.policy();
    let principal = case.caller.principal();
    for (i, name) in TOOLS.iter().enumerate() {
        let expected = reference_timed(case, i);
        let decision = policy.decide(&principal, Operation::CallTool(name));
        let got = decision.denial().map_or("allow", |d| d.code());
        prop_assert_eq!(
            got,
            expected.as_str(),
            "tools/call {}: {:?}",
            name,
            decision
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The whole decision (client, chain conditions over defaults, lifetime cap, scopes,
    /// ages) at the policy's clock, for callers with delegation chains and token times
    /// around every boundary.
    #[test]
    fn decide_agrees_with_the_reference_on_conditions_and_time(case in timed_case()) {
        check_timed(&case)?;
    }
}

/// The timed generator reaches every answer the reference can give.
#[test]
fn timed_cases_reach_every_answer() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..4000 {
        let case = timed_case()
            .new_tree(&mut runner)
            .expect("a case")
            .current();
        for i in 0..TOOLS.len() {
            seen.insert(reference_timed(&case, i));
        }
    }
    let all = [
        "allow",
        "no_rule",
        "client_not_permitted",
        "delegation_not_allowed",
        "chain_too_deep",
        "forbidden_actor",
        "actor_issuer_not_allowed",
        "agent_not_allowed",
        "token_lifetime_too_long",
        "insufficient_scope",
        "token_too_old",
        "token_issued_in_future",
    ];
    let missing: Vec<&str> = all.into_iter().filter(|a| !seen.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "answers never reached: {missing:?} (seen {seen:?})"
    );
}

/// Fixed examples of the timed reference, each checked against the crate too.
#[test]
fn timed_reference_examples() {
    let caller = |iat: Option<i64>, exp: i64, leeway: i64| RefCaller {
        granted: vec!["a:x".into()],
        client: Some("c1".into()),
        actors: Vec::new(),
        iat,
        exp,
        auth_time: None,
        leeway,
    };
    let rule = RefRule {
        req: Req::Scope("a:x".into()),
        clients: None,
    };
    let fresh = RefConditions {
        max_token_age: Some(60),
        ..RefConditions::default()
    };
    let case = |caller: RefCaller, max_lifetime: Option<i64>| TimedCase {
        edges: Vec::new(),
        rules: vec![Some((rule.clone(), fresh.clone())), None, None, None, None],
        defaults: RefConditions::default(),
        max_lifetime,
        caller,
    };
    for (case, expected) in [
        (case(caller(Some(NOW - 60), NOW + 600, 30), None), "allow"),
        (
            case(caller(Some(NOW - 61), NOW + 600, 30), None),
            "token_too_old",
        ),
        (case(caller(None, NOW + 600, 30), None), "token_too_old"),
        (case(caller(Some(NOW + 30), NOW + 600, 30), None), "allow"),
        (
            case(caller(Some(NOW + 31), NOW + 600, 30), None),
            "token_issued_in_future",
        ),
        (
            case(caller(Some(NOW + 1), NOW + 600, 0), None),
            "token_issued_in_future",
        ),
        // A lifetime counted from now when `iat` is beyond the leeway.
        (case(caller(Some(NOW), NOW + 600, 30), Some(600)), "allow"),
        (
            case(caller(Some(NOW), NOW + 601, 30), Some(600)),
            "token_lifetime_too_long",
        ),
        (
            case(caller(Some(NOW + 5_000), NOW + 5_500, 30), Some(600)),
            "token_lifetime_too_long",
        ),
        (
            case(caller(None, NOW + 10, 30), Some(600)),
            "token_lifetime_too_long",
        ),
    ] {
        assert_eq!(reference_timed(&case, 0), expected, "{:?}", case.caller);
        let decision = case
            .policy()
            .decide(&case.caller.principal(), Operation::CallTool(TOOLS[0]));
        assert_eq!(
            decision.denial().map_or("allow", |d| d.code()),
            expected,
            "{decision:?}"
        );
    }
}
