//! The notes MCP server over Streamable HTTP, behind rmcp-authz.
//!
//! Without options it trusts a built-in development issuer and prints ready-to-use tokens
//! (for an agent that may read, one that may write, and an admin), so any MCP client can
//! connect with `Authorization: Bearer <token>`. With `--issuer` and `--jwks` (or
//! `--config`) it trusts a real authorization server instead.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --example notes_http
//! cargo run -p rmcp-authz-examples --example notes_http -- --port 8080 \
//!     --issuer https://auth.example.com --jwks jwks.json --audience https://mcp.example.com/mcp
//! cargo run -p rmcp-authz-examples --example notes_http -- --config rmcp-authz.toml
//! cargo run -p rmcp-authz-examples --example notes_http -- --audit-file notes-audit.jsonl --durable
//! ```
//!
//! (`--config` takes a file like `docs/rmcp-authz.example.toml`, with the JWK Set it names
//! beside it.)

use std::path::PathBuf;

use clap::Parser;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use std::sync::Arc;

use rmcp_authz::audit::{Auditor, Durability, JsonLines};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::token::JwtVerifier;
use rmcp_authz::{Authz, AuthzBuilder};
use rmcp_authz_examples::notes::{http_app, notes_policy};

#[derive(Debug, Parser)]
#[command(about = "The notes MCP server over HTTP, behind rmcp-authz")]
struct Args {
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Trust this issuer (with --jwks) instead of the development issuer.
    #[arg(long, requires = "jwks")]
    issuer: Option<String>,
    /// The issuer's JWK Set file.
    #[arg(long, requires = "issuer")]
    jwks: Option<PathBuf>,
    /// This server's canonical URI, the audience tokens must name
    /// (default http://127.0.0.1:PORT/mcp).
    #[arg(long)]
    audience: Option<String>,
    /// Take the verifier, the policy and the audit settings from a configuration file
    /// instead.
    #[arg(long, conflicts_with_all = ["issuer", "jwks", "audit_file"])]
    config: Option<PathBuf>,
    /// Record every decision to this JSON Lines audit file (hash-chained, mode 0600).
    #[arg(long)]
    audit_file: Option<PathBuf>,
    /// With --audit-file: answer each call only once its event is synced to disk.
    #[arg(long, requires = "audit_file")]
    durable: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let local = listener.local_addr()?;
    let audience = args
        .audience
        .unwrap_or_else(|| format!("http://{local}/mcp"));

    let auditor = match &args.audit_file {
        Some(path) => {
            let durability = if args.durable {
                Durability::Durable
            } else {
                Durability::default()
            };
            println!("Audit log: {} ({durability:?})", path.display());
            Some(
                Auditor::builder(Arc::new(JsonLines::open(path)?))
                    .durability(durability)
                    .build()?,
            )
        }
        None => None,
    };
    let with_audit = |builder: AuthzBuilder| match &auditor {
        Some(a) => builder.auditor(a.clone()).build(),
        None => builder.build(),
    };
    let authz = match (&args.config, &args.issuer, &args.jwks) {
        (Some(config), _, _) => Authz::from_config_file(config)?,
        (None, Some(issuer), Some(jwks)) => with_audit(Authz::builder(
            JwtVerifier::builder(issuer.clone(), audience.clone())
                .jwks_file(jwks)
                .build()?,
            notes_policy(),
        )),
        _ => {
            let issuer = DevIssuer::new("https://dev-issuer.invalid")?;
            println!("Trusting a development issuer. Tokens (valid for one hour):");
            for (agent, scopes) in [
                ("reader-agent", vec!["notes:read"]),
                ("writer-agent", vec!["notes:write"]),
                ("admin-agent", vec!["notes:admin", "ops:purge"]),
            ] {
                let token = issuer
                    .token(audience.clone())
                    .subject("dev-user")
                    .client_id(agent)
                    .scopes(&scopes)
                    .mint()?;
                println!("\n{agent} ({}):\n{token}", scopes.join(" "));
            }
            with_audit(Authz::builder(
                issuer.verifier(audience.clone()).build()?,
                notes_policy(),
            ))
        }
    };
    drop(auditor);
    // Fails now, not on the first request, if a rule names a tool the server does not have.
    let app = http_app(&authz, StreamableHttpServerConfig::default())?;
    println!("\nnotes MCP server: http://{local}/mcp (audience {audience})");
    println!("metadata: {}", authz.resource_metadata_url());
    println!("Ctrl-C to stop.");
    authz
        .serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(auditor) = authz.auditor() {
        let stats = auditor.stats();
        println!(
            "audit log closed: {} events written, {} failed",
            stats.written, stats.failed
        );
    }
    Ok(())
}
