//! `audit tail`: the last events of an audit file, then (with `-f`) the new ones as they are
//! written, following the path across rotations and truncations.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use super::filter::Filter;
use super::output::{
    BASE_COLUMNS, COLUMNS, Format, Row, row, widths, write_line, write_row, write_table_row,
};
use super::read::{Each, End, Position, Record, read_records, warn_partial};
use super::{Stop, conclude, output_error};
use crate::cli::Outcome;

/// How often `tail -f` looks for new lines and for a rotated file.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The widths `tail -f` starts from, since rows still to come cannot be measured.
const FOLLOW_WIDTHS: [usize; BASE_COLUMNS] = [24, 12, 12, 13, 16, 8, 10, 0];

/// Prints the last `count` events of `file` that match `filter`; with `follow`, then
/// prints new events as they are appended, across rotations, until killed.
pub(in crate::cli) fn tail(
    file: &Path,
    count: usize,
    follow: bool,
    filter: &Filter,
    format: Format,
) -> Result<Outcome, String> {
    conclude(run_tail(file, count, follow, filter, format))
}

/// [`tail`], stopping at a closed standard output.
fn run_tail(
    path: &Path,
    count: usize,
    follow: bool,
    filter: &Filter,
    format: Format,
) -> Result<Outcome, Stop> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut pos = Position::default();
    let mut last: VecDeque<Record> = VecDeque::new();
    let end = read_records(
        &mut BufReader::new(&file),
        &name,
        &mut pos,
        filter,
        &mut keep_last(count, &mut last),
    )?;
    if end == End::Partial && !follow {
        warn_partial(&name, pos.lines + 1);
    }
    let mut out = io::stdout().lock();
    let widths = show_last(&mut out, &last, follow, format)?;
    if !follow {
        return Ok(Outcome::Ok);
    }
    let mut print = printer(&mut out, widths, format);
    loop {
        read_new(&mut file, &name, &mut pos, filter, &mut print)?;
        match replacement(path, &file, pos.offset)
            .map_err(|e| format!("cannot read {name}: {e}"))?
        {
            Change::None => std::thread::sleep(POLL_INTERVAL),
            Change::Replaced(new) => {
                // Lines written to the old file since the last read are still its own.
                if read_new(&mut file, &name, &mut pos, filter, &mut print)? == End::Partial {
                    warn_partial(&name, pos.lines + 1);
                }
                eprintln!("rmcp-authz: {name} was replaced (rotated); following the new file");
                file = new;
                pos = Position::default();
            }
            Change::Truncated(new) => {
                eprintln!("rmcp-authz: {name} was truncated; following it from the start");
                file = new;
                pos = Position::default();
            }
        }
    }
}

/// Prints the last events read (with a header, for a table); returns the table's column
/// widths, which new rows keep when following.
fn show_last(
    out: &mut impl Write,
    last: &VecDeque<Record>,
    follow: bool,
    format: Format,
) -> Result<Vec<usize>, Stop> {
    let rows: Vec<Row> = last.iter().map(|r| row(&r.event)).collect();
    let widths = widths(
        &rows,
        if follow {
            &FOLLOW_WIDTHS
        } else {
            &[0; BASE_COLUMNS]
        },
    );
    match format {
        Format::Table if last.is_empty() && !follow => eprintln!("no matching events"),
        Format::Table => {
            write_row(out, &COLUMNS, &widths)?;
            for row in &rows {
                write_table_row(out, row, &widths)?;
            }
        }
        Format::Jsonl => {
            for record in last {
                write_line(out, record)?;
            }
        }
    }
    out.flush().map_err(output_error)?;
    Ok(widths)
}

/// What prints each new record when following.
fn printer(
    out: &mut impl Write,
    widths: Vec<usize>,
    format: Format,
) -> impl FnMut(Record) -> Result<ControlFlow<()>, Stop> + '_ {
    move |record: Record| {
        match format {
            Format::Table => write_table_row(out, &row(&record.event), &widths)?,
            Format::Jsonl => write_line(out, &record)?,
        }
        out.flush().map_err(output_error)?;
        Ok(ControlFlow::Continue(()))
    }
}

/// Keeps the last `count` records offered.
fn keep_last(
    count: usize,
    last: &mut VecDeque<Record>,
) -> impl FnMut(Record) -> Result<ControlFlow<()>, Stop> + '_ {
    move |record| {
        if count > 0 {
            if last.len() == count {
                last.pop_front();
            }
            last.push_back(record);
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// [`tail`] on a PostgreSQL trail (feature `postgres`): the last events across every
/// chain, then, with `follow`, the records each chain gains.
#[cfg(feature = "postgres")]
pub(in crate::cli) fn tail_postgres(
    database: &crate::postgres::Database,
    count: usize,
    follow: bool,
    filter: &Filter,
    format: Format,
) -> Result<Outcome, String> {
    conclude((|| {
        let mut trail = super::postgres::Trail::open(database)?;
        let mut ends = std::collections::HashMap::new();
        let mut last = VecDeque::new();
        trail.for_each_tracking(filter, &mut ends, &mut keep_last(count, &mut last))?;
        let mut out = io::stdout().lock();
        let widths = show_last(&mut out, &last, follow, format)?;
        if follow {
            trail.follow(ends, filter, &mut printer(&mut out, widths, format))?;
        }
        Ok(Outcome::Ok)
    })())
}

/// Reads the lines of `file` from `pos` to its end, passing matching records to `each`.
fn read_new(
    file: &mut File,
    name: &str,
    pos: &mut Position,
    filter: &Filter,
    each: &mut Each<'_>,
) -> Result<End, Stop> {
    // From the end of the last complete line: a partial line is read again once whole.
    file.seek(SeekFrom::Start(pos.offset))
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    read_records(&mut BufReader::new(&*file), name, pos, filter, each)
}

/// What became of a followed path.
#[derive(Debug)]
enum Change {
    /// It is the file being read, no shorter than what was read.
    None,
    /// It names another file now (rotation): that file, opened.
    Replaced(File),
    /// It is shorter than what was read (truncated in place): the file, opened again.
    Truncated(File),
}

/// Whether `path` still names `file`, of which `offset` bytes were read. A path that does
/// not exist (between a rotation's rename and the new file's creation) is no change yet.
fn replacement(path: &Path, file: &File, offset: u64) -> io::Result<Change> {
    let reopen = || match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => other.map(Some),
    };
    let on_disk = match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Change::None),
        other => other?,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let held = file.metadata()?;
        if (held.dev(), held.ino()) != (on_disk.dev(), on_disk.ino()) {
            return Ok(reopen()?.map_or(Change::None, Change::Replaced));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    if on_disk.len() < offset {
        return Ok(reopen()?.map_or(Change::None, Change::Truncated));
    }
    Ok(Change::None)
}
