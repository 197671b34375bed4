//! `audit verify`, `audit query`, `audit stats` and `audit tail`: reading JSON Lines audit
//! files.
//!
//! `verify` checks the hash chain. The other three read events through one function,
//! [`read_records`], which parses each complete line as an [`AuditEvent`], applies the
//! shared [`Filter`], and hands on the matching records with their lines exactly as
//! written. A last line without its newline (a write cut short, or one still being
//! written) is never taken as a record: `query`, `stats` and `tail` skip it with a warning
//! on standard error, and `tail -f` waits for the rest of it. Any other line that is not an
//! event stops the command (exit 2), naming the file and the line.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use rmcp_authz::audit::{
    AuditEvent, ChainError, DecisionKind, EventKind, Outcome as EventOutcome, verify_chain,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Outcome, print_json};

/// How often `tail -f` looks for new lines and for a rotated file.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How many targets `stats` lists per group.
const TOP_TARGETS: usize = 5;

/// Verifies the hash chain across `files`.
pub(crate) fn verify(files: &[PathBuf], as_json: bool) -> Result<Outcome, String> {
    match verify_chain(files) {
        Ok(report) => {
            let intact = report.torn_tail.is_none();
            if as_json {
                print_json(&json!({
                    "intact": intact,
                    "records": report.records,
                    "starts_at_genesis": report.starts_at_genesis,
                    "last_hash": report.last_hash,
                    "torn_tail": report.torn_tail.as_ref().map(|(f, l)| json!({"file": f, "line": l})),
                }));
            } else {
                println!("{} records, chain intact", report.records);
                if !report.starts_at_genesis {
                    println!(
                        "note: the first record continues an earlier chain; records before these files were not checked"
                    );
                }
                if let Some((file, line)) = &report.torn_tail {
                    println!(
                        "TORN: {file} line {line} is an incomplete record (a write cut short); it is not part of the verified chain"
                    );
                }
            }
            Ok(if intact {
                Outcome::Ok
            } else {
                Outcome::Refused
            })
        }
        Err(error @ ChainError::Io { .. }) => Err(crate::error_message(&error)),
        Err(broken) => {
            if as_json {
                print_json(&json!({ "intact": false, "error": broken.to_string() }));
            } else {
                println!("BROKEN: {broken}");
            }
            Ok(Outcome::Refused)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------

/// Which events `query`, `stats` and `tail` select: every filter given must hold.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Filter {
    /// Only events of this agent (the current actor, else the client).
    #[arg(long, value_name = "AGENT")]
    agent: Option<String>,
    /// Only events whose delegation chain names this actor anywhere: the current actor or
    /// one it acts for. Calls without delegation have no chain and never match.
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only events of this subject (the user, `sub`).
    #[arg(long, value_name = "SUBJECT")]
    subject: Option<String>,
    /// Only events whose target is this tool (or resource URI, or prompt).
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// Only allowed, or only denied, events.
    #[arg(long, value_parser = snake_case::<DecisionKind>(&["allow", "deny"]))]
    decision: Option<DecisionKind>,
    /// Only events that ended this way.
    #[arg(long, value_parser = snake_case::<EventOutcome>(
        &["success", "tool_error", "protocol_error", "denied", "cancelled"]
    ))]
    outcome: Option<EventOutcome>,
    /// Only events of this kind.
    #[arg(long, value_parser = snake_case::<EventKind>(
        &["tool_call", "resource_read", "prompt_get", "list", "authentication_failure", "other"]
    ))]
    kind: Option<EventKind>,
    /// Only events at or after TIME (RFC 3339, e.g. 2026-11-24T00:00:00Z, or a date).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<SystemTime>,
    /// Only events before TIME (RFC 3339, e.g. 2026-11-25T00:00:00Z, or a date).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<SystemTime>,
}

impl Filter {
    /// Whether `record` passes every filter given.
    fn matches(&self, record: &Record) -> bool {
        let e = &record.event;
        let same = |wanted: &Option<String>, have: &Option<String>| {
            wanted.is_none() || wanted.as_deref() == have.as_deref()
        };
        same(&self.agent, &e.agent)
            && self
                .actor
                .as_ref()
                .is_none_or(|actor| e.delegation_chain.contains(actor))
            && same(&self.subject, &e.subject)
            && same(&self.tool, &e.target)
            && self.decision.is_none_or(|d| d == e.decision)
            && self.outcome.is_none_or(|o| o == e.outcome)
            && self.kind.is_none_or(|k| k == e.kind)
            && self.since.is_none_or(|t| record.at >= t)
            && self.until.is_none_or(|t| record.at < t)
    }
}

/// A clap parser for one of `names`, turned into `T` by its serde (snake_case) name.
fn snake_case<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names)
        .try_map(|name| serde_json::from_value::<T>(Value::String(name)).map_err(|e| e.to_string()))
}

/// Parses an instant: RFC 3339 (`2026-11-24T00:00:00Z`, with or without fractional seconds,
/// with `Z`, an offset such as `+02:00`, or no zone for UTC), or a date (`2026-11-24`,
/// midnight UTC).
fn parse_time(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-11-24T00:00:00Z");
    let text = text.trim();
    let date_only;
    let text = if text.len() == 10 {
        date_only = format!("{text}T00:00:00");
        &date_only
    } else {
        text
    };
    let bytes = text.as_bytes();
    let len = bytes.len();
    // An offset `+HH:MM` / `-HH:MM` at the end; humantime reads UTC only.
    let (base, east_secs) = if let Some(base) = text.strip_suffix(['Z', 'z']) {
        (base, 0_i64)
    } else if len > 19 && matches!(bytes[len - 6], b'+' | b'-') && bytes[len - 3] == b':' {
        let (base, zone) = text.split_at(len - 6);
        let field = |range| {
            zone.get(range)
                .filter(|s: &&str| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(bad)
        };
        let (hours, minutes) = (field(1..3)?, field(4..6)?);
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        let secs = hours * 3600 + minutes * 60;
        (base, if zone.starts_with('-') { -secs } else { secs })
    } else {
        (text, 0)
    };
    // humantime is lenient after the seconds; only a fraction may follow them.
    let fraction = base.get(19..).ok_or_else(bad)?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !fraction.is_empty() && !fraction.strip_prefix('.').is_some_and(digits) {
        return Err(bad());
    }
    let local = humantime::parse_rfc3339_weak(&format!("{base}Z")).map_err(|_| bad())?;
    let shift = Duration::from_secs(east_secs.unsigned_abs());
    // Local time is UTC plus the offset.
    if east_secs >= 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
    .ok_or_else(bad)
}

// ---------------------------------------------------------------------------------------
// Reading events
// ---------------------------------------------------------------------------------------

/// One audit record: its line exactly as written (without the newline), its event, and
/// when it was recorded.
#[derive(Debug)]
struct Record {
    line: Vec<u8>,
    event: AuditEvent,
    at: SystemTime,
}

/// How far a file has been read.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    /// The bytes of complete lines read: the offset of the next line.
    offset: u64,
    /// The complete lines read.
    lines: usize,
}

/// How a call of [`read_records`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every line was complete.
    Complete,
    /// The last line has no newline (yet): it was not read; its number is
    /// `Position::lines + 1`.
    Partial,
    /// The caller asked to stop.
    Stopped,
}

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

/// Reads the complete lines of `reader`, which is positioned at `pos`, parsing each as an
/// event (`name` in messages), and passes those matching `filter` to `each` until it breaks.
/// `pos` moves past every complete line read; a last line without its newline is left
/// unread ([`End::Partial`]). A line that is not an event is an error naming it.
fn read_records(
    reader: &mut impl BufRead,
    name: &str,
    pos: &mut Position,
    filter: &Filter,
    each: &mut dyn FnMut(Record) -> Result<ControlFlow<()>, Stop>,
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
fn parse_record(line: Vec<u8>, name: &str, number: usize) -> Result<Record, String> {
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
fn warn_partial(name: &str, number: usize) {
    eprintln!(
        "rmcp-authz: warning: {name} line {number} is an incomplete record (a write cut short, or still being written); skipped"
    );
}

/// Reads `files` in order, passing the records that match `filter` to `each` until it
/// breaks; an incomplete last line of a file is skipped with a warning.
fn for_each_record(
    files: &[PathBuf],
    filter: &Filter,
    mut each: impl FnMut(Record) -> Result<ControlFlow<()>, Stop>,
) -> Result<(), Stop> {
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

// ---------------------------------------------------------------------------------------
// Printing events
// ---------------------------------------------------------------------------------------

/// How `query` and `tail` print events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Format {
    /// An aligned table, one row per event.
    #[default]
    Table,
    /// Each event's line, exactly as in the file (JSON Lines).
    Jsonl,
}

/// The table's columns. The last, `chain`, is shown only by `query`, and only when an event
/// it prints has a delegation chain; the others are always shown.
const COLUMNS: [&str; 9] = [
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
const BASE_COLUMNS: usize = 8;

/// The widths `tail -f` starts from, since rows still to come cannot be measured.
const FOLLOW_WIDTHS: [usize; BASE_COLUMNS] = [24, 12, 12, 13, 16, 8, 10, 0];

/// One table row, with every column; a table shows the first `BASE_COLUMNS` or all.
type Row = [String; 9];

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
fn row(event: &AuditEvent) -> Row {
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
fn widths(rows: &[Row], at_least: &[usize]) -> Vec<usize> {
    let mut widths = at_least.to_vec();
    for (i, width) in widths.iter_mut().enumerate() {
        let cells = rows.iter().map(|r| &r[i]).map(|c| c.chars().count());
        *width = cells.chain([COLUMNS[i].len()]).fold(*width, usize::max);
    }
    widths
}

/// Writes one table line of the first `widths.len()` of `cells`: every cell but the last
/// padded to its width, two spaces apart.
fn write_row(out: &mut impl Write, cells: &[&str], widths: &[usize]) -> Result<(), Stop> {
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
fn write_table_row(out: &mut impl Write, row: &Row, widths: &[usize]) -> Result<(), Stop> {
    write_row(out, &row.each_ref().map(String::as_str), widths)
}

/// Writes a record's line as it is in the file, with its newline.
fn write_line(out: &mut impl Write, record: &Record) -> Result<(), Stop> {
    out.write_all(&record.line)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(output_error)
}

/// A failed write to standard output: [`Stop::Closed`] for a closed pipe.
fn output_error(e: io::Error) -> Stop {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Stop::Closed
    } else {
        Stop::Error(format!("cannot write to standard output: {e}"))
    }
}

// ---------------------------------------------------------------------------------------
// query
// ---------------------------------------------------------------------------------------

/// Prints the events of `files` (in order) that match `filter`, at most `limit` of them.
pub(crate) fn query(
    files: &[PathBuf],
    filter: &Filter,
    limit: Option<usize>,
    format: Format,
) -> Result<Outcome, String> {
    conclude(run_query(files, filter, limit, format))
}

/// [`query`], stopping at a closed standard output.
fn run_query(
    files: &[PathBuf],
    filter: &Filter,
    limit: Option<usize>,
    format: Format,
) -> Result<Outcome, Stop> {
    let mut out = io::stdout().lock();
    let limit = limit.unwrap_or(usize::MAX);
    let mut matched = 0;
    let mut rows: Vec<Row> = Vec::new();
    for_each_record(files, filter, |record| {
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

// ---------------------------------------------------------------------------------------
// stats
// ---------------------------------------------------------------------------------------

/// The counts of one group, or of all events.
#[derive(Debug, Default)]
struct Counts {
    events: u64,
    allowed: u64,
    denied: u64,
    errors: u64,
    targets: HashMap<String, u64>,
}

impl Counts {
    /// Counts `event`.
    fn add(&mut self, event: &AuditEvent) {
        self.events += 1;
        match event.decision {
            DecisionKind::Allow => self.allowed += 1,
            DecisionKind::Deny => self.denied += 1,
            _ => {}
        }
        if matches!(
            event.outcome,
            EventOutcome::ToolError | EventOutcome::ProtocolError
        ) {
            self.errors += 1;
        }
        if let Some(target) = &event.target {
            *self.targets.entry(target.clone()).or_default() += 1;
        }
    }

    /// The most frequent targets, most frequent first, then by name.
    fn top_targets(&self) -> Vec<(&str, u64)> {
        let mut top: Vec<(&str, u64)> = self
            .targets
            .iter()
            .map(|(name, count)| (name.as_str(), *count))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(TOP_TARGETS);
        top
    }

    /// The counts as JSON (without the group).
    fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "allowed": self.allowed,
            "denied": self.denied,
            "errors": self.errors,
            "top_targets": self.top_targets().iter()
                .map(|(target, count)| json!({"target": target, "count": count}))
                .collect::<Vec<_>>(),
        })
    }
}

/// What `stats` counts events by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum GroupBy {
    /// The agent: the current actor of a delegated token, else the client.
    #[default]
    Agent,
    /// The subject (the user).
    Subject,
    /// The user and the agents between them and the server: `alice via a <- b` (the
    /// delegation chain, current actor first), or `alice (direct) via CLIENT` for a call
    /// without delegation.
    Chain,
}

impl GroupBy {
    /// The name `--by` takes, the header of the first column and the JSON `group_by`.
    fn name(self) -> &'static str {
        match self {
            GroupBy::Agent => "agent",
            GroupBy::Subject => "subject",
            GroupBy::Chain => "chain",
        }
    }
}

/// What `stats` counts one group's events under. Groups sort by these fields in order,
/// an absent field after every present one: so by subject, then direct calls before
/// delegated ones, then by chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    /// `--by agent`: the agent.
    Agent(Option<String>),
    /// `--by subject`: the subject.
    Subject(Option<String>),
    /// `--by chain` for a delegated call: the subject and the chain, current actor first.
    Delegated(Option<String>, Vec<String>),
    /// `--by chain` for a call without delegation: the subject and the client.
    Direct(Option<String>, Option<String>),
}

impl GroupKey {
    /// The group of `event`.
    fn of(event: &AuditEvent, by: GroupBy) -> GroupKey {
        match by {
            GroupBy::Agent => GroupKey::Agent(event.agent.clone()),
            GroupBy::Subject => GroupKey::Subject(event.subject.clone()),
            GroupBy::Chain if event.delegation_chain.is_empty() => {
                GroupKey::Direct(event.subject.clone(), event.client_id.clone())
            }
            GroupBy::Chain => {
                GroupKey::Delegated(event.subject.clone(), event.delegation_chain.clone())
            }
        }
    }

    /// The group's name in the table: `(none)` for an absent field.
    fn label(&self) -> String {
        let text = |v: &Option<String>| v.as_deref().unwrap_or("(none)").to_owned();
        match self {
            GroupKey::Agent(name) | GroupKey::Subject(name) => text(name),
            GroupKey::Delegated(subject, chain) => {
                format!("{} via {}", text(subject), chain.join(" <- "))
            }
            GroupKey::Direct(subject, client) => {
                format!("{} (direct) via {}", text(subject), text(client))
            }
        }
    }

    /// The fields that name the group in JSON (`null` for an absent one).
    fn json_fields(&self) -> Value {
        match self {
            GroupKey::Agent(agent) => json!({ "agent": agent }),
            GroupKey::Subject(subject) => json!({ "subject": subject }),
            GroupKey::Delegated(subject, chain) => json!({
                "subject": subject,
                "delegation_chain": chain,
            }),
            GroupKey::Direct(subject, client) => json!({
                "subject": subject,
                "delegation_chain": [],
                "client_id": client,
            }),
        }
    }

    /// The order of groups: see [`GroupKey`].
    fn sort_key(&self) -> impl Ord + '_ {
        fn last(v: &Option<String>) -> (bool, Option<&str>) {
            (v.is_none(), v.as_deref())
        }
        match self {
            GroupKey::Agent(name) | GroupKey::Subject(name) => (last(name), &[][..], (false, None)),
            GroupKey::Delegated(subject, chain) => (last(subject), &chain[..], (false, None)),
            GroupKey::Direct(subject, client) => (last(subject), &[][..], last(client)),
        }
    }
}

/// Prints counts of the events of `files` that match `filter` per group (`by`): events,
/// allowed, denied, errors and the top targets; then the totals.
pub(crate) fn stats(
    files: &[PathBuf],
    filter: &Filter,
    by: GroupBy,
    as_json: bool,
) -> Result<Outcome, String> {
    conclude(run_stats(files, filter, by, as_json))
}

/// [`stats`], stopping at a closed standard output.
fn run_stats(
    files: &[PathBuf],
    filter: &Filter,
    by: GroupBy,
    as_json: bool,
) -> Result<Outcome, Stop> {
    let mut groups: HashMap<GroupKey, Counts> = HashMap::new();
    let mut total = Counts::default();
    for_each_record(files, filter, |record| {
        let event = &record.event;
        groups
            .entry(GroupKey::of(event, by))
            .or_default()
            .add(event);
        total.add(event);
        Ok(ControlFlow::Continue(()))
    })?;
    let mut groups: Vec<(GroupKey, Counts)> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.sort_key().cmp(&b.0.sort_key()));
    if as_json {
        let rows: Vec<Value> = groups
            .iter()
            .map(|(key, counts)| {
                let mut value = counts.to_json();
                value["group"] = json!(key.label());
                if let (Value::Object(row), Value::Object(fields)) = (&mut value, key.json_fields())
                {
                    row.extend(fields);
                }
                value
            })
            .collect();
        let mut value = json!({
            "group_by": by.name(),
            "groups": rows,
            "total": total.to_json(),
        });
        if by == GroupBy::Agent {
            // The name the groups had before `--by`, for scripts written against it.
            value["agents"] = value["groups"].clone();
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        let mut out = io::stdout().lock();
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(output_error)?;
        return Ok(Outcome::Ok);
    }
    let mut table: Vec<[String; 6]> = groups
        .iter()
        .map(|(key, counts)| stats_row(&key.label(), counts))
        .collect();
    table.push(stats_row("total", &total));
    let header = [
        by.name(),
        "events",
        "allowed",
        "denied",
        "errors",
        "top targets",
    ]
    .map(str::to_owned);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&table) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    for row in std::iter::once(&header).chain(&table) {
        let [group, events, allowed, denied, errors, top] = row;
        let [wg, we, wl, wd, wr] = widths;
        let line = format!(
            "{group:wg$}  {events:>we$}  {allowed:>wl$}  {denied:>wd$}  {errors:>wr$}  {top}"
        );
        writeln!(out, "{}", line.trim_end()).map_err(output_error)?;
    }
    out.flush().map_err(output_error)?;
    Ok(Outcome::Ok)
}

/// A row of the `stats` table, the top targets as `name (count)`.
fn stats_row(group: &str, counts: &Counts) -> [String; 6] {
    let top = counts.top_targets();
    let targets = if top.is_empty() {
        "-".to_owned()
    } else {
        top.iter()
            .map(|(name, count)| format!("{name} ({count})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        group.to_owned(),
        counts.events.to_string(),
        counts.allowed.to_string(),
        counts.denied.to_string(),
        counts.errors.to_string(),
        targets,
    ]
}

// ---------------------------------------------------------------------------------------
// tail
// ---------------------------------------------------------------------------------------

/// Prints the last `count` events of `file` that match `filter`; with `follow`, then
/// prints new events as they are appended, across rotations, until killed.
pub(crate) fn tail(
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
        &mut |record| {
            if count > 0 {
                if last.len() == count {
                    last.pop_front();
                }
                last.push_back(record);
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    if end == End::Partial && !follow {
        warn_partial(&name, pos.lines + 1);
    }
    let mut out = io::stdout().lock();
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
            write_row(&mut out, &COLUMNS, &widths)?;
            for row in &rows {
                write_table_row(&mut out, row, &widths)?;
            }
        }
        Format::Jsonl => {
            for record in &last {
                write_line(&mut out, record)?;
            }
        }
    }
    out.flush().map_err(output_error)?;
    if !follow {
        return Ok(Outcome::Ok);
    }
    let mut print = |record: Record| -> Result<ControlFlow<()>, Stop> {
        match format {
            Format::Table => write_table_row(&mut out, &row(&record.event), &widths)?,
            Format::Jsonl => write_line(&mut out, &record)?,
        }
        out.flush().map_err(output_error)?;
        Ok(ControlFlow::Continue(()))
    };
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

/// Reads the lines of `file` from `pos` to its end, passing matching records to `each`.
fn read_new(
    file: &mut File,
    name: &str,
    pos: &mut Position,
    filter: &Filter,
    each: &mut dyn FnMut(Record) -> Result<ControlFlow<()>, Stop>,
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

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_instants_whatever_their_zone() {
        let midnight = parse_time("2026-11-24T00:00:00Z").unwrap();
        for same in [
            "2026-11-24",
            "2026-11-24T00:00:00",
            "2026-11-24 00:00:00",
            "2026-11-24T00:00:00.000Z",
            "2026-11-24T00:00:00+00:00",
            "2026-11-24T01:30:00+01:30",
            "2026-11-23T22:00:00-02:00",
        ] {
            assert_eq!(parse_time(same), Ok(midnight), "{same}");
        }
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-24T00:00:00+1:00",
            "2026-11-24T00:00:00+24:00",
            "2026-11-24T00:00:00+0a:00",
            "2026-11-24T00:00:00Zjunk",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
