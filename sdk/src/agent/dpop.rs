//! DPoP on the agent's requests to MCP servers (features `agent` and `dpop`, RFC 9449
//! section 7): the `Authorization: DPoP` and `DPoP` headers of each request, and the
//! server nonce (section 9) obtained and retried once on a `use_dpop_nonce` challenge.
//!
//! This module owns [`AgentDpop`], the state an
//! [`AuthorizedHttpClient`](super::AuthorizedHttpClient) keeps with a key: the key, an
//! HTTP client for the nonce probe, and the latest nonce per server URI. rmcp reports a
//! 401 as `AuthRequired` with the `WWW-Authenticate` header only, dropping the
//! `DPoP-Nonce` header, so the nonce is fetched by a probe: an empty `POST` to the same
//! URI with the token and a fresh proof, refused by the server before any body is read,
//! whose answer carries the nonce.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue, header};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use serde_json::Value;

use super::client::{AuthorizedClientError, lift};
use super::source::AccessToken;
use crate::token::dpop::{DpopKey, DpopKeyError};

/// How long the nonce probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `DPoP` request header.
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// An agent's DPoP state, shared by an [`AuthorizedHttpClient`](super::AuthorizedHttpClient)
/// and its clones.
pub(super) struct AgentDpop {
    key: Arc<DpopKey>,
    http: reqwest::Client,
    /// The latest nonce each server URI sent.
    nonces: Mutex<HashMap<Arc<str>, String>>,
}

impl fmt::Debug for AgentDpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentDpop")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AgentDpop {
    /// Proofs by `key`; nonce probes sent with `http`.
    pub(super) fn new(key: Arc<DpopKey>, http: reqwest::Client) -> AgentDpop {
        AgentDpop {
            key,
            http,
            nonces: Mutex::default(),
        }
    }

    /// The key's thumbprint.
    pub(super) fn thumbprint(&self) -> &str {
        self.key.thumbprint()
    }

    fn nonce(&self, uri: &Arc<str>) -> Option<String> {
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uri)
            .cloned()
    }

    fn remember(&self, uri: &Arc<str>, nonce: String) {
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Arc::clone(uri), nonce);
    }

    /// `custom` plus `Authorization: DPoP <token>` and a fresh `DPoP` proof for `method`
    /// to `uri`, with `ath` and `nonce`.
    pub(super) fn headers(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        nonce: Option<&str>,
        custom: &HashMap<HeaderName, HeaderValue>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, DpopKeyError> {
        let proof = self.key.proof(method, uri, Some(token), nonce)?;
        let mut headers = custom.clone();
        // A token or a proof that is not a header value cannot be sent at all.
        let value = |text: String| {
            HeaderValue::try_from(text).map_err(|_| DpopKeyError::Crypto("make a header value"))
        };
        headers.insert(header::AUTHORIZATION, value(format!("DPoP {token}"))?);
        headers.insert(DPOP, value(proof)?);
        Ok(headers)
    }

    /// Sends a request of `method` to `uri` with `token` presented as DPoP: `send` is
    /// called with no `auth_header` and the headers to send. On a `use_dpop_nonce`
    /// challenge, the nonce is probed for and the request sent once more with it.
    pub(super) async fn send<T, E, F, Fut>(
        &self,
        method: &str,
        uri: &Arc<str>,
        token: &str,
        custom: &HashMap<HeaderName, HeaderValue>,
        send: F,
    ) -> Result<T, StreamableHttpError<AuthorizedClientError<E>>>
    where
        E: std::error::Error + Send + Sync + 'static,
        F: Fn(Option<String>, HashMap<HeaderName, HeaderValue>) -> Fut,
        Fut: Future<Output = Result<T, StreamableHttpError<E>>>,
    {
        let signing = |e| StreamableHttpError::Client(AuthorizedClientError::Dpop(e));
        let sent = self.nonce(uri);
        let headers = self
            .headers(method, uri, token, sent.as_deref(), custom)
            .map_err(signing)?;
        let first = send(None, headers).await;
        let Err(StreamableHttpError::AuthRequired(challenge)) = &first else {
            return first.map_err(lift);
        };
        if !asks_for_nonce(&challenge.www_authenticate_header) {
            return first.map_err(lift);
        }
        let nonce = match self.probe(uri, token).await {
            Some(nonce) if Some(&nonce) != sent.as_ref() => nonce,
            // No nonce, or the one just refused: sending again cannot help.
            _ => return first.map_err(lift),
        };
        tracing::debug!(%uri, "use_dpop_nonce: sending again with the server's nonce");
        self.remember(uri, nonce.clone());
        let headers = self
            .headers(method, uri, token, Some(&nonce), custom)
            .map_err(signing)?;
        send(None, headers).await.map_err(lift)
    }

    /// The server's `DPoP-Nonce`, from an empty `POST` to `uri` with the token and a
    /// proof without a nonce (refused before any body is read); `None` when the answer
    /// has none or the server cannot be reached.
    async fn probe(&self, uri: &Arc<str>, token: &str) -> Option<String> {
        let proof = self.key.proof("POST", uri, Some(token), None).ok()?;
        let response = self
            .http
            .post(uri.as_ref())
            .header(header::AUTHORIZATION, format!("DPoP {token}"))
            .header(DPOP, proof)
            .header(header::CONTENT_LENGTH, "0")
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .ok()?;
        let mut values = response.headers().get_all("dpop-nonce").iter();
        let nonce = values.next()?.to_str().ok()?.to_owned();
        (values.next().is_none() && !nonce.is_empty()).then_some(nonce)
    }
}

/// Whether `token` is presented as DPoP: its source says it is bound, or it is a JWT
/// whose `cnf` names a `jkt` (read without verification, only to choose the scheme).
pub(super) fn presents_as_dpop(token: &AccessToken) -> bool {
    token.dpop_bound || jwt_has_cnf_jkt(&token.token)
}

fn jwt_has_cnf_jkt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(claims) = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    else {
        return false;
    };
    claims
        .get("cnf")
        .and_then(|cnf| cnf.get("jkt"))
        .is_some_and(Value::is_string)
}

/// Whether a `WWW-Authenticate` value holds a `DPoP` challenge with
/// `error="use_dpop_nonce"` (RFC 9449 section 9).
pub(super) fn asks_for_nonce(www_authenticate: &str) -> bool {
    challenges(www_authenticate).iter().any(|(scheme, params)| {
        scheme.eq_ignore_ascii_case("dpop")
            && params.iter().any(|(name, value)| {
                name.eq_ignore_ascii_case("error") && value == "use_dpop_nonce"
            })
    })
}

/// The challenges of a `WWW-Authenticate` value (RFC 9110 section 11.6.1): each scheme
/// with its parameters, quoted strings unescaped. A token68 is read as a parameter name.
fn challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return found;
        }
        let end = rest.find([' ', '\t', ',', '=']).unwrap_or(rest.len());
        let name = &rest[..end];
        rest = rest[end..].trim_start_matches([' ', '\t']);
        let Some(after) = rest.strip_prefix('=') else {
            found.push((name.to_owned(), Vec::new()));
            continue;
        };
        let after = after.trim_start_matches([' ', '\t']);
        let (param_value, left) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut text = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => text.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => text.push(c),
                    }
                }
                (text, &quoted[end..])
            }
            None => {
                let end = after.find([',', ' ', '\t']).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        if let Some((_, params)) = found.last_mut() {
            params.push((name.to_owned(), param_value));
        }
        rest = left;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::token::dpop::{DpopOptions, DpopVerifier};

    #[test]
    fn use_dpop_nonce_is_read_from_the_dpop_challenge_only() {
        for yes in [
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
            r#"Bearer realm="mcp", DPoP algs="ES256 EdDSA", error="use_dpop_nonce""#,
            r#"dpop error=use_dpop_nonce"#,
            r#"Bearer error="invalid_token", DPoP error="use_dpop_nonce""#,
        ] {
            assert!(asks_for_nonce(yes), "{yes}");
        }
        for no in [
            r#"Bearer error="use_dpop_nonce""#,
            r#"DPoP error="invalid_dpop_proof", error_description="say \"use_dpop_nonce\"""#,
            r#"DPoP error="invalid_token", Bearer error="use_dpop_nonce""#,
            r#"Basic abc==, DPoP algs="ES256""#,
            "",
        ] {
            assert!(!asks_for_nonce(no), "{no}");
        }
        assert_eq!(
            challenges(r#"DPoP error_description="a \"b\", c", algs="ES256""#),
            [(
                "DPoP".to_owned(),
                vec![
                    ("error_description".to_owned(), r#"a "b", c"#.to_owned()),
                    ("algs".to_owned(), "ES256".to_owned()),
                ]
            )]
        );
    }

    #[test]
    fn headers_carry_the_token_and_a_proof_of_this_request() {
        let now = 1_765_000_000;
        let key = DpopKey::generate()
            .unwrap()
            .clock(Arc::new(ManualClock::new(now)));
        let thumbprint = key.thumbprint().to_owned();
        let dpop = AgentDpop::new(Arc::new(key), reqwest::Client::new());
        let mut custom = HashMap::new();
        custom.insert(
            HeaderName::from_static("x-extra"),
            HeaderValue::from_static("kept"),
        );
        let uri = "https://mcp.example/mcp";
        let headers = dpop
            .headers("DELETE", uri, "tok", Some("n-1"), &custom)
            .unwrap();
        assert_eq!(headers[&header::AUTHORIZATION], "DPoP tok");
        assert_eq!(headers[&HeaderName::from_static("x-extra")], "kept");
        let proof = headers[&DPOP].to_str().unwrap();
        let verifier =
            DpopVerifier::new(DpopOptions::default().clock(Arc::new(ManualClock::new(now))));
        let checked = verifier.check(proof, "DELETE", uri, Some("tok")).unwrap();
        assert_eq!(*checked.jkt, *thumbprint);
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(proof.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["nonce"], "n-1");
    }

    #[test]
    fn bound_tokens_are_told_by_their_source_or_their_cnf() {
        let jwt = |claims: &str| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims));
        let bound = AccessToken::new(jwt(r#"{"cnf":{"jkt":"abc"}}"#), None, ["a"]);
        assert!(presents_as_dpop(&bound));
        let plain = AccessToken::new(jwt(r#"{"sub":"a"}"#), None, ["a"]);
        assert!(!presents_as_dpop(&plain));
        assert!(presents_as_dpop(&plain.clone().with_dpop_bound(true)));
        assert!(!presents_as_dpop(&AccessToken::new("opaque", None, ["a"])));
    }
}
