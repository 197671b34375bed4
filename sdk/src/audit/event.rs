//! The audit record: [`AuditEvent`], a stable, versioned JSON object.
//!
//! One event is written per decision and per outcome. Its JSON Schema is generated from
//! this type with `schemars` and committed as `docs/audit-event.schema.json`; a test fails
//! when the two drift apart, so a change to this type is a visible change to the schema.
//! Bump [`SCHEMA_VERSION`] for any change a consumer would notice.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::{MAX_FIELD_BYTES, MAX_LIST_ITEMS};
use super::spare::Spare;
use crate::policy::{Denial, DenyReason};
use crate::principal::Principal;

/// The version of the event schema written in every event's `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// What kind of operation an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// `tools/call`.
    ToolCall,
    /// `resources/read` (and subscriptions, directory reads).
    ResourceRead,
    /// `prompts/get`.
    PromptGet,
    /// A `*/list` method.
    List,
    /// A request refused before any operation was known: no token, or an invalid one.
    AuthenticationFailure,
    /// Anything else (initialize, tasks, completions, custom requests).
    Other,
}

/// Whether the operation was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecisionKind {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// How the operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// It ran and succeeded.
    Success,
    /// It ran and the tool reported an error (`isError: true`).
    ToolError,
    /// It failed with a JSON-RPC error.
    ProtocolError,
    /// It was refused and did not run.
    Denied,
    /// The client cancelled it.
    Cancelled,
    /// It was allowed and is about to run: under `fail_closed`, a tool call's intent is
    /// recorded (and waited for) before the tool runs, and its outcome follows in a second
    /// event whose `intent_id` is this event's `id`.
    Started,
}

/// One audit record.
///
/// Fields absent from an event are omitted from its JSON. `prev_hash` is set by sinks that
/// keep a hash chain (the JSON Lines file): it is the SHA-256, in hex, of the previous line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct AuditEvent {
    /// The schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// A UUID v7: unique, and ordered by time.
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub id: String,
    /// When the event was recorded, RFC 3339 in UTC with milliseconds.
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub timestamp: String,
    /// What kind of operation.
    pub kind: EventKind,
    /// Allowed or denied.
    pub decision: DecisionKind,
    /// Why it was denied, in words (the policy's or the verifier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub reason: Option<String>,
    /// Why it was denied, as a code: from the policy `insufficient_scope`, `no_rule`,
    /// `client_not_permitted`, `not_owner`, `token_expired`; from authentication
    /// `missing_token`, `invalid_token`; from the HTTP layer `invalid_request`,
    /// `body_too_large`, `session_mismatch`, `unknown_session`; from the pipeline
    /// `audit_unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub reason_code: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The agent: the current actor of a delegated token, else the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub agent: Option<String>,
    /// The user (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub subject: Option<String>,
    /// The client (`client_id`, else `azp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub client_id: Option<String>,
    /// Every actor of a delegated token, current actor first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = MAX_FIELD_BYTES)))]
    pub delegation_chain: Vec<String>,
    /// The token's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub issuer: Option<String>,
    /// The token's id (`jti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub token_id: Option<String>,
    /// The RFC 7638 thumbprint of the DPoP key the caller proved it holds on this
    /// request, which its token is bound to (RFC 9449); absent for a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub dpop_jkt: Option<String>,
    /// The scopes the token granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = MAX_FIELD_BYTES)))]
    pub scopes_granted: Vec<String>,
    /// The scopes the operation needed (for a denial for missing scopes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = MAX_FIELD_BYTES)))]
    pub scopes_required: Vec<String>,
    /// The Cedar policies that determined the decision (feature `cedar`): the permits
    /// that allowed it, the forbids that denied it, or the permit whose `@scopes` a
    /// step-up would bring.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = MAX_FIELD_BYTES)))]
    pub policies: Vec<String>,
    /// The tool, resource URI or prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub target: Option<String>,
    /// The JSON-RPC method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub method: Option<String>,
    /// A keyed HMAC-SHA256 digest of the arguments, in hex: equal arguments give equal
    /// digests under one key, and the arguments cannot be read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub arguments_hmac: Option<String>,
    /// The arguments in clear, only when configured, with redacted fields replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// The JSON-RPC error code, when the outcome is a protocol error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// How long the operation took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The MCP session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub session_id: Option<String>,
    /// The JSON-RPC request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub request_id: Option<String>,
    /// `http` or `stdio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub transport: Option<String>,
    /// The peer's address, for HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub remote_addr: Option<String>,
    /// For the outcome of a tool call whose intent was recorded first (`fail_closed`): the
    /// `id` of that `started` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub intent_id: Option<String>,
    /// The fields that were cut to their size bound, in the order they appear in the
    /// record. A string field holds at most 4096 bytes of UTF-8, and a cut one ends with
    /// `...[truncated]`; a list at most 256 items of 16384 bytes together, and a cut one
    /// lost its last items or had its last item cut; clear `arguments` at most 65536 bytes
    /// of JSON, and longer ones are left out (`arguments_hmac` still covers them whole).
    /// Absent when nothing was cut; a request cannot set it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
    /// The SHA-256 (hex) of the previous record in the same chain, set by chaining sinks.
    /// Always the last field: the file sink writes it after the rest of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIELD_BYTES))]
    pub prev_hash: Option<String>,
}

/// A fresh UUIDv7 (RFC 9562) for an event stamped `now`.
///
/// The id carries the event's own millisecond (one clock read per event) unless the
/// process-wide context had to move it on to keep ids in order. The context keeps a
/// counter that is reseeded at random each millisecond and padded with random bits
/// (RFC 9562 section 6.2, method 1), so ids are ordered within this process and unique
/// across processes with overwhelming probability.
pub(crate) fn event_id(now: std::time::SystemTime) -> String {
    event_id_in(now, &mut Spare::default())
}

/// [`event_id`], in a string from `spare`.
fn event_id_in(now: std::time::SystemTime, spare: &mut Spare) -> String {
    use std::sync::Mutex;
    use uuid::{ContextV7, Timestamp, Uuid};

    static CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = Timestamp::from_unix(&CONTEXT, since_epoch.as_secs(), since_epoch.subsec_nanos());
    // Formatted into a buffer, not through `Display`, which takes a few times as long.
    let mut text = [0_u8; uuid::fmt::Hyphenated::LENGTH];
    spare.text(Uuid::new_v7(stamp).hyphenated().encode_lower(&mut text))
}

/// `now` in RFC 3339, UTC, with milliseconds (`2026-12-07T17:41:20.123Z`), in a string
/// from `spare`.
fn timestamp(now: std::time::SystemTime, spare: &mut Spare) -> String {
    spare.display(humantime::format_rfc3339_millis(now), 24)
}

impl AuditEvent {
    /// A new event of `kind` with `decision` and `outcome`, stamped now, with a fresh id.
    pub fn new(kind: EventKind, decision: DecisionKind, outcome: Outcome) -> AuditEvent {
        AuditEvent::at(kind, decision, outcome, std::time::SystemTime::now())
    }

    /// [`AuditEvent::new`], stamped `now`.
    pub(crate) fn at(
        kind: EventKind,
        decision: DecisionKind,
        outcome: Outcome,
        now: std::time::SystemTime,
    ) -> AuditEvent {
        AuditEvent::at_in(kind, decision, outcome, now, &mut Spare::default())
    }

    /// [`AuditEvent::at`], its strings from `spare`.
    pub(crate) fn at_in(
        kind: EventKind,
        decision: DecisionKind,
        outcome: Outcome,
        now: std::time::SystemTime,
        spare: &mut Spare,
    ) -> AuditEvent {
        AuditEvent {
            schema_version: SCHEMA_VERSION,
            id: event_id_in(now, spare),
            timestamp: timestamp(now, spare),
            kind,
            decision,
            reason: None,
            reason_code: None,
            outcome,
            agent: None,
            subject: None,
            client_id: None,
            delegation_chain: Vec::new(),
            issuer: None,
            token_id: None,
            dpop_jkt: None,
            scopes_granted: Vec::new(),
            scopes_required: Vec::new(),
            policies: Vec::new(),
            target: None,
            method: None,
            arguments_hmac: None,
            arguments: None,
            error_code: None,
            duration_ms: None,
            session_id: None,
            request_id: None,
            transport: None,
            remote_addr: None,
            intent_id: None,
            truncated: Vec::new(),
            prev_hash: None,
        }
    }

    /// Fills the caller's fields from `principal` (never the token: a principal has none).
    #[must_use]
    pub fn with_principal(mut self, principal: &Principal) -> AuditEvent {
        self.set_principal(principal);
        self
    }

    /// Marks the event denied, with a reason code and the reason in words.
    #[must_use]
    pub fn denied(mut self, code: &str, reason: impl Into<String>) -> AuditEvent {
        self.set_denied(code, reason);
        self
    }

    /// Marks the event denied by the policy: its code, words, and for missing scopes the
    /// scopes the operation needs.
    #[must_use]
    pub fn denied_by(mut self, denial: &Denial) -> AuditEvent {
        self.set_denied_by(denial);
        self
    }

    /// [`AuditEvent::with_principal`], in place.
    pub fn set_principal(&mut self, principal: &Principal) {
        self.set_principal_in(principal, &mut Spare::default());
    }

    /// [`AuditEvent::set_principal`], its strings from `spare`.
    pub(crate) fn set_principal_in(&mut self, principal: &Principal, spare: &mut Spare) {
        self.agent = principal.agent().map(|v| spare.text(v));
        self.subject = principal.subject().map(|v| spare.text(v));
        self.client_id = principal.client_id().map(|v| spare.text(v));
        // Each actor by its `sub`, else its `client_id` (an agent acting as itself).
        self.delegation_chain = spare.list(principal.delegation_chain().iter().map(|a| a.id()));
        self.issuer = Some(spare.text(principal.issuer()));
        self.token_id = principal.token_id().map(|v| spare.text(v));
        self.dpop_jkt = principal.proof_key().map(|v| spare.text(v));
        self.scopes_granted = spare.list(principal.scopes().iter().map(String::as_str));
    }

    /// [`AuditEvent::denied`], in place.
    pub fn set_denied(&mut self, code: &str, reason: impl Into<String>) {
        self.set_denied_in(code, reason.into(), &mut Spare::default());
    }

    /// [`AuditEvent::set_denied`], the code's string from `spare`.
    pub(crate) fn set_denied_in(&mut self, code: &str, reason: String, spare: &mut Spare) {
        self.decision = DecisionKind::Deny;
        self.outcome = Outcome::Denied;
        self.reason_code = Some(spare.text(code));
        self.reason = Some(reason);
    }

    /// [`AuditEvent::denied_by`], in place.
    pub fn set_denied_by(&mut self, denial: &Denial) {
        self.set_denied_by_in(denial, &mut Spare::default());
    }

    /// [`AuditEvent::set_denied_by`], its strings from `spare`.
    pub(crate) fn set_denied_by_in(&mut self, denial: &Denial, spare: &mut Spare) {
        if let DenyReason::InsufficientScope { required, .. } = denial.reason() {
            self.scopes_required = spare.list(required.iter().map(String::as_str));
        }
        self.policies = spare.list(denial.policies().iter().map(String::as_str));
        let reason = spare.display(denial, 128);
        self.set_denied_in(denial.code(), reason, spare);
    }

    /// The JSON Schema of the event.
    pub fn json_schema() -> Value {
        serde_json::to_value(schemars::schema_for!(AuditEvent)).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_without_empty_fields_and_round_trip() {
        let e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Deny, Outcome::Denied);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "tool_call");
        assert_eq!(json["decision"], "deny");
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert!(json.get("agent").is_none());
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn ids_are_time_ordered_uuid_v7() {
        let a = AuditEvent::new(EventKind::List, DecisionKind::Allow, Outcome::Success);
        let b = AuditEvent::new(EventKind::List, DecisionKind::Allow, Outcome::Success);
        let many: std::collections::BTreeSet<String> = (0..10_000)
            .map(|_| AuditEvent::new(EventKind::List, DecisionKind::Allow, Outcome::Success).id)
            .collect();
        assert_eq!(many.len(), 10_000, "ids are unique");
        assert!(a.id < b.id, "{} then {}", a.id, b.id);
        let parsed = uuid::Uuid::parse_str(&a.id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(a.id <= b.id);
        assert!(a.timestamp.ends_with('Z'), "{}", a.timestamp);
    }

    #[test]
    fn the_caller_comes_from_the_principal() {
        let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
        let v = issuer.verifier("https://rs").build().unwrap();
        let p = v
            .verify_sync(
                &issuer
                    .token("https://rs")
                    .subject("alice")
                    .client_id("app")
                    .scopes(["a"])
                    .actor("planner")
                    .mint()
                    .unwrap(),
            )
            .unwrap();
        let e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success)
            .with_principal(&p);
        assert_eq!(e.agent.as_deref(), Some("planner"));
        assert_eq!(e.subject.as_deref(), Some("alice"));
        assert_eq!(e.delegation_chain, ["planner"]);
        assert_eq!(e.scopes_granted, ["a"]);
        assert!(e.token_id.is_some());
    }
}
