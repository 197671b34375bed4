//! Cedar decision cost (feature `cedar`): `Cedar::decide` for a verified `Principal` and
//! a `tools/call` with arguments, against the scope-only decision (`Policy::decide`) of
//! the same call, measured in the same run.
//!
//! The server has 50 tools, each taking `{folder: string, amount: number, tags: [string]}`;
//! the policy set has 100 policies. Two shapes of that set are measured:
//!
//! - `scoped_100`: each policy names its tool in its scope (`resource == Tool::"t7"`), as
//!   policies about arguments must: two per tool (a permit with an argument condition, a
//!   forbid with another), so a call is decided by its tool's two policies and the
//!   generic ones (a baseline forbid for delegated callers on tools that are not
//!   read-only). This is what a real policy file looks like.
//! - `scoped_100_text`: the same, with conditions on the folder (a string) and the tags
//!   instead of the amount: no decimal to construct or compare, Cedar's cheapest case.
//! - `all_100`: all 100 policies apply to the tool called (unscoped, conditions on the
//!   principal and arguments): the worst case, every policy evaluated.
//!
//! For each: `scopes_only` (the scope rule, what every call pays anyway), `cedar_allow`
//! (the Cedar stage alone, allowed) and `cedar_deny` (denied by a forbid), both with the
//! same arguments each call; `cedar_allow_new_amount` with a new `amount` each call (an
//! earlier stage kept the decimal expressions it had made, because Cedar's constructor
//! parses its own name on every call; this case showed what a number not seen before
//! cost), and `arguments_clone`, the cost of making those new arguments, to subtract from
//! it.
//! `ungoverned` is what a tool no Cedar policy applies to pays: the look-up that says so.
//!
//! Run with `cargo bench -p rmcp-authz --features cedar --bench cedar`; the run ends by
//! printing each median and its ratio to `scopes_only`.

mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use common::median;
use criterion::Criterion;
use rmcp::model::{Tool, ToolAnnotations};
use rmcp_authz::Principal;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::cedar::{Cedar, CedarPolicies};
use rmcp_authz::policy::{Operation, Policy};
use serde_json::{Map, Value, json};

const AUDIENCE: &str = "https://mcp.example.com/mcp";
const TOOLS: usize = 50;

fn tools() -> Vec<Tool> {
    let schema = json!({
        "type": "object",
        "required": ["folder", "amount"],
        "properties": {
            "folder": { "type": "string" },
            "amount": { "type": "number" },
            "tags": { "type": "array", "items": { "type": "string" } },
        },
    });
    (0..TOOLS)
        .map(|i| {
            Tool::new(
                format!("t{i}"),
                "",
                schema.as_object().expect("an object").clone(),
            )
            .annotate(ToolAnnotations::new().read_only(i % 2 == 0))
        })
        .collect()
}

/// Two policies per tool: a permit whose condition is `permit_when` (of the tool's
/// number), and a forbid on a tag; each names its tool in its scope when `scoped`, else
/// applies to every tool.
fn policies(scoped: bool, permit_when: fn(usize) -> String) -> String {
    let mut text = String::new();
    for i in 0..TOOLS {
        let resource = if scoped {
            format!("resource == Tool::\"t{i}\"")
        } else {
            "resource".to_owned()
        };
        let call = format!("principal, action == Action::\"tools/call\", {resource}");
        text.push_str(&format!(
            "@id(\"p{i}\") permit({call})\n\
             when {{ {} && principal.scopes.contains(\"notes:write\") }};\n\
             @id(\"f{i}\") forbid({call})\n\
             when {{ context.arguments has tags && context.arguments.tags.contains(\"secret-{i}\") }};\n",
            permit_when(i)
        ));
    }
    text
}

/// A condition on the decimal `amount`.
fn below(i: usize) -> String {
    format!("context.arguments.amount.lessThan(decimal(\"{i}00.0\"))")
}

/// A condition on the string `folder` (no decimal to construct and compare).
fn in_folder(_: usize) -> String {
    "context.arguments.folder == \"alice\"".to_owned()
}

fn principal() -> Principal {
    let issuer = DevIssuer::new("https://auth.example.com").expect("dev issuer");
    let token = issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("research-agent")
        .scopes(["notes:write", "notes:read"])
        .mint()
        .expect("mint");
    issuer
        .verifier(AUDIENCE)
        .build()
        .expect("verifier")
        .verify_sync(&token)
        .expect("verify")
}

fn arguments(tag: &str) -> Map<String, Value> {
    json!({ "folder": "alice", "amount": 42.5, "tags": ["work", tag] })
        .as_object()
        .expect("an object")
        .clone()
}

fn main() {
    let started = SystemTime::now();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let tools = tools();
    let mut policy = Policy::builder();
    for t in &tools {
        policy = policy.tool(t.name.to_string(), "notes:write");
    }
    let policy = policy.build().expect("policy");
    let allowed = arguments("work");
    let denied = arguments("secret-7");
    let now = 1_800_000_000;
    let call = Operation::CallTool("t7");

    let shapes: [(&str, String); 3] = [
        ("scoped_100", policies(true, below)),
        ("scoped_100_text", policies(true, in_folder)),
        ("all_100", policies(false, below)),
    ];
    for (shape, text) in &shapes {
        // A principal per shape: a principal keeps its Cedar entity for the first stage
        // that asks (a server has one), so one principal shared by the three stages here
        // would have the later two rebuild it on every call.
        let who = principal();
        let scopes = who.scopes().to_vec();
        let cedar: Cedar = CedarPolicies::parse(shape, text)
            .expect("parse")
            .compile(&tools)
            .expect("compile");
        let decide = |args: &Map<String, Value>| {
            cedar
                .decide(&who, &scopes, call, Some(args), now)
                .expect("governed")
        };
        assert!(decide(&allowed).decision.is_allowed());
        assert!(!decide(&denied).decision.is_allowed());
        let mut group = criterion.benchmark_group(*shape);
        group.bench_function("scopes_only", |b| {
            b.iter(|| policy.decide(black_box(&who), black_box(call)))
        });
        group.bench_function("cedar_allow", |b| {
            b.iter(|| {
                cedar.decide(
                    black_box(&who),
                    &scopes,
                    call,
                    Some(black_box(&allowed)),
                    now,
                )
            })
        });
        group.bench_function("cedar_deny", |b| {
            b.iter(|| {
                cedar.decide(
                    black_box(&who),
                    &scopes,
                    call,
                    Some(black_box(&denied)),
                    now,
                )
            })
        });
        // A new amount each call: no decimal expression kept from an earlier call.
        let mut amount = 0_u64;
        group.bench_function("cedar_allow_new_amount", |b| {
            b.iter(|| {
                amount += 1;
                let mut args = allowed.clone();
                args.insert("amount".into(), json!(amount as f64 / 100.0 + 0.25));
                cedar.decide(black_box(&who), &scopes, call, Some(&args), now)
            })
        });
        group.bench_function("arguments_clone", |b| {
            b.iter(|| {
                amount += 1;
                let mut args = allowed.clone();
                args.insert("amount".into(), json!(amount as f64 / 100.0 + 0.25));
                black_box(args)
            })
        });
        group.finish();
    }
    let cedar = CedarPolicies::parse(
        "one",
        "permit(principal, action, resource == Tool::\"t1\");",
    )
    .expect("parse")
    .compile(&tools)
    .expect("compile");
    let mut group = criterion.benchmark_group("ungoverned");
    group.bench_function("governs", |b| {
        b.iter(|| cedar.governs(black_box(Operation::CallTool("t7"))))
    });
    group.finish();
    criterion.final_summary();

    println!("\nmedians of this run (ratio to scopes_only of the same shape):");
    for (shape, _) in &shapes {
        let base = median(&format!("{shape}/scopes_only"), started);
        for case in [
            "scopes_only",
            "cedar_allow",
            "cedar_deny",
            "cedar_allow_new_amount",
            "arguments_clone",
        ] {
            match (median(&format!("{shape}/{case}"), started), base) {
                (Some(m), Some(b)) => println!(
                    "{shape:>15}  {case:<23} {:>9.2} µs {:>8.1}x",
                    m / 1000.0,
                    m / b
                ),
                (Some(m), None) => println!("{shape:>15}  {case:<23} {:>9.2} µs", m / 1000.0),
                _ => {}
            }
        }
    }
    if let Some(m) = median("ungoverned/governs", started) {
        println!("{:>15}  {:<23} {m:>9.1} ns", "ungoverned", "governs");
    }
}
