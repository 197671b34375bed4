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

use super::HttpSettings;
use crate::guard::Guard;

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Splits `scheme://authority/path` into (`scheme://authority`, `/path` or "").
fn split_origin(resource: &str) -> (String, String) {
    match resource.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => {
            let origin = format!(
                "{}://{}",
                uri.scheme_str().unwrap_or_default(),
                uri.authority().map_or("", |a| a.as_str())
            );
            let path = uri.path().trim_end_matches('/').to_owned();
            (origin, path)
        }
        _ => (resource.to_owned(), String::new()),
    }
}

/// The `scheme://authority` of `resource`.
pub(crate) fn origin_of(resource: &str) -> String {
    split_origin(resource).0
}

/// The path-inserted metadata URL for `resource` (RFC 9728 section 3.1).
pub(crate) fn metadata_url_for(resource: &str) -> String {
    let (origin, path) = split_origin(resource);
    format!("{origin}{WELL_KNOWN}{path}")
}

/// The Protected Resource Metadata document of `guard`'s resource: with DPoP accepted,
/// the proof algorithms (`dpop_signing_alg_values_supported`) and whether only
/// DPoP-bound tokens are (`dpop_bound_access_tokens_required`, RFC 9728 section 2).
pub(crate) fn metadata_document(guard: &Guard, settings: &HttpSettings) -> Value {
    let doc = json!({
        "resource": guard.resource(),
        "authorization_servers": guard.authorization_servers(),
        "scopes_supported": guard.policy().scopes_supported(),
        "bearer_methods_supported": ["header"],
    });
    #[cfg(feature = "dpop")]
    if let Some(dpop) = &settings.dpop {
        let mut doc = doc;
        doc["dpop_signing_alg_values_supported"] = dpop.algs.split(' ').collect::<Vec<_>>().into();
        doc["dpop_bound_access_tokens_required"] = dpop.required.into();
        return doc;
    }
    let _ = settings;
    doc
}

/// Routes serving the metadata document at the root and path-inserted well-known URLs.
pub(crate) fn metadata_routes<S: Clone + Send + Sync + 'static>(
    guard: &Guard,
    settings: &HttpSettings,
) -> Router<S> {
    let doc = metadata_document(guard, settings);
    let (_, path) = split_origin(guard.resource());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_path_are_split() {
        assert_eq!(
            split_origin("https://h.example/mcp"),
            ("https://h.example".to_owned(), "/mcp".to_owned())
        );
        assert_eq!(
            split_origin("https://h.example"),
            ("https://h.example".to_owned(), String::new())
        );
        assert_eq!(
            split_origin("http://127.0.0.1:8080/a/b"),
            ("http://127.0.0.1:8080".to_owned(), "/a/b".to_owned())
        );
    }
}
