//! DPoP (RFC 9449) end to end over HTTP on 127.0.0.1, every part real: the development
//! issuer's token endpoint issues DPoP-bound tokens (token exchange with a proof); the notes
//! server behind `rmcp-authz` accepts DPoP with server nonces, requires it for
//! `delete_note`, and for delegated tokens on `write_note`, and records every decision;
//! rmcp's client, through the agent side (`Exchanged` with `TokenExchangeClient::dpop`,
//! `agent::dpop_transport`), calls it, answering the server's `use_dpop_nonce` on the way.
//! The same token is then refused to whoever copied it: as a bearer token, or proven with
//! another key; and a bearer token is refused where a rule requires DPoP, with the reason in
//! the audit log.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp_authz::Authz;
use rmcp_authz::agent::{self, AccessToken, AuthorizedHttpClient, Exchanged, Refreshing};
use rmcp_authz::audit::{AuditEvent, Auditor, DecisionKind, Durability, MemorySink};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Conditions, Policy, Rule};
use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
use rmcp_authz::token::dpop::{DpopKey, DpopOptions, DpopVerifier};
use rmcp_authz_tests::notes::http_app;
use serde_json::json;

const SCOPES: [&str; 3] = ["notes:read", "notes:write", "notes:delete"];

/// The authorization server, the notes server, and the notes server's audit log.
struct World {
    issuer: Arc<DevIssuer>,
    token_endpoint: String,
    notes: String,
    log: Arc<MemorySink>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn policy() -> Policy {
    Policy::builder()
        .implies("notes:write", ["notes:read"])
        .tool("list_notes", "notes:read")
        .tool("read_note", "notes:read")
        .tool(
            "write_note",
            Rule::new("notes:write").with(Conditions::new().require_dpop_when_delegated()),
        )
        .tool(
            "delete_note",
            Rule::new("notes:delete").with(Conditions::new().require_dpop()),
        )
        .build()
        .expect("policy")
}

async fn world() -> World {
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("http://{}", as_listener.local_addr().unwrap());
    let issuer = Arc::new(DevIssuer::new(issuer_url.clone()).unwrap());
    let routes = Arc::clone(&issuer).token_endpoint_router();
    let authorization_server = tokio::spawn(async move {
        let _ = axum::serve(as_listener, routes).await;
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notes = format!("http://{}/mcp", listener.local_addr().unwrap());
    let log = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(log.clone())
        .durability(Durability::Durable)
        .build()
        .unwrap();
    let authz = Authz::builder(issuer.verifier(notes.clone()).build().unwrap(), policy())
        .dpop(DpopVerifier::new(
            DpopOptions::default().require_nonce(Duration::from_secs(60)),
        ))
        .auditor(auditor)
        .build();
    let app = http_app(&authz, authz.http_config()).unwrap();
    let served = authz.clone();
    let server = tokio::spawn(async move {
        let _ = served.serve(listener, app, std::future::pending()).await;
    });
    World {
        token_endpoint: format!("{issuer_url}/token"),
        issuer,
        notes,
        log,
        tasks: vec![authorization_server, server],
    }
}

impl World {
    /// Alice's own token, as her app holds it (for the agent to exchange).
    fn alice(&self) -> String {
        self.issuer
            .token(self.notes.clone())
            .subject("alice")
            .client_id("notes-app")
            .scopes(SCOPES)
            .mint()
            .unwrap()
    }

    /// A token exchange client proving `key` at the issuer's token endpoint.
    fn exchange(&self, key: &Arc<DpopKey>) -> TokenExchangeClient {
        TokenExchangeClient::new(self.token_endpoint.clone(), FetchOptions::loopback_http())
            .unwrap()
            .dpop(Arc::clone(key))
    }

    /// The notes server's audit events of `tools/call`s.
    fn calls(&self) -> Vec<AuditEvent> {
        self.log
            .events()
            .into_iter()
            .filter(|e| e.method.as_deref() == Some("tools/call"))
            .collect()
    }
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
    arguments: serde_json::Value,
) -> Result<String, String> {
    let params = CallToolRequestParams::new(tool)
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    match client.call_tool(params).await {
        Ok(result) if result.is_error != Some(true) => Ok(format!("{:?}", result.content)),
        Ok(result) => Err(format!("tool error: {:?}", result.content)),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn an_agent_with_a_dpop_bound_token_calls_through_rmcp_and_a_copy_of_it_is_useless() {
    let world = world().await;
    let key = Arc::new(DpopKey::generate().unwrap());

    // The agent: Alice's token exchanged for one bound to the agent's key, presented with a
    // proof on every request by rmcp's client. The server demands a nonce: the first
    // request is answered with use_dpop_nonce, and the client gets one and sends again.
    let source = Arc::new(Refreshing::new(
        Exchanged::new(world.exchange(&key), world.alice(), world.notes.clone()).actor_token(
            world
                .issuer
                .token(world.issuer.issuer())
                .subject("research-agent")
                .client_id("research-agent")
                .dpop_bound(key.thumbprint())
                .mint()
                .unwrap(),
        ),
    ));
    let client = ClientConfig::default()
        .serve(agent::dpop_transport(
            world.notes.clone(),
            source,
            SCOPES,
            Arc::clone(&key),
        ))
        .await
        .expect("the agent connects with its DPoP-bound token");
    call(&client, "list_notes", json!({}))
        .await
        .expect("a read");
    call(
        &client,
        "write_note",
        json!({"id": "plan", "text": "Q3 plan"}),
    )
    .await
    .expect("a delegated write, proven");
    call(&client, "delete_note", json!({"id": "plan"}))
        .await
        .expect("a delete, proven");
    let _ = client.cancel().await;

    // Every call the agent made is recorded with the key it proved, and as delegated.
    let calls = world.calls();
    let allowed: Vec<_> = calls
        .iter()
        .filter(|e| e.decision == DecisionKind::Allow)
        .collect();
    assert_eq!(allowed.len(), 3, "{calls:#?}");
    for event in &allowed {
        assert_eq!(
            event.dpop_jkt.as_deref(),
            Some(key.thumbprint()),
            "{event:?}"
        );
        assert_eq!(event.delegation_chain, ["research-agent"], "{event:?}");
        assert_eq!(event.subject.as_deref(), Some("alice"));
    }

    // The agent's token, copied from a log: a token bound to the agent's key.
    let stolen = world
        .exchange(&key)
        .exchange(&world.alice(), None, &world.notes, &["notes:read"])
        .await
        .unwrap();
    assert!(stolen.dpop_bound, "the issuer bound the token");
    let before = world.log.events().len();

    // Presented as a bearer token by rmcp's plain client: refused.
    let bearer = rmcp_authz_tests::server::legacy_client(&world.notes, &stolen.access_token).await;
    let Err(refused) = bearer else {
        panic!("a bound token is refused as Bearer");
    };
    assert!(refused.to_string().contains("Auth"), "{refused}");

    // Proven with the thief's own key: refused, the proof's key is not the token's.
    let thief = Arc::new(DpopKey::generate().unwrap());
    let replay = AuthorizedHttpClient::new(
        reqwest::Client::new(),
        Arc::new(
            AccessToken::new(stolen.access_token.clone(), None, ["notes:read"])
                .with_dpop_bound(true),
        ),
        ["notes:read"],
    )
    .dpop(thief);
    let replayed = ClientConfig::default()
        .serve(rmcp::transport::StreamableHttpClientTransport::with_client(
            replay,
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                world.notes.clone(),
            ),
        ))
        .await;
    assert!(
        replayed.is_err(),
        "a stolen token proven with another key is refused"
    );

    let refusals: Vec<_> = world.log.events()[before..]
        .iter()
        .filter(|e| e.decision == DecisionKind::Deny)
        .map(|e| (e.reason_code.clone(), e.reason.clone()))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|(code, reason)| code.as_deref() == Some("invalid_token")
                && reason.as_deref().is_some_and(|r| r.contains("DPoP-bound"))),
        "the bearer use is recorded: {refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|(code, reason)| code.as_deref() == Some("invalid_token")
                && reason
                    .as_deref()
                    .is_some_and(|r| r.contains("not bound to the DPoP proof's key"))),
        "the thief's proof is recorded: {refusals:?}"
    );
}

#[tokio::test]
async fn a_bearer_token_is_refused_where_a_rule_requires_dpop() {
    let world = world().await;
    // Alice's own app, with a plain bearer token: reads and writes (not delegated), but no
    // delete, which needs a DPoP-bound token.
    let client = rmcp_authz_tests::server::legacy_client(&world.notes, &world.alice())
        .await
        .expect("bearer tokens are accepted");
    call(&client, "list_notes", json!({}))
        .await
        .expect("a read");
    call(&client, "write_note", json!({"id": "a", "text": "x"}))
        .await
        .expect("the user's own write, no DPoP needed");
    let refused = call(&client, "delete_note", json!({"id": "a"}))
        .await
        .expect_err("a delete needs DPoP");
    let _ = client.cancel().await;
    let denied = world
        .calls()
        .into_iter()
        .find(|e| e.decision == DecisionKind::Deny)
        .unwrap_or_else(|| panic!("no denial recorded ({refused})"));
    assert_eq!(denied.reason_code.as_deref(), Some("dpop_required"));
    assert_eq!(denied.target.as_deref(), Some("delete_note"));
    assert!(denied.dpop_jkt.is_none());

    // The same over raw HTTP: 401 with a DPoP challenge naming the rule's demand.
    let raw = rmcp_authz_tests::http::send(
        rmcp_authz_tests::http::post_to(
            &world.notes,
            rmcp_authz_tests::http::call_body(7, "delete_note").to_string(),
        )
        .header("authorization", format!("Bearer {}", world.alice())),
    )
    .await;
    assert_eq!(raw.status, 401, "{}", raw.body);
    let challenge = raw.www_authenticate();
    assert_eq!(challenge.scheme, "DPoP");
    assert_eq!(challenge.param("error"), Some("invalid_token"));
    assert!(challenge.param("algs").is_some());
    assert!(raw.body.contains("require_dpop"), "{}", raw.body);
}

/// A DPoP-bound token short of a scope, over raw HTTP: the server's nonce first
/// (`use_dpop_nonce`, `DPoP-Nonce`), then a 403 whose step-up challenge is in the `DPoP`
/// scheme the request used.
#[tokio::test]
async fn a_bound_token_short_of_a_scope_gets_a_dpop_step_up_challenge() {
    let world = world().await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let token = world
        .exchange(&key)
        .exchange(&world.alice(), None, &world.notes, &["notes:read"])
        .await
        .unwrap();
    assert!(token.dpop_bound);
    let send = |nonce: Option<String>| {
        let proof = key
            .proof(
                "POST",
                &world.notes,
                Some(&token.access_token),
                nonce.as_deref(),
            )
            .unwrap();
        rmcp_authz_tests::http::send(
            rmcp_authz_tests::http::post_to(
                &world.notes,
                rmcp_authz_tests::http::call_body(3, "delete_note").to_string(),
            )
            .header("authorization", format!("DPoP {}", token.access_token))
            .header("dpop", proof),
        )
    };
    let first = send(None).await;
    assert_eq!(first.status, 401, "{}", first.body);
    assert_eq!(
        first.www_authenticate().param("error"),
        Some("use_dpop_nonce")
    );
    let nonce = first.header("dpop-nonce").expect("a nonce").to_owned();
    let second = send(Some(nonce)).await;
    assert_eq!(second.status, 403, "{}", second.body);
    let challenge = second.www_authenticate();
    assert_eq!(challenge.scheme, "DPoP");
    assert_eq!(challenge.param("error"), Some("insufficient_scope"));
    assert!(
        challenge
            .param("scope")
            .is_some_and(|s| s.contains("notes:delete")),
        "{challenge:?}"
    );
}
