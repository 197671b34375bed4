//! The PostgreSQL audit sink and shared revocation list against a real PostgreSQL 15
//! (a fresh cluster per test, `rmcp_authz_tests::postgres`): chains written, continued
//! after a restart, verified, and every kind of tampering caught; revocations reaching
//! every follower within a second, and a restarted follower starting with the full list.

use std::time::{Duration, Instant, SystemTime};

use rmcp_authz::audit::{AuditEvent, DecisionKind, EventKind, Outcome};
use rmcp_authz::postgres::{
    ChainBreakKind, Database, PgVerifyOptions, PostgresSink, RevocationKind, SharedRevocations,
    revoke, unrevoke, verify_chains,
};
use rmcp_authz::token::{CacheOptions, CachedVerifier, Revocations};
use rmcp_authz_tests::postgres::{TestPostgres, record_all};

fn event(n: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
    e.target = Some(format!("tool-{n}"));
    e
}

/// Writes `n` events to `chain` of `pg` through a durable auditor, and closes it.
async fn write(pg: &TestPostgres, chain: &str, n: usize) {
    let auditor = pg.durable_auditor(chain);
    record_all(&auditor, (0..n).map(event)).await;
    auditor.close().await;
}

async fn verify(
    db: &Database,
    options: &PgVerifyOptions,
) -> Vec<Result<(String, u64), (String, ChainBreakKind, Option<i64>)>> {
    verify_chains(db, options)
        .await
        .expect("read the chains")
        .into_iter()
        .map(|r| match r {
            Ok(report) => Ok((report.chain, report.records)),
            Err(broken) => Err((broken.chain, broken.kind, broken.seq)),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_is_written_verified_and_continued_after_a_restart() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    write(&pg, "replica-a", 25).await;
    write(&pg, "replica-b", 5).await;
    assert_eq!(
        verify(&db, &PgVerifyOptions::default()).await,
        vec![Ok(("replica-a".into(), 25)), Ok(("replica-b".into(), 5))]
    );
    // A new process with the same chain id continues the chain.
    write(&pg, "replica-a", 10).await;
    assert_eq!(
        verify(&db, &PgVerifyOptions::default().chain("replica-a")).await,
        vec![Ok(("replica-a".into(), 35))]
    );
    assert_eq!(
        pg.psql(
            "SELECT min(seq), max(seq), count(*) FROM rmcp_authz_audit WHERE chain_id = 'replica-a'"
        ),
        "1|35|35"
    );
    // Each row is the record as a file line holds it, prev_hash last.
    let first =
        pg.psql("SELECT record FROM rmcp_authz_audit WHERE chain_id = 'replica-a' AND seq = 1");
    let value: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(value["target"], "tool-0");
    assert_eq!(value["prev_hash"], rmcp_authz::audit::GENESIS_HASH);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_deleted_or_reordered_row_is_caught() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    for chain in ["edit", "delete", "reorder", "truncate", "prune", "intact"] {
        write(&pg, chain, 12).await;
    }
    let report = verify_chains(&db, &PgVerifyOptions::default().chain("truncate"))
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let anchor = report.last_hash.clone();
    assert_eq!(report.last_seq, 12);

    pg.psql("UPDATE rmcp_authz_audit SET record = replace(record, 'tool-4', 'tool-X') WHERE chain_id = 'edit' AND seq = 5");
    pg.psql("DELETE FROM rmcp_authz_audit WHERE chain_id = 'delete' AND seq = 7");
    // Swap two records.
    pg.psql("UPDATE rmcp_authz_audit a SET record = b.record FROM rmcp_authz_audit b WHERE a.chain_id = 'reorder' AND b.chain_id = 'reorder' AND ((a.seq = 3 AND b.seq = 4) OR (a.seq = 4 AND b.seq = 3))");
    // Drop the newest two records, and move the head back to match: only the anchor
    // tells.
    pg.psql("DELETE FROM rmcp_authz_audit WHERE chain_id = 'truncate' AND seq > 10");
    pg.psql("UPDATE rmcp_authz_audit_chains h SET last_seq = 10, last_hash = encode(sha256(convert_to(a.record, 'UTF8')), 'hex') FROM rmcp_authz_audit a WHERE h.chain_id = 'truncate' AND a.chain_id = 'truncate' AND a.seq = 10");
    pg.psql("DELETE FROM rmcp_authz_audit WHERE chain_id = 'prune' AND seq <= 2");

    let results = verify(
        &db,
        &PgVerifyOptions::default().anchor("truncate", anchor.clone()),
    )
    .await;
    assert_eq!(
        results,
        vec![
            Err(("delete".into(), ChainBreakKind::Gap, Some(8))),
            Err(("edit".into(), ChainBreakKind::Broken, Some(6))),
            Ok(("intact".into(), 12)),
            Err(("prune".into(), ChainBreakKind::MissingStart, Some(3))),
            Err(("reorder".into(), ChainBreakKind::Broken, Some(3))),
            Err(("truncate".into(), ChainBreakKind::AnchorMissing, None)),
        ]
    );
    // Without the anchor, the truncated chain (head moved too) verifies: what anchors are
    // for. Pruned on purpose, the pruned chain verifies with `rotated`.
    let without = verify(&db, &PgVerifyOptions::default().chain("truncate")).await;
    assert_eq!(without, vec![Ok(("truncate".into(), 10))]);
    let rotated = verify(
        &db,
        &PgVerifyOptions::default().chain("prune").rotated(true),
    )
    .await;
    assert_eq!(rotated, vec![Ok(("prune".into(), 10))]);

    // Deleting the newest record without moving the head is caught by the head.
    pg.psql("DELETE FROM rmcp_authz_audit WHERE chain_id = 'intact' AND seq = 12");
    let head = verify(&db, &PgVerifyOptions::default().chain("intact")).await;
    assert_eq!(
        head,
        vec![Err(("intact".into(), ChainBreakKind::Head, Some(12)))]
    );
    // And a sink refuses to continue a chain whose head does not name its last row.
    let refused = PostgresSink::builder(db.clone(), "intact")
        .connect()
        .unwrap_err();
    assert!(
        refused.to_string().contains("audit verify --postgres"),
        "{refused}"
    );
}

/// Polls `check` until it holds or `limit` passes; returns how long it took.
async fn within(limit: Duration, check: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().then(|| start.elapsed())
}

fn list() -> Revocations {
    CachedVerifier::new((), CacheOptions::default()).revocations()
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_reach_every_replica_within_a_second() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    // The schema, as the first replica to start would apply it.
    write(&pg, "setup", 0).await;
    let replicas: Vec<SharedRevocations> = (0..3)
        .map(|_| SharedRevocations::start(db.clone(), list()).unwrap())
        .collect();
    let in_a_day = SystemTime::now() + Duration::from_secs(86_400);
    revoke(
        &db,
        RevocationKind::TokenId,
        "jti-1",
        in_a_day,
        Some("leaked"),
    )
    .await
    .unwrap();
    for r in &replicas {
        let took = within(Duration::from_secs(1), || {
            r.revocations().is_revoked("jti-1")
        })
        .await;
        assert!(
            took.is_some(),
            "a replica did not see the revocation within 1 s"
        );
    }
    // Through one replica's handle: at once there, within a second elsewhere.
    replicas[0]
        .revoke(
            RevocationKind::Subject,
            "alice",
            Duration::from_secs(600),
            None,
        )
        .await
        .unwrap();
    assert!(replicas[0].revocations().is_subject_revoked("alice"));
    for r in &replicas[1..] {
        let took = within(Duration::from_secs(1), || {
            r.revocations().is_subject_revoked("alice")
        })
        .await;
        assert!(
            took.is_some(),
            "a replica did not see the subject revocation within 1 s"
        );
    }
    // A replica that starts later starts with the whole list.
    let late = SharedRevocations::start(db.clone(), list()).unwrap();
    assert!(late.revocations().is_revoked("jti-1"));
    assert!(late.revocations().is_subject_revoked("alice"));
    assert!(!late.revocations().is_revoked("jti-2"));
    // Lifting a revocation reaches them too.
    assert!(
        unrevoke(&db, RevocationKind::TokenId, "jti-1")
            .await
            .unwrap()
    );
    for r in replicas.iter().chain([&late]) {
        let took = within(Duration::from_secs(1), || {
            !r.revocations().is_revoked("jti-1")
        })
        .await;
        assert!(
            took.is_some(),
            "a replica still refuses an unrevoked jti after 1 s"
        );
    }
    // A change made with psql, not through the library, is announced all the same.
    pg.psql("INSERT INTO rmcp_authz_revocations (kind, value, expires_at) VALUES ('jti', 'by-hand', now() + interval '1 hour')");
    let took = within(Duration::from_secs(1), || {
        late.revocations().is_revoked("by-hand")
    })
    .await;
    assert!(took.is_some());
}

/// When PostgreSQL loses commits it had acknowledged (a crash with asynchronous commits,
/// a failover), the chain in the database ends before where the sink left it: the sink
/// goes on from where it ends, rather than failing every later batch.
#[tokio::test(flavor = "multi_thread")]
async fn a_sink_goes_on_when_the_database_lost_its_newest_records() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    let auditor = pg.durable_auditor("lossy");
    record_all(&auditor, (0..10).map(event)).await;
    // What a crash would leave: the last three records and the head's move undone.
    pg.psql("DELETE FROM rmcp_authz_audit WHERE chain_id = 'lossy' AND seq > 7");
    pg.psql("UPDATE rmcp_authz_audit_chains h SET last_seq = 7, last_hash = encode(sha256(convert_to(a.record, 'UTF8')), 'hex') FROM rmcp_authz_audit a WHERE h.chain_id = 'lossy' AND a.chain_id = 'lossy' AND a.seq = 7");
    record_all(&auditor, (10..15).map(event)).await;
    auditor.close().await;
    assert_eq!(auditor.stats().failed, 0, "{:?}", auditor.stats());
    assert_eq!(
        verify(&db, &PgVerifyOptions::default().chain("lossy")).await,
        vec![Ok(("lossy".into(), 12))]
    );
    assert_eq!(
        pg.psql("SELECT string_agg(record::jsonb->>'target', ',' ORDER BY seq) FROM rmcp_authz_audit WHERE chain_id = 'lossy' AND seq > 6"),
        "tool-6,tool-10,tool-11,tool-12,tool-13,tool-14"
    );
}

/// A follower whose connection drops (PostgreSQL restarted) reconnects, reloads, and
/// applies what was revoked meanwhile; its list is kept while the database is away.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_reconnects_after_the_database_restarts() {
    let pg = TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    write(&pg, "setup", 0).await;
    let in_a_day = SystemTime::now() + Duration::from_secs(86_400);
    revoke(&db, RevocationKind::TokenId, "before", in_a_day, None)
        .await
        .unwrap();
    let follower = SharedRevocations::start(db.clone(), list()).unwrap();
    assert!(follower.revocations().is_revoked("before"));
    pg.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        follower.revocations().is_revoked("before"),
        "the list is kept while the database is away"
    );
    pg.restart();
    revoke(&db, RevocationKind::TokenId, "meanwhile", in_a_day, None)
        .await
        .unwrap();
    let took = within(Duration::from_secs(10), || {
        follower.revocations().is_revoked("meanwhile")
    })
    .await;
    assert!(
        took.is_some(),
        "the follower never caught up after the restart"
    );
    // And it listens again: a later change arrives within a second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    revoke(&db, RevocationKind::Subject, "later", in_a_day, None)
        .await
        .unwrap();
    let took = within(Duration::from_secs(1), || {
        follower.revocations().is_subject_revoked("later")
    })
    .await;
    assert!(took.is_some(), "no notification after reconnecting");
}
