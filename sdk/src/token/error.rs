//! Why a token was refused: [`AuthError`].
//!
//! It says which check failed in words an operator can act on, carries the values that were
//! compared, and never contains the token itself. It maps onto the RFC 6750 error codes a
//! resource server sends back ([`AuthError::error_code`]). Why a key was refused when it
//! was loaded is a [`KeyError`](super::KeyError), defined on the ground floor (`crate::error`)
//! because [`ConfigError`](crate::ConfigError) carries it.

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
    /// The token's subject is on the application's revocation list.
    #[error("the token's subject was revoked (sub {subject:?})")]
    SubjectRevoked {
        /// The revoked `sub` (truncated).
        subject: String,
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
    /// [`AuthError::Inactive`], [`AuthError::Revoked`] and [`AuthError::SubjectRevoked`].
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
            AuthError::Inactive | AuthError::Revoked { .. } | AuthError::SubjectRevoked { .. } => {
                AuthErrorKind::Revoked
            }
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
            AuthError::Revoked { .. } | AuthError::SubjectRevoked { .. } => {
                "the access token was revoked"
            }
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
