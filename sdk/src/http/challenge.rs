//! The responses the HTTP layer answers with itself, and their `WWW-Authenticate`
//! challenges (RFC 6750 section 3, RFC 9728 section 5.1, RFC 9449 section 7.1, MCP
//! authorization).
//!
//! A challenge names the scheme the request used: `DPoP` (with the proof algorithms
//! accepted, `algs`) for a request that presented a DPoP-bound token, `Bearer` otherwise;
//! a 401 to a server that accepts both schemes carries both challenges, `Bearer` first
//! (the one rmcp's client reads), and a server that accepts only `DPoP` challenges with
//! `DPoP` alone. Every parameter value is a quoted-string (RFC 9110 section 5.6.4) with
//! `"` and `\` escaped. Each response has a JSON-RPC error body so a person reading it, or a client
//! that shows it, learns what was wrong; the rejection also goes into the response
//! extensions as an [`AuthRejection`].

use axum::body::Body;
use http::header::{CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::codes;

/// Why the HTTP layer answered a request itself; found in the response's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRejection {
    status: StatusCode,
    kind: RejectionKind,
    message: String,
}

/// The kind of an [`AuthRejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No bearer token: 401.
    MissingToken,
    /// The token was refused by the verifier: 401 (or 400 for an oversized token).
    InvalidToken,
    /// The request is malformed (token in the query string, two `Authorization` headers,
    /// a body that is not one JSON-RPC message, header and body disagree): 400.
    InvalidRequest,
    /// The body is larger than the configured limit: 413.
    BodyTooLarge,
    /// The policy refused the operation for lack of scopes: 403 with a step-up challenge.
    InsufficientScope,
    /// The policy refused the operation for another reason (no rule, client not
    /// permitted): 403.
    Forbidden,
    /// The session was opened by another principal: 403.
    SessionMismatch,
    /// The session is not known to the layer (closed, or forgotten): 404, as rmcp answers
    /// for unknown sessions; the client starts a new one.
    UnknownSession,
    /// The DPoP proof is missing, repeated or invalid, or needs a fresh nonce from the
    /// server (RFC 9449 `invalid_dpop_proof`, `use_dpop_nonce`): 401.
    InvalidDpopProof,
}

impl RejectionKind {
    /// The reason code audit events record for this rejection.
    pub fn code(self) -> &'static str {
        match self {
            RejectionKind::MissingToken => "missing_token",
            RejectionKind::InvalidToken => "invalid_token",
            RejectionKind::InvalidRequest => "invalid_request",
            RejectionKind::BodyTooLarge => "body_too_large",
            RejectionKind::InsufficientScope => "insufficient_scope",
            RejectionKind::Forbidden => "forbidden",
            RejectionKind::SessionMismatch => "session_mismatch",
            RejectionKind::UnknownSession => "unknown_session",
            RejectionKind::InvalidDpopProof => "invalid_dpop_proof",
        }
    }
}

impl AuthRejection {
    /// The HTTP status sent.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What kind of rejection.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The message sent in the body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A quoted-string with `\` and `"` escaped; other characters outside the visible ASCII
/// range are replaced, so no header can be broken by a value.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// Builds `<scheme> k="v", ...` from the parameters that are present.
pub(crate) fn challenge_of(scheme: &str, params: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", quote(v))))
        .collect();
    if parts.is_empty() {
        scheme.to_owned()
    } else {
        format!("{scheme} {}", parts.join(", "))
    }
}

/// The schemes a server accepts, and the one a request used: which challenges a
/// rejection carries.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Schemes<'a> {
    /// Whether `Bearer` tokens are accepted (not when the server requires DPoP).
    pub(crate) bearer_refused: bool,
    /// The proof algorithms, when `DPoP` is accepted.
    pub(crate) dpop_algs: Option<&'a str>,
    /// Whether the request presented its token with the `DPoP` scheme.
    pub(crate) used_dpop: bool,
}

/// The JSON-RPC error code sent in bodies of the layer's own responses.
fn rpc_code(kind: RejectionKind) -> i32 {
    match kind {
        RejectionKind::MissingToken
        | RejectionKind::InvalidToken
        | RejectionKind::InvalidDpopProof => codes::UNAUTHENTICATED.0,
        RejectionKind::InvalidRequest
        | RejectionKind::BodyTooLarge
        | RejectionKind::UnknownSession => codes::INVALID_REQUEST.0,
        RejectionKind::InsufficientScope
        | RejectionKind::Forbidden
        | RejectionKind::SessionMismatch => codes::FORBIDDEN.0,
    }
}

/// A response the layer sends itself, built up and then turned into a response.
pub(crate) struct Rejection {
    status: StatusCode,
    kind: RejectionKind,
    message: String,
    /// The challenge's parameters (its scheme is chosen when the answer is made).
    challenge: Option<Vec<(&'static str, String)>>,
    /// A challenge that is `DPoP` whatever scheme the request used (a proof's refusal).
    dpop_only: bool,
    /// The challenges after the first: `DPoP` beside `Bearer`.
    more_challenges: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    id: Option<Value>,
    data: Option<Value>,
    close: bool,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, kind: RejectionKind, message: &str) -> Rejection {
        Rejection {
            status,
            kind,
            message: message.to_owned(),
            challenge: None,
            dpop_only: false,
            more_challenges: Vec::new(),
            headers: Vec::new(),
            id: None,
            data: None,
            close: false,
        }
    }

    pub(crate) fn kind(&self) -> RejectionKind {
        self.kind
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// A `WWW-Authenticate` challenge with these parameters, in the scheme
    /// [`Rejection::schemes`] chooses (`Bearer` unless told otherwise).
    pub(crate) fn challenge(mut self, params: &[(&'static str, Option<&str>)]) -> Rejection {
        self.challenge = Some(
            params
                .iter()
                .filter_map(|(k, v)| v.map(|v| (*k, v.to_owned())))
                .collect(),
        );
        self
    }

    /// A `WWW-Authenticate: DPoP` challenge with these parameters, whatever scheme the
    /// request used: the refusal of its DPoP proof.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn dpop_challenge(self, params: &[(&'static str, Option<&str>)]) -> Rejection {
        let mut this = self.challenge(params);
        this.dpop_only = true;
        this
    }

    /// A header the answer carries (`DPoP-Nonce`).
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Rejection {
        self.headers.push((name, value));
        self
    }

    /// The challenges in the schemes the server accepts: the request's own scheme (`DPoP`
    /// with `algs` for a DPoP request or a server that requires DPoP), and a `DPoP`
    /// challenge beside a 401's `Bearer` one when both are accepted.
    pub(crate) fn schemes(mut self, schemes: Schemes<'_>) -> Rejection {
        let Some(mut params) = self.challenge.take() else {
            return self;
        };
        let dpop = self.dpop_only
            || (schemes.dpop_algs.is_some() && (schemes.used_dpop || schemes.bearer_refused));
        if dpop {
            if let Some(algs) = schemes.dpop_algs {
                params.push(("algs", algs.to_owned()));
            }
        } else if self.status == StatusCode::UNAUTHORIZED
            && let Some(algs) = schemes.dpop_algs
        {
            self.more_challenges
                .push(challenge_of("DPoP", &[("algs", Some(algs))]));
        }
        self.challenge = Some(params);
        self.dpop_only = dpop;
        self
    }

    /// The JSON-RPC id of the request, when it was read.
    pub(crate) fn id(mut self, id: Option<Value>) -> Rejection {
        self.id = id;
        self
    }

    /// The error's `data`.
    /// Answers with `Connection: close`: the request's body was not read to its end, so
    /// the connection cannot carry another request, and the client must know before it
    /// reuses it.
    pub(crate) fn close_connection(mut self) -> Rejection {
        self.close = true;
        self
    }

    pub(crate) fn data(mut self, data: Value) -> Rejection {
        self.data = Some(data);
        self
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let Rejection {
            status,
            kind,
            message,
            challenge,
            dpop_only,
            more_challenges,
            headers,
            id,
            data,
            close,
        } = self;
        tracing::trace!(target: "rmcp_authz::rejection", status = status.as_u16(), ?kind, %message, "request rejected");
        let mut error = json!({ "code": rpc_code(kind), "message": message });
        if let Some(data) = data {
            error["data"] = data;
        }
        let body = json!({ "jsonrpc": "2.0", "id": id.unwrap_or(Value::Null), "error": error });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(params) = challenge {
            let params: Vec<(&str, Option<&str>)> =
                params.iter().map(|(k, v)| (*k, Some(v.as_str()))).collect();
            let scheme = if dpop_only { "DPoP" } else { "Bearer" };
            let first = challenge_of(scheme, &params);
            for challenge in std::iter::once(first).chain(more_challenges) {
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().append(WWW_AUTHENTICATE, value);
                }
            }
        }
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(AuthRejection {
            status,
            kind,
            message,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("line\nbreak"), "\"line?break\"");
    }

    #[test]
    fn challenge_lists_present_parameters_only() {
        assert_eq!(challenge_of("Bearer", &[]), "Bearer");
        assert_eq!(
            challenge_of(
                "Bearer",
                &[
                    ("error", Some("invalid_token")),
                    ("scope", None),
                    (
                        "resource_metadata",
                        Some("https://x/.well-known/oauth-protected-resource")
                    )
                ]
            ),
            r#"Bearer error="invalid_token", resource_metadata="https://x/.well-known/oauth-protected-resource""#
        );
    }
}
