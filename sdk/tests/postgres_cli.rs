//! `rmcp-authz audit query|stats|tail --postgres` and `token revoke|unrevoke|revocations`
//! against a real PostgreSQL (a fresh cluster, started by the shared test harness): the
//! database reads as the same records a file holds, with the same output.

use std::collections::HashMap;
use std::process::Command;

use rmcp_authz::audit::{AuditEvent, AuditSink, DecisionKind, EventKind, JsonLines, Outcome};
use rmcp_authz::postgres::{Database, PostgresSink};
use serde_json::Value;

// Shared with the `tests` crate, which uses all of it.
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/src/postgres.rs"]
mod pg;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_rmcp-authz"))
        .args(args)
        .output()
        .expect("the rmcp-authz binary runs");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn event(n: usize) -> AuditEvent {
    let (decision, outcome) = if n.is_multiple_of(3) {
        (DecisionKind::Deny, Outcome::Denied)
    } else {
        (DecisionKind::Allow, Outcome::Success)
    };
    let mut e = AuditEvent::new(EventKind::ToolCall, decision, outcome);
    e.target = Some(format!("tool-{}", n % 4));
    e.agent = Some(format!("agent-{}", n % 2));
    e.subject = Some("alice".to_owned());
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_reads_like_a_file() {
    let pg = pg::TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    let auditor = pg.durable_auditor("replica-a");
    pg::record_all(&auditor, (0..30).map(event)).await;
    auditor.close().await;

    // The same records as a file: the rows of the chain, in order, one per line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let rows =
        pg.psql("SELECT record FROM rmcp_authz_audit WHERE chain_id = 'replica-a' ORDER BY seq");
    std::fs::write(&file, format!("{rows}\n")).unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        run(&["audit", "verify", file]).code,
        0,
        "the exported rows are a valid chain"
    );

    for args in [
        vec!["audit", "query"],
        vec!["audit", "query", "--json"],
        vec!["audit", "query", "--decision", "deny", "--limit", "4"],
        vec!["audit", "stats"],
        vec!["audit", "stats", "--json", "--by", "subject"],
        vec!["audit", "tail", "-n", "5"],
    ] {
        let mut on_file = args.clone();
        on_file.push(file);
        let mut on_db = args.clone();
        on_db.extend(["--postgres", &pg.url]);
        let (f, d) = (run(&on_file), run(&on_db));
        assert_eq!(d.code, 0, "{args:?}: {}", d.stderr);
        assert_eq!(f.code, 0, "{args:?}: {}", f.stderr);
        assert!(!d.stdout.is_empty(), "{args:?} printed nothing");
        assert_eq!(
            d.stdout, f.stdout,
            "{args:?} differs between the file and the database"
        );
    }

    // `audit verify --postgres`: intact, then an anchor saved, then a row edited.
    let verified = run(&["audit", "verify", "--postgres", &pg.url, "--json"]);
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    let report: Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["chains"][0]["chain"], "replica-a");
    assert_eq!(report["chains"][0]["records"], 30);
    let anchor = report["chains"][0]["last_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let anchored = run(&[
        "audit",
        "verify",
        "--postgres",
        &pg.url,
        "--chain",
        "replica-a",
        "--anchor",
        &anchor,
    ]);
    assert_eq!(anchored.code, 0, "{}{}", anchored.stdout, anchored.stderr);
    let unnamed = run(&[
        "audit",
        "verify",
        "--postgres",
        &pg.url,
        "--anchor",
        &anchor,
    ]);
    assert_eq!(
        unnamed.code, 2,
        "an anchor needs --chain: {}",
        unnamed.stderr
    );
    pg.psql("UPDATE rmcp_authz_audit SET record = replace(record, 'agent-1', 'agent-9') WHERE chain_id = 'replica-a' AND seq = 8");
    let broken = run(&["audit", "verify", "--postgres", &pg.url, "--json"]);
    assert_eq!(broken.code, 1, "{}", broken.stdout);
    let report: Value = serde_json::from_str(&broken.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["chains"][0]["kind"], "broken");
    assert_eq!(report["chains"][0]["seq"], 9);
    let text = run(&["audit", "verify", "--postgres", &pg.url]);
    assert!(
        text.stdout
            .starts_with("BROKEN: chain \"replica-a\" record 9"),
        "{}",
        text.stdout
    );

    // The URL can come from the environment; a bad one is a clear error, exit 2.
    let from_env = Command::new(env!("CARGO_BIN_EXE_rmcp-authz"))
        .args(["audit", "query", "--json", "--postgres", "env:AUDIT_DB"])
        .env("AUDIT_DB", &pg.url)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(from_env.stdout).unwrap().lines().count(),
        30
    );
    let unset = run(&["audit", "query", "--postgres", "env:RMCP_AUTHZ_NO_SUCH_VAR"]);
    assert_eq!(unset.code, 2);
    assert!(
        unset.stderr.contains("RMCP_AUTHZ_NO_SUCH_VAR"),
        "{}",
        unset.stderr
    );
    let unreachable = run(&[
        "audit",
        "stats",
        "--postgres",
        "postgres://rmcp:secret@127.0.0.1:1/x",
    ]);
    assert_eq!(unreachable.code, 2);
    assert!(
        unreachable.stderr.contains("127.0.0.1:1/x"),
        "{}",
        unreachable.stderr
    );
    assert!(
        !unreachable.stderr.contains("secret"),
        "the password leaked: {}",
        unreachable.stderr
    );
    let both = run(&["audit", "query", file, "--postgres", &pg.url]);
    assert_eq!(both.code, 2, "files and --postgres together are refused");

    // A file sink and the database sink fed the same events hold the same lines.
    let twin = dir.path().join("twin.jsonl");
    let file_sink = JsonLines::open(&twin).unwrap();
    let events: Vec<AuditEvent> = (0..3).map(event).collect();
    file_sink.write(&events).unwrap();
    let db_sink = PostgresSink::builder(db.clone(), "twin").connect().unwrap();
    db_sink.commit(&events, true).unwrap();
    let twin_rows =
        pg.psql("SELECT record FROM rmcp_authz_audit WHERE chain_id = 'twin' ORDER BY seq");
    assert_eq!(
        format!("{twin_rows}\n"),
        std::fs::read_to_string(&twin).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_revoked_listed_and_unrevoked_from_the_command_line() {
    let pg = pg::TestPostgres::start();
    let db = Database::parse(&pg.url).unwrap();
    // The schema, as a server started with `migrate = true` would apply it.
    drop(
        PostgresSink::builder(db, "setup")
            .migrate(true)
            .connect()
            .unwrap(),
    );

    let revoked = run(&[
        "token",
        "revoke",
        "--jti",
        "t-1",
        "--postgres",
        &pg.url,
        "--ttl",
        "2h",
        "--reason",
        "leaked",
    ]);
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    assert!(
        revoked.stdout.contains("revoked jti \"t-1\""),
        "{}",
        revoked.stdout
    );
    let sub = run(&[
        "token",
        "revoke",
        "--sub",
        "mallory",
        "--postgres",
        &pg.url,
        "--json",
    ]);
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    let listed = run(&["token", "revocations", "--postgres", &pg.url, "--json"]);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let entries: HashMap<String, Value> = listed["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!(
                    "{}:{}",
                    e["kind"].as_str().unwrap(),
                    e["value"].as_str().unwrap()
                ),
                e.clone(),
            )
        })
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries["jti:t-1"]["reason"], "leaked");
    assert!(entries.contains_key("sub:mallory"));
    assert_eq!(
        pg.psql("SELECT extract(epoch FROM expires_at - revoked_at)::int / 60 FROM rmcp_authz_revocations WHERE value = 't-1'"),
        "120"
    );

    let lifted = run(&["token", "unrevoke", "--jti", "t-1", "--postgres", &pg.url]);
    assert_eq!(lifted.code, 0, "{}", lifted.stderr);
    let again = run(&["token", "unrevoke", "--jti", "t-1", "--postgres", &pg.url]);
    assert_eq!(again.code, 1, "nothing left to lift");
    let neither = run(&["token", "revoke", "--postgres", &pg.url]);
    assert_eq!(neither.code, 2, "a revocation names a jti or a subject");
}
