//! The `[audit]` section: the audit log as written in the file, checked into
//! [`AuditSettings`] when the file is loaded, and started by [`AuditSettings::start`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigFileError, Locator};
use super::names::OneOf;
use crate::audit::{
    ArgumentRecording, AuditSink, Auditor, DEFAULT_FLUSH_INTERVAL, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_WRITE_DELAY, Durability, FanOut, JsonLines, Overload, TracingSink,
};

/// The default size at which the audit file rotates: 100 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;

/// `[audit]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditSection {
    file: Option<Spanned<String>>,
    rotate_bytes: Option<u64>,
    #[serde(default)]
    tracing: bool,
    durability: Option<Spanned<OneOf<DurabilityName>>>,
    flush_interval_ms: Option<Spanned<u64>>,
    write_delay_ms: Option<u64>,
    #[serde(default)]
    fail_closed: bool,
    queue_capacity: Option<Spanned<usize>>,
    overload: Option<Spanned<OneOf<OverloadName>>>,
    hmac_key_env: Option<Spanned<String>>,
    #[serde(default)]
    record_arguments: bool,
    #[serde(default)]
    redact: Vec<String>,
    postgres: Option<super::postgres::AuditPostgresSection>,
}

/// `durability`: when a request's event counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityName {
    /// [`Durability::Buffered`], synced every `flush_interval_ms`.
    Buffered,
    /// [`Durability::Durable`].
    Durable,
}

/// `overload`: what a full queue does to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OverloadName {
    /// [`Overload::Block`].
    Block,
    /// [`Overload::Refuse`].
    Refuse,
}

impl From<OverloadName> for Overload {
    fn from(name: OverloadName) -> Overload {
        match name {
            OverloadName::Block => Overload::Block,
            OverloadName::Refuse => Overload::Refuse,
        }
    }
}

/// The `[audit]` section, checked: everything needed to start the audit pipeline.
/// Nothing is opened until [`AuditSettings::start`].
#[derive(Debug, Clone)]
pub struct AuditSettings {
    file: Option<PathBuf>,
    rotate_bytes: Option<u64>,
    tracing: bool,
    durability: Durability,
    write_delay: Duration,
    fail_closed: bool,
    queue_capacity: usize,
    overload: Overload,
    arguments: Option<ArgumentRecording>,
    #[cfg(feature = "postgres")]
    postgres: Option<super::postgres::AuditPostgres>,
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
    /// missing or not writable, or its last record is torn);
    /// [`ConfigFileError::Database`] when the `[audit.postgres]` database cannot be used;
    /// [`ConfigFileError::AuditWriter`] when the writer's thread cannot start.
    pub fn start(&self) -> Result<Auditor, ConfigFileError> {
        let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
        if let Some(path) = &self.file {
            let mut file = JsonLines::open(path).map_err(ConfigFileError::Audit)?;
            if let Some(max) = self.rotate_bytes {
                file = file.rotate_at(max);
            }
            sinks.push(Arc::new(file));
        }
        #[cfg(feature = "postgres")]
        if let Some(postgres) = &self.postgres {
            sinks.push(Arc::new(postgres.start(self.fail_closed)?));
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
            .write_delay(self.write_delay)
            .fail_closed(self.fail_closed)
            .queue_capacity(self.queue_capacity)
            .overload(self.overload);
        if let Some(arguments) = &self.arguments {
            builder = builder.arguments(arguments.clone());
        }
        builder.build().map_err(ConfigFileError::AuditWriter)
    }
}

impl AuditSection {
    /// Checks the section, written at `section`; the file is resolved against `base`.
    pub(super) fn validate(
        section: Spanned<AuditSection>,
        at: &Locator<'_>,
        base: &Path,
    ) -> Result<AuditSettings, ConfigFileError> {
        let this = section.get_ref();
        if this.file.is_none() && !this.tracing && this.postgres.is_none() {
            return Err(at.invalid(
                "audit",
                &section,
                "name a `file`, or an [audit.postgres] database, or set `tracing = true` (or several)",
            ));
        }
        let durability = this.durability(at)?;
        let overload = match &this.overload {
            Some(o) => o
                .get_ref()
                .get()
                .map_err(|e| at.invalid_because("audit.overload", o, e))?
                .into(),
            None => Overload::Block,
        };
        let queue_capacity = match &this.queue_capacity {
            Some(c) if *c.get_ref() == 0 => {
                return Err(at.invalid("audit.queue_capacity", c, "must be at least 1"));
            }
            Some(c) => *c.get_ref(),
            None => DEFAULT_QUEUE_CAPACITY,
        };
        let arguments = this.arguments(at)?;
        let mut this = section.into_inner();
        #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
        let postgres = this.postgres.take().map(|p| p.build(at)).transpose()?;
        let arguments = match arguments {
            Some(a) if this.record_arguments => Some(a.clear_with_redaction(this.redact)),
            other => other,
        };
        Ok(AuditSettings {
            file: this.file.map(|f| base.join(f.get_ref())),
            rotate_bytes: match this.rotate_bytes {
                Some(0) => None,
                Some(n) => Some(n),
                None => Some(DEFAULT_ROTATE_BYTES),
            },
            tracing: this.tracing,
            durability,
            write_delay: this
                .write_delay_ms
                .map_or(DEFAULT_WRITE_DELAY, Duration::from_millis),
            fail_closed: this.fail_closed,
            queue_capacity,
            overload,
            arguments,
            #[cfg(feature = "postgres")]
            postgres,
        })
    }

    /// `durability`, with `flush_interval_ms` for a buffered log.
    fn durability(&self, at: &Locator<'_>) -> Result<Durability, ConfigFileError> {
        let name = match &self.durability {
            Some(d) => d
                .get_ref()
                .get()
                .map_err(|e| at.invalid_because("audit.durability", d, e))?,
            None => DurabilityName::Buffered,
        };
        Ok(match (name, &self.flush_interval_ms) {
            (DurabilityName::Durable, _) => Durability::Durable,
            (DurabilityName::Buffered, Some(ms)) if *ms.get_ref() == 0 => {
                return Err(at.invalid("audit.flush_interval_ms", ms, "must be at least 1"));
            }
            (DurabilityName::Buffered, ms) => Durability::Buffered {
                flush_interval: ms.as_ref().map_or(DEFAULT_FLUSH_INTERVAL, |ms| {
                    Duration::from_millis(*ms.get_ref())
                }),
            },
        })
    }

    /// How arguments are recorded: digested under the key from `hmac_key_env` (or a random
    /// one when `record_arguments` needs a key), or not at all. Redaction is added later.
    fn arguments(&self, at: &Locator<'_>) -> Result<Option<ArgumentRecording>, ConfigFileError> {
        let Some(var) = &self.hmac_key_env else {
            return Ok(self.record_arguments.then(ArgumentRecording::random_key));
        };
        let key = "audit.hmac_key_env";
        // Neither error keeps its cause: the decoding error would show the key.
        let text = at.env(key, var)?;
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
        let recording =
            ArgumentRecording::with_key(&bytes).map_err(|e| at.invalid_because(key, var, e))?;
        Ok(Some(recording))
    }
}

/// A key written as hex (even length, only hex digits) or else unpadded base64url.
fn decode_key(text: &str) -> Option<Vec<u8>> {
    hex::decode(text)
        .ok()
        .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
}

#[cfg(test)]
mod tests {
    use super::decode_key;

    #[test]
    fn keys_decode_from_hex_or_base64url() {
        assert_eq!(decode_key("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_key("AP8Q"), Some(vec![0, 255, 16]));
        assert_eq!(decode_key("not a key!"), None);
    }
}
