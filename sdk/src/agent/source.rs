//! Where tokens come from: the [`TokenSource`] trait, the [`AccessToken`] it returns, and
//! the two sources that talk to an authorization server's token endpoint, by the client
//! credentials grant ([`ClientCredentials`]) and by token exchange ([`Exchanged`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::error::excerpt;
use crate::remote::{ExchangeClientError, FetchError, FetchOptions, TokenExchangeClient};

use crate::remote::fetch::{BearerResponse, Fetcher};

/// An access token, with when it expires and the scopes it carries.
///
/// `Debug` shows the token's length, never the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessToken {
    /// The token, as sent after `Bearer `.
    pub token: String,
    /// When it expires, on this process's monotonic clock; `None` when unknown (such a
    /// token is treated as never expiring).
    pub expires_at: Option<Instant>,
    /// The scopes granted, as far as the source knows (the token endpoint's `scope`, else
    /// the scopes asked for).
    pub scopes: Vec<String>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field(
                "token",
                &format_args!("<redacted, {} bytes>", self.token.len()),
            )
            .field("expires_in", &self.remaining())
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl AccessToken {
    /// A token expiring at `expires_at` (`None`: unknown), carrying `scopes`.
    pub fn new<S: Into<String>>(
        token: impl Into<String>,
        expires_at: Option<Instant>,
        scopes: impl IntoIterator<Item = S>,
    ) -> AccessToken {
        AccessToken {
            token: token.into(),
            expires_at,
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// How long until it expires (zero once expired); `None` when unknown.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether it has expired.
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether it expires within `margin` from now (or has expired).
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| Instant::now() + margin >= at)
    }
}

/// Why a token could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenSourceError {
    /// The token endpoint refused, with an OAuth error (RFC 6749 section 5.2).
    #[error("token request at {endpoint} refused with {error} (HTTP {status}){}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The token endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The OAuth error code: `invalid_client`, `invalid_scope`, `invalid_target`, ...
        error: String,
        /// The server's `error_description`, if any (shortened).
        description: Option<String>,
    },
    /// The token endpoint could not be reached, or answered an error without an OAuth
    /// error body.
    #[error("token request failed: {0}")]
    Fetch(#[from] FetchError),
    /// The token exchange failed (with the OAuth error code when the server refused).
    #[error(transparent)]
    Exchange(#[from] ExchangeClientError),
    /// The token endpoint answered 200 with something that is not a bearer token response.
    #[error("token endpoint {endpoint}: unusable answer: {reason}")]
    InvalidResponse {
        /// The token endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The source returned a token that has already expired; it is not used.
    #[error("the token source returned a token that has already expired")]
    Expired,
    /// Another failure, from a source outside this crate.
    #[error("token source: {0}")]
    Other(String),
}

impl TokenSourceError {
    /// The OAuth error code of a refusal by the token endpoint (`invalid_scope`,
    /// `invalid_grant`, ...), from either grant.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            TokenSourceError::Refused { error, .. } => Some(error),
            TokenSourceError::Exchange(e) => e.error_code(),
            _ => None,
        }
    }
}

/// Something that hands out access tokens for a set of scopes.
///
/// Object safe: [`AuthorizedHttpClient`](super::AuthorizedHttpClient) holds an
/// `Arc<dyn TokenSource>`. Implementations may fetch on every call; wrap them in
/// [`Refreshing`](super::Refreshing) to cache.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token carrying `scopes` (empty: whatever the source grants by default).
    ///
    /// # Errors
    /// A [`TokenSourceError`] when no token can be had.
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError>;
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        (**self).token(scopes).await
    }
}

/// Tokens for the agent itself, by the OAuth client credentials grant (RFC 6749 section
/// 4.4; feature `agent`).
///
/// POSTs `grant_type=client_credentials`, the scopes asked for and, when set, the
/// `resource` (RFC 8707) to the token endpoint, authenticating with HTTP Basic (each of
/// the id and secret form-encoded first, RFC 6749 section 2.3.1). The request follows
/// the crate's defensive fetch rules (HTTPS only, loopback HTTP on opt-in, no
/// redirects, time and size limits). The expiry is the earlier of `expires_in` and, for
/// a JWT, its `exp` claim, so a token is never believed to live longer than it does.
#[derive(Clone)]
pub struct ClientCredentials {
    endpoint: String,
    client_id: String,
    client_secret: String,
    resource: Option<String>,
    fetcher: Fetcher,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the client secret.
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A source for `client_id` at `token_endpoint`, with `options` limiting each request.
    ///
    /// # Errors
    /// A [`FetchError`] when the URL is invalid or not HTTPS (or loopback HTTP with the
    /// opt-in), or [`FetchError::Client`] when the HTTP client cannot be built.
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        options: FetchOptions,
    ) -> Result<ClientCredentials, FetchError> {
        let endpoint = token_endpoint.into();
        let fetcher = Fetcher::new(options)?;
        fetcher.check_url(&endpoint)?;
        Ok(ClientCredentials {
            endpoint,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            resource: None,
            fetcher,
        })
    }

    /// Asks for tokens meant for the resource at `uri` (RFC 8707 `resource`): the MCP
    /// server's URI, which its verifier checks as the audience.
    #[must_use]
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resource = Some(uri.into());
        self
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        let scope = scopes.join(" ");
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        let sent = Instant::now();
        let (status, document) = self
            .fetcher
            .post_form(
                &self.endpoint,
                &form,
                Some((&self.client_id, &self.client_secret)),
            )
            .await?;
        if status != 200 {
            return Err(refusal(&self.endpoint, status, document.as_ref()));
        }
        let Some(document) = document else {
            return Err(TokenSourceError::InvalidResponse {
                endpoint: self.endpoint.clone(),
                reason: "the answer is not a JSON object".to_owned(),
            });
        };
        token_response(&self.endpoint, &document, scopes, sent)
    }
}

/// A non-200 answer: an OAuth refusal when it carries an `error` code, else the status.
fn refusal(endpoint: &str, status: u16, document: Option<&Map<String, Value>>) -> TokenSourceError {
    let member = |name: &str| document.and_then(|d| d.get(name)).and_then(Value::as_str);
    match member("error") {
        Some(error) if !error.is_empty() => TokenSourceError::Refused {
            endpoint: endpoint.to_owned(),
            status,
            error: excerpt(error),
            description: member("error_description").map(|d| {
                let mut end = d.len().min(512);
                while !d.is_char_boundary(end) {
                    end -= 1;
                }
                d[..end].to_owned()
            }),
        },
        _ => TokenSourceError::Fetch(FetchError::Status {
            url: endpoint.to_owned(),
            status,
        }),
    }
}

/// Reads a bearer token response (RFC 6749 section 5.1), received for a request sent at
/// `sent`.
fn token_response(
    endpoint: &str,
    document: &Map<String, Value>,
    requested: &[String],
    sent: Instant,
) -> Result<AccessToken, TokenSourceError> {
    let invalid = |reason: String| TokenSourceError::InvalidResponse {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let bearer = BearerResponse::read(document).map_err(invalid)?;
    let token = bearer.access_token;
    let expires_in = bearer.expires_in;
    let scopes = bearer.scope.unwrap_or_else(|| requested.to_vec());
    Ok(AccessToken {
        expires_at: earliest(
            expires_in.map(|d| sent + d),
            jwt_expiry(&token, Instant::now()),
        ),
        token,
        scopes,
    })
}

/// A space-separated scope string, split.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `exp` of a JWT, read without verification (only to know when to stop using it),
/// as an instant on the monotonic clock; `None` for anything else.
fn jwt_expiry(token: &str, now: Instant) -> Option<Instant> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let left = exp - unix_now;
    if left <= 0.0 {
        return Some(now);
    }
    Some(now + Duration::try_from_secs_f64(left).ok()?)
}

/// Tokens obtained by token exchange (RFC 8693) from a user's token (feature `agent`):
/// the agent acts for the user, toward one audience, named in the delegation chain when
/// it presents its own token as the actor token.
///
/// Wraps a [`TokenExchangeClient`]; each call exchanges the subject token for a token for
/// the audience with the scopes asked for. The subject token is fixed: when it expires,
/// exchanges fail and a new `Exchanged` is needed.
#[derive(Clone)]
pub struct Exchanged {
    client: TokenExchangeClient,
    subject_token: String,
    actor_token: Option<String>,
    audience: String,
}

impl fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens.
        f.debug_struct("Exchanged")
            .field("client", &self.client)
            .field("audience", &self.audience)
            .field("actor_token", &self.actor_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Exchanged {
    /// Exchanges `subject_token` (the user's access token) at `client`'s token endpoint
    /// for tokens meant for `audience` (the MCP server's URI, or a logical name with
    /// [`TargetParameter::Audience`](crate::remote::TargetParameter::Audience)).
    pub fn new(
        client: TokenExchangeClient,
        subject_token: impl Into<String>,
        audience: impl Into<String>,
    ) -> Exchanged {
        Exchanged {
            client,
            subject_token: subject_token.into(),
            actor_token: None,
            audience: audience.into(),
        }
    }

    /// Presents `token` (the agent's own access token) as the actor token, so the new
    /// tokens name the agent as the current actor (`act`).
    #[must_use]
    pub fn actor_token(mut self, token: impl Into<String>) -> Self {
        self.actor_token = Some(token.into());
        self
    }
}

#[async_trait]
impl TokenSource for Exchanged {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        let asked: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let sent = Instant::now();
        let exchanged = self
            .client
            .exchange(
                &self.subject_token,
                self.actor_token.as_deref(),
                &self.audience,
                &asked,
            )
            .await?;
        let expires_at = earliest(
            exchanged.expires_in.map(|d| sent + d),
            jwt_expiry(&exchanged.access_token, Instant::now()),
        );
        Ok(AccessToken {
            scopes: exchanged.scope.unwrap_or_else(|| scopes.to_vec()),
            expires_at,
            token: exchanged.access_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_token_and_secret() {
        let token = AccessToken::new("eyJsecret", None, ["a"]);
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("eyJsecret") && shown.contains("9 bytes"),
            "{shown}"
        );
        let source = ClientCredentials::new(
            "https://as.example/token",
            "agent",
            "hunter2",
            FetchOptions::default(),
        )
        .unwrap();
        let shown = format!("{source:?}");
        assert!(
            shown.contains("agent") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn expiry_is_the_earlier_of_expires_in_and_exp() {
        let now = Instant::now();
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 10;
        let payload = URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"));
        let jwt = format!("e30.{payload}.sig");
        let doc = |v: Value| v.as_object().unwrap().clone();
        let long = token_response(
            "t",
            &doc(serde_json::json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 3600})),
            &[],
            now,
        )
        .unwrap();
        assert!(long.remaining().unwrap() <= Duration::from_secs(10));
        let short = token_response(
            "t",
            &doc(serde_json::json!({"access_token": jwt, "token_type": "bearer", "expires_in": 2, "scope": "a b"})),
            &[],
            now,
        )
        .unwrap();
        assert!(short.remaining().unwrap() <= Duration::from_secs(2));
        assert_eq!(short.scopes, ["a", "b"]);
        let opaque = token_response(
            "t",
            &doc(serde_json::json!({"access_token": "opaque", "token_type": "Bearer"})),
            &["x".to_owned()],
            now,
        )
        .unwrap();
        assert_eq!(
            (opaque.expires_at, opaque.scopes),
            (None, vec!["x".to_owned()])
        );
        for bad in [
            serde_json::json!({"token_type": "Bearer"}),
            serde_json::json!({"access_token": "t", "token_type": "DPoP"}),
            serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": "60"}),
            serde_json::json!({"access_token": "t", "token_type": "Bearer", "scope": ["a"]}),
        ] {
            assert!(matches!(
                token_response("t", &doc(bad), &[], now),
                Err(TokenSourceError::InvalidResponse { .. })
            ));
        }
    }
}
