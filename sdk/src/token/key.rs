//! Verification keys: each bound to exactly one algorithm (RFC 8725 section 3.1).
//!
//! A [`Key`] is made from a PEM document, a JWK, or an HMAC secret, and is checked when it
//! is made: RSA moduli of at least 2048 bits with a sane exponent and no ROCA fingerprint,
//! EC points on the curve their algorithm names, HMAC secrets at least as long as the hash
//! (RFC 7518 section 3.2). A key that passes is parsed once and reused for every token.
//! [`KeySet`] (in `keyset.rs`) groups keys and picks one for a token by `kid`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, KeyPair, ParsedPublicKey, VerificationAlgorithm};
use aws_lc_rs::{hmac, rsa};

use super::{Algorithm, roca};
use crate::algorithm::KeyFamily;
use crate::error::{KeyError, KeyName};

/// A key that verifies token signatures with exactly one [`Algorithm`].
///
/// Cloning is cheap (the parsed key is shared). `Debug` shows the `kid` and algorithm,
/// never key material.
///
/// ```
/// use rmcp_authz::token::{Algorithm, Key};
/// let key = Key::hmac([7u8; 32], Algorithm::HS256)?.with_kid("shared-1");
/// assert_eq!(key.kid(), Some("shared-1"));
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert!(Key::hmac([7u8; 16], Algorithm::HS256).is_err()); // too short
/// # Ok::<(), rmcp_authz::token::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Algorithm,
    material: Arc<Material>,
}

enum Material {
    Public(ParsedPublicKey),
    Secret(Box<hmac::Key>),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field(
                "material",
                &match *self.material {
                    Material::Public(_) => "public key",
                    Material::Secret(_) => "[secret redacted]",
                },
            )
            .finish()
    }
}

impl Key {
    /// A key from a PEM document, bound to `alg`.
    ///
    /// Accepted labels: `PUBLIC KEY` (SubjectPublicKeyInfo, any key type), `RSA PUBLIC KEY`
    /// (PKCS#1), and `PRIVATE KEY` (PKCS#8, of which only the public half is kept).
    ///
    /// # Errors
    /// [`KeyError::Pem`] when the document is not PEM or has another label;
    /// [`KeyError::InvalidPublicKey`] when the key does not fit `alg`; the RSA checks of
    /// [`KeyError::RsaKeySize`], [`KeyError::RsaExponent`] and [`KeyError::RsaRoca`].
    pub fn from_pem(pem: impl AsRef<[u8]>, alg: Algorithm) -> Result<Key, KeyError> {
        let doc = pem::parse(pem.as_ref()).map_err(|e| KeyError::Pem {
            reason: e.to_string(),
        })?;
        let der = doc.contents();
        let name = KeyName::Unnamed;
        let invalid = || KeyError::InvalidPublicKey {
            key: KeyName::Unnamed,
            alg,
        };
        match (doc.tag(), alg.family()) {
            (_, KeyFamily::Hmac) => Err(KeyError::AlgorithmKeyMismatch {
                key: name,
                alg,
                key_type: format!("PEM {}", doc.tag()),
            }),
            ("PUBLIC KEY" | "RSA PUBLIC KEY", KeyFamily::Rsa) => {
                let public = rsa::PublicKey::from_der(der).map_err(|_| invalid())?;
                let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(&public);
                Key::rsa(name, &components.n, &components.e, alg)
            }
            ("PUBLIC KEY", KeyFamily::Ec | KeyFamily::Okp) => Key::public(name, der, alg),
            ("PRIVATE KEY", family) => {
                let public = public_half_of_pkcs8(der, alg, family).ok_or_else(invalid)?;
                match family {
                    KeyFamily::Rsa => {
                        let public = rsa::PublicKey::from_der(&public).map_err(|_| invalid())?;
                        let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(&public);
                        Key::rsa(name, &c.n, &c.e, alg)
                    }
                    _ => Key::public(name, &public, alg),
                }
            }
            (tag, _) => Err(KeyError::Pem {
                reason: format!(
                    "label {tag:?} does not hold a {alg} key; expected PUBLIC KEY, RSA PUBLIC KEY or PRIVATE KEY"
                ),
            }),
        }
    }

    /// [`Key::from_pem`] on the contents of a file.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be read, then as [`Key::from_pem`].
    pub fn from_pem_file(path: impl AsRef<Path>, alg: Algorithm) -> Result<Key, KeyError> {
        Key::from_pem(read_file(path.as_ref())?, alg)
    }

    /// An HMAC key (`HS256`, `HS384` or `HS512`) from a shared secret.
    ///
    /// # Errors
    /// [`KeyError::AlgorithmKeyMismatch`] when `alg` is not an HMAC algorithm;
    /// [`KeyError::HmacKeyTooShort`] when the secret is shorter than the hash output.
    pub fn hmac(secret: impl AsRef<[u8]>, alg: Algorithm) -> Result<Key, KeyError> {
        Key::secret(KeyName::Unnamed, secret.as_ref(), alg)
    }

    /// A key from one JWK (RFC 7517), checked as described in [`KeySet`](super::KeySet).
    ///
    /// # Errors
    /// Any [`KeyError`] that names what is wrong with the JWK.
    pub fn from_jwk(json: &str) -> Result<Key, KeyError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| KeyError::Json {
            reason: e.to_string(),
        })?;
        super::jwk::key_from_jwk(&value, KeyName::Unnamed, None)
    }

    /// The same key with `kid` as its key id.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Key {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// True for HMAC secrets.
    pub fn is_symmetric(&self) -> bool {
        matches!(*self.material, Material::Secret(_))
    }

    /// Checks `signature` over `message` (constant time for HMAC).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &*self.material {
            Material::Public(key) => key.verify_sig(message, signature).is_ok(),
            Material::Secret(key) => hmac::verify(key, message, signature).is_ok(),
        }
    }

    pub(crate) fn name(&self) -> KeyName {
        match &self.kid {
            Some(kid) => KeyName::Kid(kid.clone()),
            None => KeyName::Unnamed,
        }
    }

    /// An HMAC key; `name` is used in errors.
    pub(crate) fn secret(name: KeyName, secret: &[u8], alg: Algorithm) -> Result<Key, KeyError> {
        let hash = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => {
                return Err(KeyError::AlgorithmKeyMismatch {
                    key: name,
                    alg,
                    key_type: "shared secret".to_owned(),
                });
            }
        };
        let min = alg.min_hmac_key_len();
        if secret.len() < min {
            return Err(KeyError::HmacKeyTooShort {
                key: name,
                alg,
                len: secret.len(),
                min,
            });
        }
        Ok(Key::new(
            name,
            alg,
            Material::Secret(Box::new(hmac::Key::new(hash, secret))),
        ))
    }

    /// An RSA key from its big-endian modulus and exponent, after the size, exponent and
    /// ROCA checks.
    pub(crate) fn rsa(name: KeyName, n: &[u8], e: &[u8], alg: Algorithm) -> Result<Key, KeyError> {
        if alg.family() != KeyFamily::Rsa {
            return Err(KeyError::AlgorithmKeyMismatch {
                key: name,
                alg,
                key_type: "RSA".to_owned(),
            });
        }
        let n = strip_leading_zeros(n);
        let bits = bit_length(n);
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError::RsaKeySize { key: name, bits });
        }
        let e = strip_leading_zeros(e);
        let exponent_ok = e.len() <= 4
            && e.last().is_some_and(|b| b & 1 == 1)
            && e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) >= 3;
        if !exponent_ok {
            return Err(KeyError::RsaExponent { key: name });
        }
        if roca::has_fingerprint(n) {
            return Err(KeyError::RsaRoca { key: name });
        }
        let params = rsa_params(alg);
        let parsed = sig::RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .map_err(|_| KeyError::InvalidPublicKey {
                key: name.clone(),
                alg,
            })?;
        Ok(Key::new(name, alg, Material::Public(parsed)))
    }

    /// An EC or Ed25519 key from SubjectPublicKeyInfo DER or raw public key bytes (an
    /// uncompressed SEC1 point, or the 32 Ed25519 bytes); the point is checked.
    pub(crate) fn public(name: KeyName, bytes: &[u8], alg: Algorithm) -> Result<Key, KeyError> {
        let verification: &'static dyn VerificationAlgorithm = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            _ => {
                return Err(KeyError::AlgorithmKeyMismatch {
                    key: name,
                    alg,
                    key_type: "EC or OKP".to_owned(),
                });
            }
        };
        let parsed =
            ParsedPublicKey::new(verification, bytes).map_err(|_| KeyError::InvalidPublicKey {
                key: name.clone(),
                alg,
            })?;
        Ok(Key::new(name, alg, Material::Public(parsed)))
    }

    fn new(name: KeyName, alg: Algorithm, material: Material) -> Key {
        let kid = match name {
            KeyName::Kid(kid) => Some(kid),
            KeyName::Index(_) | KeyName::Unnamed => None,
        };
        Key {
            kid,
            alg,
            material: Arc::new(material),
        }
    }
}

fn rsa_params(alg: Algorithm) -> &'static sig::RsaParameters {
    match alg {
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => &sig::RSA_PKCS1_2048_8192_SHA256,
    }
}

/// The public key bytes inside a PKCS#8 private key of the family `alg` needs: PKCS#1 DER
/// for RSA, the SEC1 point for EC, the raw 32 bytes for Ed25519.
fn public_half_of_pkcs8(der: &[u8], alg: Algorithm, family: KeyFamily) -> Option<Vec<u8>> {
    match family {
        KeyFamily::Rsa => sig::RsaKeyPair::from_pkcs8(der)
            .ok()
            .map(|k| k.public_key().as_ref().to_vec()),
        KeyFamily::Ec => {
            let signing = match alg {
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                _ => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            };
            sig::EcdsaKeyPair::from_pkcs8(signing, der)
                .ok()
                .map(|k| k.public_key().as_ref().to_vec())
        }
        KeyFamily::Okp => sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .ok()
            .map(|k| k.public_key().as_ref().to_vec()),
        KeyFamily::Hmac => None,
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bit_length(unsigned_be: &[u8]) -> usize {
    match unsigned_be.first() {
        None => 0,
        Some(&top) => unsigned_be.len() * 8 - top.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_from_the_top_set_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(strip_leading_zeros(&[0, 0, 0x01, 0xff])), 9);
    }

    #[test]
    fn hmac_secret_shorter_than_hash_is_refused() {
        for (alg, min) in [
            (Algorithm::HS256, 32),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            let err = Key::hmac(vec![1u8; min - 1], alg).unwrap_err();
            assert!(
                matches!(err, KeyError::HmacKeyTooShort { len, .. } if len == min - 1),
                "{err}"
            );
            assert!(Key::hmac(vec![1u8; min], alg).is_ok());
        }
    }

    #[test]
    fn hmac_secret_with_rsa_algorithm_is_refused() {
        let err = Key::hmac([1u8; 64], Algorithm::RS256).unwrap_err();
        assert!(
            matches!(err, KeyError::AlgorithmKeyMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_secret_bytes() {
        let key = Key::hmac([0x41u8; 32], Algorithm::HS256).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(!shown.contains("65"), "{shown}");
    }

    #[test]
    fn hmac_verify_is_exact() {
        let key = Key::hmac([9u8; 32], Algorithm::HS256).unwrap();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[9u8; 32]), b"msg");
        assert!(key.verify(b"msg", tag.as_ref()));
        assert!(!key.verify(b"msh", tag.as_ref()));
        assert!(!key.verify(b"msg", &tag.as_ref()[..31]));
    }

    #[test]
    fn rsa_small_modulus_and_bad_exponents_are_refused() {
        let n1024 = [0xC5u8; 128];
        let err = Key::rsa(KeyName::Unnamed, &n1024, &[1, 0, 1], Algorithm::RS256).unwrap_err();
        assert!(
            matches!(err, KeyError::RsaKeySize { bits: 1024, .. }),
            "{err}"
        );
        let n2048 = [0xC5u8; 256];
        for e in [&[1u8][..], &[2], &[0, 0, 0], &[1, 0, 0, 0, 1]] {
            let err = Key::rsa(KeyName::Unnamed, &n2048, e, Algorithm::RS256).unwrap_err();
            assert!(matches!(err, KeyError::RsaExponent { .. }), "{e:?}: {err}");
        }
    }

    #[test]
    fn pem_with_hmac_algorithm_is_refused() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = Key::from_pem(pem, Algorithm::HS256).unwrap_err();
        assert!(
            matches!(err, KeyError::AlgorithmKeyMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn pem_certificate_label_is_refused_with_guidance() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = Key::from_pem(pem, Algorithm::RS256).unwrap_err();
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    }

    #[test]
    fn missing_pem_file_names_the_path() {
        let err = Key::from_pem_file("/nonexistent/key.pem", Algorithm::ES256).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
    }
}
