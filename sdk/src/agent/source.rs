//! Where tokens come from: the [`TokenSource`] trait, the [`AccessToken`] it returns, its
//! errors, and delegation by token exchange ([`Exchanged`]), which rmcp's client auth does
//! not do.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::SubjectToken;
use crate::remote::{ExchangeClientError, TokenExchangeClient};

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
    /// The token is bound to the agent's DPoP key (RFC 9449): the token endpoint answered
    /// `token_type: DPoP` ([`Exchanged`] with a DPoP-configured client sets it). With
    /// feature `dpop`, an [`AuthorizedHttpClient`](super::AuthorizedHttpClient) with a key
    /// presents such a token, and any JWT whose `cnf` names a `jkt`, as `DPoP` with a
    /// proof; other tokens go as `Bearer`. Default `false`.
    pub dpop_bound: bool,
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
            .field("dpop_bound", &self.dpop_bound)
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
            dpop_bound: false,
        }
    }

    /// The same token, said to be bound to the agent's DPoP key (or not): see
    /// [`AccessToken::dpop_bound`]. For a token handed over whose binding the agent knows
    /// and an opaque token (a JWT's `cnf.jkt` is read in any case).
    #[must_use]
    pub fn with_dpop_bound(mut self, bound: bool) -> AccessToken {
        self.dpop_bound = bound;
        self
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
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenSourceError {
    /// rmcp's client auth failed: discovery, the token endpoint's refusal, a refresh.
    #[error("OAuth: {0}")]
    OAuth(#[source] Arc<rmcp::transport::auth::AuthError>),
    /// The MCP server's protected resource metadata (RFC 9728) names another resource: no
    /// token is requested for it or sent to it.
    #[error(
        "{url} publishes protected resource metadata for {named}, not for itself: no token is sent to it (check the URL, or the server's resource configuration)"
    )]
    ResourceMismatch {
        /// The URL the agent was to call.
        url: String,
        /// The resource its metadata names.
        named: String,
    },
    /// The MCP server publishes no protected resource metadata (RFC 9728), so the agent
    /// cannot tell which resource it would send tokens to.
    #[error(
        "{url} publishes no protected resource metadata (RFC 9728): the agent cannot check that tokens sent there are meant for it"
    )]
    NoResourceMetadata {
        /// The URL the agent was to call.
        url: String,
    },
    /// The protected resource metadata could not be fetched (unreachable, not HTTPS, not
    /// JSON, too large).
    #[error("protected resource metadata: {0}")]
    Fetch(#[from] crate::remote::FetchError),
    /// The token exchange failed (with the OAuth error code when the server refused).
    #[error(transparent)]
    Exchange(#[from] ExchangeClientError),
    /// The source returned a token that has already expired; it is not used.
    #[error("the token source returned a token that has already expired")]
    Expired,
    /// Another failure, from a source outside this crate.
    #[error("token source: {0}")]
    Other(String),
}

impl TokenSourceError {
    /// The OAuth error code of a token exchange the token endpoint refused
    /// (`invalid_scope`, `invalid_grant`, ...).
    pub fn error_code(&self) -> Option<&str> {
        match self {
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

/// A token already held is a source of itself: for a token handed over by the user or
/// by an orchestrator, presented as it is (the scopes asked for are not checked; the
/// server decides). Once it has expired, [`TokenSourceError::Expired`].
#[async_trait]
impl TokenSource for AccessToken {
    async fn token(&self, _scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        if self.is_expired() {
            return Err(TokenSourceError::Expired);
        }
        Ok(self.clone())
    }
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        (**self).token(scopes).await
    }
}

/// A space-separated scope string, split.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `exp` of a JWT, read without verification (only to know when to stop using it),
/// as an instant on the monotonic clock; `None` for anything else.
pub(super) fn jwt_expiry(token: &str, now: Instant) -> Option<Instant> {
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

/// A token, fixed or taken fresh from a source for each exchange.
#[derive(Clone)]
pub(super) enum Presented {
    Token(String),
    Source(Arc<dyn TokenSource>),
}

impl Presented {
    async fn get(&self) -> Result<std::borrow::Cow<'_, str>, TokenSourceError> {
        match self {
            Presented::Token(token) => Ok(token.as_str().into()),
            Presented::Source(source) => Ok(source.token(&[]).await?.token.into()),
        }
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        match self {
            Presented::Token(token) => write!(f, "<token, {} bytes>", token.len()),
            Presented::Source(source) => source.fmt(f),
        }
    }
}

/// Delegated tokens, by token exchange (RFC 8693) of a user's token (feature `agent`):
/// the agent acts for the user, toward one audience, and is named in the delegation chain
/// (`act`) when it presents its own token as the actor token.
///
/// Each call exchanges the subject token at the [`TokenExchangeClient`]'s token endpoint
/// for a token meant for the audience, with the scopes asked for (the authorization
/// server narrows: never more than the subject token carries). The subject and the actor
/// token are either fixed or taken from a [`TokenSource`] for each exchange:
///
/// - the subject from a source chains delegation: an agent that received its task from
///   an orchestrator exchanges the orchestrator's delegated tokens, and the new tokens
///   carry the whole chain (`act` nested in `act`);
/// - the actor from a source keeps the agent's own token fresh: a
///   [`ClientCredentials`](super::ClientCredentials) behind a
///   [`Refreshing`](super::Refreshing) cache, say.
///
/// With a client made with `TokenExchangeClient::dpop` (feature `dpop`), each exchange
/// carries a proof of the agent's DPoP key, and the tokens the server binds to it come
/// with [`AccessToken::dpop_bound`] set: an
/// [`AuthorizedHttpClient`](super::AuthorizedHttpClient) given the same key presents them
/// as `DPoP` with a proof on every request.
///
/// ```no_run
/// use std::sync::Arc;
/// use rmcp::transport::auth::ClientCredentialsConfig;
/// use rmcp_authz::agent::{ClientCredentials, Exchanged, Refreshing};
/// use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
/// # async fn run(alice_token: String) -> Result<(), Box<dyn std::error::Error>> {
/// let notes = "https://notes.example/mcp";
/// // The agent's own identity, by rmcp's client credentials grant.
/// let own = Refreshing::new(
///     ClientCredentials::discover(
///         notes,
///         ClientCredentialsConfig::ClientSecret {
///             client_id: "orchestrator".into(),
///             client_secret: "client-secret".into(),
///             scopes: vec![],
///             resource: None,
///         },
///     )
///     .await?,
/// );
/// let exchange = TokenExchangeClient::new("https://auth.example/token", FetchOptions::default())?
///     .client_credentials("orchestrator", "client-secret");
/// // Alice's tokens for the notes server, naming the orchestrator as the actor.
/// let for_alice = Exchanged::new(exchange, alice_token, notes).actor(Arc::new(own));
/// # let _ = for_alice;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Exchanged {
    client: TokenExchangeClient,
    subject: Presented,
    actor: Option<Presented>,
    audience: String,
}

impl fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchanged")
            .field("client", &self.client)
            .field("audience", &self.audience)
            .field("subject", &self.subject)
            .field("actor", &self.actor)
            .finish()
    }
}

impl Exchanged {
    /// Exchanges `subject_token` (the user's access token, or a delegated token received
    /// with a task) at `client`'s token endpoint for tokens meant for `audience` (the MCP
    /// server's URI, or a logical name with
    /// [`TargetParameter::Audience`](crate::remote::TargetParameter::Audience)). When the
    /// subject token expires, exchanges fail: use [`Exchanged::from_source`] for a
    /// subject that is kept fresh.
    pub fn new(
        client: TokenExchangeClient,
        subject_token: impl Into<String>,
        audience: impl Into<String>,
    ) -> Exchanged {
        Exchanged::presenting(client, Presented::Token(subject_token.into()), audience)
    }

    /// Exchanges the tokens of `subject` (asked with no scopes: whatever it grants), one
    /// taken for each exchange: another [`Exchanged`] to extend its delegation chain, or a
    /// [`Managed`](super::Managed) user session.
    pub fn from_source(
        client: TokenExchangeClient,
        subject: Arc<dyn TokenSource>,
        audience: impl Into<String>,
    ) -> Exchanged {
        Exchanged::presenting(client, Presented::Source(subject), audience)
    }

    /// Exchanges the token a request was authorized with (a tool's caller, on whose
    /// behalf the tool calls `audience`); see also [`OnBehalfOf`](super::OnBehalfOf),
    /// which caches per caller.
    pub fn for_subject(
        client: TokenExchangeClient,
        subject: &SubjectToken,
        audience: impl Into<String>,
    ) -> Exchanged {
        Exchanged::new(client, subject.token(), audience)
    }

    pub(super) fn presenting(
        client: TokenExchangeClient,
        subject: Presented,
        audience: impl Into<String>,
    ) -> Exchanged {
        Exchanged {
            client,
            subject,
            actor: None,
            audience: audience.into(),
        }
    }

    /// Presents `token` (the agent's own access token) as the actor token, so the new
    /// tokens name the agent as the current actor (`act`).
    #[must_use]
    pub fn actor_token(mut self, token: impl Into<String>) -> Self {
        self.actor = Some(Presented::Token(token.into()));
        self
    }

    /// Presents a token of `actor` (the agent's own tokens, asked with no scopes) as the
    /// actor token of each exchange.
    #[must_use]
    pub fn actor(mut self, actor: Arc<dyn TokenSource>) -> Self {
        self.actor = Some(Presented::Source(actor));
        self
    }

    /// The audience the tokens are for.
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

#[async_trait]
impl TokenSource for Exchanged {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        let subject = self.subject.get().await?;
        let actor = match &self.actor {
            Some(actor) => Some(actor.get().await?),
            None => None,
        };
        let asked: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let sent = Instant::now();
        let exchanged = self
            .client
            .exchange(&subject, actor.as_deref(), &self.audience, &asked)
            .await?;
        let expires_at = earliest(
            exchanged.expires_in.map(|d| sent + d),
            jwt_expiry(&exchanged.access_token, Instant::now()),
        );
        Ok(AccessToken {
            scopes: exchanged.scope.unwrap_or_else(|| scopes.to_vec()),
            expires_at,
            token: exchanged.access_token,
            dpop_bound: exchanged.dpop_bound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_tokens() {
        let token = AccessToken::new("eyJsecret", None, ["a"]);
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("eyJsecret") && shown.contains("9 bytes"),
            "{shown}"
        );
        let client = TokenExchangeClient::new(
            "https://as.example/token",
            crate::remote::FetchOptions::default(),
        )
        .unwrap()
        .client_credentials("agent", "hunter2");
        let exchanged =
            Exchanged::new(client, "eyJsubject", "https://mcp.example/mcp").actor_token("eyJactor");
        let shown = format!("{exchanged:?}");
        for secret in ["hunter2", "eyJsubject", "eyJactor"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("agent") && shown.contains("10 bytes"),
            "{shown}"
        );
    }

    #[test]
    fn jwt_expiry_reads_exp_and_nothing_else() {
        let now = Instant::now();
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 10;
        let jwt = |claims: String| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims));
        let at = jwt_expiry(&jwt(format!("{{\"exp\":{exp}}}")), now).unwrap();
        assert!(at > now && at <= now + Duration::from_secs(10));
        let past = jwt_expiry(&jwt("{\"exp\":1}".to_owned()), now);
        assert_eq!(past, Some(now));
        for other in [
            "opaque".to_owned(),
            jwt("{}".to_owned()),
            jwt("{\"exp\":\"soon\"}".to_owned()),
            format!("{}.extra", jwt(format!("{{\"exp\":{exp}}}"))),
        ] {
            assert_eq!(jwt_expiry(&other, now), None, "{other}");
        }
        assert_eq!(earliest(Some(now), None), Some(now));
        assert_eq!(
            earliest(Some(now + Duration::from_secs(1)), Some(now)),
            Some(now)
        );
    }
}
