//! `Authz::router` with its own defaults (issue 13, "one entry point"): stateless, so a
//! raw HTTP `tools/call` with no `initialize`, no session and no protocol header is
//! served, and 2025-06-18 and 2026-07-28 rmcp clients both work; rmcp's DNS-rebinding
//! guard accepts the `Host` of the resource URI (and loopback) and refuses any other; a
//! path axum cannot nest at is a `ConfigError::InvalidPath`, not a panic.

use rmcp::model::CallToolRequestParams;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::{Authz, ConfigError};
use rmcp_authz_tests::http::{Raw, STEP, call_body, send};
use rmcp_authz_tests::notes::{Notes, notes_policy};
use rmcp_authz_tests::server::{ISSUER, TestServer};
use serde_json::Value;
use tokio::time::timeout;

async fn router_server() -> TestServer {
    TestServer::start_router(notes_policy(), None).await
}

fn text(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {message}"))
}

/// A POST of `body` with only what any HTTP client sends: the token, `Content-Type`
/// and `Accept`; no session, no `MCP-Protocol-Version`, no `Mcp-Method`.
fn bare_post(url: &str, token: &str, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
}

/// A raw `tools/call` with no handshake: 200 with the result, no session opened.
#[tokio::test]
async fn a_sessionless_raw_tools_call_is_served() {
    let server = router_server().await;
    let token = server.token(&["notes:read"]);
    for (id, tool) in [(1, "list_notes"), (2, "whoami"), (3, "list_notes")] {
        let raw = send(bare_post(&server.url, &token, &call_body(id, tool))).await;
        assert_eq!(raw.status, 200, "{tool}: {raw:?}");
        assert!(
            raw.header("mcp-session-id").is_none(),
            "stateless: no session: {raw:?}"
        );
        let message = raw.message();
        assert_eq!(message["id"], id, "{message}");
        if tool == "list_notes" {
            assert_eq!(text(&message), "welcome");
        } else {
            let who: Value = serde_json::from_str(text(&message)).expect("whoami JSON");
            assert_eq!(who["subject"], "alice", "{who}");
        }
    }
    // A plain JSON answer where the call sends nothing before its result.
    let raw = send(bare_post(&server.url, &token, &call_body(4, "list_notes"))).await;
    assert!(
        raw.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{raw:?}"
    );
    // Still gated: a call beyond the token's scopes is the layer's 403.
    let raw = send(bare_post(&server.url, &token, &call_body(5, "write_note"))).await;
    assert_eq!(raw.status, 403, "{raw:?}");
}

/// A 2025-06-18 client (initialize handshake) and a 2026-07-28 client (discover,
/// per-request metadata) both list and call tools.
#[tokio::test]
async fn legacy_and_modern_rmcp_clients_both_work() {
    let server = router_server().await;
    let token = server.token(&["notes:read"]);
    for modern in [false, true] {
        let client = if modern {
            server.modern_client(&token).await
        } else {
            server.legacy_client(&token).await
        }
        .unwrap_or_else(|e| panic!("modern {modern}: connect: {e:?}"));
        let tools = timeout(STEP, client.list_tools(None))
            .await
            .expect("in time")
            .expect("tools/list");
        let mut names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            ["list_notes", "read_note", "whoami"],
            "modern {modern}"
        );
        let result = timeout(
            STEP,
            client.call_tool(CallToolRequestParams::new("list_notes")),
        )
        .await
        .expect("in time")
        .expect("tools/call");
        let texts: Vec<_> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        assert_eq!(texts, ["welcome"], "modern {modern}");
        let _ = client.cancel().await;
    }
}

/// A server whose resource URI names `host` (and the port it listens on) while it binds
/// 127.0.0.1, as behind a local DNS name or a proxy that keeps the `Host`.
struct NamedServer {
    /// `http://127.0.0.1:<port>/mcp`: where requests go.
    bound: String,
    port: u16,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NamedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn named_server(host: &str) -> NamedServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let resource = format!("http://{host}:{port}/mcp");
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let verifier = issuer.verifier(resource.clone()).build().expect("verifier");
    let authz = Authz::new(verifier, notes_policy());
    let app = authz.router("/mcp", Notes::new).expect("router");
    let token = issuer
        .token(&resource)
        .subject("alice")
        .scopes(["notes:read"])
        .mint()
        .expect("mint");
    let served = authz.clone();
    let task = tokio::spawn(async move {
        let _ = served.serve(listener, app, std::future::pending()).await;
    });
    NamedServer {
        bound: format!("http://127.0.0.1:{port}/mcp"),
        port,
        token,
        task,
    }
}

impl NamedServer {
    async fn call_with_host(&self, host: &str) -> Raw {
        send(bare_post(&self.bound, &self.token, &call_body(1, "list_notes")).header("host", host))
            .await
    }
}

/// rmcp's DNS-rebinding guard, configured by the router: the resource URI's host is
/// accepted (with its port, or any case), loopback too; any other `Host` is refused with
/// rmcp's 403 before the handler runs.
#[tokio::test]
async fn the_resource_host_is_allowed_and_a_foreign_host_refused() {
    let server = named_server("mcp.test.invalid").await;
    let port = server.port;
    for host in [
        format!("mcp.test.invalid:{port}"),
        "mcp.test.invalid".to_owned(),
        format!("MCP.Test.Invalid:{port}"),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ] {
        let raw = server.call_with_host(&host).await;
        assert_eq!(raw.status, 200, "Host: {host}: {raw:?}");
        assert_eq!(text(&raw.message()), "welcome", "Host: {host}");
    }
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("mcp.test.invalid.evil.example:{port}"),
        format!("test.invalid:{port}"),
    ] {
        let raw = server.call_with_host(&host).await;
        assert_eq!(raw.status, 403, "Host: {host}: {raw:?}");
        // rmcp's refusal, not the layer's: no challenge, the token was fine.
        assert!(
            raw.header("www-authenticate").is_none(),
            "Host: {host}: {raw:?}"
        );
    }
}

/// Paths axum cannot nest a service at are refused when the router is built, naming the
/// path; good paths build.
#[tokio::test]
async fn a_bad_path_is_a_config_error_not_a_panic() {
    let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
    let verifier = issuer
        .verifier("http://127.0.0.1:1/mcp")
        .build()
        .expect("verifier");
    let authz = Authz::new(verifier, notes_policy());
    for bad in [
        "mcp",
        "/",
        "",
        "//",
        "/{id}",
        "/mcp/*rest",
        "/mcp?x=1",
        "/mcp#f",
        "/mcp/:v",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            authz.router(bad, Notes::new)
        }));
        let Ok(result) = built else {
            panic!("router({bad:?}) panicked");
        };
        match result {
            Err(ConfigError::InvalidPath { path, .. }) => assert_eq!(path, bad),
            Err(other) => panic!("router({bad:?}): expected InvalidPath, got {other}"),
            Ok(_) => panic!("router({bad:?}) built"),
        }
        let e = authz.router(bad, Notes::new).expect_err("refused");
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
    }
    for good in ["/mcp", "/api/v1/mcp", "/mcp/"] {
        if let Err(e) = authz.router(good, Notes::new) {
            panic!("router({good:?}): {e}");
        }
    }
}
