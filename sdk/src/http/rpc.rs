//! What a JSON-RPC request body asks for, read before rmcp sees it.
//!
//! The layer needs the operation of a `tools/call` (and of `prompts/get` and
//! `resources/read`) to decide it before anything runs. The name comes from the body, and,
//! for 2026-07-28 clients, also from the `Mcp-Name` header (SEP-2243); when both are
//! present they must agree, so a proxy routing on the header and rmcp acting on the body
//! never see two different operations.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The operation a request body names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `tools/call` of this tool.
    Tool(String),
    /// `prompts/get` of this prompt.
    Prompt(String),
    /// `resources/read` (or subscribe, or directory read) of this URI.
    Resource(String),
    /// Anything else: decided by the wrapper.
    Other,
}

/// A parsed request body.
#[derive(Debug)]
pub(crate) struct RpcRequest {
    pub(crate) method: Option<String>,
    pub(crate) id: Option<Value>,
    pub(crate) target: Target,
    /// The value `Mcp-Name` must carry, when the method has one.
    name_header_value: Option<String>,
}

/// Why a body cannot be a single JSON-RPC message, with the message's id when known.
#[derive(Debug)]
pub(crate) struct BodyError {
    pub(crate) reason: &'static str,
    pub(crate) id: Option<Value>,
}

/// Parses one JSON-RPC message (request, notification or response). Repeated member
/// names are refused at any depth, so the layer and rmcp cannot read different values.
pub(crate) fn parse(body: &[u8]) -> Result<RpcRequest, BodyError> {
    let value = crate::json::parse_value(body).map_err(|e| BodyError {
        reason: if e.to_string().contains("duplicate member") {
            "the body repeats a member name; send each member once"
        } else {
            "the body is not JSON"
        },
        id: None,
    })?;
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err(BodyError {
                reason: "JSON-RPC batches are not accepted; send one message per request",
                id: None,
            });
        }
        _ => {
            return Err(BodyError {
                reason: "the body is not a JSON-RPC message object",
                id: None,
            });
        }
    };
    let id = obj.get("id").cloned();
    let fail = |reason| BodyError {
        reason,
        id: id.clone(),
    };
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(fail("\"method\" must be a string")),
        None if obj.contains_key("result") || obj.contains_key("error") => {
            // A client's response to a server request: no operation to decide.
            return Ok(RpcRequest {
                method: None,
                id,
                target: Target::Other,
                name_header_value: None,
            });
        }
        None => return Err(fail("the message has no \"method\"")),
    };
    let params = obj.get("params");
    let param = |name: &str| -> Result<String, BodyError> {
        match params.and_then(|p| p.get(name)) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(fail(match name {
                "name" => "\"params.name\" must be a string",
                _ => "\"params.uri\" must be a string",
            })),
            None => Err(fail(match name {
                "name" => "\"params.name\" is missing",
                _ => "\"params.uri\" is missing",
            })),
        }
    };
    let string_param = |name: &str| {
        params
            .and_then(|p| p.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (target, name_header_value) = match method.as_str() {
        "tools/call" => {
            let name = param("name")?;
            (Target::Tool(name.clone()), Some(name))
        }
        "prompts/get" => {
            let name = param("name")?;
            (Target::Prompt(name.clone()), Some(name))
        }
        "resources/read" | "resources/subscribe" | "resources/directory/read" => {
            let uri = param("uri")?;
            (Target::Resource(uri.clone()), Some(uri))
        }
        "resources/unsubscribe" => (Target::Other, string_param("uri")),
        "tasks/get" | "tasks/update" | "tasks/cancel" => (Target::Other, string_param("taskId")),
        _ => (Target::Other, None),
    };
    Ok(RpcRequest {
        method: Some(method),
        id,
        target,
        name_header_value,
    })
}

impl RpcRequest {
    /// Checks the `Mcp-Method` and `Mcp-Name` headers against the body.
    pub(crate) fn check_headers(
        &self,
        method_header: Option<&str>,
        name_header: Option<&str>,
    ) -> Result<(), String> {
        if let Some(header) = method_header
            && self.method.as_deref() != Some(header)
        {
            return Err(format!(
                "the Mcp-Method header {header:?} does not match the body's method {:?}",
                self.method.as_deref().unwrap_or("")
            ));
        }
        if let Some(header) = name_header {
            let decoded = decode_header_value(header)
                .ok_or_else(|| "the Mcp-Name header is not a valid value".to_owned())?;
            if self.name_header_value.as_deref() != Some(decoded.as_str()) {
                return Err(format!(
                    "the Mcp-Name header {decoded:?} does not match the body's {:?}",
                    self.name_header_value.as_deref().unwrap_or("")
                ));
            }
        }
        Ok(())
    }
}

/// SEP-2243 header values: plain visible ASCII, or `=?base64?<standard base64>?=`
/// wrapping UTF-8.
fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => String::from_utf8(STANDARD.decode(encoded).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_names_its_tool() {
        let r =
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"purge"}}"#)
                .unwrap();
        assert_eq!(r.target, Target::Tool("purge".into()));
        assert_eq!(r.id, Some(serde_json::json!(1)));
        assert!(r.check_headers(Some("tools/call"), Some("purge")).is_ok());
        assert!(r.check_headers(None, Some("list_notes")).is_err());
        assert!(r.check_headers(Some("tools/list"), None).is_err());
    }

    #[test]
    fn base64_header_values_are_decoded() {
        let r = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ünï"}}"#.as_bytes(),
        )
        .unwrap();
        let encoded = format!("=?base64?{}?=", STANDARD.encode("ünï"));
        assert!(r.check_headers(None, Some(&encoded)).is_ok());
        assert!(r.check_headers(None, Some("=?base64?!!?=")).is_err());
    }

    #[test]
    fn malformed_bodies_are_named() {
        for (body, needle) in [
            (&b"not json"[..], "not JSON"),
            (b"[]", "batches"),
            (b"3", "not a JSON-RPC message"),
            (br#"{"jsonrpc":"2.0","id":1}"#, "no \"method\""),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                "must be a string",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
                "params.name",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
                "params.name",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#,
                "params.uri",
            ),
        ] {
            let err = parse(body).unwrap_err().reason;
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn repeated_members_are_refused_and_ids_kept() {
        let err = parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .unwrap_err();
        assert!(err.reason.contains("repeats"), "{}", err.reason);
        let err = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":3}}"#)
            .unwrap_err();
        assert_eq!(err.id, Some(serde_json::json!(7)));
    }

    #[test]
    fn responses_and_other_methods_need_no_decision() {
        let r = parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        assert_eq!(r.target, Target::Other);
        let r = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(r.target, Target::Other);
        let r = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(r.id, None);
    }
}
