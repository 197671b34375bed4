//! Delegated tokens end to end over HTTP: the notes server with a policy on the delegation
//! chain (depth, agent allow-list, user-only tools, actor issuers, forbidden actors) and on
//! token age; each decision checked at the HTTP boundary and in the audit log, with the
//! chain.

use std::sync::Arc;
use std::time::Duration;

use rmcp_authz::audit::{Auditor, DecisionKind, Durability, MemorySink};
use rmcp_authz::dev::TokenRequest;
use rmcp_authz::policy::{Conditions, Policy, Rule, ScopeExpr};
use rmcp_authz_tests::http::{Raw, call_body_2026, post_2026, send};
use rmcp_authz_tests::server::{ISSUER, TestServer};
use serde_json::json;

fn policy() -> Policy {
    Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:read"])
        .default_conditions(
            Conditions::new()
                .max_chain_depth(2)
                .forbid_actors(["rogue-agent"])
                .actor_issuers([ISSUER]),
        )
        .tool("list_notes", "notes:read")
        .tool(
            "write_note",
            Rule::new("notes:write")
                .with(Conditions::new().only_agents(["research-agent", "notes-app"])),
        )
        .tool(
            "purge",
            Rule::new("notes:admin").with(
                Conditions::new()
                    .user_only()
                    .max_token_age(Duration::from_secs(300)),
            ),
        )
        .tool("whoami", ScopeExpr::authenticated())
        .build()
        .unwrap()
}

async fn server() -> (TestServer, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .unwrap();
    (
        TestServer::start_with(false, policy(), Some(auditor)).await,
        sink,
    )
}

/// A token for alice via `notes-app` with `scopes`, shaped by `f`.
fn token(
    server: &TestServer,
    scopes: &[&str],
    f: impl FnOnce(TokenRequest<'_>) -> TokenRequest<'_>,
) -> String {
    f(server
        .issuer
        .token(&server.url)
        .subject("alice")
        .client_id("notes-app")
        .scopes(scopes))
    .mint()
    .unwrap()
}

async fn call(server: &TestServer, token: &str, tool: &str) -> Raw {
    let mut body = call_body_2026(1, tool);
    if tool == "write_note" {
        body["params"]["arguments"] = json!({"id": "n", "text": "t"});
    }
    send(post_2026(server, token, &body, "tools/call", tool)).await
}

/// The reason code of a refusal (from the JSON-RPC error message), or `None` if served.
fn refused(raw: &Raw) -> Option<u16> {
    (raw.status != 200).then_some(raw.status)
}

/// What a case is, the token, the tool, the HTTP status of a refusal (`None`: served) and
/// the reason code audited.
type Case = (
    &'static str,
    String,
    &'static str,
    Option<u16>,
    Option<&'static str>,
);

#[tokio::test]
async fn the_chain_and_the_token_age_decide_and_every_decision_is_audited() {
    let (server, sink) = server().await;
    let cases: Vec<Case> = vec![
        // Depth: two actors pass, three do not.
        (
            "two actors",
            token(&server, &["notes:read"], |t| {
                t.actor("research-agent").actor("orchestrator")
            }),
            "list_notes",
            None,
            None,
        ),
        (
            "three actors",
            token(&server, &["notes:read"], |t| {
                t.actor("research-agent")
                    .actor("orchestrator")
                    .actor("assistant")
            }),
            "list_notes",
            Some(403),
            Some("chain_too_deep"),
        ),
        // Agent allow-list: the current actor decides.
        (
            "an admitted agent",
            token(&server, &["notes:write"], |t| {
                t.actor("research-agent").actor("orchestrator")
            }),
            "write_note",
            None,
            None,
        ),
        (
            "an agent not admitted",
            token(&server, &["notes:write"], |t| {
                t.actor("scraper").actor("research-agent")
            }),
            "write_note",
            Some(403),
            Some("agent_not_allowed"),
        ),
        // A user-only tool.
        (
            "the user's own token",
            token(&server, &["notes:admin"], |t| t),
            "purge",
            None,
            None,
        ),
        (
            "a delegated token for a user-only tool",
            token(&server, &["notes:admin"], |t| t.actor("orchestrator")),
            "purge",
            Some(403),
            Some("delegation_not_allowed"),
        ),
        // An actor from an issuer not admitted.
        (
            "an actor from an unknown issuer",
            token(&server, &["notes:read"], |t| {
                t.claim(
                    "act",
                    json!({"sub": "research-agent", "iss": "https://elsewhere.invalid"}),
                )
            }),
            "list_notes",
            Some(403),
            Some("actor_issuer_not_allowed"),
        ),
        // A forbidden actor anywhere in the chain.
        (
            "a forbidden actor deep in the chain",
            token(&server, &["notes:read"], |t| {
                t.actor("research-agent").actor("rogue-agent")
            }),
            "list_notes",
            Some(403),
            Some("forbidden_actor"),
        ),
        // Freshness: an old token is refused with 401, to be replaced.
        (
            "a token issued ten minutes ago",
            {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                token(&server, &["notes:admin"], |t| t.claim("iat", now - 600))
            },
            "purge",
            Some(401),
            Some("token_too_old"),
        ),
        // An agent named by its client_id alone (RFC 8693 section 4.1 lets claims other
        // than `sub` identify an actor): admitted by the allow-list, audited by that name.
        (
            "an actor named only by its client_id",
            token(&server, &["notes:write"], |t| {
                t.claim(
                    "act",
                    json!({"client_id": "research-agent", "act": {"sub": "orchestrator"}}),
                )
            }),
            "write_note",
            None,
            None,
        ),
    ];
    for (what, token, tool, expected, _) in &cases {
        let raw = call(&server, token, tool).await;
        assert_eq!(refused(&raw), *expected, "{what}: {raw:?}");
        if *expected == Some(403) {
            let message = raw.message();
            assert_eq!(message["error"]["code"], -32003, "{what}: {message}");
            assert!(
                message["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("refused by")),
                "{what}: the denial names the rule: {message}"
            );
        }
        if *expected == Some(401) {
            let challenge = raw.bearer_challenge();
            assert_eq!(challenge.param("error"), Some("invalid_token"), "{what}");
        }
    }

    // One event per call, in order, with the decision, the reason and the whole chain.
    let events = sink.events();
    assert_eq!(events.len(), cases.len(), "{events:#?}");
    for ((what, _, tool, expected, code), event) in cases.iter().zip(&events) {
        assert_eq!(event.target.as_deref(), Some(*tool), "{what}");
        let decision = if expected.is_some() {
            DecisionKind::Deny
        } else {
            DecisionKind::Allow
        };
        assert_eq!(event.decision, decision, "{what}: {event:?}");
        assert_eq!(event.reason_code.as_deref(), *code, "{what}: {event:?}");
        assert_eq!(event.subject.as_deref(), Some("alice"), "{what}");
    }
    assert_eq!(
        events[1].delegation_chain,
        ["research-agent", "orchestrator", "assistant"],
        "the refused chain is recorded whole"
    );
    assert_eq!(
        events[7].delegation_chain,
        ["research-agent", "rogue-agent"]
    );
    assert_eq!(events[2].agent.as_deref(), Some("research-agent"));
    assert_eq!(events[9].agent.as_deref(), Some("research-agent"));
    assert_eq!(
        events[9].delegation_chain,
        ["research-agent", "orchestrator"],
        "an actor without a sub is recorded by its client_id"
    );
}
