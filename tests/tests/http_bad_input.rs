//! Malformed and hostile HTTP requests against the notes server behind `rmcp-authz`, sent
//! with raw `reqwest` (and, for a chunked body, a raw TCP stream): each gets the exact
//! status and challenge the authorization layer promises, and after each one the server
//! still answers a good request (nothing panicked, nothing hung).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::HeaderValue;
use rmcp_authz::token::AuthError;
use rmcp_authz_tests::http::{
    Challenge, Raw, STEP, bearer, call_body, call_body_2026, http, initialize_body, mcp_post,
    metadata_url, post, post_2026, post_to, send,
};
use rmcp_authz_tests::server::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The layer's default body limit (1 MiB).
const LIMIT: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

/// The server still answers a good request: a legacy `initialize` (200 with a result) and
/// a 2026-07-28 `tools/call` of `list_notes` (200, "welcome").
async fn assert_serves(server: &TestServer) {
    let token = server.token(&["notes:read"]);
    let raw = send(mcp_post(server, Some(&token), &initialize_body())).await;
    assert_eq!(raw.status, 200, "initialize after bad input: {raw:?}");
    assert!(
        raw.message()["result"]["protocolVersion"].is_string(),
        "{raw:?}"
    );
    let raw = send_list_notes(server, &token, &call_body_2026(2, "list_notes")).await;
    assert_eq!(raw.status, 200, "tools/call after bad input: {raw:?}");
    assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");
}

/// Sends `body`, a 2026-07-28 `tools/call` of `list_notes`, with the headers that match it.
async fn send_list_notes(server: &TestServer, token: &str, body: &Value) -> Raw {
    send(post_2026(server, token, body, "tools/call", "list_notes")).await
}

/// A 400 from the layer: JSON-RPC -32600 (rmcp's own 400s use other codes or no JSON).
fn assert_layer_400(raw: &Raw, what: &str) {
    assert_eq!(raw.status, 400, "{what}: {raw:?}");
    assert_eq!(raw.error_code(), -32600, "{what}: {raw:?}");
}

async fn servers() -> [TestServer; 2] {
    [
        TestServer::start(true).await,
        TestServer::start(false).await,
    ]
}

// ---------------------------------------------------------------------------------------
// Body size.
// ---------------------------------------------------------------------------------------

/// A valid 2026 `tools/call` of `list_notes` padded (in its `clientInfo` version) to
/// exactly `size` bytes.
fn padded_call(size: usize) -> Value {
    let with_version = |version: String| {
        let mut body = call_body_2026(2, "list_notes");
        body["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["version"] =
            Value::String(version);
        body
    };
    let base = with_version(String::new()).to_string().len();
    assert!(size > base);
    let body = with_version("x".repeat(size - base));
    assert_eq!(body.to_string().len(), size);
    body
}

#[tokio::test]
async fn a_body_over_one_mib_is_413() {
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        // With Content-Length: refused on the declared size.
        for size in [LIMIT + 1, 2 * LIMIT, 5 * LIMIT] {
            let raw = send_list_notes(&server, &token, &padded_call(size)).await;
            assert_eq!(raw.status, 413, "{size} bytes: {raw:?}");
            assert_eq!(raw.error_code(), -32600);
            assert_serves(&server).await;
        }
        // Exactly the limit is read and served.
        let raw = send_list_notes(&server, &token, &padded_call(LIMIT)).await;
        assert_eq!(raw.status, 200, "a body of exactly 1 MiB: {raw:?}");
        assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");
        // Not a JSON-RPC message, but too large first.
        let raw =
            send(post(&server, vec![b'['; LIMIT + 1]).header("authorization", bearer(&token)))
                .await;
        assert_eq!(raw.status, 413, "{raw:?}");
        assert_serves(&server).await;
    }
}

/// Sends `body` with chunked transfer encoding (no Content-Length) over a raw connection
/// and returns the status line's code and the raw response.
async fn post_chunked(server: &TestServer, token: &str, body: &Value) -> (u16, String) {
    let body = body.to_string().into_bytes();
    let authority = server.origin.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: list_notes\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    // Write concurrently with reading: the server may answer before the body ends.
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        writer.flush().await
    });
    let mut response = Vec::new();
    let read = tokio::time::timeout(STEP, async {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                // A reset after the response was read is fine; the status is what counts.
                Err(_) if !response.is_empty() => break,
                Err(e) => panic!("reading the response: {e}"),
            }
            let text = String::from_utf8_lossy(&response);
            // The layer's answers are short JSON; stop once one is complete.
            if let Some((head, body)) = text.split_once("\r\n\r\n")
                && let Some(len) = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                && body.len() >= len.parse::<usize>().unwrap_or(usize::MAX)
            {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a chunked body within {STEP:?}");
    write.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

#[tokio::test]
async fn a_chunked_body_over_one_mib_is_413() {
    let server = TestServer::start(false).await;
    let token = server.token(&["notes:read"]);
    let (status, text) = post_chunked(&server, &token, &padded_call(LIMIT + 1)).await;
    assert_eq!(status, 413, "{text}");
    assert_serves(&server).await;
    let (status, text) = post_chunked(&server, &token, &padded_call(3 * LIMIT)).await;
    assert_eq!(status, 413, "{text}");
    assert_serves(&server).await;
    // Under the limit, chunked is served.
    let (status, text) = post_chunked(&server, &token, &padded_call(4096)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("welcome"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Bodies that are not one JSON-RPC message.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    for server in servers().await {
        let token = server.token(&["notes:admin", "ops:purge"]);
        let bodies: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            Vec::new(),
            b"{".to_vec(),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}".to_vec(),
            format!("{} trailing", call_body(1, "purge")).into_bytes(),
            b"null".to_vec(),
            b"3".to_vec(),
            b"\"tools/call\"".to_vec(),
            b"true".to_vec(),
        ];
        for body in bodies {
            let what = String::from_utf8_lossy(&body).into_owned();
            let raw = send(post(&server, body).header("authorization", bearer(&token))).await;
            assert_layer_400(&raw, &what);
            assert_serves(&server).await;
        }
    }
}

#[tokio::test]
async fn a_batch_is_400() {
    for server in servers().await {
        let token = server.token(&["notes:admin", "ops:purge"]);
        for body in [
            "[]".to_owned(),
            format!("[{}]", call_body(1, "purge")),
            format!("[{}]", initialize_body()),
            format!(
                "[{}, {}]",
                call_body(1, "list_notes"),
                call_body(1, "purge")
            ),
        ] {
            let raw =
                send(post(&server, body.clone()).header("authorization", bearer(&token))).await;
            assert_layer_400(&raw, &body);
            assert_serves(&server).await;
        }
        // Nothing in a refused batch ran.
        let raw = send_list_notes(&server, &token, &call_body_2026(2, "list_notes")).await;
        assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");
    }
}

#[tokio::test]
async fn an_object_without_a_method_is_400() {
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        for body in [
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "params": {"name": "purge"}}),
            json!({}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            json!({"jsonrpc": "2.0", "id": 1, "method": null}),
            json!({"jsonrpc": "2.0", "id": 1, "method": ["tools/call"]}),
            json!({"jsonrpc": "2.0", "id": 1, "method": {"name": "tools/call"}}),
        ] {
            let raw = send(mcp_post(&server, Some(&token), &body)).await;
            assert_layer_400(&raw, &body.to_string());
            assert_serves(&server).await;
        }
    }
}

#[tokio::test]
async fn a_name_or_uri_of_the_wrong_type_is_400() {
    for server in servers().await {
        // Even a token that may do everything: the operation must be known to be decided.
        let token = server.token(&["notes:admin", "ops:purge"]);
        let mut bodies = Vec::new();
        for name in [
            json!(7),
            json!({"name": "purge"}),
            json!(["purge"]),
            json!(null),
            json!(true),
        ] {
            for method in ["tools/call", "prompts/get"] {
                bodies.push(json!({
                    "jsonrpc": "2.0", "id": 1, "method": method,
                    "params": {"name": name, "arguments": {}}
                }));
            }
            bodies.push(json!({
                "jsonrpc": "2.0", "id": 1, "method": "resources/read",
                "params": {"uri": name}
            }));
        }
        // Missing altogether.
        bodies.push(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}));
        bodies.push(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}));
        bodies.push(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": 5}));
        bodies.push(json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {}}));
        bodies.push(json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {}}));
        for body in bodies {
            let raw = send(mcp_post(&server, Some(&token), &body)).await;
            assert_layer_400(&raw, &body.to_string());
        }
        assert_serves(&server).await;
    }
}

// ---------------------------------------------------------------------------------------
// Mcp-Method / Mcp-Name disagreeing with the body.
// ---------------------------------------------------------------------------------------

/// (MCP-Protocol-Version, Mcp-Method, Mcp-Name, the tool the body calls).
type HeaderCase<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<HeaderValue>,
    &'a str,
);

/// A case with `MCP-Protocol-Version: 2026-07-28`, `Mcp-Method: tools/call` and `Mcp-Name`
/// `name`, the body calling `tool`.
fn tools_call_2026(name: HeaderValue, tool: &str) -> HeaderCase<'_> {
    (Some("2026-07-28"), Some("tools/call"), Some(name), tool)
}

#[tokio::test]
async fn mcp_name_disagreeing_with_the_body_is_400() {
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        let base64 = |s: &str| format!("=?base64?{}?=", STANDARD.encode(s));
        let cases: Vec<HeaderCase<'_>> = vec![
            // Without a 2026 version header only the layer checks: it must still refuse.
            (
                None,
                None,
                Some(HeaderValue::from_static("list_notes")),
                "purge",
            ),
            (
                Some("2025-06-18"),
                Some("tools/call"),
                Some(HeaderValue::from_static("list_notes")),
                "purge",
            ),
            tools_call_2026(HeaderValue::from_static("list_notes"), "purge"),
            tools_call_2026(
                HeaderValue::from_str(&base64("list_notes")).unwrap(),
                "purge",
            ),
            // Case matters in tool names.
            tools_call_2026(HeaderValue::from_static("PURGE"), "purge"),
            // Not valid base64, or not UTF-8 inside, or not UTF-8 at all.
            tools_call_2026(HeaderValue::from_static("=?base64?!!!?="), "list_notes"),
            tools_call_2026(
                HeaderValue::from_str(&format!("=?base64?{}?=", STANDARD.encode([0xff, 0xfe])))
                    .unwrap(),
                "list_notes",
            ),
            (
                None,
                None,
                Some(HeaderValue::from_bytes(b"list_notes\xff").unwrap()),
                "list_notes",
            ),
            // Mcp-Method disagreeing.
            (None, Some("tools/list"), None, "list_notes"),
            (
                Some("2026-07-28"),
                Some("prompts/get"),
                Some(HeaderValue::from_static("list_notes")),
                "list_notes",
            ),
        ];
        for (version, method, name, tool) in cases {
            let what = format!(
                "version {version:?}, Mcp-Method {method:?}, Mcp-Name {name:?}, body {tool}"
            );
            let mut request = mcp_post(&server, Some(&token), &call_body_2026(2, tool));
            if let Some(v) = version {
                request = request.header("mcp-protocol-version", v);
            }
            if let Some(m) = method {
                request = request.header("mcp-method", m);
            }
            if let Some(n) = name {
                request = request.header("mcp-name", n);
            }
            let raw = send(request).await;
            assert_layer_400(&raw, &what);
            assert_serves(&server).await;
        }
        // A name header on a method that names nothing.
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
        let raw = send(
            post(&server, list)
                .header("authorization", bearer(&token))
                .header("mcp-name", "list_notes"),
        )
        .await;
        assert_layer_400(&raw, "Mcp-Name on tools/list");
        assert_serves(&server).await;
    }
}

/// Opens a legacy session on a stateful server (initialize + initialized); `None` on a
/// stateless one.
async fn session_for(server: &TestServer, token: &str) -> Option<String> {
    let raw = send(mcp_post(server, Some(token), &initialize_body())).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let session = raw.header("mcp-session-id")?.to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let raw =
        send(mcp_post(server, Some(token), &initialized).header("mcp-session-id", &session)).await;
    assert_eq!(raw.status, 202, "{raw:?}");
    Some(session)
}

/// A repeated `Mcp-Name` or `Mcp-Method` header whose values disagree: the field's value
/// (RFC 9110 section 5.3: the lines joined, `list_notes, purge`) does not match the body,
/// so the request must be refused like a single mismatching header, whatever the
/// protocol version. rmcp checks these headers only on 2026-07-28 requests; on older ones
/// the layer is the only check, so there the 400 must be the layer's own (-32600).
#[tokio::test]
async fn repeated_mcp_name_or_method_headers_are_400() {
    let mut failures = Vec::new();
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        let session = session_for(&server, &token).await;
        // (2026-07-28?, repeated header, its two values)
        let cases = [
            (false, "mcp-name", ["list_notes", "purge"]),
            (false, "mcp-method", ["tools/call", "tools/list"]),
            (true, "mcp-name", ["list_notes", "purge"]),
            (true, "mcp-method", ["tools/call", "tools/list"]),
        ];
        for (modern, header, values) in cases {
            let request = |values: &[&str]| {
                let mut request = if modern {
                    post(&server, call_body_2026(2, "list_notes").to_string())
                        .header("mcp-protocol-version", "2026-07-28")
                } else {
                    let mut r = post(&server, call_body(1, "list_notes").to_string());
                    if let Some(id) = &session {
                        r = r.header("mcp-session-id", id);
                    }
                    r
                };
                request = request.header("authorization", bearer(&token));
                for v in values {
                    request = request.header(header, *v);
                }
                if header == "mcp-name" {
                    request.header("mcp-method", "tools/call")
                } else {
                    request.header("mcp-name", "list_notes")
                }
            };
            // Control: with the matching value alone the request is served.
            let raw = send(request(&values[..1])).await;
            assert_eq!(raw.status, 200, "control, {header}: {raw:?}");
            assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");

            let raw = send(request(&values)).await;
            let what = format!(
                "{header}: {} + {}, 2026={modern}, stateful={}, body tools/call list_notes",
                values[0],
                values[1],
                session.is_some()
            );
            let layer_refused = raw.status == 400 && (modern || raw.error_code() == -32600);
            if !layer_refused {
                failures.push(format!(
                    "{what}: got {} {}",
                    raw.status,
                    raw.body.replace('\n', " ")
                ));
            }
            assert_serves(&server).await;
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
}

/// JSON with a repeated key is ambiguous (RFC 8259 section 4); whichever value the layer
/// reads, the operation rmcp would run must not escape the policy: a reader's body naming
/// both `list_notes` and `purge` never purges.
#[tokio::test]
async fn duplicate_json_keys_never_run_an_undecided_operation() {
    for server in servers().await {
        let reader = server.token(&["notes:read"]);
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"purge","name":"list_notes","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_notes","name":"purge","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"purge","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"purge","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_notes","arguments":{}},"params":{"name":"purge","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"purge","arguments":{}},"params":{"name":"list_notes","arguments":{}}}"#,
        ] {
            let raw = send(post(&server, body).header("authorization", bearer(&reader))).await;
            let succeeded = raw.status == 200
                && raw.messages().iter().any(|m| {
                    m["result"]["content"][0]["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("purged"))
                });
            assert!(!succeeded, "{body}: {raw:?}");
            assert!(raw.status < 500, "{body}: {raw:?}");
            assert_serves(&server).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where the token is, and how it is written.
// ---------------------------------------------------------------------------------------

/// A 400 `invalid_request` from the layer: exactly one Bearer challenge, with
/// `error="invalid_request"` and the server's `resource_metadata`; returns the challenge.
fn assert_invalid_request(server: &TestServer, raw: &Raw, what: &str) -> Challenge {
    assert_eq!(raw.status, 400, "{what}: {raw:?}");
    let c = raw.bearer_challenge();
    assert_eq!(c.param("error"), Some("invalid_request"), "{what}: {c:?}");
    assert_eq!(
        c.param("resource_metadata"),
        Some(metadata_url(server).as_str()),
        "{what}"
    );
    c
}

#[tokio::test]
async fn a_token_in_the_query_string_is_400_invalid_request() {
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        for (query, header) in [
            (format!("access_token={token}"), false),
            (format!("access_token={token}"), true),
            (format!("a=1&access_token={token}"), true),
            ("access_token=".to_owned(), true),
            ("access_token".to_owned(), false),
        ] {
            let url = format!("{}?{query}", server.url);
            let mut request = post_to(&url, initialize_body().to_string());
            if header {
                request = request.header("authorization", bearer(&token));
            }
            let raw = send(request).await;
            assert_invalid_request(&server, &raw, &format!("?{query}, header {header}"));
            assert!(raw.header("mcp-session-id").is_none());
            assert!(!raw.body.contains(&token), "the token is not echoed");
            assert_serves(&server).await;
        }
        // A parameter that merely ends in access_token is not one.
        let url = format!("{}?my_access_token=1", server.url);
        let raw = send(
            post_to(&url, initialize_body().to_string()).header("authorization", bearer(&token)),
        )
        .await;
        assert_eq!(raw.status, 200, "{raw:?}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_400() {
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        for (first, second) in [
            (bearer(&token), bearer(&token)),
            (bearer(&token), "Bearer garbage".to_owned()),
            ("Bearer garbage".to_owned(), bearer(&token)),
            ("Basic dXNlcjpwYXNz".to_owned(), bearer(&token)),
        ] {
            let raw = send(
                post(&server, initialize_body().to_string())
                    .header("authorization", &first)
                    .header("authorization", &second),
            )
            .await;
            assert_invalid_request(&server, &raw, "two Authorization headers");
            assert!(raw.header("mcp-session-id").is_none());
            assert_serves(&server).await;
        }
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    for server in servers().await {
        let token = server.token(&["notes:read"]);
        for scheme in ["bEaReR", "bearer", "BEARER", "Bearer"] {
            for spaces in [" ", "   "] {
                let value = format!("{scheme}{spaces}{token}");
                let raw = send(
                    post(&server, initialize_body().to_string()).header("authorization", &value),
                )
                .await;
                assert_eq!(raw.status, 200, "{scheme:?}+{spaces:?}: {raw:?}");
                let raw = send(
                    post(&server, call_body_2026(2, "list_notes").to_string())
                        .header("authorization", &value)
                        .header("mcp-protocol-version", "2026-07-28")
                        .header("mcp-method", "tools/call")
                        .header("mcp-name", "list_notes"),
                )
                .await;
                assert_eq!(raw.status, 200, "{scheme:?}: {raw:?}");
                assert_eq!(raw.message()["result"]["content"][0]["text"], "welcome");
            }
        }
    }
}

/// Authorization values that carry no bearer token: 401 with the plain challenge (no
/// `error`, RFC 6750 section 3.1), as for a request without the header.
#[tokio::test]
async fn other_schemes_and_empty_bearers_are_401() {
    for server in servers().await {
        let values: Vec<HeaderValue> = vec![
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
            HeaderValue::from_static("Token abc"),
            HeaderValue::from_static("Bearer"),
            HeaderValue::from_static("Bearer "),
            HeaderValue::from_static("Bearer    "),
            HeaderValue::from_static("Bearertoken"),
            HeaderValue::from_static(""),
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
            HeaderValue::from_bytes(b"\xffearer abc").unwrap(),
        ];
        for value in values {
            let raw = send(
                post(&server, call_body(1, "purge").to_string())
                    .header("authorization", value.clone()),
            )
            .await;
            assert_eq!(raw.status, 401, "{value:?}: {raw:?}");
            let c = raw.bearer_challenge();
            assert_eq!(c.param("error"), None, "{value:?}: {c:?}");
            assert_eq!(
                c.param("resource_metadata"),
                Some(metadata_url(&server).as_str())
            );
            assert_eq!(c.param("scope"), Some("notes:admin ops:purge"), "{c:?}");
            assert_eq!(raw.error_code(), -32004);
            assert_serves(&server).await;
        }
    }
}

#[tokio::test]
async fn a_20_kb_token_is_400_too_large() {
    for server in servers().await {
        let too_large = AuthError::TooLarge { size: 0, limit: 0 };
        // Garbage, and a validly signed token padded with a large claim.
        let signed = server
            .issuer
            .token(&server.url)
            .subject("alice")
            .scopes(["notes:read"])
            .claim("padding", "p".repeat(20 * 1024))
            .mint()
            .unwrap();
        for token in ["a".repeat(20 * 1024), signed] {
            assert!(token.len() >= 20 * 1024);
            let raw = send(mcp_post(&server, Some(&token), &initialize_body())).await;
            let c = assert_invalid_request(&server, &raw, "a 20 KiB token");
            assert_eq!(c.param("error_description"), Some(too_large.description()));
            assert!(!raw.body.contains(&token[..64]), "the token is not echoed");
            assert_serves(&server).await;
        }
        // Just under the 16 KiB default limit: decoded, and refused as malformed (401).
        let raw = send(
            post(&server, initialize_body().to_string())
                .header("authorization", bearer(&"a".repeat(16 * 1024))),
        )
        .await;
        assert_eq!(raw.status, 401, "{raw:?}");
        assert_eq!(raw.bearer_challenge().param("error"), Some("invalid_token"));
    }
}

#[tokio::test]
async fn garbage_tokens_are_401_invalid_token() {
    for server in servers().await {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = json!({
            "iss": rmcp_authz_tests::server::ISSUER, "aud": server.url, "sub": "mallory",
            "client_id": "x", "scope": "notes:admin ops:purge",
            "iat": 1_700_000_000, "exp": 4_000_000_000_i64
        });
        let unsigned = format!(
            "{}.{}.",
            enc(json!({"alg": "none", "typ": "at+jwt"})),
            enc(claims.clone())
        );
        let good = server.token(&["notes:read"]);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = enc(claims);
        parts[1] = &forged_payload;
        let tampered = parts.join(".");
        for token in [
            "garbage".to_owned(),
            "a.b.c".to_owned(),
            "...".to_owned(),
            "eyJ.eyJ.sig".to_owned(),
            "%00%ff".to_owned(),
            "x".repeat(5000),
            unsigned,
            tampered,
        ] {
            let raw = send(mcp_post(&server, Some(&token), &call_body(1, "purge"))).await;
            assert_eq!(raw.status, 401, "{token:.40}: {raw:?}");
            let c = raw.bearer_challenge();
            assert_eq!(c.param("error"), Some("invalid_token"), "{c:?}");
            assert!(
                c.param("error_description").is_some_and(|d| !d.is_empty()),
                "{c:?}"
            );
            assert_eq!(
                c.param("resource_metadata"),
                Some(metadata_url(&server).as_str())
            );
            assert_eq!(raw.error_code(), -32004);
            assert_serves(&server).await;
        }
    }
}

/// Everything above, one after another against one server, then a full rmcp client: the
/// server is still up and answering correctly.
#[tokio::test]
async fn the_server_survives_a_barrage() {
    let server = TestServer::start(true).await;
    let token = server.token(&["notes:read"]);
    let requests = vec![
        post(&server, vec![b' '; LIMIT + 10]).header("authorization", bearer(&token)),
        post(&server, "not json").header("authorization", bearer(&token)),
        post(&server, "[]").header("authorization", bearer(&token)),
        post(&server, "{}").header("authorization", bearer(&token)),
        post(&server, call_body(1, "purge").to_string()).header("authorization", "Basic abc"),
        post(&server, call_body(1, "purge").to_string())
            .header("authorization", bearer(&"z".repeat(20_000))),
        post_to(
            &format!("{}?access_token={token}", server.url),
            call_body(1, "list_notes").to_string(),
        ),
        mcp_post(&server, Some(&token), &call_body(1, "purge"))
            .header("authorization", bearer(&token)),
        http()
            .put(&server.url)
            .header("authorization", bearer(&token))
            .body("x"),
        http()
            .get(&server.url)
            .header("authorization", bearer(&token)),
        http()
            .delete(&server.url)
            .header("authorization", bearer(&token))
            .header("mcp-session-id", "nope"),
    ];
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(send(request).await.status);
    }
    assert_eq!(&statuses[..8], &[413, 400, 400, 400, 401, 400, 400, 400]);
    // The rest are rmcp's to answer (405, 406, ...); none may be a server error.
    assert!(statuses[8..].iter().all(|s| *s < 500), "{statuses:?}");

    let client = tokio::time::timeout(STEP, server.legacy_client(&token))
        .await
        .unwrap()
        .expect("connect");
    let tools = tokio::time::timeout(STEP, client.list_tools(None))
        .await
        .unwrap()
        .expect("tools/list");
    let mut names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["list_notes", "read_note", "whoami"]);
    let _ = client.cancel().await;
}
