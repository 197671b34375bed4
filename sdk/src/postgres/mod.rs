//! PostgreSQL (feature `postgres`): what the replicas of a server share, the audit trail
//! and the revocation list.
//!
//! Verification is stateless, so a server scales out behind any load balancer; what its
//! replicas must share is the record of what each agent did, and the tokens refused. This
//! module owns both, on one PostgreSQL database:
//! - [`PostgresSink`], an [`AuditSink`](crate::audit::AuditSink) that appends each batch
//!   of events with one statement (one commit), as a hash chain per replica (its chain
//!   id), so every chain verifies on its own ([`verify_chains`]);
//! - [`SharedRevocations`], which keeps a verifier's [`Revocations`](crate::token::Revocations)
//!   equal to the database's list: loaded in full at start, changes applied as they are
//!   announced (`LISTEN`/`NOTIFY`), and reloaded in full on an interval as a safety net;
//!   [`revoke`] and [`unrevoke`] change the list for every replica;
//! - the schema, as a migration shipped with the crate ([`MIGRATIONS`], applied by
//!   [`migrate`]).
//!
//! Connections are made without TLS: run the database on the same host or network, or
//! behind a TLS-terminating proxy (docs/deploy.md). The URL is never logged or put in an
//! error; errors name the host, port and database.

mod batch;
mod builder;
mod chain;
mod connect;
#[cfg(feature = "cli")]
pub(crate) mod read;
mod revocation;
mod sink;

pub use builder::PostgresSinkBuilder;
pub use chain::{ChainBreak, ChainBreakKind, PgChainReport, PgVerifyOptions, verify_chains};
pub use connect::{Database, PostgresError, SCHEMA_VERSION, migrate};
pub use revocation::{
    DEFAULT_RELOAD_INTERVAL, RevocationKind, Revoked, SharedRevocationVerifier, SharedRevocations,
    expiry_after, revoke, revoked, unrevoke,
};
pub use sink::PostgresSink;

/// The schema migrations, in order: the version each one brings the schema to, and its
/// SQL (every statement idempotent). The same files are in the repository under
/// `sdk/migrations/postgres/`, for operators who apply them with `psql`.
pub const MIGRATIONS: &[(u32, &str)] = &[(
    1,
    include_str!("../../migrations/postgres/0001_audit_and_revocations.sql"),
)];
