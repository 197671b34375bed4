//! What the `rmcp-authz` command-line tool shows of a policy: every rule, the resource
//! templates that may shadow one another, the scopes a scope implies. Crate-private: the
//! tool is the library's `cli` module.

use super::{Policy, Rule, template};

impl Policy {
    /// Every rule, as (kind, name, rule), sorted by kind then name. Kinds are `tool`,
    /// `resource`, `prompt`, `skill`, `custom request`, and `unlisted tools` /
    /// `unlisted resources` / `unlisted prompts` / `unlisted skills` (with an empty name).
    /// For `rmcp-authz policy check` and `policy show`.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn rules(&self) -> Vec<(&'static str, &str, &Rule)> {
        let i = &self.inner;
        let mut out: Vec<(&'static str, &str, &Rule)> = Vec::new();
        for (kind, map) in [
            ("tool", &i.tools),
            ("resource", &i.resources),
            ("prompt", &i.prompts),
            ("skill", &i.skills),
            ("custom request", &i.custom),
        ] {
            let mut named: Vec<_> = map
                .iter()
                .map(|(n, e)| (kind, n.as_str(), &e.rule))
                .collect();
            named.sort_by(|a, b| a.1.cmp(b.1));
            out.extend(named);
        }
        for (kind, rule) in [
            ("unlisted tools", &i.unlisted_tools),
            ("unlisted resources", &i.unlisted_resources),
            ("unlisted prompts", &i.unlisted_prompts),
            ("unlisted skills", &i.unlisted_skills),
        ] {
            if let Some(entry) = rule {
                out.push((kind, "", &entry.rule));
            }
        }
        out
    }

    /// The resource templates (with variables), in the order they are tried, each with
    /// the templates before it that also match a sample expansion of it (and so may shadow
    /// it: a URI is decided by the first template that matches). For `rmcp-authz policy check`.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn shadowed_templates(&self) -> Vec<(&str, Vec<&str>)> {
        let templates = &self.inner.resource_templates;
        templates
            .iter()
            .enumerate()
            .map(|(i, (text, _, _))| {
                let sample = template::sample_expansion(text);
                let before = templates[..i]
                    .iter()
                    .filter(|(_, t, _)| t.matches(&sample))
                    .map(|(text, _, _)| text.as_str())
                    .collect();
                (text.as_str(), before)
            })
            .collect()
    }

    /// The scopes `scope` implies under the declared hierarchy (transitively, itself
    /// excluded). For `rmcp-authz policy show`.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn implied_by(&self, scope: &str) -> &[String] {
        self.inner.hierarchy.implied_by(scope)
    }
}
