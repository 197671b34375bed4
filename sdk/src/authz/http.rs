//! The HTTP side of [`Authz`] (feature `http`): the endpoint, the layer, the metadata
//! routes and the server loop, each made by the [`http`](crate::http) module from this
//! `Authz`'s guard.

use axum::Router;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;
use tower_layer::Layer as _;

use super::Authz;
use crate::error::ConfigError;
use crate::http::{self, AuthzLayer, AuthzService};
use crate::server::Authorized;

impl Authz {
    /// The protected Streamable HTTP endpoint at `path` (for example `"/mcp"`): rmcp's
    /// service making one handler per request with `factory`, each wrapped in
    /// [`Authorized`], the authorization layer in front of it, and the Protected Resource
    /// Metadata routes. Serve it with [`Authz::serve`].
    ///
    /// rmcp is configured by [`Authz::http_config`]: stateless, and accepting the
    /// resource URI's host as well as loopback. Stateless because protocol 2026-07-28
    /// removed sessions, so its clients never send one; 2025-06-18 and 2025-11-25 clients
    /// carry on without one when `initialize` returns no `Mcp-Session-Id`; and a raw HTTP
    /// client can `POST` a `tools/call` with no handshake at all (with sessions on, rmcp
    /// refuses that with 400 "Session ID is required"). A server that needs sessions
    /// (server-initiated requests to 2025 clients between calls) passes its own
    /// configuration to [`Authz::router_with`].
    ///
    /// `factory` makes the handler of each request: state every request must see (a
    /// store, a connection pool) is shared by cloning it in, as in
    /// `let notes = Notes::new(); authz.router("/mcp", move || notes.clone())`.
    ///
    /// ```no_run
    /// # use rmcp_authz::{Authz, dev::DevIssuer, policy::Policy};
    /// # #[derive(Clone)] struct Notes;
    /// # impl Notes { fn new() -> Self { Notes } }
    /// # impl rmcp::ServerHandler for Notes {}
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// # let verifier = DevIssuer::new("https://auth.example")?.verifier("http://127.0.0.1:8080/mcp").build()?;
    /// let authz = Authz::new(verifier, Policy::builder().build()?);
    /// let app = authz.router("/mcp", Notes::new)?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// authz.serve(listener, app, std::future::pending()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::UnknownTools`] when a policy rule names a tool the handler does not
    /// have (checked once, here, with one handler from `factory`);
    /// [`ConfigError::InvalidPath`] when `path` is not an absolute path below the root.
    pub fn router<H, F>(&self, path: &str, factory: F) -> Result<Router, ConfigError>
    where
        H: ServerHandler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        self.router_with(path, factory, self.http_config())
    }

    /// [`Authz::router`] with rmcp's service configured by `config` (start from
    /// [`Authz::http_config`] to keep its defaults). With `legacy_session_mode` on, each
    /// session belongs to the principal that opened it: another principal's request in it
    /// is refused with 403.
    ///
    /// # Errors
    /// As [`Authz::router`].
    pub fn router_with<H, F>(
        &self,
        path: &str,
        factory: F,
        config: StreamableHttpServerConfig,
    ) -> Result<Router, ConfigError>
    where
        H: ServerHandler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        http::router(&self.guard, &self.http, path, factory, config)
    }

    /// The rmcp configuration [`Authz::router`] uses: stateless, JSON responses where
    /// possible, and the `Host` values rmcp accepts extended from loopback to the host
    /// of this server's resource URI (rmcp refuses other hosts with 403, its guard
    /// against DNS rebinding). Behind a proxy that forwards another `Host`, add it with
    /// `.with_allowed_hosts(..)`.
    pub fn http_config(&self) -> StreamableHttpServerConfig {
        http::default_config(self.resource())
    }

    /// The tower layer to put in front of rmcp's `StreamableHttpService` of
    /// [`Authorized`] handlers (it builds in front of nothing else; see the
    /// [module documentation](crate::http)). [`Authz::protect`] applies it.
    pub fn http_layer(&self) -> AuthzLayer {
        AuthzLayer::new(self.guard.clone(), &self.http)
    }

    /// rmcp's service behind this `Authz`'s layer: [`Authz::http_layer`] applied to
    /// `service`, without importing tower's `Layer` trait.
    pub fn protect<H, M>(
        &self,
        service: StreamableHttpService<Authorized<H>, M>,
    ) -> AuthzService<StreamableHttpService<Authorized<H>, M>> {
        self.http_layer().layer(service)
    }

    /// The Protected Resource Metadata document.
    pub fn protected_resource_metadata(&self) -> Value {
        http::metadata_document(&self.guard, &self.http)
    }

    /// The URL of the metadata document, as given in `resource_metadata` challenges:
    /// the path-inserted form for the resource's path.
    pub fn resource_metadata_url(&self) -> String {
        http::metadata_url_for(self.resource())
    }

    /// Routes serving the metadata document at the root and path-inserted well-known
    /// URLs. Merge them into the router that serves the MCP endpoint; they need no token.
    pub fn metadata_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        http::metadata_routes(&self.guard, &self.http)
    }

    /// Serves `app` on `listener` until `shutdown` completes, then waits for the requests
    /// in flight and closes the audit log, if any, so every queued event is written and
    /// synced before this returns.
    ///
    /// Every accepted connection gets `TCP_NODELAY`: without it, Nagle's algorithm and the
    /// client's delayed ACK hold the second write of a response (an SSE event after the
    /// headers) for up to 40 ms. Each request carries its peer's address, which audit
    /// events record as `remote_addr`.
    ///
    /// ```no_run
    /// # use rmcp_authz::{Authz, dev::DevIssuer, policy::Policy};
    /// # async fn run(authz: Authz, app: axum::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// // Until Ctrl-C (tokio's `signal` feature).
    /// authz.serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await
    /// # }
    /// ```
    ///
    /// # Errors
    /// The I/O error that stopped the server.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        http::serve(self.auditor(), listener, app, shutdown).await
    }
}
