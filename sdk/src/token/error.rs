//! Why a token was refused ([`AuthError`]) and why a key was refused ([`KeyError`]).
//!
//! Both say which check failed in words an operator can act on, carry the values that were
//! compared, and never contain the token itself. `AuthError` maps onto the RFC 6750 error
//! codes a resource server sends back ([`AuthError::error_code`]).

use std::fmt;

use super::Algorithm;

/// Why a bearer token was not accepted.
///
/// Display text is lowercase, names the failed check and the values compared, and never
/// contains the token. Values that came from the token (an issuer, an audience) are shown
/// escaped with `{:?}` and truncated, because they are attacker-controlled.
///
/// ```
/// use rmcp_authz::token::AuthError;
/// let e = AuthError::Expired { exp: 1_000, now: 5_000, leeway_secs: 30 };
/// assert_eq!(e.error_code(), "invalid_token");
/// assert!(e.to_string().contains("expired"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not a well-formed JWS compact serialization or JWT.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What was wrong with the shape of the token.
        reason: String,
    },
    /// The token is longer than the configured maximum; it was not decoded at all.
    #[error(
        "token too large: {size} bytes, the limit is {limit} bytes (raise it with max_token_bytes if your issuer mints large tokens)"
    )]
    TooLarge {
        /// The token's length in bytes.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The header says `alg: none` (in any spelling): unsigned tokens are never accepted.
    #[error("unsigned token (alg {alg:?}): unsigned tokens are never accepted")]
    Unsigned {
        /// The `alg` value as written.
        alg: String,
    },
    /// The header's `alg` is not one this verifier is configured to accept.
    #[error("algorithm {alg:?} is not allowed; this verifier accepts {allowed}")]
    AlgorithmNotAllowed {
        /// The `alg` value as written (truncated).
        alg: String,
        /// The allow-list, comma separated.
        allowed: String,
    },
    /// The key named by `kid` is bound to a different algorithm than the token uses
    /// (RFC 8725 section 3.1: one key, one algorithm).
    #[error(
        "key {kid:?} is bound to {key_alg} but the token says {token_alg}; a key is only ever used with its own algorithm"
    )]
    AlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The algorithm the key is bound to.
        key_alg: Algorithm,
        /// The algorithm the token's header names.
        token_alg: Algorithm,
    },
    /// No configured key matches the token's `kid` (or, without a `kid`, its algorithm).
    #[error("{}", unknown_key_text(.kid.as_deref(), *.alg))]
    UnknownKey {
        /// The `kid` from the header, if any (truncated).
        kid: Option<String>,
        /// The algorithm from the header.
        alg: Algorithm,
    },
    /// The signature does not verify with the selected key.
    #[error("bad signature: the token was not signed by the key {kid:?} it names, or was altered")]
    BadSignature {
        /// The key id of the key used, or "(no kid)".
        kid: String,
    },
    /// The header's `typ` is not `at+jwt` (RFC 9068 section 4), so this may be another kind
    /// of JWT (an ID token, a logout token) presented as an access token.
    #[error("{}", wrong_type_text(.found.as_deref()))]
    WrongType {
        /// The `typ` value found, if any (truncated).
        found: Option<String>,
    },
    /// The header lists critical extensions this verifier does not understand
    /// (RFC 7515 section 4.1.11).
    #[error("unsupported critical header parameters {params:?}")]
    UnsupportedCritical {
        /// The names listed in `crit` (truncated).
        params: Vec<String>,
    },
    /// A required claim is absent.
    #[error("missing required claim {claim:?}")]
    MissingClaim {
        /// The claim name.
        claim: String,
    },
    /// A claim is present but has the wrong JSON type or an unusable value.
    #[error("invalid claim {claim:?}: {reason}")]
    InvalidClaim {
        /// The claim name.
        claim: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An identity claim is an empty string: `sub`, `client_id`, `azp`, or an actor's
    /// `sub`, `client_id` or `iss` (named `act.sub`, ...). It names no one, and a tool
    /// would see an empty identity where it expects someone.
    #[error(
        "empty claim {claim:?}: an identity claim must name someone; the issuer minted a malformed token, fix its claim mapping"
    )]
    EmptyClaim {
        /// The claim name (`act.sub` for an actor's).
        claim: String,
    },
    /// `iss` is not exactly the configured issuer.
    #[error("wrong issuer: expected {expected:?}, the token says {found:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss` (truncated).
        found: String,
    },
    /// `aud` does not contain this resource server's URI (RFC 8707, RFC 9068 section 4).
    #[error("wrong audience: this resource is {expected:?}, the token is for {found:?}")]
    WrongAudience {
        /// The configured resource URI.
        expected: String,
        /// The token's audiences (truncated).
        found: Vec<String>,
    },
    /// `exp` is in the past, beyond the leeway.
    #[error(
        "token expired: exp {exp} is {} s before now ({now}), beyond the {leeway_secs} s leeway; get a new token",
        .now.saturating_sub(*.exp)
    )]
    Expired {
        /// The token's `exp`, seconds since the epoch.
        exp: i64,
        /// The verifier's time, seconds since the epoch.
        now: i64,
        /// The configured leeway in seconds.
        leeway_secs: u64,
    },
    /// `nbf` is in the future, beyond the leeway.
    #[error(
        "token not yet valid: nbf {nbf} is {} s after now ({now}), beyond the {leeway_secs} s leeway; check the clocks",
        .nbf.saturating_sub(*.now)
    )]
    NotYetValid {
        /// The token's `nbf`, seconds since the epoch.
        nbf: i64,
        /// The verifier's time, seconds since the epoch.
        now: i64,
        /// The configured leeway in seconds.
        leeway_secs: u64,
    },
    /// `iat` is in the future, beyond the leeway. RFC 7519 does not require this check; a
    /// token dated ahead of the clock was minted by a clock that cannot be trusted, or
    /// forged to look fresher than it is, and would pass every age limit.
    #[error(
        "token issued in the future: iat {iat} is {} s after now ({now}), beyond the {leeway_secs} s leeway; check the clocks",
        .iat.saturating_sub(*.now)
    )]
    IssuedInFuture {
        /// The token's `iat`, seconds since the epoch.
        iat: i64,
        /// The verifier's time, seconds since the epoch.
        now: i64,
        /// The configured leeway in seconds.
        leeway_secs: u64,
    },
    /// The issuer's keys (or its introspection endpoint) cannot be reached, so the token
    /// cannot be checked now. Not the token's fault: the HTTP layer answers 503.
    #[error("cannot verify tokens now: {reason}")]
    KeysUnavailable {
        /// What failed (the URL and the error; never the token).
        reason: String,
    },
    /// The introspection endpoint says the token is not active (revoked, expired, or
    /// unknown to it).
    #[error("the token is not active (introspection)")]
    Inactive,
    /// The token's `jti` is on the application's revocation list.
    #[error("the token was revoked (jti {jti:?})")]
    Revoked {
        /// The revoked `jti` (truncated).
        jti: String,
    },
}

fn unknown_key_text(kid: Option<&str>, alg: Algorithm) -> String {
    match kid {
        Some(kid) => format!(
            "unknown key: no configured key has kid {kid:?} (the issuer may have rotated its keys)"
        ),
        None => format!(
            "unknown key: the token has no kid and no single configured {alg} key can be chosen"
        ),
    }
}

fn wrong_type_text(found: Option<&str>) -> String {
    match found {
        Some(t) => format!(
            "wrong token type: typ is {t:?}, an access token must say \"at+jwt\" (RFC 9068); if your issuer does not type its tokens, relax the check with TypCheck::Lenient"
        ),
        None => "wrong token type: typ is missing, an access token must say \"at+jwt\" (RFC 9068); if your issuer does not type its tokens, relax the check with TypCheck::Lenient".to_owned(),
    }
}

/// The coarse kind of an [`AuthError`], for metrics and matching without the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// [`AuthError::Malformed`].
    Malformed,
    /// [`AuthError::TooLarge`].
    TooLarge,
    /// [`AuthError::Unsigned`].
    Unsigned,
    /// [`AuthError::AlgorithmNotAllowed`] and [`AuthError::AlgorithmMismatch`].
    Algorithm,
    /// [`AuthError::UnknownKey`].
    UnknownKey,
    /// [`AuthError::BadSignature`].
    BadSignature,
    /// [`AuthError::WrongType`].
    WrongType,
    /// [`AuthError::UnsupportedCritical`].
    UnsupportedCritical,
    /// [`AuthError::MissingClaim`], [`AuthError::InvalidClaim`] and
    /// [`AuthError::EmptyClaim`].
    Claim,
    /// [`AuthError::WrongIssuer`].
    WrongIssuer,
    /// [`AuthError::WrongAudience`].
    WrongAudience,
    /// [`AuthError::Expired`].
    Expired,
    /// [`AuthError::NotYetValid`] and [`AuthError::IssuedInFuture`].
    NotYetValid,
    /// [`AuthError::KeysUnavailable`].
    KeysUnavailable,
    /// [`AuthError::Inactive`] and [`AuthError::Revoked`].
    Revoked,
}

impl AuthError {
    /// The coarse kind of this error.
    pub fn kind(&self) -> AuthErrorKind {
        match self {
            AuthError::Malformed { .. } => AuthErrorKind::Malformed,
            AuthError::TooLarge { .. } => AuthErrorKind::TooLarge,
            AuthError::Unsigned { .. } => AuthErrorKind::Unsigned,
            AuthError::AlgorithmNotAllowed { .. } | AuthError::AlgorithmMismatch { .. } => {
                AuthErrorKind::Algorithm
            }
            AuthError::UnknownKey { .. } => AuthErrorKind::UnknownKey,
            AuthError::BadSignature { .. } => AuthErrorKind::BadSignature,
            AuthError::WrongType { .. } => AuthErrorKind::WrongType,
            AuthError::UnsupportedCritical { .. } => AuthErrorKind::UnsupportedCritical,
            AuthError::MissingClaim { .. }
            | AuthError::InvalidClaim { .. }
            | AuthError::EmptyClaim { .. } => AuthErrorKind::Claim,
            AuthError::WrongIssuer { .. } => AuthErrorKind::WrongIssuer,
            AuthError::WrongAudience { .. } => AuthErrorKind::WrongAudience,
            AuthError::Expired { .. } => AuthErrorKind::Expired,
            AuthError::NotYetValid { .. } | AuthError::IssuedInFuture { .. } => {
                AuthErrorKind::NotYetValid
            }
            AuthError::KeysUnavailable { .. } => AuthErrorKind::KeysUnavailable,
            AuthError::Inactive | AuthError::Revoked { .. } => AuthErrorKind::Revoked,
        }
    }

    /// The RFC 6750 section 3.1 error code for a `WWW-Authenticate` challenge.
    ///
    /// A token that is too large to even look at makes the request malformed
    /// (`invalid_request`); keys that cannot be had are the server's problem
    /// (`temporarily_unavailable`, answered with 503); every other failure is about the
    /// token (`invalid_token`).
    pub fn error_code(&self) -> &'static str {
        match self {
            AuthError::TooLarge { .. } => "invalid_request",
            AuthError::KeysUnavailable { .. } => "temporarily_unavailable",
            _ => "invalid_token",
        }
    }

    /// A short description for an `error_description` challenge parameter: the failed
    /// check, without any value taken from the token.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::Malformed { .. } => "the access token is malformed",
            AuthError::TooLarge { .. } => "the access token is too large",
            AuthError::Unsigned { .. } => "unsigned access tokens are not accepted",
            AuthError::AlgorithmNotAllowed { .. } => {
                "the token's signature algorithm is not allowed"
            }
            AuthError::AlgorithmMismatch { .. } => "the token's algorithm does not match its key",
            AuthError::UnknownKey { .. } => "the token's signing key is not known",
            AuthError::BadSignature { .. } => "the token's signature is invalid",
            AuthError::WrongType { .. } => "the token is not an access token (typ at+jwt)",
            AuthError::UnsupportedCritical { .. } => "the token uses unsupported critical headers",
            AuthError::MissingClaim { .. } => "the token lacks a required claim",
            AuthError::InvalidClaim { .. } => "the token has an invalid claim",
            AuthError::EmptyClaim { .. } => "the token has an empty identity claim",
            AuthError::WrongIssuer { .. } => "the token was issued by an untrusted issuer",
            AuthError::WrongAudience { .. } => "the token is not meant for this resource",
            AuthError::Expired { .. } => "the access token expired",
            AuthError::NotYetValid { .. } => "the access token is not yet valid",
            AuthError::IssuedInFuture { .. } => "the access token's issue time is in the future",
            AuthError::KeysUnavailable { .. } => {
                "the authorization server's keys cannot be reached; retry later"
            }
            AuthError::Inactive => "the access token is not active",
            AuthError::Revoked { .. } => "the access token was revoked",
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        AuthError::Malformed {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_claim(claim: &str, reason: impl Into<String>) -> Self {
        AuthError::InvalidClaim {
            claim: claim.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Cuts a value that came from a token to a length fit for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

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
