//! [`Authz`]: the one value that decides. It holds the verifier, the policy and the
//! state shared by every request (task ownership, session bindings), and makes the
//! pieces a server plugs in: the [`Authorized`](crate::server::Authorized) wrapper, the
//! HTTP layer and the metadata routes (feature `http`), the stdio server.

use std::any::TypeId;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::{ErrorData as McpError, ServerHandler};

use crate::audit::Auditor;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::policy::{Decision, Operation, Policy};
use crate::principal::Principal;
use crate::request_state::{Originating, StateRejected, StateSealer};
use crate::server::Authorized;
use crate::token::Verifier;

/// The verifier, the policy and their shared state, behind an `Arc`. Cheap to clone.
///
/// ```
/// use rmcp_authz::{Authz, dev::DevIssuer, policy::Policy};
/// let issuer = DevIssuer::new("https://auth.example")?;
/// let verifier = issuer.verifier("https://mcp.example/mcp").build()?;
/// let policy = Policy::builder().tool("list_notes", "notes:read").build()?;
/// let authz = Authz::new(verifier, policy);
/// assert_eq!(authz.resource(), "https://mcp.example/mcp");
/// assert_eq!(authz.authorization_servers(), ["https://auth.example"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Authz {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this `Authz` from every other in the process: the wrapper trusts only what
    /// its own `Authz`'s layer verified and decided.
    id: u64,
    verifier: Arc<dyn Verifier>,
    policy: Policy,
    resource: String,
    authorization_servers: Vec<String>,
    clock: Arc<dyn Clock>,
    auditor: Option<Auditor>,
    tasks: Bounded<TaskOwner>,
    /// Seals `requestState` to the caller; `None` only if no key could be generated.
    request_state: Option<StateSealer>,
    /// The first handler type whose tools [`Authz::wrap`] found to cover the policy.
    checked_handler: OnceLock<TypeId>,
    #[cfg(feature = "http")]
    pub(crate) http: crate::http::HttpState,
}

impl fmt::Debug for Authz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authz")
            .field("verifier", &self.inner.verifier)
            .field("policy", &self.inner.policy)
            .field("resource", &self.inner.resource)
            .field("auditor", &self.inner.auditor)
            .finish_non_exhaustive()
    }
}

impl Authz {
    /// An `Authz` for the verifier's resource and issuers (see [`Authz::builder`] to set
    /// them, and other settings, yourself).
    pub fn new(verifier: impl Verifier + 'static, policy: Policy) -> Authz {
        Authz::builder(verifier, policy).build()
    }

    /// Starts an `Authz` with settings.
    pub fn builder(verifier: impl Verifier + 'static, policy: Policy) -> AuthzBuilder {
        let resource = verifier.resource_uri().unwrap_or_default().to_owned();
        let authorization_servers = verifier.trusted_issuers();
        AuthzBuilder {
            verifier: Arc::new(verifier),
            policy,
            resource,
            authorization_servers,
            clock: Arc::new(SystemClock),
            auditor: None,
            request_state: None,
            #[cfg(feature = "http")]
            http: crate::http::HttpSettings::default(),
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Arc<dyn Verifier> {
        &self.inner.verifier
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// This resource server's canonical URI (the token audience).
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The authorization servers advertised in the Protected Resource Metadata.
    pub fn authorization_servers(&self) -> &[String] {
        &self.inner.authorization_servers
    }

    /// The audit pipeline, if one is set.
    pub fn auditor(&self) -> Option<&Auditor> {
        self.inner.auditor.as_ref()
    }

    /// Decides `operation` for `principal` (the policy's decision, at this `Authz`'s
    /// clock's time).
    pub fn decide(&self, principal: &Principal, operation: Operation<'_>) -> Decision {
        self.inner
            .policy
            .decide_at(principal, operation, self.now())
    }

    /// Wraps `handler` so every call it serves is authorized.
    ///
    /// The first time a handler type is wrapped, every tool the policy names is looked up
    /// in it; once a type has passed, later handlers of that type are wrapped without the
    /// lookup, so a factory that wraps a handler per request (rmcp's stateless mode) pays
    /// for it once, not per request.
    ///
    /// # Errors
    /// [`ConfigError::UnknownTools`] when a policy rule names a tool the handler does not
    /// have (the handler must answer `get_tool`, as `#[tool_handler]` servers do).
    pub fn wrap<H: ServerHandler>(&self, handler: H) -> Result<Authorized<H>, ConfigError> {
        let checked = &self.inner.checked_handler;
        if checked.get() == Some(&TypeId::of::<H>()) {
            return Ok(Authorized::new(handler, self.clone(), None));
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
        let _ = checked.set(TypeId::of::<H>());
        Ok(Authorized::new(handler, self.clone(), None))
    }

    /// This `Authz`'s identity within the process.
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_unix()
    }

    /// Records who started a task. A task id that already has an owner keeps it: a
    /// handler that hands an existing task to a second caller (deduplicating identical
    /// requests, say) does not make that caller its owner.
    pub(crate) fn record_task(&self, task_id: String, owner: TaskOwner) {
        self.inner.tasks.insert_if_absent(task_id, owner);
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

    #[cfg(feature = "http")]
    pub(crate) fn http_state(&self) -> &crate::http::HttpState {
        &self.inner.http
    }
}

/// Settings of an [`Authz`].
#[must_use]
pub struct AuthzBuilder {
    verifier: Arc<dyn Verifier>,
    policy: Policy,
    resource: String,
    authorization_servers: Vec<String>,
    clock: Arc<dyn Clock>,
    auditor: Option<Auditor>,
    request_state: Option<StateSealer>,
    #[cfg(feature = "http")]
    http: crate::http::HttpSettings,
}

impl fmt::Debug for AuthzBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthzBuilder")
            .field("resource", &self.resource)
            .field("authorization_servers", &self.authorization_servers)
            .finish_non_exhaustive()
    }
}

impl AuthzBuilder {
    /// This server's canonical URI, as advertised in the Protected Resource Metadata.
    /// Default: the verifier's audience.
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resource = uri.into();
        self
    }

    /// Replaces the advertised authorization servers. Default: the verifier's issuers.
    pub fn authorization_servers<S: Into<String>>(
        mut self,
        servers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.authorization_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// The clock for per-call expiry checks on stdio. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records every decision and its outcome through `auditor` (see the
    /// [`audit`](crate::audit) module). Default: no audit log.
    pub fn auditor(mut self, auditor: Auditor) -> Self {
        self.auditor = Some(auditor);
        self
    }

    /// Seals the `requestState` of multi round-trip requests (SEP-2322) to the caller and
    /// the request with `sealer` (see [`request_state`](crate::request_state)). Default: a
    /// key generated at start-up, which suits one replica; replicas behind a load
    /// balancer need a shared key.
    pub fn request_state(mut self, sealer: StateSealer) -> Self {
        self.request_state = Some(sealer);
        self
    }

    /// The largest JSON-RPC request body the HTTP layer reads to find the operation
    /// (default 1 MiB); larger bodies are refused with 413.
    #[cfg(feature = "http")]
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.http.max_body_bytes = limit;
        self
    }

    /// Builds the `Authz`.
    pub fn build(self) -> Authz {
        #[cfg(feature = "http")]
        let http = crate::http::HttpState::new(self.http, &self.resource);
        Authz {
            inner: Arc::new(Inner {
                verifier: self.verifier,
                policy: self.policy,
                resource: self.resource,
                authorization_servers: self.authorization_servers,
                clock: self.clock,
                auditor: self.auditor,
                tasks: Bounded::new(MAX_TRACKED_TASKS),
                request_state: self.request_state.or_else(|| StateSealer::generate().ok()),
                checked_handler: OnceLock::new(),
                id: NEXT_AUTHZ_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                #[cfg(feature = "http")]
                http,
            }),
        }
    }
}

/// The source of each `Authz`'s id.
static NEXT_AUTHZ_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many task owners are remembered; the oldest are forgotten first (and their tasks
/// then refused, the safe side).
const MAX_TRACKED_TASKS: usize = 100_000;

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

/// A map that forgets its oldest entries beyond a capacity.
pub(crate) struct Bounded<V> {
    capacity: usize,
    state: Mutex<(HashMap<String, V>, VecDeque<String>)>,
}

impl<V: Clone> Bounded<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Bounded {
            capacity,
            state: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Inserts `value` unless `key` is already present (an existing value is kept).
    pub(crate) fn insert_if_absent(&self, key: String, value: V) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.contains_key(&key) {
            return;
        }
        map.insert(key.clone(), value);
        order.push_back(key);
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_forgets_the_oldest() {
        let m = Bounded::new(2);
        m.insert_if_absent("a".into(), 1);
        m.insert_if_absent("b".into(), 2);
        m.insert_if_absent("a".into(), 3);
        assert_eq!(m.get("a"), Some(1), "an existing entry is kept");
        m.insert_if_absent("c".into(), 4);
        assert_eq!(m.get("a"), None);
        assert_eq!(m.get("b"), Some(2));
        assert_eq!(m.get("c"), Some(4));
    }
}
