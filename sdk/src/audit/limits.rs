//! The size bounds of an audit event.
//!
//! Most of an event comes from the request or the token: the tool name, the JSON-RPC id,
//! the session id, the denial's reason (which quotes the tool), the subject, the scopes.
//! Any of them can be as long as a request body, and the file sink reads its last record
//! back at start-up, at most 1 MiB of it, to continue the chain: one oversized record would
//! stop the next restart. So every field that is not of a fixed size is cut to a bound
//! here, in one place ([`bound`]): the [`Auditor`](super::Auditor)'s writer applies it to
//! each event before any sink sees it, and [`JsonLines`](super::JsonLines) to each event
//! written to it directly.
//!
//! - a string field: at most [`MAX_FIELD_BYTES`] bytes of UTF-8, cut at a character
//!   boundary and ending with [`TRUNCATION_MARKER`];
//! - a list (`delegation_chain`, `scopes_granted`, `scopes_required`, `policies`): at most
//!   [`MAX_LIST_ITEMS`] items of at most [`MAX_FIELD_BYTES`] bytes each and
//!   [`MAX_LIST_BYTES`] bytes together, the items past that dropped (the last one kept may
//!   be cut);
//! - clear `arguments`: left out when their JSON is longer than [`MAX_ARGUMENTS_BYTES`]
//!   (`arguments_hmac` still digests them whole);
//! - the event names every field it cut in `truncated`, which the request cannot set.
//!
//! [`MAX_RECORD_BYTES`], the longest record these bounds allow with every character
//! escaped (six bytes of JSON for a control character), is computed here; the file sink
//! checks at compile time that a restart reads that far back, and a test writes that
//! worst case.
//!
//! The check costs a length comparison a field when nothing is too long (and a
//! serialization of the clear arguments, when they are recorded, that stops at the
//! bound); nothing is allocated or copied unless a field is cut.

use std::io;

use serde_json::Value;

use super::AuditEvent;

/// The most bytes (UTF-8) of one string field of an event, [`TRUNCATION_MARKER`] included.
pub const MAX_FIELD_BYTES: usize = 4096;

/// The most items of one list field of an event (`delegation_chain`, `scopes_granted`,
/// `scopes_required`).
pub const MAX_LIST_ITEMS: usize = 256;

/// The most bytes of all the items of one list field together.
pub const MAX_LIST_BYTES: usize = 16 * 1024;

/// The longest JSON of clear `arguments` that is recorded; longer ones are left out.
pub const MAX_ARGUMENTS_BYTES: usize = 64 * 1024;

/// What a string cut to its bound ends with.
pub const TRUNCATION_MARKER: &str = "...[truncated]";

/// The shape of a field's value, for its bound.
#[derive(Clone, Copy)]
enum Shape {
    /// A string: [`MAX_FIELD_BYTES`].
    Text,
    /// A list of strings: [`MAX_LIST_ITEMS`], [`MAX_LIST_BYTES`].
    List,
    /// Any JSON: [`MAX_ARGUMENTS_BYTES`] of it.
    Json,
}

/// The fields that are bounded, in the order of the record: the names `truncated` may
/// hold.
const BOUNDED: [(&str, Shape); 24] = [
    ("id", Shape::Text),
    ("timestamp", Shape::Text),
    ("reason", Shape::Text),
    ("reason_code", Shape::Text),
    ("agent", Shape::Text),
    ("subject", Shape::Text),
    ("client_id", Shape::Text),
    ("delegation_chain", Shape::List),
    ("issuer", Shape::Text),
    ("token_id", Shape::Text),
    ("dpop_jkt", Shape::Text),
    ("scopes_granted", Shape::List),
    ("scopes_required", Shape::List),
    ("policies", Shape::List),
    ("target", Shape::Text),
    ("method", Shape::Text),
    ("arguments_hmac", Shape::Text),
    ("arguments", Shape::Json),
    ("session_id", Shape::Text),
    ("request_id", Shape::Text),
    ("transport", Shape::Text),
    ("remote_addr", Shape::Text),
    ("intent_id", Shape::Text),
    ("prev_hash", Shape::Text),
];

/// The fields of a fixed size: numbers and enum names, each at most [`FIXED_VALUE_BYTES`]
/// of JSON (a test checks the enums' names).
const FIXED: [&str; 6] = [
    "schema_version",
    "kind",
    "decision",
    "outcome",
    "error_code",
    "duration_ms",
];

/// The most bytes of JSON of a fixed-size value: a `u32` or `i32` takes at most 11, an
/// `f64` at most 24 (`-2.2250738585072014e-308`), an enum name in quotes 24
/// (`"authentication_failure"`).
const FIXED_VALUE_BYTES: usize = 32;

/// The field that names the cut fields.
const TRUNCATED: &str = "truncated";

/// The longest JSON of a string of `bytes` bytes: each byte may be a control character
/// escaped as `\u0001`, and the quotes.
const fn json_string(bytes: usize) -> usize {
    6 * bytes + 2
}

/// The longest JSON of one member `"name":value`, without its value, and the comma before
/// it.
const fn member(name: &str) -> usize {
    name.len() + 4
}

/// The longest record (one line, without its newline) an event within these bounds
/// serializes to, `prev_hash` included: every field present, every string at its bound,
/// every byte escaped.
pub const MAX_RECORD_BYTES: usize = {
    // The braces.
    let mut total = 2;
    let mut i = 0;
    while i < BOUNDED.len() {
        let (name, shape) = BOUNDED[i];
        total += member(name)
            + match shape {
                Shape::Text => json_string(MAX_FIELD_BYTES),
                // The brackets; each item's quotes and comma; its bytes, escaped.
                Shape::List => 2 + 3 * MAX_LIST_ITEMS + 6 * MAX_LIST_BYTES,
                Shape::Json => MAX_ARGUMENTS_BYTES,
            };
        // The name in `truncated`, quoted, and its comma.
        total += name.len() + 3;
        i += 1;
    }
    let mut i = 0;
    while i < FIXED.len() {
        total += member(FIXED[i]) + FIXED_VALUE_BYTES;
        i += 1;
    }
    // `truncated`'s name and brackets.
    total + member(TRUNCATED) + 2
};

/// Whether every field of `event` is within its bound, as [`bound`] leaves it: when it
/// is, `bound` would change nothing.
pub(crate) fn within_bounds(event: &AuditEvent) -> bool {
    // Every field, by name: a new field does not compile until it is bounded here.
    let AuditEvent {
        schema_version: _,
        id,
        timestamp,
        kind: _,
        decision: _,
        reason,
        reason_code,
        outcome: _,
        agent,
        subject,
        client_id,
        delegation_chain,
        issuer,
        token_id,
        dpop_jkt,
        scopes_granted,
        scopes_required,
        policies,
        target,
        method,
        arguments_hmac,
        arguments,
        error_code: _,
        duration_ms: _,
        session_id,
        request_id,
        transport,
        remote_addr,
        intent_id,
        truncated,
        prev_hash,
    } = event;
    let text = |s: &String| s.len() <= MAX_FIELD_BYTES;
    let optional = |s: &Option<String>| s.as_ref().is_none_or(text);
    text(id)
        && text(timestamp)
        && optional(reason)
        && optional(reason_code)
        && optional(agent)
        && optional(subject)
        && optional(client_id)
        && list_within_bounds(delegation_chain)
        && optional(issuer)
        && optional(token_id)
        && optional(dpop_jkt)
        && list_within_bounds(scopes_granted)
        && list_within_bounds(scopes_required)
        && list_within_bounds(policies)
        && optional(target)
        && optional(method)
        && optional(arguments_hmac)
        && arguments.as_ref().is_none_or(json_within_bounds)
        && optional(session_id)
        && optional(request_id)
        && optional(transport)
        && optional(remote_addr)
        && optional(intent_id)
        && optional(prev_hash)
        && names_within_bounds(truncated)
}

/// Cuts every field of `event` to its bound and names the fields it cut in `truncated`
/// (see the module's documentation). Returns whether it changed the event.
pub(crate) fn bound(event: &mut AuditEvent) -> bool {
    let AuditEvent {
        schema_version: _,
        id,
        timestamp,
        kind: _,
        decision: _,
        reason,
        reason_code,
        outcome: _,
        agent,
        subject,
        client_id,
        delegation_chain,
        issuer,
        token_id,
        dpop_jkt,
        scopes_granted,
        scopes_required,
        policies,
        target,
        method,
        arguments_hmac,
        arguments,
        error_code: _,
        duration_ms: _,
        session_id,
        request_id,
        transport,
        remote_addr,
        intent_id,
        truncated,
        prev_hash,
    } = event;
    let mut cuts = Cuts::default();
    cuts.text("id", id);
    cuts.text("timestamp", timestamp);
    cuts.optional("reason", reason);
    cuts.optional("reason_code", reason_code);
    cuts.optional("agent", agent);
    cuts.optional("subject", subject);
    cuts.optional("client_id", client_id);
    cuts.list("delegation_chain", delegation_chain);
    cuts.optional("issuer", issuer);
    cuts.optional("token_id", token_id);
    cuts.optional("dpop_jkt", dpop_jkt);
    cuts.list("scopes_granted", scopes_granted);
    cuts.list("scopes_required", scopes_required);
    cuts.list("policies", policies);
    cuts.optional("target", target);
    cuts.optional("method", method);
    cuts.optional("arguments_hmac", arguments_hmac);
    if arguments.as_ref().is_some_and(|a| !json_within_bounds(a)) {
        *arguments = None;
        cuts.mark("arguments");
    }
    cuts.optional("session_id", session_id);
    cuts.optional("request_id", request_id);
    cuts.optional("transport", transport);
    cuts.optional("remote_addr", remote_addr);
    cuts.optional("intent_id", intent_id);
    cuts.optional("prev_hash", prev_hash);
    if cuts.0 == 0 && names_within_bounds(truncated) {
        return false;
    }
    // The names cut now or before (by an earlier pass, or a caller), once each, in the
    // record's order; anything else a caller put there is dropped.
    let before = std::mem::take(truncated);
    *truncated = BOUNDED
        .iter()
        .enumerate()
        .filter(|&(i, (name, _))| cuts.0 & (1 << i) != 0 || before.iter().any(|b| b == name))
        .map(|(_, (name, _))| (*name).to_owned())
        .collect();
    true
}

/// The fields cut so far, a bit each, by their place in [`BOUNDED`].
#[derive(Default)]
struct Cuts(u32);

impl Cuts {
    fn mark(&mut self, name: &str) {
        let place = BOUNDED.iter().position(|(n, _)| *n == name);
        debug_assert!(place.is_some(), "{name} is not a bounded field");
        if let Some(i) = place {
            self.0 |= 1 << i;
        }
    }

    fn text(&mut self, name: &str, value: &mut String) {
        if value.len() > MAX_FIELD_BYTES {
            cut(value, MAX_FIELD_BYTES);
            self.mark(name);
        }
    }

    fn optional(&mut self, name: &str, value: &mut Option<String>) {
        if let Some(value) = value {
            self.text(name, value);
        }
    }

    fn list(&mut self, name: &str, items: &mut Vec<String>) {
        if list_within_bounds(items) {
            return;
        }
        items.truncate(MAX_LIST_ITEMS);
        let mut left = MAX_LIST_BYTES;
        let mut keep = items.len();
        for (i, item) in items.iter_mut().enumerate() {
            let room = left.min(MAX_FIELD_BYTES);
            if item.len() > room {
                if room < TRUNCATION_MARKER.len() {
                    // Not even the marker fits: this item and the rest go.
                    keep = i;
                    break;
                }
                cut(item, room);
            }
            left -= item.len();
        }
        items.truncate(keep);
        self.mark(name);
    }
}

/// Cuts `value` to at most `limit` bytes (at least [`TRUNCATION_MARKER`]'s length), at a
/// character boundary, ending with [`TRUNCATION_MARKER`].
fn cut(value: &mut String, limit: usize) {
    let mut end = limit.saturating_sub(TRUNCATION_MARKER.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push_str(TRUNCATION_MARKER);
}

fn list_within_bounds(items: &[String]) -> bool {
    let mut total = 0;
    items.len() <= MAX_LIST_ITEMS
        && items.iter().all(|item| {
            total += item.len();
            item.len() <= MAX_FIELD_BYTES && total <= MAX_LIST_BYTES
        })
}

/// Whether `truncated` is as [`bound`] writes it: names of [`BOUNDED`], once each, in
/// order (so at most all of them).
fn names_within_bounds(names: &[String]) -> bool {
    let mut next = 0;
    names.iter().all(
        |name| match BOUNDED[next..].iter().position(|(n, _)| n == name) {
            Some(i) => {
                next += i + 1;
                true
            }
            None => false,
        },
    )
}

/// Whether the JSON of `value` is at most [`MAX_ARGUMENTS_BYTES`] long; serializes no
/// further than that.
fn json_within_bounds(value: &Value) -> bool {
    /// Counts bytes written, and fails past the bound.
    struct Budget(usize);
    impl io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(buf.len())
                .ok_or_else(|| io::Error::other("over the bound"))?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    match value {
        // Nothing to count.
        Value::Null | Value::Bool(_) => true,
        _ => serde_json::to_writer(Budget(MAX_ARGUMENTS_BYTES), value).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{DecisionKind, EventKind, Outcome};

    fn event() -> AuditEvent {
        AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success)
    }

    #[test]
    fn small_events_are_left_alone() {
        let mut e = event();
        e.target = Some("read_note".to_owned());
        e.scopes_granted = vec!["notes:read".to_owned(); MAX_LIST_ITEMS];
        e.arguments = Some(serde_json::json!({"id": "1"}));
        let before = e.clone();
        assert!(within_bounds(&e));
        assert!(!bound(&mut e));
        assert_eq!(e, before);
    }

    #[test]
    fn a_long_string_is_cut_at_a_character_boundary_and_marked() {
        let mut e = event();
        // 'é' is two bytes: the cut falls inside one of them.
        e.target = Some("é".repeat(MAX_FIELD_BYTES));
        e.request_id = Some("x".repeat(MAX_FIELD_BYTES + 1));
        e.method = Some("m".repeat(MAX_FIELD_BYTES));
        assert!(!within_bounds(&e));
        assert!(bound(&mut e));
        let target = e.target.as_deref().unwrap();
        assert!(target.len() <= MAX_FIELD_BYTES, "{}", target.len());
        assert!(target.len() > MAX_FIELD_BYTES - TRUNCATION_MARKER.len() - 2);
        assert!(target.ends_with(TRUNCATION_MARKER));
        assert!(
            target
                .trim_end_matches(TRUNCATION_MARKER)
                .chars()
                .all(|c| c == 'é')
        );
        assert_eq!(e.request_id.as_deref().unwrap().len(), MAX_FIELD_BYTES);
        assert_eq!(
            e.method.as_deref().unwrap().len(),
            MAX_FIELD_BYTES,
            "at the bound: kept"
        );
        assert_eq!(e.truncated, ["target", "request_id"]);
        assert!(within_bounds(&e));
        assert!(!bound(&mut e), "a second pass changes nothing");
    }

    #[test]
    fn a_long_list_keeps_its_first_items_within_the_bounds() {
        let mut e = event();
        e.scopes_granted = (0..MAX_LIST_ITEMS + 10).map(|i| format!("s{i}")).collect();
        e.delegation_chain = vec!["a".repeat(MAX_FIELD_BYTES - 1); 10];
        e.scopes_required = vec!["r".repeat(MAX_FIELD_BYTES + 1)];
        assert!(bound(&mut e));
        assert_eq!(e.scopes_granted.len(), MAX_LIST_ITEMS);
        assert_eq!(
            e.scopes_granted[MAX_LIST_ITEMS - 1],
            format!("s{}", MAX_LIST_ITEMS - 1)
        );
        // Four whole actors fill the list's bytes but for four; the fifth has no room.
        let chain = &e.delegation_chain;
        assert_eq!(
            chain.len(),
            4,
            "{:?}",
            chain.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(chain.iter().map(String::len).sum::<usize>() <= MAX_LIST_BYTES);
        assert_eq!(e.scopes_required.len(), 1);
        assert!(e.scopes_required[0].ends_with(TRUNCATION_MARKER));
        assert_eq!(
            e.truncated,
            ["delegation_chain", "scopes_granted", "scopes_required"]
        );
        assert!(within_bounds(&e));
    }

    #[test]
    fn long_clear_arguments_are_left_out_and_named() {
        let mut e = event();
        e.arguments_hmac = Some("ab".repeat(32));
        e.arguments = Some(serde_json::json!({"text": "x".repeat(MAX_ARGUMENTS_BYTES)}));
        assert!(bound(&mut e));
        assert_eq!(e.arguments, None);
        assert!(e.arguments_hmac.is_some(), "the digest stays");
        assert_eq!(e.truncated, ["arguments"]);
        // Exactly at the bound: kept.
        let at_bound = serde_json::json!("y".repeat(MAX_ARGUMENTS_BYTES - 2));
        assert_eq!(at_bound.to_string().len(), MAX_ARGUMENTS_BYTES);
        assert!(json_within_bounds(&at_bound));
    }

    #[test]
    fn a_callers_truncated_list_is_kept_to_known_names_in_order() {
        let mut e = event();
        e.truncated = vec![
            "target".to_owned(),
            "x".repeat(1 << 20),
            "agent".to_owned(),
            "target".to_owned(),
        ];
        assert!(!within_bounds(&e));
        assert!(bound(&mut e));
        assert_eq!(e.truncated, ["agent", "target"]);
        assert!(within_bounds(&e));
    }

    /// Every bounded field is cut when too long, under the name `truncated` gives it, and
    /// the bounded and fixed fields are all the record's fields.
    #[test]
    fn every_field_is_bounded_or_of_a_fixed_size() {
        let long = || "z".repeat(MAX_FIELD_BYTES + 1);
        let mut e = event();
        e.id = long();
        e.timestamp = long();
        for field in [
            &mut e.reason,
            &mut e.reason_code,
            &mut e.agent,
            &mut e.subject,
            &mut e.client_id,
            &mut e.issuer,
            &mut e.token_id,
            &mut e.dpop_jkt,
            &mut e.target,
            &mut e.method,
            &mut e.arguments_hmac,
            &mut e.session_id,
            &mut e.request_id,
            &mut e.transport,
            &mut e.remote_addr,
            &mut e.intent_id,
            &mut e.prev_hash,
        ] {
            *field = Some(long());
        }
        for list in [
            &mut e.delegation_chain,
            &mut e.scopes_granted,
            &mut e.scopes_required,
            &mut e.policies,
        ] {
            *list = vec![long()];
        }
        e.arguments = Some(Value::String("a".repeat(MAX_ARGUMENTS_BYTES)));
        assert!(bound(&mut e));
        let all: Vec<_> = BOUNDED.iter().map(|(name, _)| *name).collect();
        assert_eq!(e.truncated, all);

        let schema = AuditEvent::json_schema();
        let properties: std::collections::BTreeSet<_> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let known: std::collections::BTreeSet<_> = all
            .iter()
            .copied()
            .chain(FIXED)
            .chain([TRUNCATED])
            .collect();
        assert_eq!(properties, known, "a field of the record has no bound here");

        // The enums' names fit FIXED_VALUE_BYTES, quoted.
        for def in schema["$defs"].as_object().unwrap().values() {
            for variant in def["oneOf"].as_array().unwrap() {
                let name = variant["const"].as_str().unwrap();
                assert!(name.len() + 2 <= FIXED_VALUE_BYTES, "{name}");
            }
        }
    }

    #[test]
    fn the_schema_documents_the_constants() {
        let schema = AuditEvent::json_schema();
        let doc = schema["properties"]["truncated"]["description"]
            .as_str()
            .unwrap()
            .replace('\n', " ");
        for text in [
            format!("at most {MAX_FIELD_BYTES} bytes of UTF-8"),
            format!("`{TRUNCATION_MARKER}`"),
            format!("at most {MAX_LIST_ITEMS} items of {MAX_LIST_BYTES} bytes together"),
            format!("at most {MAX_ARGUMENTS_BYTES} bytes of JSON"),
        ] {
            assert!(doc.contains(&text), "{text:?} not in {doc:?}");
        }
        let guide = include_str!("../../../docs/audit.md").replace('\n', " ");
        for text in [
            format!("{MAX_FIELD_BYTES} bytes"),
            format!("`{TRUNCATION_MARKER}`"),
            format!("{MAX_LIST_ITEMS} items"),
            format!("{MAX_LIST_BYTES} bytes"),
            format!("{MAX_ARGUMENTS_BYTES} bytes"),
            format!("{MAX_RECORD_BYTES} bytes"),
        ] {
            assert!(guide.contains(&text), "docs/audit.md does not say {text:?}");
        }
    }

    /// The longest record the bounds allow: every field present and at its bound, every
    /// byte a control character (six bytes of JSON). It is what [`MAX_RECORD_BYTES`]
    /// counts, give or take the fixed-size fields' slack, and a restart reads it back.
    #[test]
    fn the_longest_record_the_bounds_allow_is_counted_and_a_restart_reads_it() {
        use crate::audit::{AuditSink as _, JsonLines, verify_chain};

        let worst = || "\u{1}".repeat(MAX_FIELD_BYTES);
        let mut e = AuditEvent::new(
            EventKind::AuthenticationFailure,
            DecisionKind::Allow,
            Outcome::ProtocolError,
        );
        e.schema_version = u32::MAX;
        e.id = worst();
        e.timestamp = worst();
        for field in [
            &mut e.reason,
            &mut e.reason_code,
            &mut e.agent,
            &mut e.subject,
            &mut e.client_id,
            &mut e.issuer,
            &mut e.token_id,
            &mut e.dpop_jkt,
            &mut e.target,
            &mut e.method,
            &mut e.arguments_hmac,
            &mut e.session_id,
            &mut e.request_id,
            &mut e.transport,
            &mut e.remote_addr,
            &mut e.intent_id,
        ] {
            *field = Some(worst());
        }
        let item = "\u{1}".repeat(MAX_LIST_BYTES / MAX_LIST_ITEMS);
        for list in [
            &mut e.delegation_chain,
            &mut e.scopes_granted,
            &mut e.scopes_required,
            &mut e.policies,
        ] {
            *list = vec![item.clone(); MAX_LIST_ITEMS];
        }
        e.arguments = Some(Value::String("a".repeat(MAX_ARGUMENTS_BYTES - 2)));
        e.error_code = Some(i32::MIN);
        e.duration_ms = Some(-2.225_073_858_507_201_4e-308);
        e.truncated = BOUNDED.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert!(within_bounds(&e));

        // With the longest prev_hash a caller could set: the count's own worst case.
        let mut longest = e.clone();
        longest.prev_hash = Some(worst());
        assert!(within_bounds(&longest));
        let len = serde_json::to_string(&longest).unwrap().len();
        assert!(len <= MAX_RECORD_BYTES, "{len} > {MAX_RECORD_BYTES}");
        assert!(
            MAX_RECORD_BYTES - len < 256,
            "the count is loose: {len} of {MAX_RECORD_BYTES}"
        );

        // In a file (whose prev_hash is the chain's), then reopened as at a restart.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let sink = JsonLines::open(&file).unwrap();
        sink.write(&[e.clone(), e.clone()]).unwrap();
        drop(sink);
        let sink = JsonLines::open(&file).expect("a restart reads the longest record back");
        sink.write(std::slice::from_ref(&e)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.len() <= MAX_RECORD_BYTES);
        let mut back: AuditEvent = serde_json::from_str(last).unwrap();
        back.prev_hash = None;
        assert_eq!(back, e, "written as it is");
        assert_eq!(verify_chain(&[&file]).unwrap().records, 3);
    }
}
