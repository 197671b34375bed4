//! The development issuer over HTTP (feature `http`): a token endpoint for RFC 8693 token
//! exchange, its RFC 8414 metadata and its JWK Set, as one axum router.
//!
//! This module owns the HTTP side only: reading the form-encoded request (RFC 6749
//! appendix B, parsed here by hand, each parameter at most once), mapping it to an
//! [`ExchangeRequest`], and writing the RFC 8693 section 2.2 answer or an RFC 6749
//! section 5.2 error. The exchange rules themselves are [`DevIssuer::exchange`]'s.
//!
//! The endpoint does not authenticate clients (the metadata says
//! `token_endpoint_auth_methods_supported: ["none"]`, and an `Authorization` header is
//! ignored): proof comes from the tokens presented. That suits a development issuer; a
//! real authorization server would also authenticate the client doing the exchange.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::DevIssuer;
use super::exchange::{ExchangeError, ExchangeErrorCode, ExchangeRequest};
use crate::oauth::{ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT_TYPE};

const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

impl DevIssuer {
    /// The issuer's URLs: where its router serves the token endpoint and the JWK Set,
    /// under the issuer's own path.
    pub(super) fn endpoint_url(&self, name: &str) -> String {
        format!("{}/{name}", self.issuer.trim_end_matches('/'))
    }

    /// The authorization server metadata (RFC 8414) that
    /// [`token_endpoint_router`](DevIssuer::token_endpoint_router) serves: `issuer`,
    /// `token_endpoint` (`<issuer>/token`), `jwks_uri` (`<issuer>/jwks`), token exchange as
    /// the one grant type, no client authentication, and no authorization endpoint (an
    /// empty `response_types_supported`); with feature `dpop`, the DPoP proof algorithms
    /// the token endpoint accepts (`dpop_signing_alg_values_supported`, RFC 9449 section
    /// 5.1).
    pub fn authorization_server_metadata(&self) -> Value {
        #[cfg_attr(not(feature = "dpop"), allow(unused_mut))]
        let mut metadata = json!({
            "issuer": self.issuer,
            "token_endpoint": self.endpoint_url("token"),
            "jwks_uri": self.endpoint_url("jwks"),
            "grant_types_supported": [TOKEN_EXCHANGE_GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": [],
        });
        #[cfg(feature = "dpop")]
        {
            metadata["dpop_signing_alg_values_supported"] = super::dpop::DPOP_ALGORITHMS
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .into();
        }
        metadata
    }

    /// An axum router that makes this issuer an HTTP authorization server for token
    /// exchange (feature `http`):
    ///
    /// - `POST <path>/token`: RFC 8693 token exchange, form-encoded, with `grant_type`
    ///   `urn:ietf:params:oauth:grant-type:token-exchange`, `subject_token` and
    ///   `subject_token_type` (`urn:ietf:params:oauth:token-type:access_token` or
    ///   `...:jwt`), optionally `actor_token` with `actor_token_type`, the target as
    ///   `resource` or `audience` (one target; both may be given if they are equal),
    ///   optionally `scope` (space separated; empty means the subject token's scopes) and
    ///   `requested_token_type` (an access token). The answer is the RFC 8693 section 2.2
    ///   JSON (`access_token`, `issued_token_type`, `token_type: "Bearer"`, `expires_in`,
    ///   `scope`) or an RFC 6749 error (`error`, `error_description`) with status 400,
    ///   `Cache-Control: no-store` either way. The rules are [`DevIssuer::exchange`]'s.
    ///   With feature `dpop`, a request may carry one `DPoP` proof (RFC 9449 section 5:
    ///   `htm` POST, `htu` the token endpoint, no `ath`), checked by a verifier the issuer
    ///   owns: the new token is then bound to the proof's key (`cnf.jkt`) and the answer
    ///   says `token_type: "DPoP"`. An invalid proof, or two `DPoP` headers, is answered
    ///   400 `invalid_dpop_proof`; with
    ///   [`require_dpop_nonce`](DevIssuer::require_dpop_nonce), a proof without the
    ///   issuer's nonce is answered 400 `use_dpop_nonce` with a `DPoP-Nonce` header.
    /// - `GET /.well-known/oauth-authorization-server<path>`: the
    ///   [metadata](DevIssuer::authorization_server_metadata).
    /// - `GET <path>/jwks`: the [JWK Set](DevIssuer::jwks).
    ///
    /// `<path>` is the path of the issuer identifier, empty for an issuer that is an
    /// origin. Discovery only works when the issuer identifier is the URL the router is
    /// actually served at: the caller chooses it when creating the issuer, so bind the
    /// listener first, then name the issuer after its address:
    ///
    /// ```no_run
    /// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use rmcp_authz::dev::DevIssuer;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let issuer = DevIssuer::new(format!("http://{}", listener.local_addr()?))?;
    /// axum::serve(listener, Arc::new(issuer).token_endpoint_router()).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// An issuer path is routed when it is made of plain segments (letters, digits and
    /// `-._~`); for any other path the routes are served at the root, which discovery of
    /// that issuer will not find.
    pub fn token_endpoint_router(self: Arc<Self>) -> Router {
        let path = routable_path(&self.issuer);
        let metadata = self.authorization_server_metadata();
        let jwks = self.jwks();
        Router::new()
            .route(
                &format!("{WELL_KNOWN}{path}"),
                get(move || {
                    let metadata = metadata.clone();
                    async move { no_store(StatusCode::OK, metadata) }
                }),
            )
            .route(
                &format!("{path}/jwks"),
                get(move || {
                    let jwks = jwks.clone();
                    async move { axum::Json(jwks) }
                }),
            )
            .route(&format!("{path}/token"), post(token))
            .with_state(self)
    }
}

/// The issuer's path without its trailing slash, when axum can route it as given.
fn routable_path(issuer: &str) -> String {
    let trimmed = issuer.trim_end_matches('/');
    let after_scheme = trimmed.find("://").map_or(0, |i| i + 3);
    let path = trimmed[after_scheme..]
        .find('/')
        .map_or("", |i| &trimmed[after_scheme + i..]);
    let plain = path.split('/').skip(1).all(|segment| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    });
    if plain {
        path.to_owned()
    } else {
        String::new()
    }
}

/// `POST /token`.
async fn token(State(issuer): State<Arc<DevIssuer>>, headers: HeaderMap, body: Bytes) -> Response {
    #[cfg(feature = "dpop")]
    let dpop_jkt = match issuer.token_request_proof(&headers) {
        Ok(jkt) => jkt,
        Err(refusal) => return refusal.into_response(),
    };
    #[cfg(not(feature = "dpop"))]
    let dpop_jkt = None;
    let answer = exchange_request(&headers, &body).and_then(|mut request| {
        request.dpop_jkt = dpop_jkt;
        issuer.exchange_issued(&request)
    });
    match answer {
        Ok(issued) => {
            let mut body = json!({
                "access_token": issued.access_token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": if issued.dpop_bound { "DPoP" } else { "Bearer" },
                "expires_in": issued.expires_in,
            });
            if !issued.scopes.is_empty() {
                body["scope"] = issued.scopes.join(" ").into();
            }
            #[cfg_attr(not(feature = "dpop"), allow(unused_mut))]
            let mut response = no_store(StatusCode::OK, body);
            #[cfg(feature = "dpop")]
            if let Some(nonce) = issuer.dpop.nonce() {
                super::dpop::add_nonce(&mut response, nonce);
            }
            response
        }
        Err(error) => error_response(&error),
    }
}

/// The request's parameters as an [`ExchangeRequest`].
fn exchange_request(headers: &HeaderMap, body: &[u8]) -> Result<ExchangeRequest, ExchangeError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(body)?;
    match form.single("grant_type")? {
        None => return Err(invalid_request("grant_type is required")),
        Some(TOKEN_EXCHANGE_GRANT_TYPE) => {}
        Some(other) => {
            return Err(ExchangeError::new(
                ExchangeErrorCode::UnsupportedGrantType,
                format!("grant type {other:?} is not supported; use {TOKEN_EXCHANGE_GRANT_TYPE}"),
            ));
        }
    }
    let subject_token = form
        .single("subject_token")?
        .ok_or_else(|| invalid_request("subject_token is required"))?;
    check_token_type("subject_token_type", form.single("subject_token_type")?)?;
    let actor_token = form.single("actor_token")?;
    match (actor_token, form.single("actor_token_type")?) {
        (Some(_), kind) => check_token_type("actor_token_type", kind)?,
        (None, Some(_)) => {
            return Err(invalid_request(
                "actor_token_type is given without an actor_token",
            ));
        }
        (None, None) => {}
    }
    if let Some(requested) = form.single("requested_token_type")?
        && requested != ACCESS_TOKEN_TYPE
        && requested != JWT_TOKEN_TYPE
    {
        return Err(invalid_request(format!(
            "requested_token_type {requested:?} is not supported; this issuer issues access tokens"
        )));
    }
    let mut targets: Vec<&str> = Vec::new();
    for target in form.all("resource").chain(form.all("audience")) {
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    let audience = match targets.as_slice() {
        [] => return Err(invalid_request("a resource or audience is required")),
        [one] => *one,
        _ => {
            return Err(ExchangeError::new(
                ExchangeErrorCode::InvalidTarget,
                "this issuer issues a token for one target only; give one resource or audience",
            ));
        }
    };
    let scope = form.single("scope")?.and_then(|scope| {
        let scopes: Vec<String> = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!scopes.is_empty()).then_some(scopes)
    });
    Ok(ExchangeRequest {
        subject_token: subject_token.to_owned(),
        actor_token: actor_token.map(str::to_owned),
        audience: audience.to_owned(),
        scope,
        dpop_jkt: None,
    })
}

fn check_token_type(name: &str, value: Option<&str>) -> Result<(), ExchangeError> {
    match value {
        Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => Ok(()),
        Some(other) => Err(invalid_request(format!(
            "{name} {other:?} is not supported; use {ACCESS_TOKEN_TYPE} or {JWT_TOKEN_TYPE}"
        ))),
        None => Err(invalid_request(format!("{name} is required"))),
    }
}

fn invalid_request(message: impl Into<String>) -> ExchangeError {
    ExchangeError::new(ExchangeErrorCode::InvalidRequest, message)
}

/// A JSON answer that must not be cached (RFC 6749 section 5.1).
pub(super) fn no_store(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 section 5.2 error answer.
pub(super) fn error_response(error: &ExchangeError) -> Response {
    let status =
        StatusCode::from_u16(error.code().http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    no_store(
        status,
        json!({
            "error": error.error_code(),
            "error_description": description(error.message()),
        }),
    )
}

/// `error_description` may only hold `%x20-21 / %x23-5B / %x5D-7E` (RFC 6749 section
/// 5.2): quotes become apostrophes, backslashes slashes, anything else outside the set `?`.
fn description(message: &str) -> String {
    message
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug)]
struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Form, ExchangeError> {
        let mut pairs = Vec::new();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Form { pairs })
    }

    /// Every value of `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, which may be given at most once (RFC 6749 section 3.2). An
    /// empty value counts as absent (RFC 6749 section 3.1).
    fn single(&self, name: &str) -> Result<Option<&str>, ExchangeError> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(invalid_request(format!("{name} is given more than once")));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }
}

/// Decodes one name or value: `+` is a space, `%XX` a byte, the result UTF-8.
fn decode(part: &[u8]) -> Result<String, ExchangeError> {
    let bad = || invalid_request("the form body is not valid application/x-www-form-urlencoded");
    let mut out = Vec::with_capacity(part.len());
    let mut bytes = part.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let (Some(&high), Some(&low)) = (bytes.next(), bytes.next()) else {
                    return Err(bad());
                };
                let mut byte = [0_u8];
                hex::decode_to_slice([high, low], &mut byte).map_err(|_| bad())?;
                out.push(byte[0]);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_refuse_repeats() {
        let form = Form::parse(b"a=x+y%2Bz&b=&c&resource=1&resource=2&&d=%C3%A9").unwrap();
        assert_eq!(form.single("a").unwrap(), Some("x y+z"));
        assert_eq!(form.single("b").unwrap(), None);
        assert_eq!(form.single("c").unwrap(), None);
        assert_eq!(form.single("d").unwrap(), Some("é"));
        assert_eq!(form.all("resource").collect::<Vec<_>>(), ["1", "2"]);
        assert!(form.single("resource").is_err());
        for bad in [&b"a=%zz"[..], b"a=%4", b"a=%FF"] {
            assert!(Form::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn issuer_paths_are_routed_when_plain() {
        assert_eq!(routable_path("http://127.0.0.1:8080"), "");
        assert_eq!(routable_path("http://127.0.0.1:8080/"), "");
        assert_eq!(
            routable_path("https://as.example/tenant-1/v2"),
            "/tenant-1/v2"
        );
        assert_eq!(routable_path("https://as.example/{tenant}"), "");
        assert_eq!(routable_path("https://as.example/a//b"), "");
    }

    #[test]
    fn descriptions_stay_in_the_allowed_characters() {
        assert_eq!(description("say \"hi\" \\ é\n"), "say 'hi' / ??");
    }
}
