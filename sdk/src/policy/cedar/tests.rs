use rmcp::model::{Tool, ToolAnnotations};
use serde_json::json;

use super::*;
use crate::policy::{DenyReason, Operation};
use crate::principal::{Actor, Principal};

fn tool(name: &'static str, schema: serde_json::Value, read_only: bool) -> Tool {
    Tool::new(name, "", schema.as_object().unwrap().clone())
        .annotate(ToolAnnotations::new().read_only(read_only))
}

fn tools() -> Vec<Tool> {
    vec![
        tool(
            "write_note",
            json!({ "type": "object", "required": ["folder", "text"], "properties": {
                "folder": { "type": "string" }, "text": { "type": "string" } } }),
            false,
        ),
        tool(
            "list_notes",
            json!({ "type": "object", "properties": {} }),
            true,
        ),
        tool(
            "refund",
            json!({ "type": "object", "required": ["amount"], "properties": {
                "amount": { "type": "number" } } }),
            false,
        ),
    ]
}

const NOTES: &str = r#"
@id("baseline")
permit(principal, action, resource);

@id("own-folder")
forbid(principal, action == Action::"tools/call", resource == Tool::"write_note")
unless { principal has user && context.arguments.folder == principal.user };

@id("read-only-when-delegated")
forbid(principal, action == Action::"tools/call", resource)
when { principal.delegated } unless { resource.readOnlyHint };
"#;

fn caller(user: &str, actors: &[&str]) -> Principal {
    let mut b = Principal::builder("https://as", i64::MAX)
        .subject(user)
        .client_id("cli")
        .issued_at(100);
    for a in actors {
        b = b.actor(Actor::new(Some((*a).into()), None, None).unwrap());
    }
    b.build().unwrap()
}

/// `text` compiled against [`tools`].
fn stage(text: &str) -> Cedar {
    CedarPolicies::parse("p", text)
        .unwrap()
        .compile(&tools())
        .unwrap()
}

fn decide(cedar: &Cedar, who: &Principal, tool: &str, args: serde_json::Value) -> Verdict {
    cedar
        .decide(who, &[], Operation::CallTool(tool), args.as_object(), 1_000)
        .expect("governed")
}

#[test]
fn forbid_wins_and_names_its_policy() {
    let cedar = CedarPolicies::parse("notes.cedar", NOTES)
        .unwrap()
        .compile(&tools())
        .unwrap();
    let alice = caller("alice", &[]);
    let own = decide(
        &cedar,
        &alice,
        "write_note",
        json!({ "folder": "alice", "text": "x" }),
    );
    assert!(own.decision.is_allowed(), "{own:?}");
    assert_eq!(own.policies, ["baseline"]);
    let other = decide(
        &cedar,
        &alice,
        "write_note",
        json!({ "folder": "bob", "text": "x" }),
    );
    assert_eq!(
        other.decision.denial().unwrap().reason(),
        &DenyReason::Forbidden {
            policies: vec!["own-folder".into()]
        }
    );
    let agent = caller("alice", &["planner"]);
    let delegated = decide(
        &cedar,
        &agent,
        "write_note",
        json!({ "folder": "alice", "text": "x" }),
    );
    assert_eq!(delegated.policies, ["read-only-when-delegated"]);
    assert!(
        decide(&cedar, &agent, "list_notes", json!({}))
            .decision
            .is_allowed()
    );
}

#[test]
fn without_a_permit_the_call_is_denied_by_default() {
    let cedar = CedarPolicies::parse(
        "p",
        r#"forbid(principal, action, resource == Tool::"refund") when { false };"#,
    )
    .unwrap()
    .compile(&tools())
    .unwrap();
    let v = decide(&cedar, &caller("a", &[]), "refund", json!({ "amount": 5 }));
    assert_eq!(
        v.decision.denial().unwrap().reason(),
        &DenyReason::NotPermitted
    );
    assert!(v.policies.is_empty());
    assert!(!cedar.governs(Operation::CallTool("list_notes")));
    assert!(
        cedar
            .decide(
                &caller("a", &[]),
                &[],
                Operation::CallTool("list_notes"),
                None,
                0
            )
            .is_none()
    );
}

#[test]
fn a_scoped_permit_asks_for_its_scopes() {
    let text = r#"
@id("small-refunds")
permit(principal, action, resource == Tool::"refund")
when { context.arguments.amount.lessThan(decimal("100.0")) };

@id("large-refunds")
@scopes("refunds:large")
permit(principal, action, resource == Tool::"refund");
"#;
    let cedar = stage(text);
    let who = caller("a", &[]);
    assert!(
        decide(&cedar, &who, "refund", json!({ "amount": 99.99 }))
            .decision
            .is_allowed()
    );
    let big = decide(&cedar, &who, "refund", json!({ "amount": 100 }));
    assert_eq!(big.policies, ["large-refunds"]);
    assert_eq!(
        big.decision.denial().unwrap().reason(),
        &DenyReason::InsufficientScope {
            required: vec!["refunds:large".into()],
            missing: vec!["refunds:large".into()],
        }
    );
    let held = ["refunds:large".to_owned()];
    let v = cedar
        .decide(
            &who,
            &held,
            Operation::CallTool("refund"),
            json!({ "amount": 100 }).as_object(),
            0,
        )
        .unwrap();
    assert!(v.decision.is_allowed());
    assert_eq!(v.policies, ["large-refunds"]);
    // A wildcard the token holds unlocks it too, though no scope rule names the scope.
    let wildcard = ["refunds:*".to_owned()];
    let v = cedar
        .decide(
            &who,
            &wildcard,
            Operation::CallTool("refund"),
            json!({ "amount": 100 }).as_object(),
            0,
        )
        .unwrap();
    assert!(v.decision.is_allowed(), "{v:?}");
}

#[test]
fn bad_arguments_are_denied_with_the_reason() {
    let cedar = CedarPolicies::parse("notes.cedar", NOTES)
        .unwrap()
        .compile(&tools())
        .unwrap();
    let v = decide(
        &cedar,
        &caller("a", &[]),
        "write_note",
        json!({ "folder": 7, "text": "x" }),
    );
    let DenyReason::InvalidArguments { problem } = v.decision.denial().unwrap().reason() else {
        panic!("{v:?}")
    };
    assert!(problem.contains("arguments.folder"), "{problem}");
}

#[test]
fn lists_keep_a_tool_unless_every_call_is_denied() {
    let cedar = CedarPolicies::parse("notes.cedar", NOTES)
        .unwrap()
        .compile(&tools())
        .unwrap();
    let agent = caller("alice", &["planner"]);
    let user = caller("alice", &[]);
    let op = Operation::CallTool("write_note");
    // Some folder is the user's own: listed.
    assert!(cedar.may_allow(&user, &[], op, 0));
    // Delegated: denied whatever the arguments.
    assert!(!cedar.may_allow(&agent, &[], op, 0));
    assert!(cedar.may_allow(&agent, &[], Operation::CallTool("list_notes"), 0));
}

#[test]
fn problems_name_the_policy_the_position_and_the_tool() {
    let text = "permit(principal, action, resource);\n\n@id(\"typo\")\npermit(principal, action, resource == Tool::\"write_note\")\n  when { context.arguments.foldr == \"x\" };\n@id(\"types\")\npermit(principal, action, resource == Tool::\"refund\") when { context.arguments.amount > 3 };\n";
    let err = CedarPolicies::parse("p.cedar", text)
        .unwrap()
        .compile(&tools())
        .unwrap_err();
    let CedarError::Invalid(problems) = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 2, "{err}");
    let typo = problems.iter().find(|p| p.policy == "typo").unwrap();
    assert_eq!((typo.position.line, typo.position.column), (5, 10), "{err}");
    assert_eq!(typo.tool.as_deref(), Some("write_note"));
    assert!(
        typo.help.as_deref().unwrap_or("").contains("folder"),
        "{err}"
    );
    let types = problems.iter().find(|p| p.policy == "types").unwrap();
    assert_eq!(types.position.line, 7);
    assert!(err.to_string().contains("p.cedar:7:"), "{err}");
}

#[test]
fn unknown_tools_duplicate_ids_and_bad_scopes_are_errors() {
    let unknown = CedarPolicies::parse(
        "p",
        "permit(principal, action, resource == Tool::\"nope\");",
    )
    .unwrap()
    .compile(&tools())
    .unwrap_err();
    assert!(
        matches!(&unknown, CedarError::UnknownTool { tool, .. } if tool == "nope"),
        "{unknown}"
    );
    let twice = "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);";
    assert!(matches!(
        CedarPolicies::parse("p", twice),
        Err(CedarError::DuplicateId { .. })
    ));
    let scopes = "@scopes(\"\") permit(principal, action, resource);";
    assert!(matches!(
        CedarPolicies::parse("p", scopes),
        Err(CedarError::BadScopes { .. })
    ));
    let forbid = "@scopes(\"x\") forbid(principal, action, resource);";
    assert!(matches!(
        CedarPolicies::parse("p", forbid),
        Err(CedarError::ScopesOnForbid { .. })
    ));
    let parse = CedarPolicies::parse(
        "p.cedar",
        "permit(principal, action, resource)\nwhen { 1 + };",
    )
    .unwrap_err();
    assert!(parse.to_string().starts_with("p.cedar:2:"), "{parse}");
}

#[test]
fn arguments_no_policy_names_are_left_out_unless_one_reads_them_whole() {
    let write = |text: &str, args: serde_json::Value| {
        let cedar = stage(text);
        decide(&cedar, &caller("alice", &[]), "write_note", args)
            .decision
            .is_allowed()
    };
    let args = json!({ "folder": "alice", "text": 5 });
    // `text` is named by no policy: it is not handed to Cedar, nor checked.
    let by_member = r#"permit(principal, action, resource == Tool::"write_note") when { context.arguments.folder == "alice" };"#;
    assert!(write(by_member, args.clone()));
    // A policy that compares the whole record sees every member, and a wrong one is refused.
    let whole = r#"permit(principal, action, resource == Tool::"write_note") when { context.arguments == {"folder": "alice", "text": "x"} };"#;
    assert!(!write(whole, args));
    assert!(write(whole, json!({ "folder": "alice", "text": "x" })));
}

#[test]
fn what_a_principal_keeps_per_tool_follows_the_scopes_it_is_asked_with() {
    let text = r#"
@id("writers")
permit(principal, action, resource == Tool::"write_note")
when { principal.scopes.contains("notes:write") };

@id("listers")
permit(principal, action, resource == Tool::"list_notes");

@id("small-refunds")
permit(principal, action, resource == Tool::"refund")
when { context.arguments.amount.lessThan(decimal("100.0")) };
"#;
    let cedar = stage(text);
    let who = caller("a", &[]);
    let write = json!({ "folder": "a", "text": "t" });
    let call = |scopes: &[String], tool: &str, args: &serde_json::Value| {
        cedar
            .decide(&who, scopes, Operation::CallTool(tool), args.as_object(), 0)
            .unwrap()
            .decision
            .is_allowed()
    };
    let writer = ["notes:write".to_owned()];
    // The first call keeps the entities made with no scopes; other scopes get their own.
    assert!(!call(&[], "write_note", &write));
    assert!(call(&writer, "write_note", &write));
    assert!(!call(&[], "write_note", &write));
    assert!(call(&[], "list_notes", &json!({})));
    assert!(!call(&[], "write_note", &write));
    // A decimal is kept by its number: 100 and 100.0 are the same decimal, 99.5 another.
    for (amount, allowed) in [
        (json!(99.5), true),
        (json!(100), false),
        (json!(100.0), false),
    ] {
        for _ in 0..2 {
            assert_eq!(
                call(&[], "refund", &json!({ "amount": amount })),
                allowed,
                "{amount}"
            );
        }
    }
}

#[test]
fn a_tool_named_twice_is_one_tool_and_every_tool_keeps_its_own_entities() {
    let text = r#"
@id("read-only")
permit(principal, action, resource) when { resource has readOnlyHint && resource.readOnlyHint };
"#;
    let tools = tools();
    // `list_notes` sorts before `write_note`: named twice, it must not take its place.
    let twice = [tools[1].clone(), tools[1].clone(), tools[0].clone()];
    let cedar = CedarPolicies::parse("p", text)
        .unwrap()
        .compile(&twice)
        .unwrap();
    let who = caller("a", &[]);
    for _ in 0..2 {
        let write = decide(
            &cedar,
            &who,
            "write_note",
            json!({ "folder": "a", "text": "t" }),
        );
        assert!(!write.decision.is_allowed());
        assert!(
            decide(&cedar, &who, "list_notes", json!({}))
                .decision
                .is_allowed()
        );
    }
}
