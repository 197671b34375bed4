//! What the request path hands the audit writer: a compact [`Record`] of one request, from
//! which the writer thread builds the [`AuditEvent`].
//!
//! A record holds what the request already has, shared or moved rather than copied: the
//! [`Principal`] (an `Arc`), the method as a `&'static str`, the session id as the
//! refcounted header value, rmcp's request id (an `Arc<str>` or a number), the peer's
//! address, the clock reading of the event and the argument digest's raw bytes. The
//! text of the event (its id and timestamp, the caller's fields, the denial's words, the
//! digest in hex) is made on the writer thread, with the same values a request would
//! have made itself.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde_json::Value;

use super::arguments::Arguments;
use super::spare::Spare;
use super::{AuditEvent, DecisionKind, EventKind, Outcome};
use crate::policy::Denial;
use crate::principal::Principal;

/// Text a record holds: a literal, or a string moved into it.
pub(crate) type Text = Cow<'static, str>;

/// The audit record of one request, as the request path leaves it.
#[derive(Debug)]
pub(crate) struct Record {
    /// When the event happened: its timestamp and the time in its id.
    at: SystemTime,
    pub(crate) kind: EventKind,
    pub(crate) outcome: Outcome,
    /// Why it was denied, if it was.
    pub(crate) denied: Option<Denied>,
    /// The caller, when known.
    pub(crate) principal: Option<Principal>,
    pub(crate) method: Option<Text>,
    pub(crate) target: Option<Text>,
    pub(crate) arguments: Option<Arguments>,
    /// The Cedar policies that allowed it (a denial's are in its [`Denial`]).
    pub(crate) policies: Vec<String>,
    pub(crate) error_code: Option<i32>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) transport: Option<&'static str>,
    /// The `Mcp-Session-Id` header, recorded when it is visible ASCII.
    pub(crate) session_id: Option<http::HeaderValue>,
    pub(crate) request_id: Option<RecordedId>,
    pub(crate) remote_addr: Option<SocketAddr>,
    /// The event's id when it was made on the request path (an intent's, which its
    /// outcome names); otherwise the writer makes it.
    id: Option<String>,
    /// The id of the intent recorded before the operation ran.
    intent_id: Option<String>,
}

/// Why a request was denied.
#[derive(Debug)]
pub(crate) enum Denied {
    /// By the policy (the event says its code, words and any scopes needed).
    Policy(Box<Denial>),
    /// For another reason: a code and words.
    Other { code: Text, reason: Text },
}

/// A JSON-RPC request id, as rmcp or the HTTP layer holds it.
#[derive(Debug, Clone)]
pub(crate) enum RecordedId {
    /// rmcp's (a number, or a shared string).
    Rmcp(rmcp::model::RequestId),
    /// The `id` member of a body the HTTP layer read.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Json(Value),
}

impl fmt::Display for RecordedId {
    /// As the event writes it: a string id as it is, a number in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordedId::Rmcp(id) => id.fmt(f),
            RecordedId::Json(Value::String(s)) => f.write_str(s),
            RecordedId::Json(other) => other.fmt(f),
        }
    }
}

/// The MCP methods an event may name, as literals: a method among them costs the record
/// no copy.
const METHODS: [&str; 27] = [
    "tools/call",
    "tools/list",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/directory/read",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "initialize",
    "ping",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "skills/get",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "tasks/list",
    "tasks/result",
    "POST",
    "GET",
    "DELETE",
    "PUT",
    "OPTIONS",
];

/// `method` as record text: a known method's literal, else a copy.
pub(crate) fn method_text(method: &str) -> Text {
    match METHODS.iter().find(|m| **m == method) {
        Some(known) => Cow::Borrowed(*known),
        None => Cow::Owned(method.to_owned()),
    }
}

impl Record {
    /// A record of `kind`, stamped now, allowed and successful until told otherwise.
    pub(crate) fn new(kind: EventKind) -> Record {
        Record {
            at: SystemTime::now(),
            kind,
            outcome: Outcome::Success,
            denied: None,
            principal: None,
            method: None,
            target: None,
            arguments: None,
            policies: Vec::new(),
            error_code: None,
            duration_ms: None,
            transport: None,
            session_id: None,
            request_id: None,
            remote_addr: None,
            id: None,
            intent_id: None,
        }
    }

    /// The intent of this allowed request: a copy of its record so far, with outcome
    /// `started` and an id made now, which this record's event will name as its
    /// `intent_id`.
    pub(crate) fn intent(&mut self) -> Record {
        let at = SystemTime::now();
        let id = super::event::event_id(at);
        self.intent_id = Some(id.clone());
        Record {
            at,
            kind: self.kind,
            outcome: Outcome::Started,
            denied: None,
            principal: self.principal.clone(),
            method: self.method.clone(),
            target: self.target.clone(),
            arguments: self.arguments.clone(),
            policies: self.policies.clone(),
            error_code: None,
            duration_ms: None,
            transport: self.transport,
            session_id: self.session_id.clone(),
            request_id: self.request_id.clone(),
            remote_addr: self.remote_addr,
            id: Some(id),
            intent_id: None,
        }
    }

    /// Drops the intent this record would name (its write failed).
    pub(crate) fn forget_intent(&mut self) {
        self.intent_id = None;
    }

    /// Marks the record denied, with a reason code and the reason in words.
    pub(crate) fn deny(&mut self, code: impl Into<Text>, reason: impl Into<Text>) {
        self.outcome = Outcome::Denied;
        self.denied = Some(Denied::Other {
            code: code.into(),
            reason: reason.into(),
        });
    }

    /// Marks the record denied by the policy.
    pub(crate) fn deny_by(&mut self, denial: &Denial) {
        self.outcome = Outcome::Denied;
        self.denied = Some(Denied::Policy(Box::new(denial.clone())));
    }

    /// The event: every field as the request would have set it on an [`AuditEvent`].
    #[cfg(test)]
    pub(crate) fn into_event(self) -> AuditEvent {
        self.into_event_in(&mut Spare::default())
    }

    /// [`Record::into_event`], its strings from `spare`.
    pub(crate) fn into_event_in(self, spare: &mut Spare) -> AuditEvent {
        let Record {
            at,
            kind,
            outcome,
            denied,
            principal,
            method,
            target,
            arguments,
            policies,
            error_code,
            duration_ms,
            transport,
            session_id,
            request_id,
            remote_addr,
            id,
            intent_id,
        } = self;
        let mut event = AuditEvent::at_in(kind, DecisionKind::Allow, outcome, at, spare);
        if let Some(id) = id {
            spare.keep_text(std::mem::replace(&mut event.id, id));
        }
        event.intent_id = intent_id;
        event.method = method.map(|m| spare.owned(m));
        event.target = target.map(|t| spare.owned(t));
        if let Some(arguments) = arguments {
            // Into a buffer: `hex::encode` builds its string a character at a time.
            let mut digits = [0_u8; 64];
            let _ = hex::encode_to_slice(arguments.hmac, &mut digits);
            event.arguments_hmac = std::str::from_utf8(&digits).ok().map(|d| spare.text(d));
            event.arguments = arguments.clear;
        }
        event.policies = policies;
        event.transport = transport.map(|t| spare.text(t));
        event.session_id = session_id.and_then(|v| v.to_str().ok().map(|v| spare.text(v)));
        event.request_id = request_id.map(|id| spare.display(id, 32));
        // An address and a port: at most 58 bytes (`[IPv6%scope]:port`).
        event.remote_addr = remote_addr.map(|a| spare.display(a, 64));
        if let Some(principal) = &principal {
            event.set_principal_in(principal, spare);
        }
        match denied {
            Some(Denied::Policy(denial)) => event.set_denied_by_in(&denial, spare),
            Some(Denied::Other { code, reason }) => {
                let reason = spare.owned(reason);
                event.set_denied_in(&code, reason, spare);
            }
            None => {}
        }
        event.outcome = outcome;
        event.error_code = error_code;
        event.duration_ms = duration_ms;
        event
    }
}

/// What the audit queue holds: a request's record, or an event a user recorded.
///
/// Both go into the queue by value: neither a request's record nor a user's event costs
/// an allocation to enqueue (an entry is the size of the larger, the event).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "entries go into the queue by value: no allocation to enqueue either kind"
)]
pub(crate) enum Entry {
    /// From the request path; the writer makes the event.
    Record(Record),
    /// From [`AuditSlot::record`](super::AuditSlot::record).
    Event(AuditEvent),
}

impl Entry {
    /// Whether this is a request's record (the writer makes its event).
    pub(crate) fn is_record(&self) -> bool {
        matches!(self, Entry::Record(_))
    }

    /// The event to write, its strings from `spare`.
    pub(crate) fn into_event(self, spare: &mut Spare) -> AuditEvent {
        match self {
            Entry::Record(record) => record.into_event_in(spare),
            Entry::Event(event) => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DenyReason;

    fn principal() -> Principal {
        let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
        let verifier = issuer.verifier("https://rs").build().unwrap();
        let token = issuer
            .token("https://rs")
            .subject("alice")
            .client_id("app")
            .scopes(["notes:read", "notes:write"])
            .actor("planner")
            .mint()
            .unwrap();
        verifier.verify_sync(&token).unwrap()
    }

    /// The event a record becomes is the one the request path used to build itself.
    #[test]
    fn a_record_becomes_the_event_the_request_would_have_built() {
        let principal = principal();
        let recording = super::super::ArgumentRecording::with_key(&[9; 32])
            .unwrap()
            .clear_with_redaction(["password"]);
        let arguments = serde_json::json!({"q": "x", "password": "p"});
        let denial = Denial::new(
            "tools/call purge".to_owned(),
            DenyReason::InsufficientScope {
                required: vec!["notes:admin".to_owned()],
                missing: vec!["notes:admin".to_owned()],
            },
        );
        let session = http::HeaderValue::from_static("session-1");
        let remote: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let ids = [
            RecordedId::Rmcp(rmcp::model::RequestId::Number(7)),
            RecordedId::Rmcp(rmcp::model::RequestId::String("r-1".into())),
            RecordedId::Json(serde_json::json!("j\"1")),
            RecordedId::Json(serde_json::json!(12)),
        ];
        // The writer's strings, as a run leaves them: from earlier events, longer and
        // shorter than what comes next.
        let mut spare = littered_spare();
        for id in ids {
            for denied in [false, true] {
                let make = || {
                    let mut record = Record::new(EventKind::ToolCall);
                    record.method = Some(method_text("tools/call"));
                    record.target = Some("purge".into());
                    record.arguments = Some(recording.describe(arguments.as_object().unwrap()));
                    record.transport = Some("http");
                    record.session_id = Some(session.clone());
                    record.request_id = Some(id.clone());
                    record.remote_addr = Some(remote);
                    record.principal = Some(principal.clone());
                    if denied {
                        record.deny_by(&denial);
                    }
                    record.error_code = Some(-32000);
                    record.duration_ms = Some(1.5);
                    record
                };
                let record = make();
                let at = record.at;
                let event = record.into_event();
                // The same from the writer's kept strings.
                let mut again = make();
                again.at = at;
                let mut from_spare = again.into_event_in(&mut spare);
                from_spare.id.clone_from(&event.id);
                assert_eq!(from_spare, event);
                spare.keep(from_spare);

                let mut expected = AuditEvent::at(
                    EventKind::ToolCall,
                    DecisionKind::Allow,
                    Outcome::Success,
                    at,
                );
                expected.method = Some("tools/call".to_owned());
                expected.target = Some("purge".to_owned());
                expected.arguments_hmac = Some(recording.digest(&arguments));
                expected.arguments = recording.clear(&arguments);
                expected.transport = Some("http".to_owned());
                expected.session_id = Some("session-1".to_owned());
                expected.request_id = Some(match &id {
                    RecordedId::Rmcp(rmcp::model::RequestId::Number(n)) => n.to_string(),
                    RecordedId::Rmcp(rmcp::model::RequestId::String(s)) => s.to_string(),
                    RecordedId::Json(serde_json::Value::String(s)) => s.clone(),
                    RecordedId::Json(other) => other.to_string(),
                });
                expected.remote_addr = Some("127.0.0.1:4000".to_owned());
                expected.set_principal(&principal);
                if denied {
                    expected.set_denied_by(&denial);
                }
                expected.error_code = Some(-32000);
                expected.duration_ms = Some(1.5);
                // The ids differ (each is fresh); everything else is the same.
                expected.id.clone_from(&event.id);
                assert_eq!(event, expected);
                assert_eq!(event.decision == DecisionKind::Deny, denied);
            }
        }
    }

    /// A spare holding the strings and lists of events unlike the ones tested: every
    /// field set, to longer and shorter values.
    fn littered_spare() -> Spare {
        let mut spare = Spare::default();
        for junk in [
            "x",
            "a much longer leftover value, with \"quotes\" and more",
        ] {
            let text = || Some(junk.to_owned());
            let list = || vec![junk.to_owned(); 3];
            let mut event = AuditEvent::new(EventKind::Other, DecisionKind::Deny, Outcome::Denied);
            (event.reason, event.reason_code, event.agent, event.subject) =
                (text(), text(), text(), text());
            (
                event.client_id,
                event.issuer,
                event.token_id,
                event.dpop_jkt,
            ) = (text(), text(), text(), text());
            (
                event.target,
                event.method,
                event.arguments_hmac,
                event.session_id,
            ) = (text(), text(), text(), text());
            (event.request_id, event.transport, event.remote_addr) = (text(), text(), text());
            (event.intent_id, event.prev_hash) = (text(), text());
            (event.delegation_chain, event.scopes_granted) = (list(), list());
            (event.scopes_required, event.policies, event.truncated) = (list(), list(), list());
            spare.keep(event);
        }
        spare
    }

    #[test]
    fn other_denials_and_unknown_methods_and_sessions() {
        let mut record = Record::new(EventKind::Other);
        record.method = Some(method_text("custom/thing"));
        record.session_id = Some(http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        record.deny("missing_token", "no verified access token");
        let event = record.into_event();
        assert_eq!(event.method.as_deref(), Some("custom/thing"));
        // Not visible ASCII: not recorded, as before.
        assert_eq!(event.session_id, None);
        assert_eq!(event.decision, DecisionKind::Deny);
        assert_eq!(event.outcome, Outcome::Denied);
        assert_eq!(event.reason_code.as_deref(), Some("missing_token"));
        assert_eq!(event.reason.as_deref(), Some("no verified access token"));
        assert!(matches!(method_text("tools/call"), Cow::Borrowed(_)));
    }
}
