//! Crash safety of the `durable` audit log: a real server process, configured from a
//! file, is killed with SIGKILL in the middle of a burst of concurrent calls. Every call
//! that got an answer must have its event on disk; the file must parse and its chain
//! verify (a torn last line is tolerated only as reported, never as a valid record).
//!
//! Each call writes a note with a unique id, and the server records a keyed digest of the
//! arguments; the test holds the key, so it finds each answered call's event by digest.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp_authz::audit::{ArgumentRecording, AuditEvent, Outcome, verify_chain};
use rmcp_authz::dev::DevIssuer;
use serde_json::{Value, json};

const AUDIENCE: &str = "https://notes.test.invalid/mcp";
const ISSUER: &str = "https://auth.test.invalid";
/// The audit HMAC key, as the server reads it from its environment (hex).
const KEY_HEX: &str = "8f1c2a6b9d0e4f7a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c";

/// Producers sending calls at once, and how many answers to wait for before the kill.
const PRODUCERS: usize = 16;
const ANSWERS_BEFORE_KILL: usize = 150;

fn key() -> Vec<u8> {
    hex::decode(KEY_HEX).unwrap()
}

/// One `tools/call write_note` as a 2026-07-28 client sends it; `Some(arguments)` when
/// the server answered it with a result.
async fn write_note(http: &reqwest::Client, url: &str, token: &str, id: &str) -> Option<Value> {
    let arguments = json!({"id": id, "text": "burst"});
    let sent = rmcp_authz_tests::http::write_note(http, url, token, &arguments).await;
    sent.ok()
        .filter(|w| w.status == 200 && w.answered)
        .map(|_| arguments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_durable_burst_loses_no_answered_call() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let issuer = DevIssuer::new(ISSUER).unwrap();
    std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[verifier]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "jwks.json"

[policy.tools]
write_note = "notes:write"

[audit]
file = "audit.jsonl"
durability = "durable"
hmac_key_env = "NOTES_AUDIT_KEY"
"#
        ),
    )
    .unwrap();

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_notes_http_config"));
    command.arg(&config).env("NOTES_AUDIT_KEY", KEY_HEX);
    let (mut child, url) = rmcp_authz_tests::server::spawn_listening(command).await;
    let token = issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("burst-agent")
        .scopes(["notes:write"])
        .mint()
        .unwrap();

    let answered: Arc<Mutex<Vec<Value>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (answered, stop) = (answered.clone(), stop.clone());
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                // Bounded: a producer stops at the first unanswered call (the server is
                // gone) or after 2,000 calls.
                for i in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match write_note(&http, &url, &token, &format!("p{p}-{i}")).await {
                        Some(arguments) => answered.lock().unwrap().push(arguments),
                        None => break,
                    }
                }
            })
        })
        .collect();

    // Kill in the middle of the burst: producers are still sending.
    for _ in 0..6_000 {
        if answered.lock().unwrap().len() >= ANSWERS_BEFORE_KILL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answered_before_kill = answered.lock().unwrap().len();
    assert!(
        answered_before_kill >= ANSWERS_BEFORE_KILL,
        "only {answered_before_kill} calls answered in 60 s"
    );
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed: {status:?}");
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    // The file parses and its chain verifies; a torn last line is reported, not counted.
    let path = dir.join("audit.jsonl");
    let report = verify_chain(&[&path]).expect("the chain verifies after SIGKILL");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        report.torn_tail.is_some(),
        !bytes.ends_with(b"\n"),
        "a torn last line is reported exactly when there is one: {report:?}"
    );
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => &bytes[..0],
    };
    let events: Vec<AuditEvent> = complete
        .split(|&b| b == b'\n')
        .map(|line| serde_json::from_slice(line).expect("every complete record parses"))
        .collect();
    assert_eq!(events.len(), report.records);

    // Every answered call has its event.
    let recording = ArgumentRecording::with_key(&key()).unwrap();
    let recorded: HashSet<&str> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Success && e.target.as_deref() == Some("write_note"))
        .filter_map(|e| e.arguments_hmac.as_deref())
        .collect();
    let missing: Vec<&Value> = answered
        .iter()
        .filter(|a| !recorded.contains(recording.digest(a).as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered calls have no event on disk: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        events.len() >= answered.len(),
        "{} events for {} answers",
        events.len(),
        answered.len()
    );
    eprintln!(
        "{} calls answered before SIGKILL, {} events on disk, torn tail: {:?}",
        answered.len(),
        events.len(),
        report.torn_tail
    );
}
