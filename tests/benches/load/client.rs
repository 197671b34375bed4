//! The load generator: N closed-loop clients, each with its own HTTP/1.1 connection
//! (TCP_NODELAY), sending prebuilt requests with the headers rmcp's own client sends, and
//! checking every response (status, JSON-RPC id, result or the expected refusal).

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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

/// One prebuilt request: the whole HTTP/1.1 message, head and body.
#[derive(Debug)]
struct Prebuilt {
    kind: Kind,
    bytes: Vec<u8>,
}

/// What one run is: where, what, how many clients, for how long.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) addr: SocketAddr,
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
    /// Failed calls in the measured window.
    pub(crate) failed: u64,
    /// Failed calls in the whole run, warm-up included.
    pub(crate) failures_total: u64,
    /// The first failure seen, if any.
    pub(crate) first_failure: Option<String>,
    /// Latency of every successful call in the window, in nanoseconds.
    pub(crate) latencies: Vec<u64>,
    /// calls/s over the measured window.
    pub(crate) rate: f64,
    /// The server's CPU time over the measured window, in seconds of CPU per second.
    pub(crate) server_cpu: f64,
    /// Of `server_cpu`, the audit writer thread's (0 without one).
    pub(crate) writer_cpu: f64,
    /// The generator's own CPU use over the window (1.0 = one core busy).
    pub(crate) generator_cpu: f64,
}

/// An HTTP/1.1 request to `/mcp` with `headers` (lowercase names, as hyper sends them)
/// and `body`.
fn http_request(method: &str, addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("{method} /mcp HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if method == "POST" || !body.is_empty() {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// The headers rmcp 3.11's client sends on every POST (captured from it).
fn post_headers(bearer: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("accept", "text/event-stream, application/json"),
        ("authorization", bearer),
        ("content-type", "application/json"),
    ]
}

fn prebuilt(load: &Load, session: Option<&str>) -> Vec<Prebuilt> {
    let modern = load.mode != Mode::Session;
    let bearer = format!("Bearer {}", load.token);
    load.mix
        .iter()
        .map(|&kind| {
            let (body, method, name) = body(kind, modern);
            let mut headers = post_headers(&bearer);
            if modern {
                headers.push(("mcp-method", method));
                if let Some(name) = name {
                    headers.push(("mcp-name", name));
                }
                headers.push(("mcp-protocol-version", "2026-07-28"));
            } else {
                headers.push(("mcp-protocol-version", "2025-06-18"));
            }
            if let Some(session) = session {
                headers.push(("mcp-session-id", session));
            }
            Prebuilt {
                kind,
                bytes: http_request("POST", load.addr, &headers, &body),
            }
        })
        .collect()
}

/// Checks one response; `Err` says what was wrong.
fn check(kind: Kind, enforcing: bool, status: u16, body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let fail = |why: &str| {
        let excerpt: String = text.chars().take(300).collect();
        Err(format!("{} {why}: HTTP {status}: {excerpt}", kind.name()))
    };
    match kind {
        Kind::Denied if enforcing => {
            if status != 403 || !text.contains("-32003") {
                return fail("expected 403 with JSON-RPC error -32003");
            }
        }
        _ => {
            if status != 200 {
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

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: one keep-alive connection, one request at a time, bodies
// by Content-Length or chunked. Far cheaper per call than a general client, so the
// server stays the bottleneck.
// ---------------------------------------------------------------------------------------

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One connection.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The last response's body (chunked encoding removed).
    body: Vec<u8>,
}

/// The head of a response.
struct Head {
    status: u16,
    session: Option<String>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            body: Vec::with_capacity(16 * 1024),
        })
    }

    async fn fill(&mut self) -> Result<(), String> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed by the server".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Sends `request` and reads the whole response; the body is in `self.body`.
    async fn exchange(&mut self, request: &[u8]) -> Result<Head, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| "response head is not UTF-8".to_owned())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        let mut session = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("bad content-length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("mcp-session-id") {
                session = Some(value.to_owned());
            }
        }
        self.body.clear();
        let end = if chunked {
            self.read_chunked(head_end).await?
        } else if let Some(length) = length {
            while self.buf.len() < head_end + length {
                self.fill().await?;
            }
            self.body
                .extend_from_slice(&self.buf[head_end..head_end + length]);
            head_end + length
        } else if matches!(status, 202 | 204 | 304) || status < 200 {
            head_end
        } else {
            return Err(format!(
                "HTTP {status} without Content-Length or chunked encoding"
            ));
        };
        self.buf.drain(..end);
        Ok(Head { status, session })
    }

    /// Decodes a chunked body starting at `pos` into `self.body`; returns where it ends.
    async fn read_chunked(&mut self, mut pos: usize) -> Result<usize, String> {
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[pos..], b"\r\n") {
                    break pos + i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[pos..line_end])
                .map_err(|_| "bad chunk size".to_owned())?;
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers, if any, then the empty line.
                loop {
                    match find(&self.buf[pos..], b"\r\n") {
                        Some(0) => return Ok(pos + 2),
                        Some(i) => pos += i + 2,
                        None => self.fill().await?,
                    }
                }
            }
            while self.buf.len() < pos + size + 2 {
                self.fill().await?;
            }
            self.body.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
        }
    }
}

/// Opens a 2025-06-18 session as rmcp's client does: initialize, then
/// notifications/initialized.
async fn open_session(conn: &mut Conn, load: &Load) -> Result<String, String> {
    let bearer = format!("Bearer {}", load.token);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{},"clientInfo":{"name":"rmcp","version":"3.11.0"},"protocolVersion":"2025-06-18"}}"#;
    let request = http_request("POST", load.addr, &post_headers(&bearer), init);
    let head = conn.exchange(&request).await?;
    let Some(session) = head.session.filter(|_| head.status == 200) else {
        return Err(format!(
            "initialize: HTTP {}, no session: {}",
            head.status,
            String::from_utf8_lossy(&conn.body)
        ));
    };
    let mut headers = post_headers(&bearer);
    headers.push(("mcp-protocol-version", "2025-06-18"));
    headers.push(("mcp-session-id", &session));
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let head = conn
        .exchange(&http_request("POST", load.addr, &headers, initialized))
        .await?;
    if head.status != 202 {
        return Err(format!("notifications/initialized: HTTP {}", head.status));
    }
    Ok(session)
}

async fn close_session(conn: &mut Conn, load: &Load, session: &str) {
    let bearer = format!("Bearer {}", load.token);
    let headers = [
        ("authorization", bearer.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
        ("mcp-session-id", session),
    ];
    let request = http_request("DELETE", load.addr, &headers, "");
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.exchange(&request)).await;
}

/// How long one call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

async fn run_client(
    index: usize,
    load: Arc<Load>,
    window_start: Instant,
    end: Instant,
) -> RunResult {
    let mut result = RunResult {
        latencies: Vec::with_capacity(4096),
        ..RunResult::default()
    };
    let fail = |result: &mut RunResult, in_window: bool, e: String| {
        result.failures_total += 1;
        if in_window {
            result.failed += 1;
        }
        if result.first_failure.is_none() {
            result.first_failure = Some(e);
        }
    };
    let mut conn = match Conn::connect(load.addr).await {
        Ok(c) => Some(c),
        Err(e) => {
            fail(&mut result, true, e);
            return result;
        }
    };
    let session = if load.mode == Mode::Session {
        let opened = match conn.as_mut() {
            Some(c) => tokio::time::timeout(CALL_TIMEOUT, open_session(c, &load))
                .await
                .unwrap_or_else(|_| Err("initialize timed out".to_owned())),
            None => Err("no connection".to_owned()),
        };
        match opened {
            Ok(s) => Some(s),
            Err(e) => {
                fail(&mut result, true, e);
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
        let outcome = async {
            if conn.is_none() {
                conn = Some(Conn::connect(load.addr).await?);
            }
            let c = conn.as_mut().expect("connected");
            let head = match tokio::time::timeout(CALL_TIMEOUT, c.exchange(&request.bytes)).await {
                Ok(Ok(head)) => head,
                Ok(Err(e)) => {
                    conn = None;
                    return Err(format!("{}: {e}", request.kind.name()));
                }
                Err(_) => {
                    conn = None;
                    return Err(format!("{}: timed out", request.kind.name()));
                }
            };
            check(request.kind, load.enforcing, head.status, &c.body)
        }
        .await;
        let done = Instant::now();
        let in_window = done >= window_start && done <= end;
        match outcome {
            Ok(()) if in_window => {
                result.ok += 1;
                result.latencies.push((done - start).as_nanos() as u64);
            }
            Ok(()) => {}
            Err(e) => {
                fail(&mut result, in_window, e);
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    if let (Some(session), Some(c)) = (&session, conn.as_mut()) {
        close_session(c, &load, session).await;
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
            crate::writer_cpu_seconds(server_pid),
        );
        tokio::time::sleep_until(end.into()).await;
        let b = (
            Instant::now(),
            crate::cpu_seconds(server_pid),
            crate::own_cpu_seconds(),
            crate::writer_cpu_seconds(server_pid),
        );
        let elapsed = (b.0 - a.0).as_secs_f64();
        // CPU seconds per second between the two samples.
        let per_second = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (b - a) / elapsed,
            _ => f64::NAN,
        };
        let server = per_second(a.1, b.1);
        let own = per_second(a.2, b.2);
        // A server without an audit writer thread spends nothing on one.
        let writer = per_second(a.3, b.3);
        let writer = if writer.is_nan() { 0.0 } else { writer };
        (server, own, writer)
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
    let (server_cpu, generator_cpu, writer_cpu) = sampler.await.expect("the CPU sampler");
    total.rate = total.ok as f64 / load.measure.as_secs_f64();
    total.server_cpu = server_cpu;
    total.writer_cpu = writer_cpu;
    total.generator_cpu = generator_cpu;
    total
}
