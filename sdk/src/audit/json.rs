//! An [`AuditEvent`] as JSON, written by hand: the bytes `serde_json::to_writer` writes
//! for it, field for field, without serde's per-field machinery.
//!
//! The file sink serialises every event on the writer thread, and serde's generic path
//! (each key escaped byte by byte, each skipped field a call) was most of that cost. This
//! writer puts each key down as a constant, escapes strings eight bytes at a time, and
//! hands numbers and the clear arguments (a `serde_json::Value`) to serde_json itself, so
//! their formatting is serde_json's by construction. A property test holds the whole
//! output to `serde_json::to_vec` of random events; the event is destructured without
//! `..`, so a field added to [`AuditEvent`] does not compile until it is written here.

use serde::Serialize;

use super::event::{AuditEvent, DecisionKind, EventKind, Outcome};

/// Appends `event` as serde_json writes it (compact, fields in declaration order, empty
/// optional fields left out).
///
/// # Errors
/// What serde_json says of the clear arguments or a number (nothing, for a `Vec`: kept
/// for the day it could fail).
pub(crate) fn write_event(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let AuditEvent {
        schema_version,
        id,
        timestamp,
        kind,
        decision,
        reason,
        reason_code,
        outcome,
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
        error_code,
        duration_ms,
        session_id,
        request_id,
        transport,
        remote_addr,
        intent_id,
        truncated,
        prev_hash,
    } = event;
    out.extend_from_slice(b"{\"schema_version\":");
    with_serde_json(out, schema_version)?;
    string_field(out, b",\"id\":", id);
    string_field(out, b",\"timestamp\":", timestamp);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind_name(*kind));
    out.extend_from_slice(b"\",\"decision\":\"");
    out.extend_from_slice(decision_name(*decision));
    out.push(b'"');
    optional_string(out, b",\"reason\":", reason);
    optional_string(out, b",\"reason_code\":", reason_code);
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(outcome_name(*outcome));
    out.push(b'"');
    optional_string(out, b",\"agent\":", agent);
    optional_string(out, b",\"subject\":", subject);
    optional_string(out, b",\"client_id\":", client_id);
    list(out, b",\"delegation_chain\":", delegation_chain);
    optional_string(out, b",\"issuer\":", issuer);
    optional_string(out, b",\"token_id\":", token_id);
    optional_string(out, b",\"dpop_jkt\":", dpop_jkt);
    list(out, b",\"scopes_granted\":", scopes_granted);
    list(out, b",\"scopes_required\":", scopes_required);
    list(out, b",\"policies\":", policies);
    optional_string(out, b",\"target\":", target);
    optional_string(out, b",\"method\":", method);
    optional_string(out, b",\"arguments_hmac\":", arguments_hmac);
    if let Some(arguments) = arguments {
        out.extend_from_slice(b",\"arguments\":");
        with_serde_json(out, arguments)?;
    }
    if let Some(code) = error_code {
        out.extend_from_slice(b",\"error_code\":");
        with_serde_json(out, code)?;
    }
    if let Some(ms) = duration_ms {
        out.extend_from_slice(b",\"duration_ms\":");
        with_serde_json(out, ms)?;
    }
    optional_string(out, b",\"session_id\":", session_id);
    optional_string(out, b",\"request_id\":", request_id);
    optional_string(out, b",\"transport\":", transport);
    optional_string(out, b",\"remote_addr\":", remote_addr);
    optional_string(out, b",\"intent_id\":", intent_id);
    list(out, b",\"truncated\":", truncated);
    optional_string(out, b",\"prev_hash\":", prev_hash);
    out.push(b'}');
    Ok(())
}

/// A value serde_json formats (a number, or the clear arguments).
fn with_serde_json(out: &mut Vec<u8>, value: &impl Serialize) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, value)
}

fn string_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    string(out, value);
}

fn optional_string(out: &mut Vec<u8>, key: &[u8], value: &Option<String>) {
    if let Some(value) = value {
        string_field(out, key, value);
    }
}

/// A list of strings, left out when empty.
fn list(out: &mut Vec<u8>, key: &[u8], values: &[String]) {
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    out.extend_from_slice(key);
    out.push(b'[');
    string(out, first);
    for value in rest {
        out.push(b',');
        string(out, value);
    }
    out.push(b']');
}

/// `value` as a JSON string, escaped as serde_json escapes: `"` and `\` with a backslash,
/// the control characters below 0x20 as `\b \t \n \f \r` or `\u00XX` (lowercase hex),
/// everything else (UTF-8 beyond ASCII, DEL, `/`) as it is.
fn string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        escape(out, bytes[at]);
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The index of the first byte at or after `from` that needs escaping.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A high bit in each byte of `word` that is zero; exact for the lowest such byte (a
    // borrow can only mark bytes above a zero byte), which is the one looked for.
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // Bytes below 0x20 (same borrow argument), `"` and `\`.
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let found = below_space
            | zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|b| needs_escape(*b))
        .map(|i| at + i)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The escape of `b`, one of the bytes [`needs_escape`] names.
fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

fn kind_name(kind: EventKind) -> &'static [u8] {
    match kind {
        EventKind::ToolCall => b"tool_call",
        EventKind::ResourceRead => b"resource_read",
        EventKind::PromptGet => b"prompt_get",
        EventKind::List => b"list",
        EventKind::AuthenticationFailure => b"authentication_failure",
        EventKind::Other => b"other",
    }
}

fn decision_name(decision: DecisionKind) -> &'static [u8] {
    match decision {
        DecisionKind::Allow => b"allow",
        DecisionKind::Deny => b"deny",
    }
}

fn outcome_name(outcome: Outcome) -> &'static [u8] {
    match outcome {
        Outcome::Success => b"success",
        Outcome::ToolError => b"tool_error",
        Outcome::ProtocolError => b"protocol_error",
        Outcome::Denied => b"denied",
        Outcome::Cancelled => b"cancelled",
        Outcome::Started => b"started",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            // Mostly plain, with the bytes that need escaping and some beyond ASCII.
            "[a-z0-9:/._ -]{0,40}",
            "[\\x00-\\x7f]{0,40}",
            "[\"\\\\\\x00-\\x1f\\x7f/a-zé€😀]{0,24}",
            any::<String>(),
        ]
    }

    fn optional() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    fn strings() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(text(), 0..4)
    }

    fn arguments() -> impl Strategy<Value = Option<Value>> {
        proptest::option::of(prop_oneof![
            Just(json!({})),
            text().prop_map(|t| json!({ "q": t, "n": 1.5, "list": [t, null, true] })),
            any::<i64>().prop_map(|n| json!({ "n": n })),
        ])
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1.0),
            (0_u32..100_000).prop_map(|n| f64::from(n) / 1000.0),
        ]
    }

    prop_compose! {
        fn event()(
            (schema_version, id, timestamp, kind, decision, outcome) in (
                any::<u32>(), text(), text(), 0_usize..6, any::<bool>(), 0_usize..6,
            ),
            (reason, reason_code, agent, subject, client_id, issuer, token_id, dpop_jkt) in (
                optional(), optional(), optional(), optional(), optional(), optional(),
                optional(), optional(),
            ),
            (delegation_chain, scopes_granted, scopes_required, policies, truncated) in (
                strings(), strings(), strings(), strings(), strings(),
            ),
            (target, method, arguments_hmac, session_id, request_id, transport) in (
                optional(), optional(), optional(), optional(), optional(), optional(),
            ),
            (remote_addr, intent_id, prev_hash, arguments, error_code, duration_ms) in (
                optional(), optional(), optional(), arguments(),
                proptest::option::of(any::<i32>()), proptest::option::of(number()),
            ),
        ) -> AuditEvent {
            let kinds = [
                EventKind::ToolCall, EventKind::ResourceRead, EventKind::PromptGet,
                EventKind::List, EventKind::AuthenticationFailure, EventKind::Other,
            ];
            let outcomes = [
                Outcome::Success, Outcome::ToolError, Outcome::ProtocolError,
                Outcome::Denied, Outcome::Cancelled, Outcome::Started,
            ];
            let decision = if decision { DecisionKind::Allow } else { DecisionKind::Deny };
            let mut event = AuditEvent::new(kinds[kind], decision, outcomes[outcome]);
            event.schema_version = schema_version;
            event.id = id;
            event.timestamp = timestamp;
            event.reason = reason;
            event.reason_code = reason_code;
            event.agent = agent;
            event.subject = subject;
            event.client_id = client_id;
            event.delegation_chain = delegation_chain;
            event.issuer = issuer;
            event.token_id = token_id;
            event.dpop_jkt = dpop_jkt;
            event.scopes_granted = scopes_granted;
            event.scopes_required = scopes_required;
            event.policies = policies;
            event.target = target;
            event.method = method;
            event.arguments_hmac = arguments_hmac;
            event.arguments = arguments;
            event.error_code = error_code;
            event.duration_ms = duration_ms;
            event.session_id = session_id;
            event.request_id = request_id;
            event.transport = transport;
            event.remote_addr = remote_addr;
            event.intent_id = intent_id;
            event.truncated = truncated;
            event.prev_hash = prev_hash;
            event
        }
    }

    fn written(event: &AuditEvent) -> Vec<u8> {
        let mut out = b"kept".to_vec();
        write_event(&mut out, event).unwrap();
        assert_eq!(&out[..4], b"kept", "what was in the buffer stays");
        out.split_off(4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Byte for byte what serde_json writes, for any event.
        #[test]
        fn an_event_is_written_as_serde_json_writes_it(event in event()) {
            let ours = String::from_utf8(written(&event)).unwrap();
            let serde = serde_json::to_string(&event).unwrap();
            prop_assert_eq!(ours, serde);
        }

        /// Strings of every length around the eight-byte steps, with an escape anywhere.
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(
            plain in "[a-z]{0,20}", special in 0_u8..0x80, at in 0_usize..21,
        ) {
            let mut value = plain.clone();
            value.insert(at.min(plain.len()), char::from(special));
            let mut out = Vec::new();
            string(&mut out, &value);
            prop_assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
    }

    #[test]
    fn every_byte_below_0x80_is_escaped_as_serde_json_escapes_it() {
        for b in 0_u8..0x80 {
            let value = format!("ab{}cdefghij{}", char::from(b), char::from(b));
            let mut out = Vec::new();
            string(&mut out, &value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap(), "byte {b:#x}");
        }
    }
}
