//! What an agent signs in with ([`Credentials`]) and how each kind becomes a token through
//! rmcp's client auth, answering a server's challenge: the authorization code flow with
//! PKCE (pre-registered client, CIMD or dynamic registration, as rmcp decides), the client
//! credentials grant, and the enterprise-managed ID-JAG flow; and the step-up of each on
//! a 403 `insufficient_scope`.
//!
//! rmcp's `AuthClient` holds its `AuthorizationManager` behind a mutex; the flows that need
//! the manager by value (rmcp's `OAuthState`) take it out and put it back.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use oauth2::ClientSecret;
use rmcp::transport::auth::enterprise::{
    EmaAccessToken, EmaAuthorizationServer, EmaClientAuthentication, EmaExchangeRequest,
};
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, AuthorizationRequest,
    ClientCredentialsConfig, CredentialStore as _, InMemoryCredentialStore, OAuthHttpClient,
    OAuthState, OAuthTokenResponse, StoredCredentials, WWWAuthenticateParams,
    default_oauth_http_client,
};
use tokio::sync::MutexGuard;

use super::oauth;
use super::session::{OAuthSession, SessionError};

/// What an [`OAuthSession`] signs in with (feature `agent`). `Debug` shows no secret.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// The authorization code flow with PKCE, approved by the session's
    /// [`Approval`](super::Approval). The client is the pre-registered `client_id` when
    /// set (with its secret, for a confidential client); otherwise its Client ID Metadata
    /// Document (CIMD) when the session names one and the authorization server supports
    /// it, else one registered dynamically (RFC 7591), as rmcp decides.
    AuthorizationCode {
        /// A pre-registered client's id.
        client_id: Option<String>,
        /// A pre-registered confidential client's secret.
        client_secret: Option<String>,
    },
    /// The client credentials grant (SEP-1046) with rmcp's configuration: a client secret
    /// (`client_secret_basic` or `client_secret_post`, as the server supports) or a
    /// `private_key_jwt` assertion (RFC 7523). The first grant asks for its scopes, or when
    /// it names none for those rmcp selects (the challenge's, else the protected
    /// resource's `scopes_supported`); a step-up for the scopes held plus those the
    /// challenge names. Its resource is always the session's URL.
    ClientCredentials(ClientCredentialsConfig),
    /// The enterprise-managed flow (SEP-990): the identity provider's ID token exchanged
    /// there for an ID-JAG for this server, redeemed at the server's authorization server
    /// (found by rmcp's discovery) for the access token.
    IdJag {
        /// The client's id at the MCP server's authorization server.
        client_id: String,
        /// The client's secret there.
        client_secret: String,
        /// The client's id at the identity provider (a public client there).
        idp_client_id: String,
        /// The user's ID token from the identity provider.
        idp_id_token: String,
        /// The identity provider's issuer.
        idp_issuer: String,
        /// The identity provider's token endpoint.
        idp_token_endpoint: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        match self {
            Credentials::AuthorizationCode {
                client_id,
                client_secret,
            } => f
                .debug_struct("AuthorizationCode")
                .field("client_id", client_id)
                .field("client_secret", &redacted(client_secret))
                .finish(),
            // rmcp's configuration redacts the secret and the key.
            Credentials::ClientCredentials(config) => {
                f.debug_tuple("ClientCredentials").field(config).finish()
            }
            Credentials::IdJag {
                client_id,
                idp_client_id,
                idp_issuer,
                idp_token_endpoint,
                ..
            } => f
                .debug_struct("IdJag")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("idp_client_id", idp_client_id)
                .field("idp_id_token", &"<redacted>")
                .field("idp_issuer", idp_issuer)
                .field("idp_token_endpoint", idp_token_endpoint)
                .finish(),
        }
    }
}

impl Credentials {
    /// The kind, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Credentials::AuthorizationCode { .. } => "authorization code",
            Credentials::ClientCredentials(_) => "client credentials",
            Credentials::IdJag { .. } => "ID-JAG",
        }
    }
}

/// Answers a 401 `challenge` with the session's credentials.
pub(super) async fn authorize(session: &OAuthSession, challenge: &str) -> Result<(), SessionError> {
    match &session.settings.credentials {
        Credentials::AuthorizationCode {
            client_id,
            client_secret,
        } => {
            let mut request = AuthorizationRequest::new(session.settings.redirect_uri.as_str())
                .with_challenge(challenge)
                .with_initial_scope_selection()
                .with_client_name(session.settings.client_name.as_str());
            if let Some(url) = &session.settings.client_metadata_url {
                request = request.with_client_metadata_url(url.as_str());
            }
            if let Some(client_id) = client_id {
                request = request.with_preregistered_client(client_id.as_str());
            }
            if let Some(client_secret) = client_secret {
                request = request.with_client_secret(client_secret.as_str());
            }
            let mut slot = session.http.auth_manager.lock().await;
            let state =
                OAuthState::Unauthorized(take_manager(&mut slot, &session.settings.url).await?);
            with_state(&mut slot, state, async |state| {
                // Discovery stops here, before any authorization request, when the
                // protected resource metadata names another resource.
                state
                    .start_authorization(request)
                    .await
                    .map_err(SessionError::auth("start the authorization"))?;
                let authorization_url = state
                    .get_authorization_url()
                    .await
                    .map_err(SessionError::auth("the authorization URL"))?;
                approve_and_exchange(session, state, &authorization_url).await
            })
            .await
        }
        Credentials::ClientCredentials(config) => {
            let mut manager = session.http.auth_manager.lock().await;
            discover(&mut manager, challenge).await?;
            let selected = match own_scopes(config) {
                [] => Some(initial_scopes(&manager).await),
                _ => None,
            };
            let config = for_resource(config, selected, &session.settings.url)?;
            manager
                .validate_client_credentials_metadata(&config)
                .map_err(SessionError::auth(
                    "the authorization server's client authentication",
                ))?;
            manager
                .configure_client_credentials(&config)
                .map_err(SessionError::auth("configure the client"))?;
            drop(manager);
            grant(session, config).await
        }
        Credentials::IdJag { .. } => id_jag(session, challenge).await,
    }
}

/// Answers a 403 `insufficient_scope`: asks for the scopes the token holds plus those the
/// challenge names (rmcp's scope upgrade for the authorization code flow, a new grant for
/// client credentials). Refuses when the token already holds every scope named.
pub(super) async fn step_up(
    session: &OAuthSession,
    challenge: &WWWAuthenticateParams,
) -> Result<(), SessionError> {
    let required: Vec<String> = challenge
        .scope
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if required.is_empty() {
        return Err(SessionError::NoScopeNamed);
    }
    let mut slot = session.http.auth_manager.lock().await;
    let held = slot.get_current_scopes().await;
    if required.iter().all(|scope| held.contains(scope)) {
        return Err(SessionError::ScopesAlreadyHeld { required, held });
    }
    match &session.settings.credentials {
        Credentials::AuthorizationCode { .. } => {
            let state =
                OAuthState::Authorized(take_manager(&mut slot, &session.settings.url).await?);
            with_state(&mut slot, state, async |state| {
                let authorization_url = state
                    .request_scope_upgrade(&required.join(" "), &session.settings.redirect_uri)
                    .await
                    .map_err(SessionError::auth("request the scope upgrade"))?;
                approve_and_exchange(session, state, &authorization_url).await
            })
            .await
        }
        Credentials::ClientCredentials(config) => {
            let mut scopes = held;
            for scope in required {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            let config = for_resource(config, Some(scopes), &session.settings.url)?;
            drop(slot);
            grant(session, config).await
        }
        other => Err(SessionError::StepUpUnsupported {
            credentials: other.kind(),
            reason: "a wider token needs a new ID token from the identity provider",
        }),
    }
}

/// rmcp's client credentials grant with `config`, the token kept by the session's manager.
async fn grant(
    session: &OAuthSession,
    config: ClientCredentialsConfig,
) -> Result<(), SessionError> {
    // rmcp's exchange is not `Send`, and the session's futures must be.
    let manager = Arc::clone(&session.http.auth_manager);
    oauth::off_task(move || async move {
        let manager = manager.lock().await;
        manager.exchange_client_credentials(&config).await.map(drop)
    })
    .await
    .unwrap_or_else(|e| {
        Err(AuthError::InternalError(format!(
            "the token request task failed: {e}"
        )))
    })
    .map_err(SessionError::auth("the client credentials grant"))
}

/// Gets the session's approval of `authorization_url` and exchanges the code.
async fn approve_and_exchange(
    session: &OAuthSession,
    state: &mut OAuthState,
    authorization_url: &str,
) -> Result<(), SessionError> {
    let callback = session
        .settings
        .approval
        .approve(authorization_url, &session.settings.redirect_uri)
        .await
        .map_err(SessionError::Approval)?;
    state
        .handle_callback_url(&callback)
        .await
        .map_err(SessionError::auth("exchange the authorization code"))
}

/// Runs `flow` on `state`, then puts the manager `state` holds back in `slot`, whatever
/// state the flow stopped in.
async fn with_state(
    slot: &mut MutexGuard<'_, AuthorizationManager>,
    mut state: OAuthState,
    flow: impl AsyncFnOnce(&mut OAuthState) -> Result<(), SessionError>,
) -> Result<(), SessionError> {
    let result = flow(&mut state).await;
    let manager = match state {
        OAuthState::Unauthorized(manager) | OAuthState::Authorized(manager) => Some(manager),
        OAuthState::Session(session) => Some(session.auth_manager),
        _ => None,
    };
    if let Some(manager) = manager {
        **slot = manager;
    }
    result
}

/// Takes the manager out of the `AuthClient`, leaving a fresh one for `url` in its place.
async fn take_manager(
    slot: &mut AuthorizationManager,
    url: &str,
) -> Result<AuthorizationManager, SessionError> {
    let placeholder = AuthorizationManager::new(url)
        .await
        .map_err(SessionError::auth("create the authorization manager"))?;
    Ok(std::mem::replace(slot, placeholder))
}

/// rmcp's discovery seeded by the server's challenge: protected resource metadata (whose
/// `resource` must name this server), then the authorization server's metadata. Leaves
/// the metadata set on the manager.
async fn discover(
    manager: &mut AuthorizationManager,
    challenge: &str,
) -> Result<AuthorizationMetadata, SessionError> {
    let resolution = manager
        .resolve_metadata_from_challenge(Some(challenge))
        .await
        .map_err(SessionError::auth("discover the authorization server"))?;
    manager.set_metadata(resolution.metadata.clone());
    Ok(resolution.metadata)
}

/// The scopes rmcp selects for a first grant (the challenge's, else the protected
/// resource's `scopes_supported`), without `offline_access`: these grants issue no
/// refresh token.
async fn initial_scopes(manager: &AuthorizationManager) -> Vec<String> {
    manager
        .select_initial_scopes(&[])
        .await
        .into_iter()
        .filter(|scope| scope != "offline_access")
        .collect()
}

/// The scopes the configuration names.
fn own_scopes(config: &ClientCredentialsConfig) -> &[String] {
    match config {
        ClientCredentialsConfig::ClientSecret { scopes, .. }
        | ClientCredentialsConfig::PrivateKeyJwt { scopes, .. } => scopes,
        _ => &[],
    }
}

/// The configuration for `resource`, asking for `scopes` (rmcp's selection, a step-up's
/// wider set) when given, else for its own.
fn for_resource(
    config: &ClientCredentialsConfig,
    scopes: Option<Vec<String>>,
    resource: &str,
) -> Result<ClientCredentialsConfig, SessionError> {
    oauth::for_resource(config, scopes, resource).ok_or(SessionError::UnknownClientAuthentication)
}

/// The enterprise-managed flow (SEP-990) with rmcp's `enterprise` module: the resource's
/// authorization server comes from rmcp's discovery, the identity provider from the
/// credentials; the ID token becomes an ID-JAG for this resource, which becomes the
/// access token, installed in the manager's credential store.
async fn id_jag(session: &OAuthSession, challenge: &str) -> Result<(), SessionError> {
    let Credentials::IdJag {
        client_id,
        client_secret,
        idp_client_id,
        idp_id_token,
        idp_issuer,
        idp_token_endpoint,
    } = &session.settings.credentials
    else {
        unreachable!("id_jag is called for ID-JAG credentials only");
    };
    let mut manager = session.http.auth_manager.lock().await;
    let metadata = discover(&mut manager, challenge).await?;
    let issuer = metadata.issuer.clone().ok_or(SessionError::NoIssuer)?;
    let secret = ClientSecret::new(client_secret.clone());
    let supported = |method: &str| {
        metadata
            .additional_fields
            .get("token_endpoint_auth_methods_supported")
            .and_then(|methods| methods.as_array())
            .is_none_or(|methods| methods.iter().any(|m| m == method))
    };
    let authentication = if supported("client_secret_basic") {
        EmaClientAuthentication::ClientSecretBasic(secret)
    } else {
        EmaClientAuthentication::ClientSecretPost(secret)
    };
    let resource_as =
        EmaAuthorizationServer::new(issuer, metadata.token_endpoint.clone(), client_id.clone())
            .with_client_authentication(authentication);
    let idp = EmaAuthorizationServer::new(
        idp_issuer.clone(),
        idp_token_endpoint.clone(),
        idp_client_id.clone(),
    );
    let scopes = initial_scopes(&manager).await;
    let oauth_http = default_oauth_http_client().map_err(SessionError::auth("the HTTP client"))?;
    let oauth_http: &dyn OAuthHttpClient = &oauth_http;
    let token = EmaExchangeRequest::new_with_id_token(
        idp,
        resource_as,
        &session.settings.url,
        idp_id_token,
    )
    .with_scopes(scopes)
    .exchange(oauth_http, oauth_http)
    .await
    .map_err(SessionError::IdJag)?;
    install_token(&mut manager, client_id, token).await
}

/// Puts an access token obtained outside rmcp's manager into a credential store the
/// manager reads, so that rmcp's `AuthClient` presents it.
async fn install_token(
    manager: &mut AuthorizationManager,
    client_id: &str,
    token: EmaAccessToken,
) -> Result<(), SessionError> {
    let mut scopes: Vec<String> = token.scopes.into_iter().collect();
    scopes.sort();
    let mut response = serde_json::json!({
        "access_token": token.access_token.secret(),
        "token_type": "Bearer",
    });
    if let Some(expires_in) = token.expires_in {
        response["expires_in"] = expires_in.as_secs().into();
    }
    if !scopes.is_empty() {
        response["scope"] = scopes.join(" ").into();
    }
    let response: OAuthTokenResponse = serde_json::from_value(response).map_err(|e| {
        SessionError::auth("read the access token response")(AuthError::TokenExchangeFailed(
            e.to_string(),
        ))
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let store = InMemoryCredentialStore::new();
    store
        .save(StoredCredentials::new(
            client_id.to_owned(),
            Some(response),
            scopes,
            Some(now),
        ))
        .await
        .map_err(SessionError::auth("store the access token"))?;
    manager.set_credential_store(store);
    manager
        .configure_client_id(client_id)
        .map_err(SessionError::auth("configure the client"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let all = [
            Credentials::AuthorizationCode {
                client_id: Some("agent".into()),
                client_secret: Some("s3cret-one".into()),
            },
            Credentials::ClientCredentials(ClientCredentialsConfig::ClientSecret {
                client_id: "agent".into(),
                client_secret: "s3cret-two".into(),
                scopes: vec![],
                resource: None,
            }),
            Credentials::IdJag {
                client_id: "agent".into(),
                client_secret: "s3cret-three".into(),
                idp_client_id: "idp-agent".into(),
                idp_id_token: "s3cret-id-token".into(),
                idp_issuer: "https://idp.example".into(),
                idp_token_endpoint: "https://idp.example/token".into(),
            },
        ];
        for credentials in all {
            let text = format!("{credentials:?}");
            assert!(text.contains("agent") && !text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn client_credentials_ask_for_the_session_resource_and_the_scopes_needed() {
        let config = |scopes: &[&str]| ClientCredentialsConfig::ClientSecret {
            client_id: "agent".into(),
            client_secret: "secret".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            resource: Some("https://other.example/mcp".into()),
        };
        let scopes_of = |config: ClientCredentialsConfig| match config {
            ClientCredentialsConfig::ClientSecret {
                scopes, resource, ..
            } => {
                assert_eq!(resource.as_deref(), Some("https://notes.example/mcp"));
                scopes
            }
            _ => unreachable!(),
        };
        let url = "https://notes.example/mcp";
        let own = for_resource(&config(&["notes:read", "notes:write"]), None, url);
        assert_eq!(scopes_of(own.unwrap()), ["notes:read", "notes:write"]);
        let selected = Some(vec!["notes:read".to_owned()]);
        let none = for_resource(&config(&[]), selected, url);
        assert_eq!(scopes_of(none.unwrap()), ["notes:read"]);
        // A step-up beyond its own scopes asks for the wider set.
        let wider = Some(vec!["notes:read".to_owned(), "notes:admin".to_owned()]);
        let up = for_resource(&config(&["notes:read"]), wider, url);
        assert_eq!(scopes_of(up.unwrap()), ["notes:read", "notes:admin"]);
    }
}
