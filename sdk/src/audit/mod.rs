//! Audit: what was decided, for whom, and how it ended, as records nobody can quietly edit.
//!
//! [`AuditEvent`] is the record (a stable, versioned JSON object with a committed JSON
//! Schema). [`AuditSink`]s write events: [`JsonLines`] appends them to a file (mode 0600)
//! as a hash chain, where each record carries the SHA-256 of the previous line, so
//! [`verify_chain`] names the first record that was edited, deleted or moved
//! ([`verify_chain_with`] also checks a saved anchor, and accepts a log whose older files
//! were rotated away), and [`repair_torn_tail`] cuts a record torn by a crash off the end
//! of a file without breaking its chain;
//! [`TracingSink`] emits them as structured `tracing` events on target
//! `rmcp_authz::audit`; [`MemorySink`] keeps them for tests; [`FanOut`] writes to several.
//!
//! Events never contain the bearer token; arguments appear only as a keyed digest unless
//! configured otherwise. Every field that comes from a request or a token is cut to a
//! documented size ([`MAX_FIELD_BYTES`] and the other bounds, named in the event's
//! `truncated`), so no request can make a record that a restart cannot read back. This
//! module holds the records and the sinks; the request path produces events through them,
//! handing the writer a compact record of each request from which the writer builds the
//! event (`record`).

mod arguments;
mod chain;
mod event;
mod json;
mod limits;
mod pending;
mod pipeline;
mod record;
mod repair;
mod sinks;
mod spare;
mod writer;

use std::fmt;

pub use arguments::{ArgumentRecording, KeyLengthError, MIN_KEY_BYTES, REDACTED};
pub use chain::{
    AnchorMatch, ChainError, ChainReport, GENESIS_HASH, VerifyOptions, verify_chain,
    verify_chain_with,
};
pub use event::{AuditEvent, DecisionKind, EventKind, Outcome, SCHEMA_VERSION};
pub use limits::{
    MAX_ARGUMENTS_BYTES, MAX_FIELD_BYTES, MAX_LIST_BYTES, MAX_LIST_ITEMS, MAX_RECORD_BYTES,
    TRUNCATION_MARKER,
};
pub use pipeline::{
    AuditFailure, AuditSlot, AuditStats, Auditor, AuditorBuilder, DEFAULT_FLUSH_INTERVAL,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_WRITE_DELAY, Durability, Overload,
};
pub use repair::{RepairError, RepairReport, repair_torn_tail};
pub use sinks::{FanOut, JsonLines, MemorySink, TracingSink};

pub(crate) use arguments::Arguments;
#[cfg(feature = "postgres")]
pub(crate) use chain::line_hash;
pub(crate) use record::{Entry, Record, RecordedId, method_text};
#[cfg(feature = "postgres")]
pub(crate) use sinks::append_record;

/// Why an audit sink could not record events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The audit file could not be opened, written or synced.
    #[error("audit file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file's last record is incomplete (a crash during a write), so the chain cannot
    /// be continued safely. [`repair_torn_tail`] (`rmcp-authz audit repair FILE`) moves the
    /// torn bytes into a side file and cuts the file back to its last complete record, from
    /// which the chain then continues.
    #[error(
        "audit file {path}: the last record is incomplete; check it with `rmcp-authz audit verify {path}`, then repair it with `rmcp-authz audit repair {path}` (which keeps the torn bytes in a side file and lets the chain continue)"
    )]
    TornTail {
        /// The file.
        path: String,
    },
    /// An event could not be serialized.
    #[error("cannot serialize an audit event: {0}")]
    Serialize(String),
    /// A database sink could not record the events (feature `postgres`).
    #[error("audit database {database}: {message}")]
    Database {
        /// The database (host, port and name; never its password).
        database: String,
        /// What went wrong.
        message: String,
    },
}

/// Where audit events go.
///
/// Implementations must be safe to call from several threads; a call returns once the
/// events are written as far as the sink goes (for a file: handed to the operating
/// system; [`AuditSink::flush`] with `durable` makes them survive a crash).
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Records `events`, in order.
    ///
    /// # Errors
    /// An [`AuditError`] when they could not be recorded.
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError>;

    /// Pushes written events out; with `durable`, to stable storage (fsync).
    ///
    /// # Errors
    /// An [`AuditError`] when that failed.
    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        let _ = durable;
        Ok(())
    }

    /// Records `events` and, with `durable`, makes them survive a crash before returning:
    /// what the writer calls for each batch. The default writes, then flushes with
    /// `durable`; a sink whose write is itself a commit (a database) overrides it to
    /// commit once, synchronously or not.
    ///
    /// # Errors
    /// An [`AuditError`] when they could not be recorded (or made durable).
    fn commit(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        self.write(events)?;
        if durable { self.flush(true) } else { Ok(()) }
    }
}

impl<S: AuditSink + ?Sized> AuditSink for std::sync::Arc<S> {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        (**self).write(events)
    }

    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        (**self).flush(durable)
    }

    fn commit(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        (**self).commit(events, durable)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pipeline_tests;
