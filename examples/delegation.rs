//! Agents acting for a user through a chain of agents (RFC 8693 token exchange), decided on
//! and recorded. Everything runs on 127.0.0.1: a development authorization server with a
//! token-exchange endpoint, and the notes server, whose policy says
//!
//! - at most two agents between the user and the server, for everything;
//! - only `research-agent` (or the user's own app) may write notes;
//! - `purge` takes the user's own token only.
//!
//! Alice's token is exchanged by an orchestrator, which hands the task to a research agent,
//! which exchanges the orchestrator's delegated token again; each calls the notes server
//! with its own delegated tokens, through the agent side of `rmcp-authz`: an `Exchanged`
//! token source (RFC 8693, the agent's own token as the actor token) behind a `Refreshing`
//! cache, presented by `agent::transport`, which checks the server's protected resource
//! metadata first and steps up when a tool needs more scopes. A scraper, a third hop and a
//! delegated purge are refused. The audit log at the end shows who did what on whose
//! behalf. Exits 0.
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --example delegation
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp_authz::Authz;
use rmcp_authz::agent::{self, Exchanged, Refreshing, TokenSource};
use rmcp_authz::audit::{Auditor, Durability, MemorySink};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Conditions, Policy, Rule, ScopeExpr, all_of};
use rmcp_authz::remote::{FetchOptions, TokenExchangeClient, discover};
use rmcp_authz_examples::notes::router;

type Outcome = Result<String, String>;

#[tokio::main]
async fn main() -> ExitCode {
    rmcp_authz_examples::report::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    // 1. The authorization server: a development issuer with a token-exchange endpoint.
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer_url = format!("http://{}", as_listener.local_addr()?);
    let issuer = Arc::new(DevIssuer::new(issuer_url.clone())?);
    let routes = Arc::clone(&issuer).token_endpoint_router();
    let authorization_server = tokio::spawn(async move { axum::serve(as_listener, routes).await });

    // 2. The notes server, with a policy on the delegation chain, recording every decision.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let notes = format!("http://{}/mcp", listener.local_addr()?);
    let log = Arc::new(MemorySink::new());
    let auditor = Auditor::builder(log.clone())
        .durability(Durability::Durable)
        .build()?;
    let authz = Authz::builder(issuer.verifier(notes.clone()).build()?, policy()?)
        .auditor(auditor)
        .build();
    let app = router(&authz)?;
    let served = authz.clone();
    let server =
        tokio::spawn(async move { served.serve(listener, app, std::future::pending()).await });
    println!("authorization server {issuer_url}, notes server {notes}\n");

    let result = story(&issuer, &issuer_url, &notes).await;
    server.abort();
    authorization_server.abort();
    result?;

    println!("\n== The audit log: who did what, on whose behalf");
    println!(
        "{:<8} {:<46} {:<12} {:<8} reason",
        "user", "via (current agent first)", "tool", "decision"
    );
    for e in log.events() {
        let chain = if e.delegation_chain.is_empty() {
            format!("(direct, {})", e.client_id.as_deref().unwrap_or("-"))
        } else {
            e.delegation_chain.join(" <- ")
        };
        let decision = serde_json::to_value(e.decision)?;
        println!(
            "{:<8} {:<46} {:<12} {:<8} {}",
            e.subject.as_deref().unwrap_or("-"),
            chain,
            e.target.as_deref().unwrap_or("-"),
            decision.as_str().unwrap_or("-"),
            e.reason_code.as_deref().unwrap_or("-"),
        );
    }
    println!(
        "\n(the same log, written to a file, is what `rmcp-authz audit query --actor orchestrator` searches)"
    );
    Ok(())
}

fn policy() -> Result<Policy, rmcp_authz::policy::PolicyError> {
    Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:delete"])
        .implies("notes:write", ["notes:read"])
        .default_conditions(Conditions::new().max_chain_depth(2))
        .tool("list_notes", "notes:read")
        .tool("read_note", "notes:read")
        .tool(
            "write_note",
            Rule::new("notes:write")
                .with(Conditions::new().only_agents(["research-agent", "notes-app"])),
        )
        .tool("delete_note", "notes:delete")
        .tool(
            "purge",
            Rule::new(all_of(["notes:admin", "ops:purge"])).with(Conditions::new().user_only()),
        )
        .tool("whoami", ScopeExpr::authenticated())
        .build()
}

async fn story(issuer: &DevIssuer, issuer_url: &str, notes: &str) -> Result<(), Box<dyn Error>> {
    // The token endpoint, found by discovery as any agent would.
    let metadata = discover(issuer_url, &FetchOptions::loopback_http()).await?;
    let endpoint = metadata.token_endpoint.ok_or("no token_endpoint")?;
    let exchange = TokenExchangeClient::new(endpoint, FetchOptions::loopback_http())?;

    // Alice signs in to her notes app; each agent holds a token of its own.
    let alice = issuer
        .token(issuer_url)
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:read", "notes:write", "notes:admin", "ops:purge"])
        .mint()?;
    let agent = |name: &str| {
        issuer
            .token(issuer_url)
            .subject(name)
            .client_id(name)
            .mint()
    };

    // Each agent's tokens for the notes server: Alice's token (or the token the agent
    // was handed) exchanged with the agent's own token as the actor token, cached.
    let acting = |subject: Arc<dyn TokenSource>, who: &str| -> Result<_, Box<dyn Error>> {
        let exchanged =
            Exchanged::from_source(exchange.clone(), subject, notes).actor_token(agent(who)?);
        Ok(Arc::new(Refreshing::new(exchanged)) as Arc<dyn TokenSource>)
    };
    let alice_app: Arc<dyn TokenSource> =
        Arc::new(Exchanged::new(exchange.clone(), alice.clone(), notes));

    println!("== The orchestrator exchanges Alice's token, asking only to read");
    let orchestrator = acting(alice_app.clone(), "orchestrator")?;
    let read = ["notes:read"];
    report(
        "orchestrator",
        &call(notes, &orchestrator, &read, "whoami").await,
    );
    report(
        "orchestrator",
        &call(notes, &orchestrator, &read, "list_notes").await,
    );

    println!("\n== It hands the task to the research agent, which exchanges again");
    println!("   (asking to read; write_note's 403 names notes:write, and it steps up)");
    let research = acting(orchestrator.clone(), "research-agent")?;
    report(
        "research-agent",
        &call(notes, &research, &read, "whoami").await,
    );
    report(
        "research-agent",
        &call(notes, &research, &read, "write_note").await,
    );

    println!("\n== Refused: a scraper may not write, three hops are too many, purge is the user's");
    let scraper = acting(alice_app.clone(), "scraper")?;
    report(
        "scraper",
        &call(notes, &scraper, &["notes:write"], "write_note").await,
    );
    let summarizer = acting(research.clone(), "summarizer")?;
    report(
        "summarizer",
        &call(notes, &summarizer, &read, "list_notes").await,
    );
    let purge = ["notes:admin", "ops:purge"];
    report(
        "orchestrator",
        &call(notes, &orchestrator, &purge, "purge").await,
    );

    println!("\n== Scopes are never widened: asking for more than Alice granted is refused");
    let reader = exchange
        .exchange(&alice, None, notes, &["notes:read"])
        .await?;
    match exchange
        .exchange(
            &reader.access_token,
            Some(&agent("orchestrator")?),
            notes,
            &["notes:write"],
        )
        .await
    {
        Ok(_) => return Err("a widened exchange was granted".into()),
        Err(e) => println!("exchange refused: {e}"),
    }

    println!("\n== Alice's own token may purge");
    report("alice", &call(notes, &alice_app, &purge, "purge").await);
    Ok(())
}

fn report(who: &str, outcome: &Outcome) {
    match outcome {
        Ok(text) => println!("{who:<15} ok: {text}"),
        Err(e) => println!("{who:<15} REFUSED: {e}"),
    }
}

/// Calls `tool` on the notes server with tokens from `source`, starting with `scopes`; the
/// answer text or the refusal.
async fn call(url: &str, source: &Arc<dyn TokenSource>, scopes: &[&str], tool: &str) -> Outcome {
    let transport = agent::transport(url.to_owned(), source.clone(), scopes.iter().copied());
    let client = ClientConfig::default()
        .with_protocol_version(ProtocolVersion::V_2025_06_18)
        .serve(transport)
        .await
        .map_err(|e| e.to_string())?;
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if tool == "write_note" {
        let args = serde_json::json!({"id": "findings", "text": "three sources agree"});
        params = params.with_arguments(args.as_object().cloned().unwrap_or_default());
    }
    let result = client.call_tool(params).await;
    let _ = client.cancel().await;
    match result {
        Ok(r) => Ok(r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect()),
        Err(rmcp::ServiceError::McpError(e)) => Err(e.message.to_string()),
        Err(e) => Err(refusal_text(&e)),
    }
}

/// The server's words for a refusal the HTTP layer answered (403 or 401 with a body).
fn refusal_text(e: &rmcp::ServiceError) -> String {
    let text = e.to_string();
    // The transport error quotes the JSON-RPC error body; keep its message.
    match text.find("refused by") {
        Some(i) => {
            let rest = &text[i..];
            let end = rest.find("\"}").unwrap_or(rest.len());
            rest[..end].replace("\\\"", "\"")
        }
        None => text,
    }
}
