//! Raw HTTP against a [`TestServer`], for tests where the exact status and headers matter:
//! an independent `WWW-Authenticate` challenge parser (RFC 9110 section 11.6.1, RFC 6750
//! section 3), fully read responses, request builders, and JSON-RPC bodies.
//!
//! The challenge parser is written independently of the SDK's challenge builder, so a
//! test reading a challenge with it checks the wire format, not the SDK against itself.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::TestServer;

/// Every test step is bounded, so a hang fails the test instead of stalling the run.
pub const STEP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// An independent WWW-Authenticate challenge parser (RFC 9110 section 11.6.1, RFC 6750 3).
// ---------------------------------------------------------------------------------------

/// One parsed challenge: `auth-scheme [ 1*SP #auth-param ]`.
#[derive(Debug)]
pub struct Challenge {
    /// The auth-scheme, as sent.
    pub scheme: String,
    /// Parameter names lowercased (they are case-insensitive), values unescaped.
    pub params: Vec<(String, String)>,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl Challenge {
    /// Parses one challenge: a scheme, then comma-separated `name=token` or
    /// `name="quoted \" string"` parameters. Refuses a repeated parameter, a parameter
    /// without a value, an unterminated quoted-string and anything else out of grammar.
    pub fn parse(header: &str) -> Result<Challenge, String> {
        let chars: Vec<char> = header.chars().collect();
        let mut i = 0;
        let token = |i: &mut usize| -> String {
            let start = *i;
            while *i < chars.len() && is_tchar(chars[*i]) {
                *i += 1;
            }
            chars[start..*i].iter().collect()
        };
        let skip_ows = |i: &mut usize| {
            while *i < chars.len() && (chars[*i] == ' ' || chars[*i] == '\t') {
                *i += 1;
            }
        };
        let scheme = token(&mut i);
        if scheme.is_empty() {
            return Err(format!("no auth-scheme in {header:?}"));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        if i == chars.len() {
            return Ok(Challenge { scheme, params });
        }
        if chars[i] != ' ' {
            return Err(format!("auth-scheme not followed by SP in {header:?}"));
        }
        loop {
            // `#rule`: empty list elements and optional whitespace are allowed.
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t' || chars[i] == ',') {
                i += 1;
            }
            if i == chars.len() {
                break;
            }
            let name = token(&mut i).to_ascii_lowercase();
            if name.is_empty() {
                return Err(format!("bad parameter name at {i} in {header:?}"));
            }
            skip_ows(&mut i);
            if chars.get(i) != Some(&'=') {
                return Err(format!("parameter {name:?} has no '=' in {header:?}"));
            }
            i += 1;
            skip_ows(&mut i);
            let value = if chars.get(i) == Some(&'"') {
                i += 1;
                let mut value = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated quoted-string in {header:?}")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let Some(&escaped) = chars.get(i + 1) else {
                                return Err(format!("dangling backslash in {header:?}"));
                            };
                            value.push(escaped);
                            i += 2;
                        }
                        Some(&c) => {
                            if c.is_control() && c != '\t' {
                                return Err(format!("control character in {header:?}"));
                            }
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                value
            } else {
                let value = token(&mut i);
                if value.is_empty() {
                    return Err(format!("parameter {name:?} has no value in {header:?}"));
                }
                value
            };
            if params.iter().any(|(n, _)| *n == name) {
                return Err(format!("parameter {name:?} repeated in {header:?}"));
            }
            params.push((name, value));
            skip_ows(&mut i);
            match chars.get(i) {
                None => break,
                Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} at {i} in {header:?}")),
            }
        }
        Ok(Challenge { scheme, params })
    }

    /// The value of parameter `name` (lowercase), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The names of all parameters present.
    pub fn names(&self) -> BTreeSet<&str> {
        self.params.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Asserts the scheme is `Bearer` (compared case-insensitively).
    pub fn assert_bearer(&self) {
        assert!(
            self.scheme.eq_ignore_ascii_case("bearer"),
            "scheme {:?} is not Bearer",
            self.scheme
        );
    }
}

/// Parses `header` as one challenge, failing the test when it does not parse.
pub fn challenge(header: &str) -> Challenge {
    Challenge::parse(header).unwrap_or_else(|e| panic!("unparsable challenge: {e}"))
}

// ---------------------------------------------------------------------------------------
// Raw HTTP.
// ---------------------------------------------------------------------------------------

/// A raw HTTP response, fully read.
#[derive(Debug)]
pub struct Raw {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Raw {
    /// The value of header `name`, if present (it must be ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The one `WWW-Authenticate` challenge, parsed; fails the test unless there is
    /// exactly one such header and it parses.
    pub fn www_authenticate(&self) -> Challenge {
        let all: Vec<_> = self.headers.get_all("www-authenticate").iter().collect();
        assert_eq!(all.len(), 1, "exactly one WWW-Authenticate: {self:?}");
        challenge(all[0].to_str().expect("ASCII challenge"))
    }

    /// Like [`Raw::www_authenticate`], and the challenge's scheme must be `Bearer`.
    pub fn bearer_challenge(&self) -> Challenge {
        let c = self.www_authenticate();
        c.assert_bearer();
        c
    }

    /// The JSON-RPC messages of the body: the body itself (JSON) or the `data:` lines of
    /// an event stream.
    pub fn messages(&self) -> Vec<Value> {
        let content_type = self.header("content-type").unwrap_or_default();
        if content_type.starts_with("text/event-stream") {
            self.body
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
                .collect()
        } else {
            vec![
                serde_json::from_str(&self.body)
                    .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}")),
            ]
        }
    }

    /// The one JSON-RPC message of the body; fails the test unless there is exactly one.
    pub fn message(&self) -> Value {
        let mut messages = self.messages();
        assert_eq!(messages.len(), 1, "one JSON-RPC message: {self:?}");
        messages.remove(0)
    }

    /// The `error.code` of the one JSON-RPC message; fails the test unless it is an error.
    pub fn error_code(&self) -> i64 {
        self.message()["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("a JSON-RPC error: {self:?}"))
    }
}

/// A fresh HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends `request` and reads the whole response, failing the test after [`STEP`].
pub async fn send(request: reqwest::RequestBuilder) -> Raw {
    tokio::time::timeout(STEP, async {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body read");
        Raw {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("HTTP exchange timed out")
}

/// A POST to `url` with the headers Streamable HTTP needs (`Content-Type`, `Accept`), and
/// no `Authorization`.
pub fn post_to(url: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
}

/// [`post_to`] the server's MCP endpoint.
pub fn post(server: &TestServer, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    post_to(&server.url, body)
}

/// The `Authorization` value presenting `token`: `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// [`post`] of the JSON-RPC message `body`, with `Authorization: Bearer <token>` when
/// there is a token.
pub fn mcp_post(server: &TestServer, token: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
    let request = post(server, body.to_string());
    match token {
        Some(token) => request.header("authorization", bearer(token)),
        None => request,
    }
}

/// [`mcp_post`] with `token` and the headers of a 2026-07-28 request:
/// `MCP-Protocol-Version: 2026-07-28` and these `Mcp-Method` and `Mcp-Name`.
pub fn post_2026(
    server: &TestServer,
    token: &str,
    body: &Value,
    method: &str,
    name: &str,
) -> reqwest::RequestBuilder {
    mcp_post(server, Some(token), body)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .header("mcp-name", name)
}

/// The Protected Resource Metadata URL the server's challenges name.
pub fn metadata_url(server: &TestServer) -> String {
    format!("{}/.well-known/oauth-protected-resource/mcp", server.origin)
}

// ---------------------------------------------------------------------------------------
// JSON-RPC bodies.
// ---------------------------------------------------------------------------------------

/// The name the raw requests give as `clientInfo`.
const CLIENT_NAME: &str = "raw-http";

/// A 2025-06-18 `initialize` request (id 1).
pub fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": CLIENT_NAME, "version": "0"}
        }
    })
}

/// A `tools/call` of `tool` with no arguments.
pub fn call_body(id: i64, tool: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {}}
    })
}

/// A `tools/call` of `tool` with no arguments as a 2026-07-28 client sends it:
/// per-request `_meta`.
pub fn call_body_2026(id: i64, tool: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": CLIENT_NAME, "version": "0"}
            }
        }
    })
}

/// What a `write_note` call sent by [`write_note`] came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteWritten {
    /// The HTTP status.
    pub status: u16,
    /// Whether the tool's result (`wrote <id>`) came back.
    pub answered: bool,
}

/// One `tools/call write_note` with `arguments` (whose `id` names the note), as a
/// 2026-07-28 client sends it to `url` with `token`, read as JSON or as an event stream.
///
/// # Errors
/// The transport's error when no answer came (a server killed, a timeout of 30 s).
pub async fn write_note(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    arguments: &Value,
) -> Result<NoteWritten, reqwest::Error> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "write_note",
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "write-note", "version": "0"}
            }
        }
    });
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", bearer(token))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "write_note")
        .timeout(std::time::Duration::from_secs(30))
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let wrote = format!("wrote {}", arguments["id"].as_str().unwrap_or_default());
    // A JSON body or an event stream whose data line is the response.
    let answered = text
        .lines()
        .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|m| m["result"]["content"][0]["text"] == wrote);
    Ok(NoteWritten { status, answered })
}
