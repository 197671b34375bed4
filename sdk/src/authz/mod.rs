//! [`Authz`]: the one value users hold. It holds the verifier, the policy and the state
//! shared by every request (task ownership), and makes the pieces a server plugs in: the
//! [`Authorized`](crate::server::Authorized) wrapper, the HTTP endpoint, layer and
//! metadata routes (feature `http`, in `http.rs` here), the stdio server (`stdio.rs`).
//!
//! `Authz` sits above the transports: `server`, `http` and `stdio` know only the
//! crate-private `Guard` it hands them, and every method of `Authz` is written in this
//! module.

use std::fmt;
use std::sync::Arc;

use rmcp::ServerHandler;

use crate::audit::Auditor;
use crate::error::ConfigError;
use crate::guard::{Guard, GuardParts};
use crate::policy::Policy;
use crate::request_state::StateSealer;
use crate::server::Authorized;
use crate::token::Verifier;

#[cfg(feature = "http")]
mod http;
mod stdio;

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
    guard: Guard,
    #[cfg(feature = "http")]
    http: crate::http::HttpSettings,
}

impl fmt::Debug for Authz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.guard, f)
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
            auditor: None,
            request_state: None,
            #[cfg(feature = "cedar")]
            cedar: None,
            #[cfg(feature = "http")]
            http: crate::http::HttpSettings::default(),
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Arc<dyn Verifier> {
        self.guard.verifier()
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        self.guard.policy()
    }

    /// This resource server's canonical URI (the token audience).
    pub fn resource(&self) -> &str {
        self.guard.resource()
    }

    /// The authorization servers advertised in the Protected Resource Metadata.
    pub fn authorization_servers(&self) -> &[String] {
        self.guard.authorization_servers()
    }

    /// The Cedar policies, compiled against the tools of the first handler wrapped
    /// (`None` before, or without Cedar policies).
    #[cfg(feature = "cedar")]
    pub fn cedar(&self) -> Option<&crate::policy::cedar::Cedar> {
        self.guard.cedar()
    }

    /// The audit pipeline, if one is set.
    pub fn auditor(&self) -> Option<&Auditor> {
        self.guard.auditor()
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
    /// have (the handler must answer `get_tool`, as `#[tool_handler]` servers do);
    /// `ConfigError::Cedar` when Cedar policies name a tool it does not have or do not
    /// type-check against its tools' schemas.
    pub fn wrap<H: ServerHandler>(&self, handler: H) -> Result<Authorized<H>, ConfigError> {
        self.guard.check_tools(&handler)?;
        Ok(Authorized::new(handler, self.guard.clone(), None))
    }
}

/// Settings of an [`Authz`].
#[must_use]
pub struct AuthzBuilder {
    verifier: Arc<dyn Verifier>,
    policy: Policy,
    resource: String,
    authorization_servers: Vec<String>,
    auditor: Option<Auditor>,
    request_state: Option<StateSealer>,
    #[cfg(feature = "cedar")]
    cedar: Option<crate::policy::cedar::CedarPolicies>,
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

    /// Decides the operations `policies` apply to with them too, after the scope rules
    /// (feature `cedar`; see [`policy::cedar`](crate::policy::cedar)). They are checked
    /// against the server's tools when the first handler is wrapped
    /// ([`Authz::wrap`], [`Authz::router`](crate::Authz)), which fails with every problem
    /// found; until then, every operation they could govern is refused.
    #[cfg(feature = "cedar")]
    pub fn cedar(mut self, policies: crate::policy::cedar::CedarPolicies) -> Self {
        self.cedar = Some(policies);
        self
    }

    /// The largest JSON-RPC request body the HTTP layer reads to find the operation
    /// (default 1 MiB); larger bodies are refused with 413.
    #[cfg(feature = "http")]
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.http.max_body_bytes = limit;
        self
    }

    /// Accepts DPoP-bound access tokens (RFC 9449, feature `dpop`) beside bearer tokens:
    /// a request presenting `Authorization: DPoP <token>` must carry one `DPoP` proof that
    /// `verifier` accepts for the request and the token, and the token's `cnf.jkt` must
    /// name the proof's key. A DPoP-bound token presented as `Bearer` is refused either
    /// way. Rules can then require DPoP ([`Conditions::require_dpop`]), and
    /// [`require_dpop`](AuthzBuilder::require_dpop) requires it of every request.
    /// docs/dpop.md has the whole story.
    ///
    /// [`Conditions::require_dpop`]: crate::policy::Conditions::require_dpop
    ///
    /// ```
    /// use rmcp_authz::{Authz, dev::DevIssuer, policy::Policy};
    /// use rmcp_authz::token::dpop::{DpopOptions, DpopVerifier};
    /// let issuer = DevIssuer::new("https://auth.example")?;
    /// let verifier = issuer.verifier("https://mcp.example/mcp").build()?;
    /// let authz = Authz::builder(verifier, Policy::builder().build()?)
    ///     .dpop(DpopVerifier::new(DpopOptions::default()))
    ///     .require_dpop()
    ///     .build();
    /// let metadata = authz.protected_resource_metadata();
    /// assert_eq!(metadata["dpop_bound_access_tokens_required"], true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "dpop")]
    pub fn dpop(mut self, verifier: crate::token::dpop::DpopVerifier) -> Self {
        let required = self.http.dpop.as_ref().is_some_and(|d| d.required);
        self.http.dpop = Some(Arc::new(crate::http::DpopSettings::new(
            Arc::new(verifier),
            required,
        )));
        self
    }

    /// Accepts only DPoP-bound access tokens (feature `dpop`): a bearer token is refused
    /// with 401 and a `DPoP` challenge, and the Protected Resource Metadata says
    /// `dpop_bound_access_tokens_required`. Proofs are checked by the verifier given to
    /// [`dpop`](AuthzBuilder::dpop), else by one with [`DpopOptions`]' defaults.
    ///
    /// [`DpopOptions`]: crate::token::dpop::DpopOptions
    #[cfg(feature = "dpop")]
    pub fn require_dpop(mut self) -> Self {
        let verifier = match &self.http.dpop {
            Some(dpop) => Arc::clone(&dpop.verifier),
            None => Arc::new(crate::token::dpop::DpopVerifier::new(
                crate::token::dpop::DpopOptions::default(),
            )),
        };
        self.http.dpop = Some(Arc::new(crate::http::DpopSettings::new(verifier, true)));
        self
    }

    /// Builds the `Authz`.
    pub fn build(self) -> Authz {
        Authz {
            guard: Guard::new(GuardParts {
                verifier: self.verifier,
                policy: self.policy,
                resource: self.resource,
                authorization_servers: self.authorization_servers,
                auditor: self.auditor,
                request_state: self.request_state,
                #[cfg(feature = "cedar")]
                cedar: self.cedar,
            }),
            #[cfg(feature = "http")]
            http: self.http,
        }
    }
}
