//! The glue between rmcp's client auth (`rmcp::transport::auth`) and a headless agent:
//! what rmcp leaves to its caller, one function each, so that it can move to the agent
//! side of `rmcp-authz` as it is.
//!
//! - [`headless_authorize`]: the authorization-code flow with PKCE without a browser.
//!   rmcp discovers, registers (pre-registered client, CIMD or dynamic registration),
//!   builds the authorization URL and exchanges the code; this function only takes the
//!   authorization server's redirect (an automatic approval) from the `Location` header
//!   ([`follow_authorization_url`]) and hands it to rmcp's callback handling.
//! - [`step_up`]: a 403 `insufficient_scope` answered with rmcp's scope upgrade, but
//!   only when the challenge names a scope the token lacks.
//! - [`client_credentials`]: rmcp's client credentials grant (client secret or
//!   `private_key_jwt`), discovered from the server's challenge rather than by probing.
//! - [`id_jag`]: rmcp's enterprise-managed exchange (ID token to ID-JAG at the identity
//!   provider, ID-JAG to access token at the resource's authorization server), with the
//!   authorization server found by rmcp's discovery and the token handed to rmcp's
//!   credential store ([`install_token`]).
//!
//! rmcp's `AuthClient` holds its `AuthorizationManager` behind a mutex; the flows that
//! need the manager by value (rmcp's `OAuthState`) take it out and put it back
//! ([`take_manager`], [`restore_manager`]).

use std::time::{SystemTime, UNIX_EPOCH};

use oauth2::ClientSecret;
use reqwest::Url;
use rmcp::transport::auth::enterprise::{
    EmaAccessToken, EmaAuthorizationServer, EmaClientAuthentication, EmaExchangeRequest,
};
use rmcp::transport::auth::{
    AuthClient, AuthError, AuthorizationManager, AuthorizationMetadata, AuthorizationRequest,
    ClientCredentialsConfig, InMemoryCredentialStore, JwtSigningAlgorithm, OAuthState,
    OAuthTokenResponse, StoredCredentials, WWWAuthenticateParams, default_oauth_http_client,
};
use rmcp::transport::auth::{CredentialStore as _, OAuthHttpClient};

/// Where the authorization server sends the code. Nothing listens there: the client reads
/// the redirect from the authorization endpoint's answer and never follows it.
const REDIRECT_URI: &str = "http://127.0.0.1/conformance-client/callback";

/// The client's name in dynamic client registration.
const CLIENT_NAME: &str = "rmcp-authz conformance client";

/// The client's Client ID Metadata Document (SEP-991), used as its `client_id` where the
/// authorization server supports CIMD. The conformance suite checks for this URL.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";

/// The credentials a client is configured with (no `Debug`: it holds secrets).
pub(crate) enum Credentials {
    /// The authorization-code flow with PKCE: a pre-registered client when `client_id` is
    /// set, otherwise CIMD or dynamic registration.
    AuthorizationCode {
        client_id: Option<String>,
        client_secret: Option<String>,
    },
    /// The client credentials grant with a client secret (`client_secret_basic` or
    /// `client_secret_post`, as the authorization server supports).
    ClientSecret {
        client_id: String,
        client_secret: String,
    },
    /// The client credentials grant with a `private_key_jwt` assertion (RFC 7523).
    PrivateKeyJwt {
        client_id: String,
        private_key_pem: String,
        algorithm: String,
    },
    /// The enterprise-managed flow (SEP-990): the identity provider's ID token exchanged
    /// for an ID-JAG, redeemed at the resource's authorization server.
    IdJag {
        client_id: String,
        client_secret: String,
        idp_client_id: String,
        idp_id_token: String,
        idp_issuer: String,
        idp_token_endpoint: String,
    },
}

/// Why the client stopped, with the chain of causes; never holds a token or secret.
#[derive(Debug)]
pub(crate) struct Failure(String);

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure(message.into())
    }

    /// Maps an error of rmcp's auth to a failure of `step`.
    pub(crate) fn auth(step: &'static str) -> impl FnOnce(AuthError) -> Failure {
        move |error| Failure::chain(step, &error)
    }

    fn chain(step: &str, error: &dyn std::error::Error) -> Failure {
        let mut message = format!("{step}: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Failure(message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Answers a 401 challenge with the configured credentials.
pub(crate) async fn authorize(
    http: &AuthClient<reqwest::Client>,
    url: &str,
    credentials: &Credentials,
    challenge: &str,
) -> Result<(), Failure> {
    match credentials {
        Credentials::AuthorizationCode {
            client_id,
            client_secret,
        } => {
            headless_authorize(
                http,
                url,
                challenge,
                client_id.as_deref(),
                client_secret.as_deref(),
            )
            .await
        }
        Credentials::ClientSecret { .. } | Credentials::PrivateKeyJwt { .. } => {
            client_credentials(http, url, credentials, challenge).await
        }
        Credentials::IdJag { .. } => id_jag(http, url, credentials, challenge).await,
    }
}

/// Takes the manager out of the `AuthClient`, leaving a fresh one for `url` in its place.
async fn take_manager(
    slot: &mut AuthorizationManager,
    url: &str,
) -> Result<AuthorizationManager, Failure> {
    let placeholder = AuthorizationManager::new(url)
        .await
        .map_err(Failure::auth("create the authorization manager"))?;
    Ok(std::mem::replace(slot, placeholder))
}

/// The manager held by `state`, whatever state a flow stopped in.
fn restore_manager(state: OAuthState) -> Option<AuthorizationManager> {
    match state {
        OAuthState::Unauthorized(manager) | OAuthState::Authorized(manager) => Some(manager),
        OAuthState::Session(session) => Some(session.auth_manager),
        _ => None,
    }
}

/// The authorization-code flow with PKCE, headless: rmcp discovers the authorization
/// server from `challenge`, selects the client registration (pre-registered, CIMD,
/// dynamic) and the scopes (the challenge's, else the protected resource's
/// `scopes_supported`, else none), and exchanges the code; the approval is the
/// authorization server's redirect, read by [`follow_authorization_url`].
pub(crate) async fn headless_authorize(
    http: &AuthClient<reqwest::Client>,
    url: &str,
    challenge: &str,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<(), Failure> {
    let mut request = AuthorizationRequest::new(REDIRECT_URI)
        .with_challenge(challenge)
        .with_initial_scope_selection()
        .with_client_name(CLIENT_NAME)
        .with_client_metadata_url(CLIENT_METADATA_URL);
    if let Some(client_id) = client_id {
        request = request.with_preregistered_client(client_id);
    }
    if let Some(client_secret) = client_secret {
        request = request.with_client_secret(client_secret);
    }

    let mut slot = http.auth_manager.lock().await;
    let mut state = OAuthState::Unauthorized(take_manager(&mut slot, url).await?);
    let result = async {
        // Discovery stops here, before any authorization request, when the protected
        // resource metadata names another resource (`ResourceMismatch`).
        state
            .start_authorization(request)
            .await
            .map_err(Failure::auth("start the authorization"))?;
        let authorization_url = state
            .get_authorization_url()
            .await
            .map_err(Failure::auth("the authorization URL"))?;
        let callback = follow_authorization_url(&authorization_url).await?;
        state
            .handle_callback_url(&callback)
            .await
            .map_err(Failure::auth("exchange the authorization code"))
    }
    .await;
    if let Some(manager) = restore_manager(state) {
        *slot = manager;
    }
    result
}

/// Requests the authorization URL the way a browser would, without following the
/// redirect, and returns the redirect: the callback URL with `code` and `state`. An
/// authorization server that answers with a page instead wants a person, which a
/// headless agent does not have.
pub(crate) async fn follow_authorization_url(authorization_url: &str) -> Result<String, Failure> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure::chain("build the HTTP client", &e))?;
    let response = client
        .get(authorization_url)
        .send()
        .await
        .map_err(|e| Failure::chain("request the authorization URL", &e))?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .filter(|_| status.is_redirection());
    let Some(location) = location else {
        return Err(Failure::new(format!(
            "the authorization endpoint answered {status} without a redirect: it wants a \
             person to approve"
        )));
    };
    let callback = Url::parse(authorization_url)
        .and_then(|base| base.join(location))
        .map_err(|e| Failure::chain("read the redirect", &e))?;
    let expected = Url::parse(REDIRECT_URI).expect("the redirect URI is a URL");
    if (callback.origin(), callback.path()) != (expected.origin(), expected.path()) {
        return Err(Failure::new(format!(
            "the authorization endpoint redirected to {}, not to the redirect URI",
            callback.origin().ascii_serialization()
        )));
    }
    if let Some((_, error)) = callback.query_pairs().find(|(key, _)| key == "error") {
        return Err(Failure::new(format!(
            "the authorization server refused: {error}"
        )));
    }
    Ok(callback.into())
}

/// Answers a 403 `insufficient_scope`: asks for the scopes the token holds plus those the
/// challenge names (rmcp's scope upgrade for the authorization-code flow, a new grant for
/// client credentials). Refuses when the token already holds every scope the challenge
/// names: authorizing again would get the same answer.
pub(crate) async fn step_up(
    http: &AuthClient<reqwest::Client>,
    url: &str,
    credentials: &Credentials,
    challenge: &WWWAuthenticateParams,
) -> Result<(), Failure> {
    let required: Vec<String> = challenge
        .scope
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if required.is_empty() {
        return Err(Failure::new(
            "the server refuses for insufficient scope but names no scope to ask for",
        ));
    }
    let mut slot = http.auth_manager.lock().await;
    let current = slot.get_current_scopes().await;
    if required.iter().all(|scope| current.contains(scope)) {
        return Err(Failure::new(format!(
            "the server asks for scopes {required:?}, which the token already holds \
             ({current:?}): a new authorization would not change its answer"
        )));
    }
    match credentials {
        Credentials::AuthorizationCode { .. } => {
            let mut state = OAuthState::Authorized(take_manager(&mut slot, url).await?);
            let result = async {
                let authorization_url = state
                    .request_scope_upgrade(&required.join(" "), REDIRECT_URI)
                    .await
                    .map_err(Failure::auth("request the scope upgrade"))?;
                let callback = follow_authorization_url(&authorization_url).await?;
                state
                    .handle_callback_url(&callback)
                    .await
                    .map_err(Failure::auth("exchange the authorization code"))
            }
            .await;
            if let Some(manager) = restore_manager(state) {
                *slot = manager;
            }
            result
        }
        Credentials::ClientSecret { .. } | Credentials::PrivateKeyJwt { .. } => {
            let mut scopes = current;
            for scope in required {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            let config = client_credentials_config(credentials, url, scopes)?;
            slot.exchange_client_credentials(&config)
                .await
                .map(drop)
                .map_err(Failure::auth("the client credentials grant"))
        }
        Credentials::IdJag { .. } => Err(Failure::new(
            "a step-up of an ID-JAG token needs a new ID token from the identity provider",
        )),
    }
}

/// rmcp's `ClientCredentialsConfig` for the configured credentials, for `resource`.
fn client_credentials_config(
    credentials: &Credentials,
    resource: &str,
    scopes: Vec<String>,
) -> Result<ClientCredentialsConfig, Failure> {
    match credentials {
        Credentials::ClientSecret {
            client_id,
            client_secret,
        } => Ok(ClientCredentialsConfig::ClientSecret {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            scopes,
            resource: Some(resource.to_owned()),
        }),
        Credentials::PrivateKeyJwt {
            client_id,
            private_key_pem,
            algorithm,
        } => Ok(ClientCredentialsConfig::PrivateKeyJwt {
            client_id: client_id.clone(),
            signing_key: private_key_pem.clone().into_bytes(),
            signing_algorithm: signing_algorithm(algorithm)?,
            token_endpoint_audience: None,
            scopes,
            resource: Some(resource.to_owned()),
        }),
        _ => Err(Failure::new("not client credentials")),
    }
}

fn signing_algorithm(name: &str) -> Result<JwtSigningAlgorithm, Failure> {
    Ok(match name {
        "RS256" => JwtSigningAlgorithm::RS256,
        "RS384" => JwtSigningAlgorithm::RS384,
        "RS512" => JwtSigningAlgorithm::RS512,
        "ES256" => JwtSigningAlgorithm::ES256,
        "ES384" => JwtSigningAlgorithm::ES384,
        other => {
            return Err(Failure::new(format!(
                "unsupported signing algorithm {other}"
            )));
        }
    })
}

/// rmcp's discovery seeded by the server's challenge: protected resource metadata (whose
/// `resource` must name this server), then the authorization server's metadata. Leaves
/// the metadata set on the manager.
async fn discover(
    manager: &mut AuthorizationManager,
    challenge: &str,
) -> Result<AuthorizationMetadata, Failure> {
    let resolution = manager
        .resolve_metadata_from_challenge(Some(challenge))
        .await
        .map_err(Failure::auth("discover the authorization server"))?;
    manager.set_metadata(resolution.metadata.clone());
    Ok(resolution.metadata)
}

/// The client credentials grant (SEP-1046), with the scopes rmcp selects from the
/// challenge and the protected resource metadata (no `offline_access`: the grant issues
/// no refresh token).
pub(crate) async fn client_credentials(
    http: &AuthClient<reqwest::Client>,
    url: &str,
    credentials: &Credentials,
    challenge: &str,
) -> Result<(), Failure> {
    let mut manager = http.auth_manager.lock().await;
    discover(&mut manager, challenge).await?;
    let scopes: Vec<String> = manager
        .select_initial_scopes(&[])
        .await
        .into_iter()
        .filter(|scope| scope != "offline_access")
        .collect();
    let config = client_credentials_config(credentials, url, scopes)?;
    manager
        .validate_client_credentials_metadata(&config)
        .map_err(Failure::auth(
            "the authorization server's client authentication",
        ))?;
    manager
        .configure_client_credentials(&config)
        .map_err(Failure::auth("configure the client"))?;
    manager
        .exchange_client_credentials(&config)
        .await
        .map(drop)
        .map_err(Failure::auth("the client credentials grant"))
}

/// The enterprise-managed flow (SEP-990) with rmcp's `enterprise` module: the resource's
/// authorization server comes from rmcp's discovery, the identity provider from the
/// configuration; the ID token becomes an ID-JAG for this resource, which becomes the
/// access token, installed in the manager's credential store.
pub(crate) async fn id_jag(
    http: &AuthClient<reqwest::Client>,
    url: &str,
    credentials: &Credentials,
    challenge: &str,
) -> Result<(), Failure> {
    let Credentials::IdJag {
        client_id,
        client_secret,
        idp_client_id,
        idp_id_token,
        idp_issuer,
        idp_token_endpoint,
    } = credentials
    else {
        return Err(Failure::new("not the ID-JAG flow"));
    };
    let mut manager = http.auth_manager.lock().await;
    let metadata = discover(&mut manager, challenge).await?;
    let issuer = metadata.issuer.clone().ok_or_else(|| {
        Failure::new("the authorization server's metadata names no issuer, the ID-JAG audience")
    })?;
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
    // A public client at the identity provider: the configuration holds no secret for it.
    let idp = EmaAuthorizationServer::new(
        idp_issuer.clone(),
        idp_token_endpoint.clone(),
        idp_client_id.clone(),
    );
    let scopes: Vec<String> = manager
        .select_initial_scopes(&[])
        .await
        .into_iter()
        .filter(|scope| scope != "offline_access")
        .collect();
    let oauth_http = default_oauth_http_client().map_err(Failure::auth("the HTTP client"))?;
    let oauth_http: &dyn OAuthHttpClient = &oauth_http;
    let token = EmaExchangeRequest::new_with_id_token(idp, resource_as, url, idp_id_token)
        .with_scopes(scopes)
        .exchange(oauth_http, oauth_http)
        .await
        .map_err(|e| Failure::chain("the ID-JAG exchange", &e))?;
    install_token(&mut manager, client_id, token).await
}

/// Puts an access token obtained outside rmcp's manager into a credential store the
/// manager reads, so that rmcp's `AuthClient` presents it.
pub(crate) async fn install_token(
    manager: &mut AuthorizationManager,
    client_id: &str,
    token: EmaAccessToken,
) -> Result<(), Failure> {
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
    let response: OAuthTokenResponse = serde_json::from_value(response)
        .map_err(|e| Failure::chain("read the access token response", &e))?;
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
        .map_err(Failure::auth("store the access token"))?;
    manager.set_credential_store(store);
    manager
        .configure_client_id(client_id)
        .map_err(Failure::auth("configure the client"))
}
