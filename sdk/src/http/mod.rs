//! The tower layer in front of rmcp's Streamable HTTP service (feature `http`).
//!
//! For every request, before rmcp runs anything: refuse tokens in the query string and
//! repeated `Authorization` headers (400); answer a request without a bearer token with
//! 401 and a challenge naming the Protected Resource Metadata; verify the token (401
//! `invalid_token` with a description); read the JSON-RPC body under a size limit and find
//! the operation (from the body, checked against the `Mcp-Method` / `Mcp-Name` headers of
//! 2026-07-28 clients); refuse a session opened by another principal (403); ask the policy,
//! and answer a denied call with 403 and a step-up challenge naming every scope it needs.
//! Otherwise the verified [`Principal`] goes into the request extensions, where rmcp hands
//! it to the handler, and the request proceeds. See `docs/policy.md` for each response.
//!
//! ```no_run
//! use rmcp_authz::{Authz, dev::DevIssuer, policy::Policy};
//! # async fn run<H: rmcp::ServerHandler + Clone>(handler: H) -> Result<(), Box<dyn std::error::Error>> {
//! # let issuer = DevIssuer::new("https://auth.example")?;
//! # let verifier = issuer.verifier("http://127.0.0.1:8080/mcp").build()?;
//! # let policy = Policy::builder().build()?;
//! use rmcp::transport::streamable_http_server::{StreamableHttpService, StreamableHttpServerConfig, session::local::LocalSessionManager};
//! let authz = Authz::new(verifier, policy);
//! authz.wrap(handler.clone())?; // fails at start-up if a rule names an unknown tool
//! let factory = { let authz = authz.clone(); move || authz.wrap(handler.clone()).map_err(std::io::Error::other) };
//! let mcp = StreamableHttpService::new(factory, LocalSessionManager::default().into(), StreamableHttpServerConfig::default());
//! let app = axum::Router::new()
//!     .nest_service("/mcp", mcp)
//!     .layer(authz.http_layer())
//!     .merge(authz.metadata_routes());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! authz.serve(listener, app, std::future::pending()).await?; // TCP_NODELAY, peer addresses
//! # Ok(()) }
//! ```

mod challenge;
mod metadata;
mod rpc;
mod serve;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

pub use challenge::{AuthRejection, RejectionKind};

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::authz::{Authz, CallerId};
use crate::gate::{Audit, Call, Origin, RemoteAddr, RequestId};
use crate::policy::{Decision, Denial, DenyReason, Operation};
use crate::principal::Principal;
use crate::token::AuthError;
use challenge::Rejection;
use rpc::Target;

/// The default largest request body the layer reads: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many session bindings are remembered (the least recently used forgotten first; a
/// forgotten session is refused with 404 and the client starts a new one).
const MAX_SESSIONS: u64 = 100_000;

/// How much of a request body without a token is read, for the 401's scope hint.
const UNAUTHENTICATED_BODY_BYTES: usize = 16 * 1024;

const SESSION_HEADER: &str = "mcp-session-id";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub(crate) max_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Shared HTTP state: settings, the metadata URL challenges name (computed once, not per
/// request), and the session bindings: who opened each session, in a concurrent map whose
/// reads take no lock.
pub(crate) struct HttpState {
    settings: HttpSettings,
    metadata_url: String,
    sessions: moka::sync::Cache<String, Arc<CallerId>>,
}

impl HttpState {
    pub(crate) fn new(settings: HttpSettings, resource: &str) -> Self {
        HttpState {
            settings,
            metadata_url: metadata::metadata_url_for(resource),
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                // LRU admits every new session (TinyLFU could turn a new one away).
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
        }
    }
}

impl Authz {
    /// The tower layer to put in front of rmcp's `StreamableHttpService`.
    pub fn http_layer(&self) -> AuthzLayer {
        AuthzLayer {
            authz: self.clone(),
        }
    }
}

/// Authenticates and authorizes every request before the inner MCP service sees it.
///
/// See the [module documentation](self) for what it checks and an example.
#[derive(Clone, Debug)]
#[must_use]
pub struct AuthzLayer {
    authz: Authz,
}

impl<S> Layer<S> for AuthzLayer {
    type Service = AuthzService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthzService {
            inner,
            authz: self.authz.clone(),
        }
    }
}

/// The service made by [`AuthzLayer`].
#[derive(Clone)]
pub struct AuthzService<S> {
    inner: S,
    authz: Authz,
}

impl<S> fmt::Debug for AuthzService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthzService")
            .field("authz", &self.authz)
            .finish_non_exhaustive()
    }
}

impl<S> AuthzService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of [`AuthzService`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthzService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The inner service was made ready; keep that one and leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let authz = self.authz.clone();
        ResponseFuture {
            inner: Box::pin(async move { Ok(handle(authz, inner, request).await) }),
        }
    }
}

/// The whole decision for one request.
async fn handle<S, ReqBody, ResBody>(
    authz: Authz,
    mut inner: S,
    request: Request<ReqBody>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Error = Infallible>,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let metadata_url: &str = &authz.http_state().metadata_url;
    let (mut parts, body) = request.into_parts();
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // What a refusal's audit event says is gathered at the refusal (`Seen`), and the event
    // is only built then: an allowed request builds none here (the wrapper records it).
    let seen = Seen {
        parts: &parts,
        remote,
        principal: None,
        rpc: None,
        id: None,
        cause: Cause::Refusal,
    };
    let invalid_request = |message: &str| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            RejectionKind::InvalidRequest,
            message,
        )
    };

    // RFC 6750 section 2.3 allows a query parameter; MCP forbids it, and URLs end up in logs.
    if parts.uri.query().is_some_and(has_access_token_param) {
        let refusal = invalid_request(
            "access tokens in the query string are refused; send them in the Authorization header",
        )
        .challenge(&[
            ("error", Some("invalid_request")),
            ("resource_metadata", Some(metadata_url)),
        ]);
        return refuse(&authz, refusal, seen).await;
    }
    let mut authorization = parts.headers.get_all(AUTHORIZATION).iter();
    let (first, second) = (authorization.next(), authorization.next());
    if second.is_some() {
        let refusal = invalid_request("more than one Authorization header").challenge(&[
            ("error", Some("invalid_request")),
            ("resource_metadata", Some(metadata_url)),
        ]);
        return refuse(&authz, refusal, seen).await;
    }
    let token = first.and_then(|v| bearer_token(v.as_bytes()));

    let Some(token) = token else {
        // A scope hint for the 401: what the requested operation needs, read from at most
        // 16 KiB of body. An unreadable or larger body still gets the plain 401.
        let bytes = read_body(&parts.headers, body, UNAUTHENTICATED_BODY_BYTES).await;
        let rpc = bytes
            .filter(|_| parts.method == Method::POST)
            .and_then(|b| rpc::parse(&b).ok());
        let scope = rpc
            .as_ref()
            .and_then(|r| operation_of(&r.target))
            .and_then(|op| authz.policy().rule_for(op))
            .map(|rule| rule.requirement().scopes_to_request(&|_| false).join(" "))
            .filter(|s| !s.is_empty());
        let refusal = Rejection::new(
            StatusCode::UNAUTHORIZED,
            RejectionKind::MissingToken,
            "this MCP server needs an OAuth access token (Authorization: Bearer ...)",
        )
        .challenge(&[
            ("resource_metadata", Some(metadata_url)),
            ("scope", scope.as_deref()),
        ])
        .id(rpc.as_ref().and_then(|r| r.id.clone()));
        let seen = Seen {
            rpc: rpc.as_ref(),
            ..seen
        };
        return refuse(&authz, refusal, seen).await;
    };
    // The token is checked before the body is read, so a request with a bad token costs
    // no body buffering.
    let principal = match authz.verifier().verify(token).await {
        Ok(p) => p,
        Err(e) => {
            let refusal = token_rejection(&e, metadata_url);
            let seen = Seen {
                cause: Cause::Token(&e),
                ..seen
            };
            return refuse(&authz, refusal, seen).await;
        }
    };
    let seen = Seen {
        principal: Some(&principal),
        ..seen
    };
    // Then the body, bounded, so the operation is known before anything runs.
    let limit = authz.http_state().settings.max_body_bytes;
    let Some(bytes) = read_body(&parts.headers, body, limit).await else {
        let refusal = Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            RejectionKind::BodyTooLarge,
            &format!("the request body is larger than {limit} bytes or could not be read"),
        );
        return refuse(&authz, refusal, seen).await;
    };
    let rpc = match (parts.method == Method::POST).then(|| rpc::parse(&bytes)) {
        None => None,
        Some(Err(e)) => {
            let seen = Seen {
                id: e.id.as_ref(),
                ..seen
            };
            return refuse(&authz, invalid_request(e.reason).id(e.id.clone()), seen).await;
        }
        Some(Ok(rpc)) => Some(rpc),
    };
    let id = rpc.as_ref().and_then(|r| r.id.as_ref());
    let seen = Seen {
        rpc: rpc.as_ref(),
        id,
        ..seen
    };
    if let Some(rpc) = &rpc {
        let checked = single_header(&parts.headers, METHOD_HEADER).and_then(|method| {
            let name = single_header(&parts.headers, NAME_HEADER)?;
            rpc.check_headers(method, name)
        });
        if let Err(reason) = checked {
            return refuse(&authz, invalid_request(&reason).id(id.cloned()), seen).await;
        }
    }

    // Sessions are never authentication: a session belongs to the principal that opened it.
    // Every session is opened through this layer, so one it does not know is gone (or was
    // forgotten): the client starts a new one, as after rmcp's own 404.
    let session = session_id(&parts.headers).map(str::to_owned);
    let sessions = &authz.http_state().sessions;
    if let Some(session) = &session {
        let refusal = match sessions.get(session) {
            Some(owner) if owner.is(&principal) => None,
            Some(_) => Some(Rejection::new(
                StatusCode::FORBIDDEN,
                RejectionKind::SessionMismatch,
                "this session was opened by another principal; start your own session",
            )),
            None => Some(Rejection::new(
                StatusCode::NOT_FOUND,
                RejectionKind::UnknownSession,
                "unknown session; start a new session",
            )),
        };
        if let Some(refusal) = refusal {
            return refuse(&authz, refusal.id(id.cloned()), seen).await;
        }
    }

    if let Some(rpc) = &rpc
        && let Some(operation) = operation_of(&rpc.target)
        && let Decision::Deny(denial) = authz.decide(&principal, operation)
    {
        let refusal = match denial.reason() {
            // A newer token would do: tell the client its token will not, as for an
            // expired one (RFC 6750 invalid_token).
            _ if denial.needs_new_token() => Rejection::new(
                StatusCode::UNAUTHORIZED,
                RejectionKind::InvalidToken,
                &denial.to_string(),
            )
            .challenge(&[
                ("error", Some("invalid_token")),
                (
                    "error_description",
                    Some("this operation needs a more recently issued access token"),
                ),
                ("resource_metadata", Some(metadata_url)),
            ]),
            DenyReason::InsufficientScope { .. } => Rejection::new(
                StatusCode::FORBIDDEN,
                RejectionKind::InsufficientScope,
                &denial.to_string(),
            )
            .challenge(&[
                ("error", Some("insufficient_scope")),
                ("scope", denial.challenge_scope().as_deref()),
                ("resource_metadata", Some(metadata_url)),
                (
                    "error_description",
                    Some("the access token lacks scopes this operation needs"),
                ),
            ]),
            _ => Rejection::new(
                StatusCode::FORBIDDEN,
                RejectionKind::Forbidden,
                &denial.to_string(),
            ),
        };
        let refusal = refusal.id(id.cloned()).data(denial.error_data());
        let seen = Seen {
            cause: Cause::Denial(&denial),
            ..seen
        };
        return refuse(&authz, refusal, seen).await;
    }

    let is_delete = parts.method == Method::DELETE;
    if let Some(remote) = remote {
        parts.extensions.insert(RemoteAddr(remote));
    }
    parts.extensions.insert(principal.clone());
    let response = match inner
        .call(Request::from_parts(parts, Body::from(bytes)))
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    };
    match &session {
        None => {
            if let Some(new_id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                sessions.insert(new_id.to_owned(), Arc::new(CallerId::of(&principal)));
            }
        }
        Some(id) if is_delete && response.status().is_success() => sessions.invalidate(id),
        Some(_) => {}
    }
    response.map(Body::new)
}

/// What the layer knew of a request when it refused it: what its audit event says.
#[derive(Clone, Copy)]
struct Seen<'a> {
    parts: &'a http::request::Parts,
    remote: Option<SocketAddr>,
    principal: Option<&'a Principal>,
    rpc: Option<&'a rpc::RpcRequest>,
    id: Option<&'a serde_json::Value>,
    cause: Cause<'a>,
}

/// Why a request was refused, for its audit event.
#[derive(Clone, Copy)]
enum Cause<'a> {
    /// As the refusal says.
    Refusal,
    /// The verifier refused the token.
    Token(&'a AuthError),
    /// The policy denied the operation.
    Denial(&'a Denial),
}

impl Seen<'_> {
    /// The refusal's audit event: denied, from what was seen of the request.
    fn event(&self, refusal: &Rejection) -> AuditEvent {
        let origin = Origin {
            transport: "http",
            session_id: session_id(&self.parts.headers),
            request_id: self.id.map(RequestId::Json),
            remote_addr: self.remote,
        };
        let mut event = Call {
            kind: EventKind::AuthenticationFailure,
            method: self.parts.method.as_str(),
            target: None,
        }
        .event(&origin);
        if let Some(principal) = self.principal {
            event.set_principal(principal);
            event.kind = EventKind::Other;
        }
        if let Some(rpc) = self.rpc {
            describe_rpc(&mut event, rpc);
        }
        match self.cause {
            Cause::Refusal => event.set_denied(refusal.kind().code(), refusal.message()),
            Cause::Token(e) => event.set_denied(e.error_code(), e.description()),
            Cause::Denial(d) => event.set_denied_by(d),
        }
        event
    }
}

/// Records the refusal's audit event, when there is an audit log, and answers with the
/// refusal.
async fn refuse(authz: &Authz, refusal: Rejection, seen: Seen<'_>) -> Response<Body> {
    if let Some(auditor) = authz.auditor() {
        // A queue that refuses under overload has counted it; the refusal goes out anyway.
        if let Ok(audit) = Audit::begin(Some(auditor), |_| seen.event(&refusal)).await {
            let _ = audit.finish(Outcome::Denied).await;
        }
    }
    refusal.into_response()
}

/// What a parsed JSON-RPC request tells the audit event: the kind, method and target.
fn describe_rpc(event: &mut AuditEvent, rpc: &rpc::RpcRequest) {
    event.method.clone_from(&rpc.method);
    let (kind, target) = match &rpc.target {
        Target::Tool(name) => (EventKind::ToolCall, Some(name)),
        Target::Prompt(name) => (EventKind::PromptGet, Some(name)),
        Target::Resource(uri) => (EventKind::ResourceRead, Some(uri)),
        Target::Other => (EventKind::Other, None),
    };
    if event.kind != EventKind::AuthenticationFailure {
        event.kind = kind;
    }
    event.target = target.cloned();
}

/// The `Mcp-Session-Id` of a request, if any.
fn session_id(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

/// The body, unless it is larger than `limit` (declared or actual) or cannot be read.
async fn read_body<B>(headers: &http::HeaderMap, body: B, limit: usize) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return None;
    }
    Limited::new(body, limit)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// The value of a header that may appear at most once: `Err` when it is repeated (which
/// RFC 9110 section 5.3 would read as a comma-joined list no body can match).
fn single_header<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (_, Some(_)) => Err(format!("the {name} header is repeated; send it once")),
        (Some(v), None) => Ok(Some(v.to_str().unwrap_or("\u{fffd}"))),
        (None, None) => Ok(None),
    }
}

/// The 401 (or 400) for a token the verifier refused.
fn token_rejection(error: &AuthError, metadata_url: &str) -> Rejection {
    let status = match error.error_code() {
        "invalid_request" => StatusCode::BAD_REQUEST,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    tracing::debug!(target: "rmcp_authz::rejection", %error, "token refused");
    Rejection::new(status, RejectionKind::InvalidToken, error.description()).challenge(&[
        ("error", Some(error.error_code())),
        ("error_description", Some(error.description())),
        ("resource_metadata", Some(metadata_url)),
    ])
}

fn operation_of(target: &Target) -> Option<Operation<'_>> {
    match target {
        Target::Tool(name) => Some(Operation::CallTool(name)),
        Target::Prompt(name) => Some(Operation::GetPrompt(name)),
        Target::Resource(uri) => Some(Operation::ReadResource(uri)),
        Target::Other => None,
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is matched without
/// regard to case (RFC 9110 section 11.1). Other schemes give `None`.
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    (!token.is_empty()).then_some(token)
}

fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("access_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bEaReR  abc"), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(&[0xff, 0x20, 0x41]), None);
    }

    #[test]
    fn query_tokens_are_found() {
        assert!(has_access_token_param("a=1&access_token=x"));
        assert!(has_access_token_param("access_token"));
        assert!(!has_access_token_param("my_access_token=x"));
    }
}
