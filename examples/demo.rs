//! A guided tour: the notes MCP server behind rmcp-authz, on 127.0.0.1, with a built-in
//! development issuer. It shows a request without a token, the tool list as agents with
//! different scopes see it, an allowed call, a 403 step-up challenge, the same call
//! succeeding with a token for the scopes the challenge named, and the audit log of it
//! all, one event per request. Exits 0; closes its port.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --example demo
//! ```

use std::error::Error;
use std::process::ExitCode;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use std::sync::Arc;

use rmcp_authz::Authz;
use rmcp_authz::audit::{AuditEvent, Auditor, Durability, MemorySink};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz_examples::notes::{notes_policy, router};

type Client = RunningService<RoleClient, ClientConfig>;

#[tokio::main]
async fn main() -> ExitCode {
    rmcp_authz_examples::report::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    // 1. The server: an ephemeral port on loopback, a development issuer, the notes policy.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    let issuer = DevIssuer::new("https://demo-issuer.invalid")?;
    // Every decision is recorded; the demo keeps the events in memory to show them.
    let log = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(log.clone())
        .durability(Durability::Durable)
        .build()?;
    let authz = Authz::builder(issuer.verifier(url.clone()).build()?, notes_policy())
        .auditor(auditor)
        .build();
    let app = router(&authz)?;
    let served = authz.clone();
    let server =
        tokio::spawn(async move { served.serve(listener, app, std::future::pending()).await });
    println!("notes MCP server listening at {url}\n");

    let result = tour(&url, &issuer, &authz).await;
    server.abort();
    let _ = server.await;
    result?;
    show_audit_log(&log.events());
    println!("\ndone: the server is stopped and its port closed.");
    Ok(())
}

async fn tour(url: &str, issuer: &DevIssuer, authz: &Authz) -> Result<(), Box<dyn Error>> {
    step("A request without a token");
    let http = reqwest::Client::new();
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_notes"}}"#)
        .send()
        .await?;
    println!("HTTP {}", response.status());
    println!(
        "WWW-Authenticate: {}",
        header(&response, "www-authenticate")
    );
    println!(
        "\nThe client follows resource_metadata to {}:",
        authz.resource_metadata_url()
    );
    let metadata: serde_json::Value = http
        .get(authz.resource_metadata_url())
        .send()
        .await?
        .json()
        .await?;
    println!("{metadata:#}");

    step("The tool list, as each agent sees it");
    for (agent, scopes) in [
        ("reader-agent", vec!["notes:read"]),
        ("writer-agent", vec!["notes:write"]),
        ("admin-agent", vec!["notes:admin", "ops:purge"]),
    ] {
        let client = connect(url, &mint(issuer, url, agent, &scopes)?).await?;
        let tools = client.list_tools(None).await?;
        let names: Vec<_> = tools.tools.iter().map(|t| t.name.to_string()).collect();
        println!(
            "{agent:<13} scopes {scopes:?}\n              sees {names:?} (cacheScope {:?})",
            tools.cache_scope
        );
        client.cancel().await?;
    }

    step("An allowed call: reader-agent lists the notes");
    let reader_scopes = ["notes:read"];
    let reader = connect(url, &mint(issuer, url, "reader-agent", &reader_scopes)?).await?;
    let listed = reader
        .call_tool(CallToolRequestParams::new("list_notes"))
        .await?;
    println!("list_notes -> {}", text_of(&listed));
    let who = reader
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    println!("whoami -> {}", text_of(&who));

    step("A call beyond the token's scopes: reader-agent tries to write a note");
    let args = serde_json::json!({"id": "plan", "text": "ship it"});
    let write = CallToolRequestParams::new("write_note")
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let challenge = match reader.call_tool(write.clone()).await {
        Ok(result) => {
            return Err(format!("write_note should have been refused, got {result:?}").into());
        }
        Err(e) => e
            .auth_challenge()
            .map(str::to_owned)
            .ok_or("the refusal carries no challenge")?,
    };
    println!("HTTP 403, WWW-Authenticate: {challenge}");
    let needed = challenge_scope(&challenge).ok_or("the challenge names no scope")?;
    println!("the server says the call needs: {needed}");
    reader.cancel().await?;

    step("Stepping up: a new token with the scopes the challenge named");
    let mut stepped: Vec<&str> = reader_scopes.to_vec();
    for scope in needed.split(' ') {
        if !stepped.contains(&scope) {
            stepped.push(scope);
        }
    }
    println!("requesting {stepped:?} (what the agent had, plus what the challenge named)");
    let writer = connect(url, &mint(issuer, url, "reader-agent", &stepped)?).await?;
    let written = writer.call_tool(write).await?;
    println!("write_note -> {}", text_of(&written));
    let listed = writer
        .call_tool(CallToolRequestParams::new("list_notes"))
        .await?;
    println!("list_notes -> {}", text_of(&listed));
    writer.cancel().await?;
    Ok(())
}

/// The audit log as a table: one event per request the server decided.
fn show_audit_log(events: &[AuditEvent]) {
    step("The audit log: one event per request, allowed or not");
    println!(
        "{:<15} {:<23} {:<17} {:<8} {:<10} reason",
        "agent", "method", "target", "decision", "outcome"
    );
    for e in events {
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        println!(
            "{:<15} {:<23} {:<17} {:<8} {:<10} {}",
            text(&e.agent),
            text(&e.method),
            text(&e.target),
            name(&e.decision),
            name(&e.outcome),
            text(&e.reason_code),
        );
    }
}

/// An enum's name as the log writes it (`deny`, `success`, ...).
fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn mint(
    issuer: &DevIssuer,
    url: &str,
    agent: &str,
    scopes: &[&str],
) -> Result<String, Box<dyn Error>> {
    Ok(issuer
        .token(url)
        .subject("alice")
        .client_id(agent)
        .scopes(scopes)
        .mint()?)
}

async fn connect(url: &str, token: &str) -> Result<Client, Box<dyn Error>> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    );
    Ok(ClientConfig::default()
        .with_protocol_version(ProtocolVersion::V_2025_06_18)
        .serve(transport)
        .await?)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `scope` parameter of a `Bearer` challenge.
fn challenge_scope(challenge: &str) -> Option<String> {
    let start = challenge.find("scope=\"")? + "scope=\"".len();
    let rest = &challenge[start..];
    Some(rest[..rest.find('"')?].to_owned())
}
