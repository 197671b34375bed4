//! [`IntrospectionVerifier`]: opaque access tokens, checked by asking the authorization
//! server (RFC 7662 token introspection).
//!
//! The token is POSTed to the introspection endpoint with the resource server's own client
//! credentials (HTTP Basic, RFC 7662 section 2.1). The answer must say `"active": true`;
//! its members are then held to exactly the rules a JWT's claims are: `iss` equal to the
//! configured issuer (filled in when the answer omits it, since the answer comes from that
//! issuer's endpoint), `aud` containing this resource, `exp` present and in the future,
//! required claims present, and the same [`Principal`] mapping (scopes, client, subject,
//! delegation chain). An endpoint that cannot be reached is not the token's fault: the
//! error is [`AuthError::KeysUnavailable`], which the HTTP layer answers with 503.
//! Every call reaches the endpoint; put a
//! [`CachedVerifier`](crate::token::CachedVerifier) (feature `cache`) in front to spare it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::fetch::{FetchOptions, Fetcher};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::principal::Principal;
use crate::token::claims::{self, ClaimRules};
use crate::token::{AuthError, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, Verifier};

/// Verifies opaque tokens with an RFC 7662 introspection endpoint.
pub struct IntrospectionVerifier {
    endpoint: String,
    client_id: String,
    client_secret: String,
    fetcher: Fetcher,
    rules: ClaimRules,
    max_token_bytes: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the client secret.
        f.debug_struct("IntrospectionVerifier")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("issuer", &self.rules.issuer)
            .field("audience", &self.rules.audience)
            .finish_non_exhaustive()
    }
}

/// Settings of an [`IntrospectionVerifier`].
#[must_use]
pub struct IntrospectionVerifierBuilder {
    endpoint: String,
    issuer: String,
    audience: String,
    client: Option<(String, String)>,
    fetch: FetchOptions,
    leeway: Duration,
    required: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IntrospectionVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionVerifierBuilder")
            .field("endpoint", &self.endpoint)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl IntrospectionVerifier {
    /// Starts a verifier asking `endpoint`, for tokens of `issuer` meant for `audience`
    /// (this MCP server's canonical URI).
    pub fn builder(
        endpoint: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> IntrospectionVerifierBuilder {
        IntrospectionVerifierBuilder {
            endpoint: endpoint.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            client: None,
            fetch: FetchOptions::default(),
            leeway: DEFAULT_LEEWAY,
            required: vec!["sub".to_owned()],
            clock: Arc::new(SystemClock),
        }
    }
}

impl IntrospectionVerifierBuilder {
    /// The resource server's client credentials at the authorization server. Required.
    pub fn client_credentials(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.client = Some((id.into(), secret.into()));
        self
    }

    /// Limits on calls to the endpoint (HTTPS, time, size).
    pub fn fetch_options(mut self, options: FetchOptions) -> Self {
        self.fetch = options;
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default 30 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Members the answer must have besides `iss`, `aud` and `exp` (default `["sub"]`).
    pub fn required_claims<S: Into<String>>(mut self, claims: impl IntoIterator<Item = S>) -> Self {
        self.required = claims.into_iter().map(Into::into).collect();
        self
    }

    /// The clock for expiry checks.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// A [`ConfigError`]: empty issuer or audience, no client credentials
    /// ([`ConfigError::NoClientCredentials`]), a leeway above 5 minutes, an endpoint that
    /// is not HTTPS (or opted-in loopback HTTP), or an HTTP client that cannot be built
    /// ([`ConfigError::Remote`], with the [`FetchError`](super::FetchError) as its source).
    pub fn build(self) -> Result<IntrospectionVerifier, ConfigError> {
        let rules = ClaimRules::new(self.issuer, self.audience, self.leeway, self.required)?;
        let Some((client_id, client_secret)) = self.client else {
            return Err(ConfigError::NoClientCredentials);
        };
        let fetcher = Fetcher::new(self.fetch)
            .and_then(|fetcher| fetcher.check_url(&self.endpoint).map(|_| fetcher))
            .map_err(ConfigError::from)?;
        Ok(IntrospectionVerifier {
            endpoint: self.endpoint,
            client_id,
            client_secret,
            fetcher,
            rules,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            clock: self.clock,
        })
    }
}

#[async_trait]
impl Verifier for IntrospectionVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge {
                size: token.len(),
                limit: self.max_token_bytes,
            });
        }
        if token.is_empty() {
            return Err(AuthError::malformed("the token is empty"));
        }
        let answer = self
            .fetcher
            .post_form_json(
                &self.endpoint,
                &[("token", token), ("token_type_hint", "access_token")],
                Some((&self.client_id, &self.client_secret)),
            )
            .await
            .map_err(|e| AuthError::KeysUnavailable {
                reason: format!("token introspection failed: {e}"),
            })?;
        let mut claims = answer.document;
        if claims.remove("active") != Some(Value::Bool(true)) {
            return Err(AuthError::Inactive);
        }
        claims
            .entry("iss")
            .or_insert_with(|| Value::String(self.rules.issuer.clone()));
        claims::validate(claims, &self.rules, self.clock.now_unix())
    }

    fn resource_uri(&self) -> Option<&str> {
        Some(&self.rules.audience)
    }

    fn trusted_issuers(&self) -> Vec<String> {
        vec![self.rules.issuer.clone()]
    }
}
