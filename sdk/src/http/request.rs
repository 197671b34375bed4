//! What the layer reads from a request before it decides: the bearer token, single
//! headers, the session id, the body under its limits, and the operation a JSON-RPC
//! request asks for.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use http::header::CONTENT_LENGTH;

use super::SESSION_HEADER;
use super::rpc::{self, Target};
use crate::policy::Operation;

/// The `Mcp-Session-Id` of a request, if any.
pub(super) fn session_id(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

/// The body, unless it is larger than `limit` (declared or actual), cannot be read, or is
/// not all received `within` this time.
pub(super) async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
    within: Duration,
) -> Option<Bytes>
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
    // A client that stops sending holds neither the connection nor a graceful shutdown
    // (and with it the audit log's drain) for longer than `within`.
    tokio::time::timeout(within, Limited::new(body, limit).collect())
        .await
        .ok()?
        .ok()
        .map(|c| c.to_bytes())
}

/// The value of a header that may appear at most once: `Err` when it is repeated (which
/// RFC 9110 section 5.3 would read as a comma-joined list no body can match).
pub(super) fn single_header<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (_, Some(_)) => Err(format!("the {name} header is repeated; send it once")),
        (Some(v), None) => Ok(Some(v.to_str().unwrap_or("\u{fffd}"))),
        (None, None) => Ok(None),
    }
}

/// The operation a request is decided as, if it needs a rule.
pub(super) fn operation_of(rpc: &rpc::RpcRequest) -> Option<Operation<'_>> {
    match &rpc.target {
        Target::Tool(name) => Some(Operation::CallTool(name)),
        Target::Prompt(name) => Some(Operation::GetPrompt(name)),
        Target::Resource(uri) => Some(Operation::ReadResource(uri)),
        // A skill URI in a form no rule can match is refused by the wrapper.
        Target::Skill(uri) => crate::server::skill_name(uri).map(Operation::GetSkill),
        Target::Custom => rpc.method.as_deref().map(Operation::Custom),
        // Decided by the wrapper (ownership), and by the layer as the owner's tool.
        Target::Task(_) | Target::Other => None,
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is matched without
/// regard to case (RFC 9110 section 11.1). Other schemes give `None`.
pub(super) fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    (!token.is_empty()).then_some(token)
}

pub(super) fn has_access_token_param(query: &str) -> bool {
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
