//! The agent side (feature `agent`): where an MCP client gets the access tokens it
//! presents, how they are kept fresh, how it acts for a user through other agents, and how
//! a Streamable HTTP client presents them, only to the server they are meant for, stepping
//! up when the server asks for more scopes.
//!
//! rmcp's own client auth (`rmcp::transport::auth`) does the OAuth work: discovery, client
//! registration, the authorization code flow, client credentials with a secret or
//! `private_key_jwt`, refresh, ID-JAG. This module adapts its results and adds delegation,
//! which rmcp lacks. It owns the [`TokenSource`] trait and:
//!
//! - [`ClientCredentials`]: the agent's own tokens by rmcp's client credentials grant,
//!   after rmcp's discovery from the MCP server; [`Managed`]: the tokens of an rmcp
//!   `AuthorizationManager` (a signed-in user); an [`AccessToken`] held is a source of
//!   itself (rmcp's ID-JAG tokens convert into one).
//! - [`Exchanged`]: delegated tokens by token exchange (RFC 8693), with the agent's own
//!   token as the actor token, extending the chain of the tokens it was handed.
//! - [`OnBehalfOf`]: tokens for downstream calls on a caller's behalf, from the request's
//!   [`SubjectToken`](crate::SubjectToken), cached per caller, audience and scopes.
//! - [`Refreshing`]: a cache in front of any source, one token per scope set, replaced a
//!   margin before it expires; concurrent callers share one fetch, and an expired token is
//!   never handed out.
//! - [`AuthorizedHttpClient`] (and [`transport`]): an rmcp `StreamableHttpClient` that
//!   checks the server's protected resource metadata names it ([`check_resource`]), asks
//!   the source for a token on every request, and on a 403 `insufficient_scope`
//!   challenge asks for the scopes it holds plus those named and sends the refused
//!   message once more. With feature `dpop`, [`AuthorizedHttpClient::dpop`] (and
//!   `dpop_transport`) presents DPoP-bound tokens with a proof of the agent's key on
//!   every request, answering a `use_dpop_nonce` challenge once.
//! - [`OAuthSession`]: an agent's session with one MCP server on rmcp's `AuthClient`,
//!   answering its `WWW-Authenticate` challenges with the [`Credentials`] it signs in with
//!   (authorization code, client credentials, ID-JAG; step-up on `insufficient_scope`),
//!   a capped number of times per request, and connecting an rmcp client that way; its
//!   errors are [`SessionError`]. The authorization code flow's approval is an
//!   [`Approval`]; [`HeadlessApproval`] serves servers that approve without a person.
//!
//! docs/agent.md walks through each with an example.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rmcp::ServiceExt;
//! use rmcp::transport::auth::ClientCredentialsConfig;
//! use rmcp_authz::agent::{self, ClientCredentials, Refreshing};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "https://notes.example/mcp";
//! let config = ClientCredentialsConfig::ClientSecret {
//!     client_id: "research-agent".into(),
//!     client_secret: "client-secret".into(),
//!     scopes: vec![],
//!     resource: None,
//! };
//! let source = Arc::new(Refreshing::new(ClientCredentials::discover(url, config).await?));
//! let client = rmcp::model::ClientConfig::default()
//!     .serve(agent::transport(url, source, ["notes:read"]))
//!     .await?;
//! let tools = client.list_all_tools().await?;
//! # let _ = tools;
//! # Ok(())
//! # }
//! ```

mod approval;
mod client;
mod credentials;
#[cfg(feature = "dpop")]
mod dpop;
mod oauth;
mod on_behalf_of;
mod refreshing;
mod session;
mod source;

pub use approval::{Approval, ApprovalError, HEADLESS_APPROVAL_TIMEOUT, HeadlessApproval};

#[cfg(feature = "dpop")]
pub use client::dpop_transport;
pub use client::{AuthorizedClientError, AuthorizedClientStats, AuthorizedHttpClient, transport};
pub use credentials::Credentials;
pub use oauth::{ClientCredentials, Managed, check_resource, discover};
pub use on_behalf_of::{DEFAULT_MAX_SUBJECTS, OnBehalfOf};
pub use refreshing::{DEFAULT_REFRESH_MARGIN, RefreshStats, Refreshing};
pub use session::{
    DEFAULT_CLIENT_NAME, DEFAULT_MAX_AUTHORIZATIONS, DEFAULT_REDIRECT_URI, OAuthSession,
    OAuthSessionBuilder, SessionError,
};
pub use source::{AccessToken, Exchanged, TokenSource, TokenSourceError};
