//! Configuration files (feature `config`): the verifier and the policy from TOML.
//!
//! One call, [`Authz::from_config_file`], builds the same [`Authz`] the builders would.
//! Unknown keys and bad values are errors that name the key and the line. Paths are
//! relative to the file's directory; resource templates are tried in the order written.
//! Secrets are never written in the file: an HMAC
//! secret is read from the environment variable the file names. `docs/config.md` and
//! `docs/rmcp-authz.example.toml` document every key.
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

use indexmap::IndexMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use std::sync::Arc;

use crate::audit::{
    ArgumentRecording, AuditSink, Auditor, DEFAULT_FLUSH_INTERVAL, DEFAULT_QUEUE_CAPACITY,
    Durability, FanOut, JsonLines, Overload, TracingSink,
};
use crate::authz::Authz;
use crate::error::ConfigError;
use crate::policy::{Conditions, Policy, PolicyBuilder, Rule, ScopeExpr};
use crate::token::{Algorithm, JwtVerifier, Key, KeySet, TypCheck};

/// Why a configuration file could not be used. Every variant names the file's key and,
/// where it can, the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A value is well-formed TOML but cannot be used.
    #[error("{key} (line {line}): {message}")]
    Invalid {
        /// The dotted key, e.g. `policy.tools.purge`.
        key: String,
        /// The 1-based line of the value.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// The settings are individually fine but do not make a verifier.
    #[error("[verifier]: {0}")]
    Build(#[from] ConfigError),
    /// The audit log could not be started (the file cannot be opened, or its last record
    /// is torn).
    #[error("[audit]: {0}")]
    Audit(String),
}

/// A loaded configuration: a verifier, a policy, and the audit settings.
#[derive(Debug)]
pub struct Config {
    verifier: JwtVerifier,
    policy: Policy,
    audit: Option<AuditSettings>,
}

impl Config {
    /// Loads a configuration file.
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the key and line at fault.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base).map_err(|e| match e {
            ConfigFileError::Syntax(m) => {
                ConfigFileError::Syntax(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// Loads configuration text; relative paths are resolved against `base_dir`.
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the key and line at fault.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigFileError> {
        let file: File =
            toml::from_str(text).map_err(|e| ConfigFileError::Syntax(e.to_string()))?;
        let at = Locator { text };
        let verifier = file.verifier.build(&at, base_dir)?;
        let policy = file.policy.build(&at)?;
        let audit = file.audit.map(|a| a.validate(&at, base_dir)).transpose()?;
        Ok(Config {
            verifier,
            policy,
            audit,
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

    /// The verifier and the policy.
    pub fn into_parts(self) -> (JwtVerifier, Policy) {
        (self.verifier, self.policy)
    }

    /// The `[audit]` settings, if the file has the section.
    pub fn audit(&self) -> Option<&AuditSettings> {
        self.audit.as_ref()
    }

    /// An [`Authz`] from this configuration, with its audit log started when the file
    /// has an `[audit]` section.
    ///
    /// # Errors
    /// [`ConfigFileError::Audit`] when the audit file cannot be opened or the writer
    /// cannot start.
    pub fn into_authz(self) -> Result<Authz, ConfigFileError> {
        let mut builder = Authz::builder(self.verifier, self.policy);
        if let Some(audit) = &self.audit {
            builder = builder.auditor(audit.start()?);
        }
        Ok(builder.build())
    }
}

impl Authz {
    /// An `Authz` from a configuration file: `Config::from_file(path)?.into_authz()`.
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the key and line at fault.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Authz, ConfigFileError> {
        Config::from_file(path)?.into_authz()
    }
}

/// Turns spans into line numbers.
struct Locator<'a> {
    text: &'a str,
}

impl Locator<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        let end = value.span().start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn invalid<T>(
        &self,
        key: impl Into<String>,
        value: &Spanned<T>,
        message: impl fmt::Display,
    ) -> ConfigFileError {
        ConfigFileError::Invalid {
            key: key.into(),
            line: self.line(value),
            message: message.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    verifier: VerifierSection,
    #[serde(default)]
    policy: PolicySection,
    audit: Option<AuditSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    file: Option<Spanned<String>>,
    rotate_bytes: Option<u64>,
    #[serde(default)]
    tracing: bool,
    durability: Option<Spanned<String>>,
    flush_interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    fail_closed: bool,
    queue_capacity: Option<Spanned<usize>>,
    overload: Option<Spanned<String>>,
    hmac_key_env: Option<Spanned<String>>,
    #[serde(default)]
    record_arguments: bool,
    #[serde(default)]
    redact: Vec<String>,
}

/// The default size at which the audit file rotates: 100 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;

/// The `[audit]` section, checked: everything needed to start the audit pipeline.
/// Nothing is opened until [`AuditSettings::start`].
#[derive(Debug, Clone)]
pub struct AuditSettings {
    file: Option<PathBuf>,
    rotate_bytes: Option<u64>,
    tracing: bool,
    durability: Durability,
    fail_closed: bool,
    queue_capacity: usize,
    overload: Overload,
    arguments: Option<ArgumentRecording>,
}

impl AuditSettings {
    /// The audit file, resolved against the configuration file's directory.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Opens the sinks and starts the writer.
    ///
    /// # Errors
    /// [`ConfigFileError::Audit`] when the file cannot be opened (its directory is
    /// missing or not writable, or its last record is torn) or the thread cannot start.
    pub fn start(&self) -> Result<Auditor, ConfigFileError> {
        let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
        if let Some(path) = &self.file {
            let mut file =
                JsonLines::open(path).map_err(|e| ConfigFileError::Audit(e.to_string()))?;
            if let Some(max) = self.rotate_bytes {
                file = file.rotate_at(max);
            }
            sinks.push(Arc::new(file));
        }
        if self.tracing {
            sinks.push(Arc::new(TracingSink));
        }
        let sink: Arc<dyn AuditSink> = match sinks.len() {
            1 => sinks.remove(0),
            _ => Arc::new(FanOut::new(sinks)),
        };
        let mut builder = Auditor::builder(sink)
            .durability(self.durability)
            .fail_closed(self.fail_closed)
            .queue_capacity(self.queue_capacity)
            .overload(self.overload);
        if let Some(arguments) = &self.arguments {
            builder = builder.arguments(arguments.clone());
        }
        builder
            .build()
            .map_err(|e| ConfigFileError::Audit(format!("cannot start the audit writer: {e}")))
    }
}

impl AuditSection {
    fn validate(self, at: &Locator<'_>, base: &Path) -> Result<AuditSettings, ConfigFileError> {
        if self.file.is_none() && !self.tracing {
            return Err(ConfigFileError::Syntax(
                "[audit]: name a `file`, or set `tracing = true`, or both".to_owned(),
            ));
        }
        let durability = match (&self.durability, &self.flush_interval_ms) {
            (Some(d), _) if d.get_ref() == "durable" => Durability::Durable,
            (Some(d), _) if d.get_ref() != "buffered" => {
                return Err(at.invalid(
                    "audit.durability",
                    d,
                    format!("{:?}: use \"buffered\" or \"durable\"", d.get_ref()),
                ));
            }
            (_, Some(ms)) if *ms.get_ref() == 0 => {
                return Err(at.invalid("audit.flush_interval_ms", ms, "must be at least 1"));
            }
            (_, ms) => Durability::Buffered {
                flush_interval: ms.as_ref().map_or(DEFAULT_FLUSH_INTERVAL, |ms| {
                    Duration::from_millis(*ms.get_ref())
                }),
            },
        };
        let overload = match &self.overload {
            None => Overload::Block,
            Some(o) => match o.get_ref().as_str() {
                "block" => Overload::Block,
                "refuse" => Overload::Refuse,
                other => {
                    return Err(at.invalid(
                        "audit.overload",
                        o,
                        format!("{other:?}: use \"block\" or \"refuse\""),
                    ));
                }
            },
        };
        let queue_capacity = match &self.queue_capacity {
            Some(c) if *c.get_ref() == 0 => {
                return Err(at.invalid("audit.queue_capacity", c, "must be at least 1"));
            }
            Some(c) => *c.get_ref(),
            None => DEFAULT_QUEUE_CAPACITY,
        };
        let arguments = match &self.hmac_key_env {
            Some(var) => {
                let key = "audit.hmac_key_env";
                let text = std::env::var(var.get_ref()).map_err(|_| {
                    at.invalid(
                        key,
                        var,
                        format!("the environment variable {} is not set", var.get_ref()),
                    )
                })?;
                let bytes = decode_key(text.trim()).ok_or_else(|| {
                    at.invalid(
                        key,
                        var,
                        format!(
                            "{} must hold the key as hex or unpadded base64url",
                            var.get_ref()
                        ),
                    )
                })?;
                Some(ArgumentRecording::with_key(&bytes).map_err(|m| at.invalid(key, var, m))?)
            }
            None if self.record_arguments => Some(ArgumentRecording::random_key()),
            None => None,
        };
        let arguments = match arguments {
            Some(a) if self.record_arguments => Some(a.clear_with_redaction(self.redact)),
            other => other,
        };
        Ok(AuditSettings {
            file: self.file.map(|f| base.join(f.get_ref())),
            rotate_bytes: match self.rotate_bytes {
                Some(0) => None,
                Some(n) => Some(n),
                None => Some(DEFAULT_ROTATE_BYTES),
            },
            tracing: self.tracing,
            durability,
            fail_closed: self.fail_closed,
            queue_capacity,
            overload,
            arguments,
        })
    }
}

/// A key written as hex (even length, only hex digits) or else unpadded base64url.
fn decode_key(text: &str) -> Option<Vec<u8>> {
    let is_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        return (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
            .collect();
    }
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierSection {
    issuer: String,
    audience: String,
    jwks_file: Option<Spanned<String>>,
    jwks_uri: Option<Spanned<String>>,
    #[serde(default)]
    allow_http_loopback: bool,
    #[serde(default)]
    pem_files: Vec<Spanned<PemEntry>>,
    hmac_secret_env: Option<Spanned<String>>,
    hmac_algorithm: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<String>>>,
    leeway_secs: Option<Spanned<u64>>,
    typ: Option<Spanned<String>>,
    required_claims: Option<Vec<String>>,
    max_token_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PemEntry {
    path: String,
    algorithm: String,
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    name.parse::<Algorithm>().map_err(|e| {
        format!(
            "{e}; use one of {}",
            Algorithm::ALL.map(Algorithm::as_str).join(", ")
        )
    })
}

/// Takes the keys from the JWK Set at `uri` (feature `jwks`).
#[cfg(feature = "jwks")]
fn remote_keys(
    builder: crate::token::JwtVerifierBuilder,
    uri: &Spanned<String>,
    allow_http_loopback: bool,
    at: &Locator<'_>,
) -> Result<crate::token::JwtVerifierBuilder, ConfigFileError> {
    let mut options = crate::remote::RemoteJwksOptions::default();
    options.fetch.allow_http_loopback = allow_http_loopback;
    let jwks = crate::remote::RemoteJwks::new(uri.get_ref().clone(), options)
        .map_err(|e| at.invalid("verifier.jwks_uri", uri, e))?;
    Ok(builder.remote_jwks(jwks))
}

#[cfg(not(feature = "jwks"))]
fn remote_keys(
    _builder: crate::token::JwtVerifierBuilder,
    uri: &Spanned<String>,
    _allow_http_loopback: bool,
    at: &Locator<'_>,
) -> Result<crate::token::JwtVerifierBuilder, ConfigFileError> {
    Err(at.invalid(
        "verifier.jwks_uri",
        uri,
        "remote JWK Sets need rmcp-authz built with the `jwks` feature",
    ))
}

impl VerifierSection {
    fn build(self, at: &Locator<'_>, base: &Path) -> Result<JwtVerifier, ConfigFileError> {
        let resolve = |p: &str| -> PathBuf { base.join(p) };
        let mut builder = JwtVerifier::builder(self.issuer, self.audience);
        let mut keys = KeySet::new();
        if let Some(file) = &self.jwks_file {
            let set = KeySet::from_jwks_file(resolve(file.get_ref()))
                .map_err(|e| at.invalid("verifier.jwks_file", file, e))?;
            keys.extend(set)
                .map_err(|e| at.invalid("verifier.jwks_file", file, e))?;
        }
        for (i, entry) in self.pem_files.iter().enumerate() {
            let key = format!("verifier.pem_files[{i}]");
            let e = entry.get_ref();
            let alg = algorithm(&e.algorithm).map_err(|m| at.invalid(&key, entry, m))?;
            let pem = Key::from_pem_file(resolve(&e.path), alg)
                .map_err(|m| at.invalid(&key, entry, m))?;
            keys.insert(pem).map_err(|m| at.invalid(&key, entry, m))?;
        }
        if let Some(var) = &self.hmac_secret_env {
            let key = "verifier.hmac_secret_env";
            let alg = match &self.hmac_algorithm {
                Some(a) => algorithm(a.get_ref())
                    .map_err(|m| at.invalid("verifier.hmac_algorithm", a, m))?,
                None => Algorithm::HS256,
            };
            let text = std::env::var(var.get_ref()).map_err(|_| {
                at.invalid(
                    key,
                    var,
                    format!("the environment variable {} is not set", var.get_ref()),
                )
            })?;
            let secret = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
                at.invalid(
                    key,
                    var,
                    format!(
                        "{} must hold the secret as unpadded base64url",
                        var.get_ref()
                    ),
                )
            })?;
            let hmac = Key::hmac(secret, alg).map_err(|m| at.invalid(key, var, m))?;
            keys.insert(hmac).map_err(|m| at.invalid(key, var, m))?;
        }
        builder = builder.keys(keys);
        if let Some(uri) = &self.jwks_uri {
            builder = remote_keys(builder, uri, self.allow_http_loopback, at)?;
        }
        if let Some(list) = &self.algorithms {
            let algs = list
                .get_ref()
                .iter()
                .map(|a| algorithm(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| at.invalid("verifier.algorithms", list, m))?;
            builder = builder.algorithms(algs);
        }
        if let Some(leeway) = &self.leeway_secs {
            let secs = *leeway.get_ref();
            if secs > 300 {
                return Err(at.invalid(
                    "verifier.leeway_secs",
                    leeway,
                    "at most 300 seconds; fix the clocks instead",
                ));
            }
            builder = builder.leeway(Duration::from_secs(secs));
        }
        if let Some(typ) = &self.typ {
            builder = builder.typ_check(match typ.get_ref().as_str() {
                "strict" => TypCheck::Strict,
                "lenient" => TypCheck::Lenient,
                other => {
                    return Err(at.invalid(
                        "verifier.typ",
                        typ,
                        format!("{other:?}: use \"strict\" or \"lenient\""),
                    ));
                }
            });
        }
        if let Some(claims) = self.required_claims {
            builder = builder.required_claims(claims);
        }
        if let Some(limit) = self.max_token_bytes {
            builder = builder.max_token_bytes(limit);
        }
        Ok(builder.build()?)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicySection {
    #[serde(default)]
    implies: IndexMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    tools: IndexMap<String, Spanned<RuleSpec>>,
    #[serde(default)]
    resources: IndexMap<String, Spanned<RuleSpec>>,
    #[serde(default)]
    prompts: IndexMap<String, Spanned<RuleSpec>>,
    #[serde(default)]
    skills: IndexMap<String, Spanned<RuleSpec>>,
    #[serde(default)]
    custom_requests: IndexMap<String, Spanned<RuleSpec>>,
    unlisted_tools: Option<Spanned<RuleSpec>>,
    unlisted_resources: Option<Spanned<RuleSpec>>,
    unlisted_prompts: Option<Spanned<RuleSpec>>,
    unlisted_skills: Option<Spanned<RuleSpec>>,
    max_token_lifetime_secs: Option<u64>,
    #[serde(default)]
    defaults: ConditionsSpec,
}

/// Conditions on the delegation chain and token age, as written in a rule table or in
/// `[policy.defaults]`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ConditionsSpec {
    user_only: Option<bool>,
    agents: Option<Vec<String>>,
    max_chain_depth: Option<usize>,
    actor_issuers: Option<Vec<String>>,
    forbid_actors: Option<Vec<String>>,
    max_token_age_secs: Option<u64>,
    max_auth_age_secs: Option<u64>,
}

/// The keys of [`ConditionsSpec`], for error messages.
const CONDITION_KEYS: [&str; 7] = [
    "user_only",
    "agents",
    "max_chain_depth",
    "actor_issuers",
    "forbid_actors",
    "max_token_age_secs",
    "max_auth_age_secs",
];

impl ConditionsSpec {
    fn to_conditions(&self) -> Conditions {
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
        c
    }
}

impl PolicySection {
    fn build(self, at: &Locator<'_>) -> Result<Policy, ConfigFileError> {
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
        let rule = |section: &str,
                    name: &str,
                    spec: &Spanned<RuleSpec>|
         -> Result<Rule, ConfigFileError> {
            let key = if name.is_empty() {
                format!("policy.{section}")
            } else {
                format!("policy.{section}.{name:?}")
            };
            spec.get_ref()
                .to_rule()
                .map_err(|m| at.invalid(key, spec, m))
        };
        type Add = fn(PolicyBuilder, String, Rule) -> PolicyBuilder;
        type Rules = IndexMap<String, Spanned<RuleSpec>>;
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
                if section == "resources" && crate::policy::is_valid_template(name).is_none() {
                    return Err(at.invalid(
                        format!("policy.resources.{name:?}"),
                        spec,
                        "braces do not pair up or a variable is unnamed",
                    ));
                }
                b = add(b, name.clone(), rule(section, name, spec)?);
            }
        }
        if let Some(spec) = &self.unlisted_tools {
            b = b.unlisted_tools(rule("unlisted_tools", "", spec)?);
        }
        if let Some(spec) = &self.unlisted_resources {
            b = b.unlisted_resources(rule("unlisted_resources", "", spec)?);
        }
        if let Some(spec) = &self.unlisted_prompts {
            b = b.unlisted_prompts(rule("unlisted_prompts", "", spec)?);
        }
        if let Some(spec) = &self.unlisted_skills {
            b = b.unlisted_skills(rule("unlisted_skills", "", spec)?);
        }
        b.build()
            .map_err(|e| ConfigFileError::Syntax(format!("[policy]: {e}")))
    }
}

/// A rule as written: an expression string, or `{ requires = "...", clients = [...] }`.
struct RuleSpec {
    requires: String,
    clients: Option<Vec<String>>,
    conditions: ConditionsSpec,
}

impl RuleSpec {
    fn to_rule(&self) -> Result<Rule, String> {
        let expr = if self.requires.trim().is_empty() {
            ScopeExpr::authenticated()
        } else {
            ScopeExpr::parse(&self.requires).map_err(|e| e.to_string())?
        };
        let rule = Rule::new(expr).with(self.conditions.to_conditions());
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

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RuleSpec, A::Error> {
        let mut requires = None;
        let mut clients = None;
        let mut c = ConditionsSpec::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "requires" => requires = Some(map.next_value::<String>()?),
                "clients" => clients = Some(map.next_value::<Vec<String>>()?),
                "user_only" => c.user_only = Some(map.next_value()?),
                "agents" => c.agents = Some(map.next_value()?),
                "max_chain_depth" => c.max_chain_depth = Some(map.next_value()?),
                "actor_issuers" => c.actor_issuers = Some(map.next_value()?),
                "forbid_actors" => c.forbid_actors = Some(map.next_value()?),
                "max_token_age_secs" => c.max_token_age_secs = Some(map.next_value()?),
                "max_auth_age_secs" => c.max_auth_age_secs = Some(map.next_value()?),
                other => {
                    const KEYS: [&str; 9] = [
                        "requires",
                        "clients",
                        CONDITION_KEYS[0],
                        CONDITION_KEYS[1],
                        CONDITION_KEYS[2],
                        CONDITION_KEYS[3],
                        CONDITION_KEYS[4],
                        CONDITION_KEYS[5],
                        CONDITION_KEYS[6],
                    ];
                    return Err(de::Error::unknown_field(other, &KEYS));
                }
            }
        }
        Ok(RuleSpec {
            requires: requires.ok_or_else(|| de::Error::missing_field("requires"))?,
            clients,
            conditions: c,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(policy: &str) -> Result<Config, ConfigFileError> {
        let dir = std::env::temp_dir().join(format!(
            "rmcp-authz-config-{}-{}",
            std::process::id(),
            policy.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
        std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
        let text = format!(
            "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs/mcp\"\njwks_file = \"jwks.json\"\n\n{policy}"
        );
        let result = Config::from_toml(&text, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn rules_load_as_strings_or_tables() {
        let config = load(
            "[policy.tools]\na = \"x | y z\"\nb = { requires = \"x\", clients = [\"c1\"] }\nc = \"\"\n",
        )
        .unwrap();
        let p = config.policy();
        use crate::policy::Operation::CallTool;
        assert!(
            p.decide_for(&["x".into()], None, CallTool("a"))
                .is_allowed()
        );
        assert!(
            !p.decide_for(&["x".into()], Some("c2"), CallTool("b"))
                .is_allowed()
        );
        assert!(
            p.decide_for(&["x".into()], Some("c1"), CallTool("b"))
                .is_allowed()
        );
        assert!(p.decide_for(&[], None, CallTool("c")).is_allowed());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key_and_line() {
        let err = load("[policy]\nimplies = {}\ntolls = {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tolls") && err.contains("line 8"), "{err}");
        let err = load("[policy.tools]\na = { requires = \"x\", client = [\"c\"] }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("client"), "{err}");
    }

    #[test]
    fn bad_expressions_name_the_rule_and_line() {
        let err = load("[policy.tools]\nok = \"x\"\npurge = \"a (b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("policy.tools.\"purge\" (line 8)"), "{err}");
    }

    #[test]
    fn verifier_values_are_checked_with_their_key() {
        let dir = std::env::temp_dir();
        for (line, key) in [
            ("leeway_secs = 301", "verifier.leeway_secs"),
            ("typ = \"loose\"", "verifier.typ"),
            ("algorithms = [\"RS1\"]", "verifier.algorithms"),
            (
                "jwks_file = \"/nonexistent/jwks.json\"",
                "verifier.jwks_file",
            ),
            (
                "hmac_secret_env = \"RMCP_AUTHZ_UNSET_VARIABLE_FOR_TEST\"",
                "verifier.hmac_secret_env",
            ),
        ] {
            let text =
                format!("[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\n{line}\n");
            let err = Config::from_toml(&text, &dir).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{key} (line 4)")), "{err}");
        }
    }

    #[test]
    fn missing_issuer_is_a_syntax_error_naming_it() {
        let err = Config::from_toml("[verifier]\naudience = \"x\"\n", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("issuer"), "{err}");
    }

    #[test]
    fn audit_values_are_checked_with_their_key() {
        for (line, key) in [
            ("durability = \"fast\"", "audit.durability"),
            ("overload = \"drop\"", "audit.overload"),
            ("queue_capacity = 0", "audit.queue_capacity"),
            ("flush_interval_ms = 0", "audit.flush_interval_ms"),
            (
                "hmac_key_env = \"RMCP_AUTHZ_UNSET_VARIABLE_FOR_TEST\"",
                "audit.hmac_key_env",
            ),
        ] {
            let err = load(&format!("[audit]\nfile = \"audit.jsonl\"\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{key} (line 8)")), "{err}");
        }
        let err = load("[audit]\ndurable = true\n").unwrap_err().to_string();
        assert!(err.contains("durable"), "{err}");
        let err = load("[audit]\nfail_closed = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("name a `file`"), "{err}");
    }

    #[test]
    fn an_audit_section_starts_a_working_audit_log() {
        let dir =
            std::env::temp_dir().join(format!("rmcp-authz-config-audit-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
        std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
        let text = "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs/mcp\"\njwks_file = \"jwks.json\"\n\n[audit]\nfile = \"audit.jsonl\"\ndurability = \"durable\"\nfail_closed = true\nrecord_arguments = true\nredact = [\"password\"]\n";
        let config = Config::from_toml(text, &dir).unwrap();
        assert_eq!(
            config.audit().unwrap().file(),
            Some(dir.join("audit.jsonl").as_path())
        );
        let authz = config.into_authz().unwrap();
        let auditor = authz.auditor().expect("an auditor");
        assert!(auditor.is_fail_closed());
        assert!(auditor.arguments().records_clear());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let slot = auditor.reserve().await.unwrap();
            let event = crate::audit::AuditEvent::new(
                crate::audit::EventKind::List,
                crate::audit::DecisionKind::Allow,
                crate::audit::Outcome::Success,
            );
            slot.record(event).await.unwrap();
        });
        let report = crate::audit::verify_chain(&[dir.join("audit.jsonl")]).unwrap();
        assert_eq!(report.records, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unopenable_audit_file_is_a_clear_error() {
        let dir = std::env::temp_dir();
        let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
        let jwks = dir.join(format!("rmcp-authz-jwks-{}.json", uuid::Uuid::now_v7()));
        std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
        let text = format!(
            "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\njwks_file = {:?}\n[audit]\nfile = \"/nonexistent/dir/audit.jsonl\"\n",
            jwks.display().to_string()
        );
        let err = Config::from_toml(&text, &dir)
            .unwrap()
            .into_authz()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("[audit]: audit file /nonexistent/dir/audit.jsonl"),
            "{err}"
        );
        std::fs::remove_file(&jwks).unwrap();
    }

    #[test]
    fn rules_carry_delegation_and_freshness_conditions() {
        use crate::policy::DenyReason;
        let config = load(
            "[policy]\nmax_token_lifetime_secs = 7200\n[policy.defaults]\nmax_chain_depth = 1\n[policy.tools]\npurge = { requires = \"a\", user_only = true, max_token_age_secs = 60 }\nwrite = { requires = \"a\", agents = [\"bot\"], max_chain_depth = 2, forbid_actors = [\"rogue\"], actor_issuers = [\"https://as\"] }\n",
        )
        .unwrap();
        let p = config.policy();
        let purge = p
            .rule_for(crate::policy::Operation::CallTool("purge"))
            .unwrap();
        assert_eq!(
            *purge.conditions(),
            crate::policy::Conditions::new()
                .user_only()
                .max_token_age(Duration::from_secs(60))
        );
        let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
        let token = issuer
            .token("https://rs/mcp")
            .subject("u")
            .scopes(["a"])
            .actor("bot")
            .actor("planner")
            .mint()
            .unwrap();
        let who = issuer
            .verifier("https://rs/mcp")
            .build()
            .unwrap()
            .verify_sync(&token)
            .unwrap();
        let now = who.issued_at().unwrap();
        let reason = |tool| {
            p.decide_at(&who, crate::policy::Operation::CallTool(tool), now)
                .denial()
                .map(|d| d.reason().clone())
        };
        assert!(matches!(
            reason("purge"),
            Some(DenyReason::DelegationNotAllowed { .. })
        ));
        assert_eq!(
            reason("write"),
            None,
            "the rule's depth 2 overrides the default 1"
        );
        let err = load("[policy.tools]\nx = { requires = \"a\", user_ony = true }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user_ony") && err.contains("user_only"),
            "{err}"
        );
        let err = load("[policy.defaults]\nagnets = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agnets"), "{err}");
    }

    #[test]
    fn keys_decode_from_hex_or_base64url() {
        assert_eq!(decode_key("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_key("AP8Q"), Some(vec![0, 255, 16]));
        assert_eq!(decode_key("not a key!"), None);
    }
}

#[cfg(all(test, feature = "jwks"))]
mod jwks_tests {
    use super::*;

    #[test]
    fn a_jwks_uri_takes_the_keys_from_the_issuer() {
        let base = "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\n";
        let config = Config::from_toml(
            &format!("{base}jwks_uri = \"https://as/jwks\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(config.verifier().remote_url(), Some("https://as/jwks"));
        let err = Config::from_toml(
            &format!("{base}jwks_uri = \"http://127.0.0.1:9/jwks\"\n"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("verifier.jwks_uri (line 4)") && err.contains("https"),
            "{err}"
        );
        let config = Config::from_toml(
            &format!("{base}jwks_uri = \"http://127.0.0.1:9/jwks\"\nallow_http_loopback = true\n"),
            Path::new("."),
        )
        .unwrap();
        assert!(config.verifier().remote_url().is_some());
    }

    /// A JWK Set file that exists and loads, beside a `jwks_uri`: refused as two key
    /// sources (not for a missing file, which would hide the check).
    #[test]
    fn a_jwks_uri_beside_a_jwks_file_is_refused_as_two_sources() {
        let dir = std::env::temp_dir().join(format!("rmcp-authz-mixed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = crate::dev::DevIssuer::new("https://as").unwrap().jwks();
        std::fs::write(dir.join("keys.json"), jwks.to_string()).unwrap();
        let base = "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\n";
        let only_file = format!("{base}jwks_file = \"keys.json\"\n");
        let loaded = Config::from_toml(&only_file, &dir);
        assert!(loaded.is_ok(), "the file alone loads: {:?}", loaded.err());
        let err = Config::from_toml(
            &format!("{base}jwks_uri = \"https://as/jwks\"\njwks_file = \"keys.json\"\n"),
            &dir,
        )
        .unwrap_err()
        .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.contains("one source"), "{err}");
    }
}
