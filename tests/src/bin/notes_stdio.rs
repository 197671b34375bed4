//! Test fixture: the notes server over stdio, behind `rmcp-authz`.
//!
//! Used by `tests/tests/stdio.rs`, which spawns it as a child process and speaks MCP to it
//! over its stdin and stdout. It is not a production server. Configuration comes from the
//! environment:
//!
//! - `NOTES_JWKS_FILE`: path to the JWK Set whose keys are trusted,
//! - `NOTES_ISSUER`: the issuer tokens must name,
//! - `NOTES_AUDIENCE`: the audience (resource URI) tokens must name,
//! - `MCP_ACCESS_TOKEN` ([`DEFAULT_TOKEN_VAR`]): the caller's access token.
//!
//! On any error the error's `Display` goes to stderr and the process exits with status 1.
//! The token is never printed: the errors of `rmcp-authz` do not contain it, and this
//! program does not read the variable itself.

use std::process::ExitCode;

use rmcp_authz::Authz;
use rmcp_authz::stdio::DEFAULT_TOKEN_VAR;
use rmcp_authz::token::JwtVerifier;
use rmcp_authz_tests::notes::{Notes, notes_policy};

/// Reads a required configuration variable (never the token).
fn setting(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("notes_stdio: set the environment variable {name}")),
    }
}

async fn run() -> Result<(), String> {
    let jwks = setting("NOTES_JWKS_FILE")?;
    let issuer = setting("NOTES_ISSUER")?;
    let audience = setting("NOTES_AUDIENCE")?;
    let verifier = JwtVerifier::builder(issuer, audience)
        .jwks_file(&jwks)
        .build()
        .map_err(|e| e.to_string())?;
    let authz = Authz::new(verifier, notes_policy());
    authz
        .serve_stdio(Notes::new(), DEFAULT_TOKEN_VAR)
        .await
        .map_err(|e| e.to_string())
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
