//! [`Authorized<H>`]: any rmcp `ServerHandler`, with every request authorized.
//!
//! The wrapper implements `ServerHandler` by writing out the delegation of every method
//! (rmcp gives each one a default, so a forgotten method would silently fall back to it;
//! `#[deny(clippy::missing_trait_methods)]` on the impl, and a test that calls every method
//! through the wrapper to a spy handler, catch that). It gates `tools/call`, `resources/read` (and subscriptions and directory
//! reads), `prompts/get`, completions, task operations and custom requests through the
//! [`Policy`](crate::policy::Policy); filters `tools/list`, `resources/list`,
//! `resources/templates/list` and `prompts/list` to what the caller may use and marks those
//! results `cacheScope: private`; and puts the [`Principal`] in the request context, where
//! `#[tool]` functions read it with rmcp's `Extension<Principal>` extractor.
//!
//! Over HTTP the principal comes from the request (the HTTP layer verified it); over stdio
//! it is the one verified at start-up, whose expiry is checked on every call.

use std::future::Future;

#[allow(deprecated)] // SetLevelRequestParams: forwarded, not used.
use rmcp::model::CallToolResponse;
use rmcp::model::Extensions;
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer};

use tracing::Instrument as _;

use crate::audit::{Arguments, AuditFailure, EventKind, Outcome, Record};
use crate::gate::{self, Audit, Call, Origin};
use crate::guard::Guard;
use crate::policy::{Denial, DenyReason, Operation};
use crate::principal::Principal;

mod handler;

pub use crate::codes::{FORBIDDEN, UNAUTHENTICATED};

/// A `ServerHandler` whose every request is authorized by an [`Authz`](crate::Authz).
///
/// Made by [`Authz::wrap`](crate::Authz::wrap) (HTTP, with the principal of each request) or by the stdio
/// server (with the principal verified at start-up).
#[derive(Debug, Clone)]
pub struct Authorized<H> {
    inner: H,
    guard: Guard,
    session_principal: Option<Principal>,
}

impl<H> Authorized<H> {
    pub(crate) fn new(inner: H, guard: Guard, session_principal: Option<Principal>) -> Self {
        Authorized {
            inner,
            guard,
            session_principal,
        }
    }

    /// The wrapped handler.
    pub fn get_ref(&self) -> &H {
        &self.inner
    }

    /// The wrapped handler, mutably.
    pub fn get_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    /// Unwraps the handler.
    pub fn into_inner(self) -> H {
        self.inner
    }

    /// The caller of this `method` request: the principal the HTTP layer put in the
    /// request, or the stdio session's principal while its token is valid.
    fn principal(&self, extensions: &Extensions, method: &str) -> Result<Principal, NoCaller> {
        // Only what this `Authz`'s own layer verified.
        let from_http = extensions
            .get::<http::request::Parts>()
            .filter(|parts| gate::FromLayer::of(parts, self.guard.id()).is_some())
            .and_then(|parts| parts.extensions.get::<Principal>());
        if let Some(p) = from_http {
            return Ok(p.clone());
        }
        let Some(p) = &self.session_principal else {
            return Err(NoCaller::Missing);
        };
        let now = self.guard.now();
        if now >= p.expires_at() {
            let denial = Denial::new(
                method.to_owned(),
                DenyReason::TokenExpired {
                    exp: p.expires_at(),
                    now,
                },
            );
            return Err(NoCaller::Expired(Box::new((p.clone(), denial))));
        }
        Ok(p.clone())
    }

    /// The denial of a task operation, if any: the task must have been started by this
    /// caller, with a tool the caller may still call.
    fn task_denial(&self, principal: &Principal, method: &str, task_id: &str) -> Option<Denial> {
        // The operation's text is written only for a denial.
        let denial = |reason| Some(Denial::new(format!("{method} {task_id}"), reason));
        let Some(owner) = self.guard.task_owner(task_id) else {
            return denial(DenyReason::NoRule);
        };
        if !owner.caller.is(principal) {
            return denial(DenyReason::NotOwner);
        }
        self.guard
            .decide(principal, Operation::CallTool(&owner.tool))
            .denial()
            .cloned()
    }

    /// A `*/list` request: any authenticated caller may list, and `keep` leaves in the
    /// inner handler's result only what the caller may use (and marks it private).
    fn listed<T, Fut>(
        &self,
        context: RequestContext<RoleServer>,
        method: &'static str,
        list: impl FnOnce(RequestContext<RoleServer>) -> Fut,
        keep: impl FnOnce(&mut T, &Principal),
    ) -> impl Future<Output = Result<T, McpError>>
    where
        Fut: Future<Output = Result<T, McpError>>,
    {
        let run = |ctx, principal: Principal| async move {
            let mut result = list(ctx).await?;
            keep(&mut result, &principal);
            Ok(result)
        };
        self.gated(
            context,
            list_call(method),
            Check::Authenticated,
            None,
            run,
            success,
        )
    }

    /// A task operation: decided as a call of the tool that started the task, and only
    /// for the caller who started it.
    fn task_operation<T, Fut>(
        &self,
        context: RequestContext<RoleServer>,
        method: &'static str,
        task_id: &str,
        run: impl FnOnce(RequestContext<RoleServer>) -> Fut,
    ) -> impl Future<Output = Result<T, McpError>>
    where
        Fut: Future<Output = Result<T, McpError>>,
    {
        let call = task_call(method, task_id);
        self.gated(
            context,
            call,
            Check::Task(task_id),
            None,
            |ctx, _| run(ctx),
            success,
        )
    }

    /// Whether the policy allows `operation` for `principal`.
    fn allows(&self, principal: &Principal, operation: Operation<'_>) -> bool {
        self.guard.decide(principal, operation).is_allowed()
    }

    /// One request, start to end: authenticates the caller, applies `check`, runs the
    /// operation with the principal in its context, and records one audit event and one
    /// span for it whatever happens.
    ///
    /// A function returning an `async` block rather than an `async fn`: an `async fn`'s
    /// future keeps its arguments twice (as received, and as the locals its body moves them
    /// into), and this one runs in every request's task.
    #[allow(clippy::manual_async_fn)] // On purpose: see above.
    fn gated<C, T, F, Fut>(
        &self,
        mut carrier: C,
        call: Call<'_>,
        check: Check<'_>,
        arguments: Option<Arguments>,
        run: F,
        ok: fn(&T) -> Outcome,
    ) -> impl Future<Output = Result<T, McpError>>
    where
        C: Carrier,
        F: FnOnce(C, Principal) -> Fut,
        Fut: Future<Output = Result<T, McpError>>,
    {
        async move {
            let origin = Origin::of(carrier.request());
            let span = gate::span(&call, &origin);
            let auditor = self.guard.auditor();
            let mut audit = Audit::begin(auditor, || {
                let mut record = call.record(&origin);
                record.arguments = arguments;
                record
            })
            .await?;

            let principal = match self.principal(&carrier.request().extensions, call.method) {
                Ok(p) => p,
                Err(no_caller) => {
                    audit.update(|r| no_caller.describe(r));
                    gate::record_decision(&span, Some(no_caller.code()));
                    let _ = audit.finish(Outcome::Denied).await;
                    return Err(no_caller.error());
                }
            };
            gate::record_principal(&span, &principal);
            audit.update(|r| r.principal = Some(principal.clone()));
            let task_id = match check {
                Check::Task(id) => Some(id),
                _ => None,
            };
            let tool_call = matches!(check, Check::Call(..));
            let denial = match check {
                // The HTTP layer decided this operation for this request already.
                Check::Operation(op)
                    if gate::Decided::allowed_in(carrier.request(), self.guard.id(), op) =>
                {
                    None
                }
                Check::Operation(op) => self.guard.decide(&principal, op).denial().cloned(),
                // Decided by the HTTP layer, with the Cedar policies that allowed it.
                Check::Call(op, _)
                    if gate::Decided::allowed_in(carrier.request(), self.guard.id(), op) =>
                {
                    let policies = gate::FromLayer::determining(carrier.request(), self.guard.id());
                    if !policies.is_empty() {
                        audit.update(|r| r.policies = policies);
                    }
                    None
                }
                Check::Call(op, arguments) => {
                    let verdict = self.guard.decide_call(&principal, op, arguments);
                    if verdict.decision.is_allowed() && !verdict.policies.is_empty() {
                        audit.update(|r| r.policies = verdict.policies);
                    }
                    verdict.decision.denial().cloned()
                }
                Check::Operations(operations) => operations
                    .iter()
                    .find_map(|op| self.guard.decide(&principal, *op).denial().cloned()),
                // The HTTP layer found this caller's task and allowed its tool for this request.
                Check::Task(task_id)
                    if gate::Decided::task_allowed_in(
                        carrier.request(),
                        self.guard.id(),
                        task_id,
                    ) =>
                {
                    None
                }
                Check::Task(task_id) => self.task_denial(&principal, call.method, task_id),
                Check::Authenticated => None,
                Check::Refused(denial) => Some(denial),
            }
            .map(|denial| denial.for_method(call.method));
            if let Some(denial) = denial {
                tracing::debug!(target: "rmcp_authz::rejection", %denial, "request denied");
                audit.update(|r| r.deny_by(&denial));
                gate::record_decision(&span, Some(denial.code()));
                let _ = audit.finish(Outcome::Denied).await;
                return Err(match (task_id, denial.reason()) {
                    // Another caller's task and a task that does not exist look the same, so a
                    // caller cannot learn which task ids exist (the audit event tells them apart).
                    (Some(id), DenyReason::NotOwner | DenyReason::NoRule) => McpError::new(
                        FORBIDDEN,
                        format!(
                            "{} {id} refused: no task started by this caller has this id",
                            call.method
                        ),
                        Some(serde_json::json!({ "error": "access_denied" })),
                    ),
                    _ => denied(&denial),
                });
            }
            if audit.must_refuse() {
                const CODE: &str = "audit_unavailable";
                audit.update(|r| r.deny(CODE, "the audit log is failing and fail_closed is set"));
                gate::record_decision(&span, Some(CODE));
                if let Some(a) = auditor {
                    a.count_fail_closed_refusal();
                }
                // Recording the refusal also tells whether the log works again.
                let _ = audit.finish(Outcome::Denied).await;
                return Err(gate::unavailable(&AuditFailure::Closed));
            }
            gate::record_decision(&span, None);
            // A tool call under fail_closed runs only once its intent is recorded.
            if tool_call && let Err(refused) = audit.record_intent().await {
                let _ = audit.finish(Outcome::Denied).await;
                return Err(refused);
            }

            let cancelled = carrier.request().ct.clone();
            // Attached in place: a local copy would keep the context twice in the future.
            carrier.attach(principal.clone());
            // The operation runs in the span only when a subscriber wants it.
            let run = run(carrier, principal);
            let result = if span.is_disabled() {
                run.await
            } else {
                run.instrument(span.clone()).await
            };
            let outcome = if cancelled.is_cancelled() {
                Outcome::Cancelled
            } else {
                gate::outcome_of(&result, ok)
            };
            audit.update(|r| r.error_code = gate::error_code_of(&result));
            if let Err(e) = &result
                && !span.is_disabled()
            {
                span.record("error.type", e.code.0);
            }
            audit.finish(outcome).await?;
            result
        }
    }
}

/// Why a request has no caller.
enum NoCaller {
    /// No verified token came with it.
    Missing,
    /// The stdio session's token has expired.
    Expired(Box<(Principal, Denial)>),
}

impl NoCaller {
    fn error(&self) -> McpError {
        match self {
            NoCaller::Missing => McpError::new(
                UNAUTHENTICATED,
                "unauthenticated: no verified access token for this request",
                None,
            ),
            NoCaller::Expired(expired) => denied(&expired.1),
        }
    }

    /// The reason code audited and traced.
    fn code(&self) -> &'static str {
        match self {
            NoCaller::Missing => "missing_token",
            NoCaller::Expired(expired) => expired.1.code(),
        }
    }

    fn describe(&self, record: &mut Record) {
        match self {
            NoCaller::Missing => {
                record.deny(self.code(), "no verified access token");
                record.kind = EventKind::AuthenticationFailure;
            }
            NoCaller::Expired(expired) => {
                record.principal = Some(expired.0.clone());
                record.deny_by(&expired.1);
            }
        }
    }
}

/// What must hold before an operation runs.
enum Check<'a> {
    /// The policy allows this operation.
    Operation(Operation<'a>),
    /// The policy allows this call with these arguments (`Some` only when Cedar policies
    /// apply to it and the HTTP layer did not decide it).
    Call(
        Operation<'a>,
        Option<&'a serde_json::Map<String, serde_json::Value>>,
    ),
    /// The policy allows every one of these operations (one per resource for a
    /// subscription).
    Operations(Vec<Operation<'a>>),
    /// The caller started the task, and may still call the tool that started it.
    Task(&'a str),
    /// A verified caller suffices (lists, which are filtered to what the caller may use).
    Authenticated,
    /// Refused whoever asks (a request that names its target in a form no rule can match).
    Refused(Denial),
}

/// What carries a request's context into the operation.
trait Carrier {
    fn request(&self) -> &RequestContext<RoleServer>;
    /// Puts the principal where the operation's extractors find it.
    fn attach(&mut self, principal: Principal);
}

impl Carrier for RequestContext<RoleServer> {
    fn request(&self) -> &RequestContext<RoleServer> {
        self
    }

    fn attach(&mut self, principal: Principal) {
        self.extensions.insert(principal);
    }
}

impl Carrier for SubscriptionContext {
    fn request(&self) -> &RequestContext<RoleServer> {
        self.request_context()
    }

    fn attach(&mut self, _principal: Principal) {}
}

/// Successful unless the tool says otherwise.
fn tool_outcome(response: &CallToolResponse) -> Outcome {
    match response {
        CallToolResponse::Complete(result) if result.is_error == Some(true) => Outcome::ToolError,
        _ => Outcome::Success,
    }
}

fn success<T>(_: &T) -> Outcome {
    Outcome::Success
}

/// The skill a `SKILL.md` URI names: the path segment before `SKILL.md`, when it is a plain
/// name (ASCII letters, digits, `-`, `_`, `.`). A URI that names none, or names one in any
/// other form, is refused whatever the rules say.
pub(crate) fn skill_name(uri: &str) -> Option<&str> {
    // Only plain names: a percent-encoded or non-ASCII segment could name, once decoded and
    // normalised (as rmcp compares skill names), a skill whose rule it would not match.
    rmcp::model::skill_name_from_uri(uri).filter(|name| {
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

/// A request that needs only a verified caller.
fn basic_call(method: &str) -> Call<'_> {
    Call {
        kind: EventKind::Other,
        method,
        target: None,
    }
}

fn list_call(method: &str) -> Call<'_> {
    Call {
        kind: EventKind::List,
        method,
        target: None,
    }
}

fn resource_call<'a>(method: &'a str, uri: &'a str) -> Call<'a> {
    Call {
        kind: EventKind::ResourceRead,
        method,
        target: Some(uri),
    }
}

fn task_call<'a>(method: &'a str, task_id: &'a str) -> Call<'a> {
    Call {
        kind: EventKind::Other,
        method,
        target: Some(task_id),
    }
}

/// The MCP error for a denial: the reason in words, and for missing scopes the scopes in
/// `data` (`{"error": "insufficient_scope", "scope": "..."}`) so a client can step up.
pub(crate) fn denied(denial: &Denial) -> McpError {
    McpError::new(FORBIDDEN, denial.to_string(), Some(denial.error_data()))
}
