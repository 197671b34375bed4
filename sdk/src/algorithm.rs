//! JWS signature algorithms (RFC 7518 section 3, RFC 8037) that this crate verifies.
//!
//! The names are case-sensitive, as RFC 7515 section 4.1.1 says of `alg`; `none` in any
//! spelling is never an algorithm here. ES512 is not offered: the signature backend has no
//! P-521 support, and such keys are refused when loaded rather than silently ignored.

use std::fmt;
use std::str::FromStr;

/// A JWS `alg` value this crate can verify.
///
/// ```
/// use rmcp_authz::token::Algorithm;
/// let alg: Algorithm = "ES256".parse().unwrap();
/// assert_eq!(alg.as_str(), "ES256");
/// assert!(!alg.is_symmetric());
/// assert!("none".parse::<Algorithm>().is_err());
/// assert!("es256".parse::<Algorithm>().is_err()); // case-sensitive
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// HMAC using SHA-256 (shared secret).
    HS256,
    /// HMAC using SHA-384 (shared secret).
    HS384,
    /// HMAC using SHA-512 (shared secret).
    HS512,
    /// RSASSA-PKCS1-v1_5 using SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 using SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 using SHA-512.
    RS512,
    /// RSASSA-PSS using SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS using SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS using SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA using P-256 and SHA-256.
    ES256,
    /// ECDSA using P-384 and SHA-384.
    ES384,
    /// EdDSA using Ed25519 (RFC 8037).
    EdDSA,
}

/// The kind of key an algorithm needs; used to refuse keys that do not fit their algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Hmac,
    Rsa,
    Ec,
    Okp,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The asymmetric (public-key) algorithms: the default allow-list of a verifier.
    pub const ASYMMETRIC: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The registered name, as it appears in a JWS header or a JWK.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// True for the HMAC algorithms, whose key is a shared secret.
    pub fn is_symmetric(self) -> bool {
        self.family() == KeyFamily::Hmac
    }

    pub(crate) fn family(self) -> KeyFamily {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => KeyFamily::Ec,
            Algorithm::EdDSA => KeyFamily::Okp,
        }
    }

    /// The smallest HMAC key RFC 7518 section 3.2 allows: the hash output size.
    pub(crate) fn min_hmac_key_len(self) -> usize {
        match self {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an `alg` name this crate does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JWS algorithm {name:?}")]
pub struct UnknownAlgorithm {
    name: String,
}

impl UnknownAlgorithm {
    /// The name that was not recognised.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
    }

    #[test]
    fn none_is_not_an_algorithm_in_any_spelling() {
        for s in ["none", "None", "NONE", "nOnE", ""] {
            assert!(s.parse::<Algorithm>().is_err(), "{s}");
        }
    }

    #[test]
    fn asymmetric_list_has_no_hmac() {
        assert!(Algorithm::ASYMMETRIC.iter().all(|a| !a.is_symmetric()));
        assert_eq!(
            Algorithm::ALL.iter().filter(|a| a.is_symmetric()).count()
                + Algorithm::ASYMMETRIC.len(),
            Algorithm::ALL.len()
        );
    }

    #[test]
    fn hmac_minimum_is_hash_size() {
        assert_eq!(Algorithm::HS256.min_hmac_key_len(), 32);
        assert_eq!(Algorithm::HS384.min_hmac_key_len(), 48);
        assert_eq!(Algorithm::HS512.min_hmac_key_len(), 64);
    }
}
