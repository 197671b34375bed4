//! The responses the HTTP layer answers with itself, and their `WWW-Authenticate`
//! challenges (RFC 6750 section 3, RFC 9728 section 5.1, MCP authorization).
//!
//! Every parameter value is a quoted-string (RFC 9110 section 5.6.4) with `"` and `\`
//! escaped. Each response has a JSON-RPC error body so a person reading it, or a client
//! that shows it, learns what was wrong; the rejection also goes into the response
//! extensions as an [`AuthRejection`].

use axum::body::Body;
use http::header::{CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
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

/// Builds `Bearer k="v", ...` from the parameters that are present.
pub(crate) fn bearer_challenge(params: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", quote(v))))
        .collect();
    if parts.is_empty() {
        "Bearer".to_owned()
    } else {
        format!("Bearer {}", parts.join(", "))
    }
}

/// The JSON-RPC error code sent in bodies of the layer's own responses.
fn rpc_code(kind: RejectionKind) -> i32 {
    match kind {
        RejectionKind::MissingToken | RejectionKind::InvalidToken => codes::UNAUTHENTICATED.0,
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
    challenge: Option<String>,
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

    /// A `WWW-Authenticate: Bearer` challenge with these parameters.
    pub(crate) fn challenge(mut self, params: &[(&str, Option<&str>)]) -> Rejection {
        self.challenge = Some(bearer_challenge(params));
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
        if let Some(challenge) = challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
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
        assert_eq!(bearer_challenge(&[]), "Bearer");
        assert_eq!(
            bearer_challenge(&[
                ("error", Some("invalid_token")),
                ("scope", None),
                (
                    "resource_metadata",
                    Some("https://x/.well-known/oauth-protected-resource")
                )
            ]),
            r#"Bearer error="invalid_token", resource_metadata="https://x/.well-known/oauth-protected-resource""#
        );
    }
}
