//! Policy decision cost: `Policy::decide` for an already verified `Principal`, against
//! a hand-written check, as the number of tools grows.
//!
//! The policy names 50 scopes (ten resource families, each with `read`, `write`,
//! `share`, `export` and `admin`; `admin` implies `write`, `share` and `export`, `write`
//! implies `read`, and a few families reach into others: `ops:admin` implies `audit:read`,
//! `billing:admin` implies `reports:*`). It has N tools (N = 10, 100, 1,000, 10,000): most
//! need one scope, some all of two, some any of two. The caller holds five scopes, one
//! of them a wildcard (`notes:admin files:read calendar:write mail:read reports:*`),
//! from a token minted by `DevIssuer` and verified with `verify_sync`, one per policy
//! (a principal keeps its grant set under the first policies that decide for it, and a
//! server has one). The first decision, which resolves that grant set, falls in the
//! warm-up. For each N the `policy` group measures:
//!
//! - `baseline`: what a hand-written check costs, and the base of the ratio: a
//!   `HashMap<String, String>::get` of the tool name for its one required scope, then a
//!   `Vec<String>::contains` over the caller's scopes.
//! - `decide_allow`: `Policy::decide` (reading the policy's clock, the system clock) for a
//!   tool the caller may call through the hierarchy (`list_notes` needs `notes:read`).
//! - `decide_deny`: a tool the caller may not call (`purge_billing` needs
//!   `billing:admin` and `ops:admin`); the denial names the scopes to ask for.
//!
//! The `uncached` group measures, for N = 100, a decision for a principal built afresh
//! (`Principal::builder`) on every call, which resolves its grant set every time (a
//! verified `Principal` keeps it for the requests of its token).
//!
//! At the end the run prints each median of this run and its ratio to `baseline`.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p rmcp-authz --bench policy
//! cargo bench -p rmcp-authz --bench policy -- decide_deny   # some cases only
//! ```

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use common::median;
use criterion::{BenchmarkId, Criterion};
use rmcp_authz::Principal;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Operation, Policy, Rule, ScopeExpr, all_of, any_of};

const FAMILIES: [&str; 10] = [
    "notes", "files", "calendar", "mail", "contacts", "tasks", "billing", "reports", "ops", "audit",
];
const VERBS: [&str; 8] = [
    "list", "get", "search", "create", "update", "delete", "export", "share",
];
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const GRANTED: [&str; 5] = [
    "notes:admin",
    "files:read",
    "calendar:write",
    "mail:read",
    "reports:*",
];
const ALLOWED: &str = "list_notes";
const DENIED: &str = "purge_billing";
const AUDIENCE: &str = "https://mcp.example.com/mcp";

/// The scope a filler tool's verb needs most naturally.
fn level(verb: &str) -> &'static str {
    match verb {
        "list" | "get" | "search" => "read",
        "export" => "export",
        "share" => "share",
        _ => "write",
    }
}

/// A policy with `tools` tools, and the hand-written equivalent: tool name to the one
/// scope it needs (the first scope of its requirement).
fn policy(tools: usize) -> (Policy, HashMap<String, String>) {
    let mut builder = Policy::builder();
    for family in FAMILIES {
        let scope = |level: &str| format!("{family}:{level}");
        builder = builder
            .implies(
                scope("admin"),
                [scope("write"), scope("share"), scope("export")],
            )
            .implies(scope("write"), [scope("read")]);
    }
    builder = builder
        .implies("ops:admin", ["audit:read"])
        .implies("billing:admin", ["reports:*"]);
    let mut plain = HashMap::new();
    let mut add = |builder: rmcp_authz::policy::PolicyBuilder, name: String, rule: ScopeExpr| {
        plain.insert(name.clone(), rule.scopes()[0].to_owned());
        builder.tool(name, Rule::new(rule))
    };
    builder = add(builder, ALLOWED.to_owned(), "notes:read".into());
    builder = add(
        builder,
        DENIED.to_owned(),
        all_of(["billing:admin", "ops:admin"]),
    );
    for i in 0..tools.saturating_sub(2) {
        let family = FAMILIES[i % FAMILIES.len()];
        let verb = VERBS[(i / FAMILIES.len()) % VERBS.len()];
        let name = format!("{verb}_{family}_{i:05}");
        let own = format!("{family}:{}", level(verb));
        let rule = match i % 5 {
            // One tool in five needs a second family too, one in five either of two.
            3 => all_of([own, format!("{}:read", FAMILIES[(i + 3) % FAMILIES.len()])]),
            4 => any_of([own, format!("{family}:admin")]),
            _ => own.into(),
        };
        builder = add(builder, name, rule);
    }
    (builder.build().expect("the bench policy is valid"), plain)
}

fn principal() -> Principal {
    let issuer = DevIssuer::new("https://auth.example.com").expect("dev issuer");
    let token = issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("research-agent")
        .scopes(GRANTED)
        .mint()
        .expect("mint");
    issuer
        .verifier(AUDIENCE)
        .build()
        .expect("verifier")
        .verify_sync(&token)
        .expect("verify")
}

fn main() {
    let started = SystemTime::now();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let who = principal();
    let scopes: Vec<String> = who.scopes().to_vec();

    let mut group = criterion.benchmark_group("policy");
    for n in SIZES {
        let (policy, plain) = policy(n);
        // A principal per policy, as a server has one policy: a principal keeps its grant
        // set for the first few policies only.
        let who = principal();
        assert!(
            policy
                .decide(&who, Operation::CallTool(ALLOWED))
                .is_allowed()
        );
        assert!(
            !policy
                .decide(&who, Operation::CallTool(DENIED))
                .is_allowed()
        );
        group.bench_with_input(BenchmarkId::new("baseline", n), &n, |b, _| {
            b.iter(|| {
                let required = plain.get(black_box(ALLOWED));
                black_box(required.is_some_and(|r| scopes.contains(r)))
            });
        });
        group.bench_with_input(BenchmarkId::new("decide_allow", n), &n, |b, _| {
            b.iter(|| policy.decide(black_box(&who), black_box(Operation::CallTool(ALLOWED))));
        });
        group.bench_with_input(BenchmarkId::new("decide_deny", n), &n, |b, _| {
            b.iter(|| policy.decide(black_box(&who), black_box(Operation::CallTool(DENIED))));
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("uncached");
    let (policy, _) = policy(100);
    let expires_at = who.expires_at();
    group.bench_with_input(
        BenchmarkId::new("fresh_principal_allow", 100),
        &100,
        |b, _| {
            b.iter(|| {
                let fresh = Principal::builder("https://auth.example.com", expires_at)
                    .client_id("research-agent")
                    .scopes(black_box(&scopes))
                    .build()
                    .expect("principal");
                policy.decide(&fresh, black_box(Operation::CallTool(ALLOWED)))
            });
        },
    );
    group.finish();
    criterion.final_summary();

    println!("\nmedians of this run (ratio to baseline, same N):");
    println!(
        "{:>8}  {:<17} {:>10} {:>8}",
        "tools", "case", "median", "ratio"
    );
    for n in SIZES {
        let base = median(&format!("policy/baseline/{n}"), started);
        for case in ["baseline", "decide_allow", "decide_deny"] {
            match (median(&format!("policy/{case}/{n}"), started), base) {
                (Some(m), Some(b)) => {
                    println!("{n:>8}  {case:<17} {m:>7.1} ns {:>7.2}x", m / b);
                }
                (Some(m), None) => println!("{n:>8}  {case:<17} {m:>7.1} ns"),
                _ => {}
            }
        }
    }
    if let Some(m) = median("uncached/fresh_principal_allow/100", started) {
        println!("{:>8}  {:<21} {m:>7.1} ns", 100, "fresh_principal_allow");
    }
}
