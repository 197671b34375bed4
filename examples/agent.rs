//! An agent: an rmcp client on the agent side of `rmcp-authz`, calling the MCP server at
//! `MCP_URL`. Its tokens are either the access token in `MCP_ACCESS_TOKEN`, or, with
//! `MCP_CLIENT_ID` and `MCP_CLIENT_SECRET`, its own by the client credentials grant, which
//! rmcp's client auth performs after finding the authorization server from the server's
//! protected resource metadata. Before any token is sent, the server's metadata must name
//! `MCP_URL`. The agent lists the tools it may use and calls one; a refusal is shown with
//! the server's challenge, which names the scopes to ask the authorization server for.
//!
//! Run with (against `cargo run -p rmcp-authz-examples --example notes_http`, which prints
//! tokens):
//!
//! ```sh
//! MCP_URL=http://127.0.0.1:8080/mcp MCP_ACCESS_TOKEN=<token> \
//!     cargo run -p rmcp-authz-examples --example agent -- list_notes
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::auth::ClientCredentialsConfig;
use rmcp_authz::agent::{self, AccessToken, ClientCredentials, Refreshing, TokenSource};

#[tokio::main]
async fn main() -> ExitCode {
    rmcp_authz_examples::report::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("MCP_URL").map_err(|_| "set MCP_URL to the server's MCP endpoint")?;
    let tool = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "list_notes".to_owned());
    let env = |name: &str| std::env::var(name).ok();
    let source: Arc<dyn TokenSource> = match (
        env("MCP_ACCESS_TOKEN"),
        env("MCP_CLIENT_ID"),
        env("MCP_CLIENT_SECRET"),
    ) {
        (Some(token), _, _) => Arc::new(AccessToken::new(token, None, Vec::<String>::new())),
        (None, Some(client_id), Some(client_secret)) => {
            let config = ClientCredentialsConfig::ClientSecret {
                client_id,
                client_secret,
                scopes: vec![],
                resource: None,
            };
            Arc::new(Refreshing::new(
                ClientCredentials::discover(&url, config).await?,
            ))
        }
        _ => {
            return Err(
                "set MCP_ACCESS_TOKEN to an access token for that server, or \
                        MCP_CLIENT_ID and MCP_CLIENT_SECRET to get the agent's own"
                    .into(),
            );
        }
    };

    let transport = agent::transport(url, source, Vec::<String>::new());
    let client = match ClientConfig::default().serve(transport).await {
        Ok(client) => client,
        Err(e) => {
            let challenge = e.auth_challenge().unwrap_or("(none)").to_owned();
            return Err(
                format!("the server refused the connection: {e}\nchallenge: {challenge}").into(),
            );
        }
    };
    let tools = client.list_tools(None).await?;
    let names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    println!("tools this token may use: {names:?}");

    match client
        .call_tool(CallToolRequestParams::new(tool.clone()))
        .await
    {
        Ok(result) => {
            let text: Vec<String> = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            println!("{tool} -> {}", text.join(" "));
        }
        Err(e) => match e.auth_challenge() {
            Some(challenge) => println!("{tool} refused; the server asks for: {challenge}"),
            None => println!("{tool} failed: {e}"),
        },
    }
    client.cancel().await?;
    Ok(())
}
