//! The load generator: N closed-loop clients, each with its own HTTP/1.1 connection
//! (TCP_NODELAY), sending prebuilt requests with the headers rmcp's own client sends, and
//! checking every response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::{Mode, NOTE_TEXT};

/// A kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `tools/list`.
    List,
    /// `tools/call` of `read_note`: allowed everywhere.
    Allowed,
    /// `tools/call` of `delete_note`: denied by the policy, run by the bare server.
    Denied,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "list" => Ok(Kind::List),
            "allowed" | "allow" => Ok(Kind::Allowed),
            "denied" | "deny" => Ok(Kind::Denied),
            other => Err(format!(
                "unknown request kind {other:?} (list, allowed, denied)"
            )),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::List => "list",
            Kind::Allowed => "allowed",
            Kind::Denied => "denied",
        }
    }
}

/// The rmcp client's own client info, as it sends it.
const META_2026: &str = r#""_meta":{"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"rmcp","version":"3.11.0"},"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":0}"#;

/// One prebuilt request.
#[derive(Debug)]
struct Prebuilt {
    kind: Kind,
    headers: HeaderMap,
    body: &'static [u8],
}

fn leak(s: String) -> &'static [u8] {
    Box::leak(s.into_boxed_str()).as_bytes()
}

fn header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("a valid header value"),
    );
}

/// The body and `(Mcp-Method, Mcp-Name)` of `kind`, as rmcp's client sends them for
/// this protocol (captured from rmcp 3.11's client).
fn body(kind: Kind, modern: bool) -> (String, &'static str, Option<&'static str>) {
    let meta = if modern {
        META_2026.to_owned()
    } else {
        r#""_meta":{"progressToken":0}"#.to_owned()
    };
    match kind {
        Kind::List => (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{meta}}}}}"#),
            "tools/list",
            None,
        ),
        Kind::Allowed => (
            format!(
                r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{{meta},"arguments":{{"id":"welcome"}},"name":"read_note"}}}}"#
            ),
            "tools/call",
            Some("read_note"),
        ),
        Kind::Denied => (
            format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{{meta},"arguments":{{"id":"welcome"}},"name":"delete_note"}}}}"#
            ),
            "tools/call",
            Some("delete_note"),
        ),
    }
}

/// What one run is: where, what, how many clients, for how long.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) url: String,
    pub(crate) mode: Mode,
    pub(crate) token: Arc<str>,
    pub(crate) mix: Vec<Kind>,
    /// Whether the server enforces the policy (the denied call must be refused).
    pub(crate) enforcing: bool,
    pub(crate) clients: usize,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// What one run measured.
#[derive(Debug, Default)]
pub(crate) struct RunResult {
    /// Successful calls completed in the measured window.
    pub(crate) ok: u64,
    /// Failed calls in the measured window (and during warm-up, in `failures_total`).
    pub(crate) failed: u64,
    pub(crate) failures_total: u64,
    /// The first failure seen, if any.
    pub(crate) first_failure: Option<String>,
    /// Latency of every successful call in the window, in nanoseconds.
    pub(crate) latencies: Vec<u64>,
    /// calls/s over the measured window.
    pub(crate) rate: f64,
    /// The server's CPU time over the measured window, in seconds of CPU per second.
    pub(crate) server_cpu: f64,
    /// The generator's own CPU use over the window (1.0 = one core busy).
    pub(crate) generator_cpu: f64,
}

struct ClientResult {
    ok: u64,
    failed: u64,
    failures_total: u64,
    first_failure: Option<String>,
    latencies: Vec<u64>,
}

fn base_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    header(&mut h, "accept", "text/event-stream, application/json");
    header(&mut h, "authorization", &format!("Bearer {token}"));
    header(&mut h, "content-type", "application/json");
    h
}

fn prebuilt(load: &Load, session: Option<&str>) -> Vec<Prebuilt> {
    let modern = load.mode != Mode::Session;
    load.mix
        .iter()
        .map(|&kind| {
            let (body, method, name) = body(kind, modern);
            let mut headers = base_headers(&load.token);
            if modern {
                header(&mut headers, "mcp-protocol-version", "2026-07-28");
                header(&mut headers, "mcp-method", method);
                if let Some(name) = name {
                    header(&mut headers, "mcp-name", name);
                }
            } else {
                header(&mut headers, "mcp-protocol-version", "2025-06-18");
            }
            if let Some(session) = session {
                header(&mut headers, "mcp-session-id", session);
            }
            Prebuilt {
                kind,
                headers,
                body: leak(body),
            }
        })
        .collect()
}

/// Checks one response; `Err` says what was wrong.
fn check(kind: Kind, enforcing: bool, status: StatusCode, body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let fail = |why: &str| {
        let excerpt: String = text.chars().take(300).collect();
        Err(format!("{} {why}: HTTP {status}: {excerpt}", kind.name()))
    };
    match kind {
        Kind::Denied if enforcing => {
            if status != StatusCode::FORBIDDEN || !text.contains("-32003") {
                return fail("expected 403 with JSON-RPC error -32003");
            }
        }
        _ => {
            if status != StatusCode::OK {
                return fail("expected 200");
            }
            let id = match kind {
                Kind::List => r#""id":1,"#,
                Kind::Allowed => r#""id":2,"#,
                Kind::Denied => r#""id":3,"#,
            };
            let expected = match kind {
                Kind::List => r#""name":"read_note""#,
                Kind::Allowed => NOTE_TEXT,
                Kind::Denied => "deleted welcome",
            };
            if !text.contains(id) || !text.contains(expected) || text.contains(r#""error":"#) {
                return fail(&format!("expected a result with {expected}"));
            }
            if kind != Kind::List && !text.contains(r#""isError":false"#) {
                return fail("expected isError false");
            }
        }
    }
    Ok(())
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

/// Opens a 2025-06-18 session: initialize, notifications/initialized.
async fn open_session(client: &reqwest::Client, load: &Load) -> Result<String, String> {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{},"clientInfo":{"name":"rmcp","version":"3.11.0"},"protocolVersion":"2025-06-18"}}"#;
    let response = client
        .post(&load.url)
        .headers(base_headers(&load.token))
        .body(init)
        .send()
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response
        .text()
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    let Some(session) = session.filter(|_| status == StatusCode::OK) else {
        return Err(format!("initialize: HTTP {status}, no session: {text}"));
    };
    let mut headers = base_headers(&load.token);
    header(&mut headers, "mcp-protocol-version", "2025-06-18");
    header(&mut headers, "mcp-session-id", &session);
    let response = client
        .post(&load.url)
        .headers(headers)
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .map_err(|e| format!("notifications/initialized: {e}"))?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(format!(
            "notifications/initialized: HTTP {}",
            response.status()
        ));
    }
    let _ = response.bytes().await;
    Ok(session)
}

async fn close_session(client: &reqwest::Client, load: &Load, session: &str) {
    let mut headers = HeaderMap::new();
    header(
        &mut headers,
        "authorization",
        &format!("Bearer {}", load.token),
    );
    header(&mut headers, "mcp-protocol-version", "2025-06-18");
    header(&mut headers, "mcp-session-id", session);
    if let Ok(r) = client.delete(&load.url).headers(headers).send().await {
        let _ = r.bytes().await;
    }
}

async fn run_client(
    index: usize,
    load: Arc<Load>,
    window_start: Instant,
    end: Instant,
) -> ClientResult {
    let client = http_client();
    let mut result = ClientResult {
        ok: 0,
        failed: 0,
        failures_total: 0,
        first_failure: None,
        latencies: Vec::with_capacity(4096),
    };
    let session = if load.mode == Mode::Session {
        match open_session(&client, &load).await {
            Ok(s) => Some(s),
            Err(e) => {
                result.failed += 1;
                result.failures_total += 1;
                result.first_failure = Some(e);
                return result;
            }
        }
    } else {
        None
    };
    let requests = prebuilt(&load, session.as_deref());
    let mut next = index % requests.len();
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let request = &requests[next];
        next = (next + 1) % requests.len();
        let outcome = match client
            .post(&load.url)
            .headers(request.headers.clone())
            .body(request.body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(body) => check(request.kind, load.enforcing, status, &body),
                    Err(e) => Err(format!("{}: reading the body: {e}", request.kind.name())),
                }
            }
            Err(e) => Err(format!("{}: {e}", request.kind.name())),
        };
        let done = Instant::now();
        let in_window = done >= window_start && done <= end;
        match outcome {
            Ok(()) if in_window => {
                result.ok += 1;
                result.latencies.push((done - start).as_nanos() as u64);
            }
            Ok(()) => {}
            Err(e) => {
                result.failures_total += 1;
                if in_window {
                    result.failed += 1;
                }
                if result.first_failure.is_none() {
                    result.first_failure = Some(e);
                }
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    if let Some(session) = &session {
        close_session(&client, &load, session).await;
    }
    result
}

/// Runs `load` against the server process `server_pid`: warm-up, then the measured
/// window, sampling the server's and this process's CPU time at its edges.
pub(crate) async fn run(load: Load, server_pid: u32) -> RunResult {
    let load = Arc::new(load);
    let t0 = Instant::now();
    let window_start = t0 + load.warmup;
    let end = window_start + load.measure;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(window_start.into()).await;
        let a = (
            Instant::now(),
            crate::cpu_seconds(server_pid),
            crate::own_cpu_seconds(),
        );
        tokio::time::sleep_until(end.into()).await;
        let b = (
            Instant::now(),
            crate::cpu_seconds(server_pid),
            crate::own_cpu_seconds(),
        );
        let elapsed = (b.0 - a.0).as_secs_f64();
        let server = match (a.1, b.1) {
            (Some(a), Some(b)) => (b - a) / elapsed,
            _ => f64::NAN,
        };
        let own = match (a.2, b.2) {
            (Some(a), Some(b)) => (b - a) / elapsed,
            _ => f64::NAN,
        };
        (server, own)
    });
    let tasks: Vec<_> = (0..load.clients)
        .map(|i| tokio::spawn(run_client(i, Arc::clone(&load), window_start, end)))
        .collect();
    let mut total = RunResult::default();
    for task in tasks {
        let r = task.await.expect("a client task");
        total.ok += r.ok;
        total.failed += r.failed;
        total.failures_total += r.failures_total;
        if total.first_failure.is_none() {
            total.first_failure = r.first_failure;
        }
        total.latencies.extend(r.latencies);
    }
    let (server_cpu, generator_cpu) = sampler.await.expect("the CPU sampler");
    total.rate = total.ok as f64 / load.measure.as_secs_f64();
    total.server_cpu = server_cpu;
    total.generator_cpu = generator_cpu;
    total
}
