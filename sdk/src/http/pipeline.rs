//! The request pipeline of the HTTP layer: the named steps one request goes through
//! (authenticate, read the request, check the session, decide, bind the session); a
//! refusal is answered and audited in one place, [`refusal`](super::refusal).

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::SessionManager;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::challenge::Rejection;
use super::layer::HttpState;
use super::refusal::{
    Cause, Refused, Seen, invalid_request, refuse, scheme_refused, token_rejection,
};
use super::request::{
    Headed, Named, has_access_token_param, named, operation_of, read_body, single_header,
};
use super::rpc::{self, Target};
use super::*;
use crate::gate::{Decided, FromLayer};
use crate::guard::CallerId;
use crate::oauth::{Scheme, SubjectToken, access_token};
use crate::policy::{Decision, Operation, challenge_scope};
use crate::principal::Principal;
use crate::server::Authorized;

/// The whole decision for one request, as a pipeline: who is calling, what the request
/// asks for, whether its session is the caller's, whether the policy allows it; then the
/// request goes on to rmcp with the caller and the decision. Each step either passes what
/// it found to the next or refuses, and a refusal is answered and audited in one place.
///
/// What the request asks for is read from its headers when rmcp checks them against the
/// body ([`named`]): the body is then parsed only if the layer would refuse the request
/// (for the refusal's id and audit event, and to answer a header the body contradicts with
/// 400 as before), or if rmcp refuses it ([`Recheck`]).
pub(super) async fn handle<H, M, ReqBody>(
    state: Arc<HttpState>,
    inner: &StreamableHttpService<Authorized<H>, M>,
    request: Request<ReqBody>,
) -> Response<Body>
where
    Authorized<H>: ServerHandler + Send + 'static,
    M: SessionManager,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // What a refusal's audit event says is what the pipeline had found when it refused
    // (`Seen`); an allowed request builds no event here (the wrapper records it).
    let seen = Seen {
        method: &parts.method,
        session: parts.headers.get(SESSION_HEADER),
        remote,
        principal: None,
        rpc: None,
        id: None,
        authorization: parts.headers.get(AUTHORIZATION),
    };

    let principal = match authenticate(&state, &parts).await {
        Ok(principal) => principal,
        Err(refused) => {
            return refuse_unauthenticated(&state, refused, &parts, body, seen).await;
        }
    };
    let seen = Seen {
        principal: Some(&principal),
        ..seen
    };
    let bytes = match read_request_body(&state, &parts, body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refuse(&state, refused, seen).await,
    };
    let session = seen.session.and_then(|v| v.to_str().ok());
    // From the headers, when they name the operation and the layer allows it.
    let from_headers = (parts.method == Method::POST)
        .then(|| named(&parts.headers))
        .flatten()
        .and_then(
            |Headed {
                 named,
                 method,
                 name,
             }| {
                check_session(&state, session, &principal).ok()?;
                let decided = allows(&state, &principal, named)?;
                Some((decided, Recheck::of(method, name, seen.session, &bytes)))
            },
        );
    let (decided, recheck, determining) = match from_headers {
        Some((decided, recheck)) => (decided, Some(recheck), Vec::new()),
        // From the body: what the layer refuses is refused from what the body says.
        None => {
            let rpc = match read_message(&parts, &bytes) {
                Ok(rpc) => rpc,
                Err(unread) => {
                    let unread = *unread;
                    let seen = Seen {
                        rpc: unread.rpc.as_ref(),
                        id: unread.id.as_ref(),
                        ..seen
                    };
                    return refuse(&state, unread.refused, seen).await;
                }
            };
            let seen = Seen {
                rpc: rpc.as_ref(),
                id: rpc.as_ref().and_then(|r| r.id.as_ref()),
                ..seen
            };
            match check_session(&state, session, &principal)
                .and_then(|()| decide(&state, &principal, rpc.as_ref(), &bytes))
            {
                Ok(Some(policies)) => (rpc.and_then(into_decided), None, policies),
                Ok(None) => (None, None, Vec::new()),
                Err(refused) => {
                    let refused = refused.id(seen.id.cloned());
                    return refuse(&state, refused, seen).await;
                }
            }
        }
    };

    // Only a `DELETE` needs the session id once rmcp has answered (to forget it).
    let had_session = session.is_some();
    let closing = (parts.method == Method::DELETE)
        .then(|| session.map(str::to_owned))
        .flatten();
    // On to rmcp, with the caller and the decision; the token goes no further (handlers
    // get the principal, and the credential only as a `SubjectToken` to exchange: no token
    // passthrough, nothing to log).
    parts.extensions.insert(FromLayer {
        authz: state.guard.id(),
        remote,
        decided,
        determining,
    });
    parts.extensions.insert(principal.clone());
    if let Some(authorization) = parts.headers.remove(AUTHORIZATION) {
        parts
            .extensions
            .insert(SubjectToken::from_authorization(authorization));
    }
    let response = inner
        .handle(Request::from_parts(parts, Full::new(bytes)))
        .await;
    // rmcp refused a request the layer decided from its headers: if the body contradicts
    // them, the answer is the layer's own 400, audited, as when the layer reads the body
    // first.
    if let Some(recheck) = recheck
        && response.status().is_client_error()
        && let Err(refusal) = recheck.confirm(&state, &principal, remote).await
    {
        return refusal;
    }
    bind_session(
        &state,
        had_session,
        closing.as_deref(),
        &response,
        &principal,
    );
    // axum's `Body` is a boxed body: rmcp's (a boxed body of another error type) is boxed
    // once more here, as axum would box it in front of any router otherwise.
    response.map(Body::new)
}

/// Whether the policy allows what the headers name, checked as [`decide`] checks it from
/// the body: `Some` with the decision to hand on when the layer lets the request through,
/// `None` when it would refuse (and reads the body to say why).
fn allows(state: &HttpState, principal: &Principal, named: Named) -> Option<Option<Decided>> {
    let Named::Operation(decided) = named else {
        return Some(None);
    };
    let allowed = match (&decided, decided.operation()) {
        // Cedar policies decide on the arguments, which only the body has.
        (_, Some(operation)) if state.guard.needs_arguments(operation) => return None,
        (_, Some(operation)) => state.guard.decide(principal, operation).is_allowed(),
        (Decided::Task(task_id), None) => match state.guard.task_owner(task_id.as_str()) {
            Some(owner) if owner.caller.is(principal) => state
                .guard
                .decide(principal, Operation::CallTool(&owner.tool))
                .is_allowed(),
            // Whose task it is, the wrapper decides.
            _ => return Some(None),
        },
        (_, None) => false,
    };
    allowed.then_some(Some(decided))
}

/// What the layer keeps of a request it decided from its headers: enough to check the
/// headers against the body if rmcp refuses the request (reference-counted clones).
struct Recheck {
    bytes: Bytes,
    method: Option<HeaderValue>,
    name: Option<HeaderValue>,
    session: Option<HeaderValue>,
}

impl Recheck {
    /// What to keep of a request whose `Mcp-Method` and `Mcp-Name` values `named` read,
    /// with its session header and body.
    fn of(
        method: &HeaderValue,
        name: Option<&HeaderValue>,
        session: Option<&HeaderValue>,
        bytes: &Bytes,
    ) -> Recheck {
        Recheck {
            bytes: bytes.clone(),
            method: Some(method.clone()),
            name: name.cloned(),
            session: session.cloned(),
        }
    }

    /// The layer's refusal, audited, when the body is not one message or contradicts the
    /// headers (`Ok` when it agrees: rmcp's answer stands).
    async fn confirm(
        self,
        state: &HttpState,
        principal: &Principal,
        remote: Option<SocketAddr>,
    ) -> Result<(), Response<Body>> {
        fn text(value: &Option<HeaderValue>) -> Option<&str> {
            value.as_ref().and_then(|v| v.to_str().ok())
        }
        let unread = match rpc::parse(&self.bytes) {
            Ok(rpc) => match rpc.check_headers(text(&self.method), text(&self.name)) {
                Ok(()) => return Ok(()),
                Err(reason) => Unread {
                    refused: invalid_request(&reason).id(rpc.id.clone()).into(),
                    id: rpc.id.clone(),
                    rpc: Some(rpc),
                },
            },
            Err(e) => Unread {
                refused: invalid_request(&e.kind.to_string()).id(e.id.clone()).into(),
                id: e.id,
                rpc: None,
            },
        };
        let seen = Seen {
            method: &Method::POST,
            session: self.session.as_ref(),
            remote,
            principal: Some(principal),
            rpc: unread.rpc.as_ref(),
            id: unread.id.as_ref(),
            // A 400 without a challenge: no scheme to answer in.
            authorization: None,
        };
        Err(refuse(state, unread.refused, seen).await)
    }
}

/// A request refused before its caller was known: read what a small body says (its id,
/// for the answer and the audit event; the operation, for a 401's scope hint), which also
/// keeps the connection usable for the client's retry. A body too large, or too slow, to
/// read closes the connection.
async fn refuse_unauthenticated<B>(
    state: &HttpState,
    refused: Box<Refused>,
    parts: &http::request::Parts,
    body: B,
    seen: Seen<'_>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let bytes = read_body(
        &parts.headers,
        body,
        UNAUTHENTICATED_BODY_BYTES,
        UNAUTHENTICATED_BODY_TIME,
    )
    .await;
    let rpc = bytes
        .as_ref()
        .filter(|_| parts.method == Method::POST)
        .and_then(|b| rpc::parse(b).ok());
    let mut refused = refused.id(rpc.as_ref().and_then(|r| r.id.clone()));
    if bytes.is_none() {
        refused.rejection = refused.rejection.close_connection();
    }
    if refused.rejection.kind() == RejectionKind::MissingToken {
        let scope = rpc
            .as_ref()
            .and_then(operation_of)
            .and_then(|op| state.guard.policy().rule_for(op))
            .map(|rule| challenge_scope(&rule.requirement().scopes_to_request(&|_| false)))
            .filter(|s| !s.is_empty());
        refused.rejection = refused.rejection.challenge(&[
            ("resource_metadata", Some(&state.metadata_url)),
            ("scope", scope.as_deref()),
        ]);
    }
    let seen = Seen {
        rpc: rpc.as_ref(),
        id: rpc.as_ref().and_then(|r| r.id.as_ref()),
        ..seen
    };
    refuse(state, refused, seen).await
}

/// A request [`read_request`] refused, with what it read of it: the message's id and the
/// message, when known.
struct Unread {
    refused: Box<Refused>,
    id: Option<serde_json::Value>,
    rpc: Option<rpc::RpcRequest>,
}

/// The body, bounded in size and time (413 past either).
async fn read_request_body<B>(
    state: &HttpState,
    parts: &http::request::Parts,
    body: B,
) -> Result<Bytes, Box<Refused>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let limit = state.max_body_bytes;
    read_body(&parts.headers, body, limit, BODY_TIME)
        .await
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                RejectionKind::BodyTooLarge,
                &format!(
                    "the request body is larger than {limit} bytes, could not be read, or did \
                     not arrive within {} s",
                    BODY_TIME.as_secs()
                ),
            )
            // The rest of the body is unread: the connection cannot carry another request.
            .close_connection()
            .into()
        })
}

/// What the request asks for, from its body: for a `POST`, the one JSON-RPC message in
/// it, whose `Mcp-Method` / `Mcp-Name` headers must agree with it.
fn read_message(
    parts: &http::request::Parts,
    bytes: &Bytes,
) -> Result<Option<rpc::RpcRequest>, Box<Unread>> {
    if parts.method != Method::POST {
        return Ok(None);
    }
    let rpc = match rpc::parse(bytes) {
        Ok(rpc) => rpc,
        Err(e) => {
            return Err(Box::new(Unread {
                refused: invalid_request(&e.kind.to_string()).id(e.id.clone()).into(),
                id: e.id,
                rpc: None,
            }));
        }
    };
    let checked = single_header(&parts.headers, &METHOD_HEADER).and_then(|method| {
        let name = single_header(&parts.headers, &NAME_HEADER)?;
        rpc.check_headers(method, name)
    });
    if let Err(reason) = checked {
        return Err(Box::new(Unread {
            refused: invalid_request(&reason).id(rpc.id.clone()).into(),
            id: rpc.id.clone(),
            rpc: Some(rpc),
        }));
    }
    Ok(Some(rpc))
}

/// Sessions are never authentication: a session belongs to the principal that opened it.
/// Every session is opened through this layer, so one it does not know is gone (or was
/// forgotten): the client starts a new one, as after rmcp's own 404.
fn check_session(
    state: &HttpState,
    session: Option<&str>,
    principal: &Principal,
) -> Result<(), Box<Refused>> {
    let Some(session) = session else {
        return Ok(());
    };
    match state.sessions.get(session) {
        Some(owner) if owner.is(principal) => Ok(()),
        Some(_) => Err(Rejection::new(
            StatusCode::FORBIDDEN,
            RejectionKind::SessionMismatch,
            "this session was opened by another principal; start your own session",
        )
        .into()),
        None => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            RejectionKind::UnknownSession,
            "unknown session; start a new session",
        )
        .into()),
    }
}

/// The decision, made once: a denial is answered with the status an HTTP client acts on;
/// an allowed operation (`Some`, with the Cedar policies that allowed it) is handed on
/// ([`into_decided`]) to the wrapper, which does not decide it again. What the layer
/// leaves to the wrapper (lists, another caller's task) is `None`.
fn decide(
    state: &HttpState,
    principal: &Principal,
    rpc: Option<&rpc::RpcRequest>,
    bytes: &Bytes,
) -> Result<Option<Vec<String>>, Box<Refused>> {
    let Some(rpc) = rpc else {
        return Ok(None);
    };
    let mut policies = Vec::new();
    let method = rpc.method.as_deref().unwrap_or_default();
    let metadata_url = &state.metadata_url;
    let decision = if let Target::Task(task_id) = &rpc.target {
        // A task operation of the task's owner is a use of the tool that started it: a
        // scope since lost is a step-up challenge here. Whose task it is, the wrapper
        // decides, with one answer for another caller's task and one never issued.
        match state.guard.task_owner(task_id) {
            Some(owner) if owner.caller.is(principal) => state
                .guard
                .decide(principal, Operation::CallTool(&owner.tool)),
            _ => return Ok(None),
        }
    } else {
        let Some(operation) = operation_of(rpc) else {
            return Ok(None);
        };
        // Only a call Cedar policies decide pays for reading its arguments.
        let arguments = state
            .guard
            .needs_arguments(operation)
            .then(|| rpc::arguments(bytes))
            .flatten();
        let verdict = state
            .guard
            .decide_call(principal, operation, arguments.as_ref());
        policies = verdict.policies;
        verdict.decision
    };
    match decision {
        Decision::Deny(denial) => Err(Refused::denial(denial.for_method(method), metadata_url)),
        Decision::Allow => Ok(Some(policies)),
    }
}

/// The operation [`decide`] allowed, moved out of the parsed body for the wrapper.
fn into_decided(rpc: rpc::RpcRequest) -> Option<Decided> {
    Some(match rpc.target {
        Target::Tool(name) => Decided::Tool(name.into()),
        Target::Prompt(name) => Decided::Prompt(name.into()),
        Target::Resource(uri) => Decided::Resource(uri.into()),
        Target::Task(task_id) => Decided::Task(task_id.into()),
        Target::Skill(uri) => Decided::Skill(crate::server::skill_name(&uri)?.to_owned().into()),
        Target::Custom => Decided::Custom(rpc.method?.into()),
        Target::Other => return None,
    })
}

/// Remembers who opened the session rmcp's answer names, and forgets one that a `DELETE`
/// closed.
/// `had_session`: the request named a session; `closing`: the one a `DELETE` names.
fn bind_session<B>(
    state: &HttpState,
    had_session: bool,
    closing: Option<&str>,
    response: &Response<B>,
    principal: &Principal,
) {
    let sessions = &state.sessions;
    if !had_session {
        if let Some(new_id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            sessions.insert(new_id.to_owned(), Arc::new(CallerId::of(principal)));
        }
    } else if let Some(id) = closing
        && response.status().is_success()
    {
        sessions.invalidate(id);
    }
}

/// The caller of a request, from its headers alone: the token from the one
/// `Authorization` header, verified; for the `DPoP` scheme, its proof checked first and
/// its binding after. A refusal says why, with the verifier's error when it refused the
/// token. The 401 for a missing token gets its challenge later, with the scope hint the
/// body gives.
async fn authenticate(
    state: &HttpState,
    parts: &http::request::Parts,
) -> Result<Principal, Box<Refused>> {
    let metadata_url: &str = &state.metadata_url;
    let malformed = |message: &str| {
        invalid_request(message).challenge(&[
            ("error", Some("invalid_request")),
            ("resource_metadata", Some(metadata_url)),
        ])
    };
    // RFC 6750 section 2.3 allows a query parameter; MCP forbids it, and URLs end up in logs.
    if parts.uri.query().is_some_and(has_access_token_param) {
        return Err(malformed(
            "access tokens in the query string are refused; send them in the Authorization header",
        )
        .into());
    }
    let mut authorization = parts.headers.get_all(AUTHORIZATION).iter();
    let (first, second) = (authorization.next(), authorization.next());
    if second.is_some() {
        return Err(malformed("more than one Authorization header").into());
    }
    let Some((scheme, token)) = first.and_then(|v| access_token(v.as_bytes())) else {
        let refusal = Rejection::new(
            StatusCode::UNAUTHORIZED,
            RejectionKind::MissingToken,
            "this MCP server needs an OAuth access token (Authorization: Bearer ...)",
        );
        return Err(refusal.into());
    };
    match scheme {
        Scheme::Bearer => {
            #[cfg(feature = "dpop")]
            if state.dpop.as_ref().is_some_and(|d| d.required) {
                return Err(scheme_refused(
                    "this MCP server accepts only DPoP-bound access tokens (Authorization: \
                     DPoP with a DPoP proof), not bearer tokens",
                    metadata_url,
                )
                .into());
            }
            let principal = verify(state, token).await?;
            if principal.bound_key().is_some() {
                return Err(scheme_refused(
                    "this access token is DPoP-bound: present it with Authorization: DPoP \
                     and a DPoP proof signed with its key, not as a bearer token",
                    metadata_url,
                )
                .into());
            }
            Ok(principal)
        }
        Scheme::Dpop => {
            #[cfg(feature = "dpop")]
            if let Some(dpop) = &state.dpop {
                // The proof on every request, before the token (whose verification may
                // come from a cache).
                let proof = dpop.check_proof(parts, &state.origin, token)?;
                let principal = verify(state, token).await?;
                return dpop.bind(principal, &proof);
            }
            Err(scheme_refused(
                "this MCP server does not accept DPoP-bound tokens; present a bearer token \
                 (Authorization: Bearer ...)",
                metadata_url,
            )
            .into())
        }
    }
}

/// `token`, verified; a refusal with the verifier's error.
async fn verify(state: &HttpState, token: &str) -> Result<Principal, Box<Refused>> {
    state.guard.verifier().verify(token).await.map_err(|e| {
        Box::new(Refused {
            rejection: token_rejection(&e, &state.metadata_url),
            cause: Cause::Token(e),
        })
    })
}
