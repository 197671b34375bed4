//! [`PolicyBuilder`]: rules in, a compiled [`Policy`] out, or the
//! [`PolicyError`](crate::policy::PolicyError) that says which rule is wrong.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rmcp::model::Tool;

use super::*;
use crate::clock::{Clock, SystemClock};

/// Builds a [`Policy`]. Errors are collected and reported by [`PolicyBuilder::build`].
#[derive(Debug, Default)]
#[must_use]
pub struct PolicyBuilder {
    edges: HashMap<String, Vec<String>>,
    tools: Vec<(String, Rule)>,
    prompts: Vec<(String, Rule)>,
    skills: Vec<(String, Rule)>,
    custom: Vec<(String, Rule)>,
    resources: Vec<(String, Rule)>,
    unlisted_tools: Option<Rule>,
    unlisted_resources: Option<Rule>,
    unlisted_prompts: Option<Rule>,
    unlisted_skills: Option<Rule>,
    default_conditions: Conditions,
    max_token_lifetime: Option<std::time::Duration>,
    clock: Option<Arc<dyn Clock>>,
    errors: Vec<PolicyError>,
}

impl PolicyBuilder {
    /// Declares that holding `scope` also grants each of `implied` (transitively).
    pub fn implies<S: Into<String>>(
        mut self,
        scope: impl Into<String>,
        implied: impl IntoIterator<Item = S>,
    ) -> Self {
        self.edges
            .entry(scope.into())
            .or_default()
            .extend(implied.into_iter().map(Into::into));
        self
    }

    /// Conditions on the delegation chain and token age for every rule; a rule's own
    /// [`Conditions`] override them setting by setting.
    pub fn default_conditions(mut self, conditions: Conditions) -> Self {
        self.default_conditions = conditions;
        self
    }

    /// Refuses tokens whose lifetime (`exp - iat`) is longer than `max` (and tokens
    /// without `iat`), for every operation with a rule: long-lived bearer tokens are the
    /// ones that leak and stay useful. An `iat` in the future beyond the leeway of the
    /// verifier that checked the token counts as now, so a token dated ahead cannot make
    /// its lifetime look short.
    pub fn max_token_lifetime(mut self, max: std::time::Duration) -> Self {
        self.max_token_lifetime = Some(max);
        self
    }

    /// The clock every decision reads (freshness, lifetime, and on stdio the token's
    /// expiry on every call). Default: [`SystemClock`]. Tests pass a
    /// [`ManualClock`](crate::ManualClock), shared through an `Arc` with the verifier's.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The rule for a tool.
    pub fn tool(mut self, name: impl Into<String>, rule: impl Into<Rule>) -> Self {
        self.tools.push((name.into(), rule.into()));
        self
    }

    /// Rules from tools' metadata: each tool whose `_meta` has [`TOOL_META_KEY`] (see
    /// [`tool_meta`]) gets that rule. Pass `MyServer::tool_router().list_all()`.
    pub fn tools_from_meta(mut self, tools: impl IntoIterator<Item = Tool>) -> Self {
        for tool in tools {
            let Some(value) = tool.meta.as_ref().and_then(|m| m.0.get(TOOL_META_KEY)) else {
                continue;
            };
            match value.as_str() {
                Some(text) => match ScopeExpr::parse(text) {
                    Ok(expr) => self.tools.push((tool.name.to_string(), Rule::new(expr))),
                    Err(source) => self.errors.push(PolicyError::Expr {
                        what: format!("tool {:?} (_meta)", tool.name),
                        source,
                    }),
                },
                None => self.errors.push(PolicyError::BadMeta {
                    tool: tool.name.to_string(),
                }),
            }
        }
        self
    }

    /// The rule for a resource URI, or for every URI a URI template (`notes://{id}`)
    /// matches. Exact URIs win over templates; templates are tried in the order given.
    pub fn resource(mut self, uri_or_template: impl Into<String>, rule: impl Into<Rule>) -> Self {
        self.resources.push((uri_or_template.into(), rule.into()));
        self
    }

    /// The rule for a prompt.
    pub fn prompt(mut self, name: impl Into<String>, rule: impl Into<Rule>) -> Self {
        self.prompts.push((name.into(), rule.into()));
        self
    }

    /// The rule for a skill (`skills/get`; `skills/list` shows only the skills the caller
    /// may get). Skills without a rule are denied.
    pub fn skill(mut self, name: impl Into<String>, rule: impl Into<Rule>) -> Self {
        self.skills.push((name.into(), rule.into()));
        self
    }

    /// The rule for a custom request method (custom requests are denied without one).
    pub fn custom_request(mut self, method: impl Into<String>, rule: impl Into<Rule>) -> Self {
        self.custom.push((method.into(), rule.into()));
        self
    }

    /// The rule for tools without a rule of their own (default: denied).
    pub fn unlisted_tools(mut self, rule: impl Into<Rule>) -> Self {
        self.unlisted_tools = Some(rule.into());
        self
    }

    /// The rule for resources no rule matches (default: denied).
    pub fn unlisted_resources(mut self, rule: impl Into<Rule>) -> Self {
        self.unlisted_resources = Some(rule.into());
        self
    }

    /// The rule for prompts without a rule of their own (default: denied).
    pub fn unlisted_prompts(mut self, rule: impl Into<Rule>) -> Self {
        self.unlisted_prompts = Some(rule.into());
        self
    }

    /// The rule for skills without a rule of their own (default: denied).
    pub fn unlisted_skills(mut self, rule: impl Into<Rule>) -> Self {
        self.unlisted_skills = Some(rule.into());
        self
    }

    /// Checks every rule and builds the policy.
    ///
    /// # Errors
    /// The first [`PolicyError`]: an invalid scope or expression, a duplicate rule, a
    /// malformed URI template, bad tool metadata.
    pub fn build(mut self) -> Result<Policy, PolicyError> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        for (scope, implied) in &self.edges {
            for s in std::iter::once(scope).chain(implied) {
                if !valid_scope(s) {
                    return Err(PolicyError::Expr {
                        what: format!("hierarchy entry {scope:?}"),
                        source: ExprError::InvalidScope { scope: s.clone() },
                    });
                }
            }
        }
        let mut mentioned: Vec<String> = self
            .edges
            .iter()
            .flat_map(|(k, v)| std::iter::once(k).chain(v))
            .cloned()
            .collect();
        let tools = keyed("tool", self.tools, &mut mentioned)?;
        let prompts = keyed("prompt", self.prompts, &mut mentioned)?;
        let skills = keyed("skill", self.skills, &mut mentioned)?;
        let custom = keyed("custom request", self.custom, &mut mentioned)?;
        let mut resources = Vec::new();
        let mut resource_templates = Vec::new();
        let mut seen = Vec::new();
        for (uri, rule) in self.resources {
            let what = format!("resource {uri:?}");
            check_rule(&what, &rule, &mut mentioned)?;
            if seen.contains(&uri) {
                return Err(PolicyError::DuplicateRule { what });
            }
            seen.push(uri.clone());
            let template = UriTemplate::parse(&uri).ok_or_else(|| PolicyError::BadTemplate {
                template: uri.clone(),
            })?;
            if template.has_variables() {
                resource_templates.push((uri.clone(), template, rule.clone()));
            }
            // Templates are also kept by their text, for resources/templates/list.
            resources.push((uri, rule));
        }
        for (what, rule) in [
            ("unlisted tools", &self.unlisted_tools),
            ("unlisted resources", &self.unlisted_resources),
            ("unlisted prompts", &self.unlisted_prompts),
            ("unlisted skills", &self.unlisted_skills),
        ] {
            if let Some(rule) = rule {
                check_rule(what, rule, &mut mentioned)?;
            }
        }
        let hierarchy = Hierarchy::new(&self.edges);
        let scopes = ScopeTable::new(mentioned.iter().map(String::as_str), &hierarchy);
        let defaults = &self.default_conditions;
        let entry = |rule: Rule| Entry::new(rule, &scopes, defaults);
        let entries = |rules: Vec<(String, Rule)>| -> HashMap<String, Entry> {
            rules.into_iter().map(|(k, r)| (k, entry(r))).collect()
        };
        let tools = entries(tools);
        let prompts = entries(prompts);
        let skills = entries(skills);
        let custom = entries(custom);
        let resources = entries(resources);
        let resource_templates = resource_templates
            .into_iter()
            .map(|(text, template, rule)| (text, template, entry(rule)))
            .collect();
        let unlisted_tools = self.unlisted_tools.map(entry);
        let unlisted_resources = self.unlisted_resources.map(entry);
        let unlisted_prompts = self.unlisted_prompts.map(entry);
        let unlisted_skills = self.unlisted_skills.map(entry);
        mentioned.retain(|s| s != "offline_access");
        mentioned.sort();
        mentioned.dedup();
        Ok(Policy {
            inner: Arc::new(Inner {
                id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
                hierarchy,
                scopes,
                tools,
                prompts,
                custom,
                resources,
                resource_templates,
                unlisted_tools,
                unlisted_resources,
                unlisted_prompts,
                skills,
                unlisted_skills,
                scopes_supported: mentioned,
                max_token_lifetime: self.max_token_lifetime,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            }),
        })
    }
}

fn check_rule(what: &str, rule: &Rule, mentioned: &mut Vec<String>) -> Result<(), PolicyError> {
    rule.requirement
        .validate()
        .map_err(|source| PolicyError::Expr {
            what: what.to_owned(),
            source,
        })?;
    mentioned.extend(rule.requirement.scopes().into_iter().map(str::to_owned));
    Ok(())
}

/// Checks `rules` (one per name) and collects the scopes they mention.
fn keyed(
    kind: &str,
    rules: Vec<(String, Rule)>,
    mentioned: &mut Vec<String>,
) -> Result<Vec<(String, Rule)>, PolicyError> {
    let mut names = std::collections::HashSet::with_capacity(rules.len());
    for (name, rule) in &rules {
        let what = format!("{kind} {name:?}");
        check_rule(&what, rule, mentioned)?;
        if !names.insert(name.as_str()) {
            return Err(PolicyError::DuplicateRule { what });
        }
    }
    Ok(rules)
}
