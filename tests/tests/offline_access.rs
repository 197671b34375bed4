//! `offline_access` never appears in a challenge (issue 13, item 4; MCP authorization
//! 2026-07-28: a `WWW-Authenticate` `scope` SHOULD NOT include it, since it asks for a
//! refresh token, not for access to this resource): not in the scope hint of a 401, not
//! in the `scope` of a 403 step-up challenge, not in the JSON-RPC error's `data.scope`,
//! over HTTP and in the wrapper's own denials, whichever way a rule combines it with
//! other scopes. Challenges are read with the test crate's own parser.

use std::collections::BTreeSet;
use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use rmcp_authz::policy::{Policy, ScopeExpr, all_of, any_of};
use rmcp_authz_tests::http::{Challenge, Raw, STEP, call_body, mcp_post, metadata_url, send};
use rmcp_authz_tests::notes::Notes;
use rmcp_authz_tests::server::{TestServer, connect_in_memory};
use serde_json::{Value, json};

const OFFLINE: &str = "offline_access";

/// The notes tools and prompts, with `offline_access` mixed into their rules every way a
/// rule can hold it: beside another scope (`all_of`), as an alternative (`any_of`, first
/// or last), alone, and inside a nested expression.
fn offline_policy() -> Policy {
    Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:delete"])
        .implies("notes:write", ["notes:read"])
        .tool("list_notes", any_of([OFFLINE, "notes:read"]))
        .tool("read_note", all_of(["notes:read", OFFLINE]))
        .tool("write_note", all_of([OFFLINE, "notes:write"]))
        .tool("delete_note", OFFLINE)
        .tool(
            "purge",
            all_of([
                ScopeExpr::from("notes:admin"),
                any_of(["ops:purge", OFFLINE]),
                ScopeExpr::from(OFFLINE),
            ]),
        )
        .tool("whoami", any_of(["notes:read", OFFLINE]))
        .prompt("summarize", all_of([OFFLINE, "notes:read"]))
        .resource("notes://{id}", all_of(["notes:read", OFFLINE]))
        .build()
        .expect("the policy is valid")
}

fn scope_words(scope: &str) -> BTreeSet<&str> {
    scope.split(' ').filter(|s| !s.is_empty()).collect()
}

/// The `scope` of a challenge, if any, without `offline_access`.
fn scope_without_offline_access(challenge: &Challenge, what: &str) -> Option<BTreeSet<String>> {
    let scope = challenge.param("scope")?;
    let words = scope_words(scope);
    assert!(
        !words.contains(OFFLINE),
        "{what}: offline_access in the challenge: {challenge:?}"
    );
    Some(words.into_iter().map(str::to_owned).collect())
}

/// The `scope` of a challenge: absent, or a non-empty list without `offline_access`
/// (RFC 6749 section 3.3: a scope is one or more scope tokens).
fn checked_scope(challenge: &Challenge, what: &str) -> Option<BTreeSet<String>> {
    let scope = challenge.param("scope")?;
    let words = scope_words(scope);
    assert!(
        !words.contains(OFFLINE),
        "{what}: offline_access in the challenge: {challenge:?}"
    );
    assert!(
        !words.is_empty(),
        "{what}: an empty scope tells the client nothing: {challenge:?}"
    );
    Some(words.into_iter().map(str::to_owned).collect())
}

fn set(words: &[&str]) -> Option<BTreeSet<String>> {
    Some(words.iter().map(|w| (*w).to_owned()).collect())
}

/// A raw JSON-RPC request of `method` with `params`.
fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The 401 to a request without a token: its scope hint never names `offline_access`,
/// and names the other scopes the operation needs.
#[tokio::test]
async fn the_401_scope_hint_never_names_offline_access() {
    let server = TestServer::start_with_policy(false, offline_policy()).await;
    let cases = [
        (call_body(1, "read_note"), set(&["notes:read"])),
        (call_body(2, "write_note"), set(&["notes:write"])),
        (call_body(3, "purge"), set(&["notes:admin", "ops:purge"])),
        // Only offline_access: no hint at all rather than an empty one.
        (call_body(4, "delete_note"), None),
        (
            request(5, "prompts/get", json!({"name": "summarize"})),
            set(&["notes:read"]),
        ),
        (
            request(6, "resources/read", json!({"uri": "notes://welcome"})),
            set(&["notes:read"]),
        ),
    ];
    for (body, expected) in cases {
        let raw = send(mcp_post(&server, None, &body)).await;
        assert_eq!(raw.status, 401, "{body}: {raw:?}");
        let challenge = raw.bearer_challenge();
        assert_eq!(
            challenge.param("resource_metadata"),
            Some(metadata_url(&server).as_str())
        );
        assert_eq!(
            checked_scope(&challenge, &body.to_string()),
            expected,
            "{body}"
        );
    }
    // Where offline_access is one alternative of two, the hint may name the other one
    // or nothing, never offline_access.
    for tool in ["list_notes", "whoami"] {
        let raw = send(mcp_post(&server, None, &call_body(7, tool))).await;
        assert_eq!(raw.status, 401, "{raw:?}");
        if let Some(scope) = checked_scope(&raw.bearer_challenge(), tool) {
            assert_eq!(Some(scope), set(&["notes:read"]), "{tool}");
        }
    }
}

/// The 403 challenge and the error body of a denied call.
fn step_up(raw: &Raw, what: &str) -> (Option<BTreeSet<String>>, Value) {
    assert_eq!(raw.status, 403, "{what}: {raw:?}");
    let challenge = raw.bearer_challenge();
    assert_eq!(
        challenge.param("error"),
        Some("insufficient_scope"),
        "{what}"
    );
    let scope = checked_scope(&challenge, what);
    let message = raw.message();
    let data = message["error"]["data"].clone();
    assert_eq!(data["error"], "insufficient_scope", "{what}: {message}");
    (scope, data)
}

/// `data.scope` of a denial: a string without `offline_access`, naming the same scopes
/// as the challenge.
fn check_data_scope(data: &Value, challenge_scope: Option<&BTreeSet<String>>, what: &str) {
    let scope = data["scope"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: data.scope is a string: {data}"));
    let words = scope_words(scope);
    assert!(!words.contains(OFFLINE), "{what}: {data}");
    let words: BTreeSet<String> = words.into_iter().map(str::to_owned).collect();
    assert_eq!(
        Some(&words).filter(|w| !w.is_empty()),
        challenge_scope,
        "{what}: data.scope and the challenge agree"
    );
}

/// The 403 step-up challenge of a denied call, and its `data.scope`, never name
/// `offline_access`, whether the token lacks it or not.
#[tokio::test]
async fn the_403_step_up_challenge_never_names_offline_access() {
    let server = TestServer::start_with_policy(false, offline_policy()).await;
    // Tokens with and without offline_access: the first is denied for the other scopes,
    // the second also for offline_access itself.
    let with_offline = server.token(&["notes:read", OFFLINE]);
    let reader = server.token(&["notes:read"]);
    let nobody = server.token(&[]);
    let cases: [(&str, &str, Value, Option<BTreeSet<String>>); 6] = [
        (
            "write_note, holding offline_access",
            &with_offline,
            call_body(1, "write_note"),
            set(&["notes:write"]),
        ),
        (
            "write_note, lacking offline_access",
            &reader,
            call_body(2, "write_note"),
            set(&["notes:write"]),
        ),
        (
            // offline_access, held, meets the `any_of`: only notes:admin is missing.
            "purge, holding offline_access",
            &with_offline,
            call_body(3, "purge"),
            set(&["notes:admin"]),
        ),
        (
            "read_note, no scopes",
            &nobody,
            call_body(4, "read_note"),
            set(&["notes:read"]),
        ),
        (
            "summarize, no scopes",
            &nobody,
            request(6, "prompts/get", json!({"name": "summarize"})),
            set(&["notes:read"]),
        ),
        (
            "notes://welcome, no scopes",
            &nobody,
            request(7, "resources/read", json!({"uri": "notes://welcome"})),
            set(&["notes:read"]),
        ),
    ];
    for (what, token, body, expected) in cases {
        let raw = send(mcp_post(&server, Some(token), &body)).await;
        let (scope, data) = step_up(&raw, what);
        assert_eq!(scope, expected, "{what}");
        check_data_scope(&data, scope.as_ref(), what);
    }
    // Where offline_access is the first of two alternatives the choice of what to name
    // is the policy's; whatever it names, it is not offline_access (that the name is
    // not empty either is `a_challenge_never_names_an_empty_scope`).
    let raw = send(mcp_post(
        &server,
        Some(&nobody),
        &call_body(8, "list_notes"),
    ))
    .await;
    assert_eq!(raw.status, 403, "{raw:?}");
    scope_without_offline_access(&raw.bearer_challenge(), "list_notes");
    let data = &raw.message()["error"]["data"];
    assert!(
        !scope_words(data["scope"].as_str().unwrap_or_default()).contains(OFFLINE),
        "{data}"
    );
}

/// The calls whose only missing scope is `offline_access` (the token holds the rest).
fn offline_only_denials() -> [(&'static str, Value); 3] {
    [
        ("read_note", call_body(1, "read_note")),
        ("delete_note", call_body(2, "delete_note")),
        (
            "summarize",
            request(3, "prompts/get", json!({"name": "summarize"})),
        ),
    ]
}

/// A rule whose only missing scope is `offline_access`: the denial stands, and neither
/// the challenge nor `data.scope` names `offline_access`.
#[tokio::test]
async fn a_denial_for_offline_access_alone_does_not_name_it() {
    let server = TestServer::start_with_policy(false, offline_policy()).await;
    let reader = server.token(&["notes:read"]);
    for (what, body) in offline_only_denials() {
        let raw = send(mcp_post(&server, Some(&reader), &body)).await;
        assert_eq!(raw.status, 403, "{what}: {raw:?}");
        scope_without_offline_access(&raw.bearer_challenge(), what);
        let data = &raw.message()["error"]["data"];
        if let Some(scope) = data["scope"].as_str() {
            assert!(!scope_words(scope).contains(OFFLINE), "{what}: {data}");
        }
    }
}

/// A challenge never names an empty scope (RFC 6749 section 3.3: one or more scope
/// tokens; a client stepping up with `""` would ask for nothing). The scope is chosen
/// with `offline_access` already left out:
/// - when `offline_access` is the only scope missing (`delete_note` needs only it), the
///   403 names no scope, and `data.scope` is left out rather than empty;
/// - under `any_of(["offline_access", "notes:read"])` (`list_notes`) the 403 and the 401
///   hint name `notes:read`, the alternative that lets the client in.
#[tokio::test]
async fn a_challenge_never_names_an_empty_scope() {
    let server = TestServer::start_with_policy(false, offline_policy()).await;
    let mut wrong = Vec::new();
    // 403s.
    for (what, token, body, expected) in [
        (
            "delete_note, holding notes:read",
            server.token(&["notes:read"]),
            call_body(1, "delete_note"),
            None,
        ),
        (
            "list_notes, no scopes",
            server.token(&[]),
            call_body(2, "list_notes"),
            Some("notes:read"),
        ),
    ] {
        let raw = send(mcp_post(&server, Some(&token), &body)).await;
        assert_eq!(raw.status, 403, "{what}: {raw:?}");
        let named = raw.bearer_challenge().param("scope").map(str::to_owned);
        if named.as_deref() != expected {
            wrong.push(format!(
                "{what}: 403 WWW-Authenticate scope {named:?}, expected {expected:?}"
            ));
        }
        let data = &raw.message()["error"]["data"];
        let data_scope = data["scope"].as_str();
        let data_wrong = match expected {
            // No scope to name: `data.scope` may be left out, never empty.
            None => data_scope == Some(""),
            Some(_) => data_scope != expected,
        };
        if data_wrong {
            wrong.push(format!(
                "{what}: 403 data.scope {}, expected {expected:?}",
                data["scope"]
            ));
        }
    }
    // The 401 hint.
    let raw = send(mcp_post(&server, None, &call_body(3, "list_notes"))).await;
    assert_eq!(raw.status, 401, "{raw:?}");
    let hint = raw.bearer_challenge().param("scope").map(str::to_owned);
    if hint.as_deref() != Some("notes:read") {
        wrong.push(format!(
            "list_notes, no token: 401 scope hint {hint:?}, expected \"notes:read\""
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The wrapper's own denials (stdio, or any single-caller transport) carry the same
/// `data.scope`, without `offline_access`.
#[tokio::test]
async fn the_wrappers_denials_do_not_name_offline_access() {
    let issuer =
        rmcp_authz::dev::DevIssuer::new("https://auth.offline.test.invalid").expect("dev issuer");
    let audience = "urn:notes:offline";
    let verifier = issuer.verifier(audience).build().expect("verifier");
    let authz = rmcp_authz::Authz::new(verifier, offline_policy());
    let token = issuer
        .token(audience)
        .scopes(["notes:read"])
        .expires_in(Duration::from_secs(600))
        .mint()
        .expect("mint");
    let principal = authz.verifier().verify(&token).await.expect("valid");
    let wrapped = authz
        .wrap_for(Notes::new(), principal)
        .expect("the policy fits the notes server");
    let (client, server) = connect_in_memory(wrapped).await;

    for (tool, expected) in [
        ("write_note", "notes:write"),
        ("purge", "notes:admin ops:purge"),
    ] {
        let denied = tokio::time::timeout(STEP, client.call_tool(CallToolRequestParams::new(tool)))
            .await
            .expect("answered in time");
        let Err(ServiceError::McpError(error)) = denied else {
            panic!("{tool} with notes:read: expected a denial, got {denied:?}");
        };
        assert_eq!(error.code.0, -32003, "{error:?}");
        let data = error.data.expect("denial data");
        assert_eq!(data["error"], "insufficient_scope", "{data}");
        let scope = data["scope"].as_str().expect("data.scope");
        assert_eq!(scope_words(scope), scope_words(expected), "{tool}: {data}");
    }

    let _ = client.cancel().await;
    let _ = server.await;
}
