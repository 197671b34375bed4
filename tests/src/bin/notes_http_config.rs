//! Test fixture: the notes server over Streamable HTTP (stateless), configured entirely
//! from a configuration file, audit log included.
//!
//! Used by `tests/tests/audit_crash.rs`, which kills it with SIGKILL in the middle of a
//! burst of calls. Usage: `notes_http_config CONFIG.toml`. It binds 127.0.0.1 on a free
//! port and prints one line, `listening http://127.0.0.1:PORT/mcp`, once it accepts
//! connections; it serves until killed or interrupted, then closes the audit log. On any
//! error the error's `Display` goes to stderr and the process exits with status 1.

use std::process::ExitCode;

use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp_authz::Authz;
use rmcp_authz_examples::notes::http_app;

async fn run() -> Result<(), String> {
    let config = std::env::args()
        .nth(1)
        .ok_or("usage: notes_http_config CONFIG.toml")?;
    let authz = Authz::from_config_file(&config).map_err(|e| e.to_string())?;
    let app = http_app(
        &authz,
        StreamableHttpServerConfig::default().with_legacy_session_mode(false),
    )
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening http://{addr}/mcp");
    authz
        .serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes_http_config: {e}");
            ExitCode::FAILURE
        }
    }
}
