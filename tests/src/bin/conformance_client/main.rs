//! The conformance suite's client under test: an MCP client built on `rmcp-authz`'s agent
//! side ([`OAuthSession`], on rmcp's own client auth) that does what every client auth
//! scenario of `@modelcontextprotocol/conformance` expects: initialize, list the tools,
//! call the first one.
//!
//! `tests/tests/conformance.rs` runs it through the suite, which appends the MCP server's
//! URL to the command line and sets two variables:
//!
//! - `MCP_CONFORMANCE_SCENARIO`: the scenario, which decides the [`Credentials`] the client
//!   is configured with (as an operator would configure an agent): the client credentials
//!   grant with a client secret or a `private_key_jwt` assertion, the enterprise-managed
//!   ID-JAG flow, or, for every other scenario, the authorization code flow with PKCE,
//!   approved headlessly ([`HeadlessApproval`]: the suite's authorization server approves
//!   without a person);
//! - `MCP_CONFORMANCE_CONTEXT`: JSON with the scenario's data (client ids, secrets, keys,
//!   the identity provider's ID token).
//!
//! Everything else (discovery from the server's challenge, the resource check, client
//! registration, step-up, the cap on authorizations per request) is the session's. Progress
//! and errors go to stderr (the suite keeps it as `stderr.txt`); the exit status is 0 when
//! every step succeeded and 1 otherwise. No token or secret is printed.
//!
//! [`OAuthSession`]: rmcp_authz::agent::OAuthSession
//! [`Credentials`]: rmcp_authz::agent::Credentials
//! [`HeadlessApproval`]: rmcp_authz::agent::HeadlessApproval

use std::error::Error;
use std::process::ExitCode;

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::transport::auth::{ClientCredentialsConfig, JwtSigningAlgorithm};
use rmcp_authz::agent::{Credentials, OAuthSession};
use serde_json::Value;

/// Where the authorization server sends the code. Nothing listens there: the headless
/// approval reads the redirect from the authorization endpoint's answer.
const REDIRECT_URI: &str = "http://127.0.0.1/conformance-client/callback";

/// The client's name in dynamic client registration.
const CLIENT_NAME: &str = "rmcp-authz conformance client";

/// The client's Client ID Metadata Document (SEP-991), used as its `client_id` where the
/// authorization server supports CIMD. The conformance suite checks for this URL.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";

type Failure = Box<dyn Error>;

/// The credentials the client is configured with for `scenario`, from the suite's context.
fn credentials(scenario: &str, context: &Value) -> Result<Credentials, Failure> {
    let field = |name: &str| -> Result<String, Failure> {
        context[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the context has no `{name}`").into())
    };
    let optional = |name: &str| context[name].as_str().map(str::to_owned);
    Ok(match scenario {
        "auth/client-credentials-basic" => {
            Credentials::ClientCredentials(ClientCredentialsConfig::ClientSecret {
                client_id: field("client_id")?,
                client_secret: field("client_secret")?,
                scopes: vec![],
                resource: None,
            })
        }
        "auth/client-credentials-jwt" => {
            Credentials::ClientCredentials(ClientCredentialsConfig::PrivateKeyJwt {
                client_id: field("client_id")?,
                signing_key: field("private_key_pem")?.into_bytes(),
                signing_algorithm: signing_algorithm(&field("signing_algorithm")?)?,
                token_endpoint_audience: None,
                scopes: vec![],
                resource: None,
            })
        }
        "auth/cross-app-access-complete-flow" => Credentials::IdJag {
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
            idp_client_id: field("idp_client_id")?,
            idp_id_token: field("idp_id_token")?,
            idp_issuer: field("idp_issuer")?,
            idp_token_endpoint: field("idp_token_endpoint")?,
        },
        // Every other scenario: the authorization code flow, with a pre-registered client
        // when the context names one, otherwise CIMD or dynamic registration, whichever
        // the authorization server supports.
        _ => Credentials::AuthorizationCode {
            client_id: optional("client_id"),
            client_secret: optional("client_secret"),
        },
    })
}

fn signing_algorithm(name: &str) -> Result<JwtSigningAlgorithm, Failure> {
    Ok(match name {
        "RS256" => JwtSigningAlgorithm::RS256,
        "RS384" => JwtSigningAlgorithm::RS384,
        "RS512" => JwtSigningAlgorithm::RS512,
        "ES256" => JwtSigningAlgorithm::ES256,
        "ES384" => JwtSigningAlgorithm::ES384,
        other => return Err(format!("unsupported signing algorithm {other}").into()),
    })
}

/// What every client auth scenario expects once authorized: list the tools, call the
/// first one.
async fn run(url: String, scenario: &str, context: &Value) -> Result<(), Failure> {
    let session = OAuthSession::builder(url, credentials(scenario, context)?)
        .redirect_uri(REDIRECT_URI)
        .client_name(CLIENT_NAME)
        .client_metadata_url(CLIENT_METADATA_URL)
        .build()
        .await?;
    let config = ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25);
    let client = session.connect(config).await?;
    eprintln!("conformance_client: initialized");
    let tools = session.request(|| client.list_tools(None)).await?;
    let names: Vec<&str> = tools.tools.iter().map(|tool| tool.name.as_ref()).collect();
    eprintln!("conformance_client: tools: {names:?}");
    if let Some(tool) = names.first() {
        let result = session
            .request(|| client.call_tool(CallToolRequestParams::new(tool.to_string())))
            .await?;
        eprintln!(
            "conformance_client: called {tool}: error {}",
            result.is_error.unwrap_or(false)
        );
    }
    client.cancel().await?;
    Ok(())
}

/// `error` with the chain of its causes, each once.
fn chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Most errors quote their source in their own text already.
        let cause_text = cause.to_string();
        if !message.ends_with(&cause_text) {
            message.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    message
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().skip(1).last() else {
        eprintln!("conformance_client: usage: conformance_client <MCP server URL>");
        return ExitCode::FAILURE;
    };
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let context = match std::env::var("MCP_CONFORMANCE_CONTEXT") {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(context) => context,
            Err(e) => {
                eprintln!("conformance_client: MCP_CONFORMANCE_CONTEXT is not JSON: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => Value::Null,
    };
    eprintln!("conformance_client: scenario {scenario:?}, server {url}");
    match run(url, &scenario, &context).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("conformance_client: {}", chain(failure.as_ref()));
            ExitCode::FAILURE
        }
    }
}
