//! Authorization server discovery: from an issuer URL to its metadata (RFC 8414, or
//! OpenID Connect Discovery 1.0), with the issuer checked exactly.
//!
//! For an issuer with a path (`https://as.example/tenant1`) the candidates are tried in
//! the order the MCP authorization specification gives: RFC 8414's path-inserted
//! `/.well-known/oauth-authorization-server/tenant1`, OpenID's path-inserted
//! `/.well-known/openid-configuration/tenant1`, and OpenID's appended
//! `/tenant1/.well-known/openid-configuration`; without a path, the first and the last.
//! The first document found is used, and refused unless its `issuer` equals the
//! configured one exactly (RFC 8414 section 3.3), so metadata cannot redirect trust to
//! another issuer.

use serde_json::Value;

use super::fetch::{FetchError, FetchOptions, Fetcher};
use super::jwks::{RemoteJwks, RemoteJwksOptions};
use crate::token::{JwtVerifier, JwtVerifierBuilder};

/// What discovery found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IssuerMetadata {
    /// The issuer, equal to the one asked for.
    pub issuer: String,
    /// Where its signing keys are (`jwks_uri`).
    pub jwks_uri: Option<String>,
    /// Its RFC 7662 introspection endpoint.
    pub introspection_endpoint: Option<String>,
    /// Its token endpoint.
    pub token_endpoint: Option<String>,
    /// Where the metadata was read.
    pub metadata_url: String,
    /// The whole document.
    pub document: serde_json::Map<String, Value>,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// No candidate URL gave a metadata document.
    #[error("no authorization server metadata found for {issuer}: {}", attempts.join("; "))]
    NotFound {
        /// The issuer.
        issuer: String,
        /// Each URL tried and why it failed.
        attempts: Vec<String>,
    },
    /// The document names another issuer.
    #[error(
        "the metadata at {metadata_url} is for issuer {found:?}, not {expected:?}; configure the exact issuer identifier"
    )]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's `issuer`.
        found: String,
        /// Where the document was read.
        metadata_url: String,
    },
    /// The issuer URL itself, or the `jwks_uri` the metadata gives, is unusable, or the
    /// HTTP client cannot be built.
    #[error("issuer {0}")]
    Fetch(#[from] FetchError),
    /// The metadata names no `jwks_uri`.
    #[error("the metadata at {metadata_url} has no jwks_uri; configure the keys directly")]
    NoJwksUri {
        /// Where the document was read.
        metadata_url: String,
    },
}

impl JwtVerifier {
    /// Discovers `issuer`'s metadata and starts a verifier for tokens of that issuer meant
    /// for `audience`, taking its keys from the `jwks_uri` the metadata names (fetched on
    /// first use, then followed as they rotate).
    ///
    /// # Errors
    /// A [`DiscoveryError`]: no metadata, another issuer's metadata, no `jwks_uri`, one
    /// that is not HTTPS under `options.fetch`, or an HTTP client that cannot be built
    /// ([`FetchError::Client`]).
    pub async fn discover(
        issuer: &str,
        audience: impl Into<String>,
        options: RemoteJwksOptions,
    ) -> Result<JwtVerifierBuilder, DiscoveryError> {
        let metadata = discover(issuer, &options.fetch).await?;
        let jwks_uri = metadata.jwks_uri.clone().ok_or(DiscoveryError::NoJwksUri {
            metadata_url: metadata.metadata_url.clone(),
        })?;
        let jwks = RemoteJwks::new(jwks_uri, options)?;
        Ok(JwtVerifier::builder(issuer, audience).remote_jwks(jwks))
    }
}

/// The metadata URLs to try for `issuer`, in order.
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.find("://").map(|i| i + 3) {
        Some(start) => match trimmed[start..].find('/') {
            Some(p) => trimmed.split_at(start + p),
            None => (trimmed, ""),
        },
        None => (trimmed, ""),
    };
    let mut urls = vec![format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    )];
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
    }
    urls.push(format!("{trimmed}/.well-known/openid-configuration"));
    urls
}

/// Reads the metadata of `issuer`.
///
/// # Errors
/// [`DiscoveryError`]: nothing found (each attempt named), another issuer's document, an
/// issuer URL that cannot be fetched under `options` (not HTTPS), or an HTTP client that
/// cannot be built ([`FetchError::Client`]).
pub async fn discover(
    issuer: &str,
    options: &FetchOptions,
) -> Result<IssuerMetadata, DiscoveryError> {
    let fetcher = Fetcher::new(options.clone())?;
    fetcher.check_url(issuer)?;
    let mut attempts = Vec::new();
    for url in metadata_urls(issuer) {
        let document = match fetcher.get_json(&url).await {
            Ok(fetched) => fetched.document,
            Err(e) => {
                attempts.push(e.to_string());
                continue;
            }
        };
        let found = document
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if found != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.to_owned(),
                found,
                metadata_url: url,
            });
        }
        let text = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        return Ok(IssuerMetadata {
            issuer: found,
            jwks_uri: text("jwks_uri"),
            introspection_endpoint: text("introspection_endpoint"),
            token_endpoint: text("token_endpoint"),
            metadata_url: url,
            document,
        });
    }
    Err(DiscoveryError::NotFound {
        issuer: issuer.to_owned(),
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_mcp_order() {
        assert_eq!(
            metadata_urls("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://as.example/tenant1/"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
                "https://as.example/.well-known/openid-configuration/tenant1",
                "https://as.example/tenant1/.well-known/openid-configuration"
            ]
        );
    }
}
