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
use serde_json::Value;

use self::claims::ProofClaims;
use self::htu::same_htu;
use self::thumbprint::thumbprint_digest;
use super::jwk::key_from_jwk;
use super::jws::{decode_object_part, split_compact};
use super::{Algorithm, b64url_decode};
use crate::clock::Clock;
use crate::error::KeyName;
use crate::principal::Principal;

/// The longest DPoP proof read: a proof is a header with one public key and a few claims.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// How many bytes of checked proof headers (client keys) a verifier keeps: 4 MiB, some
/// 10,000 EC keys; and as many of access tokens by their `ath`.
const CHECKED_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// What a cached header costs beyond its text: the parsed key and the thumbprint.
const HEADER_OVERHEAD_BYTES: usize = 256;

/// What a cached token costs beyond its `ath` and its text: the map's entry.
const TOKEN_OVERHEAD_BYTES: usize = 64;

/// The longest access token kept by its `ath`; a longer one is hashed on every proof.
const MAX_CACHED_TOKEN_BYTES: usize = 8 * 1024;

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

    // The constructors of the check's errors, out of line: the path a proof that passes
    // takes stays short.

    #[cold]
    #[inline(never)]
    fn malformed(what: impl fmt::Display) -> DpopError {
        DpopError::Malformed(what.to_string())
    }

    #[cold]
    #[inline(never)]
    fn method(expected: &str, htm: &str) -> DpopError {
        DpopError::Method {
            expected: expected.to_owned(),
            found: htm.chars().take(32).collect(),
        }
    }

    #[cold]
    #[inline(never)]
    fn url(expected: &str, htu: &str) -> DpopError {
        DpopError::Url {
            expected: normalize_htu(expected),
            found: normalize_htu(htu).chars().take(256).collect(),
        }
    }
}

/// A proof that passed: the key it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopProof {
    /// The RFC 7638 thumbprint of the proof's key (base64url SHA-256): what a bound
    /// token's `cnf.jkt` must equal.
    pub jkt: Arc<str>,
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
    headers: checked::Checked<ProofHeader>,
    /// The access tokens checked, by the `ath` found to be their hash: one per token,
    /// hashed once.
    tokens: checked::Checked<str>,
    /// The key nonces are sealed with.
    nonce_key: aws_lc_rs::hmac::Key,
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("options", &self.options)
            .field("seen", &self.seen.len())
            .field("headers", &self.headers.len())
            .field("tokens", &self.tokens.len())
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
            headers: checked::Checked::new(CHECKED_CACHE_BYTES, HEADER_OVERHEAD_BYTES),
            tokens: checked::Checked::new(CHECKED_CACHE_BYTES, TOKEN_OVERHEAD_BYTES),
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
    #[inline(never)]
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
            return Err(DpopError::malformed(format_args!(
                "longer than {MAX_PROOF_BYTES} bytes"
            )));
        }
        let [h, p, s] = split_compact(proof).map_err(DpopError::malformed)?;
        // A client sends the same header (its key) with every proof: checked once, then
        // taken from the cache by its text.
        let (header, cached) = match self.headers.get(h) {
            Some(header) => (header, true),
            None => (Arc::new(self.read_header(h)?), false),
        };
        // Decoded on the stack (a proof is small): the signature, the payload and `ath`.
        // 144 bytes: an ECDSA or EdDSA signature (RSA's go to the heap).
        let (mut stack, mut heap) = ([0_u8; 144], Vec::new());
        let signature = decode_b64(s, &mut stack, &mut heap)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DpopError::malformed("the signature is not base64url"))?;
        if !header
            .key
            .verify(&proof.as_bytes()[..h.len() + 1 + p.len()], signature)
        {
            return Err(DpopError::Signature);
        }
        // Kept only once its key has signed something (the cache is bounded in bytes).
        if !cached {
            self.headers.insert(h, Arc::clone(&header), 0);
        }
        let (mut stack, mut heap) = ([0_u8; 512], Vec::new());
        let payload = decode_b64(p, &mut stack, &mut heap)
            .ok_or_else(|| DpopError::malformed("the payload is not base64url"))?;
        let claims = ProofClaims::read(payload).map_err(DpopError::malformed)?;
        let jti = required(&claims.jti, "jti")?;
        let htm = required(&claims.htm, "htm")?;
        if htm != method {
            return Err(DpopError::method(method, htm));
        }
        let htu = required(&claims.htu, "htu")?;
        if !same_htu(url, htu) {
            return Err(DpopError::url(url, htu));
        }
        let iat = claims
            .iat
            .ok_or_else(|| DpopError::malformed("no integer \"iat\""))?;
        let now = self.options.clock.now_unix();
        let window = i64::try_from(self.options.window.as_secs()).unwrap_or(i64::MAX);
        if iat < now.saturating_sub(window) || iat > now.saturating_add(window) {
            return Err(DpopError::Time { iat, now });
        }
        if let Some(token) = access_token {
            let ath = claims.ath.as_deref().unwrap_or_default();
            // The same token as a proof before, with the same `ath`, or hashed now. Compared
            // in constant time: the kept token is a secret, and the `ath` the caller's.
            let same = |kept: &str| same_in_constant_time(kept.as_bytes(), token.as_bytes());
            if !self.tokens.holds(ath, same) {
                if !ath_is_hash_of(ath, token) {
                    return Err(DpopError::AccessTokenHash);
                }
                if token.len() <= MAX_CACHED_TOKEN_BYTES {
                    self.tokens.insert(ath, Arc::from(token), token.len());
                }
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
        let replay_id = replay_id(&header.thumbprint, jti);
        Ok(DpopProof {
            jkt: Arc::clone(&header.jkt),
            alg: header.alg,
            iat,
            replay_id,
        })
    }

    /// Checks a proof's header (`h`, base64url): `typ`, `alg`, no `crit`, a public `jwk`
    /// of `alg`; its key, parsed, and the key's thumbprint.
    #[inline(never)]
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
        let thumbprint = thumbprint_digest(jwk).map_err(DpopError::Key)?;
        Ok(ProofHeader {
            alg,
            key,
            jkt: URL_SAFE_NO_PAD.encode(thumbprint).into(),
            thumbprint,
        })
    }
}

/// A claim that must be a non-empty string.
fn required<'c>(value: &'c Option<Cow<'_, str>>, name: &'static str) -> Result<&'c str, DpopError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DpopError::malformed(format_args!("no \"{name}\" string")))
}

/// What the replay cache remembers of a proof: the SHA-256 of its key's thumbprint (fixed in
/// length) and its `jti`, hashed in one call from a stack buffer when the `jti` is short.
fn replay_id(thumbprint: &[u8; 32], jti: &str) -> [u8; 32] {
    let mut buffer = [0_u8; 128];
    let hash = match buffer.get_mut(32..32 + jti.len()) {
        Some(tail) => {
            tail.copy_from_slice(jti.as_bytes());
            buffer[..32].copy_from_slice(thumbprint);
            digest(&SHA256, &buffer[..32 + jti.len()])
        }
        None => {
            let mut context = aws_lc_rs::digest::Context::new(&SHA256);
            context.update(thumbprint);
            context.update(jti.as_bytes());
            context.finish()
        }
    };
    let mut id = [0_u8; 32];
    id.copy_from_slice(hash.as_ref());
    id
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only: every byte
/// is compared, without an early exit (which also lets the comparison run many bytes at a
/// time).
fn same_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .fold(0_u8, |differ, (x, y)| differ | (x ^ y))
            == 0
}

/// Whether `ath` is the SHA-256 of `token`, base64url-encoded (compared as bytes: the claim
/// decoded, not the hash encoded).
fn ath_is_hash_of(ath: &str, token: &str) -> bool {
    let hash = digest(&SHA256, token.as_bytes());
    let (mut stack, mut heap) = ([0_u8; 48], Vec::new());
    decode_b64(ath, &mut stack, &mut heap) == Some(hash.as_ref())
}

/// `text` (base64url) decoded into `stack` when it fits, else into `heap`.
fn decode_b64<'b>(text: &str, stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    // Room for three bytes per four characters, rounded up: whatever the text decodes to.
    if text.len() / 4 * 3 + 3 <= stack.len() {
        let n = URL_SAFE_NO_PAD.decode_slice(text, stack).ok()?;
        Some(&stack[..n])
    } else {
        decode_to_heap(text, heap)
    }
}

/// [`decode_b64`] for what does not fit on the stack (an RSA signature, a long payload).
#[cold]
#[inline(never)]
fn decode_to_heap<'b>(text: &str, heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    *heap = b64url_decode(text)?;
    Some(heap)
}

/// A proof header that passed [`DpopVerifier::read_header`]: what every proof with the
/// same header shares.
struct ProofHeader {
    alg: Algorithm,
    key: super::Key,
    jkt: Arc<str>,
    /// The digest `jkt` encodes.
    thumbprint: [u8; 32],
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
    if jkt == Some(&*proof.jkt) {
        Ok(())
    } else {
        Err(DpopError::Binding)
    }
}

mod checked;
mod claims;
mod htu;
mod options;
mod replay;
mod signer;
mod thumbprint;
pub use htu::normalize_htu;
pub use options::DpopOptions;
pub use signer::{DpopKey, DpopKeyError};
pub use thumbprint::jwk_thumbprint;

#[cfg(test)]
mod tests;
