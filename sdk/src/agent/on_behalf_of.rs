//! [`OnBehalfOf`]: tokens for downstream calls made on a caller's behalf, by token
//! exchange (RFC 8693) of the token the caller presented, cached per subject, audience
//! and scopes until shortly before they expire.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};

use super::refreshing::{DEFAULT_REFRESH_MARGIN, Refreshing};
use super::source::{AccessToken, Exchanged, Presented, TokenSource, TokenSourceError};
use crate::SubjectToken;
use crate::remote::TokenExchangeClient;

/// How many (subject, audience) pairs keep cached tokens by default.
pub const DEFAULT_MAX_SUBJECTS: u64 = 10_000;

/// How long a (subject, audience) pair nobody asks for keeps its cached tokens.
const IDLE: Duration = Duration::from_secs(15 * 60);

/// The cache key: the subject token's SHA-256 (the token itself is kept only inside the
/// entry's exchange source) and the audience.
type Key = ([u8; 32], Arc<str>);

/// Tokens for calls a server (or an agent) makes to a downstream service on a caller's
/// behalf (feature `agent`): the caller's token, exchanged (RFC 8693) for a token meant
/// for the downstream audience, narrowed to the scopes the call needs, and naming this
/// service as the actor when it has an actor token source.
///
/// Tokens are cached per subject token, audience and scope set, and replaced a margin
/// (default 60 s) before they expire; concurrent calls for the same key share one
/// exchange (each key is a [`Refreshing`] cache in front of an [`Exchanged`] source). At
/// most [`DEFAULT_MAX_SUBJECTS`] (subject, audience) pairs are kept (least recently used
/// first out), and a pair unused for 15 minutes is dropped.
///
/// In a tool, the caller's token is the request's [`SubjectToken`]:
///
/// ```no_run
/// use std::sync::Arc;
/// use rmcp::handler::server::tool::Extension;
/// use rmcp_authz::SubjectToken;
/// use rmcp_authz::agent::{self, OnBehalfOf};
/// use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
///
/// # async fn run(Extension(parts): Extension<http::request::Parts>) -> Result<(), Box<dyn std::error::Error>> {
/// // Built once, at start-up, and shared by every call.
/// let exchange = TokenExchangeClient::new("https://auth.example/token", FetchOptions::default())?
///     .client_credentials("notes-mcp", "client-secret");
/// let downstream = OnBehalfOf::new(exchange);
///
/// // In the tool: call the calendar server as the caller, with only what it needs.
/// let subject = SubjectToken::of(&parts.extensions).ok_or("no caller token")?;
/// let calendar = "https://calendar.example/mcp";
/// let source = downstream.source(subject, calendar);
/// let transport = agent::transport(calendar, source, ["calendar:read"]);
/// # let _ = transport;
/// # Ok(())
/// # }
/// ```
pub struct OnBehalfOf {
    client: TokenExchangeClient,
    actor: Option<Arc<dyn TokenSource>>,
    margin: Duration,
    cache: moka::sync::Cache<Key, Arc<Refreshing<Exchanged>>>,
}

impl fmt::Debug for OnBehalfOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfOf")
            .field("client", &self.client)
            .field("actor", &self.actor)
            .field("margin", &self.margin)
            .field("subjects", &self.cache.entry_count())
            .finish()
    }
}

impl OnBehalfOf {
    /// Exchanges at `client`'s token endpoint, authenticated as `client` is.
    pub fn new(client: TokenExchangeClient) -> OnBehalfOf {
        OnBehalfOf {
            client,
            actor: None,
            margin: DEFAULT_REFRESH_MARGIN,
            cache: cache(DEFAULT_MAX_SUBJECTS),
        }
    }

    /// Presents a token of `actor` (this service's own tokens: a
    /// [`ClientCredentials`](super::ClientCredentials) behind a [`Refreshing`] cache, say)
    /// as the actor token of every exchange, so the downstream tokens name this service
    /// in their delegation chain.
    #[must_use]
    pub fn actor(mut self, actor: Arc<dyn TokenSource>) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Replaces a token once it expires within `margin` (default 60 s).
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Keeps cached tokens for at most `pairs` (subject, audience) pairs (default
    /// [`DEFAULT_MAX_SUBJECTS`]).
    #[must_use]
    pub fn max_subjects(mut self, pairs: u64) -> Self {
        self.cache = cache(pairs);
        self
    }

    /// A token for `audience` with `scopes`, on behalf of the caller who presented
    /// `subject`: from the cache, or by a new exchange.
    ///
    /// # Errors
    /// [`TokenSourceError::Exchange`] when the exchange fails (the authorization server's
    /// OAuth error code in [`TokenSourceError::error_code`]: `invalid_grant` for an
    /// expired subject token, `invalid_scope` for scopes beyond the caller's, ...).
    pub async fn token(
        &self,
        subject: &SubjectToken,
        audience: &str,
        scopes: &[String],
    ) -> Result<AccessToken, TokenSourceError> {
        self.entry(subject, audience).token(scopes).await
    }

    /// The tokens for `audience` on behalf of the caller who presented `subject`, as a
    /// [`TokenSource`] sharing this cache: for [`transport`](super::transport).
    pub fn source(&self, subject: &SubjectToken, audience: &str) -> Arc<dyn TokenSource> {
        self.entry(subject, audience)
    }

    /// Forgets every cached token (after a revocation, say).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    fn entry(&self, subject: &SubjectToken, audience: &str) -> Arc<Refreshing<Exchanged>> {
        let token = subject.token();
        let mut hash = [0; 32];
        hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        let key: Key = (hash, Arc::from(audience));
        self.cache.get_with(key, || {
            let mut exchanged = Exchanged::presenting(
                self.client.clone(),
                Presented::Token(token.to_owned()),
                audience,
            );
            if let Some(actor) = &self.actor {
                exchanged = exchanged.actor(Arc::clone(actor));
            }
            Arc::new(Refreshing::new(exchanged).margin(self.margin))
        })
    }
}

fn cache(pairs: u64) -> moka::sync::Cache<Key, Arc<Refreshing<Exchanged>>> {
    moka::sync::Cache::builder()
        .max_capacity(pairs)
        .time_to_idle(IDLE)
        .build()
}
