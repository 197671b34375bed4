//! A notes server whose calls are decided on their arguments by Cedar policies
//! (`examples/cedar/notes.cedar`), behind rmcp-authz, over Streamable HTTP.
//!
//! Scope rules say which tools a token may call; the Cedar policies then say with which
//! arguments: an agent writes only into its user's folder (or into `shared`, with the
//! extra scope `notes:share`), a delegated token calls read-only tools only, and `purge`
//! never goes through a delegation chain. The server trusts a built-in development
//! issuer and prints tokens to try, with the calls each may make.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --features cedar --example cedar_notes
//! cargo run -p rmcp-authz-examples --features cedar --example cedar_notes -- \
//!     --port 0 --audit-file cedar-audit.jsonl
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rmcp_authz::Authz;
use rmcp_authz::audit::{Auditor, Durability, JsonLines};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz_examples::folder_notes::{cedar_file, cedar_policies, router, scope_policy};
use rmcp_authz_examples::report;

#[derive(Debug, Parser)]
#[command(
    name = "cedar_notes",
    about = "A notes server with Cedar argument-level policies, behind rmcp-authz"
)]
struct Args {
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Record every decision, with the Cedar policies that made it, to this JSON Lines
    /// file (durably: each event is synced before its answer).
    #[arg(long)]
    audit_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    report::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{}: {e}; choose another --port (0 picks a free one)",
                args.port
            )
        })?;
    let url = format!("http://{}/mcp", listener.local_addr()?);

    let issuer = DevIssuer::new("https://dev-issuer.invalid")?;
    let mut builder = Authz::builder(issuer.verifier(url.clone()).build()?, scope_policy())
        // Parsed here; checked against the server's tools by `router` below.
        .cedar(cedar_policies()?);
    if let Some(path) = &args.audit_file {
        // Durable: each event is on disk before its answer.
        let auditor = Auditor::builder(Arc::new(JsonLines::open(path)?))
            .durability(Durability::Durable)
            .build()?;
        builder = builder.auditor(auditor);
        println!("Audit log: {}", path.display());
    }
    let authz = builder.build();
    // Fails now, naming the policy, if one does not fit the tools (a tool the server does
    // not have, an argument it does not take or of another type).
    let app = router(&authz)?;

    println!("Cedar policies: {}", cedar_file().display());
    println!("Trusting a development issuer. Tokens for user alice (valid for one hour):");
    let tokens = [
        (
            "writer",
            None,
            vec!["notes:write"],
            "write_note into folder alice",
        ),
        (
            "sharer",
            None,
            vec!["notes:write", "notes:share"],
            "write_note into folder shared too",
        ),
        (
            "delegated",
            Some("planner"),
            vec!["notes:write"],
            "read_note and list_notes only (a delegation chain)",
        ),
        ("admin", None, vec!["notes:admin"], "purge as well"),
    ];
    for (name, actor, scopes, may) in tokens {
        let mut token = issuer
            .token(url.clone())
            .subject("alice")
            .client_id("notes-agent")
            .scopes(&scopes);
        if let Some(actor) = actor {
            token = token.actor(actor);
        }
        println!(
            "\n{name} ({}; may {may}):\n{}",
            scopes.join(" "),
            token.mint()?
        );
    }
    println!("\nnotes MCP server: {url}");
    println!(
        "Try, with TOKEN one of the above:\n  curl -s {url} -H \"Authorization: Bearer $TOKEN\" \
         -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
         -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\
         \"write_note\",\"arguments\":{{\"folder\":\"bob\",\"title\":\"hi\",\"text\":\"x\"}}}}}}'"
    );
    println!("(folder bob: 403, forbidden by own-folder-only; folder alice: allowed)");
    println!("Ctrl-C (or SIGTERM) to stop.");
    authz
        .serve(listener, app, rmcp_authz::http::shutdown_signal())
        .await?;
    Ok(())
}
