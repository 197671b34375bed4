//! The approval step of the authorization code flow: what turns the authorization URL
//! rmcp builds into the callback URL the authorization server redirects to. The
//! [`Approval`] trait is the seam (a person in a browser, a loopback listener, a test
//! double); [`HeadlessApproval`] is the one implementation this crate ships, for
//! authorization servers that approve without a person.

use async_trait::async_trait;
use url::Url;

/// How an [`OAuthSession`](super::OAuthSession) gets the authorization server's approval
/// in the authorization code flow (feature `agent`).
///
/// rmcp builds the authorization URL (with PKCE, `state`, the `resource` and the scopes)
/// and exchanges the code; in between, someone must open the URL, sign in and consent,
/// and the authorization server then redirects to the redirect URI with `code` and
/// `state`. An implementation does that part and returns the URL redirected to. An agent
/// used by a person opens a browser and listens on the redirect URI; a headless agent
/// facing a pre-consented server uses [`HeadlessApproval`].
#[async_trait]
pub trait Approval: Send + Sync {
    /// Obtains approval for `authorization_url` and returns the callback URL the
    /// authorization server redirected to: `redirect_uri` with `code` and `state` (or
    /// `error`) in its query.
    ///
    /// # Errors
    /// An [`ApprovalError`] when no approval was obtained.
    async fn approve(
        &self,
        authorization_url: &str,
        redirect_uri: &str,
    ) -> Result<String, ApprovalError>;
}

/// Why an [`Approval`] returned no callback URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The authorization URL could not be requested.
    #[error("request the authorization URL: {0}")]
    Request(#[source] reqwest::Error),
    /// The authorization endpoint answered without a redirect: it wants a person to sign
    /// in or consent.
    #[error(
        "the authorization endpoint answered {status} without a redirect: it wants a person to approve"
    )]
    NoRedirect {
        /// The HTTP status it answered with.
        status: u16,
    },
    /// The redirect is not a URL.
    #[error("the authorization endpoint's redirect is not a URL: {0}")]
    InvalidRedirect(#[source] url::ParseError),
    /// The redirect goes somewhere other than the redirect URI.
    #[error("the authorization endpoint redirected to {origin}{path}, not to the redirect URI")]
    WrongRedirect {
        /// The origin redirected to.
        origin: String,
        /// The path redirected to.
        path: String,
    },
    /// The authorization server redirected with an OAuth error (RFC 6749 section
    /// 4.1.2.1), such as `access_denied`.
    #[error("the authorization server refused: {error}")]
    Refused {
        /// The OAuth error code.
        error: String,
    },
    /// Another failure, from an implementation outside this crate.
    #[error("approval: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How long [`HeadlessApproval`] waits for the authorization endpoint's answer.
pub const HEADLESS_APPROVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Approval without a person (feature `agent`): requests the authorization URL as a
/// browser would, without following redirects, and returns the `Location` the
/// authorization server redirects to.
///
/// Only for authorization servers that approve without a person: development and test
/// servers (the MCP conformance suite's), and enterprise servers where the user and
/// client are pre-consented. A server that answers with a sign-in or consent page gets
/// [`ApprovalError::NoRedirect`]. The redirect must go to the redirect URI (same origin
/// and path, else [`ApprovalError::WrongRedirect`]); one carrying an OAuth `error` is
/// [`ApprovalError::Refused`]. No cookies are kept between requests. The request gives up
/// after [`HEADLESS_APPROVAL_TIMEOUT`].
#[derive(Debug, Clone, Default)]
pub struct HeadlessApproval {
    _private: (),
}

impl HeadlessApproval {
    /// A headless approval.
    pub fn new() -> HeadlessApproval {
        HeadlessApproval::default()
    }
}

#[async_trait]
impl Approval for HeadlessApproval {
    async fn approve(
        &self,
        authorization_url: &str,
        redirect_uri: &str,
    ) -> Result<String, ApprovalError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HEADLESS_APPROVAL_TIMEOUT)
            .build()
            .map_err(ApprovalError::Request)?;
        let response = client
            .get(authorization_url)
            .send()
            .await
            .map_err(ApprovalError::Request)?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .filter(|_| status.is_redirection())
            .ok_or(ApprovalError::NoRedirect {
                status: status.as_u16(),
            })?;
        callback(authorization_url, location, redirect_uri)
    }
}

/// The callback URL from the `Location` an authorization endpoint at `authorization_url`
/// answered with: resolved against it, checked to go to `redirect_uri`, and without an
/// OAuth error.
fn callback(
    authorization_url: &str,
    location: &str,
    redirect_uri: &str,
) -> Result<String, ApprovalError> {
    let callback = Url::parse(authorization_url)
        .and_then(|base| base.join(location))
        .map_err(ApprovalError::InvalidRedirect)?;
    let expected = Url::parse(redirect_uri).map_err(ApprovalError::InvalidRedirect)?;
    if (callback.origin(), callback.path()) != (expected.origin(), expected.path()) {
        return Err(ApprovalError::WrongRedirect {
            origin: callback.origin().ascii_serialization(),
            path: callback.path().to_owned(),
        });
    }
    if let Some((_, error)) = callback.query_pairs().find(|(key, _)| key == "error") {
        return Err(ApprovalError::Refused {
            error: error.into_owned(),
        });
    }
    Ok(callback.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIRECT: &str = "http://127.0.0.1/callback";

    /// An authorization endpoint on 127.0.0.1 answering every request with `status` and
    /// `location`; returns its URL.
    async fn endpoint(status: u16, location: Option<&'static str>) -> String {
        use axum::http::{HeaderMap, StatusCode, header};
        let app = axum::Router::new().route(
            "/authorize",
            axum::routing::get(move || async move {
                let mut headers = HeaderMap::new();
                if let Some(location) = location {
                    headers.insert(header::LOCATION, location.parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), headers)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/authorize?client_id=a&state=s")
    }

    #[tokio::test]
    async fn returns_the_redirect_to_the_redirect_uri() {
        let url = endpoint(302, Some("http://127.0.0.1/callback?code=c&state=s")).await;
        let callback = HeadlessApproval::new()
            .approve(&url, REDIRECT)
            .await
            .unwrap();
        assert_eq!(callback, "http://127.0.0.1/callback?code=c&state=s");
    }

    #[tokio::test]
    async fn a_page_instead_of_a_redirect_wants_a_person() {
        let url = endpoint(200, None).await;
        let error = HeadlessApproval::new().approve(&url, REDIRECT).await;
        assert!(
            matches!(error, Err(ApprovalError::NoRedirect { status: 200 })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_redirect_elsewhere_or_with_an_error_is_refused() {
        let url = endpoint(302, Some("https://evil.example/callback?code=c")).await;
        let error = HeadlessApproval::new().approve(&url, REDIRECT).await;
        assert!(
            matches!(&error, Err(ApprovalError::WrongRedirect { origin, .. }) if origin == "https://evil.example"),
            "{error:?}"
        );
        let url = endpoint(303, Some("http://127.0.0.1/callback?error=access_denied")).await;
        let error = HeadlessApproval::new().approve(&url, REDIRECT).await;
        assert!(
            matches!(&error, Err(ApprovalError::Refused { error }) if error == "access_denied"),
            "{error:?}"
        );
    }

    #[test]
    fn a_relative_location_resolves_against_the_authorization_url() {
        let callback = callback(
            "http://127.0.0.1/authorize?x=1",
            "/callback?code=c",
            REDIRECT,
        )
        .unwrap();
        assert_eq!(callback, "http://127.0.0.1/callback?code=c");
        assert!(matches!(
            super::callback("http://127.0.0.1/a", "http://[bad", REDIRECT),
            Err(ApprovalError::InvalidRedirect(_))
        ));
    }
}
