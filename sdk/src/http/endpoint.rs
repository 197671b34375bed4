//! The whole protected Streamable HTTP endpoint in one call: [`Authz::router`].
//!
//! A protected MCP endpoint has four parts that must be put together in one order: rmcp's
//! `StreamableHttpService`, the [`Authorized`] wrapper on every handler it makes, the
//! [`AuthzLayer`](super::AuthzLayer) in front of the service, and the RFC 9728 metadata
//! routes beside it. [`Authz::router`] builds them so they cannot be put together wrongly,
//! and checks the handler's tools against the policy once, when the router is built.
//!
//! # Session mode
//! The router serves every request statelessly (rmcp's `legacy_session_mode` off), with
//! plain JSON responses where a call sends nothing before its result (`json_response`
//! on). Protocol 2026-07-28 removed sessions, so its clients never send one; 2025-06-18
//! and 2025-11-25 clients work without a session too (they carry on when `initialize`
//! returns no `Mcp-Session-Id`); and a raw HTTP client can `POST` a `tools/call` with no
//! handshake at all. With sessions on, rmcp refuses such a request with 400 "Session ID is
//! required". A server that needs sessions (server-initiated requests to 2025 clients
//! between calls) passes its own configuration to [`Authz::router_with`]; sessions are
//! then bound to the principal that opened them.

use std::sync::Arc;

use axum::Router;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::authz::Authz;
use crate::error::ConfigError;
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
        check_path(path)?;
        // Once, at build: every tool the policy names must exist.
        self.wrap(factory())?;
        let authz = self.clone();
        let service = StreamableHttpService::new(
            move || Ok(Authorized::new(factory(), authz.clone(), None)),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Ok(Router::new()
            .nest_service(path, self.protect(service))
            .merge(self.metadata_routes()))
    }

    /// The rmcp configuration [`Authz::router`] uses: stateless, JSON responses where
    /// possible, and the `Host` values rmcp accepts extended from loopback to the host
    /// of this server's resource URI (rmcp refuses other hosts with 403, its guard
    /// against DNS rebinding). Behind a proxy that forwards another `Host`, add it with
    /// `.with_allowed_hosts(..)`.
    pub fn http_config(&self) -> StreamableHttpServerConfig {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(host) = resource_host(self.resource())
            && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        {
            hosts.push(host.to_owned());
        }
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_allowed_hosts(hosts)
    }
}

/// The host of a resource URI (without port or brackets), if it has one.
fn resource_host(resource: &str) -> Option<&str> {
    let rest = resource.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// A path axum can nest a service at: absolute, not the root, no wildcards or captures,
/// and clear of the metadata routes.
fn check_path(path: &str) -> Result<(), ConfigError> {
    let reason = if !path.starts_with('/') {
        Some("it must start with '/'")
    } else if path.trim_end_matches('/').is_empty() {
        Some("the endpoint cannot be the root; use a path such as \"/mcp\"")
    } else if path.contains(['{', '}', '*']) || path.split('/').any(|s| s.starts_with(':')) {
        Some("it cannot contain '{', '}', '*' or a segment starting with ':'")
    } else if path.starts_with("/.well-known/") {
        Some("the endpoint cannot be under /.well-known/, where the metadata routes are")
    } else if path.contains(['?', '#']) {
        Some("it cannot contain a query or fragment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidPath {
            path: path.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_hosts() {
        assert_eq!(
            resource_host("https://mcp.example.com/mcp"),
            Some("mcp.example.com")
        );
        assert_eq!(
            resource_host("http://127.0.0.1:8080/mcp"),
            Some("127.0.0.1")
        );
        assert_eq!(resource_host("http://[::1]:8080/mcp"), Some("::1"));
        assert_eq!(resource_host("https://u@h.example:1"), Some("h.example"));
        assert_eq!(resource_host("not a uri"), None);
    }

    #[test]
    fn endpoint_paths() {
        assert!(check_path("/mcp").is_ok());
        assert!(check_path("/api/v1/mcp").is_ok());
        for bad in [
            "mcp",
            "/",
            "",
            "/{x}",
            "/a/*rest",
            "/mcp?x=1",
            "/mcp/:v",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
        ] {
            let e = check_path(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
