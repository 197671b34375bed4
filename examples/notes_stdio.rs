//! The notes MCP server over stdio, behind rmcp-authz: the access token comes from the
//! environment (`MCP_ACCESS_TOKEN`), as the MCP specification has stdio servers take their
//! credentials. The token is verified before anything is served, and its expiry on every
//! call; a missing or refused token is reported on stderr with exit status 1.
//!
//! Run with (an MCP client normally starts it as a child process):
//!
//! ```sh
//! MCP_ACCESS_TOKEN=<token> cargo run -p rmcp-authz-examples --example notes_stdio -- \
//!     --issuer https://auth.example.com --jwks jwks.json --audience urn:notes-stdio
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rmcp_authz_examples::notes::{StdioSettings, serve_stdio};

#[derive(Debug, Parser)]
#[command(about = "The notes MCP server over stdio, behind rmcp-authz")]
struct Args {
    /// The issuer tokens must come from.
    #[arg(long, env = "NOTES_ISSUER")]
    issuer: String,
    /// The issuer's JWK Set file.
    #[arg(long, env = "NOTES_JWKS_FILE")]
    jwks: PathBuf,
    /// The audience tokens must name (this server's identifier).
    #[arg(long, env = "NOTES_AUDIENCE")]
    audience: String,
    /// Record every decision to this JSON Lines audit file (durable).
    #[arg(long, env = "NOTES_AUDIT_FILE")]
    audit_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = StdioSettings {
        issuer: args.issuer,
        jwks_file: args.jwks,
        audience: args.audience,
        audit_file: args.audit_file,
    };
    rmcp_authz_examples::report::exit_code(serve_stdio(settings).await.map_err(Into::into))
}
