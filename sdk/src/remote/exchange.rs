//! Token exchange on the client side (RFC 8693): [`TokenExchangeClient`] trades the token
//! a tool was called with for a token meant for a downstream service.
//!
//! An MCP server must never pass the token it received on to another service: the MCP
//! authorization specification forbids token passthrough, since that token's audience is
//! this server, and forwarding it would let the downstream service act on it elsewhere
//! (and hide who is really calling). A tool that calls another MCP server or API on the
//! user's behalf exchanges the incoming token instead, at its authorization server's token
//! endpoint, for a token whose audience is the downstream service, narrowed to the scopes
//! the call needs, and, with an actor token, naming this server in the delegation chain.
//!
//! This module owns the client and its errors. Requests follow the same defensive rules as
//! every other fetch of the crate (HTTPS only, loopback HTTP on opt-in, no redirects, a
//! time limit for the whole exchange, a size limit on the answer), but unlike a document
//! fetch, an error answer is read too, so a refusal comes back with its OAuth `error` code
//! (`invalid_grant`, `invalid_scope`, ...) and description.
//!
//! With feature `dpop`, [`TokenExchangeClient::dpop`] asks for DPoP-bound tokens (RFC
//! 9449 section 5): each request carries a proof of the agent's key, and a server that
//! demands a nonce (`use_dpop_nonce`, section 8) is answered once more with it.

use std::fmt;
#[cfg(feature = "dpop")]
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use super::fetch::{BearerResponse, FetchError, FetchOptions, Fetcher, FormAnswer};
use crate::error::excerpt;
use crate::oauth::{ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, SubjectToken, TOKEN_EXCHANGE_GRANT_TYPE};
#[cfg(feature = "dpop")]
use crate::token::dpop::{DpopKey, DpopKeyError};

/// Which request parameter names the downstream service (RFC 8693 section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TargetParameter {
    /// `resource`: the target's URI (RFC 8707), as MCP servers are named. The default.
    #[default]
    Resource,
    /// `audience`: a logical name the authorization server knows the target by (some
    /// servers, Keycloak for one, expect this).
    Audience,
}

/// Exchanges tokens at an authorization server's token endpoint (RFC 8693; feature
/// `jwks`).
///
/// Inside a tool, exchange the caller's token for one meant for the downstream service,
/// rather than forwarding it: the MCP specification forbids token passthrough, and the
/// exchanged token is limited to that service and to the scopes asked for. Over
/// Streamable HTTP the caller's token is the [`SubjectToken`] the HTTP layer keeps in the
/// extensions of the `http::request::Parts` rmcp hands the tool (a
/// [`Principal`](crate::Principal) never holds the token, and the `Authorization` header
/// is gone); [`exchange_subject`](TokenExchangeClient::exchange_subject) exchanges it. With
/// feature `agent`, `agent::OnBehalfOf` caches the exchanged tokens.
///
/// ```no_run
/// use rmcp_authz::SubjectToken;
/// use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
/// # async fn tool(parts: http::request::Parts, own_token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let exchange = TokenExchangeClient::new("https://auth.example/token", FetchOptions::default())?
///     .client_credentials("notes-mcp", "client-secret");
/// let incoming = SubjectToken::of(&parts.extensions).ok_or("no caller token")?;
/// let downstream = exchange
///     .exchange_subject(incoming, Some(own_token), "https://calendar.example/mcp", &["calendar:read"])
///     .await?;
/// // Call https://calendar.example/mcp with `Bearer {downstream.access_token}`.
/// # Ok(())
/// # }
/// ```
///
/// Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct TokenExchangeClient {
    endpoint: String,
    fetcher: Fetcher,
    credentials: Option<(String, String)>,
    target: TargetParameter,
    #[cfg(feature = "dpop")]
    dpop: Option<Arc<Dpop>>,
}

/// The key a client proves, and the latest nonce the server sent (shared by clones).
#[cfg(feature = "dpop")]
#[derive(Debug)]
struct Dpop {
    key: Arc<DpopKey>,
    nonce: Mutex<Option<String>>,
}

#[cfg(feature = "dpop")]
impl Dpop {
    fn nonce(&self) -> Option<String> {
        self.nonce
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps the server's `DPoP-Nonce`, if the answer has one; whether it had.
    fn remember(&self, answer: &FormAnswer) -> bool {
        let Some(nonce) = answer.header("dpop-nonce").filter(|n| !n.is_empty()) else {
            return false;
        };
        *self.nonce.lock().unwrap_or_else(PoisonError::into_inner) = Some(nonce.to_owned());
        true
    }
}

impl fmt::Debug for TokenExchangeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the client secret.
        let mut debug = f.debug_struct("TokenExchangeClient");
        let debug = debug
            .field("endpoint", &self.endpoint)
            .field(
                "client_id",
                &self.credentials.as_ref().map(|(id, _)| id.as_str()),
            )
            .field("target", &self.target);
        #[cfg(feature = "dpop")]
        let debug = debug.field("dpop", &self.dpop.as_ref().map(|d| d.key.thumbprint()));
        debug
            .field("options", self.fetcher.options())
            .finish_non_exhaustive()
    }
}

/// A token obtained by exchange.
///
/// `Debug` shows the token's length, never the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangedToken {
    /// The new access token, for the downstream service only.
    pub access_token: String,
    /// How long it lives, when the server says (`expires_in`).
    pub expires_in: Option<Duration>,
    /// Its scopes: the answer's `scope`; when the answer has none, the scopes asked for
    /// (RFC 8693 section 2.2.1: `scope` may be left out when it equals the request);
    /// `None` when neither says.
    pub scope: Option<Vec<String>>,
    /// The server answered `token_type: DPoP`: the token is bound to the client's DPoP
    /// key (RFC 9449 section 5) and is presented with a proof of it. `false` for a
    /// `Bearer` token, even when a proof was sent (a server that does not support DPoP
    /// ignores the proof).
    pub dpop_bound: bool,
}

impl fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangedToken")
            .field(
                "access_token",
                &format_args!("<redacted, {} bytes>", self.access_token.len()),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("dpop_bound", &self.dpop_bound)
            .finish()
    }
}

/// Why a token exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeClientError {
    /// The authorization server refused, with an OAuth error (RFC 6749 section 5.2).
    #[error("token exchange at {endpoint} refused with {error} (HTTP {status}){}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The token endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The OAuth error code: `invalid_grant`, `invalid_scope`, `invalid_target`, ...
        error: String,
        /// The server's `error_description`, if any (shortened).
        description: Option<String>,
    },
    /// The server could not be reached, or answered with something other than JSON (an
    /// HTTP error without an OAuth error body included).
    #[error("token exchange failed: {0}")]
    Fetch(#[from] FetchError),
    /// The server answered 200 with something that is not a usable token response.
    #[error("token exchange at {endpoint}: unusable answer: {reason}")]
    InvalidResponse {
        /// The token endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The call itself was unusable (an empty subject token or audience); nothing was
    /// sent.
    #[error("token exchange not attempted: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The DPoP proof could not be signed; nothing was sent (feature `dpop`).
    #[cfg(feature = "dpop")]
    #[error("token exchange not attempted: {0}")]
    Dpop(#[from] DpopKeyError),
}

impl ExchangeClientError {
    /// The OAuth error code of a refusal (`invalid_grant`, `invalid_scope`, ...).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ExchangeClientError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl TokenExchangeClient {
    /// A client for the token endpoint at `token_endpoint` (from the issuer's metadata,
    /// [`IssuerMetadata::token_endpoint`](super::IssuerMetadata::token_endpoint)), with
    /// `options` limiting each call.
    ///
    /// # Errors
    /// A [`FetchError`] when the URL is invalid or not HTTPS (or loopback HTTP with the
    /// opt-in), or [`FetchError::Client`] when the HTTP client cannot be built.
    pub fn new(
        token_endpoint: impl Into<String>,
        options: FetchOptions,
    ) -> Result<TokenExchangeClient, FetchError> {
        let endpoint = token_endpoint.into();
        let fetcher = Fetcher::new(options)?;
        fetcher.check_url(&endpoint)?;
        Ok(TokenExchangeClient {
            endpoint,
            fetcher,
            credentials: None,
            target: TargetParameter::default(),
            #[cfg(feature = "dpop")]
            dpop: None,
        })
    }

    /// Authenticates to the token endpoint with these client credentials (HTTP Basic,
    /// RFC 6749 section 2.3.1: each form-encoded, then joined). Without them, no client
    /// authentication is sent.
    #[must_use]
    pub fn client_credentials(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((id.into(), secret.into()));
        self
    }

    /// Which parameter names the downstream service (default
    /// [`TargetParameter::Resource`]).
    #[must_use]
    pub fn target_parameter(mut self, target: TargetParameter) -> Self {
        self.target = target;
        self
    }

    /// Asks for tokens bound to `key` (RFC 9449 section 5; feature `dpop`): every
    /// request carries a `DPoP` proof signed with it (`htm` POST, `htu` the token
    /// endpoint, no `ath`), and a server that supports DPoP answers `token_type: DPoP`
    /// with a token whose `cnf.jkt` is the key's thumbprint
    /// ([`ExchangedToken::dpop_bound`]). A server that ignores the proof answers a
    /// `Bearer` token: that is accepted, with `dpop_bound` false.
    ///
    /// When the server refuses with 400 `use_dpop_nonce` and a `DPoP-Nonce` header (RFC
    /// 9449 section 8), the request is sent once more with a new proof carrying that
    /// nonce. The latest nonce the server sent (on any answer) is kept, shared by this
    /// client's clones, and put in every later proof.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
    /// use rmcp_authz::token::dpop::DpopKey;
    /// # async fn run(user_token: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Arc::new(DpopKey::generate()?);
    /// let exchange = TokenExchangeClient::new("https://auth.example/token", FetchOptions::default())?
    ///     .dpop(Arc::clone(&key));
    /// let token = exchange.exchange(user_token, None, "https://notes.example/mcp", &[]).await?;
    /// assert!(token.dpop_bound, "the server ignored the proof");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "dpop")]
    #[must_use]
    pub fn dpop(mut self, key: Arc<DpopKey>) -> Self {
        self.dpop = Some(Arc::new(Dpop {
            key,
            nonce: Mutex::new(None),
        }));
        self
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exchanges the token a request was authorized with ([`SubjectToken`]) as
    /// [`exchange`](TokenExchangeClient::exchange) exchanges a token.
    ///
    /// # Errors
    /// As [`exchange`](TokenExchangeClient::exchange).
    pub async fn exchange_subject(
        &self,
        subject: &SubjectToken,
        actor_token: Option<&str>,
        audience: &str,
        scopes: &[&str],
    ) -> Result<ExchangedToken, ExchangeClientError> {
        self.exchange(subject.token(), actor_token, audience, scopes)
            .await
    }

    /// Exchanges `subject_token` (the caller's access token) for a token meant for
    /// `audience`, with `scopes` (empty: whatever the server grants by default, typically
    /// the subject token's). With `actor_token` (this service's own access token), the
    /// new token names this service as the current actor of the delegation chain.
    ///
    /// # Errors
    /// [`ExchangeClientError::Refused`] with the OAuth error code when the server refuses;
    /// [`ExchangeClientError::Fetch`] when it cannot be reached or answers without an OAuth
    /// error; [`ExchangeClientError::InvalidResponse`] when a 200 answer is not a bearer
    /// (or, with [`dpop`](TokenExchangeClient::dpop), DPoP) access token response;
    /// [`ExchangeClientError::InvalidArgument`] for an empty subject token or audience;
    /// `ExchangeClientError::Dpop` (feature `dpop`) when the proof cannot be signed.
    pub async fn exchange(
        &self,
        subject_token: &str,
        actor_token: Option<&str>,
        audience: &str,
        scopes: &[&str],
    ) -> Result<ExchangedToken, ExchangeClientError> {
        if subject_token.is_empty() {
            return Err(ExchangeClientError::InvalidArgument {
                reason: "the subject token is empty".to_owned(),
            });
        }
        if audience.is_empty() {
            return Err(ExchangeClientError::InvalidArgument {
                reason: "the audience is empty".to_owned(),
            });
        }
        let scope = scopes.join(" ");
        let target = match self.target {
            TargetParameter::Resource => "resource",
            TargetParameter::Audience => "audience",
        };
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT_TYPE),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            (target, audience),
        ];
        if let Some(actor_token) = actor_token.filter(|t| !t.is_empty()) {
            form.push(("actor_token", actor_token));
            form.push(("actor_token_type", ACCESS_TOKEN_TYPE));
        }
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let answer = self.post(&form).await?;
        #[cfg(feature = "dpop")]
        let answer = match &self.dpop {
            Some(dpop) if dpop.remember(&answer) && asks_for_nonce(&answer) => {
                tracing::debug!(endpoint = %self.endpoint, "use_dpop_nonce: sending again with the nonce");
                let again = self.post(&form).await?;
                dpop.remember(&again);
                again
            }
            _ => answer,
        };
        if answer.status != 200 {
            return Err(self.refusal(answer.status, &answer.document));
        }
        self.token_response(&answer.document, scopes)
    }

    /// POSTs the form, with a fresh DPoP proof when the client has a key; the answer,
    /// whatever its status.
    async fn post(&self, form: &[(&str, &str)]) -> Result<FormAnswer, ExchangeClientError> {
        let credentials = self
            .credentials
            .as_ref()
            .map(|(id, secret)| (id.as_str(), secret.as_str()));
        #[cfg(feature = "dpop")]
        let proof = match &self.dpop {
            Some(dpop) => {
                Some(
                    dpop.key
                        .proof("POST", &self.endpoint, None, dpop.nonce().as_deref())?,
                )
            }
            None => None,
        };
        #[cfg(not(feature = "dpop"))]
        let proof: Option<String> = None;
        let headers: Vec<(&str, &str)> = proof.iter().map(|p| ("dpop", p.as_str())).collect();
        Ok(self
            .fetcher
            .post_form_with(&self.endpoint, form, credentials, &headers)
            .await?)
    }

    /// A non-200 answer: an OAuth refusal when it carries an `error` code, else the status.
    fn refusal(&self, status: u16, document: &Option<Map<String, Value>>) -> ExchangeClientError {
        let member = |name: &str| {
            document
                .as_ref()
                .and_then(|d| d.get(name))
                .and_then(Value::as_str)
        };
        match member("error") {
            Some(error) if !error.is_empty() => ExchangeClientError::Refused {
                endpoint: self.endpoint.clone(),
                status,
                error: excerpt(error),
                description: member("error_description").map(excerpt_long),
            },
            _ => ExchangeClientError::Fetch(FetchError::Status {
                url: self.endpoint.clone(),
                status,
            }),
        }
    }

    /// A 200 answer, checked to be an RFC 8693 section 2.2.1 bearer access token response.
    fn token_response(
        &self,
        document: &Option<Map<String, Value>>,
        requested: &[&str],
    ) -> Result<ExchangedToken, ExchangeClientError> {
        let invalid = |reason: String| ExchangeClientError::InvalidResponse {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let Some(document) = document else {
            return Err(invalid("the answer is not a JSON object".to_owned()));
        };
        #[cfg(feature = "dpop")]
        let proved = self.dpop.is_some();
        #[cfg(not(feature = "dpop"))]
        let proved = false;
        let bearer = BearerResponse::read(document, proved).map_err(invalid)?;
        if proved && !bearer.dpop {
            tracing::debug!(endpoint = %self.endpoint, "a DPoP proof was sent, but the token is a Bearer token");
        }
        match document.get("issued_token_type") {
            None => {}
            Some(Value::String(t)) if t == ACCESS_TOKEN_TYPE || t == JWT_TOKEN_TYPE => {}
            Some(other) => {
                return Err(invalid(format!(
                    "issued_token_type {} is not an access token",
                    excerpt(&other.to_string())
                )));
            }
        }
        let scope = match bearer.scope {
            Some(scope) => Some(scope),
            None if requested.is_empty() => None,
            None => Some(requested.iter().map(|s| (*s).to_owned()).collect()),
        };
        Ok(ExchangedToken {
            access_token: bearer.access_token,
            expires_in: bearer.expires_in,
            scope,
            dpop_bound: bearer.dpop,
        })
    }
}

/// A 400 `use_dpop_nonce` refusal (RFC 9449 section 8).
#[cfg(feature = "dpop")]
fn asks_for_nonce(answer: &FormAnswer) -> bool {
    answer.status == 400
        && answer
            .document
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str)
            == Some("use_dpop_nonce")
}

/// A server's error description, shortened to a length fit for logs.
fn excerpt_long(text: &str) -> String {
    const MAX: usize = 512;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_opted_in_loopback_endpoints() {
        assert!(
            TokenExchangeClient::new("https://as.example/token", FetchOptions::default()).is_ok()
        );
        assert!(matches!(
            TokenExchangeClient::new("http://127.0.0.1:1/token", FetchOptions::default()),
            Err(FetchError::Insecure { .. })
        ));
        assert!(
            TokenExchangeClient::new("http://127.0.0.1:1/token", FetchOptions::loopback_http())
                .is_ok()
        );
    }

    #[test]
    fn debug_shows_neither_token_nor_secret() {
        let client = TokenExchangeClient::new("https://as.example/token", FetchOptions::default())
            .unwrap()
            .client_credentials("mcp", "hunter2");
        let shown = format!("{client:?}");
        assert!(
            shown.contains("mcp") && !shown.contains("hunter2"),
            "{shown}"
        );
        let token = ExchangedToken {
            access_token: "eyJsecret".to_owned(),
            expires_in: Some(Duration::from_secs(60)),
            scope: None,
            dpop_bound: false,
        };
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("eyJsecret") && shown.contains("9 bytes"),
            "{shown}"
        );
    }

    #[test]
    fn answers_are_checked() {
        let client =
            TokenExchangeClient::new("https://as.example/token", FetchOptions::default()).unwrap();
        let doc = |v: Value| Some(v.as_object().unwrap().clone());
        let ok = client
            .token_response(
                &doc(serde_json::json!({"access_token": "t", "token_type": "bearer", "expires_in": 60})),
                &["a"],
            )
            .unwrap();
        assert_eq!(ok.scope, Some(vec!["a".to_owned()]));
        assert_eq!(ok.expires_in, Some(Duration::from_secs(60)));
        for bad in [
            serde_json::json!({"token_type": "Bearer"}),
            serde_json::json!({"access_token": "t", "token_type": "DPoP"}),
            serde_json::json!({"access_token": "t", "token_type": "N_A",
                "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
            serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": "60"}),
        ] {
            assert!(
                matches!(
                    client.token_response(&doc(bad.clone()), &[]),
                    Err(ExchangeClientError::InvalidResponse { .. })
                ),
                "{bad}"
            );
        }
        let refused = client.refusal(
            400,
            &doc(serde_json::json!({"error": "invalid_scope", "error_description": "no"})),
        );
        assert_eq!(refused.error_code(), Some("invalid_scope"));
        assert!(matches!(
            client.refusal(502, &None),
            ExchangeClientError::Fetch(FetchError::Status { status: 502, .. })
        ));
    }

    #[cfg(feature = "dpop")]
    #[test]
    fn with_a_key_dpop_answers_are_bound_and_bearer_ones_accepted() {
        use std::sync::Arc;
        let key = Arc::new(DpopKey::generate().unwrap());
        let client = TokenExchangeClient::new("https://as.example/token", FetchOptions::default())
            .unwrap()
            .dpop(Arc::clone(&key));
        assert!(format!("{client:?}").contains(key.thumbprint()));
        let doc = |v: Value| Some(v.as_object().unwrap().clone());
        let answer = |token_type: &str| {
            client.token_response(
                &doc(serde_json::json!({"access_token": "t", "token_type": token_type})),
                &[],
            )
        };
        assert!(answer("DPoP").unwrap().dpop_bound);
        assert!(answer("dpop").unwrap().dpop_bound);
        assert!(!answer("Bearer").unwrap().dpop_bound);
        assert!(matches!(
            answer("N_A"),
            Err(ExchangeClientError::InvalidResponse { reason, .. }) if reason.contains("DPoP or Bearer")
        ));
    }
}
