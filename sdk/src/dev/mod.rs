//! A development issuer (feature `dev`): local keys, tokens minted on demand, no identity
//! provider.
//!
//! [`DevIssuer`] makes a signing key in memory (or loads a PKCS#8 PEM file), mints access
//! tokens with any claims, publishes its JWK Set, and hands out a verifier builder that
//! trusts it. It is for demos, examples and tests, yours included; production servers trust
//! their authorization server's keys instead, and build without the feature, so none of
//! this is compiled into them.
//!
//! It also plays the authorization server's part in delegation: [`DevIssuer::exchange`]
//! trades a user's token, and optionally an agent's own token, for a token meant for
//! another audience, with the agent added to the delegation chain (RFC 8693 token
//! exchange). With feature `http`, [`DevIssuer::token_endpoint_router`] serves that
//! exchange at a token endpoint, with RFC 8414 metadata and the JWK Set, so clients can
//! discover the issuer and call it over HTTP. With feature `dpop` too, that endpoint
//! issues DPoP-bound tokens (RFC 9449) to clients that send a proof, and the exchange keeps
//! bindings as [`DevIssuer::exchange`] describes; [`TokenRequest::dpop_bound`] mints a
//! bound token directly.

#[cfg(all(feature = "http", feature = "dpop"))]
mod dpop;
mod exchange;
#[cfg(feature = "http")]
mod token_endpoint;

pub use exchange::{ExchangeError, ExchangeErrorCode, ExchangeRequest};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::clock::{Clock, SystemClock};
use crate::token::{Algorithm, JwtVerifier, JwtVerifierBuilder, Key, KeyError, KeySet};

/// Why a development token could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("cannot mint development token: {reason}")]
pub struct MintError {
    reason: String,
}

/// An in-process token issuer for development and tests.
///
/// ```
/// use rmcp_authz::dev::DevIssuer;
/// let issuer = DevIssuer::new("https://auth.example")?;
/// let verifier = issuer.verifier("https://mcp.example/mcp").build()?;
/// let token = issuer
///     .token("https://mcp.example/mcp")
///     .subject("alice")
///     .client_id("notes-agent")
///     .scopes(["notes:read"])
///     .mint()?;
/// let who = verifier.verify_sync(&token)?;
/// assert_eq!(who.agent(), Some("notes-agent"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DevIssuer {
    issuer: String,
    kid: String,
    alg: Algorithm,
    signing: jsonwebtoken::EncodingKey,
    public_jwk: Map<String, Value>,
    public_key: Key,
    clock: Arc<dyn Clock>,
    #[cfg(all(feature = "http", feature = "dpop"))]
    dpop: dpop::EndpointDpop,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// An issuer named `issuer` with a fresh ES256 key made in memory.
    ///
    /// # Errors
    /// [`KeyError::Pem`] if the system random generator fails.
    pub fn new(issuer: impl Into<String>) -> Result<DevIssuer, KeyError> {
        let pair = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| key_failure("cannot generate an ES256 key"))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| key_failure("cannot encode the generated key"))?;
        Self::from_parts(
            issuer.into(),
            Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            pair.public_key().as_ref(),
        )
    }

    /// An issuer signing with a PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`):
    /// P-256 (ES256), P-384 (ES384), Ed25519 (EdDSA) or RSA (RS256).
    ///
    /// # Errors
    /// [`KeyError::Pem`] when the document is not a PKCS#8 key of those kinds.
    pub fn from_pkcs8_pem(
        issuer: impl Into<String>,
        pem: impl AsRef<[u8]>,
    ) -> Result<DevIssuer, KeyError> {
        let pem = pem.as_ref();
        let doc = pem::parse(pem).map_err(|e| KeyError::Pem {
            reason: e.to_string(),
        })?;
        if doc.tag() != "PRIVATE KEY" {
            return Err(key_failure("expected a PKCS#8 \"PRIVATE KEY\" document"));
        }
        let der = doc.contents();
        let issuer = issuer.into();
        let bad = |_| key_failure("the key could not be loaded for signing");
        for (alg, signing) in [
            (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            if let Ok(pair) = sig::EcdsaKeyPair::from_pkcs8(signing, der) {
                let key = jsonwebtoken::EncodingKey::from_ec_pem(pem).map_err(bad)?;
                return Self::from_parts(issuer, alg, key, pair.public_key().as_ref());
            }
        }
        if let Ok(pair) = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let key = jsonwebtoken::EncodingKey::from_ed_pem(pem).map_err(bad)?;
            return Self::from_parts(issuer, Algorithm::EdDSA, key, pair.public_key().as_ref());
        }
        if let Ok(pair) = sig::RsaKeyPair::from_pkcs8(der) {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(bad)?;
            return Self::from_parts(issuer, Algorithm::RS256, key, pair.public_key().as_ref());
        }
        Err(key_failure(
            "not a P-256, P-384, Ed25519 or RSA PKCS#8 private key",
        ))
    }

    /// [`DevIssuer::from_pkcs8_pem`] on the contents of a file.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be read, then as `from_pkcs8_pem`.
    pub fn from_pkcs8_pem_file(
        issuer: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<DevIssuer, KeyError> {
        Self::from_pkcs8_pem(issuer, crate::token::read_key_file(path.as_ref())?)
    }

    /// `public` is the SEC1 point (EC), the raw key (Ed25519) or PKCS#1 DER (RSA).
    fn from_parts(
        issuer: String,
        alg: Algorithm,
        signing: jsonwebtoken::EncodingKey,
        public: &[u8],
    ) -> Result<DevIssuer, KeyError> {
        let thumb = digest::digest(&digest::SHA256, public);
        let kid = format!("dev-{}", &URL_SAFE_NO_PAD.encode(thumb.as_ref())[..12]);
        let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
        let mut jwk = Map::new();
        let public_key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                let size = (public.len() - 1) / 2;
                jwk.insert("kty".into(), "EC".into());
                let crv = if alg == Algorithm::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                jwk.insert("crv".into(), crv.into());
                jwk.insert("x".into(), b64(&public[1..=size]));
                jwk.insert("y".into(), b64(&public[1 + size..]));
                Key::from_jwk(&Value::Object(jwk.clone()).to_string())?
            }
            Algorithm::EdDSA => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(public));
                Key::from_jwk(&Value::Object(jwk.clone()).to_string())?
            }
            _ => {
                let rsa = aws_lc_rs::rsa::PublicKey::from_der(public)
                    .map_err(|_| key_failure("the RSA public key could not be read"))?;
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(&rsa);
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), b64(&c.n));
                jwk.insert("e".into(), b64(&c.e));
                jwk.insert("alg".into(), alg.as_str().into());
                Key::from_jwk(&Value::Object(jwk.clone()).to_string())?
            }
        };
        jwk.insert("alg".into(), alg.as_str().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("kid".into(), kid.clone().into());
        Ok(DevIssuer {
            issuer,
            public_key: public_key.with_kid(kid.clone()),
            kid,
            alg,
            signing,
            public_jwk: jwk,
            clock: Arc::new(SystemClock),
            #[cfg(all(feature = "http", feature = "dpop"))]
            dpop: dpop::EndpointDpop::new(Arc::new(SystemClock), None),
        })
    }

    /// The same issuer with its tokens dated by `clock` (default [`SystemClock`]), and
    /// its [`verifier`](DevIssuer::verifier) builders using the same clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> DevIssuer {
        self.clock = Arc::new(clock);
        #[cfg(all(feature = "http", feature = "dpop"))]
        {
            self.dpop = self.dpop.with_clock(Arc::clone(&self.clock));
        }
        self
    }

    /// The issuer identifier (`iss` of minted tokens).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing key's id (`kid` of minted tokens).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK Set document, as an authorization server publishes at `jwks_uri`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [Value::Object(self.public_jwk.clone())] })
    }

    /// The public key as a [`KeySet`].
    pub fn key_set(&self) -> KeySet {
        let mut set = KeySet::new();
        // A fresh set with one key cannot hit a duplicate or a mix.
        let _ = set.insert(self.public_key.clone());
        set
    }

    /// A verifier builder that trusts this issuer for tokens meant for `audience`, on this
    /// issuer's clock. Add settings, then `build()`.
    pub fn verifier(&self, audience: impl Into<String>) -> JwtVerifierBuilder {
        JwtVerifier::builder(self.issuer.clone(), audience)
            .key(self.public_key.clone())
            .clock(Arc::clone(&self.clock))
    }

    /// Starts a token for `audience` with development defaults: `sub` `dev-user`,
    /// `client_id` `dev-client`, no scopes, issued now, valid for one hour, a random `jti`,
    /// header `typ: at+jwt`.
    pub fn token(&self, audience: impl Into<String>) -> TokenRequest<'_> {
        let now = self.clock.now_unix();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), audience.into().into());
        claims.insert("sub".into(), "dev-user".into());
        claims.insert("client_id".into(), "dev-client".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(3600).into());
        claims.insert("jti".into(), random_id().into());
        TokenRequest {
            issuer: self,
            claims,
            typ: Some("at+jwt".to_owned()),
            actors: Vec::new(),
        }
    }

    /// Signs `claims` as they are, with header `typ` (`None` leaves it out), this
    /// issuer's `kid` and algorithm.
    ///
    /// # Errors
    /// [`MintError`] if `claims` is not a JSON object or signing fails.
    pub fn mint_claims(&self, claims: &Value, typ: Option<&str>) -> Result<String, MintError> {
        if !claims.is_object() {
            return Err(MintError {
                reason: "claims must be a JSON object".to_owned(),
            });
        }
        let mut header = jsonwebtoken::Header::new(jwt_alg(self.alg));
        header.typ = typ.map(str::to_owned);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).map_err(|e| MintError {
            reason: e.to_string(),
        })
    }
}

/// A token being minted by a [`DevIssuer`]; finish with [`TokenRequest::mint`].
#[derive(Debug)]
#[must_use]
pub struct TokenRequest<'a> {
    issuer: &'a DevIssuer,
    claims: Map<String, Value>,
    typ: Option<String>,
    actors: Vec<String>,
}

impl TokenRequest<'_> {
    /// Sets `sub`.
    pub fn subject(self, sub: impl Into<String>) -> Self {
        self.claim("sub", sub.into())
    }

    /// Sets `client_id`.
    pub fn client_id(self, client_id: impl Into<String>) -> Self {
        self.claim("client_id", client_id.into())
    }

    /// Sets `scope` to these scopes, space separated.
    pub fn scopes<S: AsRef<str>>(self, scopes: impl IntoIterator<Item = S>) -> Self {
        let joined = scopes
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        self.claim("scope", joined)
    }

    /// Adds an actor to the delegation chain: the first call names the current actor,
    /// each later call an earlier one (nested `act`, RFC 8693 section 4.1).
    pub fn actor(mut self, sub: impl Into<String>) -> Self {
        self.actors.push(sub.into());
        self
    }

    /// Binds the token to a DPoP key (RFC 9449 section 6): sets `cnf` to `{"jkt": jkt}`,
    /// the key's RFC 7638 thumbprint (`DpopKey::thumbprint` with feature `dpop`). A
    /// resource server that checks DPoP accepts it only with a proof of that key.
    pub fn dpop_bound(self, jkt: impl Into<String>) -> Self {
        self.claim("cnf", json!({ "jkt": jkt.into() }))
    }

    /// Sets `exp` to `lifetime` after `iat`.
    pub fn expires_in(self, lifetime: Duration) -> Self {
        let iat = self.claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        self.claim("exp", iat.saturating_add(secs))
    }

    /// Sets any claim (replacing a default).
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Leaves a claim out (one of the defaults, say).
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets the header `typ` (`None` leaves it out). Default `at+jwt`.
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.typ = typ.map(str::to_owned);
        self
    }

    /// Signs the token.
    ///
    /// # Errors
    /// [`MintError`] if signing fails.
    pub fn mint(mut self) -> Result<String, MintError> {
        let mut act: Option<Value> = None;
        for sub in self.actors.iter().rev() {
            let mut obj = Map::new();
            obj.insert("sub".into(), sub.clone().into());
            if let Some(inner) = act.take() {
                obj.insert("act".into(), inner);
            }
            act = Some(Value::Object(obj));
        }
        if let Some(act) = act {
            self.claims.insert("act".into(), act);
        }
        self.issuer
            .mint_claims(&Value::Object(self.claims), self.typ.as_deref())
    }
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        _ => jsonwebtoken::Algorithm::ES256,
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 12];
    // SystemRandom only fails if the OS has no randomness; a fixed id is then harmless
    // for development tokens.
    let _ = SystemRandom::new().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key_failure(reason: &str) -> KeyError {
    KeyError::Pem {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::token::AuthError;

    const AUD: &str = "https://mcp.example/mcp";

    #[test]
    fn minted_token_verifies_and_carries_the_chain() {
        let issuer = DevIssuer::new("https://as.example").unwrap();
        let v = issuer.verifier(AUD).build().unwrap();
        let token = issuer
            .token(AUD)
            .scopes(["a", "b"])
            .actor("current")
            .actor("earlier")
            .mint()
            .unwrap();
        let p = v.verify_sync(&token).unwrap();
        assert_eq!(p.scopes(), ["a", "b"]);
        let chain: Vec<_> = p.delegation_chain().iter().map(|a| a.id()).collect();
        assert_eq!(chain, ["current", "earlier"]);
    }

    #[test]
    fn jwks_document_round_trips_through_key_set_loading() {
        let issuer = DevIssuer::new("https://as.example").unwrap();
        let keys = KeySet::from_jwks_json(&issuer.jwks().to_string()).unwrap();
        assert_eq!(
            keys.get(issuer.kid()).unwrap().algorithm(),
            Algorithm::ES256
        );
    }

    #[test]
    fn expiry_follows_the_injected_clock() {
        let clock = Arc::new(ManualClock::new(2_000_000_000));
        let issuer = DevIssuer::new("https://as.example")
            .unwrap()
            .clock(clock.clone());
        let v = issuer.verifier(AUD).build().unwrap();
        let token = issuer
            .token(AUD)
            .expires_in(Duration::from_secs(60))
            .mint()
            .unwrap();
        assert!(v.verify_sync(&token).is_ok());
        clock.advance(Duration::from_secs(60 + 29));
        assert!(v.verify_sync(&token).is_ok(), "within leeway");
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            v.verify_sync(&token).unwrap_err(),
            AuthError::Expired { .. }
        ));
    }

    #[test]
    fn pem_loading_rejects_other_labels() {
        let err = DevIssuer::from_pkcs8_pem(
            "x",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
    }
}
