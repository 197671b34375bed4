//! The conformance suite's client under test: an MCP client that authorizes itself with
//! rmcp's own client auth (`rmcp::transport::auth`) and then does what every client auth
//! scenario of `@modelcontextprotocol/conformance` expects: initialize, list the tools, call
//! `test-tool`.
//!
//! `tests/tests/conformance.rs` runs it through the suite, which appends the MCP server's URL
//! to the command line and sets two variables:
//!
//! - `MCP_CONFORMANCE_SCENARIO`: the scenario, which decides the credentials the client is
//!   configured with (as an operator would configure an agent): the client credentials
//!   grant with a client secret or a `private_key_jwt` assertion, the enterprise-managed
//!   ID-JAG flow, or, for every other scenario, the authorization-code flow with PKCE,
//!   driven headlessly;
//! - `MCP_CONFORMANCE_CONTEXT`: JSON with the scenario's data (client ids, secrets, keys,
//!   the identity provider's ID token).
//!
//! The client authorizes reactively: its first request goes out without a token, and the
//! server's `WWW-Authenticate` challenge drives discovery (RFC 9728 protected resource
//! metadata, then RFC 8414 or OpenID Connect metadata), so a server whose metadata names
//! another resource stops it before any authorization request (rmcp reports
//! `ProtectedResourceMetadataInvalidReason::ResourceMismatch`). A 403 `insufficient_scope`
//! steps up once per new scope set, never for scopes the token already holds, and at most
//! [`MAX_AUTHORIZATIONS`] times per request.
//!
//! What rmcp offers is used as it is; the few pieces of glue it lacks are in `glue.rs`, one
//! function each. Progress and errors go to stderr (the suite keeps it as `stderr.txt`);
//! the exit status is 0 when every step succeeded and 1 otherwise. No token or secret is
//! printed.

mod glue;

use std::process::ExitCode;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationManager, WWWAuthenticateParams};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

use glue::{Credentials, Failure};

/// Authorizations (the first one and step-ups) the client attempts for one request
/// before giving up: a server that keeps refusing is not retried forever.
const MAX_AUTHORIZATIONS: u32 = 3;

/// The client's HTTP client, wrapped by rmcp's `AuthClient`, which puts the current token
/// on every request and refreshes it when it expires or the server rejects it.
type Http = AuthClient<reqwest::Client>;

/// The running MCP session.
type Session = RunningService<RoleClient, ClientConfig>;

/// The credentials the client is configured with for `scenario`, from the suite's context.
fn credentials(scenario: &str, context: &Value) -> Result<Credentials, Failure> {
    let field = |name: &str| -> Result<String, Failure> {
        context[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::new(format!("the context has no `{name}`")))
    };
    let optional = |name: &str| context[name].as_str().map(str::to_owned);
    Ok(match scenario {
        "auth/client-credentials-basic" => Credentials::ClientSecret {
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
        },
        "auth/client-credentials-jwt" => Credentials::PrivateKeyJwt {
            client_id: field("client_id")?,
            private_key_pem: field("private_key_pem")?,
            algorithm: field("signing_algorithm")?,
        },
        "auth/cross-app-access-complete-flow" => Credentials::IdJag {
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
            idp_client_id: field("idp_client_id")?,
            idp_id_token: field("idp_id_token")?,
            idp_issuer: field("idp_issuer")?,
            idp_token_endpoint: field("idp_token_endpoint")?,
        },
        // Every other scenario: the authorization-code flow, with a pre-registered client
        // when the context names one, otherwise CIMD or dynamic registration, whichever
        // the authorization server supports.
        _ => Credentials::AuthorizationCode {
            client_id: optional("client_id"),
            client_secret: optional("client_secret"),
        },
    })
}

/// The client: the server's URL, the credentials, and the HTTP client holding rmcp's
/// authorization manager (the same one for every connection and authorization).
struct Agent {
    url: String,
    credentials: Credentials,
    http: Http,
}

impl Agent {
    async fn new(url: String, credentials: Credentials) -> Result<Agent, Failure> {
        // `new` rather than `new_allowing_private_addresses`: the authorization server a
        // loopback resource names may be on loopback, nothing else private is allowed.
        let manager = AuthorizationManager::new(url.as_str())
            .await
            .map_err(Failure::auth("create the authorization manager"))?;
        let http = AuthClient::new(reqwest::Client::new(), manager);
        Ok(Agent {
            url,
            credentials,
            http,
        })
    }

    /// Answers the server's `WWW-Authenticate` challenge: a 403 `insufficient_scope` is a
    /// step-up, anything else (a 401) a new authorization. `attempts` counts this
    /// request's authorizations.
    async fn answer(&self, challenge: &str, attempts: &mut u32) -> Result<(), Failure> {
        if *attempts >= MAX_AUTHORIZATIONS {
            return Err(Failure::new(format!(
                "the server still refuses after {MAX_AUTHORIZATIONS} authorizations: \
                 {challenge}"
            )));
        }
        *attempts += 1;
        let base = reqwest::Url::parse(&self.url).map_err(|e| Failure::new(e.to_string()))?;
        let params = WWWAuthenticateParams::parse(challenge, &base);
        if params.is_insufficient_scope() {
            eprintln!("conformance_client: 403 insufficient_scope: {challenge}");
            glue::step_up(&self.http, &self.url, &self.credentials, &params).await
        } else {
            eprintln!("conformance_client: 401: {challenge}");
            glue::authorize(&self.http, &self.url, &self.credentials, challenge).await
        }
    }

    /// Connects and initializes, authorizing when the server asks for it.
    async fn connect(&self) -> Result<Session, Failure> {
        let mut attempts = 0;
        loop {
            let transport = StreamableHttpClientTransport::with_client(
                self.http.clone(),
                StreamableHttpClientTransportConfig::with_uri(self.url.clone()),
            );
            let config =
                ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25);
            match config.serve(transport).await {
                Ok(session) => return Ok(session),
                Err(error) => match error.auth_challenge() {
                    Some(challenge) => self.answer(challenge, &mut attempts).await?,
                    None => return Err(initialize_failed(&error)),
                },
            }
        }
    }

    /// Runs one request, authorizing and sending it again when the server asks for it.
    async fn request<T, F, Fut>(&self, what: &str, send: F) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let mut attempts = 0;
        loop {
            match send().await {
                Ok(value) => return Ok(value),
                Err(error) => match error.auth_challenge() {
                    Some(challenge) => self.answer(challenge, &mut attempts).await?,
                    None => return Err(Failure::new(format!("{what}: {error}"))),
                },
            }
        }
    }
}

fn initialize_failed(error: &ClientInitializeError) -> Failure {
    Failure::new(format!("initialize: {error}"))
}

/// What every client auth scenario expects once authorized: list the tools, call
/// `test-tool`.
async fn run(url: String, scenario: &str, context: &Value) -> Result<(), Failure> {
    let agent = Agent::new(url, credentials(scenario, context)?).await?;
    let session = agent.connect().await?;
    eprintln!("conformance_client: initialized");
    let peer = session.peer().clone();
    let tools = agent
        .request("tools/list", || peer.list_tools(None))
        .await?;
    let names: Vec<&str> = tools.tools.iter().map(|tool| tool.name.as_ref()).collect();
    eprintln!("conformance_client: tools: {names:?}");
    if let Some(tool) = names.first() {
        let result = agent
            .request("tools/call", || {
                peer.call_tool(CallToolRequestParams::new(tool.to_string()))
            })
            .await?;
        eprintln!(
            "conformance_client: called {tool}: error {}",
            result.is_error.unwrap_or(false)
        );
    }
    session
        .cancel()
        .await
        .map_err(|e| Failure::new(format!("close the session: {e}")))?;
    Ok(())
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
            eprintln!("conformance_client: {failure}");
            ExitCode::FAILURE
        }
    }
}
