//! The client's half of DPoP (RFC 9449 section 4): [`DpopKey`], the private key an agent
//! holds, and the proofs it signs with it.
//!
//! A proof is a compact JWS with header `{"typ": "dpop+jwt", "alg", "jwk"}` (the public
//! key, nothing private) over the claims `jti` (16 random bytes, base64url), `htm` (the
//! request's method), `htu` (its URL without query and fragment), `iat` (now), and, when
//! given, `ath` (the base64url SHA-256 of the access token it accompanies) and `nonce`
//! (the server's latest `DPoP-Nonce`). The key's RFC 7638 thumbprint is what a bound
//! token's `cnf.jkt` names.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::jwk_thumbprint;
use crate::algorithm::Algorithm;
use crate::clock::{Clock, SystemClock};

/// Why a [`DpopKey`] could not be made or loaded, or could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopKeyError {
    /// The text is not a PEM `PRIVATE KEY` (PKCS#8) document.
    #[error("not a PKCS#8 private key PEM document: {0}")]
    Pem(String),
    /// A PKCS#8 key of a kind DPoP proofs are not signed with here (RSA, another curve).
    #[error(
        "unsupported DPoP key: only P-256 (ES256), P-384 (ES384) and Ed25519 (EdDSA) PKCS#8 keys are supported"
    )]
    Unsupported,
    /// The system's random generator or the signature failed.
    #[error("cannot {0}: the system's cryptography failed")]
    Crypto(&'static str),
}

/// The private key pair.
enum Pair {
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

/// An agent's DPoP key (feature `dpop`): it signs a fresh proof for every request, and
/// tokens bound to it (`cnf.jkt` equal to its [`thumbprint`](DpopKey::thumbprint)) are
/// worthless without it.
///
/// Keep one per agent (share it as an `Arc`), generated at start-up or loaded from a
/// PKCS#8 PEM file so the tokens bound to it outlive a restart. `Debug` shows the
/// algorithm and the thumbprint, never the private key.
///
/// ```
/// use rmcp_authz::token::dpop::{DpopKey, DpopOptions, DpopVerifier};
/// let key = DpopKey::generate()?;
/// let proof = key.proof("POST", "https://mcp.example/mcp?x=1", Some("the-access-token"), None)?;
/// let verifier = DpopVerifier::new(DpopOptions::default());
/// let checked = verifier.check(&proof, "POST", "https://mcp.example/mcp", Some("the-access-token"))?;
/// assert_eq!(&*checked.jkt, key.thumbprint());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DpopKey {
    alg: Algorithm,
    pair: Pair,
    jwk: Map<String, Value>,
    thumbprint: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("DpopKey")
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh ES256 (P-256) key, made in memory.
    ///
    /// # Errors
    /// [`DpopKeyError::Crypto`] if the system's random generator fails.
    pub fn generate() -> Result<DpopKey, DpopKeyError> {
        let pair = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| DpopKeyError::Crypto("generate a P-256 key"))?;
        Self::from_pair(Algorithm::ES256, Pair::Ecdsa(pair))
    }

    /// A key loaded from a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`): EC P-256
    /// signs ES256, P-384 ES384, Ed25519 EdDSA.
    ///
    /// # Errors
    /// [`DpopKeyError::Pem`] for text that is not a `PRIVATE KEY` PEM document;
    /// [`DpopKeyError::Unsupported`] for a key of another kind (RSA, another curve).
    pub fn from_pkcs8_pem(pem: &str) -> Result<DpopKey, DpopKeyError> {
        let doc = pem::parse(pem).map_err(|e| DpopKeyError::Pem(e.to_string()))?;
        if doc.tag() != "PRIVATE KEY" {
            return Err(DpopKeyError::Pem(format!(
                "the label is {:?}, not \"PRIVATE KEY\"",
                crate::error::excerpt(doc.tag())
            )));
        }
        let der = doc.contents();
        for (alg, signing) in [
            (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            if let Ok(pair) = sig::EcdsaKeyPair::from_pkcs8(signing, der) {
                return Self::from_pair(alg, Pair::Ecdsa(pair));
            }
        }
        if let Ok(pair) = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Self::from_pair(Algorithm::EdDSA, Pair::Ed25519(pair));
        }
        Err(DpopKeyError::Unsupported)
    }

    /// The private key as a PKCS#8 PEM document, to store a generated key (keep the file
    /// private: whoever reads it can use every token bound to this key).
    ///
    /// # Errors
    /// [`DpopKeyError::Crypto`] if the key cannot be encoded.
    pub fn to_pkcs8_pem(&self) -> Result<String, DpopKeyError> {
        let der = match &self.pair {
            Pair::Ecdsa(pair) => pair.to_pkcs8v1(),
            Pair::Ed25519(pair) => pair.to_pkcs8v1(),
        }
        .map_err(|_| DpopKeyError::Crypto("encode the key"))?;
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref())))
    }

    fn from_pair(alg: Algorithm, pair: Pair) -> Result<DpopKey, DpopKeyError> {
        let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = Map::new();
        match &pair {
            Pair::Ecdsa(pair) => {
                // The uncompressed SEC1 point: 0x04, x, y.
                let point = pair.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                let crv = if alg == Algorithm::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), crv.into());
                jwk.insert("x".into(), b64(&point[1..=size]));
                jwk.insert("y".into(), b64(&point[1 + size..]));
            }
            Pair::Ed25519(pair) => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(pair.public_key().as_ref()));
            }
        }
        // Every member is there: the thumbprint cannot fail.
        let thumbprint =
            jwk_thumbprint(&jwk).map_err(|_| DpopKeyError::Crypto("compute the thumbprint"))?;
        Ok(DpopKey {
            alg,
            pair,
            jwk,
            thumbprint,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same key, with its proofs' `iat` read from `clock` (default the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> DpopKey {
        self.clock = clock;
        self
    }

    /// The algorithm the proofs are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, and `y` for EC): what each proof's
    /// header carries.
    pub fn public_jwk(&self) -> Value {
        Value::Object(self.jwk.clone())
    }

    /// The key's RFC 7638 thumbprint (base64url SHA-256): the `cnf.jkt` of tokens bound
    /// to it, and the `dpop_jkt` an authorization request may name.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A fresh proof for one request of `method` (`GET`, `POST`, ...) to `url` (its query
    /// and fragment are left out of `htu`), with `ath` when `access_token` is given (every
    /// request to a resource server; none at a token endpoint) and `nonce` when the server
    /// gave one. Each proof has its own `jti`: never send one twice.
    ///
    /// # Errors
    /// [`DpopKeyError::Crypto`] if the random generator or the signature fails.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, DpopKeyError> {
        let mut jti = [0_u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| DpopKeyError::Crypto("make a jti"))?;
        let htu = url.split(['?', '#']).next().unwrap_or_default();
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": htu,
            "iat": self.clock.now_unix(),
        });
        if let Some(token) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(digest(&SHA256, token.as_bytes()))
                .into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let header = json!({
            "typ": "dpop+jwt",
            "alg": self.alg.as_str(),
            "jwk": self.jwk,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.pair {
            Pair::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .map_err(|_| DpopKeyError::Crypto("sign the proof"))?,
            Pair::Ed25519(pair) => pair
                .try_sign(input.as_bytes())
                .map_err(|_| DpopKeyError::Crypto("sign the proof"))?,
        };
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::token::dpop::{DpopError, DpopOptions, DpopVerifier};

    const NOW: i64 = 1_765_000_000;
    const URL: &str = "https://mcp.example.com/mcp";

    fn keys() -> Vec<DpopKey> {
        let p384 = sig::EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let ed = sig::Ed25519KeyPair::generate().unwrap();
        let pem_of = |der: &[u8]| pem::encode(&pem::Pem::new("PRIVATE KEY", der));
        vec![
            DpopKey::generate().unwrap(),
            DpopKey::from_pkcs8_pem(&pem_of(p384.to_pkcs8v1().unwrap().as_ref())).unwrap(),
            DpopKey::from_pkcs8_pem(&pem_of(ed.to_pkcs8v1().unwrap().as_ref())).unwrap(),
        ]
        .into_iter()
        .map(|k| k.clock(Arc::new(ManualClock::new(NOW))))
        .collect()
    }

    fn verifier() -> DpopVerifier {
        DpopVerifier::new(DpopOptions::default().clock(Arc::new(ManualClock::new(NOW))))
    }

    #[test]
    fn every_algorithm_makes_proofs_the_verifier_accepts() {
        let algs: Vec<_> = keys().iter().map(DpopKey::algorithm).collect();
        assert_eq!(algs, [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA]);
        for key in keys() {
            let v = verifier();
            let proof = key
                .proof("POST", &format!("{URL}?q=1#f"), Some("tok"), None)
                .unwrap();
            let checked = v.check(&proof, "POST", URL, Some("tok")).unwrap();
            assert_eq!(&*checked.jkt, key.thumbprint());
            assert_eq!(checked.alg, key.algorithm());
            assert_eq!(checked.iat, NOW);
            // At a token endpoint: no access token, no ath.
            let proof = key.proof("POST", URL, None, None).unwrap();
            assert!(v.check(&proof, "POST", URL, None).is_ok());
        }
    }

    #[test]
    fn the_verifier_refuses_a_proof_for_another_request() {
        for key in keys() {
            let v = verifier();
            let proof = || key.proof("GET", URL, Some("tok"), None).unwrap();
            assert!(matches!(
                v.check(&proof(), "POST", URL, Some("tok")),
                Err(DpopError::Method { .. })
            ));
            assert!(matches!(
                v.check(
                    &proof(),
                    "GET",
                    "https://mcp.example.com/other",
                    Some("tok")
                ),
                Err(DpopError::Url { .. })
            ));
            assert_eq!(
                v.check(&proof(), "GET", URL, Some("another")),
                Err(DpopError::AccessTokenHash)
            );
            let once = proof();
            assert!(v.check(&once, "GET", URL, Some("tok")).is_ok());
            assert_eq!(
                v.check(&once, "GET", URL, Some("tok")),
                Err(DpopError::Replayed)
            );
        }
    }

    #[test]
    fn proofs_carry_the_nonce_a_fresh_jti_and_only_the_public_key() {
        let key = DpopKey::generate().unwrap();
        let part = |proof: &str, i: usize| -> Value {
            let text = proof.split('.').nth(i).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
        };
        let a = key.proof("POST", URL, None, Some("n-1")).unwrap();
        let b = key.proof("POST", URL, None, None).unwrap();
        assert_eq!(part(&a, 1)["nonce"], "n-1");
        assert!(part(&b, 1).get("nonce").is_none() && part(&b, 1).get("ath").is_none());
        assert_ne!(part(&a, 1)["jti"], part(&b, 1)["jti"]);
        let header = part(&a, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["jwk"], key.public_jwk());
        let jwk = key.public_jwk();
        let mut members: Vec<_> = jwk.as_object().unwrap().keys().cloned().collect();
        members.sort();
        assert_eq!(members, ["crv", "kty", "x", "y"]);
    }

    #[test]
    fn a_stored_key_loads_back_as_the_same_key() {
        for key in keys() {
            let again = DpopKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
            assert_eq!(again.thumbprint(), key.thumbprint());
            assert_eq!(again.algorithm(), key.algorithm());
        }
    }

    #[test]
    fn other_keys_and_documents_are_refused_with_a_reason() {
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref()));
        assert_eq!(
            DpopKey::from_pkcs8_pem(&pem_text).unwrap_err(),
            DpopKeyError::Unsupported
        );
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            DpopKey::from_pkcs8_pem(public),
            Err(DpopKeyError::Pem(reason)) if reason.contains("PUBLIC KEY")
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_pem("not pem"),
            Err(DpopKeyError::Pem(_))
        ));
    }

    #[test]
    fn debug_shows_no_private_key() {
        let key = DpopKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.thumbprint()), "{shown}");
        let pem_text = key.to_pkcs8_pem().unwrap();
        let body: String = pem_text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!shown.contains(&body[body.len() - 20..]), "{shown}");
        assert!(!shown.contains("Pair"), "{shown}");
    }
}
