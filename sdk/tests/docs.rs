//! docs/policy.md's error-code tables, checked against the crate; and docs/conformance.md's
//! tests, checked to exist.
//!
//! Each table is parsed from the markdown, and every row is checked against what the code
//! does: the constants, `RejectionKind::code()`, `AuthError::error_code()`,
//! `Denial::code()` and `Denial::error_data()`, and the status, `WWW-Authenticate` and
//! JSON-RPC body of a real response of `Authz::router` for the situation the row
//! describes. A wrong row fails, and so does a code the crate defines that no row lists.
//!
//! The enums are `#[non_exhaustive]`, so no `match` here can prove every variant is
//! listed: the variants are listed by hand below (`REJECTION_KINDS`, `auth_errors`,
//! `denials`), and the tables must list exactly those. A variant added to the crate must
//! be added here and to the docs.
#![cfg(feature = "http")]

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt as _};
use rmcp_authz::audit::{Auditor, MemorySink};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::http::{AuthRejection, RejectionKind};
use rmcp_authz::policy::{Conditions, Denial, Operation, Policy, Rule, ScopeExpr};
use rmcp_authz::request_state::StateRejected;
use rmcp_authz::server::{FORBIDDEN, UNAUTHENTICATED};
use rmcp_authz::token::{Algorithm, AuthError, Verifier};
use rmcp_authz::{AUDIT_UNAVAILABLE, Authz, ManualClock, Principal};
use serde_json::{Value, json};
use tower_service::Service as _;

const ISSUER: &str = "https://auth.docs.invalid";
const RESOURCE: &str = "http://127.0.0.1/mcp";

// ---------------------------------------------------------------------------------------
// The tables.
// ---------------------------------------------------------------------------------------

fn policy_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A markdown table: its header cells and its rows, cells trimmed (`\|` kept as `|`).
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The table of `md` whose header row is exactly `header`.
    fn find(md: &str, header: &[&str]) -> Table {
        let mut lines = md.lines().peekable();
        while let Some(line) = lines.next() {
            if !line.starts_with('|') || cells(line) != header {
                continue;
            }
            let separator = lines.next().unwrap_or_default();
            assert!(
                separator.starts_with("|---"),
                "{header:?}: no separator row"
            );
            let mut rows = Vec::new();
            while let Some(line) = lines.next_if(|l| l.starts_with('|')) {
                let row = cells(line);
                assert_eq!(row.len(), header.len(), "{header:?}: row {line:?}");
                rows.push(row);
            }
            return Table { rows };
        }
        panic!("docs/policy.md has no table with the header {header:?}");
    }

    /// The row whose first cell names `name` (in backticks), failing when there is none.
    fn row(&self, name: &str) -> &[String] {
        self.rows
            .iter()
            .find(|r| first_code(&r[0]) == name)
            .unwrap_or_else(|| panic!("no row for `{name}`"))
    }

    /// The names in the first column.
    fn names(&self) -> BTreeSet<String> {
        self.rows
            .iter()
            .map(|r| first_code(&r[0]).to_owned())
            .collect()
    }
}

fn cells(line: &str) -> Vec<String> {
    let line = line.replace("\\|", "\u{0}");
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.trim().replace('\u{0}', "|"))
        .collect()
}

/// The first `code span` of a cell, or the whole cell when it has none.
fn first_code(cell: &str) -> &str {
    let mut parts = cell.split('`');
    match (parts.next(), parts.next()) {
        (Some(_), Some(code)) => code,
        _ => cell.trim(),
    }
}

/// The HTTP status a cell starts with.
fn status_in(cell: &str) -> Option<u16> {
    cell.split_whitespace().next()?.parse().ok()
}

/// The `error="..."` parameter of a challenge, if it has one.
fn error_param(challenge: &str) -> Option<&str> {
    let start = challenge.find("error=\"")? + "error=\"".len();
    let rest = &challenge[start..];
    Some(&rest[..rest.find('"')?])
}

// ---------------------------------------------------------------------------------------
// A server to ask.
// ---------------------------------------------------------------------------------------

/// A handler with tools of these names, each answering with an empty result.
#[derive(Clone, Debug)]
struct Tools(Arc<Vec<&'static str>>);

impl Tools {
    fn new(names: &[&'static str]) -> Tools {
        Tools(Arc::new(names.to_vec()))
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        // One optional integer argument, `n`, for the Cedar denials.
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let schema = schema.as_object().cloned().unwrap_or_default();
        self.0
            .contains(&name)
            .then(|| Tool::new(name.to_owned(), "a tool", Arc::new(schema)))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(CallToolResult::success(Vec::new()).into())
    }
}

/// What came back: the status, the challenge, the JSON-RPC error code of the body, and
/// the rejection the layer attached.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    rpc_code: Option<i64>,
    rejection: Option<AuthRejection>,
    headers: http::HeaderMap,
}

async fn ask(app: &axum::Router, request: Request<Body>) -> Answer {
    let mut service = app.clone();
    poll_fn(|cx| tower_service::Service::<Request<Body>>::poll_ready(&mut service, cx))
        .await
        .expect("the router is always ready");
    let response: Response<Body> = service.call(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let rpc_code = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["code"].as_i64());
    Answer {
        status: parts.status,
        challenge: parts
            .headers
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().expect("ascii").to_owned()),
        rpc_code,
        rejection: parts.extensions.get::<AuthRejection>().cloned(),
        headers: parts.headers,
    }
}

/// A POST of `body` to `uri` with, if given, this bearer token.
fn request(uri: &str, token: Option<&str>, body: String) -> Request<Body> {
    let mut builder = Request::post(uri)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(body)).expect("request")
}

fn call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
    .to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .try_into()
        .expect("fits")
}

// ---------------------------------------------------------------------------------------
// JSON-RPC codes.
// ---------------------------------------------------------------------------------------

/// The JSON-RPC codes the crate sends of its own, by the constant that holds each (`None`
/// for JSON-RPC 2.0's own -32600 and -32602, which the crate sends without a constant; the
/// layer's -32600 is checked against real responses below, the -32602 of `requestState`
/// here).
fn rpc_codes() -> Vec<(Option<&'static str>, i64)> {
    let state = StateRejected::NotBound.to_mcp_error();
    vec![
        (Some("rmcp_authz::server::FORBIDDEN"), FORBIDDEN.0.into()),
        (
            Some("rmcp_authz::server::UNAUTHENTICATED"),
            UNAUTHENTICATED.0.into(),
        ),
        (
            Some("rmcp_authz::AUDIT_UNAVAILABLE"),
            AUDIT_UNAVAILABLE.0.into(),
        ),
        (None, -32600),
        (None, state.code.0.into()),
    ]
}

#[test]
fn the_json_rpc_code_table_lists_every_code_with_its_constant() {
    let table = Table::find(&policy_md(), &["JSON-RPC code", "constant", "when"]);
    let listed: Vec<(String, String)> = table
        .rows
        .iter()
        .map(|r| (first_code(&r[0]).to_owned(), r[1].clone()))
        .collect();
    let expected = rpc_codes();
    assert_eq!(
        listed.len(),
        expected.len(),
        "the table lists exactly the crate's codes: {listed:?}"
    );
    for (constant, code) in expected {
        let row = listed
            .iter()
            .find(|(c, _)| c.parse::<i64>() == Ok(code))
            .unwrap_or_else(|| panic!("no row for JSON-RPC code {code}"));
        match constant {
            Some(constant) => assert_eq!(first_code(&row.1), constant, "code {code}"),
            None => assert!(row.1.starts_with("none"), "code {code}: {row:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The layer's own responses.
// ---------------------------------------------------------------------------------------

/// Every `RejectionKind` (the enum is non_exhaustive: listed by hand).
const REJECTION_KINDS: [(RejectionKind, &str); 9] = [
    (RejectionKind::MissingToken, "MissingToken"),
    (RejectionKind::InvalidToken, "InvalidToken"),
    (RejectionKind::InvalidRequest, "InvalidRequest"),
    (RejectionKind::BodyTooLarge, "BodyTooLarge"),
    (RejectionKind::InsufficientScope, "InsufficientScope"),
    (RejectionKind::Forbidden, "Forbidden"),
    (RejectionKind::SessionMismatch, "SessionMismatch"),
    (RejectionKind::UnknownSession, "UnknownSession"),
    (RejectionKind::InvalidDpopProof, "InvalidDpopProof"),
];

fn rejection_table() -> Table {
    Table::find(
        &policy_md(),
        &[
            "`RejectionKind`",
            "`code()`",
            "HTTP status",
            "JSON-RPC code",
            "`WWW-Authenticate`",
        ],
    )
}

/// Checks `answer` against the row of the rejection kind it carries.
fn check_rejection_row(table: &Table, answer: &Answer, what: &str) {
    let rejection = answer
        .rejection
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: the layer did not answer: {answer:?}"));
    let (kind, name) = REJECTION_KINDS
        .iter()
        .find(|(k, _)| *k == rejection.kind())
        .unwrap_or_else(|| panic!("{what}: {:?} is not in REJECTION_KINDS", rejection.kind()));
    let row = table.row(name);
    assert_eq!(first_code(&row[1]), kind.code(), "{name}: code()");
    // `InvalidToken` takes its status from the verifier's error (the `AuthError` table,
    // checked on its own), and its row must say so.
    if *kind == RejectionKind::InvalidToken && status_in(&row[2]) != Some(answer.status.as_u16()) {
        assert!(
            row[4].contains("the status and `error` follow the verifier's error"),
            "{what}: status {} of {name}, but its row says {:?}",
            answer.status,
            row[2]
        );
    } else {
        assert_eq!(
            status_in(&row[2]),
            Some(answer.status.as_u16()),
            "{what}: status of {name}"
        );
    }
    assert_eq!(
        first_code(&row[3]).parse::<i64>().ok(),
        answer.rpc_code,
        "{what}: JSON-RPC code of {name}"
    );
    match &answer.challenge {
        None => assert!(
            row[4].contains("none"),
            "{what}: no challenge, but the row of {name} says {:?}",
            row[4]
        ),
        Some(challenge) => {
            let scheme = challenge.split(' ').next().unwrap_or_default();
            assert!(
                row[4].contains(&format!("`{scheme} ")),
                "{what}: a {scheme} challenge, but the row of {name} says {:?}",
                row[4]
            );
            // A kind whose `error` follows the verifier's error says so in its row.
            if *kind != RejectionKind::InvalidToken {
                assert_eq!(
                    error_param(first_code(&row[4])),
                    error_param(challenge),
                    "{what}: the challenge's error, {name}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_rejection_table_matches_the_layers_responses() {
    let table = rejection_table();
    let listed = table.names();
    let known: BTreeSet<String> = REJECTION_KINDS.iter().map(|(_, n)| n.to_string()).collect();
    assert_eq!(listed, known, "the table lists exactly the kinds");
    for (kind, name) in REJECTION_KINDS {
        assert_eq!(first_code(&table.row(name)[1]), kind.code(), "{name}");
    }

    let issuer = DevIssuer::new(ISSUER).expect("issuer");
    let policy = Policy::builder()
        .tool("scoped", "notes:admin")
        .build()
        .expect("policy");
    let authz = Authz::builder(issuer.verifier(RESOURCE).build().expect("verifier"), policy)
        .max_body_bytes(1024)
        .build();
    let app = authz
        .router("/mcp", || Tools::new(&["scoped"]))
        .expect("router");
    let token = issuer
        .token(RESOURCE)
        .subject("alice")
        .client_id("app")
        .mint()
        .expect("token");
    let uri = "/mcp";

    let mut seen = BTreeSet::new();
    let mut check = |answer: Answer, what: &str| {
        check_rejection_row(&table, &answer, what);
        seen.insert(answer.rejection.expect("checked").kind().code());
    };
    check(
        ask(&app, request(uri, None, call("scoped"))).await,
        "no token",
    );
    check(
        ask(&app, request(uri, Some("not-a-token"), call("scoped"))).await,
        "a garbage token",
    );
    check(
        ask(&app, request("/mcp?access_token=x", None, call("scoped"))).await,
        "a token in the query string",
    );
    check(
        ask(&app, request(uri, Some(&token), "not json".to_owned())).await,
        "a body that is not JSON",
    );
    let answer = ask(&app, request(uri, Some(&token), "x".repeat(4096))).await;
    assert_eq!(
        answer
            .headers
            .get(http::header::CONNECTION)
            .map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "a body left unread closes the connection"
    );
    check(answer, "a body over the limit");
    check(
        ask(&app, request(uri, Some(&token), call("scoped"))).await,
        "a call without its scope",
    );
    check(
        ask(&app, request(uri, Some(&token), call("unruled"))).await,
        "a call no rule covers",
    );
    let mut unknown = request(uri, Some(&token), call("scoped"));
    unknown
        .headers_mut()
        .insert("mcp-session-id", "never-opened".parse().expect("value"));
    check(ask(&app, unknown).await, "a session never opened");

    // A session belongs to the principal that opened it.
    let with_sessions = authz
        .router_with(
            "/mcp",
            || Tools::new(&["scoped"]),
            authz.http_config().with_legacy_session_mode(true),
        )
        .expect("router");
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "docs", "version": "0"}}});
    let opened = ask(
        &with_sessions,
        request(uri, Some(&token), initialize.to_string()),
    )
    .await;
    assert_eq!(opened.status, StatusCode::OK, "{opened:?}");
    let session = opened.headers["mcp-session-id"].clone();
    let bob = issuer
        .token(RESOURCE)
        .subject("bob")
        .client_id("app")
        .mint()
        .expect("token");
    let mut foreign = request(uri, Some(&bob), call("scoped"));
    foreign.headers_mut().insert("mcp-session-id", session);
    check(
        ask(&with_sessions, foreign).await,
        "another principal's session",
    );

    // A DPoP-bound token's proof (feature `dpop`).
    #[cfg(feature = "dpop")]
    {
        use rmcp_authz::token::dpop::{DpopOptions, DpopVerifier};
        let policy = Policy::builder().tool("scoped", "notes:admin").build();
        let dpop = Authz::builder(
            issuer.verifier(RESOURCE).build().expect("verifier"),
            policy.expect("policy"),
        )
        .dpop(DpopVerifier::new(DpopOptions::default()))
        .build();
        let app = dpop
            .router("/mcp", || Tools::new(&["scoped"]))
            .expect("router");
        let mut unproven = request(uri, None, call("scoped"));
        unproven.headers_mut().insert(
            "authorization",
            format!("DPoP {token}").parse().expect("value"),
        );
        check(ask(&app, unproven).await, "a DPoP token without its proof");
    }
    let mut all: BTreeSet<&str> = REJECTION_KINDS.iter().map(|(k, _)| k.code()).collect();
    if cfg!(not(feature = "dpop")) {
        all.remove(RejectionKind::InvalidDpopProof.code());
    }
    assert_eq!(seen, all, "every kind was produced and checked");
}

// ---------------------------------------------------------------------------------------
// The verifier's errors.
// ---------------------------------------------------------------------------------------

/// One of every `AuthError` variant (the enum is non_exhaustive: listed by hand).
fn auth_errors() -> Vec<AuthError> {
    vec![
        AuthError::Malformed { reason: "r".into() },
        AuthError::TooLarge {
            size: 20_000,
            limit: 16_384,
        },
        AuthError::Unsigned { alg: "none".into() },
        AuthError::AlgorithmNotAllowed {
            alg: "HS256".into(),
            allowed: "ES256".into(),
        },
        AuthError::AlgorithmMismatch {
            kid: "k".into(),
            key_alg: Algorithm::ES256,
            token_alg: Algorithm::RS256,
        },
        AuthError::UnknownKey {
            kid: Some("k".into()),
            alg: Algorithm::ES256,
        },
        AuthError::BadSignature { kid: "k".into() },
        AuthError::WrongType { found: None },
        AuthError::UnsupportedCritical {
            params: vec!["x".into()],
        },
        AuthError::MissingClaim {
            claim: "exp".into(),
        },
        AuthError::InvalidClaim {
            claim: "exp".into(),
            reason: "r".into(),
        },
        AuthError::EmptyClaim {
            claim: "sub".into(),
        },
        AuthError::WrongIssuer {
            expected: ISSUER.into(),
            found: "https://other".into(),
        },
        AuthError::WrongAudience {
            expected: RESOURCE.into(),
            found: vec!["https://other/mcp".into()],
        },
        AuthError::Expired {
            exp: 1,
            now: 100,
            leeway_secs: 30,
        },
        AuthError::NotYetValid {
            nbf: 100,
            now: 1,
            leeway_secs: 30,
        },
        AuthError::IssuedInFuture {
            iat: 100,
            now: 1,
            leeway_secs: 30,
        },
        AuthError::KeysUnavailable { reason: "r".into() },
        AuthError::Inactive,
        AuthError::Revoked { jti: "j".into() },
        AuthError::SubjectRevoked {
            subject: "s".into(),
        },
    ]
}

/// The variant's name, from its `Debug` form.
fn variant_name(debug: &str) -> &str {
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
}

/// A verifier that refuses every token with one error.
#[derive(Debug)]
struct Refuses(AuthError);

#[async_trait]
impl Verifier for Refuses {
    async fn verify(&self, _token: &str) -> Result<Principal, AuthError> {
        Err(self.0.clone())
    }

    fn resource_uri(&self) -> Option<&str> {
        Some(RESOURCE)
    }
}

#[tokio::test]
async fn the_auth_error_table_matches_the_verifier_and_the_layer() {
    let md = policy_md();
    let table = Table::find(&md, &["`AuthError`", "`error_code()`", "HTTP status"]);
    let rejections = rejection_table();
    let errors = auth_errors();
    let names: BTreeSet<String> = errors
        .iter()
        .map(|e| variant_name(&format!("{e:?}")).to_owned())
        .collect();
    assert_eq!(names.len(), errors.len(), "one of each variant");
    assert_eq!(table.names(), names, "the table lists exactly the variants");
    for error in errors {
        let name = variant_name(&format!("{error:?}")).to_owned();
        let row = table.row(&name);
        assert_eq!(
            first_code(&row[1]),
            error.error_code(),
            "{name}: error_code()"
        );
        let policy = Policy::builder().build().expect("policy");
        let app = Authz::new(Refuses(error.clone()), policy)
            .router("/mcp", || Tools::new(&[]))
            .expect("router");
        let answer = ask(&app, request("/mcp", Some("t"), call("any"))).await;
        assert_eq!(
            status_in(&row[2]),
            Some(answer.status.as_u16()),
            "{name}: status"
        );
        let challenge = answer.challenge.as_deref().expect("a challenge");
        assert_eq!(error_param(challenge), Some(error.error_code()), "{name}");
        assert_eq!(answer.rpc_code, Some(UNAUTHENTICATED.0.into()), "{name}");
        check_rejection_row(&rejections, &answer, &name);
    }
}

// ---------------------------------------------------------------------------------------
// The policy's denials.
// ---------------------------------------------------------------------------------------

/// A policy with the one tool `t` under `rule`, and the policy-wide setting `lifetime`.
fn one_tool(rule: Rule, lifetime: Option<Duration>) -> Policy {
    let mut builder = Policy::builder().tool("t", rule);
    if let Some(lifetime) = lifetime {
        builder = builder.max_token_lifetime(lifetime);
    }
    builder.build().expect("policy")
}

/// A denial of every reason the policy gives, with the policy and token that produce it:
/// (policy, token claims, tool called).
fn denials(issuer: &DevIssuer) -> Vec<(Policy, String, &'static str)> {
    let any = ScopeExpr::authenticated();
    let with = |c: Conditions| Rule::new(ScopeExpr::authenticated()).with(c);
    let token = || issuer.token(RESOURCE).subject("alice").client_id("app");
    let mint = |t: rmcp_authz::dev::TokenRequest<'_>| t.mint().expect("token");
    let hour = Duration::from_secs(3600);
    let minute = Duration::from_secs(60);
    vec![
        (one_tool("notes:admin".into(), None), mint(token()), "t"),
        (one_tool(any.clone().into(), None), mint(token()), "unruled"),
        (
            one_tool(Rule::new(any.clone()).only_clients(["console"]), None),
            mint(token()),
            "t",
        ),
        (
            one_tool(with(Conditions::new().user_only()), None),
            mint(token().actor("agent")),
            "t",
        ),
        (
            one_tool(
                with(Conditions::new().only_agents(["research-agent"])),
                None,
            ),
            mint(token()),
            "t",
        ),
        (
            one_tool(with(Conditions::new().max_chain_depth(1)), None),
            mint(token().actor("a").actor("b")),
            "t",
        ),
        (
            one_tool(
                with(Conditions::new().actor_issuers(["https://elsewhere.invalid"])),
                None,
            ),
            mint(token().actor("agent")),
            "t",
        ),
        (
            one_tool(with(Conditions::new().forbid_actors(["scraper"])), None),
            mint(token().actor("scraper")),
            "t",
        ),
        (
            one_tool(with(Conditions::new().max_token_age(minute)), None),
            mint(token().claim("iat", now() - 600)),
            "t",
        ),
        (
            one_tool(with(Conditions::new().max_auth_age(minute)), None),
            mint(token().claim("auth_time", now() + 600)),
            "t",
        ),
        (
            one_tool(any.into(), Some(minute)),
            mint(token().expires_in(hour)),
            "t",
        ),
        (
            one_tool(with(Conditions::new().require_dpop()), None),
            mint(token()),
            "t",
        ),
    ]
}

/// The reasons only a running server gives: not from the policy, so not made above.
/// `TokenExpired` is checked over a stdio-like transport below; `NotOwner` by
/// tests/tests/tasks.rs (`only_the_owner_reaches_a_task_sessionless` asserts its audit
/// code `not_owner`), which runs a task-capable server.
const SERVER_REASONS: [(&str, &str, &str); 2] = [
    ("NotOwner", "not_owner", "access_denied"),
    ("TokenExpired", "token_expired", "invalid_token"),
];

fn denial_table() -> Table {
    Table::find(
        &policy_md(),
        &[
            "`DenyReason`",
            "`Denial::code()`",
            "`data.error`",
            "over HTTP",
        ],
    )
}

#[tokio::test]
async fn the_denial_table_matches_the_policy_and_the_layer() {
    let table = denial_table();
    let rejections = rejection_table();
    let issuer = DevIssuer::new(ISSUER).expect("issuer");
    let mut names = BTreeSet::new();
    for (policy, token, tool) in denials(&issuer) {
        let verifier = issuer.verifier(RESOURCE).build().expect("verifier");
        let principal = verifier.verify_sync(&token).expect("a valid token");
        let authz = Authz::new(verifier, policy);
        let denial: Denial = authz
            .policy()
            .decide(&principal, Operation::CallTool(tool))
            .denial()
            .cloned()
            .expect("denied");
        let name = variant_name(&format!("{:?}", denial.reason())).to_owned();
        assert!(names.insert(name.clone()), "{name} made twice");
        let row = table.row(&name);
        assert_eq!(first_code(&row[1]), denial.code(), "{name}: code()");
        assert_eq!(
            json!(first_code(&row[2])),
            denial.error_data()["error"],
            "{name}: data.error"
        );

        let app = authz.router("/mcp", || Tools::new(&["t"])).expect("router");
        let answer = ask(&app, request("/mcp", Some(&token), call(tool))).await;
        assert_eq!(
            status_in(&row[3]),
            Some(answer.status.as_u16()),
            "{name}: status, {answer:?}"
        );
        match &answer.challenge {
            Some(challenge) => {
                let expected = error_param(challenge).expect("an error");
                assert!(
                    row[3].contains(&format!("`{expected}` challenge")),
                    "{name}: {challenge} but the row says {:?}",
                    row[3]
                );
            }
            None => assert!(!row[3].contains("challenge"), "{name}: {:?}", row[3]),
        }
        check_rejection_row(&rejections, &answer, &name);
    }
    for (name, code, data) in SERVER_REASONS {
        let row = table.row(name);
        assert_eq!(first_code(&row[1]), code, "{name}");
        assert_eq!(first_code(&row[2]), data, "{name}");
        assert_eq!(status_in(&row[3]), None, "{name} is never an HTTP status");
        names.insert(name.to_owned());
    }
    #[cfg(feature = "cedar")]
    for name in cedar_denials(&table, &rejections, &issuer).await {
        assert!(names.insert(name.clone()), "{name} made twice");
    }
    assert_eq!(table.names(), names, "the table lists exactly the reasons");
}

/// The denials Cedar policies give (feature `cedar`), each made over HTTP and checked
/// against its row: (Cedar policies, the call's tool and arguments).
#[cfg(feature = "cedar")]
async fn cedar_denials(table: &Table, rejections: &Table, issuer: &DevIssuer) -> Vec<String> {
    use rmcp_authz::policy::cedar::CedarPolicies;

    let permit = "permit(principal, action, resource);";
    let cases = [
        (
            format!("{permit} forbid(principal, action, resource == Tool::\"t\");"),
            "t",
            json!({}),
        ),
        (
            "forbid(principal, action, resource) when { false };".to_owned(),
            "t",
            json!({}),
        ),
        (
            format!(
                "{permit} forbid(principal, action == Action::\"tools/call\", resource == Tool::\"t\") when {{ context.arguments has n && context.arguments.n > 3 }};"
            ),
            "t",
            json!({"n": "three"}),
        ),
        (permit.to_owned(), "u", json!({})),
    ];
    let mut names = Vec::new();
    for (text, tool, arguments) in cases {
        let verifier = issuer.verifier(RESOURCE).build().expect("verifier");
        let token = issuer
            .token(RESOURCE)
            .subject("alice")
            .client_id("app")
            .mint()
            .expect("token");
        let principal = verifier.verify_sync(&token).expect("a valid token");
        // `u` is admitted by `unlisted_tools` only: not among the tools checked at start.
        let policy = Policy::builder()
            .tool("t", ScopeExpr::authenticated())
            .unlisted_tools(ScopeExpr::authenticated())
            .build()
            .expect("policy");
        let policies = CedarPolicies::parse("docs", &text).expect("policies");
        let authz = Authz::builder(verifier, policy).cedar(policies).build();
        let app = authz
            .router("/mcp", || Tools::new(&["t", "u"]))
            .expect("router");
        let denial = authz
            .cedar()
            .expect("compiled")
            .decide(
                &principal,
                principal.scopes(),
                Operation::CallTool(tool),
                arguments.as_object(),
                now(),
            )
            .expect("governed")
            .decision
            .denial()
            .cloned()
            .expect("denied");
        let name = variant_name(&format!("{:?}", denial.reason())).to_owned();
        let row = table.row(&name);
        assert_eq!(first_code(&row[1]), denial.code(), "{name}: code()");
        assert_eq!(
            json!(first_code(&row[2])),
            denial.error_data()["error"],
            "{name}: data.error"
        );
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": tool, "arguments": arguments}});
        let answer = ask(&app, request("/mcp", Some(&token), body.to_string())).await;
        assert_eq!(
            status_in(&row[3]),
            Some(answer.status.as_u16()),
            "{name}: {answer:?}"
        );
        assert_eq!(answer.challenge, None, "{name}");
        check_rejection_row(rejections, &answer, &name);
        names.push(name);
    }
    names
}

/// `TokenExpired`: a single-caller server (as on stdio) whose caller's token expires
/// during the session refuses the next call with -32003, `data.error` `invalid_token`,
/// and records `token_expired`.
#[tokio::test]
async fn an_expired_session_token_is_denied_as_the_table_says() {
    let row = denial_table().row("TokenExpired").to_vec();
    let issuer = DevIssuer::new(ISSUER).expect("issuer");
    let verifier = issuer.verifier(RESOURCE).build().expect("verifier");
    let token = issuer
        .token(RESOURCE)
        .subject("alice")
        .client_id("app")
        .mint()
        .expect("token");
    let principal = verifier.verify_sync(&token).expect("valid");
    let clock = Arc::new(ManualClock::new(now()));
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone()).build().expect("auditor");
    let policy = Policy::builder()
        .clock(clock.clone())
        .build()
        .expect("policy");
    let authz = Authz::builder(verifier, policy).auditor(auditor).build();
    let wrapped = authz
        .wrap_for(Tools::new(&[]), principal.clone())
        .expect("wrap");
    let (server_side, client_side) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let running = wrapped.serve(server_side).await.expect("serve");
        let _ = running.waiting().await;
    });
    let client = ClientConfig::default()
        .with_protocol_version(ProtocolVersion::V_2025_06_18)
        .serve(client_side)
        .await
        .expect("initialized while the token is valid");

    clock.set(principal.expires_at() + 1);
    let error = match client.list_tools(None).await {
        Err(rmcp::service::ServiceError::McpError(e)) => e,
        other => panic!("expected a denial, got {other:?}"),
    };
    assert_eq!(i64::from(error.code.0), i64::from(FORBIDDEN.0));
    assert_eq!(
        error.data.as_ref().map(|d| d["error"].clone()),
        Some(json!(first_code(&row[2])))
    );
    let _ = client.cancel().await;
    server.abort();
    authz.auditor().expect("auditor").close().await;
    let codes: Vec<_> = sink
        .events()
        .into_iter()
        .filter_map(|e| e.reason_code)
        .collect();
    assert_eq!(codes, [first_code(&row[1]).to_owned()], "the audit event");
}

// ---------------------------------------------------------------------------------------
// requestState refusals.
// ---------------------------------------------------------------------------------------

#[test]
fn the_request_state_table_matches_its_codes() {
    let md = policy_md();
    let table = Table::find(&md, &["`StateRejected`", "`code()`"]);
    // Every variant (non_exhaustive: listed by hand).
    let all = [
        StateRejected::NotBound,
        StateRejected::UnknownKey,
        StateRejected::Expired { exp: 1, now: 2 },
        StateRejected::Malformed,
    ];
    let names: BTreeSet<String> = all
        .iter()
        .map(|r| variant_name(&format!("{r:?}")).to_owned())
        .collect();
    assert_eq!(table.names(), names, "the table lists exactly the variants");
    for rejected in all {
        let name = variant_name(&format!("{rejected:?}")).to_owned();
        assert_eq!(first_code(&table.row(&name)[1]), rejected.code(), "{name}");
        // Whatever the cause, the client is told the same, as the text says.
        let error = rejected.to_mcp_error();
        assert_eq!(i64::from(error.code.0), -32602, "{name}");
        assert_eq!(
            error.data,
            Some(json!({"error": "invalid_request_state"})),
            "{name}"
        );
        assert!(
            md.contains("`-32602` and `data: {\"error\": \"invalid_request_state\"}`"),
            "the method section states the answer"
        );
    }
}

// ---------------------------------------------------------------------------------------
// docs/conformance.md names tests that exist.
// ---------------------------------------------------------------------------------------

/// Every `file::test` docs/conformance.md cites is a test function in that file, so a
/// renamed or deleted test cannot leave a requirement "shown by" nothing.
#[test]
fn every_test_conformance_md_cites_exists() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let md = std::fs::read_to_string(format!("{root}/docs/conformance.md")).expect("read");
    let mut cited = 0;
    for span in md.split('`').skip(1).step_by(2) {
        let Some((file, test)) = span.split_once(".rs::") else {
            continue;
        };
        let path = format!("{root}/{file}.rs");
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("conformance.md cites {span}: cannot read {path}: {e}"));
        let is_test = source.lines().collect::<Vec<_>>().windows(3).any(|w| {
            w[0].trim_start().starts_with("#[")
                && w.iter().any(|l| {
                    l.trim_start()
                        .strip_prefix("async fn ")
                        .or_else(|| l.trim_start().strip_prefix("fn "))
                        .is_some_and(|rest| rest.starts_with(&format!("{test}(")))
                })
        });
        assert!(
            is_test,
            "conformance.md cites {span}, which is no test in {path}"
        );
        cited += 1;
    }
    assert!(cited > 30, "only {cited} tests cited: is the parser right?");
}
