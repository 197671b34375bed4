//! Why a key or key set was refused when it was loaded: [`KeyError`], naming the key by
//! [`KeyName`].
//!
//! Defined here, on the ground floor, because [`ConfigError`](super::ConfigError) carries
//! it; users find both at `rmcp_authz::token`. Each message says which key failed which
//! check, in words an operator can act on, and never contains secret key material.

use std::fmt;

use crate::algorithm::Algorithm;

/// Names a key in a key-loading error: by `kid`, or by position when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyName {
    /// The key's `kid`.
    Kid(String),
    /// The key's index in its JWK Set (from 0), for keys without a `kid`.
    Index(usize),
    /// A single key without a `kid` (a PEM file, a secret).
    Unnamed,
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyName::Kid(kid) => write!(f, "key {kid:?}"),
            KeyName::Index(i) => write!(f, "key #{i} (no kid)"),
            KeyName::Unnamed => f.write_str("key (no kid)"),
        }
    }
}

/// Why a key or key set was refused when it was loaded.
///
/// Each variant names the key, so a JWK Set with one bad entry points at that entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The path that was opened.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The document is not valid JSON, or not a JWK / JWK Set object.
    #[error("not a valid JWK document: {reason}")]
    Json {
        /// What the parser said.
        reason: String,
    },
    /// The PEM document could not be used.
    #[error("cannot use PEM key: {reason}")]
    Pem {
        /// What was wrong.
        reason: String,
    },
    /// A required JWK member is absent.
    #[error("{key}: missing member {member:?}")]
    MissingMember {
        /// The key.
        key: KeyName,
        /// The member name (`kty`, `n`, `x`, ...).
        member: &'static str,
    },
    /// A JWK member has the wrong type or an unusable value.
    #[error("{key}: member {member:?} {reason}")]
    InvalidMember {
        /// The key.
        key: KeyName,
        /// The member name.
        member: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The key type (`kty`) is not one this crate verifies with.
    #[error("{key}: unsupported key type {kty:?} (supported: RSA, EC, OKP, oct)")]
    UnsupportedKeyType {
        /// The key.
        key: KeyName,
        /// The `kty` value.
        kty: String,
    },
    /// The key's algorithm is not a signature algorithm this crate verifies.
    #[error("{key}: unsupported algorithm {alg:?}")]
    UnsupportedAlgorithm {
        /// The key.
        key: KeyName,
        /// The `alg` value.
        alg: String,
    },
    /// The key's algorithm does not fit its type or curve (RSA key with `ES256`, P-384 key
    /// with `ES256`, ...).
    #[error("{key}: algorithm {alg} does not fit a {key_type} key")]
    AlgorithmKeyMismatch {
        /// The key.
        key: KeyName,
        /// The algorithm the key was to be bound to.
        alg: Algorithm,
        /// The key's type and curve, as found.
        key_type: String,
    },
    /// An RSA or `oct` key has no `alg` and none was stated when it was added.
    #[error(
        "{key}: a {kty} key without \"alg\" could be used with several algorithms; give it an \"alg\" or load it with a default algorithm"
    )]
    MissingAlgorithm {
        /// The key.
        key: KeyName,
        /// The key type.
        kty: &'static str,
    },
    /// The JWK says `use` is something other than `sig`.
    #[error("{key}: \"use\" is {use_:?}, only signature keys (\"sig\") can verify tokens")]
    NotForSignatures {
        /// The key.
        key: KeyName,
        /// The `use` value.
        use_: String,
    },
    /// The JWK's `key_ops` do not include `verify`.
    #[error("{key}: \"key_ops\" {ops:?} does not include \"verify\"")]
    KeyOpsWithoutVerify {
        /// The key.
        key: KeyName,
        /// The `key_ops` values.
        ops: Vec<String>,
    },
    /// The JWK's `crv` does not fit the key or its algorithm.
    #[error("{key}: {reason}")]
    CurveMismatch {
        /// The key.
        key: KeyName,
        /// What did not fit.
        reason: String,
    },
    /// A public JWK carries private key members (`d`, `p`, ...): a verifier needs only the
    /// public key, and a set that contains private keys has been published by mistake.
    #[error(
        "{key}: contains private key material ({member:?}); give the verifier only public keys, and rotate this key if the document was published"
    )]
    PrivateKeyMaterial {
        /// The key.
        key: KeyName,
        /// The first private member found.
        member: &'static str,
    },
    /// The RSA modulus is shorter than 2048 bits (RFC 7518 section 3.3) or absurdly long.
    #[error("{key}: RSA modulus of {bits} bits is outside the accepted 2048..=8192 bits")]
    RsaKeySize {
        /// The key.
        key: KeyName,
        /// The modulus length in bits.
        bits: usize,
    },
    /// The RSA public exponent is even, 1, or too large.
    #[error("{key}: RSA public exponent is not an odd number between 3 and 2^32")]
    RsaExponent {
        /// The key.
        key: KeyName,
    },
    /// The RSA modulus has the fingerprint of keys made by the flawed Infineon generator
    /// (ROCA, CVE-2017-15361): its private key can be recovered.
    #[error("{key}: RSA key is vulnerable to ROCA (CVE-2017-15361) and must be replaced")]
    RsaRoca {
        /// The key.
        key: KeyName,
    },
    /// The HMAC secret is shorter than the hash output (RFC 7518 section 3.2).
    #[error(
        "{key}: {alg} secret is {len} bytes, at least {min} are required (RFC 7518 section 3.2)"
    )]
    HmacKeyTooShort {
        /// The key.
        key: KeyName,
        /// The algorithm.
        alg: Algorithm,
        /// The secret's length in bytes.
        len: usize,
        /// The minimum length in bytes.
        min: usize,
    },
    /// The public key bytes were refused by the cryptographic library (a point not on the
    /// curve, an inconsistent RSA key, ...).
    #[error("{key}: not a valid {alg} public key")]
    InvalidPublicKey {
        /// The key.
        key: KeyName,
        /// The algorithm it was to be used with.
        alg: Algorithm,
    },
    /// Two keys in one set share a `kid`, so a token's `kid` could not pick one key.
    #[error("duplicate kid {kid:?}: every key in a set needs its own kid")]
    DuplicateKid {
        /// The repeated key id.
        kid: String,
    },
    /// A set would hold both shared secrets and public keys. Keep them apart: a JWK Set
    /// published by an issuer never contains secrets, and one verifier trusting both kinds
    /// invites algorithm-confusion mistakes (RFC 8725 section 2.1).
    #[error(
        "{key}: a key set cannot mix HMAC secrets and public keys; configure one verifier per kind"
    )]
    MixedKeyKinds {
        /// The key that would have mixed the set.
        key: KeyName,
    },
}
