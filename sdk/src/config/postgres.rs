//! The PostgreSQL settings (feature `postgres`): `[audit.postgres]`, the shared audit
//! trail, and `[revocation]`, the shared revocation list.
//!
//! ```toml
//! [audit.postgres]
//! url_env = "DATABASE_URL"     # the variable holding the URL (it holds a password)
//! chain_env = "HOSTNAME"       # or chain = "replica-a": this replica's chain id
//! migrate = true               # apply the schema at start (default false)
//! give_up_after_ms = 2000      # fail a batch after this long (default: keep trying)
//!
//! [revocation]
//! postgres_url_env = "DATABASE_URL"
//! reload_interval_secs = 30
//! ```
//!
//! The URL and the chain id are read from the environment when the file loads; the
//! database is reached only when the configuration starts.

#[cfg(feature = "postgres")]
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigFileError, Locator};

/// `[audit.postgres]` as written.
#[derive(Deserialize)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub(super) struct AuditPostgresSection {
    url_env: Spanned<String>,
    chain: Option<Spanned<String>>,
    chain_env: Option<Spanned<String>>,
    #[serde(default)]
    migrate: bool,
    give_up_after_ms: Option<Spanned<u64>>,
}

/// `[revocation]` as written.
#[derive(Deserialize)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub(super) struct RevocationSection {
    postgres_url_env: Spanned<String>,
    reload_interval_secs: Option<Spanned<u64>>,
}

/// What `[audit.postgres]` starts (feature `postgres`).
#[cfg(feature = "postgres")]
#[derive(Debug, Clone)]
pub(super) struct AuditPostgres {
    database: crate::postgres::Database,
    chain: String,
    migrate: bool,
    give_up_after: Option<Duration>,
}

/// What `[revocation]` starts (feature `postgres`).
#[cfg(feature = "postgres")]
#[derive(Debug, Clone)]
pub(super) struct RevocationSettings {
    database: crate::postgres::Database,
    reload_interval: Duration,
}

/// The database whose URL environment variable `var` (written at `key`) holds.
#[cfg(feature = "postgres")]
fn database(
    at: &Locator<'_>,
    key: &str,
    var: &Spanned<String>,
) -> Result<crate::postgres::Database, ConfigFileError> {
    let url = at.env(key, var)?;
    // The parse error never repeats the URL.
    crate::postgres::Database::parse(&url).map_err(|e| at.invalid_because(key, var, e))
}

#[cfg(not(feature = "postgres"))]
const NEEDS_FEATURE: &str =
    "PostgreSQL needs the crate feature `postgres` (rmcp-authz = { features = [\"postgres\"] })";

impl AuditPostgresSection {
    /// Checks the section: the URL and chain id read from the environment.
    #[cfg(feature = "postgres")]
    pub(super) fn build(self, at: &Locator<'_>) -> Result<AuditPostgres, ConfigFileError> {
        let database = database(at, "audit.postgres.url_env", &self.url_env)?;
        let chain = match (&self.chain, &self.chain_env) {
            (Some(chain), None) => chain.get_ref().clone(),
            (None, Some(var)) => at.env("audit.postgres.chain_env", var)?,
            (Some(chain), Some(_)) => {
                return Err(at.invalid(
                    "audit.postgres.chain",
                    chain,
                    "set `chain` or `chain_env`, not both",
                ));
            }
            (None, None) => {
                return Err(at.invalid(
                    "audit.postgres",
                    &self.url_env,
                    "name this replica's chain: `chain = \"...\"`, or `chain_env` naming a variable that holds it (each replica needs its own, the same across its restarts)",
                ));
            }
        };
        let chain = chain.trim().to_owned();
        if chain.is_empty() {
            let at_key = self.chain.as_ref().unwrap_or(&self.url_env);
            return Err(at.invalid("audit.postgres.chain", at_key, "the chain id is empty"));
        }
        let give_up_after = match self.give_up_after_ms {
            Some(ms) if *ms.get_ref() == 0 => {
                return Err(at.invalid(
                    "audit.postgres.give_up_after_ms",
                    &ms,
                    "must be at least 1 (leave it out to keep trying)",
                ));
            }
            Some(ms) => Some(Duration::from_millis(*ms.get_ref())),
            None => None,
        };
        Ok(AuditPostgres {
            database,
            chain,
            migrate: self.migrate,
            give_up_after,
        })
    }

    /// Without the feature, the section cannot be used: say so rather than ignore it.
    #[cfg(not(feature = "postgres"))]
    pub(super) fn build(self, at: &Locator<'_>) -> Result<(), ConfigFileError> {
        Err(at.invalid("audit.postgres", &self.url_env, NEEDS_FEATURE))
    }
}

#[cfg(feature = "postgres")]
impl AuditPostgres {
    /// Connects the sink; under `fail_closed` each batch is confirmed before its requests
    /// are answered (no overlap).
    pub(super) fn start(
        &self,
        fail_closed: bool,
    ) -> Result<crate::postgres::PostgresSink, ConfigFileError> {
        let mut builder =
            crate::postgres::PostgresSink::builder(self.database.clone(), &self.chain)
                .migrate(self.migrate)
                .overlap(!fail_closed);
        if let Some(limit) = self.give_up_after {
            builder = builder.give_up_after(limit);
        }
        builder.connect().map_err(|e| ConfigFileError::Database {
            section: "audit.postgres",
            source: Box::new(e),
        })
    }
}

impl RevocationSection {
    /// Checks the section: the URL read from the environment.
    #[cfg(feature = "postgres")]
    pub(super) fn build(self, at: &Locator<'_>) -> Result<RevocationSettings, ConfigFileError> {
        let database = database(at, "revocation.postgres_url_env", &self.postgres_url_env)?;
        let reload_interval = match self.reload_interval_secs {
            Some(s) if *s.get_ref() == 0 => {
                return Err(at.invalid(
                    "revocation.reload_interval_secs",
                    &s,
                    "must be at least 1",
                ));
            }
            Some(s) => Duration::from_secs(*s.get_ref()),
            None => crate::postgres::DEFAULT_RELOAD_INTERVAL,
        };
        Ok(RevocationSettings {
            database,
            reload_interval,
        })
    }

    /// Without the feature, the section cannot be used: say so rather than ignore it.
    #[cfg(not(feature = "postgres"))]
    pub(super) fn build(self, at: &Locator<'_>) -> Result<(), ConfigFileError> {
        Err(at.invalid("revocation", &self.postgres_url_env, NEEDS_FEATURE))
    }
}

#[cfg(feature = "postgres")]
impl RevocationSettings {
    /// `verifier` behind a cache whose list follows the database's.
    pub(super) fn start<V>(
        &self,
        verifier: V,
    ) -> Result<crate::postgres::SharedRevocationVerifier<V>, ConfigFileError> {
        crate::postgres::SharedRevocationVerifier::start(
            verifier,
            crate::token::CacheOptions::default(),
            self.database.clone(),
            self.reload_interval,
        )
        .map_err(|e| ConfigFileError::Database {
            section: "revocation",
            source: Box::new(e),
        })
    }
}
