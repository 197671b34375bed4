//! Under `fail_closed`, a tool runs only once its intent is recorded: a refusal (-32005)
//! means the tool did not run, so a client retrying after one repeats no side effect.
//! Checked with a tool whose every run is counted, behind a real audit file that cannot
//! be written (`/dev/full`: every write fails with "no space left"), and one that can.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceError, tool, tool_handler, tool_router};
use rmcp_authz::audit::{
    AuditError, AuditEvent, AuditSink, Auditor, Durability, JsonLines, Outcome,
};
use rmcp_authz::policy::Policy;
use rmcp_authz::{AUDIT_UNAVAILABLE, Authz};
use rmcp_authz_tests::server::connect_in_memory;

/// A tool with a side effect: each run adds one charge.
#[derive(Clone)]
struct Charges {
    runs: Arc<AtomicUsize>,
    tool_router: Arc<ToolRouter<Self>>,
}

#[tool_router]
impl Charges {
    fn new(runs: Arc<AtomicUsize>) -> Self {
        Charges {
            runs,
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    #[tool(description = "Charge the card once")]
    async fn charge(&self) -> String {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        format!("charge {n}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Charges {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A real audit file until `full` is set, then `/dev/full`, where every write fails as on
/// a full disk.
#[derive(Debug)]
struct Filling {
    file: JsonLines,
    full: JsonLines,
    is_full: AtomicBool,
}

impl Filling {
    fn sink(&self) -> &JsonLines {
        if self.is_full.load(Ordering::SeqCst) {
            &self.full
        } else {
            &self.file
        }
    }
}

impl AuditSink for Filling {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        self.sink().write(events)
    }

    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        self.sink().flush(durable)
    }
}

/// Calls `charge` through the wrapper, as the one caller of a stdio-like pipe: for each
/// phase `(full, times)`, sets whether `filling` is full (once connected), then calls
/// `times` times. Returns each call's JSON-RPC error code (`None` when it succeeded).
async fn charge(
    auditor: &Auditor,
    runs: &Arc<AtomicUsize>,
    filling: Option<&Filling>,
    phases: &[(bool, usize)],
) -> Vec<Option<i32>> {
    let issuer = rmcp_authz::dev::DevIssuer::new("https://auth.intent.test.invalid").unwrap();
    let verifier = issuer.verifier("urn:charges").build().unwrap();
    let policy = Policy::builder()
        .tool("charge", "cards:charge")
        .build()
        .unwrap();
    let authz = Authz::builder(verifier, policy)
        .auditor(auditor.clone())
        .build();
    let token = issuer
        .token("urn:charges")
        .subject("alice")
        .scopes(["cards:charge"])
        .mint()
        .unwrap();
    let principal = authz.verifier().verify(&token).await.unwrap();
    let wrapped = authz
        .wrap_for(Charges::new(runs.clone()), principal)
        .unwrap();
    let (client, _server) = connect_in_memory(wrapped).await;
    let mut codes = Vec::new();
    for &(full, times) in phases {
        if let Some(filling) = filling {
            filling.is_full.store(full, Ordering::SeqCst);
        }
        for _ in 0..times {
            let result = client.call_tool(CallToolRequestParams::new("charge")).await;
            codes.push(match result {
                Ok(_) => None,
                Err(ServiceError::McpError(e)) => Some(e.code.0),
                Err(other) => panic!("{other:?}"),
            });
        }
    }
    let _ = client.cancel().await;
    codes
}

#[tokio::test]
async fn a_refused_call_never_ran_its_tool() {
    for durability in [Durability::Durable, Durability::default()] {
        let dir = tempfile::tempdir().unwrap();
        let filling = Arc::new(Filling {
            file: JsonLines::open(dir.path().join("audit.jsonl")).unwrap(),
            full: JsonLines::open("/dev/full").expect("/dev/full opens"),
            is_full: AtomicBool::new(false),
        });
        let auditor = Auditor::builder(filling.clone())
            .durability(durability)
            .fail_closed(true)
            .build()
            .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        // The disk fills between the handshake and the first call: no call may run. Then
        // it is writable again: calls run, each answered.
        let codes = charge(&auditor, &runs, Some(&filling), &[(true, 5), (false, 4)]).await;
        assert_eq!(codes[..5], [Some(AUDIT_UNAVAILABLE.0); 5], "{durability:?}");
        let answered = codes[5..].iter().filter(|c| c.is_none()).count();
        assert!(answered >= 3, "{durability:?}: {codes:?}");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            answered,
            "{durability:?}: only answered calls charged the card ({codes:?})"
        );
        assert!(
            auditor.stats().fail_closed_refusals >= 5,
            "{:?}",
            auditor.stats()
        );
        auditor.close().await;
    }
}

#[tokio::test]
async fn the_intent_comes_first_and_the_outcome_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let auditor = Auditor::builder(Arc::new(JsonLines::open(&path).unwrap()))
        .fail_closed(true)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        charge(&auditor, &runs, None, &[(false, 2)]).await,
        vec![None, None]
    );
    auditor.close().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let events: Vec<AuditEvent> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &AuditEvent| e.target.as_deref() == Some("charge"))
        .collect();
    let outcomes: Vec<Outcome> = events.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Started,
            Outcome::Success,
            Outcome::Started,
            Outcome::Success
        ]
    );
    for pair in events.chunks(2) {
        assert_eq!(pair[1].intent_id.as_deref(), Some(pair[0].id.as_str()));
        assert_eq!(pair[0].request_id, pair[1].request_id);
        assert_eq!(pair[0].subject.as_deref(), Some("alice"));
        assert!(pair[0].intent_id.is_none());
    }

    // Without fail_closed, one event per call and no intent.
    let plain = dir.path().join("plain.jsonl");
    let auditor = Auditor::builder(Arc::new(JsonLines::open(&plain).unwrap()))
        .build()
        .unwrap();
    assert_eq!(
        charge(&auditor, &runs, None, &[(false, 1)]).await,
        vec![None]
    );
    auditor.close().await;
    let text = std::fs::read_to_string(&plain).unwrap();
    let calls: Vec<AuditEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &AuditEvent| e.target.as_deref() == Some("charge"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, Outcome::Success);
    assert!(calls[0].intent_id.is_none());
}
