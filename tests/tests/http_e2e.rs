//! End-to-end tests over real HTTP on 127.0.0.1: the notes server (ordinary rmcp
//! `#[tool_router]` macros) behind `rmcp-authz`, driven by rmcp's own Streamable HTTP
//! client (protocol 2025-06-18 and 2026-07-28, stateful and stateless servers) and by raw
//! `reqwest` requests where the exact HTTP status and headers matter.
//!
//! Every `WWW-Authenticate` value is read with the small RFC 9110 / RFC 6750 challenge
//! parser in [`rmcp_authz_tests::http`], written independently of the SDK's challenge
//! builder.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::ServiceError;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResult, ClientConfig, GetPromptRequestParams,
    JsonObject, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Policy, ScopeExpr, all_of};
use rmcp_authz::token::AuthError;
use rmcp_authz_tests::http::{
    Challenge, Raw, STEP, call_body, call_body_2026, challenge, http, initialize_body, mcp_post,
    metadata_url, post_2026, send,
};
use rmcp_authz_tests::server::{ISSUER, TestServer};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

const ALL_TOOLS: [&str; 6] = [
    "list_notes",
    "read_note",
    "write_note",
    "delete_note",
    "whoami",
    "purge",
];

// ---------------------------------------------------------------------------------------
// WWW-Authenticate challenges (parsed with `rmcp_authz_tests::http::Challenge`).
// ---------------------------------------------------------------------------------------

/// Space-separated scope lists compared as sets, with no duplicates allowed.
fn scope_set(scopes: &str) -> BTreeSet<&str> {
    let list: Vec<&str> = scopes.split(' ').collect();
    let set: BTreeSet<&str> = list.iter().copied().collect();
    assert_eq!(
        list.len(),
        set.len(),
        "scope list {scopes:?} has duplicates"
    );
    assert!(!set.contains(""), "scope list {scopes:?} has empty entries");
    set
}

#[test]
fn challenge_parser_reads_quoted_strings_and_escapes() {
    let c =
        challenge(r#"Bearer error="insufficient_scope", scope="a b", x=tok, q="say \"hi\" \\o/""#);
    assert_eq!(c.scheme, "Bearer");
    assert_eq!(c.param("error"), Some("insufficient_scope"));
    assert_eq!(c.param("scope"), Some("a b"));
    assert_eq!(c.param("x"), Some("tok"));
    assert_eq!(c.param("q"), Some(r#"say "hi" \o/"#));
    let c = challenge("Bearer");
    assert!(c.params.is_empty());
    let c = challenge(r#"bearer  Realm = "r" ,, "#);
    assert_eq!(c.param("realm"), Some("r"));
    for bad in [
        r#"Bearer error="x"#,
        r#"Bearer error"#,
        r#"Bearer a="1", a="2""#,
        r#"Bearer a="1" b="2""#,
        "",
        r#" ="x""#,
    ] {
        assert!(Challenge::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

// ---------------------------------------------------------------------------------------
// Helpers: rmcp errors, raw HTTP.
// ---------------------------------------------------------------------------------------

fn error_chain<'a>(err: &'a ServiceError) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    if let ServiceError::TransportSend(e) = err {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.error.as_ref());
        while let Some(current) = source {
            out.push(current);
            source = current.source();
        }
    }
    out
}

/// The 403 insufficient_scope error an rmcp client reports, if that is what `err` is.
fn insufficient_scope(err: &ServiceError) -> Option<&InsufficientScopeError> {
    error_chain(err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<InsufficientScopeError>())
}

fn auth_required(err: &ServiceError) -> Option<&AuthRequiredError> {
    error_chain(err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<AuthRequiredError>())
}

/// Asserts `err` is a 403 step-up challenge naming exactly `scope`.
fn assert_step_up(server: &TestServer, err: &ServiceError, scope: &str, what: &str) {
    let denied = insufficient_scope(err)
        .unwrap_or_else(|| panic!("{what}: expected a 403 insufficient_scope, got {err:?}"));
    let c = challenge(&denied.www_authenticate_header);
    c.assert_bearer();
    assert_eq!(
        c.param("error"),
        Some("insufficient_scope"),
        "{what}: {c:?}"
    );
    assert_eq!(
        c.param("scope").map(scope_set),
        Some(scope_set(scope)),
        "{what}: {c:?}"
    );
    assert_eq!(
        c.param("resource_metadata"),
        Some(metadata_url(server).as_str()),
        "{what}: {c:?}"
    );
    assert_eq!(
        denied.required_scope.as_deref().map(scope_set),
        Some(scope_set(scope)),
        "{what}: rmcp read the scope from the challenge"
    );
}

fn args(tool: &str) -> Option<JsonObject> {
    let value = match tool {
        "read_note" => json!({"id": "welcome"}),
        "write_note" => json!({"id": "scratch", "text": "x"}),
        "delete_note" => json!({"id": "scratch"}),
        _ => return None,
    };
    value.as_object().cloned()
}

async fn call(client: &Client, tool: &str) -> Result<CallToolResult, ServiceError> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Some(a) = args(tool) {
        params = params.with_arguments(a);
    }
    tokio::time::timeout(STEP, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("tools/call {tool} timed out"))
}

fn text_of(result: &CallToolResult) -> String {
    assert_ne!(result.is_error, Some(true), "tool error: {result:?}");
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

async fn whoami(client: &Client) -> Value {
    let result = call(client, "whoami").await.expect("whoami is allowed");
    serde_json::from_str(&text_of(&result)).expect("whoami answers JSON")
}

async fn tool_names(client: &Client) -> (BTreeSet<String>, Option<CacheScope>) {
    let list = tokio::time::timeout(STEP, client.list_tools(None))
        .await
        .expect("tools/list timed out")
        .expect("tools/list");
    let names = list.tools.iter().map(|t| t.name.to_string()).collect();
    (names, list.cache_scope)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Legacy,
    Modern,
}

async fn connect(server: &TestServer, kind: Kind, token: &str) -> Client {
    let fut = async {
        match kind {
            Kind::Legacy => server.legacy_client(token).await,
            Kind::Modern => server.modern_client(token).await,
        }
    };
    tokio::time::timeout(STEP, fut)
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("{kind:?} client failed to connect: {e:?}"))
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("fits")
}

// ---------------------------------------------------------------------------------------
// Tools: each allowed or denied exactly per notes_policy.
// ---------------------------------------------------------------------------------------

/// The scopes `tools/call` of each tool needs (the step-up challenge's `scope`); `None`
/// when a valid token suffices.
fn required_scope(tool: &str) -> Option<&'static str> {
    match tool {
        "list_notes" | "read_note" => Some("notes:read"),
        "write_note" => Some("notes:write"),
        "delete_note" => Some("notes:delete"),
        "purge" => Some("notes:admin ops:purge"),
        "whoami" => None,
        other => panic!("unknown tool {other}"),
    }
}

/// Scope sets and the tools each may call, worked out by hand from the hierarchy
/// notes:admin => notes:write, notes:delete; notes:write => notes:read.
const TOOL_CASES: &[(&[&str], &[&str])] = &[
    (&[], &["whoami"]),
    (&["notes:read"], &["list_notes", "read_note", "whoami"]),
    (
        &["notes:write"],
        &["list_notes", "read_note", "write_note", "whoami"],
    ),
    (&["notes:delete"], &["delete_note", "whoami"]),
    (
        &["notes:admin"],
        &[
            "list_notes",
            "read_note",
            "write_note",
            "delete_note",
            "whoami",
        ],
    ),
    (&["ops:purge"], &["whoami"]),
    (
        &["notes:admin", "ops:purge"],
        &[
            "list_notes",
            "read_note",
            "write_note",
            "delete_note",
            "whoami",
            "purge",
        ],
    ),
    (
        &["notes:read", "notes:delete"],
        &["list_notes", "read_note", "delete_note", "whoami"],
    ),
    (
        &["notes:write", "ops:purge"],
        &["list_notes", "read_note", "write_note", "whoami"],
    ),
    // Scopes the policy does not know grant nothing; a bare `*` is not a wildcard.
    (&["*", "admin", "notes", "notes:readonly"], &["whoami"]),
    // `prefix:*` wildcards hold every scope under the prefix.
    (
        &["notes:*"],
        &[
            "list_notes",
            "read_note",
            "write_note",
            "delete_note",
            "whoami",
        ],
    ),
    (
        &["ops:*", "notes:admin"],
        &[
            "list_notes",
            "read_note",
            "write_note",
            "delete_note",
            "whoami",
            "purge",
        ],
    ),
];

async fn check_tool_table(kind: Kind, stateful: bool) {
    for (scopes, allowed) in TOOL_CASES {
        // A fresh server per case: write_note, delete_note and purge change its notes.
        let server = TestServer::start(stateful).await;
        let client = connect(&server, kind, &server.token(scopes)).await;
        let what = format!("{kind:?} client, stateful={stateful}, scopes {scopes:?}");

        let (listed, cache) = tool_names(&client).await;
        assert_eq!(listed, set(allowed), "tools/list for {what}");
        assert_eq!(cache, Some(CacheScope::Private), "tools/list for {what}");

        for tool in ALL_TOOLS {
            let result = call(&client, tool).await;
            if allowed.contains(&tool) {
                let result =
                    result.unwrap_or_else(|e| panic!("{tool} should be allowed for {what}: {e:?}"));
                text_of(&result);
            } else {
                let err = result.expect_err(&format!("{tool} should be denied for {what}"));
                let scope = required_scope(tool).expect("a tool needing no scope is never denied");
                assert_step_up(&server, &err, scope, &format!("{tool} for {what}"));
            }
        }
        let _ = client.cancel().await;
    }
}

#[tokio::test]
async fn tools_follow_the_policy_legacy_client_stateful() {
    check_tool_table(Kind::Legacy, true).await;
}

#[tokio::test]
async fn tools_follow_the_policy_modern_client_stateless() {
    check_tool_table(Kind::Modern, false).await;
}

#[tokio::test]
async fn allowed_tools_really_run() {
    let server = TestServer::start(true).await;
    let client = connect(
        &server,
        Kind::Legacy,
        &server.token(&["notes:admin", "ops:purge"]),
    )
    .await;
    assert_eq!(
        text_of(&call(&client, "list_notes").await.unwrap()),
        "welcome"
    );
    assert_eq!(
        text_of(&call(&client, "read_note").await.unwrap()),
        "Hello from the notes server."
    );
    assert_eq!(
        text_of(&call(&client, "write_note").await.unwrap()),
        "wrote scratch"
    );
    assert_eq!(
        text_of(&call(&client, "list_notes").await.unwrap()),
        "scratch,welcome"
    );
    assert_eq!(
        text_of(&call(&client, "delete_note").await.unwrap()),
        "deleted scratch"
    );
    assert_eq!(text_of(&call(&client, "purge").await.unwrap()), "purged 1");
    assert_eq!(text_of(&call(&client, "list_notes").await.unwrap()), "");
    let _ = client.cancel().await;
}

#[tokio::test]
async fn a_denied_call_runs_nothing() {
    let server = TestServer::start(false).await;
    let writer = connect(&server, Kind::Modern, &server.token(&["notes:write"])).await;
    let err = call(&writer, "purge").await.expect_err("purge is denied");
    assert_step_up(&server, &err, "notes:admin ops:purge", "purge");
    let err = call(&writer, "delete_note")
        .await
        .expect_err("delete is denied");
    assert_step_up(&server, &err, "notes:delete", "delete_note");
    // The notes are untouched.
    assert_eq!(
        text_of(&call(&writer, "list_notes").await.unwrap()),
        "welcome"
    );
    let _ = writer.cancel().await;
}

/// The 403 itself, read without rmcp's client: status, challenge, and a JSON-RPC error
/// body answering the request's id.
#[tokio::test]
async fn a_denied_call_is_a_403_with_a_step_up_challenge() {
    let server = TestServer::start(true).await;
    let token = server.token(&["notes:admin"]);
    let raw = send(mcp_post(&server, Some(&token), &call_body(42, "purge"))).await;
    assert_eq!(raw.status, 403, "{raw:?}");
    let c = raw.bearer_challenge();
    assert_eq!(c.param("error"), Some("insufficient_scope"));
    assert_eq!(
        c.param("scope").map(scope_set),
        Some(scope_set("notes:admin ops:purge"))
    );
    assert_eq!(
        c.param("resource_metadata"),
        Some(metadata_url(&server).as_str())
    );
    let message = raw.message();
    assert_eq!(message["jsonrpc"], "2.0");
    assert_eq!(message["id"], 42);
    assert_eq!(message["error"]["code"], -32003);
}

/// A tool the policy has no rule for is denied by default: 403 without a step-up
/// challenge (no scope would help). Checked through `drafts://` resources, which have no
/// rule, and a tool name the server does not have.
#[tokio::test]
async fn operations_without_a_rule_are_forbidden_without_step_up() {
    let server = TestServer::start(true).await;
    let token = server.token(&["notes:admin", "ops:purge"]);
    let read_draft = json!({
        "jsonrpc": "2.0", "id": 7, "method": "resources/read",
        "params": {"uri": "drafts://one"}
    });
    for body in [read_draft, call_body(8, "no_such_tool")] {
        let raw = send(mcp_post(&server, Some(&token), &body)).await;
        assert_eq!(raw.status, 403, "{body}: {raw:?}");
        assert_eq!(raw.error_code(), -32003, "{body}");
        assert_eq!(raw.message()["id"], body["id"]);
        if let Some(value) = raw.header("www-authenticate") {
            let c = challenge(value);
            assert_ne!(
                c.param("error"),
                Some("insufficient_scope"),
                "no scope can grant an operation without a rule: {raw:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lists: filtered per caller and marked private.
// ---------------------------------------------------------------------------------------

struct Listed {
    resources: BTreeSet<String>,
    templates: BTreeSet<String>,
    prompts: BTreeSet<String>,
}

async fn lists(client: &Client) -> Listed {
    let resources = tokio::time::timeout(STEP, client.list_resources(None))
        .await
        .unwrap()
        .expect("resources/list");
    assert_eq!(resources.cache_scope, Some(CacheScope::Private));
    let templates = tokio::time::timeout(STEP, client.list_resource_templates(None))
        .await
        .unwrap()
        .expect("resources/templates/list");
    assert_eq!(templates.cache_scope, Some(CacheScope::Private));
    let prompts = tokio::time::timeout(STEP, client.list_prompts(None))
        .await
        .unwrap()
        .expect("prompts/list");
    assert_eq!(prompts.cache_scope, Some(CacheScope::Private));
    Listed {
        resources: resources.resources.iter().map(|r| r.uri.clone()).collect(),
        templates: templates
            .resource_templates
            .iter()
            .map(|t| t.uri_template.clone())
            .collect(),
        prompts: prompts.prompts.iter().map(|p| p.name.clone()).collect(),
    }
}

/// (granted scopes, resources listed, templates listed, prompts listed).
type ListCase = (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

#[tokio::test]
async fn resource_template_and_prompt_lists_are_filtered_per_caller() {
    let cases: &[ListCase] = &[
        (&[], &["notes://index"], &[], &[]),
        (
            &["notes:read"],
            &["notes://index", "notes://welcome"],
            &["notes://{id}"],
            &["summarize"],
        ),
        (
            &["notes:write"],
            &["notes://index", "notes://welcome"],
            &["notes://{id}"],
            &["summarize"],
        ),
        (&["notes:delete"], &["notes://index"], &[], &[]),
        (
            &["notes:admin"],
            &["notes://index", "notes://welcome"],
            &["notes://{id}"],
            &["summarize", "audit_report"],
        ),
        (
            &["notes:admin", "ops:purge"],
            &["notes://index", "notes://welcome"],
            &["notes://{id}"],
            &["summarize", "audit_report"],
        ),
    ];
    for stateful in [true, false] {
        let server = TestServer::start(stateful).await;
        for kind in [Kind::Legacy, Kind::Modern] {
            for (scopes, resources, templates, prompts) in cases {
                let client = connect(&server, kind, &server.token(scopes)).await;
                let got = lists(&client).await;
                let what = format!("{kind:?}, stateful={stateful}, scopes {scopes:?}");
                assert_eq!(got.resources, set(resources), "resources/list, {what}");
                assert_eq!(got.templates, set(templates), "templates, {what}");
                assert!(
                    !got.templates.contains("drafts://{id}"),
                    "drafts has no rule"
                );
                assert_eq!(got.prompts, set(prompts), "prompts/list, {what}");
                let _ = client.cancel().await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// resources/read and prompts/get are gated.
// ---------------------------------------------------------------------------------------

async fn read(client: &Client, uri: &str) -> Result<String, ServiceError> {
    let result = tokio::time::timeout(
        STEP,
        client.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await
    .expect("resources/read timed out")?;
    Ok(
        serde_json::to_value(&result).unwrap()["contents"][0]["text"]
            .as_str()
            .expect("text contents")
            .to_owned(),
    )
}

async fn prompt(client: &Client, name: &str) -> Result<String, ServiceError> {
    let result = tokio::time::timeout(
        STEP,
        client.get_prompt(GetPromptRequestParams::new(name.to_owned())),
    )
    .await
    .expect("prompts/get timed out")?;
    Ok(
        serde_json::to_value(&result).unwrap()["messages"][0]["content"]["text"]
            .as_str()
            .expect("text message")
            .to_owned(),
    )
}

#[tokio::test]
async fn resources_read_is_gated() {
    for (kind, stateful) in [(Kind::Legacy, true), (Kind::Modern, false)] {
        let server = TestServer::start(stateful).await;
        let nobody = connect(&server, kind, &server.token(&[])).await;
        assert_eq!(read(&nobody, "notes://index").await.unwrap(), "welcome");
        let err = read(&nobody, "notes://welcome").await.unwrap_err();
        assert_step_up(
            &server,
            &err,
            "notes:read",
            "notes://welcome with no scopes",
        );
        let err = read(&nobody, "notes://anything").await.unwrap_err();
        assert_step_up(&server, &err, "notes:read", "notes://anything");
        let _ = nobody.cancel().await;

        let reader = connect(&server, kind, &server.token(&["notes:read"])).await;
        assert_eq!(
            read(&reader, "notes://welcome").await.unwrap(),
            "Hello from the notes server."
        );
        assert_eq!(read(&reader, "notes://index").await.unwrap(), "welcome");
        let _ = reader.cancel().await;

        // Through the hierarchy: admin => write => read.
        let admin = connect(&server, kind, &server.token(&["notes:admin"])).await;
        assert_eq!(
            read(&admin, "notes://welcome").await.unwrap(),
            "Hello from the notes server."
        );
        let _ = admin.cancel().await;
    }
}

#[tokio::test]
async fn prompts_get_is_gated() {
    for (kind, stateful) in [(Kind::Legacy, false), (Kind::Modern, true)] {
        let server = TestServer::start(stateful).await;
        let nobody = connect(&server, kind, &server.token(&[])).await;
        let err = prompt(&nobody, "summarize").await.unwrap_err();
        assert_step_up(&server, &err, "notes:read", "summarize, no scopes");
        let err = prompt(&nobody, "audit_report").await.unwrap_err();
        assert_step_up(&server, &err, "notes:admin", "audit_report, no scopes");
        let _ = nobody.cancel().await;

        let writer = connect(&server, kind, &server.token(&["notes:write"])).await;
        assert_eq!(
            prompt(&writer, "summarize").await.unwrap(),
            "summarize: welcome"
        );
        let err = prompt(&writer, "audit_report").await.unwrap_err();
        assert_step_up(&server, &err, "notes:admin", "audit_report as writer");
        let _ = writer.cancel().await;

        let admin = connect(&server, kind, &server.token(&["notes:admin"])).await;
        assert_eq!(
            prompt(&admin, "audit_report").await.unwrap(),
            "audit_report: welcome"
        );
        assert_eq!(
            prompt(&admin, "summarize").await.unwrap(),
            "summarize: welcome"
        );
        let _ = admin.cancel().await;
    }
}

/// `completion/complete` is decided by the HTTP layer as a use of the prompt or resource
/// it completes: a caller lacking its scopes gets the 403 step-up challenge (which rmcp's
/// client reads, as for a tool call), and the message names the completion.
#[tokio::test]
async fn completions_are_refused_with_step_up_challenges() {
    let server = TestServer::start(true).await;
    let reader = connect(&server, Kind::Legacy, &server.token(&["notes:read"])).await;
    let err = tokio::time::timeout(
        STEP,
        reader.complete_prompt_simple("audit_report", "topic", "a"),
    )
    .await
    .unwrap()
    .expect_err("completing a prompt the caller may not get is refused");
    assert_step_up(&server, &err, "notes:admin", "completion of audit_report");

    // Raw: the status, the challenge, and a message that names the method refused.
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "completion/complete",
        "params": {
            "ref": {"type": "ref/prompt", "name": "audit_report"},
            "argument": {"name": "topic", "value": "a"}
        }
    });
    let raw = send(mcp_post(
        &server,
        Some(&server.token(&["notes:read"])),
        &body,
    ))
    .await;
    assert_eq!(raw.status, 403, "{}", raw.body);
    assert_eq!(raw.bearer_challenge().param("scope"), Some("notes:admin"));
    let message = raw.message();
    assert_eq!(message["id"], 7, "{message}");
    let text = message["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("completion/complete ") && text.contains("audit_report"),
        "{text}"
    );

    // A resource no rule covers: a plain 403, not a challenge a new token could meet.
    let err = tokio::time::timeout(
        STEP,
        reader.complete_resource_simple("drafts://{id}", "id", "a"),
    )
    .await
    .unwrap()
    .expect_err("drafts has no rule");
    assert!(
        insufficient_scope(&err).is_none(),
        "no scope would help: {err:?}"
    );

    // A completion the caller may use gets past the gate (the notes server itself has no
    // completions, so whatever it answers, it is not FORBIDDEN).
    let allowed = tokio::time::timeout(
        STEP,
        reader.complete_prompt_simple("summarize", "topic", "a"),
    )
    .await
    .unwrap();
    if let Err(ServiceError::McpError(error)) = &allowed {
        assert_ne!(error.code.0, -32003, "{error:?}");
    }
    let _ = reader.cancel().await;
}

// ---------------------------------------------------------------------------------------
// The Principal reaches the tool.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn whoami_sees_the_verified_principal() {
    let server = TestServer::start(true).await;
    for kind in [Kind::Legacy, Kind::Modern] {
        let client = connect(
            &server,
            kind,
            &server.token(&["notes:read", "notes:delete"]),
        )
        .await;
        let who = whoami(&client).await;
        assert_eq!(who["subject"], "alice", "{kind:?}: {who}");
        assert_eq!(who["client"], "notes-agent");
        assert_eq!(
            who["agent"], "notes-agent",
            "without delegation the agent is the client"
        );
        assert_eq!(who["scopes"], json!(["notes:read", "notes:delete"]));
        assert_eq!(who["chain"], json!([]));
        let _ = client.cancel().await;
    }
}

#[tokio::test]
async fn whoami_sees_a_delegation_chain() {
    let server = TestServer::start(false).await;
    let token = server
        .issuer
        .token(&server.url)
        .subject("bob")
        .client_id("planner-app")
        .scopes(["notes:read"])
        .actor("planner")
        .actor("orchestrator")
        .mint()
        .expect("mint");
    for kind in [Kind::Legacy, Kind::Modern] {
        let client = connect(&server, kind, &token).await;
        let who = whoami(&client).await;
        assert_eq!(who["subject"], "bob", "{kind:?}: {who}");
        assert_eq!(who["client"], "planner-app");
        assert_eq!(who["agent"], "planner", "the current actor acts");
        assert_eq!(who["chain"], json!(["planner", "orchestrator"]));
        assert_eq!(who["scopes"], json!(["notes:read"]));
        // Delegation does not widen what the token may do.
        let err = call(&client, "write_note").await.unwrap_err();
        assert_step_up(&server, &err, "notes:write", "delegated write");
        let _ = client.cancel().await;
    }
}

// ---------------------------------------------------------------------------------------
// Both protocol generations, both server modes.
// ---------------------------------------------------------------------------------------

async fn check_protocol(kind: Kind, stateful: bool) {
    let server = TestServer::start(stateful).await;
    let client = connect(&server, kind, &server.token(&["notes:write"])).await;
    let info = client.peer_info().expect("server info after the handshake");
    let expected = match kind {
        Kind::Legacy => ProtocolVersion::V_2025_06_18,
        Kind::Modern => ProtocolVersion::V_2026_07_28,
    };
    assert_eq!(info.protocol_version, expected, "negotiated version");

    let (tools, cache) = tool_names(&client).await;
    assert_eq!(
        tools,
        set(&["list_notes", "read_note", "write_note", "whoami"])
    );
    assert_eq!(cache, Some(CacheScope::Private));
    assert_eq!(
        text_of(&call(&client, "write_note").await.unwrap()),
        "wrote scratch"
    );
    assert_eq!(
        text_of(&call(&client, "list_notes").await.unwrap()),
        "scratch,welcome"
    );
    let err = call(&client, "purge").await.unwrap_err();
    assert_step_up(&server, &err, "notes:admin ops:purge", "purge");
    // The client is still usable after a 403.
    assert_eq!(whoami(&client).await["subject"], "alice");
    assert_eq!(read(&client, "notes://scratch").await.unwrap(), "x");
    let _ = client.cancel().await;
}

#[tokio::test]
async fn modern_client_stateful_server() {
    check_protocol(Kind::Modern, true).await;
}

#[tokio::test]
async fn modern_client_stateless_server() {
    check_protocol(Kind::Modern, false).await;
}

#[tokio::test]
async fn legacy_client_stateful_server() {
    check_protocol(Kind::Legacy, true).await;
}

#[tokio::test]
async fn legacy_client_stateless_server() {
    check_protocol(Kind::Legacy, false).await;
}

// ---------------------------------------------------------------------------------------
// 401: no token, bad tokens.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn no_token_is_a_401_naming_the_metadata() {
    for stateful in [true, false] {
        let server = TestServer::start(stateful).await;
        let raw = send(mcp_post(&server, None, &initialize_body())).await;
        assert_eq!(raw.status, 401, "{raw:?}");
        let c = raw.bearer_challenge();
        assert_eq!(c.names(), BTreeSet::from(["resource_metadata"]), "{c:?}");
        assert_eq!(
            c.param("resource_metadata"),
            Some(metadata_url(&server).as_str())
        );
        assert_eq!(raw.error_code(), -32004);
        assert!(
            raw.header("mcp-session-id").is_none(),
            "no session without a token"
        );

        // A scope hint: what the requested operation needs.
        for (tool, hint) in [
            ("purge", Some("notes:admin ops:purge")),
            ("list_notes", Some("notes:read")),
            ("delete_note", Some("notes:delete")),
            ("whoami", None),
        ] {
            let raw = send(mcp_post(&server, None, &call_body(3, tool))).await;
            assert_eq!(raw.status, 401, "{tool}: {raw:?}");
            let c = raw.bearer_challenge();
            assert_eq!(
                c.param("error"),
                None,
                "no error code without a token: {c:?}"
            );
            assert_eq!(
                c.param("resource_metadata"),
                Some(metadata_url(&server).as_str())
            );
            assert_eq!(
                c.param("scope").map(scope_set),
                hint.map(scope_set),
                "{tool}"
            );
        }
    }
}

#[tokio::test]
async fn rmcp_clients_without_a_token_get_the_challenge() {
    let server = TestServer::start(true).await;
    for kind in [Kind::Legacy, Kind::Modern] {
        let result = match kind {
            Kind::Legacy => server.legacy_client("").await,
            Kind::Modern => server.modern_client("").await,
        };
        let err = result.expect_err("no token, no connection");
        let header = err
            .auth_challenge()
            .unwrap_or_else(|| panic!("{kind:?}: a challenge in {err:?}"));
        let c = challenge(header);
        c.assert_bearer();
        assert_eq!(
            c.param("resource_metadata"),
            Some(metadata_url(&server).as_str())
        );
    }
}

async fn assert_invalid_token(server: &TestServer, token: &str, description: &str) {
    for body in [initialize_body(), call_body(5, "whoami")] {
        let raw = send(mcp_post(server, Some(token), &body)).await;
        assert_eq!(raw.status, 401, "{description}: {raw:?}");
        let c = raw.bearer_challenge();
        assert_eq!(c.param("error"), Some("invalid_token"), "{c:?}");
        assert_eq!(c.param("error_description"), Some(description), "{c:?}");
        assert_eq!(
            c.param("resource_metadata"),
            Some(metadata_url(server).as_str())
        );
        assert_eq!(raw.error_code(), -32004);
        assert!(
            !raw.body.contains(token),
            "the response must not echo the token"
        );
    }
}

#[tokio::test]
async fn invalid_tokens_are_a_401_invalid_token() {
    let server = TestServer::start(true).await;
    let malformed = AuthError::Malformed {
        reason: String::new(),
    };
    assert_invalid_token(&server, "garbage", malformed.description()).await;
    assert_invalid_token(&server, "a.b.c", malformed.description()).await;

    let now = unix_now();
    let expired = server
        .issuer
        .token(&server.url)
        .subject("alice")
        .scopes(["notes:read"])
        .claim("iat", now - 7200)
        .claim("exp", now - 3600)
        .mint()
        .unwrap();
    let expired_error = AuthError::Expired {
        exp: 0,
        now: 0,
        leeway_secs: 0,
    };
    assert_invalid_token(&server, &expired, expired_error.description()).await;

    let other_audience = server
        .issuer
        .token("https://other.example/mcp")
        .subject("alice")
        .scopes(["notes:read"])
        .mint()
        .unwrap();
    let wrong_audience = AuthError::WrongAudience {
        expected: String::new(),
        found: Vec::new(),
    };
    assert_invalid_token(&server, &other_audience, wrong_audience.description()).await;

    // Same issuer name, different signing key: a forgery.
    let impostor = DevIssuer::new(ISSUER).unwrap();
    let forged = impostor
        .token(&server.url)
        .subject("alice")
        .scopes(["notes:admin", "ops:purge"])
        .mint()
        .unwrap();
    let raw = send(mcp_post(&server, Some(&forged), &call_body(1, "purge"))).await;
    assert_eq!(raw.status, 401, "{raw:?}");
    assert_eq!(raw.www_authenticate().param("error"), Some("invalid_token"));

    // An ID token (typ JWT) is not an access token.
    let id_token = server
        .issuer
        .token(&server.url)
        .typ(Some("JWT"))
        .mint()
        .unwrap();
    let raw = send(mcp_post(&server, Some(&id_token), &call_body(1, "whoami"))).await;
    assert_eq!(raw.status, 401, "{raw:?}");
    assert_eq!(raw.www_authenticate().param("error"), Some("invalid_token"));

    // The server is fine afterwards.
    let good = server.token(&["notes:read"]);
    let raw = send(mcp_post(&server, Some(&good), &initialize_body())).await;
    assert_eq!(raw.status, 200, "{raw:?}");
}

#[tokio::test]
async fn an_rmcp_client_with_an_expired_token_gets_invalid_token() {
    let server = TestServer::start(false).await;
    let now = unix_now();
    let expired = server
        .issuer
        .token(&server.url)
        .subject("alice")
        .claim("iat", now - 7200)
        .claim("exp", now - 3600)
        .mint()
        .unwrap();
    let err = server
        .legacy_client(&expired)
        .await
        .expect_err("expired token");
    let c = challenge(err.auth_challenge().expect("a challenge"));
    assert_eq!(c.param("error"), Some("invalid_token"));
    // A 403 on a later request is reported as insufficient scope, not as a 401.
    let client = connect(&server, Kind::Modern, &server.token(&[])).await;
    let err = call(&client, "purge").await.unwrap_err();
    assert!(auth_required(&err).is_none(), "a 403, not a 401: {err:?}");
    assert!(insufficient_scope(&err).is_some(), "{err:?}");
    let _ = client.cancel().await;
}

// ---------------------------------------------------------------------------------------
// Protected Resource Metadata.
// ---------------------------------------------------------------------------------------

async fn get_json(url: &str) -> (u16, Option<String>, Value) {
    let raw = send(http().get(url)).await;
    let content_type = raw.header("content-type").map(str::to_owned);
    let value = serde_json::from_str(&raw.body)
        .unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {raw:?}"));
    (raw.status, content_type, value)
}

fn assert_metadata(server: &TestServer, doc: &Value, scopes: &[&str]) {
    assert_eq!(doc["resource"], json!(server.url), "{doc}");
    assert_eq!(doc["authorization_servers"], json!([ISSUER]), "{doc}");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]), "{doc}");
    let supported: BTreeSet<&str> = doc["scopes_supported"]
        .as_array()
        .expect("scopes_supported is an array")
        .iter()
        .map(|s| s.as_str().expect("scopes are strings"))
        .collect();
    assert_eq!(
        supported.len(),
        doc["scopes_supported"].as_array().unwrap().len(),
        "no duplicates: {doc}"
    );
    assert!(!supported.contains("offline_access"), "{doc}");
    assert_eq!(supported, scopes.iter().copied().collect(), "{doc}");
}

const NOTES_SCOPES: [&str; 5] = [
    "notes:admin",
    "notes:delete",
    "notes:read",
    "notes:write",
    "ops:purge",
];

#[tokio::test]
async fn protected_resource_metadata_is_served_without_a_token() {
    let server = TestServer::start(true).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (status, content_type, doc) = get_json(&format!("{}{path}", server.origin)).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}: {content_type:?}"
        );
        assert_metadata(&server, &doc, &NOTES_SCOPES);
    }

    // The URL a challenge names is the document.
    let raw = send(mcp_post(&server, None, &initialize_body())).await;
    let c = raw.www_authenticate();
    let (status, _, doc) = get_json(c.param("resource_metadata").unwrap()).await;
    assert_eq!(status, 200);
    assert_metadata(&server, &doc, &NOTES_SCOPES);
}

#[tokio::test]
async fn protected_resource_metadata_never_lists_offline_access() {
    let policy = Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:delete"])
        .implies("notes:write", ["notes:read"])
        .implies("offline_access", ["notes:read"])
        .tool("purge", all_of(["notes:admin", "ops:purge"]))
        .tool(
            "list_notes",
            rmcp_authz::policy::any_of(["notes:read", "offline_access"]),
        )
        .tool("read_note", "notes:read")
        .tool("write_note", "notes:write")
        .tool("delete_note", "notes:delete")
        .tool("whoami", ScopeExpr::authenticated())
        .resource("notes://index", ScopeExpr::authenticated())
        .resource("notes://{id}", "notes:read")
        .prompt("summarize", "notes:read")
        .prompt("audit_report", "notes:admin")
        .build()
        .expect("policy");
    let server = TestServer::start_with_policy(true, policy).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (status, _, doc) = get_json(&format!("{}{path}", server.origin)).await;
        assert_eq!(status, 200);
        assert_metadata(&server, &doc, &NOTES_SCOPES);
    }
}

// ---------------------------------------------------------------------------------------
// Sessions belong to the principal that opened them.
// ---------------------------------------------------------------------------------------

async fn open_session(server: &TestServer, token: &str) -> String {
    let raw = send(mcp_post(server, Some(token), &initialize_body())).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let session = raw
        .header("mcp-session-id")
        .expect("a stateful server opens a session")
        .to_owned();
    assert!(
        raw.message()["result"]["protocolVersion"].is_string(),
        "{raw:?}"
    );
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let raw =
        send(mcp_post(server, Some(token), &initialized).header("mcp-session-id", &session)).await;
    assert_eq!(raw.status, 202, "{raw:?}");
    session
}

async fn session_call(server: &TestServer, token: &str, session: &str, id: i64, tool: &str) -> Raw {
    let mut body = call_body(id, tool);
    if let Some(a) = args(tool) {
        body["params"]["arguments"] = Value::Object(a);
    }
    send(mcp_post(server, Some(token), &body).header("mcp-session-id", session)).await
}

/// The text of a successful `tools/call` answer (not a JSON-RPC error, not a tool error).
fn result_text(raw: &Raw) -> String {
    assert_eq!(raw.status, 200, "{raw:?}");
    let message = raw.message();
    assert_eq!(message["result"]["isError"], false, "{raw:?}");
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {raw:?}"))
        .to_owned()
}

#[tokio::test]
async fn a_session_cannot_be_used_by_another_principal() {
    let server = TestServer::start(true).await;
    let alice = server.token(&["notes:read"]);
    let session = open_session(&server, &alice).await;

    let raw = session_call(&server, &alice, &session, 2, "list_notes").await;
    assert_eq!(result_text(&raw), "welcome");

    let mallory = server
        .issuer
        .token(&server.url)
        .subject("mallory")
        .client_id("notes-agent")
        .scopes(["notes:admin", "ops:purge"])
        .mint()
        .unwrap();
    // Same subject, another client: also another principal.
    let alice_elsewhere = server
        .issuer
        .token(&server.url)
        .subject("alice")
        .client_id("other-app")
        .scopes(["notes:read"])
        .mint()
        .unwrap();
    for (who, token) in [
        ("mallory", &mallory),
        ("alice via other-app", &alice_elsewhere),
    ] {
        for tool in ["list_notes", "purge", "whoami"] {
            let raw = session_call(&server, token, &session, 9, tool).await;
            assert_eq!(raw.status, 403, "{who} {tool} on alice's session: {raw:?}");
            assert_eq!(raw.error_code(), -32003);
            assert_eq!(raw.message()["id"], 9);
        }
        let list = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"});
        let raw =
            send(mcp_post(&server, Some(token), &list).header("mcp-session-id", &session)).await;
        assert_eq!(
            raw.status, 403,
            "{who} tools/list on alice's session: {raw:?}"
        );
        // Nor may they listen on it, or end it.
        let raw = send(
            http()
                .get(&server.url)
                .header("accept", "text/event-stream")
                .header("authorization", format!("Bearer {token}"))
                .header("mcp-session-id", &session),
        )
        .await;
        assert_eq!(raw.status, 403, "{who} GET on alice's session: {raw:?}");
        let raw = send(
            http()
                .delete(&server.url)
                .header("authorization", format!("Bearer {token}"))
                .header("mcp-session-id", &session),
        )
        .await;
        assert_eq!(raw.status, 403, "{who} DELETE of alice's session: {raw:?}");
    }

    // Alice's session was not disturbed, and nothing was purged.
    let raw = session_call(&server, &alice, &session, 11, "list_notes").await;
    assert_eq!(result_text(&raw), "welcome");
    let raw = session_call(&server, &alice, &session, 12, "whoami").await;
    let who: Value = serde_json::from_str(&result_text(&raw)).unwrap();
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["scopes"], json!(["notes:read"]));

    // Each request is decided with the token it carries, not the one that opened the
    // session: alice with a fresh admin token is still alice, with the new scopes...
    let alice_admin = server.token(&["notes:admin"]);
    let raw = session_call(&server, &alice_admin, &session, 13, "whoami").await;
    let who: Value = serde_json::from_str(&result_text(&raw)).unwrap();
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["scopes"], json!(["notes:admin"]));
    let raw = session_call(&server, &alice_admin, &session, 14, "write_note").await;
    assert_eq!(result_text(&raw), "wrote scratch");
    // ...and with her first token again she may not write.
    let raw = session_call(&server, &alice, &session, 15, "write_note").await;
    assert_eq!(raw.status, 403, "{raw:?}");
    assert_eq!(raw.www_authenticate().param("scope"), Some("notes:write"));
    // An expired token of hers is refused outright, on her own session.
    let now = unix_now();
    let expired = server
        .issuer
        .token(&server.url)
        .subject("alice")
        .client_id("notes-agent")
        .scopes(["notes:admin"])
        .claim("iat", now - 7200)
        .claim("exp", now - 3600)
        .mint()
        .unwrap();
    let raw = session_call(&server, &expired, &session, 16, "list_notes").await;
    assert_eq!(raw.status, 401, "{raw:?}");
    assert_eq!(raw.www_authenticate().param("error"), Some("invalid_token"));

    // She can end her own session.
    let raw = send(
        http()
            .delete(&server.url)
            .header("authorization", format!("Bearer {alice}"))
            .header("mcp-session-id", &session),
    )
    .await;
    assert!(
        (200..300).contains(&raw.status),
        "alice ends her session: {raw:?}"
    );
    let raw = session_call(&server, &alice, &session, 17, "list_notes").await;
    assert_eq!(raw.status, 404, "the session is gone: {raw:?}");
}

#[tokio::test]
async fn sessions_of_two_users_stay_apart_with_rmcp_clients() {
    let server = TestServer::start(true).await;
    let alice = connect(&server, Kind::Legacy, &server.token(&["notes:read"])).await;
    let mallory_token = server
        .issuer
        .token(&server.url)
        .subject("mallory")
        .client_id("notes-agent")
        .scopes(["notes:admin", "ops:purge"])
        .mint()
        .unwrap();
    let mallory = connect(&server, Kind::Legacy, &mallory_token).await;
    assert_eq!(whoami(&alice).await["subject"], "alice");
    assert_eq!(whoami(&mallory).await["subject"], "mallory");
    let (alice_tools, _) = tool_names(&alice).await;
    let (mallory_tools, _) = tool_names(&mallory).await;
    assert_eq!(alice_tools, set(&["list_notes", "read_note", "whoami"]));
    assert_eq!(mallory_tools, set(&ALL_TOOLS));
    let err = call(&alice, "purge").await.unwrap_err();
    assert_step_up(&server, &err, "notes:admin ops:purge", "alice purge");
    let _ = alice.cancel().await;
    let _ = mallory.cancel().await;
}

// ---------------------------------------------------------------------------------------
// 2026-07-28: Mcp-Method / Mcp-Name must agree with the body.
// ---------------------------------------------------------------------------------------

/// Sends a 2026-07-28 `tools/call` of `tool` (JSON-RPC id `id`) with these `Mcp-Method`
/// and `Mcp-Name` headers.
async fn send_call_2026(
    server: &TestServer,
    token: &str,
    id: i64,
    tool: &str,
    method: &str,
    name: &str,
) -> Raw {
    send(post_2026(
        server,
        token,
        &call_body_2026(id, tool),
        method,
        name,
    ))
    .await
}

/// A 400 answered by the authorization layer itself (JSON-RPC -32600 naming the header),
/// not merely by rmcp's own header validation behind it.
fn assert_layer_header_400(raw: &Raw, header: &str) {
    assert_eq!(raw.status, 400, "{raw:?}");
    let message = raw.message();
    assert_eq!(message["error"]["code"], -32600, "{raw:?}");
    let text = message["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains(header), "{text:?} should name {header}");
}

#[tokio::test]
async fn mcp_name_must_match_the_body() {
    for stateful in [true, false] {
        let server = TestServer::start(stateful).await;
        let reader = server.token(&["notes:read"]);

        // The header names an allowed tool, the body a forbidden one: refused as malformed,
        // before any policy decision or handler.
        let raw = send_call_2026(&server, &reader, 1, "purge", "tools/call", "list_notes").await;
        assert_layer_header_400(&raw, "Mcp-Name");
        assert_eq!(raw.message()["id"], 1);

        // The other way round, with a token allowed both: still refused.
        let admin = server.token(&["notes:admin", "ops:purge"]);
        let raw = send_call_2026(&server, &admin, 2, "list_notes", "tools/call", "purge").await;
        assert_layer_header_400(&raw, "Mcp-Name");

        // Mcp-Method disagreeing with the body.
        let raw = send_call_2026(
            &server,
            &reader,
            3,
            "list_notes",
            "tools/list",
            "list_notes",
        )
        .await;
        assert_layer_header_400(&raw, "Mcp-Method");

        // Nothing was purged.
        let raw = send_call_2026(
            &server,
            &reader,
            4,
            "list_notes",
            "tools/call",
            "list_notes",
        )
        .await;
        assert_eq!(raw.status, 200, "{raw:?}");
        let message = raw.message();
        assert_eq!(message["id"], 4);
        assert_eq!(
            message["result"]["content"][0]["text"], "welcome",
            "{message}"
        );
    }
}

/// The layer decides a 2026-07-28 request from its `Mcp-Method` / `Mcp-Name` headers
/// before it reads the body. A header that names an allowed tool over a body that calls a
/// denied one must not let the denied tool run: the request is refused (the layer's 400,
/// audited as a refusal), whatever the body says besides, on stateful and stateless
/// servers alike.
#[tokio::test]
async fn a_header_naming_an_allowed_tool_never_runs_a_denied_one() {
    use std::sync::Arc;

    use rmcp_authz::audit::{Auditor, DecisionKind, Durability, MemorySink};

    for stateful in [true, false] {
        let sink = Arc::new(MemorySink::new());
        let auditor = Auditor::builder(sink.clone())
            .durability(Durability::Durable)
            .build()
            .expect("auditor");
        let server = TestServer::start_audited(stateful, auditor).await;
        let reader = server.token(&["notes:read"]);

        let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"0"}}"#;
        // (body, refused by the layer with 400 or 403)
        let bodies = [
            (call_body_2026(1, "purge").to_string(), true),
            // The denied tool behind a repeated member, either way round. rmcp reads such a
            // body as a custom request `tools/call` (its own header check sees the last
            // member): refused by rmcp's check and then the layer's, or by the wrapper, for
            // which no rule names that custom request.
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"list_notes","name":"purge","arguments":{{}},{meta}}}}}"#
                ),
                false,
            ),
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"purge","name":"list_notes","arguments":{{}},{meta}}}}}"#
                ),
                false,
            ),
        ];
        for (body, by_the_layer) in bodies {
            let raw = send(
                rmcp_authz_tests::http::post(&server, body.clone())
                    .header("authorization", format!("Bearer {reader}"))
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "list_notes"),
            )
            .await;
            let refused = raw.status == 400
                || raw.status == 403
                || (!by_the_layer
                    && raw.status == 200
                    && raw.message()["error"]["code"] == json!(-32003));
            assert!(refused, "stateful={stateful}, {body}: {raw:?}");
            assert!(!raw.body.contains("purged"), "{raw:?}");
        }

        // Nothing was purged: the notes are all there.
        let raw = send(post_2026(
            &server,
            &reader,
            &call_body_2026(4, "list_notes"),
            "tools/call",
            "list_notes",
        ))
        .await;
        assert_eq!(raw.status, 200, "{raw:?}");
        assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");

        // The plain lie was refused by the layer, and audited (durably, before the answer)
        // as a refusal of the body's tool.
        let events = sink.events();
        assert!(
            events
                .iter()
                .all(|e| e.target.as_deref() != Some("purge") || e.decision == DecisionKind::Deny),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| e.target.as_deref() == Some("purge")
                && e.decision == DecisionKind::Deny
                && e.reason_code.as_deref() == Some("invalid_request")),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn matching_2026_headers_are_accepted_and_decided() {
    let server = TestServer::start(false).await;
    let reader = server.token(&["notes:read"]);
    // Plain, and SEP-2243 base64-wrapped.
    for name in ["list_notes", "=?base64?bGlzdF9ub3Rlcw==?="] {
        let raw = send_call_2026(&server, &reader, 5, "list_notes", "tools/call", name).await;
        assert_eq!(raw.status, 200, "Mcp-Name {name}: {raw:?}");
        assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");
    }
    // Matching headers for a tool the token may not call: the policy decides (403).
    let raw = send_call_2026(&server, &reader, 6, "purge", "tools/call", "purge").await;
    assert_eq!(raw.status, 403, "{raw:?}");
    let c = raw.www_authenticate();
    assert_eq!(c.param("error"), Some("insufficient_scope"));
    assert_eq!(
        c.param("scope").map(scope_set),
        Some(scope_set("notes:admin ops:purge"))
    );
}
