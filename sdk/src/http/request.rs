//! What the layer reads from a request before it decides: the bearer token, single
//! headers, the session id, the body under its limits, and the operation a JSON-RPC
//! request asks for.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use http::header::CONTENT_LENGTH;

use super::rpc::{self, MCP_METHODS, Target};
use super::{METHOD_HEADER, NAME_HEADER, VERSION_HEADER};
use crate::gate::{Decided, Name};
use crate::policy::Operation;
use http::{HeaderMap, HeaderName, HeaderValue};

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
    name: &HeaderName,
) -> Result<Option<&'a str>, String> {
    let value = only(headers, name)
        .ok_or_else(|| format!("the {name} header is repeated; send it once"))?;
    Ok(value.map(|v| v.to_str().unwrap_or("\u{fffd}")))
}

/// What a request names in its SEP-2243 headers, read without its body.
pub(super) enum Named {
    /// A method with nothing for the layer to decide (a list, `initialize`, a notification).
    Nothing,
    /// An operation the layer decides: a tool, prompt or resource, a custom request, or a
    /// task operation.
    Operation(Decided),
}

/// What a 2026-07-28 request names in its `Mcp-Method` and `Mcp-Name` headers, when rmcp
/// checks both against the body before anything runs (it answers a mismatch with 400 and
/// runs nothing); `None` when only the body can tell, and the layer reads it.
///
/// rmcp checks the headers of a request that declares `MCP-Protocol-Version` 2026-07-28
/// or later, and requires `Mcp-Name` for the methods that name something (its value from
/// `params.name`, `params.uri` or `params.taskId`). The headers are read here only where
/// that check covers everything the layer decides from: a method rmcp names nothing for
/// (`completion/complete`, `skills/get`, `resources/directory/read`), a repeated header, a
/// value that is not visible ASCII or not valid base64, an `Mcp-Name` missing where rmcp
/// requires one or present where it checks none, all leave the decision to the body.
pub(super) fn named(headers: &HeaderMap) -> Option<Headed<'_>> {
    let version = only(headers, &VERSION_HEADER)??;
    if version.to_str().ok()? < rmcp::model::ProtocolVersion::STANDARD_HEADERS.as_str() {
        return None;
    }
    let method_value = only(headers, &METHOD_HEADER)??;
    let method = method_value.to_str().ok()?;
    let name = only(headers, &NAME_HEADER)?;
    let named = match method {
        "tools/call" => Named::Operation(Decided::Tool(name_of(name?)?)),
        "prompts/get" => Named::Operation(Decided::Prompt(name_of(name?)?)),
        "resources/read" | "resources/subscribe" => {
            Named::Operation(Decided::Resource(name_of(name?)?))
        }
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            Named::Operation(Decided::Task(name_of(name?)?))
        }
        "resources/unsubscribe" => {
            name?;
            Named::Nothing
        }
        // rmcp checks no `Mcp-Name` for these: the name is in the body only.
        "completion/complete" | "skills/get" | "resources/directory/read" => return None,
        _ if name.is_some() => return None,
        m if MCP_METHODS.contains(&m) || m.starts_with("notifications/") => Named::Nothing,
        // A custom request (or notification: a denial reads the body to tell).
        _ => Named::Operation(Decided::Custom(Name::Header(method_value.clone()))),
    };
    Some(Headed {
        named,
        method: method_value,
        name,
    })
}

/// What [`named`] read: the operation, and the header values it came from (kept to check
/// against the body should rmcp refuse the request).
pub(super) struct Headed<'a> {
    /// What the headers name.
    pub(super) named: Named,
    /// The `Mcp-Method` value.
    pub(super) method: &'a HeaderValue,
    /// The `Mcp-Name` value, when there is one.
    pub(super) name: Option<&'a HeaderValue>,
}

/// The one value of header `name`: `Some(None)` when absent, `None` when repeated.
fn only<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Option<&'a HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (_, Some(_)) => None,
        (value, None) => Some(value),
    }
}

/// The name an `Mcp-Name` value carries: the value itself when plain (a reference-counted
/// clone), decoded when base64-wrapped; `None` when it is neither.
fn name_of(value: &HeaderValue) -> Option<Name> {
    let text = value.to_str().ok()?;
    if text.starts_with("=?base64?") {
        return rpc::decode_header_value(text).map(Name::Owned);
    }
    Some(Name::Header(value.clone()))
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

pub(super) fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("access_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_found() {
        assert!(has_access_token_param("a=1&access_token=x"));
        assert!(has_access_token_param("access_token"));
        assert!(!has_access_token_param("my_access_token=x"));
    }
}
