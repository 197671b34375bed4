//! Which events `query`, `stats` and `tail` select: the [`Filter`] flags they share.

use std::time::SystemTime;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::read::Record;
use super::timestamp::parse_time;
use crate::audit::{DecisionKind, EventKind, Outcome as EventOutcome};

/// Which events `query`, `stats` and `tail` select: every filter given must hold.
#[derive(Debug, Clone, Default, clap::Args)]
pub(in crate::cli) struct Filter {
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
        &["success", "tool_error", "protocol_error", "denied", "cancelled", "started"]
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
    pub(super) fn matches(&self, record: &Record) -> bool {
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
