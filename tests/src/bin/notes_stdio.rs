//! Test fixture: the notes server over stdio, behind `rmcp-authz`.
//!
//! Used by `tests/tests/stdio.rs`, which spawns it as a child process and speaks MCP to it
//! over its stdin and stdout. It is not a production server. Configuration comes from the
//! environment:
//!
//! - `NOTES_JWKS_FILE`: path to the JWK Set whose keys are trusted,
//! - `NOTES_ISSUER`: the issuer tokens must name,
//! - `NOTES_AUDIENCE`: the audience (resource URI) tokens must name,
//! - `NOTES_AUDIT_FILE` (optional): a JSON Lines audit file, written in `durable` mode,
//! - `MCP_ACCESS_TOKEN`: the caller's access token.
//!
//! On any error the error's `Display` goes to stderr and the process exits with status 1.
//! The token is never printed: the errors of `rmcp-authz` do not contain it, and this
//! program does not read the variable itself.

use std::process::ExitCode;

use rmcp_authz_examples::notes::{StdioSettings, serve_stdio};

/// Reads a required configuration variable (never the token).
fn setting(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("notes_stdio: set the environment variable {name}")),
    }
}

async fn run() -> Result<(), String> {
    serve_stdio(StdioSettings {
        jwks_file: setting("NOTES_JWKS_FILE")?.into(),
        issuer: setting("NOTES_ISSUER")?,
        audience: setting("NOTES_AUDIENCE")?,
        audit_file: std::env::var_os("NOTES_AUDIT_FILE").map(Into::into),
    })
    .await
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}
