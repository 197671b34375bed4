//! What one request leaves behind: its audit event and its tracing span.
//!
//! The server wrapper and the HTTP layer both describe a request the same way: where it
//! came from ([`Origin`]), what it asked for ([`Call`]), and, once decided, who asked and
//! how it ended. [`Audit`] carries the event's compact record (the audit writer makes the
//! event from it) from the decision to the outcome and records it exactly once: when the
//! request ends, or, if the request is dropped on the way (a cancelled call), from its
//! destructor as `cancelled`. [`span`] opens the request's span with OpenTelemetry
//! semantic-convention attribute names, so a `tracing-opentelemetry` subscriber exports
//! useful traces with no code of the user's.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::Value;
use tracing::Span;

use crate::audit::{
    Arguments, AuditFailure, Auditor, Entry, EventKind, Outcome, Record, RecordedId, method_text,
};
use crate::policy::Operation;
use crate::principal::Principal;

pub(crate) use crate::codes::AUDIT_UNAVAILABLE;

/// The `Mcp-Session-Id` header, named once (a name looked up from a `&str` is parsed on
/// every lookup).
pub(crate) const SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// An operation the HTTP layer decided, and allowed, for this request. The layer puts it
/// in the request extensions; the wrapper finds it there and does not decide the same
/// operation a second time. The wrapper compares it with the operation rmcp parsed from
/// the body ([`Decided::is`]): a decision the layer made from the request's headers covers
/// only the operation they name, so a header that lies can never widen access.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum Decided {
    Tool(Name),
    Resource(Name),
    Prompt(Name),
    Skill(Name),
    Custom(Name),
    /// A task operation of the task's owner, who may still call the tool that started it.
    Task(Name),
}

/// The name in a [`Decided`]: moved out of the layer's parse of the body, or the request's
/// own `Mcp-Name` / `Mcp-Method` header value (a reference-counted clone, not a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum Name {
    /// Parsed from the body, or decoded from a base64-wrapped header value.
    Owned(String),
    /// A plain header value (visible ASCII, checked when the layer read it).
    Header(http::HeaderValue),
}

impl Name {
    /// The name as text.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Name::Owned(name) => name,
            // Never empty in practice: the layer only keeps values `to_str` accepts.
            Name::Header(value) => value.to_str().unwrap_or_default(),
        }
    }

    /// Whether this is `name`.
    fn is(&self, name: &str) -> bool {
        match self {
            Name::Owned(own) => own == name,
            Name::Header(value) => value.as_bytes() == name.as_bytes(),
        }
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Name::Owned(name)
    }
}

impl Decided {
    /// The operation the policy decided (`None` for a task, decided as its owner's tool).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn operation(&self) -> Option<Operation<'_>> {
        Some(match self {
            Decided::Tool(n) => Operation::CallTool(n.as_str()),
            Decided::Resource(u) => Operation::ReadResource(u.as_str()),
            Decided::Prompt(n) => Operation::GetPrompt(n.as_str()),
            Decided::Skill(n) => Operation::GetSkill(n.as_str()),
            Decided::Custom(m) => Operation::Custom(m.as_str()),
            Decided::Task(_) => return None,
        })
    }

    /// Whether this is `operation`.
    pub(crate) fn is(&self, operation: Operation<'_>) -> bool {
        match (self, operation) {
            (Decided::Tool(a), Operation::CallTool(b))
            | (Decided::Resource(a), Operation::ReadResource(b))
            | (Decided::Prompt(a), Operation::GetPrompt(b))
            | (Decided::Skill(a), Operation::GetSkill(b))
            | (Decided::Custom(a), Operation::Custom(b)) => a.is(b),
            _ => false,
        }
    }

    /// Whether the HTTP layer of the `Authz` whose id is `authz` already allowed
    /// `operation` for the request in `ctx`.
    pub(crate) fn allowed_in(
        ctx: &RequestContext<RoleServer>,
        authz: u64,
        operation: Operation<'_>,
    ) -> bool {
        Decided::in_request(ctx, authz).is_some_and(|d| d.is(operation))
    }

    /// Whether the HTTP layer of the `Authz` whose id is `authz` already allowed the
    /// operation on task `task_id` for the request in `ctx` (the caller started it, and may
    /// still call its tool).
    pub(crate) fn task_allowed_in(
        ctx: &RequestContext<RoleServer>,
        authz: u64,
        task_id: &str,
    ) -> bool {
        Decided::in_request(ctx, authz)
            .is_some_and(|d| matches!(d, Decided::Task(id) if id.is(task_id)))
    }

    /// The decision the layer of the `Authz` whose id is `authz` left in the request.
    fn in_request(ctx: &RequestContext<RoleServer>, authz: u64) -> Option<&Decided> {
        FromLayer::in_context(ctx, authz).and_then(|layer| layer.decided.as_ref())
    }
}

/// What the HTTP layer of one `Authz` leaves in a request for the wrappers behind it, in
/// one extension: which `Authz` verified the request's principal and decided its
/// operation (its id), the peer's address, and the operation it allowed, with the Cedar
/// policies that allowed it. A wrapper trusts the principal and the decision only from
/// its own `Authz`'s layer: a layer of another `Authz` in front of it (another issuer,
/// another policy) is as good as none.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct FromLayer {
    /// The id of the `Authz` whose layer this is.
    pub(crate) authz: u64,
    /// The peer's address.
    pub(crate) remote: Option<SocketAddr>,
    /// The operation the layer allowed, when it decided one.
    pub(crate) decided: Option<Decided>,
    /// The Cedar policies that allowed it (none when no Cedar policy applied); the wrapper
    /// reads them only for the operation in `decided`.
    pub(crate) determining: Vec<String>,
}

impl FromLayer {
    /// What the layer of the `Authz` with id `authz` left in the request of `parts`.
    pub(crate) fn of(parts: &http::request::Parts, authz: u64) -> Option<&FromLayer> {
        parts
            .extensions
            .get::<FromLayer>()
            .filter(|layer| layer.authz == authz)
    }

    /// What the layer of the `Authz` with id `authz` left in the request in `ctx`.
    pub(crate) fn in_context(ctx: &RequestContext<RoleServer>, authz: u64) -> Option<&FromLayer> {
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|parts| FromLayer::of(parts, authz))
    }

    /// The Cedar policies that allowed the operation the layer decided for the request in
    /// `ctx` (none when it left none).
    pub(crate) fn determining(ctx: &RequestContext<RoleServer>, authz: u64) -> Vec<String> {
        FromLayer::in_context(ctx, authz)
            .map(|layer| layer.determining.clone())
            .unwrap_or_default()
    }
}

/// Where a request came from, borrowed from the request: turned into text only for an
/// audit event or an enabled span.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    pub(crate) transport: &'static str,
    /// The `Mcp-Session-Id` header: shared into the audit record, read as text for a span.
    pub(crate) session: Option<&'a http::HeaderValue>,
    pub(crate) request_id: Option<RequestId<'a>>,
    pub(crate) remote_addr: Option<SocketAddr>,
}

/// A JSON-RPC request id, as rmcp or the HTTP layer holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestId<'a> {
    /// The id of a request rmcp hands the wrapper.
    Rmcp(&'a rmcp::model::RequestId),
    /// The `id` member of a body the HTTP layer read.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Json(&'a Value),
}

impl fmt::Display for RequestId<'_> {
    /// A string id as it is, a number in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Rmcp(id) => id.fmt(f),
            RequestId::Json(Value::String(s)) => f.write_str(s),
            RequestId::Json(other) => other.fmt(f),
        }
    }
}

impl<'a> Origin<'a> {
    /// The origin of a request rmcp hands the wrapper: HTTP when the HTTP request parts
    /// are in the context, else stdio.
    pub(crate) fn of(ctx: &'a RequestContext<RoleServer>) -> Origin<'a> {
        let request_id = Some(RequestId::Rmcp(&ctx.id));
        match ctx.extensions.get::<http::request::Parts>() {
            Some(parts) => Origin {
                transport: "http",
                session: parts.headers.get(&SESSION_ID),
                request_id,
                remote_addr: parts.extensions.get::<FromLayer>().and_then(|l| l.remote),
            },
            None => Origin {
                transport: "stdio",
                request_id,
                ..Origin::default()
            },
        }
    }

    /// Puts where the request came from in its audit record; the session header is
    /// shared rather than copied.
    fn stamp(&self, record: &mut Record) {
        record.transport = Some(self.transport);
        record.session_id = self.session.cloned();
        record.request_id = self.request_id.map(|id| match id {
            RequestId::Rmcp(id) => RecordedId::Rmcp(id.clone()),
            RequestId::Json(value) => RecordedId::Json(value.clone()),
        });
        record.remote_addr = self.remote_addr;
    }
}

/// What a request asked for.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub(crate) kind: EventKind,
    pub(crate) method: &'a str,
    pub(crate) target: Option<&'a str>,
}

impl Call<'_> {
    /// The audit record of this call from `origin`, allowed and successful until told
    /// otherwise.
    pub(crate) fn record(&self, origin: &Origin<'_>) -> Record {
        let mut record = Record::new(self.kind);
        record.method = Some(method_text(self.method));
        record.target = self.target.map(|t| t.to_owned().into());
        origin.stamp(&mut record);
        record
    }
}

/// The span of one request. Attribute names follow the OpenTelemetry semantic
/// conventions for MCP and generative-AI tools; `rmcp_authz.*` are this crate's. Nothing
/// is formatted when no subscriber wants the span.
pub(crate) fn span(call: &Call<'_>, origin: &Origin<'_>) -> Span {
    let is_tool = call.kind == EventKind::ToolCall;
    let target_of = |kind: EventKind| (call.kind == kind).then_some(call.target).flatten();
    let span = tracing::info_span!(
        target: "rmcp_authz",
        "mcp.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        mcp.method.name = call.method,
        mcp.session.id = origin.session.and_then(|v| v.to_str().ok()),
        jsonrpc.request.id = origin.request_id.map(tracing::field::display),
        network.transport = if origin.transport == "http" { "tcp" } else { "pipe" },
        client.address = origin.remote_addr.map(tracing::field::display),
        gen_ai.operation.name = is_tool.then_some("execute_tool"),
        gen_ai.tool.name = target_of(EventKind::ToolCall),
        gen_ai.prompt.name = target_of(EventKind::PromptGet),
        mcp.resource.uri = target_of(EventKind::ResourceRead),
        enduser.id = tracing::field::Empty,
        rmcp_authz.agent = tracing::field::Empty,
        rmcp_authz.client_id = tracing::field::Empty,
        rmcp_authz.decision = tracing::field::Empty,
        rmcp_authz.reason = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if !span.is_disabled() {
        match call.target {
            Some(target) => span.record("otel.name", format!("{} {target}", call.method)),
            None => span.record("otel.name", call.method),
        };
    }
    span
}

/// Records the caller on `span` (nothing when no subscriber wants it).
pub(crate) fn record_principal(span: &Span, principal: &Principal) {
    if span.is_disabled() {
        return;
    }
    if let Some(subject) = principal.subject() {
        span.record("enduser.id", subject);
    }
    if let Some(agent) = principal.agent() {
        span.record("rmcp_authz.agent", agent);
    }
    if let Some(client) = principal.client_id() {
        span.record("rmcp_authz.client_id", client);
    }
}

/// Records a decision on `span`: allowed, or denied with a reason code (nothing when no
/// subscriber wants it).
pub(crate) fn record_decision(span: &Span, denied: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    match denied {
        None => {
            span.record("rmcp_authz.decision", "allow");
        }
        Some(code) => {
            span.record("rmcp_authz.decision", "deny");
            span.record("rmcp_authz.reason", code);
            span.record("error.type", code);
        }
    }
}

/// The audit side of one request: its place in the queue and its record so far.
#[derive(Debug)]
pub(crate) struct Audit<'a> {
    auditor: Option<&'a Auditor>,
    /// The record so far; while it is here, the request holds a place in the queue.
    record: Option<Record>,
    started: Instant,
}

impl<'a> Audit<'a> {
    /// Takes a place in the audit queue for the record `make` builds. Without an auditor
    /// nothing is built: requests of servers that keep no audit log pay nothing for it.
    ///
    /// # Errors
    /// The MCP error to answer when the queue refuses (overload, closed).
    pub(crate) async fn begin(
        auditor: Option<&'a Auditor>,
        make: impl FnOnce() -> Record,
    ) -> Result<Audit<'a>, McpError> {
        let started = Instant::now();
        let record = match auditor {
            Some(a) => {
                a.take_place().await.map_err(|e| unavailable(&e))?;
                Some(make())
            }
            None => None,
        };
        Ok(Audit {
            auditor,
            record,
            started,
        })
    }

    /// Changes the record so far (nothing, without an auditor).
    pub(crate) fn update(&mut self, change: impl FnOnce(&mut Record)) {
        if let Some(record) = &mut self.record {
            change(record);
        }
    }

    /// Whether a request must be refused before it runs because the audit log is failing
    /// under `fail_closed`.
    pub(crate) fn must_refuse(&self) -> bool {
        self.auditor
            .is_some_and(|a| a.is_fail_closed() && a.is_failing())
    }

    /// Under `fail_closed`, records the intent of an allowed operation before it runs and
    /// waits until it is written (and, in `durable` mode, synced): so a refusal means the
    /// operation did not run, and a client that retries after one repeats no side effect.
    /// The outcome's event names the intent's id. Does nothing otherwise.
    ///
    /// # Errors
    /// The MCP error to answer instead of running the operation: the intent could not be
    /// recorded (its record is then marked refused, and recorded as such when the request
    /// finishes).
    pub(crate) async fn record_intent(&mut self) -> Result<(), McpError> {
        let (Some(auditor), Some(record)) = (self.auditor, self.record.as_mut()) else {
            return Ok(());
        };
        if !auditor.is_fail_closed() {
            return Ok(());
        }
        let written = match auditor.take_place().await {
            Ok(()) => auditor.put(Entry::Record(record.intent())).await,
            Err(e) => Err(e),
        };
        written.map_err(|e| {
            auditor.count_fail_closed_refusal();
            // The intent may not be on record: the refusal names none.
            record.forget_intent();
            record.deny(
                "audit_unavailable",
                "the intent could not be recorded and fail_closed is set; the operation did not run",
            );
            unavailable(&e)
        })
    }

    /// Records the event with `outcome`. Under `fail_closed`, an event that could not be
    /// written is the MCP error to answer instead of the result; otherwise the failure
    /// is counted and logged by the pipeline, and `Ok` is returned.
    pub(crate) fn finish(
        mut self,
        outcome: Outcome,
    ) -> impl Future<Output = Result<(), McpError>> + Send + 'a {
        // Queued now, so the future below holds the queue's answer and not the record.
        let queued = match (self.auditor, self.record.take()) {
            (Some(auditor), Some(mut record)) => {
                record.outcome = outcome;
                record.duration_ms = Some(millis(self.started));
                Some((auditor, auditor.put(Entry::Record(record))))
            }
            _ => None,
        };
        async move {
            let Some((auditor, written)) = queued else {
                return Ok(());
            };
            match written.await {
                Ok(()) => Ok(()),
                Err(e) if auditor.is_fail_closed() => {
                    auditor.count_fail_closed_refusal();
                    Err(unavailable(&e))
                }
                Err(_) => Ok(()),
            }
        }
    }
}

impl Drop for Audit<'_> {
    /// A request dropped before it finished (the client cancelled it, or the connection
    /// went away) still leaves its event, as `cancelled`.
    fn drop(&mut self) {
        if let (Some(auditor), Some(mut record)) = (self.auditor, self.record.take()) {
            record.outcome = Outcome::Cancelled;
            record.duration_ms = Some(millis(self.started));
            auditor.put_detached(Entry::Record(record));
        }
    }
}

/// The MCP error for a request refused because it cannot be audited. The client is told
/// why in general terms only; the detail is in the server's log.
pub(crate) fn unavailable(failure: &AuditFailure) -> McpError {
    let message = match failure {
        AuditFailure::Overloaded => "the server is busy (audit queue full); retry later",
        _ => "the request could not be audited, so it was refused",
    };
    McpError::new(AUDIT_UNAVAILABLE, message, None)
}

/// The outcome of a finished operation.
pub(crate) fn outcome_of<T>(result: &Result<T, McpError>, ok: impl Fn(&T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => ok(value),
        Err(_) => Outcome::ProtocolError,
    }
}

/// The JSON-RPC error code of a failed operation, for its event.
pub(crate) fn error_code_of<T>(result: &Result<T, McpError>) -> Option<i32> {
    result.as_ref().err().map(|e| e.code.0)
}

/// What the event of a call records of its `arguments`, computed from the borrowed
/// arguments before the call is handed on: nothing without an auditor.
pub(crate) fn describe_arguments(
    auditor: Option<&Auditor>,
    arguments: Option<&serde_json::Map<String, Value>>,
) -> Option<Arguments> {
    Some(auditor?.arguments().describe(arguments?))
}

/// Milliseconds since `started`, to the microsecond.
fn millis(started: Instant) -> f64 {
    started.elapsed().as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_covers_only_the_operation_it_names() {
        let header = |v: &'static str| Name::Header(http::HeaderValue::from_static(v));
        let tool = Decided::Tool(header("list_notes"));
        assert!(tool.is(Operation::CallTool("list_notes")));
        // A header naming an allowed tool covers no other tool, nor another kind.
        assert!(!tool.is(Operation::CallTool("purge")));
        assert!(!tool.is(Operation::CallTool("list_notes ")));
        assert!(!tool.is(Operation::GetPrompt("list_notes")));
        assert!(!tool.is(Operation::Custom("list_notes")));
        let custom = Decided::Custom(header("tools/call"));
        assert!(custom.is(Operation::Custom("tools/call")));
        assert!(!custom.is(Operation::CallTool("tools/call")));
        // Names moved out of the body compare the same way.
        let owned = Decided::Resource(Name::from("file:///a".to_owned()));
        assert!(owned.is(Operation::ReadResource("file:///a")));
        assert!(!owned.is(Operation::ReadResource("file:///b")));
        assert_eq!(
            owned.operation(),
            Some(Operation::ReadResource("file:///a"))
        );
        assert_eq!(Decided::Task(header("t1")).operation(), None);
    }
}
