//! Reading audit files: each complete line parsed as a [`Record`], filtered, and handed on;
//! a last line without its newline left unread.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::SystemTime;

use super::Stop;
use super::filter::Filter;
use super::timestamp::parse_time;
use crate::audit::AuditEvent;

/// One audit record: its line exactly as written (without the newline), its event, and
/// when it was recorded.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) line: Vec<u8>,
    pub(super) event: AuditEvent,
    pub(super) at: SystemTime,
}

/// How far a file has been read.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Position {
    /// The bytes of complete lines read: the offset of the next line.
    pub(super) offset: u64,
    /// The complete lines read.
    pub(super) lines: usize,
}

/// How a call of [`read_records`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Every line was complete.
    Complete,
    /// The last line has no newline (yet): it was not read; its number is
    /// `Position::lines + 1`.
    Partial,
    /// The caller asked to stop.
    Stopped,
}

/// What is done with each record read: go on, or stop.
pub(super) type Each<'a> = dyn FnMut(Record) -> Result<ControlFlow<()>, Stop> + 'a;

/// Reads the complete lines of `reader`, which is positioned at `pos`, parsing each as an
/// event (`name` in messages), and passes those matching `filter` to `each` until it breaks.
/// `pos` moves past every complete line read; a last line without its newline is left
/// unread ([`End::Partial`]). A line that is not an event is an error naming it.
pub(super) fn read_records(
    reader: &mut impl BufRead,
    name: &str,
    pos: &mut Position,
    filter: &Filter,
    each: &mut Each<'_>,
) -> Result<End, Stop> {
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if read == 0 {
            return Ok(End::Complete);
        }
        if buffer.pop() != Some(b'\n') {
            return Ok(End::Partial);
        }
        pos.offset += read as u64;
        pos.lines += 1;
        let record = parse_record(std::mem::take(&mut buffer), name, pos.lines)?;
        if filter.matches(&record) && each(record)?.is_break() {
            return Ok(End::Stopped);
        }
    }
}

/// Parses line `number` of `name` as an event.
pub(super) fn parse_record(line: Vec<u8>, name: &str, number: usize) -> Result<Record, String> {
    let event: AuditEvent = serde_json::from_slice(&line).map_err(|e| {
        // serde_json's position is within the line; the file's line is ours.
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let reason = text.strip_suffix(&suffix).unwrap_or(&text);
        format!(
            "{name} line {number}: not an audit event: {reason} (column {})",
            e.column()
        )
    })?;
    let at = parse_time(&event.timestamp).map_err(|_| {
        format!(
            "{name} line {number}: not an audit event: the timestamp {:?} is not RFC 3339",
            event.timestamp
        )
    })?;
    Ok(Record { line, event, at })
}

/// Warns on standard error that line `number` of `name` is incomplete and was skipped.
pub(super) fn warn_partial(name: &str, number: usize) {
    eprintln!(
        "rmcp-authz: warning: {name} line {number} is an incomplete record (a write cut short, or still being written); skipped"
    );
}

/// Where audit records are read from.
#[derive(Debug)]
pub(in crate::cli) enum Source {
    /// JSON Lines files, in the order given (oldest first).
    Files(Vec<PathBuf>),
    /// Every chain of a PostgreSQL database, merged in time order (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(Box<crate::postgres::Database>),
}

/// Reads the records of `source` in order, passing those that match `filter` to `each`
/// until it breaks; an incomplete last line of a file is skipped with a warning.
pub(super) fn for_each_record(
    source: &Source,
    filter: &Filter,
    mut each: impl FnMut(Record) -> Result<ControlFlow<()>, Stop>,
) -> Result<(), Stop> {
    // One arm without the `postgres` feature.
    #[allow(clippy::infallible_destructuring_match)]
    let files = match source {
        Source::Files(files) => files,
        #[cfg(feature = "postgres")]
        Source::Postgres(database) => {
            return super::postgres::Trail::open(database)?.for_each(filter, &mut each);
        }
    };
    for path in files {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
        let mut pos = Position::default();
        match read_records(
            &mut BufReader::new(file),
            &name,
            &mut pos,
            filter,
            &mut each,
        )? {
            End::Complete => {}
            End::Partial => warn_partial(&name, pos.lines + 1),
            End::Stopped => break,
        }
    }
    Ok(())
}
