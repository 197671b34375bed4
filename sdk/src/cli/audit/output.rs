//! Printing events: as an aligned table, one row per event, or as their lines exactly as in
//! the file (JSON Lines).

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::read::Record;
use super::{Stop, output_error};
use crate::audit::AuditEvent;

/// How `query` and `tail` print events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(in crate::cli) enum Format {
    /// An aligned table, one row per event.
    #[default]
    Table,
    /// Each event's line, exactly as in the file (JSON Lines).
    Jsonl,
}

impl Format {
    /// This format, or JSON Lines when `--json` was given.
    pub(in crate::cli) fn or_jsonl(self, json: bool) -> Format {
        if json { Format::Jsonl } else { self }
    }
}

/// The table's columns. The last, `chain`, is shown only by `query`, and only when an event
/// it prints has a delegation chain; the others are always shown.
pub(super) const COLUMNS: [&str; 9] = [
    "time",
    "agent",
    "subject",
    "kind",
    "target",
    "decision",
    "outcome",
    "reason_code",
    "chain",
];

/// How many columns there are without `chain`.
pub(super) const BASE_COLUMNS: usize = 8;

/// One table row, with every column; a table shows the first `BASE_COLUMNS` or all.
pub(super) type Row = [String; 9];

/// The serde (snake_case) name of an enum value.
fn snake_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => "?".to_owned(),
    }
}

/// A delegation chain as `a <- b <- c`, current actor first; `-` for none.
fn chain_text(chain: &[String]) -> String {
    if chain.is_empty() {
        "-".to_owned()
    } else {
        chain.join(" <- ")
    }
}

/// The table row of `event`; `-` for a field it does not have.
pub(super) fn row(event: &AuditEvent) -> Row {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    [
        event.timestamp.clone(),
        text(&event.agent),
        text(&event.subject),
        snake_name(&event.kind),
        text(&event.target),
        snake_name(&event.decision),
        snake_name(&event.outcome),
        text(&event.reason_code),
        chain_text(&event.delegation_chain),
    ]
}

/// The widths of the first `at_least.len()` columns: the widest of `rows`, the header and
/// `at_least`.
pub(super) fn widths(rows: &[Row], at_least: &[usize]) -> Vec<usize> {
    let mut widths = at_least.to_vec();
    for (i, width) in widths.iter_mut().enumerate() {
        let cells = rows.iter().map(|r| &r[i]).map(|c| c.chars().count());
        *width = cells.chain([COLUMNS[i].len()]).fold(*width, usize::max);
    }
    widths
}

/// Writes one table line of the first `widths.len()` of `cells`: every cell but the last
/// padded to its width, two spaces apart.
pub(super) fn write_row(
    out: &mut impl Write,
    cells: &[&str],
    widths: &[usize],
) -> Result<(), Stop> {
    let shown = widths.len();
    let mut line = String::new();
    for (i, cell) in cells[..shown].iter().enumerate() {
        if i + 1 < shown {
            line.push_str(&format!("{cell:w$}  ", w = widths[i]));
        } else {
            line.push_str(cell);
        }
    }
    writeln!(out, "{}", line.trim_end()).map_err(output_error)
}

/// Writes the columns of `row` that `widths` covers as a table line.
pub(super) fn write_table_row(
    out: &mut impl Write,
    row: &Row,
    widths: &[usize],
) -> Result<(), Stop> {
    write_row(out, &row.each_ref().map(String::as_str), widths)
}

/// Writes a record's line as it is in the file, with its newline.
pub(super) fn write_line(out: &mut impl Write, record: &Record) -> Result<(), Stop> {
    out.write_all(&record.line)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(output_error)
}
