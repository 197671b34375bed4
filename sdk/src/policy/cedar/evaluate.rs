//! A decision of the [`Cedar`] stage: the principal's entity, the operation's resource
//! and context, Cedar's answer, and what it means here ([`Verdict`]): a `forbid` that
//! applies (or fails to evaluate) denies; a `permit` applies only when its `@scopes` are
//! held, and one that would apply but for them asks for those scopes (step-up).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RequestBuilder, RestrictedExpression,
};
use serde_json::{Map, Value};

use super::{Cedar, ClaimType, Stage};
use crate::policy::hierarchy::wildcard_prefix;
use crate::policy::{Decision, Denial, DenyReason, Operation};
use crate::principal::Principal;

/// What the Cedar stage decided, and the policies that determined it: the permits that
/// allowed, the forbids that denied, the permit whose scopes a step-up would bring, or
/// none when no permit applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// The determining policies' ids.
    pub policies: Vec<String>,
}

impl Verdict {
    fn deny(operation: Operation<'_>, reason: DenyReason, policies: Vec<String>) -> Verdict {
        Verdict {
            decision: Decision::Deny(
                Denial::new(operation.to_string(), reason).by_policies(policies.clone()),
            ),
            policies,
        }
    }
}

/// What one operation is decided on.
struct Target<'a> {
    action: &'a EntityUid,
    /// Whether the context needs `now` and `token_age`.
    times: bool,
    policies: &'a PolicySet,
    resource: Resource<'a>,
}

enum Resource<'a> {
    /// A governed tool's entity, and its index.
    Built(&'a Entity, usize),
    Named {
        ty: &'a EntityTypeName,
        attribute: &'static str,
        id: &'a str,
    },
}

impl Cedar {
    /// Whether some policy applies to `operation` (the others are not the stage's to
    /// decide, and cost nothing).
    pub fn governs(&self, operation: Operation<'_>) -> bool {
        let stage = &self.inner;
        match operation {
            Operation::CallTool(name) => stage.every_tool || stage.tools.contains_key(name),
            Operation::ReadResource(_) => stage.resources.is_some(),
            Operation::GetPrompt(_) => stage.prompts.is_some(),
            _ => false,
        }
    }

    /// Decides `operation` for `principal`, who holds `scopes` (the token's and those the
    /// scope hierarchy implies), with a `tools/call`'s `arguments`, at `now` (seconds
    /// since the epoch). `None` when no policy applies to the operation.
    pub fn decide(
        &self,
        principal: &Principal,
        scopes: &[String],
        operation: Operation<'_>,
        arguments: Option<&Map<String, Value>>,
        now: i64,
    ) -> Option<Verdict> {
        let target = match self.target(operation)? {
            Ok(target) => target,
            Err(verdict) => return Some(verdict),
        };
        let arguments = match operation {
            Operation::CallTool(name) => {
                // `target` found the tool.
                let governed = self.inner.tools.get(name)?;
                match governed.args.convert(arguments) {
                    Ok(converted) => Some(converted),
                    Err(e) => {
                        let reason = DenyReason::InvalidArguments {
                            problem: e.to_string(),
                        };
                        return Some(Verdict::deny(operation, reason, Vec::new()));
                    }
                }
            }
            _ => None,
        };
        let answer = self
            .prepare(principal, scopes, &target, arguments, now)
            .and_then(|asked| {
                let request = Request::new(
                    asked.principal,
                    asked.action,
                    asked.resource,
                    asked.context,
                    None,
                )
                .map_err(|e| e.to_string())?;
                Ok(self
                    .inner
                    .authorizer
                    .is_authorized(&request, target.policies, &asked.entities))
            });
        Some(match answer {
            Ok(response) => self.interpret(operation, scopes, &response),
            Err(problem) => Verdict::deny(
                operation,
                DenyReason::InvalidArguments { problem },
                Vec::new(),
            ),
        })
    }

    /// Whether `principal` could be allowed `operation` with some arguments (or after a
    /// step-up for a `permit`'s `@scopes`): a tool is left out of lists only when the
    /// call is denied whatever the arguments. Decided by Cedar's partial evaluation with
    /// `context.arguments` unknown.
    pub fn may_allow(
        &self,
        principal: &Principal,
        scopes: &[String],
        operation: Operation<'_>,
        now: i64,
    ) -> bool {
        let Some(target) = self.target(operation) else {
            return true;
        };
        let Ok(target) = target else {
            return false;
        };
        let unknown = matches!(operation, Operation::CallTool(_))
            .then(|| RestrictedExpression::new_unknown("arguments"));
        let Ok(asked) = self.prepare(principal, scopes, &target, unknown, now) else {
            return false;
        };
        let request = RequestBuilder::default()
            .principal(asked.principal)
            .action(asked.action)
            .resource(asked.resource)
            .context(asked.context)
            .build();
        let partial =
            self.inner
                .authorizer
                .is_authorized_partial(&request, target.policies, &asked.entities);
        partial.decision() != Some(CedarDecision::Deny)
    }

    /// The policies and resource of `operation`: `None` when no policy applies, a denial
    /// for a tool the policies were not checked against.
    fn target<'a>(&'a self, operation: Operation<'a>) -> Option<Result<Target<'a>, Verdict>> {
        let stage: &'a Stage = &self.inner;
        Some(Ok(match operation {
            Operation::CallTool(name) => match stage.tools.get(name) {
                Some(governed) => Target {
                    action: &stage.names.call_tool,
                    times: governed.times,
                    policies: &governed.policies,
                    resource: Resource::Built(&governed.entity, governed.index),
                },
                None if stage.every_tool => {
                    return Some(Err(Verdict::deny(
                        operation,
                        DenyReason::PolicyUnchecked,
                        Vec::new(),
                    )));
                }
                None => return None,
            },
            Operation::ReadResource(uri) => Target {
                action: &stage.names.read_resource,
                times: true,
                policies: stage.resources.as_ref()?,
                resource: Resource::Named {
                    ty: &stage.names.resource,
                    attribute: "uri",
                    id: uri,
                },
            },
            Operation::GetPrompt(name) => Target {
                action: &stage.names.get_prompt,
                times: true,
                policies: stage.prompts.as_ref()?,
                resource: Resource::Named {
                    ty: &stage.names.prompt,
                    attribute: "name",
                    id: name,
                },
            },
            _ => return None,
        }))
    }

    /// What Cedar is asked: `arguments` is the context's `arguments` (absent for other
    /// methods).
    fn prepare(
        &self,
        principal: &Principal,
        scopes: &[String],
        target: &Target<'_>,
        arguments: Option<RestrictedExpression>,
        now: i64,
    ) -> Result<Asked, String> {
        // Made once per token (and kept in its principal), unless asked with other scopes.
        let kept = principal.derived(self.inner.id, || {
            self.principal_entity(principal, scopes)
                .map(|entity| Kept::new(scopes, entity, self.inner.tools.len()))
        })?;
        let (principal_uid, resource_uid, entities) = match &target.resource {
            // A governed tool: the two entities, made once per token and tool.
            Resource::Built(tool, index) if kept.scopes == scopes => {
                let entities = kept.entities(*index, tool)?;
                (kept.agent.uid(), tool.uid(), entities)
            }
            Resource::Built(tool, _) => {
                let agent = self.principal_entity(principal, scopes)?;
                let uids = (agent.uid(), tool.uid());
                (
                    uids.0,
                    uids.1,
                    Arc::new(entities_of(agent, (*tool).clone())?),
                )
            }
            Resource::Named { ty, attribute, id } => {
                let attributes = [(
                    (*attribute).to_owned(),
                    RestrictedExpression::new_string((*id).to_owned()),
                )];
                let named = Entity::new(
                    EntityUid::from_type_name_and_id((*ty).clone(), EntityId::new(id)),
                    attributes.into_iter().collect(),
                    HashSet::new(),
                )
                .map_err(|e| e.to_string())?;
                let agent = if kept.scopes == scopes {
                    kept.agent.clone()
                } else {
                    self.principal_entity(principal, scopes)?
                };
                let uids = (agent.uid(), named.uid());
                (uids.0, uids.1, Arc::new(entities_of(agent, named)?))
            }
        };
        let age = principal
            .issued_at()
            .map_or(now, |iat| now.saturating_sub(iat))
            .max(0);
        let mut context = Vec::with_capacity(3);
        if target.times {
            context.push(("now".to_owned(), RestrictedExpression::new_long(now)));
            context.push(("token_age".to_owned(), RestrictedExpression::new_long(age)));
        }
        if let Some(arguments) = arguments {
            context.push(("arguments".to_owned(), arguments));
        }
        let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
        Ok(Asked {
            principal: principal_uid,
            action: target.action.clone(),
            resource: resource_uid,
            context,
            entities,
        })
    }

    /// What Cedar's answer means here.
    fn interpret(
        &self,
        operation: Operation<'_>,
        scopes: &[String],
        response: &cedar_policy::Response,
    ) -> Verdict {
        let stage = &self.inner;
        let is_forbid =
            |id: &cedar_policy::PolicyId| stage.policies.get(id).is_some_and(|i| i.forbid);
        let ids = |ids: Vec<&cedar_policy::PolicyId>| -> Vec<String> {
            let mut ids: Vec<String> = ids.into_iter().map(ToString::to_string).collect();
            ids.sort_unstable();
            ids
        };
        // A forbid that could not be evaluated denies: a policy that exists to refuse
        // never lets a call through by failing.
        let failed: Vec<&cedar_policy::PolicyId> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id(),
            })
            .filter(|id| is_forbid(id))
            .collect();
        let reasons: Vec<&cedar_policy::PolicyId> = response.diagnostics().reason().collect();
        if response.decision() == CedarDecision::Deny || !failed.is_empty() {
            let mut forbids: Vec<&cedar_policy::PolicyId> =
                reasons.into_iter().filter(|id| is_forbid(id)).collect();
            forbids.extend(failed);
            let policies = ids(forbids);
            let reason = if policies.is_empty() {
                DenyReason::NotPermitted
            } else {
                DenyReason::Forbidden {
                    policies: policies.clone(),
                }
            };
            return Verdict::deny(operation, reason, policies);
        }
        // Held directly, or under a wildcard the token holds (`notes:*` holds
        // `notes:share`), for scopes the scope rules never mention.
        let held = |s: &String| {
            scopes
                .iter()
                .any(|h| h == s || wildcard_prefix(h).is_some_and(|p| s.starts_with(p)))
        };
        let scopes_of =
            |id: &cedar_policy::PolicyId| stage.policies.get(id).and_then(|i| i.scopes.as_deref());
        let unlocked: Vec<&cedar_policy::PolicyId> = reasons
            .iter()
            .copied()
            .filter(|id| scopes_of(id).is_none_or(|s| s.iter().all(held)))
            .collect();
        if !unlocked.is_empty() {
            return Verdict {
                decision: Decision::Allow,
                policies: ids(unlocked),
            };
        }
        // Every permit that applies needs scopes the caller lacks: the one missing the
        // fewest is the step-up to ask for.
        let best = reasons
            .iter()
            .copied()
            .filter_map(|id| scopes_of(id).map(|s| (id, s)))
            .min_by_key(|(id, s)| (s.iter().filter(|x| !held(x)).count(), id.to_string()));
        match best {
            Some((id, required)) => Verdict::deny(
                operation,
                DenyReason::InsufficientScope {
                    required: required.to_vec(),
                    missing: required.iter().filter(|s| !held(s)).cloned().collect(),
                },
                vec![id.to_string()],
            ),
            None => Verdict::deny(operation, DenyReason::NotPermitted, Vec::new()),
        }
    }

    /// The principal's entity: `Agent::"<agent>"` and its attributes.
    fn principal_entity(&self, principal: &Principal, scopes: &[String]) -> Result<Entity, String> {
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        let strings = |items: &mut dyn Iterator<Item = &str>| {
            RestrictedExpression::new_set(items.map(string).collect::<Vec<_>>())
        };
        let chain = principal.delegation_chain();
        let mut attributes = vec![
            ("issuer".to_owned(), string(principal.issuer())),
            (
                "delegated".to_owned(),
                RestrictedExpression::new_bool(!chain.is_empty()),
            ),
            (
                "depth".to_owned(),
                RestrictedExpression::new_long(i64::try_from(chain.len()).unwrap_or(i64::MAX)),
            ),
            (
                "chain".to_owned(),
                strings(&mut chain.iter().map(|a| a.id())),
            ),
            (
                "scopes".to_owned(),
                strings(&mut scopes.iter().map(String::as_str)),
            ),
        ];
        if let Some(user) = principal.subject() {
            attributes.push(("user".to_owned(), string(user)));
        }
        if let Some(client) = principal.client_id() {
            attributes.push(("client".to_owned(), string(client)));
        }
        if let Some(origin) = chain.last() {
            attributes.push(("origin".to_owned(), string(origin.id())));
        }
        let claims: Vec<(String, RestrictedExpression)> = self
            .inner
            .claims
            .iter()
            .filter_map(|(name, ty)| {
                Some((name.clone(), claim_value(principal.claim(name)?, *ty)?))
            })
            .collect();
        attributes.push((
            "claims".to_owned(),
            RestrictedExpression::new_record(claims).map_err(|e| e.to_string())?,
        ));
        Entity::new(
            EntityUid::from_type_name_and_id(
                self.inner.names.agent.clone(),
                EntityId::new(principal.agent().unwrap_or_default()),
            ),
            attributes.into_iter().collect(),
            HashSet::<EntityUid>::new(),
        )
        .map_err(|e| e.to_string())
    }
}

/// The parts of a request to Cedar.
struct Asked {
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: Context,
    entities: Arc<Entities>,
}

/// What a principal keeps for this stage (see [`Principal::derived`]): its entity, made
/// with the scopes it held, and, for each governed tool it has called, the entities Cedar
/// is handed (its own and the tool's; computing their hierarchy costs more than an
/// evaluation's share), made at its first call of the tool.
struct Kept {
    scopes: Vec<String>,
    agent: Entity,
    per_tool: Box<[OnceLock<Arc<Entities>>]>,
}

impl Kept {
    fn new(scopes: &[String], agent: Entity, tools: usize) -> Kept {
        Kept {
            scopes: scopes.to_vec(),
            agent,
            per_tool: (0..tools).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The entities for the governed tool at `index`, `tool`.
    fn entities(&self, index: usize, tool: &Entity) -> Result<Arc<Entities>, String> {
        let Some(cell) = self.per_tool.get(index) else {
            return entities_of(self.agent.clone(), tool.clone()).map(Arc::new);
        };
        if let Some(entities) = cell.get() {
            return Ok(Arc::clone(entities));
        }
        let made = Arc::new(entities_of(self.agent.clone(), tool.clone())?);
        Ok(Arc::clone(cell.get_or_init(|| made)))
    }
}

/// The entities of one request: the principal's and the resource's.
fn entities_of(agent: Entity, resource: Entity) -> Result<Entities, String> {
    Entities::from_entities([agent, resource], None).map_err(|e| e.to_string())
}

/// A claim's value as `ty`, `None` when it has another type.
fn claim_value(value: &Value, ty: ClaimType) -> Option<RestrictedExpression> {
    Some(match (ty, value) {
        (ClaimType::String, Value::String(s)) => RestrictedExpression::new_string(s.clone()),
        (ClaimType::Long, Value::Number(n)) => RestrictedExpression::new_long(n.as_i64()?),
        (ClaimType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
        (ClaimType::StringSet, Value::String(s)) => {
            RestrictedExpression::new_set([RestrictedExpression::new_string(s.clone())])
        }
        (ClaimType::StringSet, Value::Array(items)) => RestrictedExpression::new_set(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(|s| RestrictedExpression::new_string(s.to_owned()))
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        _ => return None,
    })
}
