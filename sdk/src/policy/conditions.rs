//! [`Conditions`]: what a rule demands of the caller beyond scopes: its delegation chain
//! (RFC 8693 `act`) and how fresh its token is.
//!
//! RFC 8693 section 4.1 says access decisions use the token's top-level claims and the
//! current actor (the outermost `act`); earlier actors are informational. The agent
//! allow-list ([`Conditions::only_agents`]) follows that. The chain depth, actor issuer and
//! forbidden-actor checks look at the whole chain, which goes beyond the RFC on purpose: a
//! chain is only as trustworthy as its least trusted link, and an operator who has stopped
//! trusting an agent wants every call it touched refused, however many agents it hid
//! behind. A rule's conditions override the policy's defaults
//! ([`PolicyBuilder::default_conditions`](super::PolicyBuilder::default_conditions)) one
//! setting at a time.

use std::time::Duration;

use super::decision::DenyReason;
use crate::principal::Principal;

/// Conditions on the caller's delegation chain and token age. Nothing is required by
/// default.
///
/// ```
/// use std::time::Duration;
/// use rmcp_authz::policy::{Conditions, Policy, Rule};
/// let policy = Policy::builder()
///     // Every operation: at most two agents between the user and this server.
///     .default_conditions(Conditions::new().max_chain_depth(2))
///     // Purging needs the user's own token, issued in the last five minutes.
///     .tool("purge", Rule::new("notes:admin").with(
///         Conditions::new().user_only().max_token_age(Duration::from_secs(300)),
///     ))
///     // Only these agents may write, directly or as the current actor.
///     .tool("write_note", Rule::new("notes:write").with(
///         Conditions::new().only_agents(["research-agent", "notes-app"]),
///     ))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Conditions {
    pub(crate) user_only: Option<bool>,
    pub(crate) agents: Option<Vec<String>>,
    pub(crate) max_depth: Option<usize>,
    pub(crate) actor_issuers: Option<Vec<String>>,
    pub(crate) forbidden_actors: Option<Vec<String>>,
    pub(crate) max_token_age: Option<Duration>,
    pub(crate) max_auth_age: Option<Duration>,
    pub(crate) dpop: Option<DpopRequirement>,
}

/// When a rule needs a DPoP-bound token (RFC 9449), proven on the request with the key
/// the token is bound to: see [`Conditions::require_dpop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopRequirement {
    /// Every call needs one.
    Always,
    /// Delegated tokens (with an `act` chain) need one; the user's own token may be a
    /// bearer token.
    Delegated,
    /// Bearer tokens are admitted (to lift a default for one rule).
    Never,
}

impl Conditions {
    /// No conditions.
    pub fn new() -> Conditions {
        Conditions::default()
    }

    /// Refuses delegated tokens: only the user's own token (no `act`) may call.
    pub fn user_only(mut self) -> Conditions {
        self.user_only = Some(true);
        self
    }

    /// Allows delegated tokens again (to lift a `user_only` default for one rule).
    pub fn allow_delegation(mut self) -> Conditions {
        self.user_only = Some(false);
        self
    }

    /// Admits only these agents: the current actor of a delegated token (its `sub`, else
    /// its `client_id`), else the client (`client_id`, else `azp`).
    pub fn only_agents<S: Into<String>>(
        mut self,
        agents: impl IntoIterator<Item = S>,
    ) -> Conditions {
        self.agents = Some(agents.into_iter().map(Into::into).collect());
        self
    }

    /// Admits at most `depth` actors in the delegation chain (0: the same as
    /// [`Conditions::user_only`]).
    pub fn max_chain_depth(mut self, depth: usize) -> Conditions {
        self.max_depth = Some(depth);
        self
    }

    /// Admits actors only from these issuers (an actor's `iss`, else the token's issuer).
    pub fn actor_issuers<S: Into<String>>(
        mut self,
        issuers: impl IntoIterator<Item = S>,
    ) -> Conditions {
        self.actor_issuers = Some(issuers.into_iter().map(Into::into).collect());
        self
    }

    /// Refuses any chain in which one of these actors appears, anywhere. A deny list
    /// matches an actor by its `sub` or by its `client_id`, either one.
    pub fn forbid_actors<S: Into<String>>(
        mut self,
        actors: impl IntoIterator<Item = S>,
    ) -> Conditions {
        self.forbidden_actors = Some(actors.into_iter().map(Into::into).collect());
        self
    }

    /// Requires the token to have been issued (`iat`) at most `age` ago; a token without
    /// `iat`, or with one in the future beyond the leeway of the verifier that checked it
    /// (the clock skew tolerated), is refused. The denial tells the client to get a new token.
    pub fn max_token_age(mut self, age: Duration) -> Conditions {
        self.max_token_age = Some(age);
        self
    }

    /// Requires the user to have authenticated (`auth_time`) at most `age` ago; a token
    /// without `auth_time`, or with one in the future beyond the verifier's leeway, is
    /// refused.
    pub fn max_auth_age(mut self, age: Duration) -> Conditions {
        self.max_auth_age = Some(age);
        self
    }

    /// Requires a DPoP-bound token proven on the request (RFC 9449, feature `dpop` on
    /// the HTTP layer): a bearer token is refused with 401 and a `DPoP` challenge, so a
    /// token copied from a log or a proxy cannot call. Over stdio, where there is no
    /// proof, such a rule refuses every call.
    pub fn require_dpop(mut self) -> Conditions {
        self.dpop = Some(DpopRequirement::Always);
        self
    }

    /// Requires a DPoP-bound token proven on the request of delegated tokens only (those
    /// with an `act` chain): the agents acting for a user, where a stolen token does the
    /// most harm.
    pub fn require_dpop_when_delegated(mut self) -> Conditions {
        self.dpop = Some(DpopRequirement::Delegated);
        self
    }

    /// Admits bearer tokens again (to lift a `require_dpop` default for one rule).
    pub fn allow_bearer(mut self) -> Conditions {
        self.dpop = Some(DpopRequirement::Never);
        self
    }

    /// These conditions, with every setting left unset here taken from `defaults`.
    pub(crate) fn over(&self, defaults: &Conditions) -> Conditions {
        Conditions {
            user_only: self.user_only.or(defaults.user_only),
            agents: self.agents.clone().or_else(|| defaults.agents.clone()),
            max_depth: self.max_depth.or(defaults.max_depth),
            actor_issuers: self
                .actor_issuers
                .clone()
                .or_else(|| defaults.actor_issuers.clone()),
            forbidden_actors: self
                .forbidden_actors
                .clone()
                .or_else(|| defaults.forbidden_actors.clone()),
            max_token_age: self.max_token_age.or(defaults.max_token_age),
            max_auth_age: self.max_auth_age.or(defaults.max_auth_age),
            dpop: self.dpop.or(defaults.dpop),
        }
    }

    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// The first condition `principal` fails at time `now`, if any: the chain first (a
    /// new token would not help), then the DPoP binding, then freshness.
    pub(crate) fn check(&self, principal: &Principal, now: i64) -> Option<DenyReason> {
        let chain = principal.delegation_chain();
        if self.user_only == Some(true) && !chain.is_empty() {
            return Some(DenyReason::DelegationNotAllowed {
                chain: chain_names(principal),
            });
        }
        if let Some(max) = self.max_depth
            && chain.len() > max
        {
            return Some(DenyReason::ChainTooDeep {
                depth: chain.len(),
                max,
            });
        }
        if let Some(forbidden) = &self.forbidden_actors
            && let Some(name) = chain.iter().find_map(|a| {
                [a.subject(), a.client_id()]
                    .into_iter()
                    .flatten()
                    .find(|name| forbidden.iter().any(|f| f == name))
            })
        {
            return Some(DenyReason::ForbiddenActor {
                actor: name.to_owned(),
            });
        }
        if let Some(issuers) = &self.actor_issuers
            && let Some(actor) = chain.iter().find(|a| {
                let issuer = a.issuer().unwrap_or(principal.issuer());
                !issuers.iter().any(|i| i == issuer)
            })
        {
            return Some(DenyReason::ActorIssuerNotAllowed {
                actor: actor.id().to_owned(),
                issuer: actor.issuer().unwrap_or(principal.issuer()).to_owned(),
            });
        }
        if let Some(agents) = &self.agents
            && !principal
                .agent()
                .is_some_and(|agent| agents.iter().any(|a| a == agent))
        {
            return Some(DenyReason::AgentNotAllowed {
                agent: principal.agent().map(str::to_owned),
            });
        }
        let needs_dpop = match self.dpop {
            Some(DpopRequirement::Always) => Some(false),
            Some(DpopRequirement::Delegated) if !chain.is_empty() => Some(true),
            _ => None,
        };
        if let Some(delegated) = needs_dpop
            && !principal.is_sender_constrained()
        {
            return Some(DenyReason::DpopRequired { delegated });
        }
        let age = |claim: &'static str, at: Option<i64>, max: Option<Duration>| {
            let max = max?;
            let max_secs = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            match at {
                // Its age would be negative and pass any maximum.
                // How far ahead a time may lie and count as now: the verifier's leeway.
                Some(t) if t > now.saturating_add(principal.clock_leeway_secs()) => {
                    Some(DenyReason::IssuedInFuture { claim, at: t, now })
                }
                Some(t) if now.saturating_sub(t) <= max_secs => None,
                _ => Some(DenyReason::TokenTooOld {
                    claim,
                    age_secs: at.map(|t| now.saturating_sub(t)),
                    max_secs: max.as_secs(),
                }),
            }
        };
        age("iat", principal.issued_at(), self.max_token_age).or_else(|| {
            // Looked up only when asked for: most rules have no `max_auth_age`.
            let max = self.max_auth_age?;
            let auth_time = principal
                .claim("auth_time")
                .and_then(serde_json::Value::as_i64);
            age("auth_time", auth_time, Some(max))
        })
    }
}

/// The chain as names (each actor's `sub`, else its `client_id`), current actor first.
fn chain_names(principal: &Principal) -> Vec<String> {
    principal
        .delegation_chain()
        .iter()
        .map(|a| a.id().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::dev::DevIssuer;
    use crate::policy::{Decision, Operation, Policy, Rule};

    const RS: &str = "https://rs.example/mcp";

    fn principal(
        f: impl FnOnce(crate::dev::TokenRequest<'_>) -> crate::dev::TokenRequest<'_>,
    ) -> Principal {
        let issuer = DevIssuer::new("https://as.example").unwrap();
        let token = f(issuer
            .token(RS)
            .subject("alice")
            .client_id("app")
            .scopes(["s"]))
        .mint()
        .unwrap();
        issuer
            .verifier(RS)
            .build()
            .unwrap()
            .verify_sync(&token)
            .unwrap()
    }

    fn code(policy: &Policy, p: &Principal, tool: &str, now: i64) -> Option<&'static str> {
        match policy.decide_at(p, Operation::CallTool(tool), now) {
            Decision::Allow => None,
            Decision::Deny(d) => Some(d.code()),
        }
    }

    fn policy() -> Policy {
        Policy::builder()
            .default_conditions(
                Conditions::new()
                    .max_chain_depth(2)
                    .forbid_actors(["rogue"]),
            )
            .tool("open", "s")
            .tool("mine", Rule::new("s").with(Conditions::new().user_only()))
            .tool(
                "agents",
                Rule::new("s").with(Conditions::new().only_agents(["planner", "app"])),
            )
            .tool(
                "deep",
                Rule::new("s").with(Conditions::new().max_chain_depth(3)),
            )
            .tool(
                "issuers",
                Rule::new("s").with(Conditions::new().actor_issuers(["https://as.example"])),
            )
            .tool(
                "fresh",
                Rule::new("s").with(Conditions::new().max_token_age(Duration::from_secs(60))),
            )
            .tool(
                "admin",
                Rule::new("x").with(Conditions::new().max_token_age(Duration::from_secs(60))),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn each_condition_refuses_with_its_own_reason() {
        let policy = policy();
        let direct = principal(|t| t);
        let one = principal(|t| t.actor("planner"));
        let three = principal(|t| t.actor("c").actor("b").actor("a"));
        let rogue = principal(|t| t.actor("planner").actor("rogue"));
        let now = direct.issued_at().unwrap();

        assert_eq!(code(&policy, &direct, "open", now), None);
        assert_eq!(code(&policy, &one, "open", now), None);
        assert_eq!(
            code(&policy, &three, "open", now),
            Some("chain_too_deep"),
            "default depth 2"
        );
        assert_eq!(
            code(&policy, &three, "deep", now),
            None,
            "the rule's depth overrides"
        );
        assert_eq!(
            code(&policy, &rogue, "deep", now),
            Some("forbidden_actor"),
            "default kept"
        );

        assert_eq!(code(&policy, &direct, "mine", now), None);
        assert_eq!(
            code(&policy, &one, "mine", now),
            Some("delegation_not_allowed")
        );

        // The current actor decides, per RFC 8693; without a chain, the client.
        assert_eq!(code(&policy, &one, "agents", now), None);
        assert_eq!(code(&policy, &direct, "agents", now), None);
        let other = principal(|t| t.actor("scraper").actor("planner"));
        assert_eq!(
            code(&policy, &other, "agents", now),
            Some("agent_not_allowed")
        );

        let foreign = principal(|t| {
            t.claim(
                "act",
                json!({"sub": "planner", "iss": "https://evil.example"}),
            )
        });
        assert_eq!(
            code(&policy, &one, "issuers", now),
            None,
            "no act.iss: the token's issuer"
        );
        assert_eq!(
            code(&policy, &foreign, "issuers", now),
            Some("actor_issuer_not_allowed")
        );
    }

    #[test]
    fn freshness_is_checked_after_scopes_and_tells_the_client_to_get_a_new_token() {
        let policy = policy();
        let p = principal(|t| t);
        let iat = p.issued_at().unwrap();
        assert_eq!(code(&policy, &p, "fresh", iat + 60), None);
        assert_eq!(code(&policy, &p, "fresh", iat + 61), Some("token_too_old"));
        // Missing scopes first: a step-up token is a new token too.
        assert_eq!(
            code(&policy, &p, "admin", iat + 61),
            Some("insufficient_scope")
        );
        let Decision::Deny(d) = policy.decide_at(&p, Operation::CallTool("fresh"), iat + 61) else {
            unreachable!()
        };
        assert!(d.needs_new_token());
        assert_eq!(d.error_data()["error"], "invalid_token");
        assert!(
            d.to_string().contains("max_token_age") && d.to_string().contains("61 s"),
            "{d}"
        );
        let no_iat = principal(|t| t.without("iat"));
        assert_eq!(code(&policy, &no_iat, "fresh", iat), Some("token_too_old"));
    }

    #[test]
    fn the_policy_caps_token_lifetimes() {
        let policy = Policy::builder()
            .max_token_lifetime(Duration::from_secs(600))
            .tool("t", "s")
            .build()
            .unwrap();
        let p = principal(|t| t); // the development issuer's tokens live an hour
        let now = p.issued_at().unwrap();
        assert_eq!(code(&policy, &p, "t", now), Some("token_lifetime_too_long"));
        let short = principal(|t| t.claim("exp", now + 300));
        assert_eq!(code(&policy, &short, "t", now), None);
    }

    #[test]
    fn the_future_tolerated_is_the_verifiers_leeway() {
        let policy = policy();
        let issuer = DevIssuer::new("https://as.example").unwrap();
        let token = issuer
            .token(RS)
            .subject("alice")
            .scopes(["s"])
            .mint()
            .unwrap();
        let lenient = issuer
            .verifier(RS)
            .leeway(Duration::from_secs(120))
            .build()
            .unwrap()
            .verify_sync(&token)
            .unwrap();
        let iat = lenient.issued_at().unwrap();
        // What the verifier let through as "now" is not refused as from the future.
        assert_eq!(code(&policy, &lenient, "fresh", iat - 60), None);
        assert_eq!(
            code(&policy, &lenient, "fresh", iat - 121),
            Some("token_issued_in_future")
        );
    }

    #[test]
    fn a_token_issued_in_the_future_fails_max_token_age() {
        let policy = policy();
        let p = principal(|t| t);
        let iat = p.issued_at().unwrap();
        // Within the clock skew tolerated: as fresh as a token issued now.
        assert_eq!(code(&policy, &p, "fresh", iat - 30), None);
        // Beyond it: the age would be negative and pass any maximum.
        assert_eq!(
            code(&policy, &p, "fresh", iat - 31),
            Some("token_issued_in_future")
        );
        assert_eq!(
            code(&policy, &p, "fresh", iat - 365 * 24 * 3600),
            Some("token_issued_in_future")
        );
        let Decision::Deny(d) = policy.decide_at(&p, Operation::CallTool("fresh"), iat - 31) else {
            unreachable!()
        };
        assert!(d.needs_new_token());
        assert!(d.to_string().contains("in the future"), "{d}");
        // `auth_time` is a time in the past too.
        let auth = Policy::builder()
            .tool(
                "t",
                Rule::new("s").with(Conditions::new().max_auth_age(Duration::from_secs(60))),
            )
            .build()
            .unwrap();
        let future_auth = principal(|t| t.claim("auth_time", iat + 3600));
        assert_eq!(
            code(&auth, &future_auth, "t", iat),
            Some("token_issued_in_future")
        );
    }

    #[test]
    fn a_future_iat_does_not_shorten_the_lifetime() {
        let policy = Policy::builder()
            .max_token_lifetime(Duration::from_secs(3600))
            .tool("t", "s")
            .build()
            .unwrap();
        let p = principal(|t| t); // lives exactly an hour
        let iat = p.issued_at().unwrap();
        assert_eq!(code(&policy, &p, "t", iat), None);
        // Issued 10 s ahead of the policy's clock: skew, still an hour-long token.
        assert_eq!(code(&policy, &p, "t", iat - 10), None);
        // "Issued" a year ahead, expiring a year out: it is valid for a year from now.
        assert_eq!(
            code(&policy, &p, "t", iat - 365 * 24 * 3600),
            Some("token_lifetime_too_long")
        );
    }

    #[test]
    fn actors_named_only_by_client_id_are_matched_by_it() {
        let policy = policy();
        let by_client = principal(|t| t.claim("act", json!({"client_id": "planner"})));
        let now = by_client.issued_at().unwrap();
        assert_eq!(by_client.agent(), Some("planner"));
        assert_eq!(code(&policy, &by_client, "agents", now), None);
        assert_eq!(code(&policy, &by_client, "issuers", now), None);
        let Decision::Deny(d) = policy.decide_at(&by_client, Operation::CallTool("mine"), now)
        else {
            unreachable!()
        };
        assert!(d.to_string().contains("planner"), "{d}");

        let rogue = principal(|t| {
            t.claim(
                "act",
                json!({"sub": "planner", "act": {"client_id": "rogue"}}),
            )
        });
        assert_eq!(code(&policy, &rogue, "open", now), Some("forbidden_actor"));
        let foreign = principal(|t| {
            t.claim(
                "act",
                json!({"client_id": "planner", "iss": "https://evil.example"}),
            )
        });
        let Decision::Deny(d) = policy.decide_at(&foreign, Operation::CallTool("issuers"), now)
        else {
            unreachable!()
        };
        assert!(d.to_string().contains("\"planner\""), "{d}");
        let scraper = principal(|t| t.claim("act", json!({"client_id": "scraper"})));
        assert_eq!(
            code(&policy, &scraper, "agents", now),
            Some("agent_not_allowed")
        );
        // A `sub` names the actor when there is one; its client is not its name.
        let both = principal(|t| t.claim("act", json!({"sub": "scraper", "client_id": "planner"})));
        assert_eq!(
            code(&policy, &both, "agents", now),
            Some("agent_not_allowed")
        );
        // A deny list matches either name: a `sub` does not hide a forbidden client.
        let hidden = principal(|t| {
            t.claim(
                "act",
                json!({"sub": "planner", "act": {"sub": "svc-1", "client_id": "rogue"}}),
            )
        });
        assert_eq!(code(&policy, &hidden, "open", now), Some("forbidden_actor"));
    }

    #[test]
    fn denials_name_the_rule_that_refused() {
        let policy = policy();
        let one = principal(|t| t.actor("planner"));
        let Decision::Deny(d) = policy.decide_at(&one, Operation::CallTool("mine"), 0) else {
            unreachable!()
        };
        assert!(
            d.to_string().contains("user_only") && d.to_string().contains("planner"),
            "{d}"
        );
        assert!(!d.needs_new_token());
    }

    #[test]
    fn require_dpop_admits_only_a_request_proven_with_the_tokens_key() {
        let bound = principal(|t| t.claim("cnf", json!({"jkt": "k1"})));
        let rule = |c: Conditions| {
            Policy::builder()
                .default_conditions(Conditions::new().require_dpop())
                .tool("t", Rule::new("s").with(c))
                .build()
                .unwrap()
        };
        let strict = rule(Conditions::new());
        // Bound but not proven on this request: a bearer use of it.
        let d = strict.decide(&bound, Operation::CallTool("t"));
        let denial = d.denial().expect("denied");
        assert_eq!(denial.code(), "dpop_required");
        assert!(denial.needs_dpop() && denial.needs_new_token());
        assert!(denial.to_string().contains("require_dpop"), "{denial}");
        let proven = bound.clone().with_proof_key("k1".into());
        assert_eq!(proven.proof_key(), Some("k1"));
        assert!(
            bound.proof_key().is_none(),
            "the clone carries the proof, not the original"
        );
        assert!(
            strict
                .decide(&proven, Operation::CallTool("t"))
                .is_allowed()
        );
        // A rule lifts the default.
        let lifted = rule(Conditions::new().allow_bearer());
        assert!(lifted.decide(&bound, Operation::CallTool("t")).is_allowed());
        // Delegated tokens only.
        let delegated = rule(Conditions::new().require_dpop_when_delegated());
        assert!(
            delegated
                .decide(&bound, Operation::CallTool("t"))
                .is_allowed()
        );
        let acting = principal(|t| t.actor("agent"));
        assert!(matches!(
            delegated.decide(&acting, Operation::CallTool("t")),
            Decision::Deny(d) if *d.reason() == crate::policy::DenyReason::DpopRequired { delegated: true }
        ));
    }
}
