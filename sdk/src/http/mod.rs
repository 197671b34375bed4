//! The tower layer in front of rmcp's Streamable HTTP service (feature `http`).
//!
//! For every request, before rmcp runs anything: refuse tokens in the query string and
//! repeated `Authorization` headers (400); answer a request without a bearer token with
//! 401 and a challenge naming the Protected Resource Metadata; for a DPoP-bound token
//! (`Authorization: DPoP`, feature `dpop`), check its one `DPoP` proof against the request
//! and the token (401 `invalid_dpop_proof` or `use_dpop_nonce`); verify the token (401
//! `invalid_token` with a description), and refuse a DPoP-bound token presented as
//! `Bearer`, or a bearer token where DPoP is required; read the JSON-RPC body under a size limit and find
//! the operation (from the body, checked against the `Mcp-Method` / `Mcp-Name` headers of
//! 2026-07-28 clients); refuse a session opened by another principal (403); ask the policy,
//! and answer a denied call with 403 and a step-up challenge naming every scope it needs.
//! Otherwise the verified [`Principal`](crate::Principal) goes into the request
//! extensions, where rmcp hands it to the handler, and the request proceeds. See
//! `docs/policy.md` for each response.
//!
//! A 2026-07-28 request (one with `MCP-Protocol-Version: 2026-07-28` or later) names its
//! operation in its `Mcp-Method` and `Mcp-Name` headers, and rmcp checks them against the
//! body before it runs anything (400 on a mismatch). For the methods where that check
//! covers everything the layer decides from (`tools/call`, `prompts/get`,
//! `resources/read` and `subscribe`, the task operations, custom requests, and the methods
//! that need no rule), the layer decides from the headers and does not parse the body,
//! which it still reads under its size and time limits. It parses the body when it would
//! refuse (for the refusal's JSON-RPC id and audit event, and so that a header the body
//! contradicts is still the layer's 400), and when rmcp refuses the request (so a
//! mismatch is answered and audited by the layer as before). The wrapper reuses the
//! layer's decision only for the very operation rmcp parsed from the body, and decides
//! anything else itself: a header that lies can never widen access. Older requests, and
//! any request whose headers are missing, repeated or not plain, are decided from the body.
//!
//! [`Authz::router`](crate::Authz::router) builds the whole endpoint (rmcp's service, the wrapper on every
//! handler, this layer, the metadata routes); use it unless you need your own assembly.
//! For your own, the layer goes directly in front of rmcp's `StreamableHttpService` of
//! [`Authorized`](crate::server::Authorized) handlers, and only there: it does not build
//! in front of a `Router` or of unwrapped handlers, where a request it does not decide (a
//! list, a task, a custom request) would pass ungated.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rmcp_authz::{Authz, dev::DevIssuer, policy::Policy};
//! use rmcp::transport::streamable_http_server::{StreamableHttpService, session::local::LocalSessionManager};
//! # #[derive(Clone)] struct Notes;
//! # impl rmcp::ServerHandler for Notes {}
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! # let issuer = DevIssuer::new("https://auth.example")?;
//! # let verifier = issuer.verifier("http://127.0.0.1:8080/mcp").build()?;
//! # let policy = Policy::builder().build()?;
//! let authz = Authz::new(verifier, policy);
//! authz.wrap(Notes)?; // fails at start-up if a rule names an unknown tool
//! let factory = { let authz = authz.clone(); move || authz.wrap(Notes).map_err(std::io::Error::other) };
//! let mcp = StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), authz.http_config());
//! let app = axum::Router::new()
//!     .nest_service("/mcp", authz.protect(mcp))
//!     .merge(authz.metadata_routes());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! authz.serve(listener, app, std::future::pending()).await?; // TCP_NODELAY, peer addresses
//! # Ok(()) }
//! ```

mod challenge;
#[cfg(feature = "dpop")]
mod dpop;
mod endpoint;
mod layer;
mod metadata;
mod pipeline;
mod refusal;
mod request;
mod rpc;
mod serve;

use std::time::Duration;

use http::HeaderName;

pub use challenge::{AuthRejection, RejectionKind};
pub use layer::{AuthzLayer, AuthzService, ResponseFuture};
pub use serve::shutdown_signal;

pub(crate) use endpoint::{default_config, router};
pub(crate) use metadata::{metadata_document, metadata_routes, metadata_url_for};
pub(crate) use serve::serve;

/// The default largest request body the layer reads: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many session bindings are remembered (the least recently used forgotten first; a
/// forgotten session is refused with 404 and the client starts a new one).
pub(crate) const MAX_SESSIONS: u64 = 100_000;

/// How much of the body of a request refused before authentication is read (for the
/// request id and the 401's scope hint, and so the connection stays usable).
pub(crate) const UNAUTHENTICATED_BODY_BYTES: usize = 16 * 1024;

/// How long the body of a request refused before authentication may take to arrive;
/// after that the refusal goes out with `Connection: close`.
pub(crate) const UNAUTHENTICATED_BODY_TIME: Duration = Duration::from_secs(2);

/// How long the body of an authenticated request may take to arrive (413 after that).
pub(crate) const BODY_TIME: Duration = Duration::from_secs(30);

// Header names, parsed once (a `&str` name is parsed on every lookup).
pub(crate) const SESSION_HEADER: HeaderName = crate::gate::SESSION_ID;
pub(crate) const METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
pub(crate) const NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
pub(crate) const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The layer's settings, as the `Authz` builder collected them.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub(crate) max_body_bytes: usize,
    /// DPoP-bound tokens, when accepted.
    #[cfg(feature = "dpop")]
    pub(crate) dpop: Option<std::sync::Arc<DpopSettings>>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            #[cfg(feature = "dpop")]
            dpop: None,
        }
    }
}

#[cfg(feature = "dpop")]
pub(crate) use dpop::DpopSettings;
