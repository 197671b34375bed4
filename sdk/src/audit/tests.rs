//! Tests of the audit sinks and the hash chain on real files.

use std::path::PathBuf;

use super::*;

/// A path for a file not yet created, in a fresh temp dir removed (with the file) when
/// dropped.
struct TempFile {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempFile {
    fn new(name: &str) -> TempFile {
        let dir = tempfile::tempdir().unwrap();
        TempFile {
            path: dir.path().join(format!("{name}.jsonl")),
            _dir: dir,
        }
    }
}

fn event(target: &str) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
    e.target = Some(target.to_owned());
    e
}

fn write_n(path: &PathBuf, n: usize) {
    let sink = JsonLines::open(path).unwrap();
    let events: Vec<_> = (0..n).map(|i| event(&format!("tool{i}"))).collect();
    sink.write(&events).unwrap();
    sink.flush(true).unwrap();
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_fresh_chain_starts_at_genesis_and_verifies() {
    let f = TempFile::new("fresh");
    write_n(&f.path, 5);
    let report = verify_chain(&[&f.path]).unwrap();
    assert_eq!(report.records, 5);
    assert!(report.starts_at_genesis);
    assert_eq!(report.torn_tail, None);
}

#[test]
fn reopening_continues_the_chain() {
    let f = TempFile::new("reopen");
    write_n(&f.path, 2);
    write_n(&f.path, 3);
    assert_eq!(verify_chain(&[&f.path]).unwrap().records, 5);
}

#[test]
fn editing_a_record_is_caught_at_the_next_one() {
    let f = TempFile::new("edit");
    write_n(&f.path, 4);
    let mut l = lines(&f.path);
    l[1] = l[1].replace("tool1", "tool9");
    std::fs::write(&f.path, l.join("\n") + "\n").unwrap();
    match verify_chain(&[&f.path]) {
        Err(ChainError::Broken { line, .. }) => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deleting_or_reordering_records_is_caught() {
    let f = TempFile::new("delete");
    write_n(&f.path, 4);
    let mut l = lines(&f.path);
    l.remove(1);
    std::fs::write(&f.path, l.join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_chain(&[&f.path]),
        Err(ChainError::Broken { line: 2, .. })
    ));

    let g = TempFile::new("reorder");
    write_n(&g.path, 4);
    let mut l = lines(&g.path);
    l.swap(1, 2);
    std::fs::write(&g.path, l.join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_chain(&[&g.path]),
        Err(ChainError::Broken { line: 2, .. })
    ));
}

#[test]
fn deleting_the_first_record_is_reported_as_not_starting_at_genesis() {
    let f = TempFile::new("head");
    write_n(&f.path, 3);
    let l = lines(&f.path);
    std::fs::write(&f.path, l[1..].join("\n") + "\n").unwrap();
    // Allowed only when the caller says older files were rotated away.
    let rotated = VerifyOptions::default().rotated(true);
    let report = verify_chain_with(&[&f.path], &rotated).unwrap();
    assert!(!report.starts_at_genesis);
    assert_eq!(report.records, 2);
}

/// Issue 18: a deleted first record left every remaining link intact and passed; it is an
/// error now unless the caller says the log was rotated.
#[test]
fn deleting_the_first_record_is_an_error_unless_rotated() {
    let f = TempFile::new("head-strict");
    write_n(&f.path, 3);
    let l = lines(&f.path);
    // Untouched, it passes strictly.
    assert!(verify_chain(&[&f.path]).unwrap().starts_at_genesis);
    std::fs::write(&f.path, l[1..].join("\n") + "\n").unwrap();
    let first_hash = chain::line_hash(l[0].as_bytes());
    match verify_chain(&[&f.path]) {
        Err(ChainError::MissingStart { path, line, found }) => {
            assert_eq!((path, line), (f.path.display().to_string(), 1));
            assert_eq!(found, first_hash);
        }
        other => panic!("{other:?}"),
    }
    let err = verify_chain_with(&[&f.path], &VerifyOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("earlier records were deleted"),
        "{err}"
    );
    assert!(err.to_string().contains("--rotated"), "{err}");
    assert!(
        verify_chain_with(&[&f.path], &VerifyOptions::default().rotated(true)).is_ok(),
        "rotated"
    );
}

/// An empty first file does not hide the start: the first record is in the next one.
#[test]
fn the_first_record_may_be_in_a_later_file() {
    let (empty, a) = (TempFile::new("empty"), TempFile::new("after-empty"));
    std::fs::write(&empty.path, "").unwrap();
    write_n(&a.path, 2);
    assert!(
        verify_chain(&[&empty.path, &a.path])
            .unwrap()
            .starts_at_genesis
    );
    let l = lines(&a.path);
    std::fs::write(&a.path, l[1..].join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_chain(&[&empty.path, &a.path]),
        Err(ChainError::MissingStart { line: 1, .. })
    ));
}

#[test]
fn an_anchor_is_found_with_the_records_appended_since() {
    let f = TempFile::new("anchor");
    write_n(&f.path, 3);
    let saved = verify_chain(&[&f.path]).unwrap().last_hash;
    write_n(&f.path, 2);
    let report =
        verify_chain_with(&[&f.path], &VerifyOptions::default().anchor(saved.clone())).unwrap();
    let anchor = report.anchor.unwrap();
    assert_eq!(anchor.hash, saved);
    assert_eq!(anchor.at, Some((f.path.display().to_string(), 3)));
    assert_eq!(anchor.records_after, 2);
    // Case does not matter; no anchor, no match reported.
    let upper = VerifyOptions::default().anchor(saved.to_ascii_uppercase());
    assert!(verify_chain_with(&[&f.path], &upper).is_ok());
    assert_eq!(verify_chain(&[&f.path]).unwrap().anchor, None);
}

#[test]
fn dropping_the_anchored_record_is_caught() {
    let f = TempFile::new("anchor-dropped");
    write_n(&f.path, 4);
    let saved = verify_chain(&[&f.path]).unwrap().last_hash;
    let l = lines(&f.path);
    // The newest two records dropped: every remaining link holds.
    std::fs::write(&f.path, l[..2].join("\n") + "\n").unwrap();
    assert!(verify_chain(&[&f.path]).is_ok());
    match verify_chain_with(&[&f.path], &VerifyOptions::default().anchor(saved.clone())) {
        Err(ChainError::AnchorMissing { anchor, path, line }) => {
            assert_eq!(anchor, saved);
            assert_eq!((path, line), (f.path.display().to_string(), 2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rewriting_the_anchored_record_is_caught() {
    let f = TempFile::new("anchor-rewritten");
    write_n(&f.path, 3);
    let saved = verify_chain(&[&f.path]).unwrap().last_hash;
    // The last record rewritten: still linked to the one before, but another hash.
    let mut l = lines(&f.path);
    l[2] = l[2].replace("tool2", "tool7");
    std::fs::write(&f.path, l.join("\n") + "\n").unwrap();
    assert!(verify_chain(&[&f.path]).is_ok());
    assert!(matches!(
        verify_chain_with(&[&f.path], &VerifyOptions::default().anchor(saved)),
        Err(ChainError::AnchorMissing { line: 3, .. })
    ));
}

#[test]
fn a_genesis_anchor_is_found_at_the_start_of_a_chain_only() {
    let f = TempFile::new("anchor-genesis");
    std::fs::write(&f.path, "").unwrap();
    let genesis = VerifyOptions::default().anchor(GENESIS_HASH);
    let report = verify_chain_with(&[&f.path], &genesis).unwrap();
    assert_eq!(
        report.anchor.map(|a| (a.at, a.records_after)),
        Some((None, 0))
    );
    write_n(&f.path, 2);
    let report = verify_chain_with(&[&f.path], &genesis).unwrap();
    assert_eq!(report.anchor.map(|a| a.records_after), Some(2));
    let l = lines(&f.path);
    std::fs::write(&f.path, l[1..].join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_chain_with(&[&f.path], &genesis.rotated(true)),
        Err(ChainError::AnchorMissing { .. })
    ));
}

/// A torn file: `n` records, then the start of another without its newline.
fn torn_file(name: &str, n: usize) -> (TempFile, Vec<u8>) {
    let f = TempFile::new(name);
    write_n(&f.path, n);
    let torn = br#"{"schema_version":1,"id":"01J"#.to_vec();
    let mut bytes = std::fs::read(&f.path).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(&f.path, &bytes).unwrap();
    (f, torn)
}

#[test]
fn repairing_a_torn_file_keeps_the_chain_and_the_torn_bytes() {
    let (f, torn) = torn_file("repair", 3);
    let before = verify_chain(&[&f.path]).unwrap();
    assert!(matches!(
        JsonLines::open(&f.path),
        Err(AuditError::TornTail { .. })
    ));
    let report = repair_torn_tail(&f.path).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.torn_line, 4);
    assert_eq!(report.torn_bytes, torn.len() as u64);
    assert_eq!(report.last_hash, before.last_hash);
    assert!(report.starts_at_genesis);
    assert_eq!(std::fs::read(&report.side_file).unwrap(), torn);
    let side_name = report.side_file.file_name().unwrap().to_string_lossy();
    assert!(side_name.starts_with("repair.jsonl.torn-"), "{side_name}");
    assert_eq!(std::fs::metadata(&f.path).unwrap().len(), report.kept_bytes);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&report.side_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    write_n(&f.path, 2);
    let after = verify_chain(&[&f.path]).unwrap();
    assert_eq!((after.records, after.torn_tail), (5, None));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&lines(&f.path)[3]).unwrap()["prev_hash"],
        before.last_hash.as_str()
    );
}

#[test]
fn repairing_a_file_of_one_torn_line_leaves_it_empty() {
    let f = TempFile::new("repair-only");
    std::fs::write(&f.path, "{\"schema").unwrap();
    let report = repair_torn_tail(&f.path).unwrap();
    assert_eq!(
        (report.records, report.torn_line, report.kept_bytes),
        (0, 1, 0)
    );
    assert_eq!(std::fs::read(&report.side_file).unwrap(), b"{\"schema");
    write_n(&f.path, 1);
    assert!(verify_chain(&[&f.path]).unwrap().starts_at_genesis);
}

#[test]
fn repair_refuses_a_file_that_is_not_torn_and_leaves_it() {
    let f = TempFile::new("repair-whole");
    for bytes in [&b"\n"[..], &b""[..]] {
        std::fs::write(&f.path, bytes).unwrap();
        assert!(matches!(
            repair_torn_tail(&f.path),
            Err(RepairError::NotTorn { .. })
        ));
    }
    write_n(&f.path, 2);
    let before = std::fs::read(&f.path).unwrap();
    let err = repair_torn_tail(&f.path).unwrap_err();
    assert!(matches!(err, RepairError::NotTorn { .. }), "{err:?}");
    assert!(err.to_string().contains("is not torn"), "{err}");
    assert_eq!(std::fs::read(&f.path).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(f.path.parent().unwrap()).unwrap().count(),
        1,
        "no side file"
    );
    assert!(matches!(
        repair_torn_tail(f.path.with_extension("missing")),
        Err(RepairError::Io { .. })
    ));
}

#[test]
fn repair_refuses_a_file_whose_records_before_the_cut_do_not_verify() {
    let (f, torn) = torn_file("repair-broken", 4);
    let text = String::from_utf8(std::fs::read(&f.path).unwrap()).unwrap();
    let edited = text.replacen("tool1", "tool9", 1);
    std::fs::write(&f.path, &edited).unwrap();
    match repair_torn_tail(&f.path) {
        Err(RepairError::Chain {
            source: ChainError::Broken { line, .. },
            ..
        }) => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), edited);
    assert!(edited.ends_with(std::str::from_utf8(&torn).unwrap()));
    assert_eq!(
        std::fs::read_dir(f.path.parent().unwrap()).unwrap().count(),
        1,
        "no side file"
    );
}

/// The active file of a rotated log continues an older file: repairing it alone works.
#[test]
fn repair_accepts_the_active_file_of_a_rotated_log() {
    let (f, _) = torn_file("repair-rotated", 3);
    let text = std::fs::read_to_string(&f.path).unwrap();
    let rest = text.split_once('\n').unwrap().1;
    std::fs::write(&f.path, rest).unwrap();
    let report = repair_torn_tail(&f.path).unwrap();
    assert_eq!(report.records, 2);
    assert!(!report.starts_at_genesis);
}

#[test]
fn a_torn_last_line_is_reported_not_counted_and_blocks_appending() {
    let f = TempFile::new("torn");
    write_n(&f.path, 2);
    let mut bytes = std::fs::read(&f.path).unwrap();
    bytes.extend_from_slice(br#"{"schema_version":1,"id":"#);
    std::fs::write(&f.path, &bytes).unwrap();
    let report = verify_chain(&[&f.path]).unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(report.torn_tail.as_ref().map(|t| t.1), Some(3));
    assert!(matches!(
        JsonLines::open(&f.path),
        Err(AuditError::TornTail { .. })
    ));
}

#[test]
fn the_chain_runs_across_files_in_order() {
    let (a, b) = (TempFile::new("part1"), TempFile::new("part2"));
    write_n(&a.path, 3);
    let all = lines(&a.path);
    std::fs::write(&a.path, all[..2].join("\n") + "\n").unwrap();
    std::fs::write(&b.path, all[2..].join("\n") + "\n").unwrap();
    assert_eq!(verify_chain(&[&a.path, &b.path]).unwrap().records, 3);
    assert!(
        verify_chain(&[&b.path, &a.path]).is_err(),
        "files out of order"
    );
}

#[test]
fn garbage_lines_are_malformed() {
    let f = TempFile::new("garbage");
    std::fs::write(&f.path, "not json\n").unwrap();
    assert!(matches!(
        verify_chain(&[&f.path]),
        Err(ChainError::Malformed { line: 1, .. })
    ));
    std::fs::write(&f.path, "{\"a\":1}\n").unwrap();
    assert!(matches!(
        verify_chain(&[&f.path]),
        Err(ChainError::Malformed { .. })
    ));
}

#[cfg(unix)]
#[test]
fn the_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = TempFile::new("mode");
    write_n(&f.path, 1);
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn an_unwritable_location_is_a_clear_error() {
    let err = JsonLines::open("/nonexistent-dir/audit.jsonl").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir/audit.jsonl"),
        "{err}"
    );
}

#[test]
fn fan_out_reaches_every_sink_and_memory_keeps_order() {
    let a = std::sync::Arc::new(MemorySink::new());
    let b = std::sync::Arc::new(MemorySink::new());
    let fan = FanOut::new(vec![a.clone(), b.clone(), std::sync::Arc::new(TracingSink)]);
    fan.write(&[event("x"), event("y")]).unwrap();
    fan.flush(true).unwrap();
    for sink in [a, b] {
        let targets: Vec<_> = sink.events().into_iter().filter_map(|e| e.target).collect();
        assert_eq!(targets, ["x", "y"]);
    }
}

#[test]
fn the_committed_schema_matches_the_type() {
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/audit-event.schema.json")).unwrap();
    assert_eq!(
        committed,
        AuditEvent::json_schema(),
        "docs/audit-event.schema.json is out of date: regenerate it with \
         `cargo run -p rmcp-authz --example audit_schema > docs/audit-event.schema.json` \
         and bump SCHEMA_VERSION if consumers would notice"
    );
}

/// The file sink splices `prev_hash` into each serialized event instead of cloning the
/// event: its lines must stay byte for byte what `serde_json` writes for the event with
/// `prev_hash` set, so files written before and after verify the same way.
#[test]
fn records_are_byte_for_byte_the_serialized_event_with_its_prev_hash() {
    let f = TempFile::new("bytes");
    let mut full = event("search \"notes\"\n\u{1f600}");
    full.reason = Some("line\tbreak \\ quote \" control \u{1}".to_owned());
    full.reason_code = Some("no_rule".to_owned());
    full.agent = Some("agent".to_owned());
    full.delegation_chain = vec!["a".to_owned(), "b".to_owned()];
    full.scopes_granted = vec!["notes:read".to_owned()];
    full.scopes_required = vec!["notes:write".to_owned()];
    full.arguments = Some(serde_json::json!({"z": [1, 2.5, null], "a": {"b": "c"}}));
    full.error_code = Some(-32602);
    full.duration_ms = Some(0.001);
    full.remote_addr = Some("[::1]:80".to_owned());
    let mut preset = event("preset");
    preset.prev_hash = Some("not the chain's".to_owned());
    let events = [
        event("bare"),
        full,
        preset,
        AuditEvent::new(EventKind::List, DecisionKind::Deny, Outcome::Denied),
    ];
    let sink = JsonLines::open(&f.path).unwrap();
    sink.write(&events[..1]).unwrap();
    sink.write(&events[1..]).unwrap();
    let mut previous = GENESIS_HASH.to_owned();
    let written = lines(&f.path);
    assert_eq!(written.len(), events.len());
    for (line, event) in written.iter().zip(&events) {
        let mut expected = event.clone();
        expected.prev_hash = Some(previous);
        let expected = serde_json::to_string(&expected).unwrap();
        assert_eq!(line, &expected);
        previous = chain::line_hash(line.as_bytes());
    }
    assert_eq!(verify_chain(&[&f.path]).unwrap().last_hash, previous);
}

#[test]
fn line_hash_is_lowercase_sha256_hex() {
    assert_eq!(
        chain::line_hash(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// Issue 13: one request with a huge tool name or JSON-RPC id must not make a record that
/// a restart cannot read past (the file sink reads at most 1 MiB back to find the last
/// record's hash).
#[test]
fn a_huge_target_and_request_id_still_let_a_restart_continue_the_chain() {
    let f = TempFile::new("huge");
    let mut huge = event(&"t".repeat(600 * 1024));
    huge.request_id = Some("\u{1}".repeat(1024 * 1024));
    huge.reason = Some(format!(
        "tool {:?} is not covered by any rule",
        "t".repeat(600 * 1024)
    ));
    let sink = JsonLines::open(&f.path).unwrap();
    sink.write(&[huge]).unwrap();
    sink.flush(true).unwrap();
    drop(sink);
    // The restart.
    let sink = JsonLines::open(&f.path).expect("a restart continues the chain");
    sink.write(&[event("after")]).unwrap();
    sink.flush(true).unwrap();
    let report = verify_chain(&[&f.path]).unwrap();
    assert_eq!(report.records, 2);
    assert!(report.starts_at_genesis);
    let first: AuditEvent = serde_json::from_str(&lines(&f.path)[0]).unwrap();
    assert_eq!(first.truncated, ["reason", "target", "request_id"]);
    for cut in [&first.target, &first.request_id, &first.reason] {
        let cut = cut.as_deref().unwrap();
        assert!(cut.len() <= MAX_FIELD_BYTES && cut.ends_with(TRUNCATION_MARKER));
    }
    assert!(first.target.unwrap().starts_with("ttt"));
}
