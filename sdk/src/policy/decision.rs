//! The one answer every layer acts on: [`Decision`].
//!
//! The HTTP layer turns a denial into a 403 challenge, the server wrapper into an MCP
//! error, the audit log into a record; none of them re-derives why. A denial for missing
//! scopes carries every scope the operation needs (RFC 6750 section 3.1 `scope`, the MCP
//! step-up flow), not only the missing ones, so a client that asks for exactly those gets
//! a token that works.

use std::fmt;

/// What the policy decided for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The operation may proceed.
    Allow,
    /// The operation is refused, and why.
    Deny(Denial),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The denial, if refused.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Allow => None,
            Decision::Deny(d) => Some(d),
        }
    }
}

/// A refusal: the operation and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    operation: String,
    reason: DenyReason,
    /// The Cedar policies that determined it (feature `cedar`).
    policies: Vec<String>,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The caller lacks scopes. `required` is every scope to ask for (one complete way to
    /// meet the rule), `missing` those of them the caller does not hold.
    InsufficientScope {
        /// The scopes the operation needs, for a step-up challenge.
        required: Vec<String>,
        /// The required scopes the caller does not hold.
        missing: Vec<String>,
    },
    /// No rule covers the operation, so it is denied by default.
    NoRule,
    /// The rule admits only certain clients, and this caller's client is not one.
    ClientNotPermitted {
        /// The caller's client, if the token names one.
        client: Option<String>,
    },
    /// The caller's token expired after the session began (stdio re-checks on every call).
    TokenExpired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// The operation belongs to another caller (a task started by someone else).
    NotOwner,
    /// The rule admits only the user's own token, and this one is delegated.
    DelegationNotAllowed {
        /// The delegation chain, current actor first.
        chain: Vec<String>,
    },
    /// The rule admits only certain agents, and this caller's agent is not one.
    AgentNotAllowed {
        /// The agent (current actor, else client), if any.
        agent: Option<String>,
    },
    /// The delegation chain is longer than the rule admits.
    ChainTooDeep {
        /// The chain's length.
        depth: usize,
        /// The most the rule admits.
        max: usize,
    },
    /// An actor in the chain comes from an issuer the rule does not admit.
    ActorIssuerNotAllowed {
        /// The actor.
        actor: String,
        /// Its issuer.
        issuer: String,
    },
    /// An actor the rule forbids appears in the chain.
    ForbiddenActor {
        /// The actor.
        actor: String,
    },
    /// The token (or the user's authentication) is older than the rule admits; a newer
    /// token would do.
    TokenTooOld {
        /// `iat` or `auth_time`.
        claim: &'static str,
        /// Its age in seconds, or `None` when the token lacks the claim.
        age_secs: Option<i64>,
        /// The most the rule admits.
        max_secs: u64,
    },
    /// The token's `iat` (or `auth_time`) lies in the future, beyond the clock skew
    /// tolerated, so its age cannot be told; a new token would do.
    IssuedInFuture {
        /// `iat` or `auth_time`.
        claim: &'static str,
        /// The claim's value, seconds since the epoch.
        at: i64,
        /// The time of the check.
        now: i64,
    },
    /// The token's lifetime (`exp - iat`) is longer than the policy admits.
    LifetimeTooLong {
        /// The token's lifetime in seconds, or `None` when it has no `iat`.
        lifetime_secs: Option<i64>,
        /// The most the policy admits.
        max_secs: u64,
    },
    /// Cedar `forbid` policies apply to the call (feature `cedar`).
    Forbidden {
        /// Their ids.
        policies: Vec<String>,
    },
    /// No Cedar `permit` policy applies to the call (feature `cedar`): deny by default.
    NotPermitted,
    /// The call's arguments cannot be handed to the Cedar policies: one has the wrong
    /// type, a required one is missing, or there are too many (feature `cedar`).
    InvalidArguments {
        /// What is wrong, and where.
        problem: String,
    },
    /// Cedar policies apply to every tool, and this one was not among the server's tools
    /// when they were checked at start-up (a tool only `unlisted_tools` admits): refused
    /// rather than decided unchecked (feature `cedar`).
    PolicyUnchecked,
    /// The rule needs a DPoP-bound token (RFC 9449) proven on the request, and this one
    /// was a bearer token (`delegated`: the rule asks it of delegated tokens only, and
    /// this one is delegated). A bound token and a proof would do.
    DpopRequired {
        /// Whether the rule asks it of delegated tokens only.
        delegated: bool,
    },
}

impl Denial {
    pub(crate) fn new(operation: String, reason: DenyReason) -> Denial {
        Denial {
            operation,
            reason,
            policies: Vec::new(),
        }
    }

    /// This denial, determined by the Cedar policies `policies`.
    #[cfg_attr(not(feature = "cedar"), allow(dead_code))]
    pub(crate) fn by_policies(mut self, policies: Vec<String>) -> Denial {
        self.policies = policies;
        self
    }

    /// The ids of the Cedar policies that determined this denial: the `forbid`s that
    /// apply, or the `permit` whose `@scopes` a step-up would bring; empty for a denial
    /// by scope rules, or when no Cedar `permit` applies.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }

    /// This denial, naming `method` as the refused request when it is not the method the
    /// operation was decided as: a completion or a subscription is decided as the read it
    /// gives access to, and its message must say which request was refused
    /// (`completion/complete (decided as prompts/get summarize) needs scopes ...`).
    pub(crate) fn for_method(mut self, method: &str) -> Denial {
        let same = self
            .operation
            .strip_prefix(method)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '));
        if !same {
            self.operation = format!("{method} (decided as {})", self.operation);
        }
        self
    }

    /// The operation refused, e.g. `tools/call delete_note`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// Why.
    pub fn reason(&self) -> &DenyReason {
        &self.reason
    }

    /// Machine-readable details for an error's `data`: `{"error": "insufficient_scope",
    /// "scope": "..."}` for missing scopes (without `scope` when nothing can be named), `{"error": "invalid_token"}` for an expired
    /// token, `{"error": "access_denied"}` otherwise.
    pub fn error_data(&self) -> serde_json::Value {
        let mut data = self.reason_data();
        if !self.policies.is_empty() {
            data["policies"] = self.policies.clone().into();
        }
        data
    }

    fn reason_data(&self) -> serde_json::Value {
        match &self.reason {
            DenyReason::InsufficientScope { required, .. } => {
                let mut data = serde_json::json!({ "error": "insufficient_scope" });
                let scope = challenge_scope(required);
                if !scope.is_empty() {
                    data["scope"] = scope.into();
                }
                data
            }
            DenyReason::TokenExpired { .. }
            | DenyReason::TokenTooOld { .. }
            | DenyReason::IssuedInFuture { .. }
            | DenyReason::LifetimeTooLong { .. }
            | DenyReason::DpopRequired { .. } => serde_json::json!({ "error": "invalid_token" }),
            DenyReason::NotPermitted => {
                serde_json::json!({ "error": "access_denied", "policies": [] })
            }
            DenyReason::InvalidArguments { .. } => {
                serde_json::json!({ "error": "invalid_request" })
            }
            _ => serde_json::json!({ "error": "access_denied" }),
        }
    }

    /// The reason as a stable code, as audit events record it: `insufficient_scope`,
    /// `no_rule`, `client_not_permitted`, `token_expired`, `not_owner`,
    /// `delegation_not_allowed`, `agent_not_allowed`, `chain_too_deep`,
    /// `actor_issuer_not_allowed`, `forbidden_actor`, `token_too_old`,
    /// `token_issued_in_future`, `token_lifetime_too_long`, and from Cedar policies
    /// `forbidden_by_policy`, `not_permitted_by_policy`, `invalid_arguments` or
    /// `policy_unchecked`, and `dpop_required`.
    pub fn code(&self) -> &'static str {
        match &self.reason {
            DenyReason::InsufficientScope { .. } => "insufficient_scope",
            DenyReason::NoRule => "no_rule",
            DenyReason::ClientNotPermitted { .. } => "client_not_permitted",
            DenyReason::TokenExpired { .. } => "token_expired",
            DenyReason::NotOwner => "not_owner",
            DenyReason::DelegationNotAllowed { .. } => "delegation_not_allowed",
            DenyReason::AgentNotAllowed { .. } => "agent_not_allowed",
            DenyReason::ChainTooDeep { .. } => "chain_too_deep",
            DenyReason::ActorIssuerNotAllowed { .. } => "actor_issuer_not_allowed",
            DenyReason::ForbiddenActor { .. } => "forbidden_actor",
            DenyReason::TokenTooOld { .. } => "token_too_old",
            DenyReason::IssuedInFuture { .. } => "token_issued_in_future",
            DenyReason::LifetimeTooLong { .. } => "token_lifetime_too_long",
            DenyReason::Forbidden { .. } => "forbidden_by_policy",
            DenyReason::NotPermitted => "not_permitted_by_policy",
            DenyReason::InvalidArguments { .. } => "invalid_arguments",
            DenyReason::PolicyUnchecked => "policy_unchecked",
            DenyReason::DpopRequired { .. } => "dpop_required",
        }
    }

    /// Whether a newer token, not more scopes, would help: the HTTP layer answers these
    /// with 401 `invalid_token`.
    pub fn needs_new_token(&self) -> bool {
        matches!(
            self.reason,
            DenyReason::TokenExpired { .. }
                | DenyReason::TokenTooOld { .. }
                | DenyReason::IssuedInFuture { .. }
                | DenyReason::LifetimeTooLong { .. }
                | DenyReason::DpopRequired { .. }
        )
    }

    /// Whether only a DPoP-bound token, proven on the request, would do: the HTTP layer
    /// answers with 401 and a `DPoP` challenge.
    pub fn needs_dpop(&self) -> bool {
        matches!(self.reason, DenyReason::DpopRequired { .. })
    }

    /// For a missing-scope denial, the `scope` value of the step-up challenge: every scope
    /// the operation needs, space separated, but `offline_access` (see
    /// [`challenge_scope`]); `None` when that leaves nothing to name.
    pub fn challenge_scope(&self) -> Option<String> {
        match &self.reason {
            DenyReason::InsufficientScope { required, .. } => {
                Some(challenge_scope(required)).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }
}

/// The `scope` a challenge names for `scopes`: space separated, without `offline_access`,
/// which asks for a refresh token, not access to this resource (MCP authorization
/// 2026-07-28: a challenge SHOULD NOT include it).
pub fn challenge_scope<S: AsRef<str>>(scopes: &[S]) -> String {
    let mut out = String::new();
    for scope in scopes.iter().map(AsRef::as_ref) {
        if scope == "offline_access" {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(scope);
    }
    out
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            DenyReason::InsufficientScope { required, missing } => write!(
                f,
                "{} needs scopes {:?}; the token lacks {:?}",
                self.operation, required, missing
            ),
            DenyReason::NoRule => write!(
                f,
                "{} is not covered by any rule and is denied by default",
                self.operation
            ),
            DenyReason::ClientNotPermitted { client } => write!(
                f,
                "{} is not permitted for client {:?}",
                self.operation,
                client.as_deref().unwrap_or("(none)")
            ),
            DenyReason::TokenExpired { exp, now } => write!(
                f,
                "{} refused: the token expired at {exp} (now {now}); start again with a fresh token",
                self.operation
            ),
            DenyReason::NotOwner => write!(
                f,
                "{} refused: it belongs to another caller",
                self.operation
            ),
            DenyReason::DelegationNotAllowed { chain } => write!(
                f,
                "{} refused by its rule user_only: only the user's own token may call it, this one is delegated through {}",
                self.operation,
                chain.join(" <- ")
            ),
            DenyReason::AgentNotAllowed { agent } => write!(
                f,
                "{} refused by its rule only_agents: agent {:?} is not admitted",
                self.operation,
                agent.as_deref().unwrap_or("(none)")
            ),
            DenyReason::ChainTooDeep { depth, max } => write!(
                f,
                "{} refused by its rule max_chain_depth: {depth} actors in the delegation chain, at most {max} admitted",
                self.operation
            ),
            DenyReason::ActorIssuerNotAllowed { actor, issuer } => write!(
                f,
                "{} refused by its rule actor_issuers: actor {actor:?} comes from issuer {issuer:?}, which is not admitted",
                self.operation
            ),
            DenyReason::ForbiddenActor { actor } => write!(
                f,
                "{} refused by its rule forbid_actors: actor {actor:?} is in the delegation chain",
                self.operation
            ),
            DenyReason::TokenTooOld {
                claim,
                age_secs,
                max_secs,
            } => match age_secs {
                Some(age) => write!(
                    f,
                    "{} refused by its rule max_token_age: the token's {claim} is {age} s old, at most {max_secs} s admitted; get a new token",
                    self.operation
                ),
                None => write!(
                    f,
                    "{} refused by its rule max_token_age: the token has no {claim}, and at most {max_secs} s of age is admitted; get a new token",
                    self.operation
                ),
            },
            DenyReason::IssuedInFuture { claim, at, now } => write!(
                f,
                "{} refused by its rule {}: the token's {claim} {at} is {} s in the future (now {now}), beyond the clock skew tolerated; get a new token, and check the issuer's clock",
                self.operation,
                if *claim == "iat" {
                    "max_token_age"
                } else {
                    "max_auth_age"
                },
                at.saturating_sub(*now)
            ),
            DenyReason::LifetimeTooLong {
                lifetime_secs,
                max_secs,
            } => write!(
                f,
                "{} refused by the policy's max_token_lifetime: the token lives {} s (exp - iat, from now if iat is later), at most {max_secs} s admitted; ask for a shorter-lived token",
                self.operation,
                lifetime_secs.map_or_else(|| "an unknown number of".to_owned(), |l| l.to_string())
            ),
            DenyReason::Forbidden { policies } => write!(
                f,
                "{} refused by Cedar policies {policies:?}",
                self.operation
            ),
            DenyReason::NotPermitted => write!(
                f,
                "{} refused: no Cedar policy permits this call (deny by default)",
                self.operation
            ),
            DenyReason::InvalidArguments { problem } => write!(
                f,
                "{} refused: its arguments cannot be checked against the Cedar policies: {problem}",
                self.operation
            ),
            DenyReason::PolicyUnchecked => write!(
                f,
                "{} refused: Cedar policies apply to every tool, and this tool was not checked against them at start-up; give it a scope rule so the server declares it",
                self.operation
            ),
            DenyReason::DpopRequired { delegated } => write!(
                f,
                "{} refused by its rule {}: it needs a DPoP-bound access token, presented with Authorization: DPoP and a DPoP proof of its key; this one is a bearer token",
                self.operation,
                if *delegated {
                    "require_dpop = \"delegated\""
                } else {
                    "require_dpop"
                }
            ),
        }
    }
}
