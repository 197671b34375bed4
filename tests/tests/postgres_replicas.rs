//! Several replicas of a server sharing one PostgreSQL database, as docs/deploy.md runs
//! them: three `notes_http_config` processes (configured from a file: `[audit.postgres]`,
//! durable, and `[revocation]`), clients spread over them, one replica SIGKILLed in the
//! middle of the load and started again under its chain id; then revocations. And the
//! database itself restarted while an auditor writes to it, buffered and durable.
//!
//! Each call writes a note with a unique id and the servers record a keyed digest of the
//! arguments; the test holds the key, so it finds each answered call's event by digest.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rmcp_authz::audit::{
    ArgumentRecording, AuditEvent, AuditFailure, Auditor, DecisionKind, Durability, EventKind,
    Outcome,
};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::postgres::{
    Database, PgVerifyOptions, PostgresSink, RevocationKind, revoke, verify_chains,
};
use rmcp_authz_tests::postgres::TestPostgres;
use rmcp_authz_tests::server::spawn_listening;
use serde_json::{Value, json};
use tokio::process::Child;

const AUDIENCE: &str = "https://notes.test.invalid/mcp";
const ISSUER: &str = "https://auth.test.invalid";
const KEY_HEX: &str = "8f1c2a6b9d0e4f7a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c";
const PRODUCERS: usize = 12;

/// A call's answer: its HTTP status, and whether the tool's result came back.
async fn write_note(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
) -> Result<(u16, bool), reqwest::Error> {
    let arguments = json!({"id": id, "text": "replicas"});
    let sent = rmcp_authz_tests::http::write_note(http, url, token, &arguments).await?;
    Ok((sent.status, sent.answered))
}

/// Starts replica `chain` of the server on `config`; returns it and its URL.
async fn start_replica(config: &Path, chain: &str, database_url: &str) -> (Child, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_notes_http_config"));
    command
        .arg(config)
        .env("NOTES_AUDIT_KEY", KEY_HEX)
        .env("AUDIT_DATABASE_URL", database_url)
        .env("REPLICA_ID", chain);
    spawn_listening(command).await
}

fn write_config(dir: &Path, issuer: &DevIssuer) -> std::path::PathBuf {
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
durability = "durable"
hmac_key_env = "NOTES_AUDIT_KEY"

[audit.postgres]
url_env = "AUDIT_DATABASE_URL"
chain_env = "REPLICA_ID"
migrate = true

[revocation]
postgres_url_env = "AUDIT_DATABASE_URL"
"#
        ),
    )
    .unwrap();
    config
}

/// Waits until `count()` reaches `at_least`, for at most 60 s.
async fn wait_for(what: &str, at_least: usize, count: impl Fn() -> usize) {
    let start = Instant::now();
    while count() < at_least {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: only {} of {at_least} in 60 s",
            count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every record of `chain`, or of every chain.
async fn all_events(db: &Database, chain: Option<&str>) -> Vec<AuditEvent> {
    let client = db.connect().await.unwrap();
    client
        .query(
            "SELECT record FROM rmcp_authz_audit WHERE $1::text IS NULL OR chain_id = $1 ORDER BY chain_id, seq",
            &[&chain],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(row.get::<_, &str>(0)).expect("every record parses"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_killed_lose_no_answered_event_and_share_revocations() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::new(ISSUER).unwrap();
    let config = write_config(temp.path(), &issuer);

    let mut replicas = Vec::new();
    for chain in ["replica-0", "replica-1", "replica-2"] {
        replicas.push(start_replica(&config, chain, &pg.url).await);
    }
    let urls: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        replicas.iter().map(|(_, u)| u.clone()).collect(),
    ));
    let token = issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("replica-agent")
        .scopes(["notes:write"])
        .mint()
        .unwrap();

    // (replica index, the call's arguments) of every answered call.
    let answered: Arc<Mutex<Vec<(usize, Value)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (answered, stop, urls, token) =
                (answered.clone(), stop.clone(), urls.clone(), token.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 5_000 {
                    let replica = (p + i) % 3;
                    let url = urls.lock().unwrap()[replica].clone();
                    let id = format!("p{p}-{i}");
                    if let Ok((200, true)) = write_note(&http, &url, &token, &id).await {
                        answered
                            .lock()
                            .unwrap()
                            .push((replica, json!({"id": id, "text": "replicas"})));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let count = || answered.lock().unwrap().len();
    let by_replica = |r: usize| {
        answered
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| *i == r)
            .count()
    };

    wait_for("answers before the kill", 150, count).await;
    let (mut killed, _) = replicas.remove(1);
    killed.start_kill().expect("SIGKILL replica-1");
    assert!(!killed.wait().await.unwrap().success());
    let at_kill = count();
    wait_for("answers while a replica is down", at_kill + 150, count).await;
    // The same chain id again: the new process continues the chain.
    let restarted = start_replica(&config, "replica-1", &pg.url).await;
    urls.lock().unwrap()[1] = restarted.1.clone();
    replicas.insert(1, restarted);
    let before_restart = by_replica(1);
    wait_for(
        "answers from the restarted replica",
        before_restart + 50,
        || by_replica(1),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    // Every chain verifies, the restarted one across both of its processes.
    let results = verify_chains(&db, &PgVerifyOptions::default())
        .await
        .unwrap();
    let chains: Vec<(String, u64)> = results
        .into_iter()
        .map(|r| {
            let report = r.unwrap_or_else(|broken| panic!("a chain is broken: {broken}"));
            (report.chain, report.records)
        })
        .collect();
    assert_eq!(
        chains.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["replica-0", "replica-1", "replica-2"]
    );
    // Every answered call has its event, whichever replica answered it.
    let events = all_events(&db, None).await;
    let recording = ArgumentRecording::with_key(&hex::decode(KEY_HEX).unwrap()).unwrap();
    let recorded: HashSet<&str> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Success && e.target.as_deref() == Some("write_note"))
        .filter_map(|e| e.arguments_hmac.as_deref())
        .collect();
    let missing = answered
        .iter()
        .filter(|(_, a)| !recorded.contains(recording.digest(a).as_str()))
        .count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} answered calls have no event",
        answered.len()
    );
    eprintln!(
        "{} calls answered ({} by replica-1 before its kill and after its restart); chains {chains:?}",
        answered.len(),
        answered.iter().filter(|(r, _)| *r == 1).count()
    );

    // A token revoked (as `rmcp-authz token revoke` does) is refused by every replica
    // within a second; so is every token of a revoked subject.
    let http = reqwest::Client::new();
    let urls = urls.lock().unwrap().clone();
    for (kind, value, token) in [
        (
            RevocationKind::TokenId,
            "leaked-1",
            issuer
                .token(AUDIENCE)
                .subject("bob")
                .claim("jti", "leaked-1")
                .scopes(["notes:write"])
                .mint()
                .unwrap(),
        ),
        (
            RevocationKind::Subject,
            "mallory",
            issuer
                .token(AUDIENCE)
                .subject("mallory")
                .scopes(["notes:write"])
                .mint()
                .unwrap(),
        ),
    ] {
        for url in &urls {
            let (status, ok) = write_note(&http, url, &token, "before").await.unwrap();
            assert!(status == 200 && ok, "accepted before the revocation");
        }
        let expires = SystemTime::now() + Duration::from_secs(3600);
        revoke(&db, kind, value, expires, Some("test"))
            .await
            .unwrap();
        let revoked_at = Instant::now();
        for url in &urls {
            let refused = loop {
                let (status, _) = write_note(&http, url, &token, "after").await.unwrap();
                if status == 401 {
                    break revoked_at.elapsed();
                }
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "{url} still accepts a revoked {} after 1 s",
                    kind.claim()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            eprintln!(
                "{url} refused the revoked {} after {refused:?}",
                kind.claim()
            );
        }
    }
    // A replica that starts now starts with the whole list.
    let (_late, late_url) = start_replica(&config, "replica-3", &pg.url).await;
    let leaked = issuer
        .token(AUDIENCE)
        .subject("bob")
        .claim("jti", "leaked-1")
        .scopes(["notes:write"])
        .mint()
        .unwrap();
    assert_eq!(
        write_note(&http, &late_url, &leaked, "late")
            .await
            .unwrap()
            .0,
        401
    );
}

fn event(id: String) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
    e.target = Some(id);
    e
}

/// Writers recording events as fast as the auditor takes them; each returns the ids
/// whose `record` returned `Ok` and how many failed.
fn spawn_writers(
    auditor: &Auditor,
    writers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<String>, usize)>> {
    (0..writers)
        .map(|w| {
            let (auditor, stop) = (auditor.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acked, mut failed) = (Vec::new(), 0);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{i}");
                    i += 1;
                    let Ok(slot) = auditor.reserve().await else {
                        break;
                    };
                    match slot.record(event(id.clone())).await {
                        Ok(()) => acked.push(id),
                        Err(AuditFailure::Write(_)) => failed += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                (acked, failed)
            })
        })
        .collect()
}

/// The targets of every record of `chain`, after checking the chain verifies.
async fn chain_targets(db: &Database, chain: &str) -> HashSet<String> {
    let report = verify_chains(db, &PgVerifyOptions::default().chain(chain))
        .await
        .unwrap()
        .remove(0)
        .unwrap_or_else(|broken| panic!("{broken}"));
    let events = all_events(db, Some(chain)).await;
    assert_eq!(report.records as usize, events.len());
    let targets: HashSet<String> = events.into_iter().filter_map(|e| e.target).collect();
    assert_eq!(
        targets.len() as u64,
        report.records,
        "no event is written twice (a batch retried after its commit is not written again)"
    );
    targets
}

/// 16 writers into a durable auditor on chain `chain` (fail-closed when the sink gives up
/// after `give_up_after`), while PostgreSQL stops for 1.5 s and starts again; checks that
/// every acknowledged event is in the chain, which verifies. Returns the acknowledged ids
/// and how many requests failed.
async fn durable_through_a_restart(
    pg: &TestPostgres,
    db: &Database,
    chain: &str,
    give_up_after: Option<Duration>,
) -> (Vec<String>, usize) {
    let mut sink = PostgresSink::builder(db.clone(), chain);
    if let Some(limit) = give_up_after {
        sink = sink.give_up_after(limit);
    }
    let auditor = Auditor::builder(Arc::new(sink.connect().unwrap()))
        .durability(Durability::Durable)
        .fail_closed(give_up_after.is_some())
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&auditor, 16, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut failed) = (Vec::new(), 0);
    for w in writers {
        let (ids, f) = w.await.unwrap();
        acked.extend(ids);
        failed += f;
    }
    auditor.close().await;
    let targets = chain_targets(db, chain).await;
    let missing = acked.iter().filter(|id| !targets.contains(*id)).count();
    assert_eq!(
        missing,
        0,
        "{chain}: {missing} of {} acknowledged events are missing",
        acked.len()
    );
    (acked, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_load_loses_nothing_and_durable_waits() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();

    // Buffered: events queued while the database restarts are written once it is back.
    let sink = PostgresSink::builder(db.clone(), "buffered")
        .migrate(true)
        .connect()
        .unwrap();
    let auditor = Auditor::builder(Arc::new(sink)).build().unwrap();
    let produced = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (auditor, produced, stop) = (auditor.clone(), produced.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = produced.fetch_add(1, Ordering::Relaxed);
                auditor
                    .reserve()
                    .await
                    .unwrap()
                    .record(event(format!("b{n}")))
                    .await
                    .unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_millis(700)).await;
    pg.restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    auditor.close().await;
    let stats = auditor.stats();
    let produced = produced.load(Ordering::Relaxed);
    assert_eq!(stats.failed, 0, "{stats:?}");
    let targets = chain_targets(&db, "buffered").await;
    assert_eq!(
        targets.len(),
        produced,
        "every buffered event is in the database"
    );

    // Durable, not fail_closed: requests wait while the database is away, and every one
    // answered has its event.
    let (_, failed) = durable_through_a_restart(&pg, &db, "durable", None).await;
    assert_eq!(failed, 0, "without give_up_after, a durable request waits");

    // Durable and fail_closed (the sink gives up after 300 ms): requests fail while the
    // database is away; every one acknowledged has its event.
    let (acked, failed) =
        durable_through_a_restart(&pg, &db, "closed", Some(Duration::from_millis(300))).await;
    assert!(
        failed > 0,
        "with the database away for 1.5 s, some requests failed closed"
    );
    eprintln!(
        "fail_closed: {} acknowledged, {failed} refused while the database was away",
        acked.len()
    );
}
