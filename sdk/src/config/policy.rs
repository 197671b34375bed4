//! The `[policy]` section: the scope hierarchy, the rules per tool, resource, prompt, skill
//! and custom request, the `unlisted_*` rules and the defaults, as written in the file, and
//! the [`Policy`] they build.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigFileError, Locator};
use super::rule::{ConditionsSpec, RuleSpec};
use crate::policy::{Policy, PolicyBuilder, Rule};

/// Named rules in file order.
type Rules = IndexMap<String, Spanned<RuleSpec>>;

/// `[policy]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicySection {
    #[serde(default)]
    implies: IndexMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    tools: Rules,
    #[serde(default)]
    resources: Rules,
    #[serde(default)]
    prompts: Rules,
    #[serde(default)]
    skills: Rules,
    #[serde(default)]
    custom_requests: Rules,
    unlisted_tools: Option<Spanned<RuleSpec>>,
    unlisted_resources: Option<Spanned<RuleSpec>>,
    unlisted_prompts: Option<Spanned<RuleSpec>>,
    unlisted_skills: Option<Spanned<RuleSpec>>,
    max_token_lifetime_secs: Option<u64>,
    #[serde(default)]
    defaults: ConditionsSpec,
}

impl PolicySection {
    /// The policy.
    pub(super) fn build(self, at: &Locator<'_>) -> Result<Policy, ConfigFileError> {
        let mut b = Policy::builder().default_conditions(self.defaults.to_conditions());
        if let Some(secs) = self.max_token_lifetime_secs {
            b = b.max_token_lifetime(Duration::from_secs(secs));
        }
        for (scope, implied) in &self.implies {
            for s in std::iter::once(scope).chain(implied.get_ref()) {
                if !crate::policy::is_valid_scope(s) {
                    return Err(at.invalid(
                        format!("policy.implies.{scope:?}"),
                        implied,
                        format!("invalid scope {s:?}"),
                    ));
                }
            }
            b = b.implies(scope.clone(), implied.get_ref().clone());
        }
        let rule = |key: String, spec: &Spanned<RuleSpec>| -> Result<Rule, ConfigFileError> {
            spec.get_ref()
                .to_rule()
                .map_err(|e| at.invalid_because(key, spec, e))
        };
        type Add = fn(PolicyBuilder, String, Rule) -> PolicyBuilder;
        let sections: [(&str, &Rules, Add); 5] = [
            ("tools", &self.tools, |b, n, r| b.tool(n, r)),
            ("resources", &self.resources, |b, n, r| b.resource(n, r)),
            ("prompts", &self.prompts, |b, n, r| b.prompt(n, r)),
            ("skills", &self.skills, |b, n, r| b.skill(n, r)),
            ("custom_requests", &self.custom_requests, |b, n, r| {
                b.custom_request(n, r)
            }),
        ];
        for (section, rules, add) in sections {
            for (name, spec) in rules {
                let key = format!("policy.{section}.{name:?}");
                if section == "resources" && crate::policy::is_valid_template(name).is_none() {
                    return Err(at.invalid(
                        key,
                        spec,
                        "braces do not pair up or a variable is unnamed",
                    ));
                }
                b = add(b, name.clone(), rule(key, spec)?);
            }
        }
        type AddUnlisted = fn(PolicyBuilder, Rule) -> PolicyBuilder;
        let unlisted: [(&str, &Option<Spanned<RuleSpec>>, AddUnlisted); 4] = [
            ("unlisted_tools", &self.unlisted_tools, |b, r| {
                b.unlisted_tools(r)
            }),
            ("unlisted_resources", &self.unlisted_resources, |b, r| {
                b.unlisted_resources(r)
            }),
            ("unlisted_prompts", &self.unlisted_prompts, |b, r| {
                b.unlisted_prompts(r)
            }),
            ("unlisted_skills", &self.unlisted_skills, |b, r| {
                b.unlisted_skills(r)
            }),
        ];
        for (key, spec, add) in unlisted {
            if let Some(spec) = spec {
                b = add(b, rule(format!("policy.{key}"), spec)?);
            }
        }
        Ok(b.build()?)
    }
}
