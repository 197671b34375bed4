//! What `rmcp-authz` adds to one MCP request, measured in process, without the network.
//!
//! One `tools/call` (a 2026-07-28 stateless request, JSON response) goes through an axum
//! router into rmcp's `StreamableHttpService`, as a server receives it, and the response
//! body is read to the end. Cases, in one run so their ratios compare like with like:
//!
//! - `bare`: rmcp's service alone, no authorization (the baseline);
//! - `authz/cached`: the HTTP layer, the handler wrapper, a buffered audit log writing to
//!   a file, and a verified-token cache in front of an ES256 verifier (the same token on
//!   every request, as an agent presents it);
//! - `authz/uncached`: the same without the cache, so every request checks the signature;
//! - `authz/denied`: a call the policy refuses (403 from the layer, cache on);
//! - `authz/cached_no_audit`: the layer and the wrapper, cache on, no audit log;
//!
//! (The layer alone, in front of an unwrapped handler, is no longer a case: the layer
//! builds only in front of wrapped handlers, since without the wrapper it would fail open.)
//! - `verify_es256`: the signature check and claims alone, to subtract from `uncached`.
//!
//! `cargo bench -p rmcp-authz --features http,cache --bench request_path`. The end-to-end
//! load harness over TCP is `cargo bench -p rmcp-authz-tests --bench load`; see
//! docs/performance.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use criterion::Criterion;
use http::Request;
use http_body_util::BodyExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler};
use rmcp_authz::Authz;
use rmcp_authz::audit::{Auditor, JsonLines};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::Policy;
use rmcp_authz::token::{CacheOptions, CachedVerifier, Verifier};
use serde_json::json;
use tower_service::Service as _;

const AUDIENCE: &str = "http://127.0.0.1/mcp";

/// Two tools: `read` (needs `notes:read`) and `purge` (needs `notes:admin`).
#[derive(Debug, Clone, Default)]
struct Notes;

fn tool(name: &str) -> Option<Tool> {
    ["read", "purge"].contains(&name).then(|| {
        let schema = json!({"type": "object"}).as_object().unwrap().clone();
        Tool::new(
            name.to_owned(),
            format!("the {name} tool"),
            Arc::new(schema),
        )
    })
}

impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tool(name)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            ["read", "purge"].iter().filter_map(|n| tool(n)).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(
            CallToolResult::success(vec![ContentBlock::text(format!("{} done", request.name))])
                .into(),
        )
    }
}

fn config() -> StreamableHttpServerConfig {
    let mut config = StreamableHttpServerConfig::default();
    config.json_response = true;
    config
}

fn bare() -> Router {
    let mcp = StreamableHttpService::new(
        || Ok(Notes),
        Arc::new(LocalSessionManager::default()),
        config(),
    );
    Router::new().nest_service("/mcp", mcp)
}

/// The notes server behind `rmcp-authz` (the layer, the wrapper), with an audit log when
/// given one.
fn authorized(verifier: impl Verifier + 'static, auditor: Option<Auditor>) -> Router {
    let policy = Policy::builder()
        .implies("notes:admin", ["notes:read"])
        .tool("read", "notes:read")
        .tool("purge", "notes:admin")
        .build()
        .unwrap();
    let mut authz = Authz::builder(verifier, policy);
    if let Some(auditor) = auditor {
        authz = authz.auditor(auditor);
    }
    let authz = authz.build();
    authz.router_with("/mcp", || Notes, config()).unwrap()
}

fn call_body(tool: &str) -> Bytes {
    Bytes::from(
        json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": {"id": 7},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"}
                }
            }
        })
        .to_string(),
    )
}

/// Sends one request through `router` and reads the whole response; returns its status.
async fn send(router: &Router, token: &str, tool: &str, body: &Bytes) -> u16 {
    let request = Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body.clone()))
        .unwrap();
    let response = router.clone().call(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    black_box(body);
    status
}

fn request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = DevIssuer::new("https://auth.bench").unwrap();
    let token = issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("notes-agent")
        .scopes(["notes:read"])
        .expires_in(Duration::from_secs(3600))
        .mint()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auditor = |name: &str| {
        let _guard = runtime.enter();
        Auditor::builder(Arc::new(JsonLines::open(dir.path().join(name)).unwrap()))
            .build()
            .unwrap()
    };
    let verifier = || issuer.verifier(AUDIENCE).build().unwrap();
    let read = call_body("read");
    let purge = call_body("purge");

    let cached = || CachedVerifier::new(verifier(), CacheOptions::new());
    let cases: Vec<(&str, Router, &str, &Bytes, u16)> = vec![
        ("bare", bare(), "read", &read, 200),
        (
            "authz/cached",
            authorized(cached(), Some(auditor("cached"))),
            "read",
            &read,
            200,
        ),
        (
            "authz/uncached",
            authorized(verifier(), Some(auditor("uncached"))),
            "read",
            &read,
            200,
        ),
        (
            "authz/denied",
            authorized(cached(), Some(auditor("denied"))),
            "purge",
            &purge,
            403,
        ),
        (
            "authz/cached_no_audit",
            authorized(cached(), None),
            "read",
            &read,
            200,
        ),
    ];
    // `REQUEST_PATH_PROFILE=<case>`: only that case, 20,000 requests (or
    // `REQUEST_PATH_REQUESTS`), for a profiler.
    if let Ok(only) = std::env::var("REQUEST_PATH_PROFILE") {
        let requests: usize = std::env::var("REQUEST_PATH_REQUESTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let (_, router, tool, body, _) = cases
            .iter()
            .find(|c| c.0 == only)
            .expect("REQUEST_PATH_PROFILE names a case");
        runtime.block_on(async {
            for _ in 0..requests {
                send(router, &token, tool, body).await;
            }
        });
        return;
    }
    let mut group = c.benchmark_group("request_path");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, router, tool, body, expected) in &cases {
        // Each case answers as it should before it is timed.
        let status = runtime.block_on(send(router, &token, tool, body));
        assert_eq!(status, *expected, "{name}: unexpected status");
        group.bench_function(*name, |b| {
            b.iter(|| runtime.block_on(send(router, &token, tool, body)));
        });
    }
    let plain = verifier();
    group.bench_function("verify_es256", |b| {
        b.iter(|| plain.verify_sync(black_box(&token)).unwrap());
    });
    group.finish();

    // CPU time per request, all of the process's threads (the audit writer included):
    // unlike wall time, other work on the machine does not inflate it. The cases take
    // turns in small batches, the order reversed every other round, so the machine's drift
    // falls on all of them alike; each batch waits for the audit writer to finish before
    // its CPU time is read.
    if std::env::args().any(|a| a == "--bench") {
        const ROUNDS: usize = 40;
        const BATCH: u32 = 500;
        let names: Vec<&str> = cases.iter().map(|c| c.0).chain(["verify_es256"]).collect();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for round in 0..ROUNDS {
            let mut order: Vec<usize> = (0..names.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let cpu = cpu_time(|| {
                    match cases.get(i) {
                        Some((_, router, tool, body, _)) => runtime.block_on(async {
                            for _ in 0..BATCH {
                                send(router, &token, tool, body).await;
                            }
                        }),
                        None => {
                            for _ in 0..BATCH {
                                black_box(plain.verify_sync(black_box(&token)).unwrap());
                            }
                        }
                    }
                    // The buffered writer writes within its write delay.
                    std::thread::sleep(rmcp_authz::audit::DEFAULT_WRITE_DELAY * 3);
                });
                samples[i].push(cpu.as_secs_f64() * 1e6 / f64::from(BATCH));
            }
        }
        let quartiles = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
        };
        let summary: Vec<(f64, f64, f64)> = samples.iter_mut().map(quartiles).collect();
        let bare = summary[0].1;
        println!(
            "\nCPU time per request, all threads ({ROUNDS} interleaved rounds of {BATCH}; \
             median, and the middle half of the rounds):"
        );
        for (name, (q1, median, q3)) in names.iter().zip(&summary) {
            println!(
                "  {name:<22} {median:>8.2} µs  ({:+.2} µs vs bare)  [{q1:.2} – {q3:.2}]",
                median - bare
            );
        }
    }
    drop(cases);
}

/// The CPU time `work` takes, summed over every thread of this process (Linux
/// `/proc/self/task/*/schedstat`, nanoseconds).
fn cpu_time(work: impl FnOnce()) -> Duration {
    let before = process_cpu();
    work();
    process_cpu().saturating_sub(before)
}

fn process_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task (Linux)") {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// `criterion_main!` written out: the macro's `pub fn` has no doc comment.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    request_path(&mut criterion);
    criterion.final_summary();
}
