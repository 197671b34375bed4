//! An agent's OAuth session with one MCP server on rmcp's client auth: [`OAuthSession`]
//! holds rmcp's `AuthClient`, the [`Credentials`] it signs in with and the [`Approval`]
//! of the authorization code flow, and answers the server's `WWW-Authenticate`
//! challenges (a 401 with an authorization, a 403 `insufficient_scope` with a step-up),
//! which rmcp reports but leaves to its caller. Its errors are [`SessionError`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use rmcp::ServiceExt as _;
use rmcp::service::{ClientInitializeError, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthError, AuthorizationManager, WWWAuthenticateParams};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::approval::{Approval, ApprovalError, HeadlessApproval};
use super::credentials::{self, Credentials};
use super::oauth::{Managed, check_resource};
use super::source::{AccessToken, TokenSource, TokenSourceError};

/// The authorizations (the first one and step-ups) an [`OAuthSession`] attempts for one
/// request before giving up, unless set with
/// [`OAuthSessionBuilder::max_authorizations`].
pub const DEFAULT_MAX_AUTHORIZATIONS: u32 = 3;

/// The redirect URI of the authorization code flow unless set with
/// [`OAuthSessionBuilder::redirect_uri`].
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// The client name sent in dynamic client registration unless set with
/// [`OAuthSessionBuilder::client_name`].
pub const DEFAULT_CLIENT_NAME: &str = "rmcp-authz agent";

/// Why an [`OAuthSession`] could not authorize, connect or complete a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The MCP server's URL is not a URL.
    #[error("the MCP server's URL {url:?} is not a URL: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// Why it is not one.
        #[source]
        source: url::ParseError,
    },
    /// rmcp's client auth failed at `step`: discovery (including a server whose
    /// protected resource metadata names another resource), registration, the token
    /// endpoint's refusal, a refresh.
    #[error("{step}: {source}")]
    Auth {
        /// What the session was doing.
        step: &'static str,
        /// rmcp's error (boxed: it is large).
        #[source]
        source: Box<AuthError>,
    },
    /// The [`Approval`] of the authorization code flow returned no callback.
    #[error("approval: {0}")]
    Approval(#[source] ApprovalError),
    /// The enterprise-managed exchange (ID token to ID-JAG to access token) failed.
    #[error("the ID-JAG exchange: {0}")]
    IdJag(#[source] rmcp::transport::auth::enterprise::EmaError),
    /// The authorization server's metadata names no issuer, which the ID-JAG needs as
    /// its audience.
    #[error("the authorization server's metadata names no issuer, the ID-JAG's audience")]
    NoIssuer,
    /// The server still refused after this many authorizations for one request.
    #[error("the server still refuses after {max} authorizations: {challenge}")]
    TooManyAuthorizations {
        /// The cap reached.
        max: u32,
        /// The server's last `WWW-Authenticate` challenge.
        challenge: String,
    },
    /// The server's protected resource metadata, at its well-known URL, names another
    /// resource: the session does not authorize for it (rmcp checks the metadata a
    /// challenge points to; a document found only at the well-known URL it would pass
    /// over, falling back to the server's origin).
    #[error(
        "{url} publishes protected resource metadata for {named}, not for itself: no authorization is requested for it"
    )]
    ResourceMismatch {
        /// The MCP server's URL.
        url: String,
        /// The resource its metadata names.
        named: String,
    },
    /// A 403 `insufficient_scope` named no scope to ask for.
    #[error("the server refuses for insufficient scope but names no scope to ask for")]
    NoScopeNamed,
    /// A 403 `insufficient_scope` named only scopes the token already holds: a new
    /// authorization would not change the answer.
    #[error(
        "the server asks for scopes {required:?}, which the token already holds ({held:?}): a new authorization would not change its answer"
    )]
    ScopesAlreadyHeld {
        /// The scopes the challenge names.
        required: Vec<String>,
        /// The scopes the token holds.
        held: Vec<String>,
    },
    /// A step-up was asked of credentials that cannot widen a token (an ID-JAG token
    /// needs a new ID token from the identity provider).
    #[error("the {credentials} credentials cannot step up: {reason}")]
    StepUpUnsupported {
        /// The kind of credentials.
        credentials: &'static str,
        /// Why not.
        reason: &'static str,
    },
    /// rmcp's client credentials configuration has a client authentication this version
    /// of the crate does not know.
    #[error("unknown client authentication in the client credentials configuration")]
    UnknownClientAuthentication,
    /// Connecting (the MCP initialization) failed for a reason other than authorization.
    #[error("initialize: {0}")]
    Initialize(#[source] Box<ClientInitializeError>),
    /// A request failed for a reason other than authorization.
    #[error("request: {0}")]
    Service(#[source] ServiceError),
}

impl SessionError {
    /// Maps rmcp's error at `step`.
    pub(super) fn auth(step: &'static str) -> impl FnOnce(AuthError) -> SessionError {
        move |source| SessionError::Auth {
            step,
            source: Box::new(source),
        }
    }
}

/// An agent's OAuth session with one MCP server, on rmcp's client auth (feature
/// `agent`).
///
/// Holds rmcp's `AuthClient` (which presents the current token on every request and
/// refreshes it), the [`Credentials`] the agent signs in with, and the [`Approval`] of the
/// authorization code flow. It authorizes reactively: the first request goes out without
/// a token, and the server's `WWW-Authenticate` challenge drives rmcp's discovery (RFC
/// 9728 protected resource metadata, then RFC 8414 or OpenID Connect metadata), so a
/// server whose metadata names another resource stops it before any authorization
/// request. [`answer`](OAuthSession::answer) handles one challenge: a 401 is an
/// authorization with the credentials, a 403 `insufficient_scope` a step-up to the
/// scopes held plus those named, refused when the token already holds them all.
/// [`connect`](OAuthSession::connect) and [`request`](OAuthSession::request) run an MCP
/// initialization or request, answering challenges until it succeeds, at most
/// [`max_authorizations`](OAuthSessionBuilder::max_authorizations) times per request.
///
/// A signed-in session is a [`TokenSource`] of its tokens (rmcp's, refreshed by rmcp),
/// so it can be the actor or subject of delegation
/// ([`Exchanged`](super::Exchanged)). `Debug` shows no secret.
///
/// ```no_run
/// use rmcp::model::ClientConfig;
/// use rmcp_authz::agent::{Credentials, OAuthSession};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let session = OAuthSession::builder(
///     "https://notes.example/mcp",
///     Credentials::AuthorizationCode { client_id: None, client_secret: None },
/// )
/// .client_metadata_url("https://agent.example/client-metadata.json")
/// .build()
/// .await?;
/// let client = session.connect(ClientConfig::default()).await?;
/// let tools = session.request(|| client.list_tools(None)).await?;
/// # let _ = tools; Ok(()) }
/// ```
pub struct OAuthSession {
    pub(super) http: AuthClient<reqwest::Client>,
    pub(super) settings: Settings,
}

impl fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSession")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a session is built with: the builder's settings, kept by the session.
pub(super) struct Settings {
    pub(super) url: String,
    pub(super) credentials: Credentials,
    pub(super) approval: Arc<dyn Approval>,
    pub(super) redirect_uri: String,
    pub(super) client_name: String,
    pub(super) client_metadata_url: Option<String>,
    max_authorizations: u32,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("redirect_uri", &self.redirect_uri)
            .field("client_name", &self.client_name)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("max_authorizations", &self.max_authorizations)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuthSession`]: the settings of the authorization code flow and the cap on
/// authorizations, each with a default.
#[derive(Debug)]
pub struct OAuthSessionBuilder {
    settings: Settings,
}

impl OAuthSessionBuilder {
    /// The approval of the authorization code flow; [`HeadlessApproval`] unless set.
    pub fn approval(mut self, approval: impl Approval + 'static) -> OAuthSessionBuilder {
        self.settings.approval = Arc::new(approval);
        self
    }

    /// The redirect URI of the authorization code flow, registered with the client;
    /// [`DEFAULT_REDIRECT_URI`] unless set.
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> OAuthSessionBuilder {
        self.settings.redirect_uri = redirect_uri.into();
        self
    }

    /// The client's name in dynamic client registration; [`DEFAULT_CLIENT_NAME`] unless
    /// set.
    pub fn client_name(mut self, client_name: impl Into<String>) -> OAuthSessionBuilder {
        self.settings.client_name = client_name.into();
        self
    }

    /// The URL of the client's metadata document (a Client ID Metadata Document,
    /// SEP-991), used as its `client_id` by authorization servers that support it, in
    /// place of dynamic registration; none unless set.
    pub fn client_metadata_url(mut self, url: impl Into<String>) -> OAuthSessionBuilder {
        self.settings.client_metadata_url = Some(url.into());
        self
    }

    /// The authorizations (the first one and step-ups) attempted for one request before
    /// giving up with [`SessionError::TooManyAuthorizations`];
    /// [`DEFAULT_MAX_AUTHORIZATIONS`] unless set.
    pub fn max_authorizations(mut self, max: u32) -> OAuthSessionBuilder {
        self.settings.max_authorizations = max;
        self
    }

    /// Creates rmcp's authorization manager for the server's URL; nothing is requested
    /// until the first challenge. Following rmcp's address rules, a loopback or private
    /// authorization server is reached only when the MCP server's URL itself names a
    /// loopback or private address.
    ///
    /// # Errors
    /// [`SessionError::Url`] when the URL is not one; [`SessionError::Auth`] when rmcp
    /// cannot create its manager.
    pub async fn build(self) -> Result<OAuthSession, SessionError> {
        let settings = self.settings;
        url::Url::parse(&settings.url).map_err(|source| SessionError::Url {
            url: settings.url.clone(),
            source,
        })?;
        let manager = AuthorizationManager::new(settings.url.as_str())
            .await
            .map_err(SessionError::auth("create the authorization manager"))?;
        Ok(OAuthSession {
            http: AuthClient::new(reqwest::Client::new(), manager),
            settings,
        })
    }
}

impl OAuthSession {
    /// A builder for a session with the MCP server at `url`, signing in with
    /// `credentials`.
    pub fn builder(url: impl Into<String>, credentials: Credentials) -> OAuthSessionBuilder {
        OAuthSessionBuilder {
            settings: Settings {
                url: url.into(),
                credentials,
                approval: Arc::new(HeadlessApproval::new()),
                redirect_uri: DEFAULT_REDIRECT_URI.to_owned(),
                client_name: DEFAULT_CLIENT_NAME.to_owned(),
                client_metadata_url: None,
                max_authorizations: DEFAULT_MAX_AUTHORIZATIONS,
            },
        }
    }

    /// The MCP server's URL.
    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// rmcp's HTTP client, which presents the session's token on every request: for a
    /// transport of the caller's own making. Its `auth_manager` is the session's.
    pub fn auth_client(&self) -> &AuthClient<reqwest::Client> {
        &self.http
    }

    /// Answers the server's `WWW-Authenticate` `challenge` (from rmcp's
    /// `ClientInitializeError::auth_challenge` or `ServiceError::auth_challenge`) with one
    /// authorization: a 403 `insufficient_scope` is a step-up to the scopes the token
    /// holds plus those the challenge names; anything else (a 401) an authorization with
    /// the credentials, with the scopes rmcp selects (the challenge's, else the protected
    /// resource's `scopes_supported`).
    ///
    /// # Errors
    /// [`SessionError::Auth`] from rmcp (a server whose metadata names another resource
    /// among them), [`SessionError::Approval`], [`SessionError::IdJag`], and for a
    /// step-up [`SessionError::NoScopeNamed`], [`SessionError::ScopesAlreadyHeld`] or
    /// [`SessionError::StepUpUnsupported`].
    pub async fn answer(&self, challenge: &str) -> Result<(), SessionError> {
        let base = url::Url::parse(&self.settings.url).map_err(|source| SessionError::Url {
            url: self.settings.url.clone(),
            source,
        })?;
        let params = WWWAuthenticateParams::parse(challenge, &base);
        if params.is_insufficient_scope() {
            tracing::debug!(target: "rmcp_authz::agent", challenge, "step-up");
            credentials::step_up(self, &params).await
        } else {
            tracing::debug!(target: "rmcp_authz::agent", challenge, "authorization");
            // Metadata that names another resource stops the session here, wherever rmcp
            // would find it; none at all is left to rmcp (the 2025-03-26 fallback).
            if let Err(TokenSourceError::ResourceMismatch { url, named }) =
                check_resource(&self.settings.url).await
            {
                return Err(SessionError::ResourceMismatch { url, named });
            }
            credentials::authorize(self, challenge).await
        }
    }

    /// Connects to the MCP server over Streamable HTTP with rmcp's `AuthClient` and
    /// initializes with `handler` (rmcp's `ClientConfig`, or any client handler; pick the
    /// protocol version there), answering authorization challenges.
    ///
    /// # Errors
    /// What [`answer`](OAuthSession::answer) returns; [`SessionError::TooManyAuthorizations`];
    /// [`SessionError::Initialize`] when initialization fails otherwise.
    pub async fn connect<H>(
        &self,
        handler: H,
    ) -> Result<RunningService<RoleClient, H>, SessionError>
    where
        H: rmcp::ClientHandler + Clone,
    {
        let mut attempts = 0;
        loop {
            let transport = StreamableHttpClientTransport::with_client(
                self.http.clone(),
                StreamableHttpClientTransportConfig::with_uri(self.settings.url.clone()),
            );
            match handler.clone().serve(transport).await {
                Ok(running) => return Ok(running),
                Err(error) => match error.auth_challenge() {
                    Some(challenge) => self.answer_counted(challenge, &mut attempts).await?,
                    None => return Err(SessionError::Initialize(Box::new(error))),
                },
            }
        }
    }

    /// Runs one request (`send`, called again after each authorization), answering
    /// authorization challenges: a token revoked or expired mid-session, a tool that
    /// needs more scopes.
    ///
    /// # Errors
    /// What [`answer`](OAuthSession::answer) returns; [`SessionError::TooManyAuthorizations`];
    /// [`SessionError::Service`] when the request fails otherwise.
    pub async fn request<T, F, Fut>(&self, mut send: F) -> Result<T, SessionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let mut attempts = 0;
        loop {
            match send().await {
                Ok(value) => return Ok(value),
                Err(error) => match error.auth_challenge() {
                    Some(challenge) => self.answer_counted(challenge, &mut attempts).await?,
                    None => return Err(SessionError::Service(error)),
                },
            }
        }
    }

    /// [`answer`](OAuthSession::answer), as one of at most `max_authorizations` for a
    /// request; `attempts` counts them.
    async fn answer_counted(
        &self,
        challenge: &str,
        attempts: &mut u32,
    ) -> Result<(), SessionError> {
        if *attempts >= self.settings.max_authorizations {
            return Err(SessionError::TooManyAuthorizations {
                max: self.settings.max_authorizations,
                challenge: challenge.to_owned(),
            });
        }
        *attempts += 1;
        self.answer(challenge).await
    }

    /// The session's tokens as a [`Managed`] source sharing its rmcp manager, for a
    /// holder that outlives the session value.
    pub fn token_source(&self) -> Managed {
        Managed::shared(Arc::clone(&self.http.auth_manager))
    }
}

/// The session's current token, refreshed by rmcp; the scopes asked for are not
/// requested (authorizations happen in [`OAuthSession::answer`]).
#[async_trait]
impl TokenSource for OAuthSession {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        self.token_source().token(scopes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_shows_no_secret() {
        let session = OAuthSession::builder(
            "http://127.0.0.1:1/mcp",
            Credentials::AuthorizationCode {
                client_id: Some("agent".into()),
                client_secret: Some("s3cret-value".into()),
            },
        );
        let text = format!("{session:?}");
        assert!(
            text.contains("agent") && !text.contains("s3cret-value"),
            "{text}"
        );
        let session = session.build().await.unwrap();
        let text = format!("{session:?}");
        assert!(
            text.contains("agent") && !text.contains("s3cret-value"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_url_that_is_not_one_is_refused() {
        let error = OAuthSession::builder(
            "not a url",
            Credentials::AuthorizationCode {
                client_id: None,
                client_secret: None,
            },
        )
        .build()
        .await;
        assert!(matches!(error, Err(SessionError::Url { .. })), "{error:?}");
    }

    #[tokio::test]
    async fn a_step_up_naming_no_scope_is_refused() {
        let session = OAuthSession::builder(
            "http://127.0.0.1:1/mcp",
            Credentials::AuthorizationCode {
                client_id: None,
                client_secret: None,
            },
        )
        .build()
        .await
        .unwrap();
        let error = session.answer(r#"Bearer error="insufficient_scope""#).await;
        assert!(
            matches!(error, Err(SessionError::NoScopeNamed)),
            "{error:?}"
        );
    }

    #[test]
    fn sessions_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<OAuthSession>();
        check::<SessionError>();
    }

    #[allow(dead_code)]
    fn futures_are_send(session: &OAuthSession) {
        fn send<T: Send>(_: T) {}
        send(session.answer("Bearer"));
        send(session.connect(rmcp::model::ClientConfig::default()));
    }
}
