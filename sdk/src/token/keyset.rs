//! A set of verification keys, and the choice of one key for a token.
//!
//! A set refuses, when keys are added: two keys with one `kid` (a `kid` must pick exactly one
//! key) and a mix of HMAC secrets with public keys (RFC 8725 section 2.1; an issuer's
//! published set never holds secrets). A token picks its key by `kid`; a token without
//! `kid` is accepted only when exactly one key in the set has its algorithm. The header
//! parameters `jwk`, `jku`, `x5u` and `x5c` are never used to find a key. A key configured
//! without a `kid` (a PEM file, a secret) serves tokens whose `kid` no key in the set has,
//! again only when it is the one such key for the token's algorithm.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::error::AuthError;
use super::{Algorithm, Key, jwk, key::read_file};
use crate::error::{KeyError, KeyName, excerpt};

/// The keys a verifier trusts.
///
/// ```
/// use rmcp_authz::token::{Algorithm, Key, KeySet};
/// let mut keys = KeySet::new();
/// keys.insert(Key::hmac([1u8; 32], Algorithm::HS256)?.with_kid("a"))?;
/// // A second key with the same kid is refused.
/// assert!(keys.insert(Key::hmac([2u8; 32], Algorithm::HS256)?.with_kid("a")).is_err());
/// assert_eq!(keys.len(), 1);
/// # Ok::<(), rmcp_authz::token::KeyError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a JWK Set document (`{"keys": [...]}`) and checks every key in it.
    ///
    /// RSA and `oct` keys must carry `alg`; use [`KeySet::from_jwks_json_with_default_alg`]
    /// for issuers that leave it out.
    ///
    /// # Errors
    /// The first [`KeyError`] found; it names the key by `kid`, or by position.
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        Self::parse_jwks(json, None)
    }

    /// As [`KeySet::from_jwks_json`], binding RSA and `oct` keys that have no `alg` to
    /// `default_alg` (when it fits their type).
    ///
    /// # Errors
    /// As [`KeySet::from_jwks_json`].
    pub fn from_jwks_json_with_default_alg(
        json: &str,
        default_alg: Algorithm,
    ) -> Result<Self, KeyError> {
        Self::parse_jwks(json, Some(default_alg))
    }

    /// [`KeySet::from_jwks_json`] on the contents of a file.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be read, then as [`KeySet::from_jwks_json`].
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let bytes = read_file(path.as_ref())?;
        let text = String::from_utf8(bytes).map_err(|_| KeyError::Json {
            reason: format!("{} is not UTF-8", path.as_ref().display()),
        })?;
        Self::from_jwks_json(&text)
    }

    fn parse_jwks(json: &str, default_alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let doc: Value = serde_json::from_str(json).map_err(|e| KeyError::Json {
            reason: e.to_string(),
        })?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeyError::Json {
                reason: "a JWK Set is an object with a \"keys\" array".to_owned(),
            })?;
        let mut set = KeySet::new();
        for (i, value) in keys.iter().enumerate() {
            set.insert(jwk::key_from_jwk(value, KeyName::Index(i), default_alg)?)?;
        }
        Ok(set)
    }

    /// Adds a key.
    ///
    /// # Errors
    /// [`KeyError::DuplicateKid`] when a key with the same `kid` is present;
    /// [`KeyError::MixedKeyKinds`] when the set holds the other kind of key (secrets vs
    /// public keys).
    pub fn insert(&mut self, key: Key) -> Result<(), KeyError> {
        if let Some(first) = self.keys.first()
            && first.is_symmetric() != key.is_symmetric()
        {
            return Err(KeyError::MixedKeyKinds { key: key.name() });
        }
        if let Some(kid) = key.kid() {
            if self.by_kid.contains_key(kid) {
                return Err(KeyError::DuplicateKid {
                    kid: kid.to_owned(),
                });
            }
            self.by_kid.insert(kid.to_owned(), self.keys.len());
        }
        self.keys.push(key);
        Ok(())
    }

    /// Adds every key of `other`, with the same checks as [`KeySet::insert`].
    ///
    /// # Errors
    /// As [`KeySet::insert`].
    pub fn extend(&mut self, other: KeySet) -> Result<(), KeyError> {
        other.keys.into_iter().try_for_each(|k| self.insert(k))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// True when the set holds HMAC secrets (and so nothing else).
    pub fn is_symmetric(&self) -> bool {
        self.keys.first().is_some_and(Key::is_symmetric)
    }

    /// The key that must verify a token whose header says `kid` and `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, AuthError> {
        let by_kid = kid.and_then(|kid| self.get(kid));
        let key = match by_kid {
            Some(key) => key,
            None => {
                // Without a matching kid, the one key of this algorithm is used: among
                // all keys when the token names no kid, among keys configured without a
                // kid (a PEM file, a secret) when it names one the set does not have.
                let mut candidates = self
                    .keys
                    .iter()
                    .filter(|k| k.algorithm() == alg && (kid.is_none() || k.kid().is_none()));
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => only,
                    _ => {
                        return Err(AuthError::UnknownKey {
                            kid: kid.map(excerpt),
                            alg,
                        });
                    }
                }
            }
        };
        if key.algorithm() != alg {
            return Err(AuthError::AlgorithmMismatch {
                kid: key.kid().unwrap_or("(no kid)").to_owned(),
                key_alg: key.algorithm(),
                token_alg: alg,
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(kid: Option<&str>, alg: Algorithm) -> Key {
        let key = Key::hmac([5u8; 64], alg).unwrap();
        match kid {
            Some(kid) => key.with_kid(kid),
            None => key,
        }
    }

    #[test]
    fn kid_selects_its_key_and_binds_its_algorithm() {
        let mut set = KeySet::new();
        set.insert(secret(Some("a"), Algorithm::HS256)).unwrap();
        set.insert(secret(Some("b"), Algorithm::HS512)).unwrap();
        assert_eq!(
            set.select(Some("b"), Algorithm::HS512).unwrap().kid(),
            Some("b")
        );
        let err = set.select(Some("a"), Algorithm::HS512).unwrap_err();
        assert!(matches!(err, AuthError::AlgorithmMismatch { .. }), "{err}");
        let err = set.select(Some("zzz"), Algorithm::HS256).unwrap_err();
        assert!(
            matches!(err, AuthError::UnknownKey { kid: Some(_), .. }),
            "{err}"
        );
    }

    #[test]
    fn no_kid_needs_exactly_one_key_of_the_algorithm() {
        let mut set = KeySet::new();
        set.insert(secret(None, Algorithm::HS256)).unwrap();
        assert!(set.select(None, Algorithm::HS256).is_ok());
        assert!(set.select(None, Algorithm::HS384).is_err());
        set.insert(secret(Some("second"), Algorithm::HS256))
            .unwrap();
        let err = set.select(None, Algorithm::HS256).unwrap_err();
        assert!(
            matches!(err, AuthError::UnknownKey { kid: None, .. }),
            "{err}"
        );
    }

    #[test]
    fn jwks_without_keys_array_is_refused() {
        for doc in ["{}", "[]", "{\"keys\": 3}", "not json"] {
            assert!(matches!(
                KeySet::from_jwks_json(doc).unwrap_err(),
                KeyError::Json { .. }
            ));
        }
    }

    #[test]
    fn jwks_with_duplicate_kids_is_refused() {
        let doc = r#"{"keys": [
            {"kty": "oct", "alg": "HS256", "kid": "x", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty": "oct", "alg": "HS256", "kid": "x", "k": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#;
        let err = KeySet::from_jwks_json(doc).unwrap_err();
        assert!(matches!(err, KeyError::DuplicateKid { .. }), "{err}");
    }

    #[test]
    fn secrets_and_public_keys_do_not_mix() {
        let doc = r#"{"keys": [
            {"kty": "oct", "alg": "HS256", "kid": "s", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty": "EC", "crv": "P-256", "kid": "p",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let err = KeySet::from_jwks_json(doc).unwrap_err();
        assert!(matches!(err, KeyError::MixedKeyKinds { .. }), "{err}");
    }

    #[test]
    fn bad_key_in_a_set_is_named_by_position() {
        let doc = r#"{"keys": [{"kty": "oct", "alg": "HS256", "k": "AAAA"}]}"#;
        let err = KeySet::from_jwks_json(doc).unwrap_err();
        assert!(err.to_string().contains("#0"), "{err}");
    }
}
