//! [`Guard`]: what every gate consults. The verifier, the policy (and its clock), the audit
//! pipeline, the `requestState` sealer and the task owners, shared by the
//! [`Authorized`](crate::server::Authorized) wrapper, the HTTP layer and the stdio server.
//!
//! [`Authz`](crate::Authz) is the public face of a `Guard`: it builds one and hands clones
//! of it to the pieces it makes. The gates depend on this module, never on `authz`, so the
//! dependencies point one way (the transports below, the hub that assembles them above).

use std::any::TypeId;
use std::fmt;
use std::sync::{Arc, OnceLock};

use rmcp::{ErrorData as McpError, ServerHandler};

use crate::audit::Auditor;
use crate::error::ConfigError;
#[cfg(feature = "cedar")]
use crate::policy::cedar::{Cedar, CedarPolicies};
use crate::policy::{Decision, Operation, Policy};
use crate::principal::Principal;
use crate::request_state::{Originating, StateRejected, StateSealer};
use crate::token::Verifier;

/// The verifier, the policy and their shared state, behind an `Arc`. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this `Guard` from every other in the process: the wrapper trusts only what
    /// its own `Guard`'s layer verified and decided.
    id: u64,
    verifier: Arc<dyn Verifier>,
    policy: Policy,
    resource: String,
    authorization_servers: Vec<String>,
    auditor: Option<Auditor>,
    /// Who started each task: a concurrent map bounded at [`MAX_TRACKED_TASKS`].
    tasks: moka::sync::Cache<String, TaskOwner>,
    /// Seals `requestState` to the caller; `None` only if no key could be generated.
    request_state: Option<StateSealer>,
    /// The first handler type whose tools [`Guard::check_tools`] found to cover the
    /// policy.
    checked_handler: OnceLock<TypeId>,
    /// The Cedar policies as configured, and compiled against the first handler's tools.
    #[cfg(feature = "cedar")]
    cedar: Option<CedarStage>,
}

/// The Cedar policies of a guard: compiled when the first handler is checked, and until
/// then (a layer used without the wrapper) refusing every operation they govern.
#[cfg(feature = "cedar")]
struct CedarStage {
    policies: CedarPolicies,
    compiled: OnceLock<Cedar>,
    /// The tools they were compiled against.
    checked: OnceLock<Vec<rmcp::model::Tool>>,
}

/// A decision, and the Cedar policies that determined it (none for scope rules alone).
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) decision: Decision,
    pub(crate) policies: Vec<String>,
}

/// The parts of a [`Guard`], as the `Authz` builder collected them.
pub(crate) struct GuardParts {
    pub(crate) verifier: Arc<dyn Verifier>,
    pub(crate) policy: Policy,
    pub(crate) resource: String,
    pub(crate) authorization_servers: Vec<String>,
    pub(crate) auditor: Option<Auditor>,
    pub(crate) request_state: Option<StateSealer>,
    #[cfg(feature = "cedar")]
    pub(crate) cedar: Option<CedarPolicies>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authz")
            .field("verifier", &self.inner.verifier)
            .field("policy", &self.inner.policy)
            .field("resource", &self.inner.resource)
            .field("auditor", &self.inner.auditor)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard of `parts`, with a `requestState` key generated now if none is given.
    pub(crate) fn new(parts: GuardParts) -> Guard {
        Guard {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                verifier: parts.verifier,
                policy: parts.policy,
                resource: parts.resource,
                authorization_servers: parts.authorization_servers,
                auditor: parts.auditor,
                tasks: lru_map(MAX_TRACKED_TASKS),
                request_state: parts.request_state.or_else(|| StateSealer::generate().ok()),
                checked_handler: OnceLock::new(),
                #[cfg(feature = "cedar")]
                cedar: parts.cedar.map(|policies| CedarStage {
                    policies,
                    compiled: OnceLock::new(),
                    checked: OnceLock::new(),
                }),
            }),
        }
    }

    pub(crate) fn verifier(&self) -> &Arc<dyn Verifier> {
        &self.inner.verifier
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub(crate) fn resource(&self) -> &str {
        &self.inner.resource
    }

    pub(crate) fn authorization_servers(&self) -> &[String] {
        &self.inner.authorization_servers
    }

    pub(crate) fn auditor(&self) -> Option<&Auditor> {
        self.inner.auditor.as_ref()
    }

    /// The decision on `operation` for `principal` when its arguments are not at hand
    /// (lists, task operations): the scope rules, then the Cedar policies that apply,
    /// which for a tool deny only a call denied whatever its arguments. A call is decided
    /// with [`Guard::decide_call`].
    pub(crate) fn decide(&self, principal: &Principal, operation: Operation<'_>) -> Decision {
        let decision = self.inner.policy.decide(principal, operation);
        #[cfg(feature = "cedar")]
        if decision.is_allowed() {
            // A tool's call is decided on its arguments: without them, only whether some
            // could be allowed.
            let arguments = match operation {
                Operation::CallTool(_) => CedarArguments::Unknown,
                _ => CedarArguments::Given(None),
            };
            if let Some(verdict) = self.cedar_verdict(principal, operation, arguments) {
                return verdict.decision;
            }
        }
        decision
    }

    /// The decision on a request for `operation` with `arguments` (a `tools/call`'s):
    /// the scope rules, then the Cedar policies that apply to it.
    pub(crate) fn decide_call(
        &self,
        principal: &Principal,
        operation: Operation<'_>,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Verdict {
        let decision = self.inner.policy.decide(principal, operation);
        #[cfg(feature = "cedar")]
        if decision.is_allowed()
            && let Some(verdict) =
                self.cedar_verdict(principal, operation, CedarArguments::Given(arguments))
        {
            return verdict;
        }
        let _ = arguments;
        Verdict {
            decision,
            policies: Vec::new(),
        }
    }

    /// The Cedar policies' verdict on an operation the scope rules allowed, `None` when
    /// none applies. Before the policies were checked against a handler's tools, every
    /// operation they could govern is refused.
    #[cfg(feature = "cedar")]
    fn cedar_verdict(
        &self,
        principal: &Principal,
        operation: Operation<'_>,
        arguments: CedarArguments<'_>,
    ) -> Option<Verdict> {
        use crate::policy::{Denial, DenyReason};

        let cedar = self.inner.cedar.as_ref()?;
        let deny = |reason| Verdict {
            decision: Decision::Deny(Denial::new(operation.to_string(), reason)),
            policies: Vec::new(),
        };
        let Some(compiled) = cedar.compiled.get() else {
            let governable = !cedar.policies.is_empty()
                && !matches!(operation, Operation::Basic | Operation::Custom(_));
            return governable.then(|| deny(DenyReason::PolicyUnchecked));
        };
        if !compiled.governs(operation) {
            return None;
        }
        let scopes = self.inner.policy.held_scopes(principal);
        match arguments {
            CedarArguments::Unknown => {
                (!compiled.may_allow(principal, &scopes, operation, self.now()))
                    .then(|| deny(DenyReason::NotPermitted))
            }
            CedarArguments::Given(arguments) => compiled
                .decide(principal, &scopes, operation, arguments, self.now())
                .map(|v| Verdict {
                    decision: v.decision,
                    policies: v.policies,
                }),
        }
    }

    /// Whether deciding a call of `operation` needs its arguments (Cedar policies apply
    /// to it): the HTTP layer then reads them from the body, never decides from headers.
    pub(crate) fn needs_arguments(&self, operation: Operation<'_>) -> bool {
        #[cfg(feature = "cedar")]
        if let Some(cedar) = &self.inner.cedar {
            return match cedar.compiled.get() {
                Some(compiled) => compiled.governs(operation),
                None => !cedar.policies.is_empty(),
            };
        }
        let _ = operation;
        false
    }

    /// The compiled Cedar policies, once a handler's tools were checked.
    #[cfg(feature = "cedar")]
    pub(crate) fn cedar(&self) -> Option<&Cedar> {
        self.inner.cedar.as_ref().and_then(|c| c.compiled.get())
    }

    /// Checks that `handler` has every tool the policy names. Once a handler type has
    /// passed, later handlers of that type pass without the lookup, so a factory that
    /// wraps a handler per request (rmcp's stateless mode) pays for it once.
    pub(crate) fn check_tools<H: ServerHandler>(&self, handler: &H) -> Result<(), ConfigError> {
        let checked = &self.inner.checked_handler;
        if checked.get() == Some(&TypeId::of::<H>()) {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .inner
            .policy
            .tool_names()
            .filter(|name| handler.get_tool(name).is_none())
            .map(str::to_owned)
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownTools { tools: unknown });
        }
        #[cfg(feature = "cedar")]
        if let Some(cedar) = &self.inner.cedar {
            let tools: Vec<rmcp::model::Tool> = cedar
                .policies
                .tools_to_check(&self.inner.policy)
                .iter()
                .filter_map(|n| handler.get_tool(n))
                .collect();
            match cedar.checked.get() {
                // A later handler of another type: it must have the same tools, as the
                // policies decide with the first one's annotations and argument types.
                Some(first) => {
                    let differs = |f: &rmcp::model::Tool| {
                        tools.iter().find(|t| t.name == f.name).is_none_or(|t| {
                            f.input_schema != t.input_schema || f.annotations != t.annotations
                        })
                    };
                    if let Some(changed) = first.iter().find(|f| differs(f)) {
                        return Err(crate::error::CedarError::ToolChanged {
                            tool: changed.name.to_string(),
                        }
                        .into());
                    }
                }
                None => {
                    let compiled = cedar.policies.compile(&tools)?;
                    let _ = cedar.compiled.set(compiled);
                    let _ = cedar.checked.set(tools);
                }
            }
        }
        let _ = checked.set(TypeId::of::<H>());
        Ok(())
    }

    /// This guard's identity within the process.
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// The time of the policy's clock: every decision, expiry and `requestState` check
    /// reads the one clock.
    pub(crate) fn now(&self) -> i64 {
        self.inner.policy.now()
    }

    /// Records who started a task. A task id that already has an owner keeps it: a
    /// handler that hands an existing task to a second caller (deduplicating identical
    /// requests, say) does not make that caller its owner.
    pub(crate) fn record_task(&self, task_id: String, owner: TaskOwner) {
        self.inner.tasks.entry(task_id).or_insert(owner);
    }

    pub(crate) fn task_owner(&self, task_id: &str) -> Option<TaskOwner> {
        self.inner.tasks.get(task_id)
    }

    /// The incoming `requestState` hook: replaces the state a client echoes with the one
    /// the handler emitted, or refuses the request (one `-32602` error) when it was not
    /// sealed for this caller and this request.
    pub(crate) fn open_state(
        &self,
        principal: &Principal,
        request: Originating<'_>,
        state: &mut Option<String>,
    ) -> Result<(), McpError> {
        if state.is_none() {
            return Ok(());
        }
        let Some(sealer) = &self.inner.request_state else {
            return Err(StateRejected::UnknownKey.to_mcp_error());
        };
        sealer
            .open_in_place(principal, request, state, self.now())
            .map_err(|e| {
                tracing::debug!(target: "rmcp_authz::rejection", reason = e.code(), "requestState refused");
                e.to_mcp_error()
            })
    }

    /// The outgoing `requestState` hook: seals the state of an `InputRequiredResult` to
    /// the caller and the request.
    pub(crate) fn seal_state(
        &self,
        principal: &Principal,
        request: Originating<'_>,
        state: &mut Option<String>,
    ) -> Result<(), McpError> {
        if state.is_none() {
            return Ok(());
        }
        let Some(sealer) = &self.inner.request_state else {
            return Err(McpError::internal_error(
                "no requestState key (the random generator failed at start-up); configure one with AuthzBuilder::request_state",
                None,
            ));
        };
        sealer.seal_in_place(principal, request, state, self.now());
        Ok(())
    }
}

/// What a Cedar decision knows of an operation's arguments.
#[cfg(feature = "cedar")]
enum CedarArguments<'a> {
    /// Not at hand (a list, a task operation): deny only what every call would be denied.
    Unknown,
    /// A call's (`None` for one without, or an operation that takes none).
    Given(Option<&'a serde_json::Map<String, serde_json::Value>>),
}

/// The source of each `Guard`'s id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many task owners are remembered; the least recently used are forgotten first (and
/// their tasks then refused, the safe side).
const MAX_TRACKED_TASKS: u64 = 100_000;

/// Who started a task, and with which tool.
#[derive(Debug, Clone)]
pub(crate) struct TaskOwner {
    pub(crate) tool: String,
    pub(crate) caller: CallerId,
}

/// The identity a session or task is bound to: issuer, subject and client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CallerId {
    issuer: String,
    subject: Option<String>,
    client: Option<String>,
}

impl CallerId {
    pub(crate) fn of(p: &Principal) -> CallerId {
        CallerId {
            issuer: p.issuer().to_owned(),
            subject: p.subject().map(str::to_owned),
            client: p.client_id().map(str::to_owned),
        }
    }

    /// Whether `p` is this caller (compared in place, nothing copied).
    pub(crate) fn is(&self, p: &Principal) -> bool {
        self.issuer == p.issuer()
            && self.subject.as_deref() == p.subject()
            && self.client.as_deref() == p.client_id()
    }
}

/// A concurrent map that forgets the least recently used entries beyond `capacity`: the
/// task owners here, the HTTP layer's session bindings. LRU admits every new entry
/// (TinyLFU could turn a new task or session away, leaving it without an owner).
pub(crate) fn lru_map<K, V>(capacity: u64) -> moka::sync::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(tool: &str) -> TaskOwner {
        TaskOwner {
            tool: tool.to_owned(),
            caller: CallerId {
                issuer: "https://as".to_owned(),
                subject: None,
                client: None,
            },
        }
    }

    fn tool(m: &moka::sync::Cache<String, TaskOwner>, key: &str) -> Option<String> {
        m.get(key).map(|o| o.tool)
    }

    #[test]
    fn bounded_map_forgets_the_least_recently_used() {
        let m: moka::sync::Cache<String, TaskOwner> = lru_map(2);
        // moka applies writes and evicts in its housekeeping: run it after each step.
        m.entry("a".into()).or_insert(owner("1"));
        m.run_pending_tasks();
        m.entry("b".into()).or_insert(owner("2"));
        m.run_pending_tasks();
        m.entry("a".into()).or_insert(owner("3"));
        m.run_pending_tasks();
        assert_eq!(
            tool(&m, "a").as_deref(),
            Some("1"),
            "an existing entry is kept"
        );
        m.run_pending_tasks();
        m.entry("c".into()).or_insert(owner("4"));
        m.run_pending_tasks();
        assert_eq!(tool(&m, "b"), None, "the least recently used is forgotten");
        assert_eq!(tool(&m, "a").as_deref(), Some("1"));
        assert_eq!(
            tool(&m, "c").as_deref(),
            Some("4"),
            "a new entry is always admitted"
        );
    }
}
