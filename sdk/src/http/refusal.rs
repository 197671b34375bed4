//! How the layer refuses a request: the refusal and its cause, the answer it makes (the
//! status, challenge and JSON-RPC error a client acts on), and its audit event, written
//! from what the pipeline had found of the request when it refused.

use std::net::SocketAddr;

use axum::body::Body;
use http::{HeaderValue, Method, Response, StatusCode};

use super::challenge::Rejection;
use super::layer::HttpState;
use super::rpc::{self, Target};
use super::*;
use crate::audit::{EventKind, Outcome, Record, method_text};
use crate::gate::{Audit, Call, Origin, RequestId};
use crate::oauth::{Scheme, access_token};
use crate::policy::{Denial, DenyReason};
use crate::principal::Principal;
use crate::token::AuthError;

/// A refusal, and why: what the answer and its audit event say.
pub(super) struct Refused {
    pub(super) rejection: Rejection,
    pub(super) cause: Cause,
}

/// Why a request was refused, for its audit event.
pub(super) enum Cause {
    /// As the refusal says.
    Refusal,
    /// The verifier refused the token.
    Token(AuthError),
    /// The policy denied the operation.
    Denial(Denial),
}

impl From<Rejection> for Box<Refused> {
    fn from(rejection: Rejection) -> Self {
        Box::new(Refused {
            rejection,
            cause: Cause::Refusal,
        })
    }
}

impl Refused {
    /// The refusal of a policy denial, answered as [`denial_rejection`] says.
    pub(super) fn denial(denial: Denial, metadata_url: &str) -> Box<Refused> {
        Box::new(Refused {
            rejection: denial_rejection(&denial, metadata_url),
            cause: Cause::Denial(denial),
        })
    }

    /// With the JSON-RPC id of the request, for the answer's body.
    pub(super) fn id(mut self: Box<Self>, id: Option<serde_json::Value>) -> Box<Refused> {
        self.rejection = self.rejection.id(id);
        self
    }
}

/// A 400 for a request the layer cannot read as one MCP request.
pub(super) fn invalid_request(message: &str) -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        RejectionKind::InvalidRequest,
        message,
    )
}

/// The answer to a policy denial: 401 `invalid_token` with a `DPoP` challenge when only a
/// DPoP-bound token would do, 401 `invalid_token` when only a newer token would do,
/// 403 with a step-up challenge naming every scope needed when scopes are missing, a plain
/// 403 otherwise.
fn denial_rejection(denial: &Denial, metadata_url: &str) -> Rejection {
    let message = denial.to_string();
    let refusal = if denial.needs_dpop() {
        // Only a DPoP-bound token, proven on the request, would do (RFC 9449 section 7.1).
        Rejection::new(
            StatusCode::UNAUTHORIZED,
            RejectionKind::InvalidToken,
            &message,
        )
        .dpop_challenge(&[
            ("error", Some("invalid_token")),
            (
                "error_description",
                Some("this operation needs a DPoP-bound access token and a DPoP proof"),
            ),
            ("resource_metadata", Some(metadata_url)),
        ])
    } else if denial.needs_new_token() {
        // A newer token would do: tell the client its token will not, as for an expired
        // one (RFC 6750 invalid_token).
        Rejection::new(
            StatusCode::UNAUTHORIZED,
            RejectionKind::InvalidToken,
            &message,
        )
        .challenge(&[
            ("error", Some("invalid_token")),
            (
                "error_description",
                Some("this operation needs a more recently issued access token"),
            ),
            ("resource_metadata", Some(metadata_url)),
        ])
    } else if let DenyReason::InsufficientScope { .. } = denial.reason() {
        Rejection::new(
            StatusCode::FORBIDDEN,
            RejectionKind::InsufficientScope,
            &message,
        )
        .challenge(&[
            ("error", Some("insufficient_scope")),
            ("scope", denial.challenge_scope().as_deref()),
            ("resource_metadata", Some(metadata_url)),
            (
                "error_description",
                Some("the access token lacks scopes this operation needs"),
            ),
        ])
    } else {
        Rejection::new(StatusCode::FORBIDDEN, RejectionKind::Forbidden, &message)
    };
    refusal.data(denial.error_data())
}

/// What the layer knew of a request when it refused it: what its audit event says.
#[derive(Clone, Copy)]
pub(super) struct Seen<'a> {
    pub(super) method: &'a Method,
    /// The request's `Mcp-Session-Id` header, shared into the audit record, not copied.
    pub(super) session: Option<&'a HeaderValue>,
    pub(super) remote: Option<SocketAddr>,
    pub(super) principal: Option<&'a Principal>,
    pub(super) rpc: Option<&'a rpc::RpcRequest>,
    pub(super) id: Option<&'a serde_json::Value>,
    /// The request's `Authorization` header: a token presented with the `DPoP` scheme is
    /// answered with `DPoP` challenges (read only when refusing).
    pub(super) authorization: Option<&'a HeaderValue>,
}

impl Seen<'_> {
    /// Whether the request presented its token with the `DPoP` scheme.
    fn used_dpop(&self) -> bool {
        self.authorization
            .and_then(|v| access_token(v.as_bytes()))
            .is_some_and(|(scheme, _)| scheme == Scheme::Dpop)
    }

    /// The refusal's audit record: denied, from what was seen of the request.
    pub(super) fn record(&self, refused: &Refused) -> Record {
        let origin = Origin {
            transport: "http",
            session: self.session,
            request_id: self.id.map(RequestId::Json),
            remote_addr: self.remote,
        };
        let mut record = Call {
            kind: EventKind::AuthenticationFailure,
            method: self.method.as_str(),
            target: None,
        }
        .record(&origin);
        if let Some(principal) = self.principal {
            record.principal = Some(principal.clone());
            record.kind = EventKind::Other;
        }
        if let Some(rpc) = self.rpc {
            describe_rpc(&mut record, rpc);
        }
        let rejection = &refused.rejection;
        match &refused.cause {
            Cause::Refusal => {
                record.deny(rejection.kind().code(), rejection.message().to_owned());
            }
            Cause::Token(e) => record.deny(e.error_code(), e.description()),
            Cause::Denial(d) => record.deny_by(d),
        }
        record
    }
}

/// Records the refusal's audit event, when there is an audit log, and answers with the
/// refusal.
pub(super) async fn refuse(
    state: &HttpState,
    refused: Box<Refused>,
    seen: Seen<'_>,
) -> Response<Body> {
    if let Some(auditor) = state.guard.auditor() {
        // A queue that refuses under overload has counted it; the refusal goes out anyway.
        if let Ok(audit) = Audit::begin(Some(auditor), || seen.record(&refused)).await {
            let _ = audit.finish(Outcome::Denied).await;
        }
    }
    refused
        .rejection
        .schemes(state.schemes(seen.used_dpop()))
        .into_response()
}

/// What a parsed JSON-RPC request tells the audit record: the kind, method and target.
pub(super) fn describe_rpc(record: &mut Record, rpc: &rpc::RpcRequest) {
    record.method = rpc.method.as_deref().map(method_text);
    // The kinds the wrapper records for the same methods.
    let kind = match rpc.method.as_deref() {
        Some("tools/call") => EventKind::ToolCall,
        Some("prompts/get") => EventKind::PromptGet,
        Some("resources/read" | "resources/subscribe" | "resources/directory/read") => {
            EventKind::ResourceRead
        }
        _ => EventKind::Other,
    };
    let target = match &rpc.target {
        Target::Tool(name) | Target::Prompt(name) => Some(name),
        Target::Resource(uri) | Target::Skill(uri) | Target::Task(uri) => Some(uri),
        Target::Custom | Target::Other => None,
    };
    if record.kind != EventKind::AuthenticationFailure {
        record.kind = kind;
    }
    record.target = target.map(|t| t.clone().into());
}

/// The 401 for a token presented with a scheme this server does not accept: `DPoP`
/// where only bearer tokens are, `Bearer` where DPoP is required, or for a DPoP-bound
/// token presented as `Bearer`, which anyone who copied it could do (RFC 9449 section
/// 7.2).
pub(super) fn scheme_refused(message: &str, metadata_url: &str) -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        RejectionKind::InvalidToken,
        message,
    )
    .challenge(&[
        ("error", Some("invalid_token")),
        ("error_description", Some(message)),
        ("resource_metadata", Some(metadata_url)),
    ])
}

/// The 401 (or 400) for a token the verifier refused.
pub(super) fn token_rejection(error: &AuthError, metadata_url: &str) -> Rejection {
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
