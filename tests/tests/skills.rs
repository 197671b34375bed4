//! Skills (SEP-2640) behind `Authz::router`: `skills/list` shows each caller only the
//! skills its token may get; `skills/get` of another is refused by the HTTP layer with a
//! 403 (a step-up challenge when scopes would help) whose message names `skills/get`;
//! `unlisted_skills` governs skills without a rule of their own; each request leaves one
//! audit event naming its method. The wrapper gates the same way where it is the only
//! gate (a single-caller transport, as on stdio).
//!
//! The skill a rule names is the path segment before `SKILL.md` in the skill's URI.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CacheScope, GetSkillRequestParams, GetSkillResult, ListSkillsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Skill, SkillFrontmatter, SkillResources,
};
use rmcp::service::{RequestContext, RoleClient, RunningService, ServiceError};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use rmcp_authz::audit::{Auditor, DecisionKind, Durability, MemorySink};
use rmcp_authz::policy::{Policy, ScopeExpr};
use rmcp_authz_tests::http::{Raw, STEP, mcp_post, metadata_url, send};
use rmcp_authz_tests::server::{TestServer, connect_in_memory};
use serde_json::{Value, json};
use tokio::time::timeout;

/// Needs `notes:read`.
const ALLOWED: &str = "skill://allowed-skill/SKILL.md";
/// Needs `notes:admin`.
const SECRET: &str = "skill://secret-skill/SKILL.md";
/// Nested below a folder: its name is still the segment before `SKILL.md`; needs
/// `notes:read`.
const NESTED: &str = "skill://packs/writing/nested-skill/SKILL.md";
/// No rule of its own: governed by `unlisted_skills` (denied by default).
const UNRULED: &str = "skill://unruled-skill/SKILL.md";

const ALL: [&str; 4] = [ALLOWED, SECRET, NESTED, UNRULED];

/// A server of four skills, written by hand as any `ServerHandler` would.
#[derive(Debug, Clone, Default)]
struct Skills;

fn skill(uri: &str) -> Skill {
    let name = rmcp::model::skill_name_from_uri(uri).expect("a SKILL.md uri");
    Skill::new(
        uri,
        SkillFrontmatter::new(name, format!("The {name} skill.")),
        SkillResources::Dynamic,
    )
}

impl ServerHandler for Skills {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_skills()
                .build(),
        )
    }

    async fn list_skills(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        Ok(ListSkillsResult::with_all_items(
            ALL.iter().map(|uri| skill(uri)).collect(),
        ))
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        if ALL.contains(&request.uri.as_str()) {
            Ok(GetSkillResult::new(skill(&request.uri)))
        } else {
            Err(McpError::invalid_params(
                format!("no skill {}", request.uri),
                None,
            ))
        }
    }
}

fn policy(unlisted: Option<ScopeExpr>) -> Policy {
    let mut builder = Policy::builder()
        .implies("notes:admin", ["notes:read"])
        .skill("allowed-skill", "notes:read")
        .skill("secret-skill", "notes:admin")
        .skill("nested-skill", "notes:read");
    if let Some(rule) = unlisted {
        builder = builder.unlisted_skills(rule);
    }
    builder.build().expect("the policy is valid")
}

async fn start(unlisted: Option<ScopeExpr>, auditor: Option<Auditor>) -> TestServer {
    TestServer::start_app(policy(unlisted), auditor, |authz| {
        authz
            .router("/mcp", || Skills)
            .expect("the policy fits the skills server")
    })
    .await
}

type Client = RunningService<RoleClient, rmcp::model::ClientConfig>;

async fn listed(client: &Client) -> (BTreeSet<String>, Option<CacheScope>) {
    let result = timeout(STEP, client.list_skills(None))
        .await
        .expect("skills/list in time")
        .expect("skills/list");
    let uris = result.skills.iter().map(|s| s.uri.clone()).collect();
    (uris, result.cache_scope)
}

fn set(uris: &[&str]) -> BTreeSet<String> {
    uris.iter().map(|u| (*u).to_owned()).collect()
}

async fn get(client: &Client, uri: &str) -> Result<GetSkillResult, ServiceError> {
    timeout(STEP, client.get_skill(GetSkillRequestParams::new(uri)))
        .await
        .expect("skills/get in time")
}

/// A raw `skills/get` of `uri`, as a 2025-06-18 client sends it.
async fn raw_get(server: &TestServer, token: Option<&str>, id: i64, uri: &str) -> Raw {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "skills/get", "params": {"uri": uri}});
    send(mcp_post(server, token, &body).header("mcp-protocol-version", "2025-06-18")).await
}

/// `skills/list` shows each caller only what it may get, marked private, with every
/// client version.
#[tokio::test]
async fn skills_list_shows_each_caller_only_its_skills() {
    let server = start(None, None).await;
    let cases: [(&[&str], BTreeSet<String>); 4] = [
        (&["notes:read"], set(&[ALLOWED, NESTED])),
        (&["notes:admin"], set(&[ALLOWED, NESTED, SECRET])),
        (&[], set(&[])),
        (&["other:scope"], set(&[])),
    ];
    for (scopes, expected) in cases {
        let token = server.token(scopes);
        for modern in [false, true] {
            let client = if modern {
                server.modern_client(&token).await
            } else {
                server.legacy_client(&token).await
            }
            .expect("connect");
            let (uris, cache_scope) = listed(&client).await;
            assert_eq!(uris, expected, "{scopes:?}, modern {modern}");
            assert_eq!(cache_scope, Some(CacheScope::Private), "{scopes:?}");
            let _ = client.cancel().await;
        }
    }
}

/// `skills/get` of a skill the caller may get succeeds; of another, the layer answers
/// 403 with a step-up challenge naming the scope the skill needs, and a message naming
/// `skills/get`; a skill no rule covers is a plain 403 (no scope would help).
#[tokio::test]
async fn skills_get_is_decided_by_the_layer_with_403s() {
    let server = start(None, None).await;
    let reader = server.token(&["notes:read"]);

    let client = server.legacy_client(&reader).await.expect("connect");
    for uri in [ALLOWED, NESTED] {
        let result = get(&client, uri).await.expect("an allowed skill");
        assert_eq!(result.skill.uri, uri);
    }
    for uri in [SECRET, UNRULED] {
        let refused = get(&client, uri).await;
        assert!(refused.is_err(), "{uri}: {refused:?}");
    }
    let _ = client.cancel().await;

    // Raw: the status, the challenge, the message.
    let raw = raw_get(&server, Some(&reader), 7, SECRET).await;
    assert_eq!(raw.status, 403, "{raw:?}");
    let challenge = raw.bearer_challenge();
    assert_eq!(challenge.param("error"), Some("insufficient_scope"));
    assert_eq!(challenge.param("scope"), Some("notes:admin"));
    assert_eq!(
        challenge.param("resource_metadata"),
        Some(metadata_url(&server).as_str())
    );
    let message = raw.message();
    assert_eq!(message["id"], 7);
    assert_eq!(message["error"]["code"], -32003, "{message}");
    let text = message["error"]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("skills/get "), "{text}");
    assert!(text.contains("secret-skill"), "{text}");
    assert_eq!(message["error"]["data"]["scope"], "notes:admin");

    let raw = raw_get(&server, Some(&reader), 8, UNRULED).await;
    assert_eq!(raw.status, 403, "{raw:?}");
    let challenge = raw.headers.get("www-authenticate").map(|v| v.to_owned());
    if let Some(challenge) = challenge {
        let c = rmcp_authz_tests::http::challenge(challenge.to_str().unwrap());
        assert_ne!(c.param("error"), Some("insufficient_scope"), "{c:?}");
    }
    let message = raw.message();
    let text = message["error"]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("skills/get "), "{text}");
    assert_eq!(message["error"]["data"]["error"], "access_denied");

    // Without a token: 401, and the hint names the skill's scope.
    let raw = raw_get(&server, None, 9, SECRET).await;
    assert_eq!(raw.status, 401, "{raw:?}");
    assert_eq!(raw.bearer_challenge().param("scope"), Some("notes:admin"));
    assert_eq!(raw.message()["id"], 9);

    // The admin gets it.
    let admin = server.token(&["notes:admin"]);
    let raw = raw_get(&server, Some(&admin), 10, SECRET).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.message()["result"]["skill"]["uri"], SECRET);
}

/// `unlisted_skills` admits skills without a rule of their own: listed and gettable.
#[tokio::test]
async fn unlisted_skills_admits_skills_without_a_rule() {
    let server = start(Some("notes:read".into()), None).await;
    let reader = server.token(&["notes:read"]);
    let client = server.modern_client(&reader).await.expect("connect");
    let (uris, _) = listed(&client).await;
    assert_eq!(uris, set(&[ALLOWED, NESTED, UNRULED]));
    get(&client, UNRULED)
        .await
        .expect("unlisted skills are admitted");
    let _ = client.cancel().await;

    // The unlisted rule's scopes still apply.
    let nobody = server.token(&[]);
    let raw = raw_get(&server, Some(&nobody), 3, UNRULED).await;
    assert_eq!(raw.status, 403, "{raw:?}");
    assert_eq!(raw.bearer_challenge().param("scope"), Some("notes:read"));

    // Authenticated is enough when the unlisted rule says so.
    let server = start(Some(ScopeExpr::authenticated()), None).await;
    let raw = raw_get(&server, Some(&server.token(&[])), 4, UNRULED).await;
    assert_eq!(raw.status, 200, "{raw:?}");
}

/// Each `skills/list` and `skills/get`, allowed or refused, leaves exactly one audit
/// event naming its method.
#[tokio::test]
async fn each_skills_request_leaves_one_event() {
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .expect("auditor");
    let server = start(None, Some(auditor)).await;
    let reader = server.token(&["notes:read"]);
    let client = server.legacy_client(&reader).await.expect("connect");
    let mut seen = sink.events().len();
    let mut expect_one = |method: &str, target: Option<&str>, decision: DecisionKind| {
        let events = sink.events();
        let new = &events[seen..];
        assert_eq!(new.len(), 1, "{method} {target:?}: {new:#?}");
        assert_eq!(new[0].method.as_deref(), Some(method), "{:?}", new[0]);
        assert_eq!(new[0].target.as_deref(), target, "{:?}", new[0]);
        assert_eq!(new[0].decision, decision, "{:?}", new[0]);
        seen = events.len();
    };
    listed(&client).await;
    expect_one("skills/list", None, DecisionKind::Allow);
    get(&client, ALLOWED).await.expect("allowed");
    expect_one("skills/get", Some(ALLOWED), DecisionKind::Allow);
    assert!(get(&client, SECRET).await.is_err());
    expect_one("skills/get", Some(SECRET), DecisionKind::Deny);
    assert!(get(&client, UNRULED).await.is_err());
    expect_one("skills/get", Some(UNRULED), DecisionKind::Deny);
    let _ = client.cancel().await;
}

/// Where the wrapper is the only gate (a single-caller transport, as on stdio): the same
/// filtering, and `skills/get` refused with FORBIDDEN naming `skills/get`.
#[tokio::test]
async fn the_wrapper_gates_skills_on_its_own() {
    let issuer =
        rmcp_authz::dev::DevIssuer::new("https://auth.skills.test.invalid").expect("dev issuer");
    let audience = "urn:skills";
    let verifier = issuer.verifier(audience).build().expect("verifier");
    let authz = rmcp_authz::Authz::new(verifier, policy(None));
    let token = issuer
        .token(audience)
        .scopes(["notes:read"])
        .expires_in(Duration::from_secs(600))
        .mint()
        .expect("mint");
    let principal = authz.verifier().verify(&token).await.expect("valid");
    let wrapped = authz.wrap_for(Skills, principal).expect("fits");
    let (client, server) = connect_in_memory(wrapped).await;
    let result = timeout(STEP, client.list_skills(None))
        .await
        .expect("in time")
        .expect("skills/list");
    let uris: BTreeSet<String> = result.skills.iter().map(|s| s.uri.clone()).collect();
    assert_eq!(uris, set(&[ALLOWED, NESTED]));
    for (uri, reason) in [(SECRET, "insufficient_scope"), (UNRULED, "access_denied")] {
        let refused = timeout(STEP, client.get_skill(GetSkillRequestParams::new(uri)))
            .await
            .expect("in time");
        let Err(ServiceError::McpError(error)) = refused else {
            panic!("{uri}: expected a denial, got {refused:?}");
        };
        assert_eq!(error.code.0, -32003, "{error:?}");
        assert!(error.message.starts_with("skills/get "), "{error:?}");
        let data: &Value = error.data.as_ref().expect("data");
        assert_eq!(data["error"], reason, "{data}");
    }
    timeout(STEP, client.get_skill(GetSkillRequestParams::new(NESTED)))
        .await
        .expect("in time")
        .expect("a nested skill the caller may get");
    let _ = client.cancel().await;
    let _ = server.await;
}

/// A skill URI whose name is percent-encoded (or not plain ASCII) is refused whatever the
/// rules say: decoded and normalised, as rmcp compares skill names, `d%65ploy` is
/// `deploy`, and an `unlisted_skills` rule must not admit a skill whose own rule it
/// dodges.
#[tokio::test]
async fn an_encoded_skill_name_is_refused_even_when_unlisted_skills_admit_all() {
    let server = start(Some(ScopeExpr::authenticated()), None).await;
    let reader = server.token(&["notes:read"]);
    for uri in [
        "skill://secret-sk%69ll/SKILL.md",
        "skill://secret\u{ff53}kill/SKILL.md",
    ] {
        let raw = raw_get(&server, Some(&reader), 5, uri).await;
        let message = raw.message();
        assert_eq!(message["error"]["code"], -32003, "{uri}: {raw:?}");
        let text = message["error"]["message"].as_str().unwrap_or_default();
        assert!(text.starts_with("skills/get "), "{uri}: {text}");
    }
    // The plain name is governed by its own rule.
    let raw = raw_get(&server, Some(&reader), 6, SECRET).await;
    assert_eq!(raw.status, 403, "{raw:?}");
}
