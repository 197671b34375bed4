//! `audit verify`, `audit repair`, `audit query`, `audit stats` and `audit tail`: reading
//! (and repairing) JSON Lines audit files.
//!
//! `verify` checks the hash chain, and `repair` cuts a torn last record off a file into a
//! side file so that the chain continues. The other three read events through one function,
//! [`read::read_records`], which parses each complete line as an
//! [`AuditEvent`](crate::audit::AuditEvent), applies the shared [`Filter`], and hands on the
//! matching records with their lines exactly as written. A last line without its newline (a
//! write cut short, or one still being written) is never taken as a record: `query`,
//! `stats` and `tail` skip it with a warning on standard error, and `tail -f` waits for the
//! rest of it. Any other line that is not an event stops the command (exit 2), naming the
//! file and the line.

mod filter;
mod output;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod read;
mod repair;
mod stats;
mod tail;
mod timestamp;
mod verify;

use std::io;

use super::Outcome;

pub(super) use filter::Filter;
pub(super) use output::Format;
#[cfg(feature = "postgres")]
pub(super) use postgres::{database, verify_postgres};
pub(super) use query::query;
pub(super) use read::Source;
pub(super) use repair::repair;
pub(super) use stats::{GroupBy, stats};
pub(super) use tail::tail;
#[cfg(feature = "postgres")]
pub(super) use tail::tail_postgres;
pub(super) use verify::{read_anchor, verify};

/// Why a command stopped before its end.
#[derive(Debug)]
enum Stop {
    /// It could not run: the message for standard error, exit 2.
    Error(String),
    /// Standard output was closed (the reader of a pipe went away): not an error.
    Closed,
}

impl From<String> for Stop {
    fn from(message: String) -> Stop {
        Stop::Error(message)
    }
}

/// What a [`Stop`] means for the command's result.
fn conclude(result: Result<Outcome, Stop>) -> Result<Outcome, String> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(Stop::Closed) => Ok(Outcome::Ok),
        Err(Stop::Error(message)) => Err(message),
    }
}

/// A failed write to standard output: [`Stop::Closed`] for a closed pipe.
fn output_error(e: io::Error) -> Stop {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Stop::Closed
    } else {
        Stop::Error(format!("cannot write to standard output: {e}"))
    }
}
