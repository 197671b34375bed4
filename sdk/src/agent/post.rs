//! Posting a form to a token endpoint under the crate's fetch rules (HTTPS only, loopback
//! HTTP on opt-in, no redirects, a time limit for the whole exchange, a size limit on the
//! answer), reading the answer whatever its status, so a refusal keeps its OAuth error.
//!
//! `remote`'s fetcher is private to that module and turns every non-200 answer into a
//! bare status; this is the token-endpoint variant the agent sources need, following the
//! same rules as `remote::exchange`'s request.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use serde_json::{Map, Value};

use crate::remote::{FetchError, FetchOptions};

/// An HTTP client with the crate's limits, for form POSTs.
#[derive(Debug, Clone)]
pub(crate) struct FormPoster {
    client: reqwest::Client,
    options: FetchOptions,
}

impl FormPoster {
    pub(crate) fn new(options: FetchOptions) -> FormPoster {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("rmcp-authz/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only fails when the TLS backend cannot start, which no configuration fixes.
            .unwrap_or_else(|_| reqwest::Client::new());
        FormPoster { client, options }
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

    /// POSTs `form` with HTTP Basic client authentication (RFC 6749 section 2.3.1: the id
    /// and secret each form-encoded, then joined); the status and the JSON object
    /// answered (`None` for a non-200 answer that is not one).
    pub(crate) async fn post(
        &self,
        url: &str,
        form: &[(&str, &str)],
        credentials: Option<(&str, &str)>,
    ) -> Result<(u16, Option<Map<String, Value>>), FetchError> {
        let parsed = self.check_url(url)?;
        let mut request = self
            .client
            .post(parsed)
            .header("accept", "application/json")
            .form(form);
        if let Some((id, secret)) = credentials {
            let encode = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            let user_pass = format!("{}:{}", encode(id), encode(secret));
            request = request.header(
                "authorization",
                format!("Basic {}", STANDARD.encode(user_pass)),
            );
        }
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
        let exchange = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status().as_u16();
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_owned(),
                timeout,
            })??;
        match crate::json::parse_object(&body) {
            Ok(document) => Ok((status, Some(document))),
            Err(_) if status != 200 => Ok((status, None)),
            Err(e) => Err(FetchError::NotJson {
                url: url.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
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
    fn only_https_or_opted_in_loopback_http() {
        let strict = FormPoster::new(FetchOptions::default());
        assert!(strict.check_url("https://as.example/token").is_ok());
        assert!(matches!(
            strict.check_url("http://127.0.0.1:8080/token"),
            Err(FetchError::Insecure { .. })
        ));
        let loopback = FormPoster::new(FetchOptions::loopback_http());
        assert!(loopback.check_url("http://127.0.0.1:8080/token").is_ok());
        assert!(matches!(
            loopback.check_url("http://as.example/token"),
            Err(FetchError::Insecure { .. })
        ));
    }
}
