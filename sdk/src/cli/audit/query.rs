//! `audit query`: the matching events of audit files, as a table or as their lines.

use std::io::{self, Write};
use std::ops::ControlFlow;

use super::filter::Filter;
use super::output::{
    BASE_COLUMNS, COLUMNS, Format, Row, row, widths, write_line, write_row, write_table_row,
};
use super::read::{Source, for_each_record};
use super::{Stop, conclude, output_error};
use crate::cli::Outcome;

/// Prints the events of `source` (in order) that match `filter`, at most `limit` of them.
pub(in crate::cli) fn query(
    source: &Source,
    filter: &Filter,
    limit: Option<usize>,
    format: Format,
) -> Result<Outcome, String> {
    conclude(run_query(source, filter, limit, format))
}

/// [`query`], stopping at a closed standard output.
fn run_query(
    source: &Source,
    filter: &Filter,
    limit: Option<usize>,
    format: Format,
) -> Result<Outcome, Stop> {
    let mut out = io::stdout().lock();
    let limit = limit.unwrap_or(usize::MAX);
    let mut matched = 0;
    let mut rows: Vec<Row> = Vec::new();
    for_each_record(source, filter, |record| {
        if matched == limit {
            return Ok(ControlFlow::Break(()));
        }
        matched += 1;
        match format {
            Format::Jsonl => write_line(&mut out, &record)?,
            Format::Table => rows.push(row(&record.event)),
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if format == Format::Table {
        if rows.is_empty() {
            eprintln!("no matching events");
        } else {
            // The chain column only when some event shown was made through delegation.
            let chains = rows.iter().any(|r| r[BASE_COLUMNS] != "-");
            let shown = if chains { COLUMNS.len() } else { BASE_COLUMNS };
            let widths = widths(&rows, &[0; COLUMNS.len()][..shown]);
            write_row(&mut out, &COLUMNS, &widths)?;
            for row in &rows {
                write_table_row(&mut out, row, &widths)?;
            }
        }
    }
    out.flush().map_err(output_error)?;
    Ok(Outcome::Ok)
}
