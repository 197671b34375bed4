//! Configuration files (feature `config`): the verifier, the policy and the audit log from
//! TOML.
//!
//! One call, [`Authz::from_config_file`], builds the same [`Authz`] the builders would.
//! [`Config`] is the file loaded but not yet started, to inspect it ([`Config::verifier`],
//! [`Config::policy`], [`Config::audit`]) or to finish it with options the file does not set
//! ([`Config::into_parts`] and [`AuthzBuilder`](crate::AuthzBuilder)). Unknown keys and bad
//! values are errors that name the key and the line. Paths are relative to the file's
//! directory; resource templates are tried in the order written. Secrets are never written
//! in the file: an HMAC secret is read from the environment variable the file names.
//! `docs/config.md` and `docs/rmcp-authz.example.toml` document every key.
//!
//! ```
//! use rmcp_authz::config::Config;
//! # let dir = std::env::temp_dir().join(format!("rmcp-authz-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let issuer = rmcp_authz::dev::DevIssuer::new("https://auth.example.com")?;
//! # std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string())?;
//! let text = r#"
//!     [verifier]
//!     issuer = "https://auth.example.com"
//!     audience = "https://mcp.example.com/mcp"
//!     jwks_file = "jwks.json"
//!
//!     [policy]
//!     implies = { "notes:write" = ["notes:read"] }
//!
//!     [policy.tools]
//!     list_notes = "notes:read"
//!     purge = { requires = "notes:admin ops:purge", clients = ["admin-console"] }
//! "#;
//! let config = Config::from_toml(text, &dir)?;
//! assert_eq!(config.policy().tool_names().collect::<Vec<_>>(), ["list_notes", "purge"]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each section has a file of its own here: its serde struct, as written, and the checks
//! that turn it into what it builds.

mod audit;
mod cedar;
mod dpop;
mod error;
mod names;
mod policy;
mod postgres;
mod rule;
mod verifier;

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::authz::Authz;
use crate::policy::Policy;
use crate::token::JwtVerifier;

pub use audit::{AuditSettings, DEFAULT_ROTATE_BYTES};
pub use error::ConfigFileError;

use audit::AuditSection;
use error::Locator;
use policy::PolicySection;
use verifier::VerifierSection;

/// A whole file as written: its sections.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    verifier: VerifierSection,
    #[serde(default)]
    policy: PolicySection,
    audit: Option<Spanned<AuditSection>>,
    cedar: Option<cedar::CedarSection>,
    revocation: Option<postgres::RevocationSection>,
    dpop: Option<Spanned<dpop::DpopSection>>,
}

/// A loaded configuration: a verifier, a policy, and the audit settings. Nothing is
/// started: the audit log is opened by [`Authz::from_config_file`] or
/// [`AuditSettings::start`].
#[derive(Debug)]
pub struct Config {
    verifier: JwtVerifier,
    policy: Policy,
    audit: Option<AuditSettings>,
    #[cfg(feature = "cedar")]
    cedar: Option<crate::policy::cedar::CedarPolicies>,
    #[cfg(feature = "postgres")]
    revocation: Option<postgres::RevocationSettings>,
    #[cfg(feature = "dpop")]
    dpop: Option<dpop::DpopSettings>,
}

impl Config {
    /// Loads a configuration file, to inspect it or finish it in code; to serve it as it
    /// is, use [`Authz::from_config_file`].
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the key and line at fault.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base).map_err(|e| match e {
            ConfigFileError::Syntax { file: None, source } => ConfigFileError::Syntax {
                file: Some(path.to_owned()),
                source,
            },
            other => other,
        })
    }

    /// Loads configuration text; relative paths are resolved against `base_dir`.
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the key and line at fault.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigFileError> {
        let file: File = toml::from_str(text)
            .map_err(|source| ConfigFileError::Syntax { file: None, source })?;
        let at = Locator::new(text);
        let verifier = file.verifier.build(&at, base_dir)?;
        let policy = file.policy.build(&at)?;
        let audit = file
            .audit
            .map(|a| AuditSection::validate(a, &at, base_dir))
            .transpose()?;
        #[cfg_attr(not(feature = "cedar"), allow(unused_variables))]
        let cedar = file.cedar.map(|c| c.build(&at, base_dir)).transpose()?;
        #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
        let revocation = file.revocation.map(|r| r.build(&at)).transpose()?;
        #[cfg_attr(not(feature = "dpop"), allow(unused_variables))]
        let dpop = file
            .dpop
            .map(|d| dpop::DpopSection::build(d, &at))
            .transpose()?;
        Ok(Config {
            verifier,
            policy,
            audit,
            #[cfg(feature = "cedar")]
            cedar,
            #[cfg(feature = "postgres")]
            revocation,
            #[cfg(feature = "dpop")]
            dpop,
        })
    }

    /// The verifier.
    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The `[cedar]` policies, if the file has the section (feature `cedar`).
    #[cfg(feature = "cedar")]
    pub fn cedar(&self) -> Option<&crate::policy::cedar::CedarPolicies> {
        self.cedar.as_ref()
    }

    /// The `[audit]` settings, if the file has the section.
    pub fn audit(&self) -> Option<&AuditSettings> {
        self.audit.as_ref()
    }

    /// The verifier and the policy, for [`Authz::builder`]. The `[audit]`, `[cedar]`,
    /// `[revocation]` and `[dpop]` sections are left out: start the audit log with
    /// [`AuditSettings::start`] and pass the auditor to
    /// [`AuthzBuilder::auditor`](crate::AuthzBuilder::auditor), the policies of
    /// `Config::cedar` to `AuthzBuilder::cedar`, put the verifier behind
    /// `postgres::SharedRevocationVerifier` yourself, and give `AuthzBuilder::dpop` a DPoP
    /// verifier (a warning on target `rmcp_authz::config` says when a `[revocation]` or
    /// `[dpop]` section is left out).
    pub fn into_parts(self) -> (JwtVerifier, Policy) {
        #[cfg(feature = "postgres")]
        if self.revocation.is_some() {
            tracing::warn!(
                target: "rmcp_authz::config",
                "the [revocation] section is not applied by Config::into_parts: wrap the verifier in postgres::SharedRevocationVerifier, or use Authz::from_config_file"
            );
        }
        #[cfg(feature = "dpop")]
        if self.dpop.is_some() {
            tracing::warn!(
                target: "rmcp_authz::config",
                "the [dpop] section is not applied by Config::into_parts: give AuthzBuilder::dpop a DpopVerifier, or use Authz::from_config_file"
            );
        }
        (self.verifier, self.policy)
    }

    /// Whether the `[dpop]` section requires DPoP-bound tokens (`None` without the
    /// section; feature `dpop`).
    #[cfg(feature = "dpop")]
    pub fn dpop_required(&self) -> Option<bool> {
        self.dpop.as_ref().map(|d| d.required)
    }

    /// The [`Authz`] of this configuration, with its audit log started when the file has
    /// an `[audit]` section, and its verifier following the shared revocation list when
    /// it has a `[revocation]` section.
    fn into_authz(self) -> Result<Authz, ConfigFileError> {
        let auditor = self.audit.as_ref().map(AuditSettings::start).transpose()?;
        #[cfg(feature = "postgres")]
        let builder = match &self.revocation {
            Some(revocation) => Authz::builder(revocation.start(self.verifier)?, self.policy),
            None => Authz::builder(self.verifier, self.policy),
        };
        #[cfg(not(feature = "postgres"))]
        let builder = Authz::builder(self.verifier, self.policy);
        #[cfg(feature = "cedar")]
        let builder = match self.cedar {
            Some(policies) => builder.cedar(policies),
            None => builder,
        };
        #[cfg(feature = "dpop")]
        let builder = match self.dpop {
            Some(dpop::DpopSettings {
                verifier,
                required: true,
            }) => builder.dpop(verifier).require_dpop(),
            Some(dpop::DpopSettings { verifier, .. }) => builder.dpop(verifier),
            None => builder,
        };
        Ok(match auditor {
            Some(auditor) => builder.auditor(auditor).build(),
            None => builder.build(),
        })
    }
}

impl Authz {
    /// An `Authz` from a configuration file (feature `config`), with its audit log started
    /// when the file has an `[audit]` section: the one call that turns a file into a
    /// running authorization. [`Config::from_file`] loads the file without starting it.
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the key and line at fault, or
    /// [`ConfigFileError::Audit`] / [`ConfigFileError::AuditWriter`] when the audit log
    /// cannot start.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Authz, ConfigFileError> {
        Config::from_file(path)?.into_authz()
    }
}

#[cfg(test)]
mod example_tests;
#[cfg(test)]
mod tests;
