//! The agent side of delegated tokens (feature `agent`): where an MCP client gets the
//! access tokens it presents, how they are kept fresh, and how a Streamable HTTP client
//! steps up when a server asks for more scopes.
//!
//! This module owns the [`TokenSource`] trait and its implementations, and
//! [`AuthorizedHttpClient`], an rmcp `StreamableHttpClient` that puts a token from a
//! source on every request:
//!
//! - [`ClientCredentials`]: the agent's own tokens, by the OAuth client credentials grant
//!   (RFC 6749 section 4.4), optionally for one resource (RFC 8707).
//! - [`Exchanged`]: tokens obtained by token exchange (RFC 8693) from a user's token, so
//!   the agent acts for that user and is named in the delegation chain.
//! - [`Refreshing`]: a cache in front of any source, one token per scope set, replaced a
//!   margin before it expires; concurrent callers share one fetch, and an expired token is
//!   never handed out.
//!
//! A long-running agent combines them: `Refreshing::new(ClientCredentials::new(..))` as
//! the source of [`AuthorizedHttpClient`], which asks the source for a token on every
//! request (the cache makes that cheap), and on a 403 `insufficient_scope` challenge asks
//! for the scopes it already holds plus those the challenge names and sends the refused
//! message once more.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rmcp::ServiceExt;
//! use rmcp_authz::agent::{self, ClientCredentials, Refreshing};
//! use rmcp_authz::remote::FetchOptions;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = ClientCredentials::new(
//!     "https://auth.example/token",
//!     "research-agent",
//!     "client-secret",
//!     FetchOptions::default(),
//! )?
//! .resource("https://notes.example/mcp");
//! let source = Arc::new(Refreshing::new(credentials));
//! let transport = agent::transport("https://notes.example/mcp", source, ["notes:read"]);
//! let client = rmcp::model::ClientConfig::default().serve(transport).await?;
//! let tools = client.list_all_tools().await?;
//! # let _ = tools;
//! # Ok(())
//! # }
//! ```

mod client;
mod refreshing;
mod source;

pub use client::{AuthorizedClientError, AuthorizedClientStats, AuthorizedHttpClient, transport};
pub use refreshing::{DEFAULT_REFRESH_MARGIN, RefreshStats, Refreshing};
pub use source::{AccessToken, ClientCredentials, Exchanged, TokenSource, TokenSourceError};
