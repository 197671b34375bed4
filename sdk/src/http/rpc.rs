//! What a JSON-RPC request body asks for, read before rmcp sees it.
//!
//! The layer needs the operation of a request (a `tools/call`, `prompts/get`,
//! `resources/read`, a completion, a skill, a custom request) to decide it before anything
//! runs. The name comes from the body, and,
//! for 2026-07-28 clients, also from the `Mcp-Name` header (SEP-2243); when both are
//! present they must agree, so a proxy routing on the header and rmcp acting on the body
//! never see two different operations.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::value::SeqAccessDeserializer;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::json::{Checked, Name, Names, Strict};

/// The operation a request body names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `tools/call` of this tool.
    Tool(String),
    /// `prompts/get` of this prompt.
    Prompt(String),
    /// `resources/read` (or subscribe, or directory read) of this URI.
    Resource(String),
    /// `skills/get` of the skill at this URI.
    Skill(String),
    /// `tasks/get`, `tasks/update` or `tasks/cancel` of this task.
    Task(String),
    /// A request whose method MCP does not define (the method is the request's).
    Custom,
    /// Anything else: basic access, or decided by the wrapper only (tasks).
    Other,
}

/// The request methods MCP defines (as rmcp 3.11 knows them); any other method with an
/// `id` is a custom request.
pub(super) const MCP_METHODS: [&str; 21] = [
    "initialize",
    "ping",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/directory/read",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "skills/list",
    "skills/get",
];

/// The `params.arguments` object of a request body (a `tools/call`'s), when it has one;
/// read only for a call Cedar policies decide on its arguments.
pub(crate) fn arguments(bytes: &[u8]) -> Option<serde_json::Map<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Body {
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        arguments: Option<serde_json::Map<String, Value>>,
    }
    serde_json::from_slice::<Body>(bytes)
        .ok()?
        .params?
        .arguments
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
    pub(crate) kind: BodyErrorKind,
    pub(crate) id: Option<Value>,
}

/// What is wrong with a body; its `Display` is the `-32600` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyErrorKind {
    NotJson,
    RepeatedMember,
    Batch,
    NotAMessage,
    MethodNotAString,
    NoMethod,
    MissingParam(Member),
    ParamNotAString(Member),
}

impl fmt::Display for BodyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyErrorKind::NotJson => f.write_str("the body is not JSON"),
            BodyErrorKind::RepeatedMember => {
                f.write_str("the body repeats a member name; send each member once")
            }
            BodyErrorKind::Batch => {
                f.write_str("JSON-RPC batches are not accepted; send one message per request")
            }
            BodyErrorKind::NotAMessage => f.write_str("the body is not a JSON-RPC message object"),
            BodyErrorKind::MethodNotAString => f.write_str("\"method\" must be a string"),
            BodyErrorKind::NoMethod => f.write_str("the message has no \"method\""),
            BodyErrorKind::MissingParam(m) => write!(f, "\"params.{}\" is missing", m.name()),
            BodyErrorKind::ParamNotAString(m) => {
                write!(f, "\"params.{}\" must be a string", m.name())
            }
        }
    }
}

/// A member of `params` the layer reads to find the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    Name,
    Uri,
    TaskId,
}

impl Member {
    /// The member's name in the JSON.
    fn name(self) -> &'static str {
        match self {
            Member::Name => "name",
            Member::Uri => "uri",
            Member::TaskId => "taskId",
        }
    }

    /// Its value in `params`, if present.
    fn get(self, params: &Params) -> Option<&Value> {
        match self {
            Member::Name => params.name.as_ref(),
            Member::Uri => params.uri.as_ref(),
            Member::TaskId => params.task_id.as_ref(),
        }
    }
}

/// Parses one JSON-RPC message (request, notification or response). Repeated member
/// names are refused at any depth, so the layer and rmcp cannot read different values.
///
/// One pass over the body: the members the layer reads are kept, the rest (arguments,
/// `_meta`) are only walked for the duplicate check, never built.
pub(crate) fn parse(body: &[u8]) -> Result<RpcRequest, BodyError> {
    let message = serde_json::from_slice::<Message>(body).map_err(|e| BodyError {
        // The visitors accept any JSON shape, so the one data error (as opposed to a syntax
        // error or an early end) they raise is a repeated member name.
        kind: match e.classify() {
            serde_json::error::Category::Data => BodyErrorKind::RepeatedMember,
            _ => BodyErrorKind::NotJson,
        },
        id: None,
    })?;
    let obj = match message {
        Message::Object(obj) => obj,
        Message::Batch => {
            return Err(BodyError {
                kind: BodyErrorKind::Batch,
                id: None,
            });
        }
        Message::Other => {
            return Err(BodyError {
                kind: BodyErrorKind::NotAMessage,
                id: None,
            });
        }
    };
    let id = obj.id;
    let fail = |kind| BodyError {
        kind,
        id: id.clone(),
    };
    let method = match obj.method {
        Some(Value::String(m)) => m,
        Some(_) => return Err(fail(BodyErrorKind::MethodNotAString)),
        None if obj.is_response => {
            // A client's response to a server request: no operation to decide.
            return Ok(RpcRequest {
                method: None,
                id,
                target: Target::Other,
                name_header_value: None,
            });
        }
        None => return Err(fail(BodyErrorKind::NoMethod)),
    };
    let params = obj.params;
    let is_request = id.is_some();
    // A member the operation needs: present and a string.
    let param = |member: Member| -> Result<String, BodyError> {
        match member.get(&params) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(fail(BodyErrorKind::ParamNotAString(member))),
            None => Err(fail(BodyErrorKind::MissingParam(member))),
        }
    };
    // A member only named in the `Mcp-Name` check: taken when it is a string.
    let string_param = |member: Member| {
        member
            .get(&params)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (target, name_header_value) = match method.as_str() {
        "tools/call" => {
            let name = param(Member::Name)?;
            (Target::Tool(name.clone()), Some(name))
        }
        "prompts/get" => {
            let name = param(Member::Name)?;
            (Target::Prompt(name.clone()), Some(name))
        }
        "resources/read" | "resources/subscribe" | "resources/directory/read" => {
            let uri = param(Member::Uri)?;
            (Target::Resource(uri.clone()), Some(uri))
        }
        "resources/unsubscribe" => (Target::Other, string_param(Member::Uri)),
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            let task = string_param(Member::TaskId);
            (task.clone().map_or(Target::Other, Target::Task), task)
        }
        "skills/get" => (Target::Skill(param(Member::Uri)?), None),
        // Decided as the prompt or resource completed; any other kind of reference is
        // left to the wrapper (which denies it unless a custom rule names the method).
        "completion/complete" => {
            let reference = params.reference.as_ref();
            let field = |name: &str| reference.and_then(|r| r.get(name)).and_then(Value::as_str);
            let target = match field("type") {
                Some("ref/prompt") => field("name").map(|n| Target::Prompt(n.to_owned())),
                Some("ref/resource") => field("uri").map(|u| Target::Resource(u.to_owned())),
                _ => None,
            };
            (target.unwrap_or(Target::Other), None)
        }
        m if is_request && !m.starts_with("notifications/") && !MCP_METHODS.contains(&m) => {
            (Target::Custom, None)
        }
        _ => (Target::Other, None),
    };
    Ok(RpcRequest {
        method: Some(method),
        id,
        target,
        name_header_value,
    })
}

/// The top of a body: an object (the one shape accepted), a batch, or anything else.
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, on the stack while the body is read; with serde_json's \
              preserve_order (which Cedar turns on) a `Value` is 72 bytes"
)]
enum Message {
    Object(Envelope),
    Batch,
    Other,
}

/// The members of a message the layer reads.
#[derive(Default)]
struct Envelope {
    id: Option<Value>,
    method: Option<Value>,
    /// A `result` or `error` member: a client's response to a server request.
    is_response: bool,
    params: Params,
}

/// The members of `params` the layer reads (none when `params` is not an object).
#[derive(Default)]
struct Params {
    name: Option<Value>,
    uri: Option<Value>,
    task_id: Option<Value>,
    /// `ref` of a completion.
    reference: Option<Value>,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;
        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Message, A::Error> {
                let mut names = Names::default();
                let mut envelope = Envelope::default();
                while let Some(Name(name)) = access.next_key()? {
                    match &*name {
                        "id" => envelope.id = Some(access.next_value::<Strict>()?.0),
                        "method" => envelope.method = Some(access.next_value::<Strict>()?.0),
                        "params" => envelope.params = access.next_value()?,
                        "result" | "error" => {
                            envelope.is_response = true;
                            access.next_value::<Checked>()?;
                        }
                        _ => {
                            access.next_value::<Checked>()?;
                        }
                    }
                    names.insert(name)?;
                }
                Ok(Message::Object(envelope))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Message, A::Error> {
                Checked::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Message::Batch)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Message, E> {
                Ok(Message::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Message, E> {
                Ok(Message::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Message, E> {
                Ok(Message::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Message, E> {
                Ok(Message::Other)
            }

            fn visit_str<E>(self, _: &str) -> Result<Message, E> {
                Ok(Message::Other)
            }

            fn visit_unit<E>(self) -> Result<Message, E> {
                Ok(Message::Other)
            }
        }
        deserializer.deserialize_any(MessageVisitor)
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON-RPC params")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Params, A::Error> {
                let mut names = Names::default();
                let mut params = Params::default();
                while let Some(Name(name)) = access.next_key()? {
                    let slot = match &*name {
                        "name" => Some(&mut params.name),
                        "uri" => Some(&mut params.uri),
                        "taskId" => Some(&mut params.task_id),
                        "ref" => Some(&mut params.reference),
                        _ => None,
                    };
                    match slot {
                        Some(slot) => *slot = Some(access.next_value::<Strict>()?.0),
                        None => {
                            access.next_value::<Checked>()?;
                        }
                    }
                    names.insert(name)?;
                }
                Ok(params)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Params, A::Error> {
                Checked::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Params::default())
            }

            fn visit_bool<E>(self, _: bool) -> Result<Params, E> {
                Ok(Params::default())
            }

            fn visit_i64<E>(self, _: i64) -> Result<Params, E> {
                Ok(Params::default())
            }

            fn visit_u64<E>(self, _: u64) -> Result<Params, E> {
                Ok(Params::default())
            }

            fn visit_f64<E>(self, _: f64) -> Result<Params, E> {
                Ok(Params::default())
            }

            fn visit_str<E>(self, _: &str) -> Result<Params, E> {
                Ok(Params::default())
            }

            fn visit_unit<E>(self) -> Result<Params, E> {
                Ok(Params::default())
            }
        }
        deserializer.deserialize_any(ParamsVisitor)
    }
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
pub(super) fn decode_header_value(value: &str) -> Option<String> {
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
            let err = parse(body).unwrap_err().kind.to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn repeated_members_are_refused_and_ids_kept() {
        let err = parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .unwrap_err();
        assert!(err.kind.to_string().contains("repeats"), "{}", err.kind);
        let err = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":3}}"#)
            .unwrap_err();
        assert_eq!(err.id, Some(serde_json::json!(7)));
    }

    #[test]
    fn members_read_in_one_pass_match_a_full_parse() {
        // Repeated members deep in the arguments are found though nothing keeps them.
        let err = parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[{"k":1,"k":2}]}}}"#,
        )
        .unwrap_err();
        assert!(err.kind.to_string().contains("repeats"), "{}", err.kind);
        // An escaped member name is the member it decodes to.
        let r = parse(
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"na\u006de":"purge"}}"#,
        )
        .unwrap();
        assert_eq!(r.target, Target::Tool("purge".into()));
        let err = parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","na\u006de":"b"}}"#,
        )
        .unwrap_err();
        assert!(err.kind.to_string().contains("repeats"), "{}", err.kind);
        // `params` that is not an object names nothing.
        let err = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["purge"]}"#)
            .unwrap_err();
        assert!(err.kind.to_string().contains("params.name"), "{}", err.kind);
        // A batch is refused whatever it holds, and trailing data is not JSON.
        assert!(parse(br#"[{"a":1,"a":1}]"#).is_err());
        assert!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#).is_err());
        let r = parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping","params":null}"#).unwrap();
        assert_eq!(r.id, Some(Value::Null));
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
