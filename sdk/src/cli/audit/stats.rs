//! `audit stats`: counts of events per agent, subject or delegation chain (events, allowed,
//! denied, errors, the most used targets), then the totals.

use std::collections::HashMap;
use std::io::{self, Write};
use std::ops::ControlFlow;

use serde_json::{Value, json};

use super::filter::Filter;
use super::read::{Source, for_each_record};
use super::{Stop, conclude, output_error};
use crate::audit::{AuditEvent, DecisionKind, Outcome as EventOutcome};
use crate::cli::Outcome;

/// How many targets `stats` lists per group.
const TOP_TARGETS: usize = 5;

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
pub(in crate::cli) enum GroupBy {
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

/// Prints counts of the events of `source` that match `filter` per group (`by`): events,
/// allowed, denied, errors and the top targets; then the totals.
pub(in crate::cli) fn stats(
    source: &Source,
    filter: &Filter,
    by: GroupBy,
    as_json: bool,
) -> Result<Outcome, String> {
    conclude(run_stats(source, filter, by, as_json))
}

/// [`stats`], stopping at a closed standard output.
fn run_stats(
    source: &Source,
    filter: &Filter,
    by: GroupBy,
    as_json: bool,
) -> Result<Outcome, Stop> {
    let mut groups: HashMap<GroupKey, Counts> = HashMap::new();
    let mut total = Counts::default();
    for_each_record(source, filter, |record| {
        let event = &record.event;
        // An intent (`fail_closed`) is followed by its outcome's event, which is counted.
        if event.outcome == EventOutcome::Started {
            return Ok(ControlFlow::Continue(()));
        }
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
