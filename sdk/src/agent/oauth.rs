//! The agent's own tokens, from rmcp's client auth (`rmcp::transport::auth`): discovery
//! of an MCP server's authorization server with the check that its protected resource
//! metadata names the server ([`discover`]), the client credentials grant with a client
//! secret or `private_key_jwt` ([`ClientCredentials`]), and any flow rmcp completes
//! itself, authorization code or enterprise-managed ID-JAG included ([`Managed`]).
//!
//! [`check_resource`] reads only the protected resource metadata, for a client whose
//! tokens come from elsewhere (delegation).
//!
//! rmcp does the OAuth work: metadata discovery (RFC 9728, RFC 8414, OpenID Connect),
//! client authentication, PKCE, token refresh. This module adapts its results to
//! [`TokenSource`], so they serve as the agent's tokens, as actor tokens for delegation
//! ([`Exchanged::actor`](super::Exchanged::actor)), and behind
//! [`AuthorizedHttpClient`](super::AuthorizedHttpClient).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use oauth2::TokenResponse as _;
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadataSource, ClientCredentialsConfig,
    OAuthTokenResponse, ProtectedResourceMetadataInvalidReason,
};

use url::Url;

use super::source::{AccessToken, TokenSource, TokenSourceError, earliest, jwt_expiry};
use crate::remote::fetch::Fetcher;
use crate::remote::{FetchError, FetchOptions};

/// Where protected resource metadata is published (RFC 9728 section 3).
const RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";

/// Checks that the MCP server at `url` publishes protected resource metadata (RFC 9728)
/// naming `url` (feature `agent`): what [`AuthorizedHttpClient`](super::AuthorizedHttpClient)
/// checks before it sends the first token to a server.
///
/// The document is looked for where RFC 9728 section 3.1 puts it, at the path-inserted
/// URL (`https://host/.well-known/oauth-protected-resource/mcp` for
/// `https://host/mcp`), then at the origin's. Its `resource` names `url` when it is `url`,
/// or the same origin with a path equal to or above `url`'s at a segment boundary (the
/// rule rmcp's discovery applies). Only the metadata is read, not the authorization
/// server's: a token source that already has tokens needs no more. Requests follow the
/// crate's fetch rules (HTTPS, or HTTP to a loopback address; no redirects; time and size
/// limits).
///
/// # Errors
/// [`TokenSourceError::ResourceMismatch`] when the metadata names another resource;
/// [`TokenSourceError::NoResourceMetadata`] when neither URL has it (404, or a document
/// without a `resource`); [`TokenSourceError::Fetch`] when it cannot be fetched.
pub async fn check_resource(url: &str) -> Result<(), TokenSourceError> {
    let fetcher = Fetcher::new(FetchOptions::loopback_http())?;
    let expected = fetcher.check_url(url)?;
    let origin = expected.origin().ascii_serialization();
    let path = expected.path().trim_end_matches('/');
    let mut candidates = vec![format!("{origin}{RESOURCE_METADATA}{path}")];
    if !path.is_empty() {
        candidates.push(format!("{origin}{RESOURCE_METADATA}"));
    }
    for candidate in candidates {
        let document = match fetcher.get_json(&candidate).await {
            Ok(fetched) => fetched.document,
            Err(FetchError::Status { status: 404, .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(resource) = document.get("resource").and_then(|r| r.as_str()) else {
            continue;
        };
        return match Url::parse(resource) {
            Ok(named) if names(&expected, &named) => Ok(()),
            _ => Err(TokenSourceError::ResourceMismatch {
                url: url.to_owned(),
                named: resource.to_owned(),
            }),
        };
    }
    Err(TokenSourceError::NoResourceMetadata {
        url: url.to_owned(),
    })
}

/// Whether the resource identifier `named` covers `expected`: the same URL, or the same
/// origin and a path equal to or above it, at a segment boundary.
fn names(expected: &Url, named: &Url) -> bool {
    if named.fragment().is_some() || expected.origin() != named.origin() {
        return false;
    }
    let (want, have) = (expected.path(), named.path());
    want == have
        || (want.starts_with(have)
            && (have.ends_with('/') || want.as_bytes().get(have.len()) == Some(&b'/')))
}

/// Finds the authorization server of the MCP server at `url` with rmcp's discovery, and
/// returns an rmcp `AuthorizationManager` holding its metadata (feature `agent`).
///
/// The server must publish protected resource metadata (RFC 9728) whose `resource` names
/// `url` (the same origin, and a path equal to or above `url`'s): a server that names
/// another resource is refused with [`TokenSourceError::ResourceMismatch`], before any
/// token is requested or sent. A server without such metadata is refused with
/// [`TokenSourceError::NoResourceMetadata`]: the agent cannot tell which resource it
/// would be sending tokens to.
///
/// Discovery follows rmcp's address rules: a loopback or private authorization server is
/// reached only when `url` itself names a loopback or private address.
///
/// # Errors
/// [`TokenSourceError::ResourceMismatch`], [`TokenSourceError::NoResourceMetadata`], or
/// [`TokenSourceError::OAuth`] with rmcp's error (unreachable server, unusable metadata).
pub async fn discover(url: &str) -> Result<AuthorizationManager, TokenSourceError> {
    let mut manager = AuthorizationManager::new(url).await.map_err(oauth)?;
    let resolution = manager.resolve_metadata().await.map_err(|error| {
        match &error {
            AuthError::ProtectedResourceMetadataInvalid { reason, .. } => {
                if let ProtectedResourceMetadataInvalidReason::ResourceMismatch {
                    permitted, ..
                } = &**reason
                {
                    return TokenSourceError::ResourceMismatch {
                        url: url.to_owned(),
                        named: permitted.to_string(),
                    };
                }
            }
            AuthError::NoAuthorizationSupport => {
                return TokenSourceError::NoResourceMetadata {
                    url: url.to_owned(),
                };
            }
            _ => {}
        }
        oauth(error)
    })?;
    if resolution.source != AuthorizationMetadataSource::ProtectedResourceMetadata {
        return Err(TokenSourceError::NoResourceMetadata {
            url: url.to_owned(),
        });
    }
    manager.set_metadata(resolution.metadata);
    Ok(manager)
}

fn oauth(error: AuthError) -> TokenSourceError {
    TokenSourceError::OAuth(Arc::new(error))
}

/// The agent's own tokens for one MCP server, by the OAuth client credentials grant
/// (RFC 6749 section 4.4, MCP's SEP-1046), done by rmcp (feature `agent`).
///
/// Authenticates as rmcp's [`ClientCredentialsConfig`] says: a client secret (in the
/// request body, or HTTP Basic when the server supports only that) or a `private_key_jwt`
/// assertion (RFC 7523). Every token is asked for the server's URI as the `resource`
/// (RFC 8707), which its verifier checks as the audience. Each call asks the token
/// endpoint for a new token with the scopes asked for (the configuration's scopes when
/// none are); put a [`Refreshing`](super::Refreshing) in front to cache.
///
/// ```no_run
/// use std::sync::Arc;
/// use rmcp::ServiceExt;
/// use rmcp::transport::auth::ClientCredentialsConfig;
/// use rmcp_authz::agent::{self, ClientCredentials, Refreshing};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "https://notes.example/mcp";
/// let credentials = ClientCredentials::discover(
///     url,
///     ClientCredentialsConfig::ClientSecret {
///         client_id: "research-agent".into(),
///         client_secret: "client-secret".into(),
///         scopes: vec![],
///         resource: None,
///     },
/// )
/// .await?;
/// let source = Arc::new(Refreshing::new(credentials));
/// let client = ().serve(agent::transport(url, source, ["notes:read"])).await?;
/// let tools = client.list_all_tools().await?;
/// # let _ = tools;
/// # Ok(())
/// # }
/// ```
pub struct ClientCredentials {
    manager: Arc<AuthorizationManager>,
    config: ClientCredentialsConfig,
    resource: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rmcp's configuration redacts the secret and the key.
        f.debug_struct("ClientCredentials")
            .field("config", &self.config)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Discovers the authorization server of the MCP server at `url` ([`discover`]: its
    /// protected resource metadata must name `url`), checks that it supports the
    /// configuration's client authentication, and configures rmcp's client for it. The
    /// configuration's `resource`, when set, must be `url` itself.
    ///
    /// # Errors
    /// What [`discover`] returns; [`TokenSourceError::OAuth`] when the authorization
    /// server does not support the client authentication method or signing algorithm, or
    /// the configuration names another resource.
    pub async fn discover(
        url: &str,
        config: ClientCredentialsConfig,
    ) -> Result<ClientCredentials, TokenSourceError> {
        let manager = discover(url).await?;
        ClientCredentials::with_manager(manager, url, config)
    }

    /// Uses `manager` (rmcp's, with the authorization server's metadata already set) for
    /// the MCP server at `url`, without discovery: for an authorization server configured
    /// by hand. The resource check of [`discover`] is then the caller's.
    ///
    /// # Errors
    /// [`TokenSourceError::OAuth`] when the metadata is missing or does not support the
    /// configuration, or the configuration names a resource other than `url`.
    pub fn with_manager(
        mut manager: AuthorizationManager,
        url: &str,
        config: ClientCredentialsConfig,
    ) -> Result<ClientCredentials, TokenSourceError> {
        if let Some(resource) = resource_of(&config)
            && resource != url
        {
            return Err(oauth(AuthError::ClientCredentialsError(format!(
                "the configuration asks for tokens for {resource}, not for {url}; \
                 leave its resource unset, or name the server it is for"
            ))));
        }
        manager
            .validate_client_credentials_metadata(&config)
            .map_err(oauth)?;
        manager
            .configure_client_credentials(&config)
            .map_err(oauth)?;
        Ok(ClientCredentials {
            manager: Arc::new(manager),
            config,
            resource: url.to_owned(),
        })
    }

    /// The MCP server's URI, sent as the `resource` of every token request.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

/// The configuration's `resource`.
fn resource_of(config: &ClientCredentialsConfig) -> Option<&str> {
    match config {
        ClientCredentialsConfig::ClientSecret { resource, .. }
        | ClientCredentialsConfig::PrivateKeyJwt { resource, .. } => resource.as_deref(),
        _ => None,
    }
}

/// `config` asking for `scopes` (its own when `None`) for `resource`; `None` for a client
/// authentication this version does not know (rmcp's enum is non-exhaustive).
pub(super) fn for_resource(
    config: &ClientCredentialsConfig,
    scopes: Option<Vec<String>>,
    resource: &str,
) -> Option<ClientCredentialsConfig> {
    let pick = |own: &Vec<String>| scopes.clone().unwrap_or_else(|| own.clone());
    let resource = Some(resource.to_owned());
    Some(match config {
        ClientCredentialsConfig::ClientSecret {
            client_id,
            client_secret,
            scopes: own,
            ..
        } => ClientCredentialsConfig::ClientSecret {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            scopes: pick(own),
            resource,
        },
        ClientCredentialsConfig::PrivateKeyJwt {
            client_id,
            signing_key,
            signing_algorithm,
            token_endpoint_audience,
            scopes: own,
            ..
        } => ClientCredentialsConfig::PrivateKeyJwt {
            client_id: client_id.clone(),
            signing_key: signing_key.clone(),
            signing_algorithm: *signing_algorithm,
            token_endpoint_audience: token_endpoint_audience.clone(),
            scopes: pick(own),
            resource,
        },
        _ => return None,
    })
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        let asked = (!scopes.is_empty()).then(|| scopes.to_vec());
        let config = for_resource(&self.config, asked, &self.resource).ok_or_else(|| {
            oauth(AuthError::ClientCredentialsError(format!(
                "this version of rmcp-authz does not know the client authentication of {:?}",
                self.config
            )))
        })?;
        let sent = Instant::now();
        let manager = Arc::clone(&self.manager);
        let response =
            off_task(move || async move { manager.exchange_client_credentials(&config).await })
                .await
                .map_err(|e| {
                    TokenSourceError::Other(format!("the token request task failed: {e}"))
                })?
                .map_err(oauth)?;
        Ok(access_token(&response, scopes, sent))
    }
}

/// Runs the future `make` returns to completion on the blocking pool, driven by this
/// runtime's I/O (which the caller's task keeps running while it waits): for rmcp 3.11's
/// client credentials exchange, which is not `Send` (the oauth2 request it builds holds a
/// non-`Sync` reference across an await), where this module's futures must be.
pub(super) async fn off_task<F, Fut>(make: F) -> Result<Fut::Output, tokio::task::JoinError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(make())).await
}

/// An rmcp token response, received for a request sent at `sent`, as an [`AccessToken`]:
/// it expires at the earlier of `expires_in` and, for a JWT, its `exp`; it carries the
/// scopes granted, or those asked for when the response does not say.
fn access_token(response: &OAuthTokenResponse, asked: &[String], sent: Instant) -> AccessToken {
    let token = response.access_token().secret().clone();
    let scopes = response.scopes().map_or_else(
        || asked.to_vec(),
        |granted| granted.iter().map(|s| s.to_string()).collect(),
    );
    AccessToken {
        expires_at: earliest(
            response.expires_in().map(|d| sent + d),
            jwt_expiry(&token, Instant::now()),
        ),
        token,
        scopes,
        dpop_bound: false,
    }
}

/// Tokens from an rmcp `AuthorizationManager` that holds credentials (feature `agent`):
/// after rmcp's authorization code flow, an enterprise-managed ID-JAG exchange, or
/// credentials loaded from rmcp's `CredentialStore`.
///
/// Each call is rmcp's `get_access_token`: the stored token, refreshed by rmcp with its
/// refresh token when it is about to expire. The scopes asked for are not requested (a
/// new authorization code flow needs a person); the token carries the scopes the manager
/// holds. Share the manager with rmcp's `AuthClient` through the same
/// `Arc<tokio::sync::Mutex<AuthorizationManager>>` (its `auth_manager` field).
#[derive(Clone)]
pub struct Managed {
    manager: Arc<tokio::sync::Mutex<AuthorizationManager>>,
}

impl fmt::Debug for Managed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Managed").finish_non_exhaustive()
    }
}

impl Managed {
    /// Tokens from `manager`.
    pub fn new(manager: AuthorizationManager) -> Managed {
        Managed::shared(Arc::new(tokio::sync::Mutex::new(manager)))
    }

    /// Tokens from a manager shared with rmcp (an `AuthClient`'s `auth_manager`).
    pub fn shared(manager: Arc<tokio::sync::Mutex<AuthorizationManager>>) -> Managed {
        Managed { manager }
    }
}

#[async_trait]
impl TokenSource for Managed {
    async fn token(&self, _scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        let manager = self.manager.lock().await;
        let token = manager.get_access_token().await.map_err(oauth)?;
        let scopes = manager.get_current_scopes().await;
        Ok(AccessToken {
            expires_at: jwt_expiry(&token, Instant::now()),
            token,
            scopes,
            dpop_bound: false,
        })
    }
}

/// The access token of rmcp's enterprise-managed flow (an ID-JAG exchanged at the MCP
/// server's authorization server, `rmcp::transport::auth::enterprise`), just received:
/// it expires at the earlier of its `expires_in` and, for a JWT, its `exp`.
impl From<rmcp::transport::auth::enterprise::EmaAccessToken> for AccessToken {
    fn from(token: rmcp::transport::auth::enterprise::EmaAccessToken) -> AccessToken {
        let now = Instant::now();
        let secret = token.access_token.secret().clone();
        AccessToken {
            expires_at: earliest(token.expires_in.map(|d| now + d), jwt_expiry(&secret, now)),
            token: secret,
            scopes: token.scopes.into_iter().collect(),
            dpop_bound: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_names_itself_and_the_paths_below_it() {
        let url = |s: &str| Url::parse(s).unwrap();
        let mcp = url("https://notes.example/mcp");
        for covering in [
            "https://notes.example/mcp",
            "https://notes.example/",
            "https://notes.example",
            "https://notes.example:443/mcp",
        ] {
            assert!(names(&mcp, &url(covering)), "{covering}");
        }
        for other in [
            "https://notes.example/mc",
            "https://notes.example/mcp/admin",
            "https://notes.example/other",
            "http://notes.example/mcp",
            "https://notes.example:8443/mcp",
            "https://evil.example/mcp",
            "https://notes.example/mcp#x",
        ] {
            assert!(!names(&mcp, &url(other)), "{other}");
        }
    }
}
