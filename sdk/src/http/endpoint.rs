//! The whole protected Streamable HTTP endpoint in one call: [`Authz::router`](crate::Authz::router).
//!
//! A protected MCP endpoint has four parts that must be put together in one order: rmcp's
//! `StreamableHttpService`, the [`Authorized`](crate::server::Authorized) wrapper on every handler it makes, the
//! [`AuthzLayer`](super::AuthzLayer) in front of the service, and the RFC 9728 metadata
//! routes beside it. [`Authz::router`](crate::Authz::router) builds them so they cannot be put together wrongly,
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
//! between calls) passes its own configuration to [`Authz::router_with`](crate::Authz::router_with); sessions are
//! then bound to the principal that opened them.

use std::sync::Arc;

use axum::Router;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower_layer::Layer as _;

use super::{AuthzLayer, HttpSettings, metadata_routes};
use crate::error::ConfigError;
use crate::guard::Guard;
use crate::server::Authorized;

/// The endpoint at `path`: rmcp's service of `Authorized` handlers made by `factory`,
/// behind a layer deciding with `guard`, beside the metadata routes.
pub(crate) fn router<H, F>(
    guard: &Guard,
    settings: &HttpSettings,
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
    guard.check_tools(&factory())?;
    let for_handlers = guard.clone();
    let service = StreamableHttpService::new(
        move || Ok(Authorized::new(factory(), for_handlers.clone(), None)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Ok(Router::new()
        .nest_service(
            path,
            AuthzLayer::new(guard.clone(), settings).layer(service),
        )
        .merge(metadata_routes(guard, settings)))
}

/// rmcp's configuration for the endpoint of `resource`: stateless, JSON responses where
/// possible, and the `Host` values accepted extended from loopback to the resource's host.
pub(crate) fn default_config(resource: &str) -> StreamableHttpServerConfig {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(host) = resource_host(resource)
        && !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host))
    {
        hosts.push(host);
    }
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(hosts)
}

/// The host of a resource URI (without port or brackets), if it has one.
fn resource_host(resource: &str) -> Option<String> {
    let uri: http::Uri = resource.parse().ok()?;
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// A path axum can nest a service at: absolute, not the root, no wildcards or captures,
/// and clear of the metadata routes.
pub(crate) fn check_path(path: &str) -> Result<(), ConfigError> {
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
            Some("mcp.example.com".to_owned())
        );
        assert_eq!(
            resource_host("http://127.0.0.1:8080/mcp"),
            Some("127.0.0.1".to_owned())
        );
        assert_eq!(
            resource_host("http://[::1]:8080/mcp"),
            Some("::1".to_owned())
        );
        assert_eq!(
            resource_host("https://u@h.example:1"),
            Some("h.example".to_owned())
        );
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
