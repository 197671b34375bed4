//! The command line `rmcp-authz` accepts, as clap reads it: the commands, their arguments,
//! and their help text (these doc comments).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::audit::{Filter, Format, GroupBy};

/// Authorization for MCP servers: inspect access tokens, check them, lint policies.
#[derive(Debug, Parser)]
#[command(name = "rmcp-authz", version)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check the hash chain of JSON Lines audit files (oldest first) and name the first
    /// record that was edited, deleted or reordered.
    Verify {
        /// The audit files, oldest first.
        #[arg(required_unless_present = "postgres", conflicts_with = "postgres")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        postgres: PostgresSource,
        /// With --postgres: verify only this chain (a replica's chain id); needed with an
        /// anchor.
        #[arg(long, value_name = "ID", requires = "postgres")]
        chain: Option<String>,
        /// A record hash saved earlier (the `last_hash` of `audit verify --json`): the
        /// chain holds only if a record still hashes to it, so dropping or rewriting the
        /// newest records is caught.
        #[arg(long, value_name = "HASH", conflicts_with = "anchor_file")]
        anchor: Option<String>,
        /// Read the anchor from a file (its content, whitespace trimmed).
        #[arg(long, value_name = "PATH")]
        anchor_file: Option<PathBuf>,
        /// Older files were rotated away: the first record may continue an earlier chain
        /// (without this, that means its earlier records were deleted).
        #[arg(long)]
        rotated: bool,
    },
    /// Repair an audit file whose last record is incomplete (a crash during a write): move
    /// the torn bytes into a side file FILE.torn-<UTC time> and cut FILE back to its last
    /// complete record, so that the chain continues from it.
    Repair {
        /// The audit file (no server may be writing to it).
        file: PathBuf,
    },
    /// Print the events of JSON Lines audit files that match the filters, as a table or
    /// (with --format jsonl or --json) as their lines, unchanged.
    Query {
        /// The audit files, read in the order given (oldest first).
        #[arg(required_unless_present = "postgres", conflicts_with = "postgres")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        postgres: PostgresSource,
        #[command(flatten)]
        filter: Filter,
        /// Print at most N events: the first N that match.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// How to print events (--json means jsonl).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Count the events of JSON Lines audit files per agent (or per subject, or per user
    /// and delegation chain): events, allowed, denied, errors, and the most used targets;
    /// then the totals.
    Stats {
        /// The audit files, read in the order given.
        #[arg(required_unless_present = "postgres", conflicts_with = "postgres")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        postgres: PostgresSource,
        #[command(flatten)]
        filter: Filter,
        /// What to count events by.
        #[arg(long, value_enum, default_value_t)]
        by: GroupBy,
    },
    /// Print the last events of an audit file; with -f, keep printing new ones as they
    /// are written, following the path across rotations, until interrupted.
    Tail {
        /// The audit file (the active one, for -f).
        #[arg(required_unless_present = "postgres", conflicts_with = "postgres")]
        file: Option<PathBuf>,
        #[command(flatten)]
        postgres: PostgresSource,
        /// Print the last N matching events.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
        lines: usize,
        /// Keep following the file (polling every 200 ms) for new events.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        filter: Filter,
        /// How to print events (--json means jsonl).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `--postgres`: read the audit trail from a database instead of files.
#[derive(Debug, Clone, Args)]
pub(super) struct PostgresSource {
    /// Read every chain of this PostgreSQL database (a postgres:// URL, or `env:VAR` for
    /// the URL in environment variable VAR) instead of files; needs the `postgres`
    /// feature.
    #[arg(long, value_name = "URL")]
    pub(super) postgres: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Decode a token WITHOUT verifying it: header, claims, expiry, and problems a verifier
    /// would object to.
    Inspect {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Verify a token with a configuration's keys and explain the decision.
    Check {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The token, or `-` to read it from standard input.
        token: String,
        /// Also decide a call of this tool.
        #[arg(long)]
        tool: Option<String>,
    },
    /// Revoke a token id (jti) or a subject for every replica sharing a PostgreSQL
    /// revocation list: they refuse it within a second.
    Revoke {
        #[command(flatten)]
        target: RevocationTarget,
        /// The database (a postgres:// URL, or `env:VAR`).
        #[arg(long, value_name = "URL")]
        postgres: String,
        /// How long the revocation lasts: at least the longest lifetime of the issuer's
        /// tokens (e.g. 24h, 30m, 7d).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Why, kept with the revocation.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a revocation made with `token revoke`.
    Unrevoke {
        #[command(flatten)]
        target: RevocationTarget,
        /// The database (a postgres:// URL, or `env:VAR`).
        #[arg(long, value_name = "URL")]
        postgres: String,
    },
    /// List the revocations in force in a PostgreSQL revocation list.
    Revocations {
        /// The database (a postgres:// URL, or `env:VAR`).
        #[arg(long, value_name = "URL")]
        postgres: String,
    },
}

/// What a revocation names: one token or one subject.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub(super) struct RevocationTarget {
    /// A token id (the `jti` claim).
    #[arg(long)]
    pub(super) jti: Option<String>,
    /// A subject (the `sub` claim): every token of it.
    #[arg(long)]
    pub(super) sub: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Lint a configuration's policy: similar scope names, rules nobody can meet,
    /// shadowed resource templates, and (with --tools) tools without rules and rules
    /// without tools.
    Check {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The server's tool names, comma separated.
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
        /// A file with the server's `tools/list` answer (JSON): the tool names, and the
        /// schemas the `[cedar]` policies are checked against.
        #[cfg(feature = "cedar")]
        #[arg(long, conflicts_with = "server")]
        tools_json: Option<PathBuf>,
        /// A running server's MCP endpoint to ask for its tools instead (with --token).
        #[cfg(all(feature = "cedar", feature = "jwks"))]
        #[arg(long, requires = "token")]
        server: Option<String>,
        /// The access token to list the running server's tools with (`-`: standard input).
        #[cfg(all(feature = "cedar", feature = "jwks"))]
        #[arg(long)]
        token: Option<String>,
    },
    /// Decide one tool call with a token, by the scope rules and the `[cedar]` policies,
    /// and say why.
    #[cfg(feature = "cedar")]
    Explain {
        /// The configuration file (TOML) with a `[cedar]` section.
        #[arg(long)]
        config: PathBuf,
        /// A file with the server's `tools/list` answer (JSON).
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        tools_json: Option<PathBuf>,
        /// A running server's MCP endpoint to ask for its tools instead (with the token).
        #[cfg(feature = "jwks")]
        #[arg(long)]
        server: Option<String>,
        /// The tool called.
        #[arg(long)]
        tool: String,
        /// The call's arguments, a JSON object.
        #[arg(long)]
        arguments: Option<String>,
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Show the effective rules: per tool, resource and prompt, what it requires.
    Show {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The server's tool names, comma separated (tools without a rule are listed too).
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
    },
}
