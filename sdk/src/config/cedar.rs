//! The `[cedar]` section: Cedar policy files (feature `cedar`) and the token claims handed
//! to them.
//!
//! ```toml
//! [cedar]
//! policies = ["notes.cedar"]            # or one path; relative to the configuration file
//! claims = { tenant = "string", groups = "string_set" }
//! ```
//!
//! The files are parsed when the configuration loads (a syntax error names the file, line
//! and column); they are checked against the server's tools when it starts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigFileError, Locator};

/// The section as written.
#[derive(Deserialize)]
#[cfg_attr(not(feature = "cedar"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub(super) struct CedarSection {
    policies: Spanned<Paths>,
    #[serde(default)]
    claims: BTreeMap<String, Spanned<String>>,
}

/// One path or several.
#[derive(Deserialize)]
#[cfg_attr(not(feature = "cedar"), allow(dead_code))]
#[serde(untagged)]
enum Paths {
    One(String),
    Many(Vec<String>),
}

impl CedarSection {
    /// The policies of the files, with the claims chosen; paths are relative to `base`.
    #[cfg(feature = "cedar")]
    pub(super) fn build(
        self,
        at: &Locator<'_>,
        base: &Path,
    ) -> Result<crate::policy::cedar::CedarPolicies, ConfigFileError> {
        use crate::policy::cedar::{CedarPolicies, ClaimType};

        let paths = match self.policies.get_ref() {
            Paths::One(path) => vec![path.clone()],
            Paths::Many(paths) => paths.clone(),
        };
        if paths.is_empty() {
            return Err(at.invalid(
                "cedar.policies",
                &self.policies,
                "name at least one Cedar policy file, or remove the [cedar] section",
            ));
        }
        let mut policies = CedarPolicies::default();
        for path in paths {
            let invalid = |e| at.invalid_because("cedar.policies", &self.policies, e);
            let more = CedarPolicies::from_file(base.join(&path)).map_err(invalid)?;
            policies = policies.and(more).map_err(invalid)?;
        }
        for (name, ty) in self.claims {
            let claim_type = match ty.get_ref().as_str() {
                "string" => ClaimType::String,
                "long" => ClaimType::Long,
                "bool" => ClaimType::Bool,
                "string_set" => ClaimType::StringSet,
                _ => {
                    return Err(at.invalid(
                        format!("cedar.claims.{name}"),
                        &ty,
                        "a claim's type is \"string\", \"long\", \"bool\" or \"string_set\"",
                    ));
                }
            };
            policies = policies.claim(name, claim_type);
        }
        Ok(policies)
    }

    /// Without the feature, the section cannot be used: say so rather than ignore it.
    #[cfg(not(feature = "cedar"))]
    pub(super) fn build(self, at: &Locator<'_>, _base: &Path) -> Result<(), ConfigFileError> {
        Err(at.invalid(
            "cedar",
            &self.policies,
            "Cedar policies need the crate feature `cedar` (rmcp-authz = { features = [\"cedar\"] })",
        ))
    }
}
