//! [`AuthorizedHttpClient`]: an rmcp Streamable HTTP client that presents a fresh token
//! from a [`TokenSource`] on every request, only to a server whose protected resource
//! metadata names it, and steps up once on an `insufficient_scope` challenge; with
//! feature `dpop`, DPoP-bound tokens go with a proof of the agent's key (the `dpop`
//! module).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    InsufficientScopeError, StreamableHttpClient, StreamableHttpClientTransportConfig,
    StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};

#[cfg(feature = "dpop")]
use super::dpop::AgentDpop;
use super::oauth::check_resource;
use super::source::{AccessToken, TokenSource, TokenSourceError, split_scopes};
#[cfg(feature = "dpop")]
use crate::token::dpop::{DpopKey, DpopKeyError};

/// Why an [`AuthorizedHttpClient`] request failed before or around the HTTP client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizedClientError<E: std::error::Error + Send + Sync + 'static> {
    /// No token could be had for the scopes held; nothing was sent.
    #[error("no access token: {0}")]
    TokenSource(#[source] TokenSourceError),
    /// The server's protected resource metadata could not be read, or names another
    /// resource ([`TokenSourceError::ResourceMismatch`]); no token was sent to it.
    #[error("not sending a token: {0}")]
    Resource(#[source] TokenSourceError),
    /// The server asked for more scopes (`required_scope`, from its challenge) and the
    /// token source would not give a token for them; the message was not sent again.
    #[error("step-up to {required_scope:?} refused: {source}")]
    StepUpRefused {
        /// The scopes the server's challenge named.
        required_scope: String,
        /// Why the token source refused.
        #[source]
        source: TokenSourceError,
    },
    /// The DPoP proof could not be signed; nothing was sent (feature `dpop`).
    #[cfg(feature = "dpop")]
    #[error("no DPoP proof: {0}")]
    Dpop(#[source] DpopKeyError),
    /// The wrapped HTTP client failed.
    #[error(transparent)]
    Http(E),
}

/// What an [`AuthorizedHttpClient`] (and its clones) has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AuthorizedClientStats {
    /// Tokens asked of the token source (one per request, one more per step-up).
    pub tokens_requested: u64,
    /// Step-ups: `insufficient_scope` challenges answered with a new token and a retry.
    pub step_ups: u64,
    /// Step-ups that did not help: the token source refused, or the retry was refused
    /// again.
    pub step_ups_failed: u64,
}

#[derive(Default)]
struct Shared {
    scopes: Mutex<BTreeSet<String>>,
    /// The URIs whose protected resource metadata named them; `None`: not checked.
    checked: Option<tokio::sync::Mutex<HashSet<Arc<str>>>>,
    tokens_requested: AtomicU64,
    step_ups: AtomicU64,
    step_ups_failed: AtomicU64,
}

/// An rmcp `StreamableHttpClient` that authorizes every request with a token from a
/// [`TokenSource`] (feature `agent`).
///
/// Before the first token goes to a URI, [`check_resource`](super::check_resource) reads
/// the server's protected resource metadata (RFC 9728): a server whose metadata names
/// another resource, or that publishes none, gets no token, and the request fails with
/// [`AuthorizedClientError::Resource`]. (rmcp's own `AuthClient` makes the same check
/// during its discovery.) [`without_resource_check`](AuthorizedHttpClient::without_resource_check)
/// turns it off for servers that predate RFC 9728.
///
/// Each request (message POSTs, the GET of the event stream, the session DELETE) asks the
/// source for a token for the scopes held, and sends it as the bearer token, in place of
/// the transport's static `auth_header`; with a [`Refreshing`](super::Refreshing)
/// source this costs a cache lookup, and an expired token is never presented.
///
/// When the server refuses a message with 403 and an `insufficient_scope` challenge
/// naming scopes, the client asks the source for the scopes it holds plus those named,
/// and sends that message once more with the new token; a second refusal is returned as
/// is. The scopes granted are held from then on, for every later request (clones share
/// them). Limits the transport passes on (SSE event size, response sizes) reach the
/// wrapped client unchanged.
#[derive(Clone)]
pub struct AuthorizedHttpClient<C = reqwest::Client> {
    inner: C,
    source: Arc<dyn TokenSource>,
    shared: Arc<Shared>,
    #[cfg(feature = "dpop")]
    dpop: Option<Arc<AgentDpop>>,
}

impl<C> fmt::Debug for AuthorizedHttpClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("AuthorizedHttpClient");
        let debug = debug
            .field("source", &self.source)
            .field("scopes", &self.scopes())
            .field("stats", &self.stats());
        #[cfg(feature = "dpop")]
        let debug = debug.field("dpop", &self.dpop.as_ref().map(|d| d.thumbprint()));
        debug.finish_non_exhaustive()
    }
}

impl<C> AuthorizedHttpClient<C> {
    /// Wraps the HTTP client `inner`, taking tokens from `source`, starting with the
    /// scopes `scopes`.
    pub fn new<S: Into<String>>(
        inner: C,
        source: Arc<dyn TokenSource>,
        scopes: impl IntoIterator<Item = S>,
    ) -> AuthorizedHttpClient<C> {
        let shared = Shared {
            checked: Some(tokio::sync::Mutex::default()),
            scopes: Mutex::new(
                scopes
                    .into_iter()
                    .map(Into::into)
                    .filter(|s: &String| !s.is_empty())
                    .collect(),
            ),
            ..Shared::default()
        };
        AuthorizedHttpClient {
            inner,
            source,
            shared: Arc::new(shared),
            #[cfg(feature = "dpop")]
            dpop: None,
        }
    }

    /// Presents DPoP-bound tokens with a proof of `key` (RFC 9449 section 7; feature
    /// `dpop`). A token is DPoP-bound when its source says so
    /// ([`AccessToken::dpop_bound`], set by [`Exchanged`](super::Exchanged) over a
    /// [`TokenExchangeClient::dpop`](crate::remote::TokenExchangeClient::dpop) client) or
    /// when it is a JWT whose `cnf` names a `jkt`; other tokens still go as `Bearer`,
    /// since a server checking DPoP refuses an unbound token under the `DPoP` scheme.
    ///
    /// Each request with a bound token (the message POSTs, the GET of the event stream,
    /// the session DELETE) then goes without the transport's bearer header, with
    /// `Authorization: DPoP <token>` and a `DPoP` proof of its method and URI, the
    /// token's hash (`ath`), and the server's latest nonce if it gave one.
    ///
    /// When the server answers 401 with a `DPoP` challenge `error="use_dpop_nonce"`
    /// (RFC 9449 section 9), the client reads the nonce with a probe (rmcp does not pass
    /// the `DPoP-Nonce` header on): an empty `POST` to the same URI with the token and a
    /// fresh proof, which the server refuses before reading any body, so nothing runs.
    /// It keeps the nonce for that URI (clones share it) and sends the request once more
    /// with a proof carrying it; a second refusal is returned as is. (rmcp reads no
    /// challenge from a refused session DELETE, so that one is not retried.) The probe
    /// goes through a client of its own that follows no redirects.
    #[cfg(feature = "dpop")]
    #[must_use]
    pub fn dpop(mut self, key: Arc<DpopKey>) -> Self {
        self.dpop = Some(Arc::new(AgentDpop::new(key, http_client())));
        self
    }

    /// Sends tokens without reading the server's protected resource metadata first: for
    /// MCP servers that predate RFC 9728 (protocol 2025-03-26 and earlier). Such a server
    /// can be handed a token meant for another, so use this only for a URL you trust.
    /// Call it on a new client: the result shares nothing (scopes aside) with clones made
    /// before.
    #[must_use]
    pub fn without_resource_check(self) -> Self {
        let shared = Shared {
            scopes: Mutex::new(self.held()),
            checked: None,
            ..Shared::default()
        };
        AuthorizedHttpClient {
            shared: Arc::new(shared),
            ..self
        }
    }

    /// The scopes held: those given at the start, plus those gained by step-ups.
    pub fn scopes(&self) -> Vec<String> {
        self.held().into_iter().collect()
    }

    /// What this client and its clones have done so far.
    pub fn stats(&self) -> AuthorizedClientStats {
        AuthorizedClientStats {
            tokens_requested: self.shared.tokens_requested.load(Ordering::Relaxed),
            step_ups: self.shared.step_ups.load(Ordering::Relaxed),
            step_ups_failed: self.shared.step_ups_failed.load(Ordering::Relaxed),
        }
    }

    fn held(&self) -> BTreeSet<String> {
        self.shared
            .scopes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn token_for(&self, scopes: &BTreeSet<String>) -> Result<AccessToken, TokenSourceError> {
        self.shared.tokens_requested.fetch_add(1, Ordering::Relaxed);
        let scopes: Vec<String> = scopes.iter().cloned().collect();
        self.source.token(&scopes).await
    }
}

impl<C: StreamableHttpClient> AuthorizedHttpClient<C> {
    /// A token for the scopes held, for the server at `uri` once its protected resource
    /// metadata has been checked, or the error the transport reports.
    async fn bearer(
        &self,
        uri: &Arc<str>,
    ) -> Result<AccessToken, StreamableHttpError<AuthorizedClientError<C::Error>>> {
        if let Some(checked) = &self.shared.checked {
            // Held across discovery: concurrent first requests wait for one check.
            let mut checked = checked.lock().await;
            if !checked.contains(uri) {
                check_resource(uri)
                    .await
                    .map_err(|e| StreamableHttpError::Client(AuthorizedClientError::Resource(e)))?;
                checked.insert(uri.clone());
            }
        }
        self.token_for(&self.held())
            .await
            .map_err(|e| StreamableHttpError::Client(AuthorizedClientError::TokenSource(e)))
    }

    /// Sends one request of `method` to `uri` with `token`: `send` gets the auth header
    /// and the headers to send. A DPoP-bound token with a key goes as DPoP (the `dpop`
    /// module); any other as the bearer `auth_header`.
    #[cfg_attr(not(feature = "dpop"), allow(unused_variables))]
    async fn present<T, F, Fut>(
        &self,
        method: &str,
        uri: &Arc<str>,
        token: &AccessToken,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        send: F,
    ) -> Result<T, StreamableHttpError<AuthorizedClientError<C::Error>>>
    where
        F: Fn(Option<String>, HashMap<HeaderName, HeaderValue>) -> Fut,
        Fut: Future<Output = Result<T, StreamableHttpError<C::Error>>>,
    {
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.dpop
            && super::dpop::presents_as_dpop(token)
        {
            return dpop
                .send(method, uri, &token.token, &custom_headers, send)
                .await;
        }
        send(Some(token.token.clone()), custom_headers)
            .await
            .map_err(lift)
    }
}

/// The scopes an `insufficient_scope` challenge names; `None` for any other 403.
fn challenged_scopes(error: &InsufficientScopeError) -> Option<BTreeSet<String>> {
    if !error
        .www_authenticate_header
        .to_ascii_lowercase()
        .contains("insufficient_scope")
    {
        return None;
    }
    let named: BTreeSet<String> = split_scopes(error.required_scope.as_deref()?)
        .into_iter()
        .collect();
    (!named.is_empty()).then_some(named)
}

/// The wrapped client's error, as this client's.
pub(super) fn lift<E: std::error::Error + Send + Sync + 'static>(
    error: StreamableHttpError<E>,
) -> StreamableHttpError<AuthorizedClientError<E>> {
    use StreamableHttpError as H;
    match error {
        H::Client(e) => H::Client(AuthorizedClientError::Http(e)),
        H::Sse(e) => H::Sse(e),
        H::Io(e) => H::Io(e),
        H::HttpStatus(e) => H::HttpStatus(e),
        H::UnexpectedEndOfStream => H::UnexpectedEndOfStream,
        H::UnexpectedServerResponse(e) => H::UnexpectedServerResponse(e),
        H::ResponseBodyTooLarge { max_size } => H::ResponseBodyTooLarge { max_size },
        H::UnexpectedContentType(e) => H::UnexpectedContentType(e),
        H::ServerDoesNotSupportSse => H::ServerDoesNotSupportSse,
        H::ServerDoesNotSupportDeleteSession => H::ServerDoesNotSupportDeleteSession,
        H::TokioJoinError(e) => H::TokioJoinError(e),
        H::Deserialize(e) => H::Deserialize(e),
        H::TransportChannelClosed => H::TransportChannelClosed,
        H::MissingSessionIdInResponse => H::MissingSessionIdInResponse,
        H::AuthRequired(e) => H::AuthRequired(e),
        H::InsufficientScope(e) => H::InsufficientScope(e),
        H::ReservedHeaderConflict(e) => H::ReservedHeaderConflict(e),
        H::SessionExpired => H::SessionExpired,
        H::SessionRecoveryTimeout => H::SessionRecoveryTimeout,
        H::ReinitializationFailed(e) => H::ReinitializationFailed(e),
        H::ControlRequestTimeout => H::ControlRequestTimeout,
        // Variants behind rmcp features this crate does not enable (`auth`), or added
        // later: kept as their message.
        other => H::UnexpectedServerResponse(other.to_string().into()),
    }
}

impl<C> StreamableHttpClient for AuthorizedHttpClient<C>
where
    C: StreamableHttpClient + Sync,
{
    type Error = AuthorizedClientError<C::Error>;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let held = self.held();
        let token = self.bearer(&uri).await?;
        let send = |auth_header, headers| {
            self.inner.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                auth_header,
                headers,
                limits,
            )
        };
        let first = self
            .present("POST", &uri, &token, custom_headers.clone(), send)
            .await;
        let challenge = match first {
            Err(StreamableHttpError::InsufficientScope(challenge)) => challenge,
            other => return other,
        };
        let Some(named) = challenged_scopes(&challenge) else {
            return Err(StreamableHttpError::InsufficientScope(challenge));
        };
        let wanted: BTreeSet<String> = held.union(&named).cloned().collect();
        if wanted == held {
            // The token already carried every scope named: asking again cannot help.
            return Err(StreamableHttpError::InsufficientScope(challenge));
        }
        self.shared.step_ups.fetch_add(1, Ordering::Relaxed);
        let required_scope = named.iter().cloned().collect::<Vec<_>>().join(" ");
        tracing::debug!(scope = %required_scope, "insufficient_scope: stepping up");
        self.shared.tokens_requested.fetch_add(1, Ordering::Relaxed);
        let list: Vec<String> = wanted.iter().cloned().collect();
        let stepped = match self.source.token(&list).await {
            Ok(token) => token,
            Err(source) => {
                self.shared.step_ups_failed.fetch_add(1, Ordering::Relaxed);
                return Err(StreamableHttpError::Client(
                    AuthorizedClientError::StepUpRefused {
                        required_scope,
                        source,
                    },
                ));
            }
        };
        // Hold the named scopes the source granted (all of them when it does not say).
        {
            let granted: BTreeSet<&String> = stepped.scopes.iter().collect();
            let mut scopes = self
                .shared
                .scopes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            scopes.extend(
                named
                    .into_iter()
                    .filter(|s| granted.is_empty() || granted.contains(s)),
            );
        }
        let retry = self
            .present("POST", &uri, &stepped, custom_headers, send)
            .await;
        if matches!(retry, Err(StreamableHttpError::InsufficientScope(_))) {
            self.shared.step_ups_failed.fetch_add(1, Ordering::Relaxed);
        }
        retry
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let token = self.bearer(&uri).await?;
        let send = |auth_header, headers| {
            self.inner
                .delete_session(uri.clone(), session_id.clone(), auth_header, headers)
        };
        self.present("DELETE", &uri, &token, custom_headers, send)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let token = self.bearer(&uri).await?;
        let send = |auth_header, headers| {
            self.inner.get_stream(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth_header,
                headers,
            )
        };
        self.present("GET", &uri, &token, custom_headers, send)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let token = self.bearer(&uri).await?;
        let send = |auth_header, headers| {
            self.inner.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth_header,
                headers,
                max_sse_event_size,
            )
        };
        self.present("GET", &uri, &token, custom_headers, send)
            .await
    }
}

/// A Streamable HTTP transport to the MCP server at `url` whose requests carry tokens from
/// `source`, starting with `scopes` (feature `agent`): serve an rmcp client over it.
///
/// The reqwest client follows no redirects (a token is never sent to another location)
/// and keeps no idle connections, as rmcp's own default does.
pub fn transport<S: Into<String>>(
    url: impl Into<Arc<str>>,
    source: Arc<dyn TokenSource>,
    scopes: impl IntoIterator<Item = S>,
) -> StreamableHttpClientTransport<AuthorizedHttpClient<reqwest::Client>> {
    StreamableHttpClientTransport::with_client(
        AuthorizedHttpClient::new(http_client(), source, scopes),
        StreamableHttpClientTransportConfig::with_uri(url),
    )
}

/// [`transport`], presenting DPoP-bound tokens with proofs of `key` (features `agent`
/// and `dpop`; see [`AuthorizedHttpClient::dpop`]).
///
/// ```no_run
/// use std::sync::Arc;
/// use rmcp::ServiceExt;
/// use rmcp_authz::agent::{self, Exchanged, Refreshing};
/// use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
/// use rmcp_authz::token::dpop::DpopKey;
/// # async fn run(alice_token: String) -> Result<(), Box<dyn std::error::Error>> {
/// let notes = "https://notes.example/mcp";
/// let key = Arc::new(DpopKey::generate()?);
/// let exchange = TokenExchangeClient::new("https://auth.example/token", FetchOptions::default())?
///     .dpop(Arc::clone(&key));
/// let source = Arc::new(Refreshing::new(Exchanged::new(exchange, alice_token, notes)));
/// let client = rmcp::model::ClientConfig::default()
///     .serve(agent::dpop_transport(notes, source, ["notes:read"], key))
///     .await?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "dpop")]
pub fn dpop_transport<S: Into<String>>(
    url: impl Into<Arc<str>>,
    source: Arc<dyn TokenSource>,
    scopes: impl IntoIterator<Item = S>,
    key: Arc<DpopKey>,
) -> StreamableHttpClientTransport<AuthorizedHttpClient<reqwest::Client>> {
    StreamableHttpClientTransport::with_client(
        AuthorizedHttpClient::new(http_client(), source, scopes).dpop(key),
        StreamableHttpClientTransportConfig::with_uri(url),
    )
}

/// The agent's reqwest client: no redirects (a token is never sent to another
/// location), no idle connections, as rmcp's own default.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // Only fails when the TLS backend cannot start, which no configuration fixes.
        .unwrap_or_else(|_| reqwest::Client::new())
}
