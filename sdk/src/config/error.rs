//! Why a configuration file cannot be used ([`ConfigFileError`]), and the [`Locator`] that
//! gives each unusable value its dotted key and line.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::ConfigError;
use crate::audit::AuditError;
use crate::policy::PolicyError;

/// Why a configuration file could not be used. Every variant names the file's key (or
/// section) and, where it can, the line; each keeps the error it comes from as its
/// [`source`](Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", .path.display())]
    #[non_exhaustive]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown or missing key, or a value of the wrong
    /// type. The message gives the line and column, the line itself and what was expected.
    #[error("{}{source}", in_file(.file.as_deref()))]
    #[non_exhaustive]
    Syntax {
        /// The file, when it was loaded from one.
        file: Option<PathBuf>,
        /// The TOML parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// A value is well-formed TOML but cannot be used.
    #[error("{key} (line {line}): {message}")]
    #[non_exhaustive]
    Invalid {
        /// The dotted key, e.g. `policy.tools."purge"`, or the section, e.g. `audit`.
        key: String,
        /// The 1-based line of the value.
        line: usize,
        /// What is wrong and what to do.
        message: String,
        /// The error the value caused, when there is one.
        #[source]
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    },
    /// The `[verifier]` settings are individually fine but do not make a verifier.
    #[error("[verifier]: {0}")]
    Build(#[from] ConfigError),
    /// The `[policy]` rules are individually fine but do not make a policy.
    #[error("[policy]: {0}")]
    Policy(#[from] PolicyError),
    /// The audit file could not be opened: its directory is missing or not writable, or its
    /// last record is torn.
    #[error("[audit]: {0}")]
    Audit(#[source] AuditError),
    /// The audit writer's thread could not start.
    #[error("[audit]: cannot start the audit writer: {0}")]
    AuditWriter(#[source] std::io::Error),
    /// A database the configuration names could not be used at start (feature
    /// `postgres`): unreachable, without the schema, or holding a chain that does not
    /// verify.
    #[error("[{section}]: {source}")]
    Database {
        /// The section: `audit.postgres` or `revocation`.
        section: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn Error + Send + Sync + 'static>,
    },
}

/// `path: ` before a syntax error read from a file.
fn in_file(file: Option<&Path>) -> String {
    file.map(|f| format!("{}: ", f.display()))
        .unwrap_or_default()
}

/// Turns the spans of values into lines, for [`ConfigFileError::Invalid`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Locator<'a> {
    text: &'a str,
}

impl<'a> Locator<'a> {
    /// Locates values in `text`, the whole configuration.
    pub(super) fn new(text: &'a str) -> Locator<'a> {
        Locator { text }
    }

    /// The 1-based line where `value` starts.
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        let end = value.span().start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }

    /// The value of the environment variable named by `var` (written at `key`), which must
    /// be set. The error names the variable, never a value.
    pub(super) fn env(&self, key: &str, var: &Spanned<String>) -> Result<String, ConfigFileError> {
        std::env::var(var.get_ref()).map_err(|_| {
            self.invalid(
                key,
                var,
                format!("the environment variable {} is not set", var.get_ref()),
            )
        })
    }

    /// `value`, at `key`, cannot be used: `message` says why.
    pub(super) fn invalid<T>(
        &self,
        key: impl Into<String>,
        value: &Spanned<T>,
        message: impl fmt::Display,
    ) -> ConfigFileError {
        self.error(key.into(), value, message.to_string(), None)
    }

    /// `value`, at `key`, cannot be used because of `source`, whose message says why.
    pub(super) fn invalid_because<T>(
        &self,
        key: impl Into<String>,
        value: &Spanned<T>,
        source: impl Error + Send + Sync + 'static,
    ) -> ConfigFileError {
        let message = source.to_string();
        self.error(key.into(), value, message, Some(Box::new(source)))
    }

    /// `value`, at `key`, cannot be used because of `source`; `message` says more than it.
    pub(super) fn invalid_with<T>(
        &self,
        key: impl Into<String>,
        value: &Spanned<T>,
        message: impl fmt::Display,
        source: impl Error + Send + Sync + 'static,
    ) -> ConfigFileError {
        self.error(
            key.into(),
            value,
            message.to_string(),
            Some(Box::new(source)),
        )
    }

    fn error<T>(
        &self,
        key: String,
        value: &Spanned<T>,
        message: String,
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    ) -> ConfigFileError {
        ConfigFileError::Invalid {
            key,
            line: self.line(value),
            message,
            source,
        }
    }
}
