//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for this MCP server.
//!
//! The document is served at `/.well-known/oauth-protected-resource` and at the
//! path-inserted form for the resource's path (`/.well-known/oauth-protected-resource/mcp`
//! for `https://host/mcp`, RFC 9728 section 3.1); challenges point at the latter.
//! `scopes_supported` comes from the policy and never lists `offline_access` (the MCP
//! specification keeps refresh-token scopes out of resource metadata).

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::authz::Authz;

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Splits `scheme://authority/path` into (`scheme://authority`, `/path` or "").
fn split_origin(resource: &str) -> (&str, &str) {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    match resource[after_scheme..].find('/') {
        Some(i) => resource.split_at(after_scheme + i),
        None => (resource, ""),
    }
}

/// The path-inserted metadata URL for `resource` (RFC 9728 section 3.1).
pub(crate) fn metadata_url_for(resource: &str) -> String {
    let (origin, path) = split_origin(resource);
    let path = path.trim_end_matches('/');
    format!("{origin}{WELL_KNOWN}{path}")
}

impl Authz {
    /// The Protected Resource Metadata document.
    pub fn protected_resource_metadata(&self) -> Value {
        json!({
            "resource": self.resource(),
            "authorization_servers": self.authorization_servers(),
            "scopes_supported": self.policy().scopes_supported(),
            "bearer_methods_supported": ["header"],
        })
    }

    /// The URL of the metadata document, as given in `resource_metadata` challenges:
    /// the path-inserted form for the resource's path.
    pub fn resource_metadata_url(&self) -> String {
        metadata_url_for(self.resource())
    }

    /// Routes serving the metadata document at the root and path-inserted well-known
    /// URLs. Merge them into the router that serves the MCP endpoint; they need no token.
    pub fn metadata_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let doc = self.protected_resource_metadata();
        let (_, path) = split_origin(self.resource());
        let path = path.trim_end_matches('/');
        let handler = move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        };
        let mut router = Router::new().route(WELL_KNOWN, get(handler.clone()));
        if !path.is_empty() {
            router = router.route(&format!("{WELL_KNOWN}{path}"), get(handler));
        }
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_path_are_split() {
        assert_eq!(
            split_origin("https://h.example/mcp"),
            ("https://h.example", "/mcp")
        );
        assert_eq!(split_origin("https://h.example"), ("https://h.example", ""));
        assert_eq!(
            split_origin("http://127.0.0.1:8080/a/b"),
            ("http://127.0.0.1:8080", "/a/b")
        );
    }
}
