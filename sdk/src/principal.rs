//! Who is calling: the verified identity a token carries.
//!
//! A [`Principal`] is what a [`Verifier`](crate::token::Verifier) turns a valid token
//! into: the user (`sub`), the client application (`client_id`, else `azp`), the scopes
//! granted, and, for delegated tokens (RFC 8693 token exchange), the chain of actors
//! that act for the user, current actor first. It is cheap to clone, so it can travel in
//! request extensions, and it never holds the token it came from.
//!
//! A principal also keeps what its scopes amount to under the first few policies that
//! decide for it (a bit set each, see [`policy`](crate::policy)), so the many calls one
//! token makes cost a few bit tests each. Clones share them, as they share everything
//! else.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

/// The verified caller of a request.
///
/// ```
/// # use rmcp_authz::dev::DevIssuer;
/// # let issuer = DevIssuer::new("https://auth.example")?;
/// # let verifier = issuer.verifier("https://mcp.example/mcp").build()?;
/// # let token = issuer.token("https://mcp.example/mcp").subject("alice")
/// #     .client_id("research-agent").scopes(["notes:read"]).actor("planner").mint()?;
/// let who = verifier.verify_sync(&token)?;
/// assert_eq!(who.subject(), Some("alice"));
/// assert_eq!(who.client_id(), Some("research-agent"));
/// assert!(who.has_scope("notes:read"));
/// // Delegated: the agent is the current actor, not the client.
/// assert_eq!(who.agent(), Some("planner"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Principal {
    inner: Arc<Inner>,
    /// The RFC 7638 thumbprint of the key whose DPoP proof came with this request's token
    /// (set per request by the HTTP layer, never by a verifier or its cache).
    proof_key: Option<Arc<str>>,
}

struct Inner {
    issuer: String,
    subject: Option<String>,
    client_id: Option<String>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    actors: Vec<Actor>,
    jti: Option<String>,
    iat: Option<i64>,
    exp: i64,
    claims: Map<String, Value>,
    clock_leeway_secs: i64,
    /// The scopes' effective grant sets under the first policies that asked.
    grants: [OnceLock<CachedGrants>; GRANT_SLOTS],
    /// What the first policy stage that asked derived from this principal (the Cedar
    /// stage's entity for it), under that stage's id.
    derived: OnceLock<(u64, Arc<dyn Any + Send + Sync>)>,
}

/// A principal's grant set under one policy, computed by the policy and kept in the
/// principal: a plain record, so the principal needs nothing from the policy.
#[derive(Debug)]
pub(crate) struct CachedGrants {
    /// The identity of the policy it was computed for (never reused).
    pub(crate) policy: u64,
    /// The scopes held, as the policy's bit set.
    pub(crate) words: Box<[u64]>,
    /// The same scopes by name, with the token's own, sorted: made the first time a
    /// policy stage asks for them (Cedar's `principal.scopes`).
    pub(crate) names: OnceLock<Box<[String]>>,
}

/// How many policies' grant sets a principal keeps: one server has one policy, and a
/// replaced policy (or a second server in the process) should not make every call of a
/// live token resolve its scopes again. Further policies compute them per call.
const GRANT_SLOTS: usize = 4;

/// One actor in a delegation chain (an RFC 8693 `act` claim).
///
/// RFC 8693 section 4.1 lets claims other than `sub` identify an actor, and an agent is
/// often a client acting for itself: an actor has a `sub`, a `client_id`, or both, and
/// [`Actor::id`] names it by the first of them. Policies, [`Principal::agent`] and audit
/// events all name actors by [`Actor::id`].
///
/// ```
/// # use rmcp_authz::dev::DevIssuer;
/// # let issuer = DevIssuer::new("https://auth.example")?;
/// # let verifier = issuer.verifier("https://mcp.example/mcp").build()?;
/// let token = issuer.token("https://mcp.example/mcp").subject("alice")
///     .claim("act", serde_json::json!({"client_id": "research-agent"})).mint()?;
/// let who = verifier.verify_sync(&token)?;
/// let actor = &who.delegation_chain()[0];
/// assert_eq!(actor.subject(), None);
/// assert_eq!(actor.id(), "research-agent");
/// assert_eq!(who.agent(), Some("research-agent"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    subject: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
}

impl Actor {
    /// What names the actor: its `sub`, else its `client_id`. Never empty.
    pub fn id(&self) -> &str {
        // `Actor::new` admits no actor without either.
        self.subject
            .as_deref()
            .or(self.client_id.as_deref())
            .unwrap_or_default()
    }

    /// The actor's `sub`, when the token names the actor by one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The actor's `iss`, when the token names the issuer that vouches for it.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The actor's `client_id`, when present.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// An actor named by `subject` or `client_id` (an `act` claim's members), acting for
    /// a token issued by `issuer` if given; `None` when neither `subject` nor `client_id`
    /// names it, or when one is given empty.
    ///
    /// ```
    /// use rmcp_authz::Actor;
    /// let agent = Actor::new(Some("agent-7".into()), None, None).unwrap();
    /// assert_eq!(agent.id(), "agent-7");
    /// assert!(Actor::new(None, Some("https://as.example".into()), None).is_none());
    /// ```
    pub fn new(
        subject: Option<String>,
        issuer: Option<String>,
        client_id: Option<String>,
    ) -> Option<Self> {
        let empty = |v: &Option<String>| v.as_deref().is_some_and(str::is_empty);
        if empty(&subject) || empty(&client_id) || empty(&issuer) {
            return None;
        }
        (subject.is_some() || client_id.is_some()).then_some(Actor {
            subject,
            issuer,
            client_id,
        })
    }
}

/// The parts a verifier has checked, from which it builds a [`Principal`].
#[derive(Debug, Default)]
pub(crate) struct PrincipalParts {
    pub(crate) issuer: String,
    pub(crate) subject: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) actors: Vec<Actor>,
    pub(crate) jti: Option<String>,
    pub(crate) iat: Option<i64>,
    pub(crate) exp: i64,
    pub(crate) claims: Map<String, Value>,
    /// The clock leeway of the verifier that checked the token, in seconds (`None`: the
    /// default, [`DEFAULT_CLOCK_LEEWAY_SECS`]).
    pub(crate) clock_leeway_secs: Option<i64>,
}

/// The clock leeway assumed for a principal whose verifier did not say (30 s, the
/// verifiers' default).
pub(crate) const DEFAULT_CLOCK_LEEWAY_SECS: i64 = 30;

impl From<PrincipalParts> for Principal {
    fn from(p: PrincipalParts) -> Self {
        Principal {
            inner: Arc::new(Inner {
                issuer: p.issuer,
                subject: p.subject,
                client_id: p.client_id,
                audiences: p.audiences,
                scopes: p.scopes,
                actors: p.actors,
                jti: p.jti,
                iat: p.iat,
                exp: p.exp,
                claims: p.claims,
                clock_leeway_secs: p.clock_leeway_secs.unwrap_or(DEFAULT_CLOCK_LEEWAY_SECS),
                grants: [const { OnceLock::new() }; GRANT_SLOTS],
                derived: OnceLock::new(),
            }),
            proof_key: None,
        }
    }
}

impl Principal {
    /// How far in the future a time claim (`iat`, `auth_time`) of this principal's token
    /// may lie and still count as now: the leeway of the verifier that checked it.
    pub(crate) fn clock_leeway_secs(&self) -> i64 {
        self.inner.clock_leeway_secs
    }

    /// The issuer (`iss`) that vouched for this caller.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The user or resource owner (`sub`), never empty. Absent only when a verifier was
    /// configured not to require `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.inner.subject.as_deref()
    }

    /// The client application: `client_id` (RFC 9068), else `azp` (OpenID Connect); never
    /// empty.
    pub fn client_id(&self) -> Option<&str> {
        self.inner.client_id.as_deref()
    }

    /// The agent making this call: the current actor of a delegated token (its
    /// [`id`](Actor::id): `sub`, else `client_id`), else the client.
    pub fn agent(&self) -> Option<&str> {
        match self.inner.actors.first() {
            Some(actor) => Some(actor.id()),
            None => self.client_id(),
        }
    }

    /// The token's audiences (`aud`); one of them is this resource server.
    pub fn audiences(&self) -> &[String] {
        &self.inner.audiences
    }

    /// The granted scopes, in token order without repeats: from `scope` (space separated),
    /// or, when the token has no `scope`, from `scp` (an array or a string).
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// True when `scope` was granted (exact match; hierarchies are the policy's business).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.scopes.iter().any(|s| s == scope)
    }

    /// The delegation chain from nested `act` claims, current actor first; empty when the
    /// user's own token is used.
    pub fn delegation_chain(&self) -> &[Actor] {
        &self.inner.actors
    }

    /// True when the token was obtained by delegation (it has an `act` claim).
    pub fn is_delegated(&self) -> bool {
        !self.inner.actors.is_empty()
    }

    /// The token id (`jti`), if any.
    pub fn token_id(&self) -> Option<&str> {
        self.inner.jti.as_deref()
    }

    /// When the token was issued (`iat`, seconds since the epoch), if it says.
    pub fn issued_at(&self) -> Option<i64> {
        self.inner.iat
    }

    /// When the token expires (`exp`, seconds since the epoch).
    pub fn expires_at(&self) -> i64 {
        self.inner.exp
    }

    /// Every claim of the token, for checks of your own.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.inner.claims
    }

    /// One claim of the token.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.inner.claims.get(name)
    }

    /// The key the token is bound to (RFC 9449 section 6: its `cnf.jkt`, the RFC 7638
    /// thumbprint of the client's DPoP key), whether or not this request proved it.
    pub fn bound_key(&self) -> Option<&str> {
        self.claim("cnf")?.get("jkt")?.as_str()
    }

    /// The thumbprint of the key whose DPoP proof this request carried, checked against
    /// the token's [`bound_key`](Principal::bound_key) (feature `dpop`, over HTTP):
    /// `Some` when the caller proved it holds the key the token is bound to, `None` for
    /// a bearer token.
    pub fn proof_key(&self) -> Option<&str> {
        self.proof_key.as_deref()
    }

    /// Whether the request proved possession of the key its token is bound to (DPoP).
    pub fn is_sender_constrained(&self) -> bool {
        self.proof_key.is_some()
    }

    /// This principal, as proven by the DPoP key `jkt` on this request (the verifier's
    /// cached principal is not touched: the clone carries it).
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn with_proof_key(mut self, jkt: Arc<str>) -> Principal {
        self.proof_key = Some(jkt);
        self
    }

    /// The slots for the scopes' grant sets under policies, filled in order by the
    /// policies that decide for this principal, shared by clones.
    pub(crate) fn grant_slots(&self) -> &[OnceLock<CachedGrants>] {
        &self.inner.grants
    }

    /// What the policy stage `owner` derives from this principal with `make`: made once
    /// and kept for the first stage that asks (a server has one), shared by clones; made
    /// afresh for any other stage. The principal needs to know nothing of the value.
    #[cfg_attr(not(feature = "cedar"), allow(dead_code))]
    pub(crate) fn derived<T: Any + Send + Sync, E>(
        &self,
        owner: u64,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some((kept_for, value)) = self.inner.derived.get() {
            if *kept_for == owner
                && let Ok(value) = Arc::clone(value).downcast::<T>()
            {
                return Ok(value);
            }
            return make().map(Arc::new);
        }
        let value = Arc::new(make()?);
        let shared: Arc<dyn Any + Send + Sync> = value.clone();
        let _ = self.inner.derived.set((owner, shared));
        Ok(value)
    }
}

/// A [`Principal`] put together by a [`Verifier`](crate::token::Verifier) of your own,
/// from a token it has verified (or, in tests, from nothing).
///
/// ```
/// use rmcp_authz::{Actor, Principal};
/// let alice = Principal::builder("https://as.example", 1_900_000_000)
///     .subject("alice")
///     .client_id("notes-app")
///     .audiences(["https://mcp.example/mcp"])
///     .scopes(["notes:read", "notes:write"])
///     .actor(Actor::new(Some("agent-7".into()), None, None).unwrap())
///     .issued_at(1_899_999_000)
///     .build()?;
/// assert_eq!(alice.agent(), Some("agent-7"));
/// assert!(alice.has_scope("notes:write"));
/// # Ok::<(), rmcp_authz::PrincipalError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct PrincipalBuilder {
    parts: PrincipalParts,
}

/// Why a [`PrincipalBuilder`] could not build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalError {
    /// A member that names someone is empty (an empty issuer, subject, client or scope
    /// would match other empty values and grant what no one was given).
    #[error("the principal's {member} is empty; leave it out or give its value")]
    Empty {
        /// `issuer`, `subject`, `client_id`, `audience` or `scope`.
        member: &'static str,
    },
}

impl Principal {
    /// Starts a principal issued by `issuer` whose token expires at `expires_at`
    /// (seconds since the epoch). Everything else is optional.
    pub fn builder(issuer: impl Into<String>, expires_at: i64) -> PrincipalBuilder {
        PrincipalBuilder {
            parts: PrincipalParts {
                issuer: issuer.into(),
                exp: expires_at,
                ..PrincipalParts::default()
            },
        }
    }
}

impl PrincipalBuilder {
    /// The user (`sub`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.parts.subject = Some(subject.into());
        self
    }

    /// The client application (`client_id`, or `azp`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.parts.client_id = Some(client_id.into());
        self
    }

    /// The token's audiences (`aud`).
    pub fn audiences<S: Into<String>>(mut self, audiences: impl IntoIterator<Item = S>) -> Self {
        self.parts.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// The granted scopes (repeats are dropped, the first kept).
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        let mut kept: Vec<String> = Vec::new();
        for scope in scopes.into_iter().map(Into::into) {
            if !kept.contains(&scope) {
                kept.push(scope);
            }
        }
        self.parts.scopes = kept;
        self
    }

    /// Adds an actor to the delegation chain: the first one added is the current actor,
    /// the next the one it acts for, and so on.
    pub fn actor(mut self, actor: Actor) -> Self {
        self.parts.actors.push(actor);
        self
    }

    /// The token id (`jti`).
    pub fn token_id(mut self, jti: impl Into<String>) -> Self {
        self.parts.jti = Some(jti.into());
        self
    }

    /// When the token was issued (`iat`, seconds since the epoch).
    pub fn issued_at(mut self, iat: i64) -> Self {
        self.parts.iat = Some(iat);
        self
    }

    /// Every claim of the token, for the handlers' own checks.
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.parts.claims = claims;
        self
    }

    /// The clock skew the verifier tolerated (default 30 s): the policy counts a
    /// lifetime from now when `iat` is later than now plus this.
    pub fn clock_leeway(mut self, leeway: std::time::Duration) -> Self {
        self.parts.clock_leeway_secs = Some(i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX));
        self
    }

    /// The principal.
    ///
    /// # Errors
    /// [`PrincipalError::Empty`] when the issuer, the subject, the client, an audience
    /// or a scope is empty.
    pub fn build(self) -> Result<Principal, PrincipalError> {
        let p = &self.parts;
        let empty = |v: Option<&str>| v.is_some_and(str::is_empty);
        for (member, is_empty) in [
            ("issuer", p.issuer.is_empty()),
            ("subject", empty(p.subject.as_deref())),
            ("client_id", empty(p.client_id.as_deref())),
            ("audience", p.audiences.iter().any(String::is_empty)),
            ("scope", p.scopes.iter().any(String::is_empty)),
        ] {
            if is_empty {
                return Err(PrincipalError::Empty { member });
            }
        }
        Ok(Principal::from(self.parts))
    }
}

impl fmt::Debug for Principal {
    /// Shows identity and grants; claim values beyond those are left out (they may hold
    /// personal data). There is no token to show: a principal never holds one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Principal")
            .field("issuer", &i.issuer)
            .field("subject", &i.subject)
            .field("client_id", &i.client_id)
            .field("scopes", &i.scopes)
            .field("delegation_chain", &i.actors)
            .field("jti", &i.jti)
            .field("exp", &i.exp)
            .field("claim_names", &i.claims.keys().collect::<Vec<_>>())
            .field("proof_key", &self.proof_key)
            .finish()
    }
}
