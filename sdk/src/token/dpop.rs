//! DPoP proofs (RFC 9449, feature `dpop`): the resource server's check of the proof a
//! client sends beside a DPoP-bound access token, and the key thumbprint (RFC 7638) that
//! binds one to the other.
//!
//! This module owns [`DpopVerifier`], which checks one `DPoP` header against the request
//! and the access token, strictly and in the order RFC 9449 section 4.3 lists: a compact
//! JWS with `typ: dpop+jwt`, an asymmetric `alg` from the allow-list, a public `jwk` in the
//! header (no private members) that verifies the signature, `htm` and `htu` equal to the
//! request's method and URL (the URL without query and fragment, scheme and host compared
//! in any case, default ports dropped), `iat` within the window, `ath` the hash of the
//! access token, when the server requires nonces a `nonce` it issued within their lifetime
//! (RFC 9449 section 9: stateless nonces, the issue time sealed with a key of the
//! verifier's), and last a `jti` not seen within the window (a bounded replay cache, one
//! hash lookup per proof; the HTTP layer records it only once the token is verified and
//! bound). [`access_token_binding`] checks a token's `cnf.jkt` against the
//! proof's key. The HTTP layer ([`AuthzBuilder::dpop`](crate::AuthzBuilder::dpop))
//! runs it on every request that presents `Authorization: DPoP`; docs/dpop.md says what
//! is checked, in what order, and why.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::jwk::key_from_jwk;
use super::jws::{decode_object_part, split_compact};
use super::{Algorithm, b64url_decode};
use crate::clock::Clock;
use crate::error::KeyName;
use crate::principal::Principal;

/// The longest DPoP proof read: a proof is a header with one public key and a few claims.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// How many bytes of checked proof headers (client keys) a verifier keeps: 4 MiB, some
/// 10,000 EC keys.
const HEADER_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// What a cached header costs beyond its text: the parsed key and the thumbprint.
const HEADER_OVERHEAD_BYTES: usize = 256;

/// The bytes of HMAC-SHA256 a nonce keeps (128 bits).
const NONCE_TAG_BYTES: usize = 16;

/// Why a DPoP proof (or a token's binding to it) was refused. Every variant is a 401
/// `invalid_dpop_proof` (RFC 9449 section 7.1), but for [`DpopError::Binding`], which is
/// the token's fault (`invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a well-formed proof: size, parts, base64url, JSON, a missing or mistyped member.
    #[error("malformed DPoP proof: {0}")]
    Malformed(String),
    /// `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's typ is not dpop+jwt")]
    Type,
    /// `alg` is `none`, symmetric, or not on the allow-list.
    #[error("the DPoP proof's alg {0:?} is not allowed")]
    Algorithm(String),
    /// The `jwk` header is missing, not a public key, or unusable.
    #[error("the DPoP proof's jwk is not a usable public key: {0}")]
    Key(String),
    /// The signature does not verify with the `jwk`.
    #[error("the DPoP proof's signature does not verify")]
    Signature,
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for method {found:?}, not {expected:?}")]
    Method {
        /// The request's method.
        expected: String,
        /// The proof's `htm`.
        found: String,
    },
    /// `htu` is not the request's URL.
    #[error("the DPoP proof is for {found:?}, not {expected:?}")]
    Url {
        /// The request's URL, normalized.
        expected: String,
        /// The proof's `htu`, normalized.
        found: String,
    },
    /// `iat` is outside the accepted window.
    #[error("the DPoP proof was issued at {iat}, outside the window around {now}")]
    Time {
        /// The proof's `iat`.
        iat: i64,
        /// The server's time.
        now: i64,
    },
    /// `ath` is missing or not the hash of the access token.
    #[error("the DPoP proof's ath is not the hash of the access token")]
    AccessTokenHash,
    /// The proof's `jti` was seen before within the window.
    #[error("the DPoP proof was used before")]
    Replayed,
    /// The access token's `cnf.jkt` is missing or names another key.
    #[error("the access token is not bound to the DPoP proof's key")]
    Binding,
    /// The replay cache is full (more proofs within the window than
    /// [`DpopOptions::replay_capacity`]): the proof cannot be remembered, so it is not
    /// accepted; the HTTP layer answers 503, and the client tries again with a new proof.
    #[error("the DPoP replay cache is full; try again shortly")]
    ReplayCacheFull,
    /// The server requires a nonce it issued, and the proof has none, or one it did not
    /// issue, or one older than the nonces' lifetime: RFC 9449 `use_dpop_nonce`, answered
    /// with a fresh nonce in the `DPoP-Nonce` header.
    #[error("the DPoP proof needs a fresh nonce from this server (DPoP-Nonce)")]
    UseNonce,
}

impl DpopError {
    /// The RFC 9449 error code: `use_dpop_nonce` for [`DpopError::UseNonce`],
    /// `invalid_token` for [`DpopError::Binding`], `temporarily_unavailable` for
    /// [`DpopError::ReplayCacheFull`], `invalid_dpop_proof` for the rest.
    pub fn error_code(&self) -> &'static str {
        match self {
            DpopError::UseNonce => "use_dpop_nonce",
            DpopError::Binding => "invalid_token",
            DpopError::ReplayCacheFull => "temporarily_unavailable",
            _ => "invalid_dpop_proof",
        }
    }
}

/// A proof that passed: the key it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopProof {
    /// The RFC 7638 thumbprint of the proof's key (base64url SHA-256): what a bound
    /// token's `cnf.jkt` must equal.
    pub jkt: String,
    /// The proof's algorithm.
    pub alg: Algorithm,
    /// The proof's `iat`.
    pub iat: i64,
    /// The SHA-256 of the key's thumbprint and the `jti`: what the replay cache remembers.
    replay_id: [u8; 32],
}

/// Checks DPoP proofs (see the module's documentation). Cheap to share: one per server.
pub struct DpopVerifier {
    options: DpopOptions,
    /// SHA-256 of (key thumbprint, `jti`) of the proofs seen in the window.
    seen: replay::ReplayCache,
    /// The headers checked, by their base64url text: one per client key, checked once.
    headers: headers::HeaderCache<ProofHeader>,
    /// The key nonces are sealed with.
    nonce_key: aws_lc_rs::hmac::Key,
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("options", &self.options)
            .field("seen", &self.seen.len())
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl DpopVerifier {
    /// A verifier with `options`.
    ///
    /// # Panics
    /// Never in practice: only if the operating system's random generator fails when a
    /// nonce key is made (no [`nonce_secret`](DpopOptions::nonce_secret) given), when no
    /// key can be made safely.
    pub fn new(options: DpopOptions) -> DpopVerifier {
        let seen = replay::ReplayCache::new(options.window.as_secs() * 2, options.replay_capacity);
        let secret = options.nonce_secret.unwrap_or_else(|| {
            let mut secret = [0_u8; 32];
            aws_lc_rs::rand::fill(&mut secret).expect("the system random generator failed");
            secret
        });
        let nonce_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        DpopVerifier {
            options,
            seen,
            headers: headers::HeaderCache::new(HEADER_CACHE_BYTES, HEADER_OVERHEAD_BYTES),
            nonce_key,
        }
    }

    /// The settings.
    pub fn options(&self) -> &DpopOptions {
        &self.options
    }

    /// Whether proofs must carry a nonce of this server's.
    pub fn requires_nonce(&self) -> bool {
        self.options.nonce_lifetime.is_some()
    }

    /// A fresh nonce for the `DPoP-Nonce` header: the time, sealed with the verifier's
    /// key; `None` when nonces are not required.
    pub fn nonce(&self) -> Option<String> {
        self.options.nonce_lifetime?;
        let now = self.options.clock.now_unix().to_be_bytes();
        let tag = aws_lc_rs::hmac::sign(&self.nonce_key, &now);
        let mut nonce = [0_u8; 8 + NONCE_TAG_BYTES];
        nonce[..8].copy_from_slice(&now);
        nonce[8..].copy_from_slice(&tag.as_ref()[..NONCE_TAG_BYTES]);
        Some(URL_SAFE_NO_PAD.encode(nonce))
    }

    /// Whether `nonce` is one of this verifier's (same key), issued within the lifetime.
    fn nonce_is_fresh(&self, nonce: &str, lifetime: Duration) -> bool {
        let Some(bytes) = b64url_decode(nonce).filter(|b| b.len() == 8 + NONCE_TAG_BYTES) else {
            return false;
        };
        let (time, tag) = bytes.split_at(8);
        let expected = aws_lc_rs::hmac::sign(&self.nonce_key, time);
        // Constant-time: the tag is a secret until it matches.
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            &expected.as_ref()[..NONCE_TAG_BYTES],
            tag,
        )
        .is_err()
        {
            return false;
        }
        let mut issued = [0_u8; 8];
        issued.copy_from_slice(time);
        let issued = i64::from_be_bytes(issued);
        let now = self.options.clock.now_unix();
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        // A nonce from the future (another replica's clock ahead) is fresh for as long.
        issued <= now.saturating_add(lifetime) && now.saturating_sub(issued) <= lifetime
    }

    /// Checks `proof` (the `DPoP` header) for a request of `method` to `url` carrying
    /// `access_token` (`None` at a token endpoint, where there is no `ath`): every check
    /// of [`check_unrecorded`](DpopVerifier::check_unrecorded), then
    /// [`record_use`](DpopVerifier::record_use).
    ///
    /// # Errors
    /// The first [`DpopError`] found, in the order of the module's documentation.
    pub fn check(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<DpopProof, DpopError> {
        let checked = self.check_unrecorded(proof, method, url, access_token)?;
        self.record_use(&checked)?;
        Ok(checked)
    }

    /// Records the use of a proof that passed
    /// [`check_unrecorded`](DpopVerifier::check_unrecorded): the HTTP layer calls it once
    /// the token is verified and bound to the proof's key, so only a caller holding both
    /// takes a place in the replay cache.
    ///
    /// # Errors
    /// [`DpopError::Replayed`] when the proof was used before within the window;
    /// [`DpopError::ReplayCacheFull`] when the replay cache has no room for it.
    pub fn record_use(&self, proof: &DpopProof) -> Result<(), DpopError> {
        match self
            .seen
            .first_use(proof.replay_id, self.options.clock.now_unix())
        {
            replay::Use::First => Ok(()),
            replay::Use::Replayed => Err(DpopError::Replayed),
            replay::Use::Full => Err(DpopError::ReplayCacheFull),
        }
    }

    /// Every check of [`check`](DpopVerifier::check) but the replay cache's: the proof
    /// passes here any number of times, until [`record_use`](DpopVerifier::record_use).
    ///
    /// # Errors
    /// The first [`DpopError`] found, in the order of the module's documentation.
    pub fn check_unrecorded(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<DpopProof, DpopError> {
        if proof.len() > MAX_PROOF_BYTES {
            return Err(DpopError::Malformed(format!(
                "longer than {MAX_PROOF_BYTES} bytes"
            )));
        }
        let malformed = |e: super::AuthError| DpopError::Malformed(e.to_string());
        let [h, p, s] = split_compact(proof).map_err(malformed)?;
        // A client sends the same header (its key) with every proof: checked once, then
        // taken from the cache by its text.
        let (header, cached) = match self.headers.get(h) {
            Some(header) => (header, true),
            None => (Arc::new(self.read_header(h)?), false),
        };
        let signature = b64url_decode(s)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DpopError::Malformed("the signature is not base64url".to_owned()))?;
        if !header
            .key
            .verify(&proof.as_bytes()[..h.len() + 1 + p.len()], &signature)
        {
            return Err(DpopError::Signature);
        }
        // Kept only once its key has signed something (the cache is bounded in bytes).
        if !cached {
            self.headers.insert(h, Arc::clone(&header));
        }
        // Read into a typed struct: the five claims, borrowed where they need no unescaping
        // (a repeated claim is refused, as in any JWS this crate reads).
        let payload = b64url_decode(p)
            .ok_or_else(|| DpopError::Malformed("the payload is not base64url".to_owned()))?;
        let claims: ProofClaims<'_> = serde_json::from_slice(&payload)
            .map_err(|e| DpopError::Malformed(format!("the payload: {e}")))?;
        let jti = required(&claims.jti, "jti")?;
        let htm = required(&claims.htm, "htm")?;
        if htm != method {
            return Err(DpopError::Method {
                expected: method.to_owned(),
                found: htm.chars().take(32).collect(),
            });
        }
        let htu = required(&claims.htu, "htu")?;
        if !same_htu(url, htu) {
            return Err(DpopError::Url {
                expected: normalize_htu(url),
                found: normalize_htu(htu).chars().take(256).collect(),
            });
        }
        let iat = claims
            .iat
            .ok_or_else(|| DpopError::Malformed("no integer \"iat\"".to_owned()))?;
        let now = self.options.clock.now_unix();
        let window = i64::try_from(self.options.window.as_secs()).unwrap_or(i64::MAX);
        if iat < now.saturating_sub(window) || iat > now.saturating_add(window) {
            return Err(DpopError::Time { iat, now });
        }
        if let Some(token) = access_token {
            // Compared as bytes: the claim decoded, not the hash encoded.
            let hash = digest(&SHA256, token.as_bytes());
            let ath = claims.ath.as_deref().and_then(b64url_decode);
            if ath.as_deref() != Some(hash.as_ref()) {
                return Err(DpopError::AccessTokenHash);
            }
        }
        if let Some(lifetime) = self.options.nonce_lifetime
            && !claims
                .nonce
                .as_deref()
                .is_some_and(|n| self.nonce_is_fresh(n, lifetime))
        {
            return Err(DpopError::UseNonce);
        }
        let jkt = &header.jkt;
        let mut seen = aws_lc_rs::digest::Context::new(&SHA256);
        seen.update(jkt.as_bytes());
        seen.update(b" ");
        seen.update(jti.as_bytes());
        let mut replay_id = [0_u8; 32];
        replay_id.copy_from_slice(seen.finish().as_ref());
        Ok(DpopProof {
            jkt: jkt.clone(),
            alg: header.alg,
            iat,
            replay_id,
        })
    }

    /// Checks a proof's header (`h`, base64url): `typ`, `alg`, no `crit`, a public `jwk`
    /// of `alg`; its key, parsed, and the key's thumbprint.
    fn read_header(&self, h: &str) -> Result<ProofHeader, DpopError> {
        let header =
            decode_object_part(h, "header").map_err(|e| DpopError::Malformed(e.to_string()))?;
        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
            return Err(DpopError::Type);
        }
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| DpopError::Malformed("no \"alg\" string".to_owned()))?;
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| !a.is_symmetric() && self.options.algorithms.contains(a))
            .ok_or_else(|| DpopError::Algorithm(alg_name.chars().take(32).collect()))?;
        if header.contains_key("crit") {
            return Err(DpopError::Malformed("\"crit\" is not supported".to_owned()));
        }
        let jwk = header
            .get("jwk")
            .and_then(Value::as_object)
            .ok_or_else(|| DpopError::Key("no \"jwk\" object in the header".to_owned()))?;
        if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(DpopError::Key("a symmetric key".to_owned()));
        }
        let key = key_from_jwk(&Value::Object(jwk.clone()), KeyName::Unnamed, Some(alg))
            .map_err(|e| DpopError::Key(e.to_string()))?;
        if key.algorithm() != alg {
            return Err(DpopError::Key(format!(
                "the key is for {}, the proof is signed with {}",
                key.algorithm().as_str(),
                alg.as_str()
            )));
        }
        let jkt = jwk_thumbprint(jwk).map_err(DpopError::Key)?;
        Ok(ProofHeader { alg, key, jkt })
    }
}

/// The claims of a proof this crate reads; others are ignored.
#[derive(serde::Deserialize)]
struct ProofClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htu: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(borrow, default)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
}

/// A claim that must be a non-empty string.
fn required<'c>(value: &'c Option<Cow<'_, str>>, name: &'static str) -> Result<&'c str, DpopError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DpopError::Malformed(format!("no \"{name}\" string")))
}

/// Whether `a` and `b` name the same URL as RFC 9449 compares `htu` (see
/// [`normalize_htu`]); allocates only when they differ as written.
fn same_htu(a: &str, b: &str) -> bool {
    let plain = |u: &str| u.split(['?', '#']).next().unwrap_or_default().len();
    (plain(a) == plain(b) && a[..plain(a)] == b[..plain(b)]) || normalize_htu(a) == normalize_htu(b)
}

/// A proof header that passed [`DpopVerifier::read_header`]: what every proof with the
/// same header shares.
struct ProofHeader {
    alg: Algorithm,
    key: super::Key,
    jkt: String,
}

/// Checks that `principal`'s token is bound (`cnf.jkt`) to the key of `proof`.
///
/// # Errors
/// [`DpopError::Binding`] when the token has no `cnf.jkt`, or names another key.
pub fn access_token_binding(principal: &Principal, proof: &DpopProof) -> Result<(), DpopError> {
    let jkt = principal
        .claim("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    if jkt == Some(proof.jkt.as_str()) {
        Ok(())
    } else {
        Err(DpopError::Binding)
    }
}

/// The RFC 7638 thumbprint of a public JWK: base64url SHA-256 of its required members, in
/// lexicographic order, without whitespace.
///
/// # Errors
/// A message naming the missing member or the unknown `kty`.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Result<String, String> {
    let kty = jwk.get("kty").and_then(Value::as_str).ok_or("no \"kty\"")?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => return Err(format!("no thumbprint for kty {other:?}")),
    };
    let mut required = Map::new();
    for member in members {
        let value = jwk
            .get(*member)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no \"{member}\" string"))?;
        required.insert((*member).to_owned(), Value::String(value.to_owned()));
    }
    // A serde_json map without `preserve_order` sorts its keys; with it (feature `cedar`
    // turns it on), they were inserted in order above.
    let canonical = serde_json::to_string(&required).map_err(|e| e.to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes())))
}

/// `url` as RFC 9449 compares `htu`: without query and fragment, the scheme and host in
/// lower case, the scheme's default port dropped, an empty path as `/`.
pub fn normalize_htu(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let authority = match authority.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() => host.to_owned(),
        _ => authority,
    };
    format!("{scheme}://{authority}{path}")
}

mod headers;
mod options;
mod replay;
mod signer;
pub use options::DpopOptions;
pub use signer::{DpopKey, DpopKeyError};

#[cfg(test)]
mod tests;
