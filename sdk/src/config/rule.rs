//! A rule as written in `[policy]`: a scope expression string, or a table with `requires`,
//! `clients` and the conditions of [`ConditionsSpec`] (which is also `[policy.defaults]`).
//!
//! The keys a rule table accepts are `requires`, `clients` and the fields of
//! `ConditionsSpec`, read from its derived `Deserialize`: a condition added there is
//! accepted, and listed in the error for an unknown key, without another list to update.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::IntoDeserializer};

use super::names::names;
use crate::policy::{Conditions, Rule, scope_text};

/// Conditions on the delegation chain and token age, as written in a rule table or in
/// `[policy.defaults]`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionsSpec {
    user_only: Option<bool>,
    agents: Option<Vec<String>>,
    max_chain_depth: Option<usize>,
    actor_issuers: Option<Vec<String>>,
    forbid_actors: Option<Vec<String>>,
    max_token_age_secs: Option<u64>,
    max_auth_age_secs: Option<u64>,
    require_dpop: Option<RequireDpop>,
}

/// `require_dpop` as written: when a rule needs a DPoP-bound token.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RequireDpop {
    Always,
    Delegated,
    Never,
}

impl ConditionsSpec {
    /// The conditions, for [`Rule::with`] or the policy's defaults.
    pub(super) fn to_conditions(&self) -> Conditions {
        let mut c = Conditions::new();
        match self.user_only {
            Some(true) => c = c.user_only(),
            Some(false) => c = c.allow_delegation(),
            None => {}
        }
        if let Some(agents) = &self.agents {
            c = c.only_agents(agents.iter().cloned());
        }
        if let Some(depth) = self.max_chain_depth {
            c = c.max_chain_depth(depth);
        }
        if let Some(issuers) = &self.actor_issuers {
            c = c.actor_issuers(issuers.iter().cloned());
        }
        if let Some(actors) = &self.forbid_actors {
            c = c.forbid_actors(actors.iter().cloned());
        }
        if let Some(secs) = self.max_token_age_secs {
            c = c.max_token_age(Duration::from_secs(secs));
        }
        if let Some(secs) = self.max_auth_age_secs {
            c = c.max_auth_age(Duration::from_secs(secs));
        }
        match self.require_dpop {
            Some(RequireDpop::Always) => c = c.require_dpop(),
            Some(RequireDpop::Delegated) => c = c.require_dpop_when_delegated(),
            Some(RequireDpop::Never) => c = c.allow_bearer(),
            None => {}
        }
        c
    }
}

/// The keys of a rule table that are not conditions.
const RULE_KEYS: [&str; 2] = ["requires", "clients"];

/// Every key of a rule table: [`RULE_KEYS`], then the condition keys.
static TABLE_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    RULE_KEYS
        .into_iter()
        .chain(names::<ConditionsSpec>().iter().copied())
        .collect()
});

/// A rule as written: an expression string, or `{ requires = "...", clients = [...], ... }`.
pub(super) struct RuleSpec {
    requires: String,
    clients: Option<Vec<String>>,
    conditions: ConditionsSpec,
}

impl RuleSpec {
    /// The rule; the error is the expression's, for the caller to place.
    pub(super) fn to_rule(&self) -> Result<Rule, crate::policy::ExprError> {
        // Read as code reads the same text (`ScopeExpr::from`), with the error kept.
        let rule = Rule::new(scope_text(&self.requires)?).with(self.conditions.to_conditions());
        Ok(match &self.clients {
            Some(clients) => rule.only_clients(clients.iter().cloned()),
            None => rule,
        })
    }
}

impl<'de> Deserialize<'de> for RuleSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RuleVisitor)
    }
}

/// Reads a string or a table as a [`RuleSpec`].
struct RuleVisitor;

impl<'de> Visitor<'de> for RuleVisitor {
    type Value = RuleSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scope expression string (\"\" for any valid token), or a table { requires = \"...\", clients = [...], user_only = ..., agents = [...], ... }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RuleSpec, E> {
        Ok(RuleSpec {
            requires: v.to_owned(),
            clients: None,
            conditions: ConditionsSpec::default(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RuleSpec, A::Error> {
        let mut table = RuleTable {
            map,
            requires: None,
            clients: None,
        };
        // The conditions read every key but `requires` and `clients`, which `table` keeps.
        let conditions = ConditionsSpec::deserialize(MapAccessDeserializer::new(&mut table))?;
        Ok(RuleSpec {
            requires: table
                .requires
                .ok_or_else(|| de::Error::missing_field("requires"))?,
            clients: table.clients,
            conditions,
        })
    }
}

/// A rule table's entries, seen as the [`ConditionsSpec`] they hold: `requires` and
/// `clients` are read into their fields on the way; a key that is neither these nor a
/// condition is refused with every key a rule table accepts.
struct RuleTable<A> {
    map: A,
    requires: Option<String>,
    clients: Option<Vec<String>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for RuleTable<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            match key.as_str() {
                "requires" => self.requires = Some(self.map.next_value()?),
                "clients" => self.clients = Some(self.map.next_value()?),
                condition if names::<ConditionsSpec>().contains(&condition) => {
                    return seed.deserialize(key.into_deserializer()).map(Some);
                }
                other => return Err(de::Error::unknown_field(other, TABLE_KEYS.as_slice())),
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_table_accepts_its_own_keys_and_every_condition() {
        assert_eq!(
            *TABLE_KEYS,
            [
                "requires",
                "clients",
                "user_only",
                "agents",
                "max_chain_depth",
                "actor_issuers",
                "forbid_actors",
                "max_token_age_secs",
                "max_auth_age_secs",
                "require_dpop",
            ]
        );
    }
}
