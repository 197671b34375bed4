//! A stolen token, replayed: with DPoP (RFC 9449) it is worth nothing to the thief.
//! Everything runs on 127.0.0.1: a development authorization server that issues DPoP-bound
//! tokens, and the notes server behind `rmcp-authz`, which accepts only DPoP-bound tokens
//! (`AuthzBuilder::require_dpop`) and records every decision.
//!
//! A research agent holds a key (`DpopKey`), gets Alice's token exchanged for one bound to
//! that key, and calls the server through rmcp's client with a fresh proof on every request
//! (`agent::dpop_transport`). Then its token leaks, as tokens do (a log line, a proxy, a
//! compromised tool server), and a thief tries it three ways: as a bearer token, with a
//! proof signed by the thief's own key, and with a proof copied off the wire next to the
//! token. Each is refused; the audit log at the end shows the agent's calls, with the key
//! each proved, and the thief's refusals. Exits 0 when all of that holds.
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --example dpop
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp_authz::Authz;
use rmcp_authz::agent::{self, AccessToken, AuthorizedHttpClient, Exchanged, Refreshing};
use rmcp_authz::audit::{AuditEvent, Auditor, Durability, MemorySink};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
use rmcp_authz::token::dpop::{DpopKey, DpopOptions, DpopVerifier};
use rmcp_authz_examples::notes::{notes_policy, router};

#[tokio::main]
async fn main() -> ExitCode {
    rmcp_authz_examples::report::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    // 1. The authorization server: a development issuer whose token endpoint binds the
    //    tokens it issues to the key of the DPoP proof sent with the request.
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer_url = format!("http://{}", as_listener.local_addr()?);
    let issuer = Arc::new(DevIssuer::new(issuer_url.clone())?);
    let routes = Arc::clone(&issuer).token_endpoint_router();
    let authorization_server = tokio::spawn(async move { axum::serve(as_listener, routes).await });

    // 2. The notes server: DPoP-bound tokens only, every decision recorded.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let notes = format!("http://{}/mcp", listener.local_addr()?);
    let log = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(log.clone())
        .durability(Durability::Durable)
        .build()?;
    let authz = Authz::builder(issuer.verifier(notes.clone()).build()?, notes_policy())
        .dpop(DpopVerifier::new(DpopOptions::default()))
        .require_dpop()
        .auditor(auditor)
        .build();
    let app = router(&authz)?;
    let served = authz.clone();
    let server =
        tokio::spawn(async move { served.serve(listener, app, std::future::pending()).await });
    println!("notes MCP server at {notes}: DPoP-bound tokens only\n");

    let result = story(&issuer, &issuer_url, &notes).await;
    server.abort();
    authorization_server.abort();
    result?;
    show_audit_log(&log.events());
    Ok(())
}

async fn story(issuer: &DevIssuer, issuer_url: &str, notes: &str) -> Result<(), Box<dyn Error>> {
    // Alice's token, as her notes app holds it and hands it to the agent for a task.
    let alice = issuer
        .token(notes)
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:read", "notes:write"])
        .mint()?;

    // 3. The agent's key, and Alice's token exchanged for one bound to it.
    let key = Arc::new(DpopKey::generate()?);
    println!("the research agent's DPoP key: {}", key.thumbprint());
    let exchange =
        TokenExchangeClient::new(format!("{issuer_url}/token"), FetchOptions::loopback_http())?
            .dpop(Arc::clone(&key));
    let source = Arc::new(Refreshing::new(Exchanged::new(
        exchange.clone(),
        alice.clone(),
        notes,
    )));

    // 4. The agent calls the server through rmcp's client; every request carries a proof.
    let client = ClientConfig::default()
        .serve(agent::dpop_transport(
            notes,
            source,
            ["notes:read", "notes:write"],
            Arc::clone(&key),
        ))
        .await?;
    let mut write = CallToolRequestParams::new("write_note");
    let args = serde_json::json!({"id": "findings", "text": "three sources agree"});
    write = write.with_arguments(args.as_object().cloned().unwrap_or_default());
    client.call_tool(write).await?;
    let listed = client
        .call_tool(CallToolRequestParams::new("list_notes"))
        .await?;
    println!(
        "  agent: write_note, then list_notes -> {:?}",
        listed.content
    );
    let _ = client.cancel().await;

    // 5. The agent's token leaks. It is bound to the agent's key (cnf.jkt).
    let stolen = exchange
        .exchange(&alice, None, notes, &["notes:read", "notes:write"])
        .await?;
    if !stolen.dpop_bound {
        return Err("the authorization server did not bind the token".into());
    }
    println!(
        "\na token leaks (bound to {}); the thief tries it:",
        key.thumbprint()
    );

    // 5a. As a bearer token.
    let as_bearer = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(notes.to_owned())
                .auth_header(stolen.access_token.clone()),
        ))
        .await;
    expect_refused("as a bearer token", as_bearer.map(|_| ()))?;

    // 5b. With a proof signed by the thief's own key.
    let thief = Arc::new(DpopKey::generate()?);
    let token =
        AccessToken::new(stolen.access_token.clone(), None, ["notes:read"]).with_dpop_bound(true);
    let with_own_key = ClientConfig::default()
        .serve(StreamableHttpClientTransport::with_client(
            AuthorizedHttpClient::new(reqwest::Client::new(), Arc::new(token), ["notes:read"])
                .dpop(thief),
            StreamableHttpClientTransportConfig::with_uri(notes.to_owned()),
        ))
        .await;
    expect_refused(
        "with a proof of the thief's own key",
        with_own_key.map(|_| ()),
    )?;

    // 5c. With a proof copied off the wire beside the token: it was good for one request,
    //     and that request was made.
    let proof = key.proof("POST", notes, Some(&stolen.access_token), None)?;
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "list_notes", "arguments": {}}});
    let http = reqwest::Client::new();
    let send = || {
        http.post(notes)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("DPoP {}", stolen.access_token))
            .header("dpop", proof.clone())
            .body(call.to_string())
            .send()
    };
    let first = send().await?.status();
    let again = send().await?;
    let status = again.status();
    let challenge = again
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    println!("  the owner's own request with that proof: {first}");
    if status != 401 || !challenge.contains("invalid_dpop_proof") {
        return Err(format!("a replayed proof got {status} {challenge}").into());
    }
    println!("  refused, a copied proof replayed: {status}, {challenge}");
    Ok(())
}

/// Fails unless `attempt` was refused.
fn expect_refused<E>(how: &str, attempt: Result<(), E>) -> Result<(), Box<dyn Error>> {
    match attempt {
        Ok(()) => Err(format!("the stolen token worked {how}").into()),
        // rmcp's error says only that authorization failed; the audit log says why.
        Err(_) => {
            println!("  refused, {how} (401; the audit log below says why)");
            Ok(())
        }
    }
}

fn show_audit_log(events: &[AuditEvent]) {
    println!("\nthe audit log (decision, method, tool, the DPoP key proven):");
    for e in events {
        println!(
            "  {:<5} {:<10} {:<10} {}",
            format!("{:?}", e.decision).to_lowercase(),
            e.method.as_deref().unwrap_or("-"),
            e.target.as_deref().unwrap_or("-"),
            e.dpop_jkt.as_deref().unwrap_or("-"),
        );
        if let Some(reason) = &e.reason {
            println!(
                "        {}: {reason}",
                e.reason_code.as_deref().unwrap_or("")
            );
        }
    }
}
