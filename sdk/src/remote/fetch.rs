//! Fetching JSON documents from an authorization server, defensively: HTTPS only (plain
//! HTTP to a loopback address on explicit opt-in), no redirects, a time limit for the
//! whole exchange and a size limit on the body, counted as it arrives.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use serde_json::Value;

use crate::error::ConfigError;

/// The default time limit of one fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The default size limit of a fetched document: 256 KiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Limits on fetching from an authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchOptions {
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
    pub(crate) allow_http_loopback: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            allow_http_loopback: false,
        }
    }
}

impl FetchOptions {
    /// The time limit of one fetch, connection included (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The size limit of a document (default 256 KiB).
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Allow plain `http://` URLs whose host is a loopback address (`127.0.0.0/8`, `::1`,
    /// `localhost`): for development and tests. Off by default.
    #[must_use]
    pub fn allow_http_loopback(mut self, allow_http_loopback: bool) -> Self {
        self.allow_http_loopback = allow_http_loopback;
        self
    }

    /// The defaults, with plain HTTP allowed to loopback addresses.
    pub fn loopback_http() -> FetchOptions {
        FetchOptions {
            allow_http_loopback: true,
            ..FetchOptions::default()
        }
    }
}

/// Why a document could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL cannot be parsed.
    #[error("{url:?} is not a valid URL")]
    InvalidUrl {
        /// The URL.
        url: String,
    },
    /// The URL is not HTTPS (or loopback HTTP with the opt-in).
    #[error(
        "{url} is not an https URL; plain http is allowed only to loopback addresses, with allow_http_loopback"
    )]
    Insecure {
        /// The URL.
        url: String,
    },
    /// No complete answer within the time limit.
    #[error("{url}: no complete answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The server answered with a status other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("{url}: the document is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The body is not a JSON object.
    #[error("{url}: the document is not a JSON object ({reason})")]
    NotJson {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The connection failed.
    #[error("{url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The HTTP client could not be built with the limits (no redirects, the time limit):
    /// its TLS backend did not start. Nothing is fetched without those limits.
    #[error(
        "cannot build the HTTP client for the authorization server ({}); check this machine's TLS setup (root certificates, crypto provider)",
        error_chain(.source)
    )]
    Client {
        /// What the HTTP library said.
        #[source]
        source: HttpClientError,
    },
}

/// Why the HTTP library could not build a client: its own error, shared so that
/// [`FetchError`] stays `Clone`. Two values are equal when they are the same error.
#[derive(Clone)]
pub struct HttpClientError(Arc<reqwest::Error>);

impl fmt::Debug for HttpClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HttpClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for HttpClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for HttpClientError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HttpClientError {}

impl From<FetchError> for ConfigError {
    /// A URL that may not be fetched, or an HTTP client that cannot be built, found while
    /// setting up: [`ConfigError::Remote`], with the fetch error as its source.
    fn from(e: FetchError) -> Self {
        ConfigError::Remote(Box::new(e))
    }
}

/// A fetched document, with how long the server says it may be cached.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) document: serde_json::Map<String, Value>,
    pub(crate) max_age: Option<Duration>,
}

/// An HTTP client with limits.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    options: FetchOptions,
}

impl Fetcher {
    /// A client that follows no redirects and gives up after `options.timeout`.
    ///
    /// # Errors
    /// [`FetchError::Client`] when the HTTP library cannot build it (its TLS backend does
    /// not start); there is no fallback to a client without those limits.
    pub(crate) fn new(options: FetchOptions) -> Result<Fetcher, FetchError> {
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("rmcp-authz/", env!("CARGO_PKG_VERSION")));
        Fetcher::build(builder, options)
    }

    /// Builds `builder` into the fetcher's client, or says why it cannot be.
    fn build(
        builder: reqwest::ClientBuilder,
        options: FetchOptions,
    ) -> Result<Fetcher, FetchError> {
        let client = builder.build().map_err(|e| FetchError::Client {
            source: HttpClientError(Arc::new(e)),
        })?;
        Ok(Fetcher { client, options })
    }

    /// The limits.
    pub(crate) fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// `url`, parsed and checked against the HTTPS rule.
    pub(crate) fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        let parsed = Url::parse(url).map_err(|_| FetchError::InvalidUrl {
            url: url.to_owned(),
        })?;
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        match parsed.scheme() {
            "https" => Ok(parsed),
            "http" if loopback && self.options.allow_http_loopback => Ok(parsed),
            _ => Err(FetchError::Insecure {
                url: url.to_owned(),
            }),
        }
    }

    /// GETs a JSON object.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Fetched, FetchError> {
        let parsed = self.check_url(url)?;
        let request = self.client.get(parsed).header("accept", "application/json");
        self.exchange(url, request).await
    }

    /// POSTs a form and reads a JSON object back (a 200 answer only).
    pub(crate) async fn post_form_json(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
    ) -> Result<Fetched, FetchError> {
        let (status, document) = self.post_form(url, form, basic_auth).await?;
        match (status, document) {
            (200, Some(document)) => Ok(Fetched {
                document,
                max_age: None,
            }),
            (200, None) => Err(FetchError::NotJson {
                url: url.to_owned(),
                reason: "the answer is not a JSON object".to_owned(),
            }),
            (status, _) => Err(FetchError::Status {
                url: url.to_owned(),
                status,
            }),
        }
    }

    /// POSTs a form, with HTTP Basic client authentication when given (RFC 6749 section
    /// 2.3.1: the id and secret each form-encoded, then joined), and reads the answer
    /// whatever its status, so a refusal keeps its OAuth `error`: the status, and the JSON
    /// object answered (`None` for a non-200 answer that is not one).
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
    ) -> Result<(u16, Option<serde_json::Map<String, Value>>), FetchError> {
        let answer = self.post_form_with(url, form, basic_auth, &[]).await?;
        Ok((answer.status, answer.document))
    }

    /// [`post_form`](Fetcher::post_form) with `headers` added to the request (a `DPoP`
    /// proof, say), and the answer's headers kept.
    pub(crate) async fn post_form_with(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
        headers: &[(&str, &str)],
    ) -> Result<FormAnswer, FetchError> {
        let parsed = self.check_url(url)?;
        let mut request = self
            .client
            .post(parsed)
            .header("accept", "application/json")
            .form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((id, secret)) = basic_auth {
            let encode = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            let user_pass = format!("{}:{}", encode(id), encode(secret));
            request = request.header(
                "authorization",
                format!("Basic {}", STANDARD.encode(user_pass)),
            );
        }
        let Received {
            status,
            headers,
            body,
            ..
        } = self.send(url, request).await?;
        let document = match crate::json::parse_object(&body) {
            Ok(document) => Some(document),
            Err(_) if status != 200 => None,
            Err(e) => {
                return Err(FetchError::NotJson {
                    url: url.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(FormAnswer {
            status,
            document,
            headers,
        })
    }

    async fn exchange(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, FetchError> {
        let Received {
            status,
            max_age,
            body,
            ..
        } = self.send(url, request).await?;
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let document = crate::json::parse_object(&body).map_err(|e| FetchError::NotJson {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Fetched { document, max_age })
    }

    /// Sends `request` and reads the whole answer under the time and size limits.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Received, FetchError> {
        let timeout = self.options.timeout;
        let limit = self.options.max_bytes;
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout {
                    url: url.to_owned(),
                    timeout,
                }
            } else {
                FetchError::Transport {
                    url: url.to_owned(),
                    message: error_chain(&e),
                }
            }
        };
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
            limit,
        };
        // reqwest's timeout covers the whole exchange; this one covers a server that
        // trickles its body too.
        let exchange = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status().as_u16();
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let max_age = response
                .headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(max_age);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Received {
                status,
                max_age,
                headers: std::mem::take(response.headers_mut()),
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_owned(),
                timeout,
            })?
    }
}

/// A whole answer, read under the limits.
struct Received {
    status: u16,
    /// The `Cache-Control` max-age.
    max_age: Option<Duration>,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// The answer to a form POST, whatever its status.
#[derive(Debug)]
pub(crate) struct FormAnswer {
    pub(crate) status: u16,
    /// The JSON object answered (`None` for a non-200 answer that is not one).
    pub(crate) document: Option<serde_json::Map<String, Value>>,
    /// Read for DPoP's `DPoP-Nonce`.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl FormAnswer {
    /// The value of the one header `name`, when it is there once, as text.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        first.to_str().ok()
    }
}

/// A bearer access token response (RFC 6749 section 5.1), checked: a non-empty
/// `access_token`, `token_type` Bearer (or `DPoP`, RFC 9449 section 5, when a proof was
/// sent), `expires_in` a number of seconds if present, `scope` a string if present
/// (split).
#[derive(Debug)]
pub(crate) struct BearerResponse {
    pub(crate) access_token: String,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) scope: Option<Vec<String>>,
    /// `token_type` is `DPoP`: the token is bound to the proof's key.
    pub(crate) dpop: bool,
}

impl BearerResponse {
    /// Reads `document`, or says what is wrong with it; `token_type` `DPoP` is accepted
    /// only with `accept_dpop` (a proof was sent).
    pub(crate) fn read(
        document: &serde_json::Map<String, Value>,
        accept_dpop: bool,
    ) -> Result<BearerResponse, String> {
        let access_token = match document.get("access_token") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err("no access_token string".to_owned()),
        };
        let dpop = match document.get("token_type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("bearer") => false,
            Some(t) if accept_dpop && t.eq_ignore_ascii_case("dpop") => true,
            Some(other) => {
                let wanted = if accept_dpop {
                    "DPoP or Bearer"
                } else {
                    "Bearer"
                };
                return Err(format!(
                    "token_type {:?} is not {wanted}",
                    crate::error::excerpt(other)
                ));
            }
            None => return Err("no token_type".to_owned()),
        };
        let expires_in = match document.get("expires_in") {
            None => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().map(Duration::from_secs),
            Some(other) => {
                return Err(format!(
                    "expires_in {} is not a number of seconds",
                    crate::error::excerpt(&other.to_string())
                ));
            }
        };
        let scope = match document.get("scope") {
            Some(Value::String(s)) => Some(
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(_) => return Err("scope is not a string".to_owned()),
            None => None,
        };
        Ok(BearerResponse {
            access_token,
            expires_in,
            scope,
            dpop,
        })
    }
}

/// The `max-age` of a `Cache-Control` value (`no-store` and `no-cache` count as 0,
/// wherever they stand among the directives).
fn max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if max_age.is_none()
            && let Some(secs) = lower.strip_prefix("max-age=")
        {
            max_age = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

/// An error and its sources, joined: reqwest's own message alone says little.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("max-age=300, no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("max-age=300, No-Cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn only_https_or_opted_in_loopback_http() {
        let strict = Fetcher::new(FetchOptions::default()).unwrap();
        assert!(strict.check_url("https://as.example/jwks").is_ok());
        assert!(matches!(
            strict.check_url("http://127.0.0.1:8080/jwks"),
            Err(FetchError::Insecure { .. })
        ));
        let loopback = Fetcher::new(FetchOptions::loopback_http()).unwrap();
        for url in [
            "http://127.0.0.1:8080/jwks",
            "http://127.9.9.9/jwks",
            "http://[::1]:80/jwks",
            "http://localhost/jwks",
        ] {
            assert!(loopback.check_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://10.0.0.1/jwks",
            "http://as.example/jwks",
            "ftp://127.0.0.1/x",
        ] {
            assert!(
                matches!(loopback.check_url(url), Err(FetchError::Insecure { .. })),
                "{url}"
            );
        }
        assert!(matches!(
            loopback.check_url("not a url"),
            Err(FetchError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn a_client_that_cannot_be_built_is_an_error_not_a_fallback() {
        // No option of ours makes reqwest fail; a TLS backend left with no protocol
        // version fails the way one that cannot start does: at `build`.
        let builder = reqwest::Client::builder().max_tls_version(reqwest::tls::Version::TLS_1_1);
        let err = Fetcher::build(builder, FetchOptions::default()).unwrap_err();
        assert!(matches!(err, FetchError::Client { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("cannot build the HTTP client for the authorization server ("),
            "{text}"
        );
        assert!(text.contains("empty supported tls versions"), "{text}");
        assert!(text.contains("check this machine's TLS setup"), "{text}");
        let source = std::error::Error::source(&err).expect("the library's error is kept");
        assert!(source.to_string().contains("builder error"), "{source}");
        assert_eq!(err.clone(), err, "the same error equals itself");
    }
}
