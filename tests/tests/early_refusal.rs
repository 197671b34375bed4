//! Refusals the HTTP layer makes before it knows the caller (no token, a refused token),
//! over raw TCP and a pooled `reqwest` client (issue 13, items 6 and 8):
//!
//! - the layer reads a small body before answering, so a keep-alive connection whose
//!   body arrives in its own TCP segment after the headers stays usable: the next request
//!   on the same connection gets a full answer, and a pooled client never sees "connection
//!   closed" on its retry;
//! - a body it will not read (over 16 KiB) is answered with `Connection: close`, and the
//!   server closes the connection, so no client sends a request on a dead connection;
//! - the 401 echoes the JSON-RPC `id` of the body it read (number or string), and says
//!   `"id": null` for a body it did not read.

use std::sync::Arc;
use std::time::Duration;

use rmcp_authz::audit::{Auditor, Durability, MemorySink};
use rmcp_authz_tests::http::{STEP, call_body, mcp_post, send};
use rmcp_authz_tests::server::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What the layer reads of a body before authentication (`UNAUTHENTICATED_BODY_BYTES`).
const SMALL_BODY_LIMIT: usize = 16 * 1024;

/// The pause between a request's headers and its body, so the body arrives in its own
/// segment after the server has the headers (and, without the fix, has answered). Not an
/// assertion on time: a shorter pause only makes the check weaker, never wrong.
const BODY_DELAY: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 connection.
// ---------------------------------------------------------------------------------------

/// One response read off a raw connection.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The one JSON-RPC message of the body (plain JSON or one SSE `data:` line).
    fn message(&self) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        let json = if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .find(|d| !d.is_empty())
                .unwrap_or_else(|| panic!("no SSE data in {text:?}"))
                .to_owned()
        } else {
            text.into_owned()
        };
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {json:?}"))
    }
}

/// A client connection kept open across requests.
struct Conn {
    stream: TcpStream,
    authority: String,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl Conn {
    async fn open(server: &TestServer) -> Conn {
        let authority = server.origin.trim_start_matches("http://").to_owned();
        let stream = tokio::time::timeout(STEP, TcpStream::connect(&authority))
            .await
            .expect("connect in time")
            .expect("connect");
        // Each write goes out at once, in its own segment.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Conn {
            stream,
            authority,
            buf: Vec::new(),
        }
    }

    /// The head of a POST to /mcp with a body of `length` bytes (or chunked).
    fn head(&self, token: Option<&str>, length: Option<usize>) -> String {
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n",
            self.authority
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        match length {
            Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
            None => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        head
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// A POST whose headers go in one write and whose body goes in a second, after
    /// [`BODY_DELAY`]; fails the test if the connection was closed under it.
    async fn post_split(&mut self, token: Option<&str>, body: &[u8]) {
        let head = self.head(token, Some(body.len()));
        let sent = match self.write(head.as_bytes()).await {
            Ok(()) => {
                tokio::time::sleep(BODY_DELAY).await;
                self.write(body).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            panic!("the server dropped the connection under a request: {e}");
        }
    }

    /// A POST whose head and body go in one write.
    async fn post_whole(&mut self, token: Option<&str>, body: &[u8]) {
        let mut bytes = self.head(token, Some(body.len())).into_bytes();
        bytes.extend_from_slice(body);
        self.write(&bytes).await.expect("write the request");
    }

    /// Reads more bytes; `false` at end of stream or on a reset.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(STEP, self.stream.read(&mut chunk))
            .await
            .expect("the server answers (or closes) in time")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Takes `n` bytes, reading as needed; `None` if the connection ends first.
    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Takes one line ending in CRLF (without it).
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return Some(String::from_utf8_lossy(&line[..at]).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next complete response, or `None` when the connection closes (or is reset)
    /// before one is complete.
    async fn response(&mut self) -> Option<Response> {
        let status_line = self.line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not a header: {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("a Content-Length");
            response.body = self.take(length).await?;
        } else if response
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = self.line().await?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("not a chunk size: {size:?}"));
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let chunk = self.take(size).await?;
                response.body.extend_from_slice(&chunk);
                self.take(2).await?;
            }
        } else {
            // Delimited by the end of the connection.
            while self.fill().await {}
            response.body = std::mem::take(&mut self.buf);
        }
        Some(response)
    }

    /// Whether the server closes the connection (end of stream or a reset) without
    /// sending anything more.
    async fn closed_by_server(&mut self) -> bool {
        let had = self.buf.len();
        let closed = !self.fill().await;
        assert!(
            closed || self.buf.len() == had,
            "unexpected bytes after the response: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        closed
    }
}

// ---------------------------------------------------------------------------------------
// Keep-alive after an early refusal (item 6).
// ---------------------------------------------------------------------------------------

/// Refused tokens of several kinds: none at all, garbage, another audience, another
/// issuer's key.
fn refused_tokens(server: &TestServer) -> Vec<Option<String>> {
    let other_audience = server
        .issuer
        .token("https://another-server.invalid/mcp")
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let other_key = rmcp_authz::dev::DevIssuer::new(rmcp_authz_tests::server::ISSUER)
        .expect("dev issuer")
        .token(&server.url)
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    vec![
        None,
        Some("garbage-token".to_owned()),
        Some(other_audience),
        Some(other_key),
    ]
}

fn bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// The text of a `tools/call` result message.
fn result_text(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {message}"))
}

/// 50 connections; on each, a refused request whose body arrives in its own segment
/// after the headers, then a second request on the same connection, which gets a full
/// answer: alternately a valid call (200, its result) and another refusal (401).
#[tokio::test]
async fn a_connection_stays_usable_after_a_401_whose_body_came_late() {
    let server = TestServer::start(false).await;
    let refused = refused_tokens(&server);
    let good = server.token(&["notes:read"]);
    for round in 0..50_usize {
        let mut conn = Conn::open(&server).await;
        let token = refused[round % refused.len()].as_deref();
        let id = 1000 + i64::try_from(round).unwrap();
        conn.post_split(token, &bytes(&call_body(id, "list_notes")))
            .await;
        let first = conn
            .response()
            .await
            .unwrap_or_else(|| panic!("round {round}: no 401 before the connection closed"));
        assert_eq!(first.status, 401, "round {round}: {first:?}");
        assert!(
            !first.says_close(),
            "round {round}: a small body is read, the connection kept: {first:?}"
        );
        assert_eq!(first.message()["id"], id, "round {round}");

        // The same connection carries the next request.
        let second_id = id + 1;
        if round % 2 == 0 {
            conn.post_split(Some(&good), &bytes(&call_body(second_id, "list_notes")))
                .await;
            let second = conn.response().await.unwrap_or_else(|| {
                panic!("round {round}: the connection was dropped after the 401")
            });
            assert_eq!(second.status, 200, "round {round}: {second:?}");
            let message = second.message();
            assert_eq!(message["id"], second_id, "round {round}: {message}");
            assert_eq!(result_text(&message), "welcome", "round {round}");
        } else {
            conn.post_split(token, &bytes(&call_body(second_id, "list_notes")))
                .await;
            let second = conn.response().await.unwrap_or_else(|| {
                panic!("round {round}: the connection was dropped after the 401")
            });
            assert_eq!(second.status, 401, "round {round}: {second:?}");
            assert_eq!(second.message()["id"], second_id, "round {round}");
        }
    }
}

/// The same over the endpoint `Authz::router` builds (JSON responses): three requests on
/// one connection, head and body always apart.
#[tokio::test]
async fn the_router_endpoint_keeps_the_connection_after_early_refusals() {
    let server = TestServer::start_router(rmcp_authz_tests::notes::notes_policy(), None).await;
    let good = server.token(&["notes:read"]);
    for _ in 0..10 {
        let mut conn = Conn::open(&server).await;
        conn.post_split(None, &bytes(&call_body(1, "list_notes")))
            .await;
        let first = conn.response().await.expect("the 401 to a missing token");
        assert_eq!(first.status, 401, "{first:?}");
        conn.post_split(Some("garbage"), &bytes(&call_body(2, "list_notes")))
            .await;
        let second = conn.response().await.expect("the 401 to a garbage token");
        assert_eq!(second.status, 401, "{second:?}");
        conn.post_split(Some(&good), &bytes(&call_body(3, "list_notes")))
            .await;
        let third = conn.response().await.expect("the answer to a valid call");
        assert_eq!(third.status, 200, "{third:?}");
        assert_eq!(result_text(&third.message()), "welcome");
    }
}

/// A body of `size` bytes that is one JSON-RPC `tools/call` with id `id`.
fn padded_call(id: i64, size: usize) -> Vec<u8> {
    let mut call = call_body(id, "list_notes");
    let bare = call.to_string().len();
    let pad = size.saturating_sub(bare + r#","pad":"""#.len());
    call["pad"] = Value::String("x".repeat(pad));
    let bytes = call.to_string().into_bytes();
    assert_eq!(bytes.len(), size, "padding");
    bytes
}

/// A refused request with a body over 16 KiB (declared, or chunked): the layer does not
/// read it, so it answers `Connection: close` with `"id": null`, and the server closes.
#[tokio::test]
async fn a_401_for_a_body_over_16_kib_closes_the_connection() {
    let server = TestServer::start(false).await;
    let body = padded_call(77, SMALL_BODY_LIMIT + 1024);
    for token in refused_tokens(&server) {
        // Declared length over the limit, body in its own segment.
        let mut conn = Conn::open(&server).await;
        let head = conn.head(token.as_deref(), Some(body.len()));
        conn.write(head.as_bytes()).await.expect("write the head");
        tokio::time::sleep(BODY_DELAY).await;
        // The server may close while the body is on its way; that is its right.
        let _ = conn.write(&body).await;
        let response = conn.response().await.expect("a 401 before the close");
        assert_eq!(response.status, 401, "{response:?}");
        assert!(response.says_close(), "Connection: close: {response:?}");
        assert_eq!(response.message()["id"], Value::Null, "{response:?}");
        assert!(
            conn.closed_by_server().await,
            "the server closes the connection"
        );
    }

    // Chunked, no declared length: found too large while reading.
    let mut conn = Conn::open(&server).await;
    let head = conn.head(Some("garbage"), None);
    conn.write(head.as_bytes()).await.expect("write the head");
    tokio::time::sleep(BODY_DELAY).await;
    let mut chunked = Vec::new();
    for chunk in body.chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let _ = conn.write(&chunked).await;
    let response = conn.response().await.expect("a 401 before the close");
    assert_eq!(response.status, 401, "{response:?}");
    assert!(response.says_close(), "Connection: close: {response:?}");
    assert_eq!(response.message()["id"], Value::Null, "{response:?}");
    assert!(conn.closed_by_server().await, "the server closes");

    // A body of exactly the limit is read: its id is echoed, the connection kept.
    let mut conn = Conn::open(&server).await;
    conn.post_split(Some("garbage"), &padded_call(78, SMALL_BODY_LIMIT))
        .await;
    let response = conn.response().await.expect("a 401");
    assert_eq!(response.status, 401, "{response:?}");
    assert!(!response.says_close(), "{response:?}");
    assert_eq!(response.message()["id"], 78);
    conn.post_whole(
        Some(&server.token(&["notes:read"])),
        &bytes(&call_body(79, "list_notes")),
    )
    .await;
    let next = conn.response().await.expect("the connection is kept");
    assert_eq!(next.status, 200, "{next:?}");
}

/// A 413 (an authenticated body over the 1 MiB limit) says `Connection: close` and the
/// server closes: the rest of the body is never read.
#[tokio::test]
async fn a_413_closes_the_connection() {
    let server = TestServer::start(false).await;
    let token = server.token(&["notes:read"]);
    let body = padded_call(5, 1024 * 1024 + 1);
    let mut conn = Conn::open(&server).await;
    let head = conn.head(Some(&token), Some(body.len()));
    conn.write(head.as_bytes()).await.expect("write the head");
    // Only a part of the body: the server answers on the declared length alone.
    let _ = conn.write(&body[..64 * 1024]).await;
    let response = conn.response().await.expect("a 413");
    assert_eq!(response.status, 413, "{response:?}");
    assert!(response.says_close(), "Connection: close: {response:?}");
    assert!(conn.closed_by_server().await, "the server closes");
}

/// A pooled `reqwest` client, as an agent uses one: 300 refused requests with bodies
/// (the client refreshing its token and retrying on the same pool), then a valid call.
/// No request fails with a connection error, and the valid call succeeds.
#[tokio::test]
async fn a_pooled_client_survives_300_refused_requests() {
    let server = TestServer::start(false).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .expect("client");
    let refused = refused_tokens(&server);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..300_usize {
        let id = i64::try_from(i).unwrap();
        // Bodies from a few bytes to 12 KiB, all under what the layer reads; every other
        // one streamed from a file, so its headers go out before it (chunked).
        let body = padded_call(id, 200 + (i % 7) * 2000);
        let body = if i % 2 == 1 {
            let path = dir.path().join(format!("{i}.json"));
            std::fs::write(&path, &body).expect("write the body file");
            reqwest::Body::from(tokio::fs::File::open(&path).await.expect("open"))
        } else {
            reqwest::Body::from(body)
        };
        let mut request = client
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(token) = &refused[i % refused.len()] {
            request = request.bearer_auth(token);
        }
        let response = tokio::time::timeout(STEP, request.send())
            .await
            .expect("answered in time")
            .unwrap_or_else(|e| panic!("refused request {i} failed on the connection: {e:?}"));
        assert_eq!(response.status(), 401, "request {i}");
        let message: Value = response.json().await.expect("a JSON body");
        assert_eq!(message["id"], id, "request {i}");
    }
    let ok = client
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(server.token(&["notes:read"]))
        .body(bytes(&call_body(9999, "list_notes")))
        .send()
        .await
        .expect("the valid call after the refusals goes through");
    assert_eq!(ok.status(), 200);
}

// ---------------------------------------------------------------------------------------
// The 401 echoes the request id (item 8).
// ---------------------------------------------------------------------------------------

/// The 401 for a refused or missing token carries the request's `id`, number or string,
/// as does its audit event; for a body too large to read, `"id": null` and
/// `Connection: close`.
#[tokio::test]
async fn a_401_echoes_the_request_id() {
    let sink = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .expect("auditor");
    let server = TestServer::start_audited(false, auditor).await;
    let ids = [
        json!(42),
        json!("req-abc"),
        json!(0),
        json!(""),
        json!(-7),
        json!("\u{e9}t\u{e9} \"quoted\""),
    ];
    let mut expected_events = Vec::new();
    for token in refused_tokens(&server) {
        for id in &ids {
            let mut body = call_body(0, "list_notes");
            body["id"] = id.clone();
            let raw = send(mcp_post(&server, token.as_deref(), &body)).await;
            assert_eq!(raw.status, 401, "{raw:?}");
            let message = raw.message();
            assert_eq!(&message["id"], id, "token {token:?}: {message}");
            assert_eq!(message["jsonrpc"], "2.0");
            assert_eq!(message["error"]["code"], -32004, "{message}");
            expected_events.push(match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    let recorded: Vec<String> = sink
        .events()
        .iter()
        .map(|e| e.request_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(recorded, expected_events, "each 401's event has the id");

    // A body the layer does not read: no id to echo, and the connection is not kept.
    for token in refused_tokens(&server) {
        let body = padded_call(43, SMALL_BODY_LIMIT + 1);
        let mut request = rmcp_authz_tests::http::post(&server, body);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let raw = send(request).await;
        assert_eq!(raw.status, 401, "{raw:?}");
        assert_eq!(raw.message()["id"], Value::Null, "{raw:?}");
        assert_eq!(raw.header("connection"), Some("close"), "{raw:?}");
    }
}

/// A refused request whose body stops coming (10 of 100 declared bytes) still gets its
/// 401, with `Connection: close`, once the layer stops waiting for the rest: one client
/// without a valid token cannot hold a connection (or a graceful shutdown) open forever.
#[tokio::test]
async fn a_refused_request_whose_body_stalls_is_answered_and_closed() {
    let server = TestServer::start(false).await;
    for token in [None, Some("garbage")] {
        let mut conn = Conn::open(&server).await;
        let head = conn.head(token, Some(100));
        conn.write(head.as_bytes()).await.expect("write the head");
        conn.write(b"{\"jsonrpc\"").await.expect("write 10 bytes");
        // Nothing more is sent; the answer comes within the step's bound.
        let response = conn.response().await.expect("a 401, not a hang");
        assert_eq!(response.status, 401, "{response:?}");
        assert!(response.says_close(), "Connection: close: {response:?}");
        assert!(conn.closed_by_server().await, "the server closes");
    }
}
