//! [`JwtVerifier`]: JWT access tokens (RFC 9068) checked with safe defaults (RFC 8725).
//!
//! The order of checks is: size (before any decoding), JWS shape, algorithm allow-list,
//! `crit`, key selection by `kid`, signature, `typ`, then the claims. Issuer and audience
//! are given to the builder and can never be skipped.

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;

use super::claims::{self, ClaimRules};
use super::jws::parse_object;
use super::source::{KeySource, StaticKeys};
use super::{Algorithm, AuthError, Key, KeyError, KeySet, Verifier};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, excerpt};
use crate::principal::Principal;

/// The default leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway a verifier accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// The default largest token, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How the `typ` header is checked.
///
/// RFC 9068 section 4 requires resource servers to check that access tokens say
/// `typ: at+jwt`, so an ID token or another signed JWT from the same issuer cannot be
/// replayed as an access token (RFC 8725 section 3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TypCheck {
    /// `typ` must be `at+jwt` or `application/at+jwt` (compared case-insensitively, as
    /// RFC 7515 section 4.1.9 says of media types). The default.
    #[default]
    Strict,
    /// Also accept tokens with no `typ` or `typ: JWT`, for issuers that do not type their
    /// access tokens. Other explicit types (`id_token+jwt`, `dpop+jwt`, ...) stay refused.
    Lenient,
}

impl TypCheck {
    fn check(self, typ: Option<&str>) -> Result<(), AuthError> {
        // Compared without allocating: `typ` is read on every verification.
        let ok = match typ {
            None => self == TypCheck::Lenient,
            Some(t) => {
                let media = match t.get(..PREFIX.len()) {
                    Some(head) if head.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
                    _ => t,
                };
                media.eq_ignore_ascii_case("at+jwt")
                    || (self == TypCheck::Lenient && media.eq_ignore_ascii_case("jwt"))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::WrongType {
                found: typ.map(excerpt),
            })
        }
    }
}

/// The media type prefix `typ` may carry (RFC 7515 section 4.1.9).
const PREFIX: &str = "application/";

/// Verifies JWT access tokens from one issuer for one resource.
///
/// Build it with [`JwtVerifier::builder`]. It is `Send + Sync` and cheap to share behind an
/// `Arc`; verification is CPU work only, available synchronously as
/// [`JwtVerifier::verify_sync`] and through the async [`Verifier`] trait.
///
/// ```
/// use rmcp_authz::dev::DevIssuer;
/// use rmcp_authz::token::{AuthError, JwtVerifier, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = DevIssuer::new("https://auth.example")?;
/// let verifier = JwtVerifier::builder("https://auth.example", "https://mcp.example/mcp")
///     .jwks_json(&issuer.jwks().to_string())
///     .build()?;
///
/// let token = issuer.token("https://mcp.example/mcp").subject("alice").mint()?;
/// assert_eq!(verifier.verify(&token).await?.subject(), Some("alice"));
///
/// let elsewhere = issuer.token("https://other.example/mcp").mint()?;
/// assert!(matches!(verifier.verify(&elsewhere).await, Err(AuthError::WrongAudience { .. })));
/// # Ok(())
/// # }
/// ```
pub struct JwtVerifier {
    source: Arc<dyn KeySource>,
    algorithms: Vec<Algorithm>,
    typ: TypCheck,
    rules: ClaimRules,
    max_token_bytes: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.rules.issuer)
            .field("audience", &self.rules.audience)
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys().len())
            .field("remote", &self.remote_url())
            .field("typ", &self.typ)
            .field("leeway_secs", &self.rules.leeway_secs)
            .field("required_claims", &self.rules.required)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

impl JwtVerifier {
    /// Starts a verifier for tokens whose `iss` is exactly `issuer` and whose `aud`
    /// contains `audience` (this MCP server's canonical URI, RFC 8707): exactly, but for
    /// the case of the scheme and host and a default port (`:443`, `:80`), which the MCP
    /// authorization spec asks resource servers to accept. The path and query are exact.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: KeySet::new(),
            source: None,
            key_error: None,
            algorithms: None,
            typ: TypCheck::default(),
            leeway: DEFAULT_LEEWAY,
            required: vec!["sub".to_owned()],
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            clock: Arc::new(SystemClock),
        }
    }

    /// Verifies `token` now and returns who it speaks for, with the keys its source has
    /// at hand: a source that fetches (a remote JWK Set) is not asked to fetch, and a `kid`
    /// its keys lack is refused; the async [`Verifier::verify`] waits for both.
    ///
    /// # Errors
    /// An [`AuthError`] naming the first check that failed.
    pub fn verify_sync(&self, token: &str) -> Result<Principal, AuthError> {
        self.check_size(token)?;
        // Without waiting: the keys the source has at hand.
        let keys = self.source.current_keys()?;
        self.verify_with(&keys, token)
    }

    /// Refuses a token over the size limit, before any decoding.
    fn check_size(&self, token: &str) -> Result<(), AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge {
                size: token.len(),
                limit: self.max_token_bytes,
            });
        }
        Ok(())
    }

    /// The checks after the size limit, with `keys`.
    fn verify_with(&self, keys: &KeySet, token: &str) -> Result<Principal, AuthError> {
        let payload = keys.verify_compact(token, &self.algorithms, |typ| self.typ.check(typ))?;
        let claims = parse_object(&payload)
            .map_err(|e| AuthError::malformed(format!("the payload is not a JSON object: {e}")))?;
        claims::validate(claims, &self.rules, self.clock.now_unix())
    }

    /// The issuer tokens must come from.
    pub fn issuer(&self) -> &str {
        &self.rules.issuer
    }

    /// The audience tokens must be for.
    pub fn audience(&self) -> &str {
        &self.rules.audience
    }

    /// The algorithms accepted.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The keys configured in the verifier itself (empty when the keys come from another
    /// [`KeySource`], such as a remote JWK Set, feature `jwks`).
    pub fn keys(&self) -> &KeySet {
        static NONE: LazyLock<KeySet> = LazyLock::new(KeySet::new);
        let source: &dyn Any = &*self.source;
        source
            .downcast_ref::<StaticKeys>()
            .map_or(&NONE, |keys| &keys.0)
    }

    /// Where the keys come from: the keys configured in the verifier, a remote JWK Set
    /// (see `JwtVerifier::remote_jwks`, feature `jwks`), or a source of your own.
    pub fn key_source(&self) -> &dyn KeySource {
        &*self.source
    }

    /// The URL the keys are fetched from, if they come from a source that fetches them
    /// (a remote JWK Set).
    pub fn remote_url(&self) -> Option<&str> {
        self.source.location()
    }
}

#[async_trait]
impl Verifier for JwtVerifier {
    /// Verifies with the source's keys (fetched first if it has none fit for use); for a
    /// `kid` they lack, with the newer set the source may find.
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.check_size(token)?;
        let keys = self.source.keys().await?;
        match self.verify_with(&keys, token) {
            Err(unknown @ AuthError::UnknownKey { .. }) => {
                let AuthError::UnknownKey { kid, .. } = &unknown else {
                    return Err(unknown);
                };
                match self
                    .source
                    .keys_for_unknown_kid(kid.as_deref(), &keys)
                    .await
                {
                    Some(newer) => self.verify_with(&newer, token),
                    None => Err(unknown),
                }
            }
            other => other,
        }
    }

    fn resource_uri(&self) -> Option<&str> {
        Some(&self.rules.audience)
    }

    fn trusted_issuers(&self) -> Vec<String> {
        vec![self.rules.issuer.clone()]
    }
}

/// Configures a [`JwtVerifier`]. Every setting has a safe default; see each method.
///
/// Key-adding methods never fail on their own: the first key error is reported by
/// [`JwtVerifierBuilder::build`].
#[must_use]
pub struct JwtVerifierBuilder {
    issuer: String,
    audience: String,
    keys: KeySet,
    source: Option<Arc<dyn KeySource>>,
    key_error: Option<KeyError>,
    algorithms: Option<Vec<Algorithm>>,
    typ: TypCheck,
    leeway: Duration,
    required: Vec<String>,
    max_token_bytes: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifierBuilder {
    /// Trusts one key.
    pub fn key(mut self, key: Key) -> Self {
        self.add(Ok(key));
        self
    }

    /// Trusts every key of a set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        if self.key_error.is_none()
            && let Err(e) = self.keys.extend(keys)
        {
            self.key_error = Some(e);
        }
        self
    }

    /// Trusts the keys of a JWK Set document (see [`KeySet::from_jwks_json`]).
    pub fn jwks_json(self, json: &str) -> Self {
        self.key_set(KeySet::from_jwks_json(json))
    }

    /// Trusts the keys of a JWK Set file.
    pub fn jwks_file(self, path: impl AsRef<Path>) -> Self {
        self.key_set(KeySet::from_jwks_file(path))
    }

    /// Trusts a PEM public key bound to `alg` (see [`Key::from_pem`]).
    pub fn pem(mut self, pem: impl AsRef<[u8]>, alg: Algorithm) -> Self {
        self.add(Key::from_pem(pem, alg));
        self
    }

    /// Trusts a PEM public key file bound to `alg`.
    pub fn pem_file(mut self, path: impl AsRef<Path>, alg: Algorithm) -> Self {
        self.add(Key::from_pem_file(path, alg));
        self
    }

    /// Trusts an HMAC secret for `alg` (HS256, HS384 or HS512). Adding a secret also
    /// allows its algorithm when the allow-list is left at its default.
    pub fn hmac_secret(mut self, secret: impl AsRef<[u8]>, alg: Algorithm) -> Self {
        self.add(Key::hmac(secret, alg));
        self
    }

    /// Sets the algorithm allow-list.
    ///
    /// Default: every asymmetric algorithm ([`Algorithm::ASYMMETRIC`]), plus the algorithm
    /// of each configured HMAC secret. An HMAC algorithm listed here needs its secret.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let mut list: Vec<Algorithm> = algorithms.into_iter().collect();
        list.sort();
        list.dedup();
        self.algorithms = Some(list);
        self
    }

    /// Sets how `typ` is checked. Default: [`TypCheck::Strict`].
    pub fn typ_check(mut self, typ: TypCheck) -> Self {
        self.typ = typ;
        self
    }

    /// Sets the clock-skew allowance for `exp` and `nbf`. Default 30 s; at most 5 min.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets the claims that must be present besides `iss`, `aud` and `exp`, which are
    /// always required. Default: `sub` (RFC 9068 section 2.2).
    pub fn required_claims<S: Into<String>>(mut self, claims: impl IntoIterator<Item = S>) -> Self {
        self.required = claims.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the largest token accepted, in bytes, checked before any decoding.
    /// Default 16 KiB.
    pub fn max_token_bytes(mut self, limit: usize) -> Self {
        self.max_token_bytes = limit;
        self
    }

    /// Sets the clock. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// A [`ConfigError`]: empty issuer or audience, no keys, a key that could not be
    /// loaded, an HMAC algorithm without its secret, no key usable with the allow-list, or
    /// a leeway above 5 minutes.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        if let Some(e) = self.key_error {
            return Err(ConfigError::Key(e));
        }
        let rules = ClaimRules::new(self.issuer, self.audience, self.leeway, self.required)?;
        let elsewhere = self.source.is_some();
        if elsewhere && !self.keys.is_empty() {
            return Err(ConfigError::MixedKeySources);
        }
        if self.keys.is_empty() && !elsewhere {
            return Err(ConfigError::NoKeys);
        }
        if self.max_token_bytes == 0 {
            return Err(ConfigError::ZeroTokenLimit);
        }
        let key_algs: Vec<Algorithm> = self.keys.iter().map(Key::algorithm).collect();
        let algorithms = match self.algorithms {
            Some(list) => list,
            None => {
                let mut list = Algorithm::ASYMMETRIC.to_vec();
                list.extend(key_algs.iter().filter(|a| a.is_symmetric()));
                list.sort();
                list.dedup();
                list
            }
        };
        if algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if let Some(&alg) = algorithms
            .iter()
            .find(|a| a.is_symmetric() && !key_algs.contains(a))
        {
            return Err(ConfigError::HmacWithoutSecret { alg });
        }
        if !elsewhere && !key_algs.iter().any(|a| algorithms.contains(a)) {
            return Err(ConfigError::NoUsableKey {
                allowed: algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let source = self
            .source
            .unwrap_or_else(|| Arc::new(StaticKeys(Arc::new(self.keys))));
        Ok(JwtVerifier {
            source,
            algorithms,
            typ: self.typ,
            rules,
            max_token_bytes: self.max_token_bytes,
            clock: self.clock,
        })
    }

    /// Takes the keys from `source` instead of keys given here (it cannot be combined
    /// with them): a remote JWK Set (see `JwtVerifierBuilder::remote_jwks`, feature
    /// `jwks`) or a [`KeySource`] of your own. Every check of the builder still applies;
    /// the algorithm allow-list defaults to the asymmetric algorithms.
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    fn add(&mut self, key: Result<Key, KeyError>) {
        if self.key_error.is_some() {
            return;
        }
        if let Err(e) = key.and_then(|k| self.keys.insert(k)) {
            self.key_error = Some(e);
        }
    }

    fn key_set(mut self, keys: Result<KeySet, KeyError>) -> Self {
        match keys {
            Ok(keys) => self.keys(keys),
            Err(e) => {
                self.key_error.get_or_insert(e);
                self
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_builder() -> JwtVerifierBuilder {
        JwtVerifier::builder("https://as", "https://rs").hmac_secret([1u8; 32], Algorithm::HS256)
    }

    #[test]
    fn typ_strict_accepts_only_at_jwt_spellings() {
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(TypCheck::Strict.check(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("id_token+jwt"),
            Some(""),
        ] {
            assert!(TypCheck::Strict.check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn typ_lenient_accepts_missing_and_jwt_but_not_other_types() {
        for ok in [None, Some("JWT"), Some("at+jwt")] {
            assert!(TypCheck::Lenient.check(ok).is_ok(), "{ok:?}");
        }
        for bad in ["dpop+jwt", "id_token+jwt", "logout+jwt"] {
            assert!(TypCheck::Lenient.check(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_allow_list_is_asymmetric_plus_configured_secrets() {
        let v = secret_builder().build().unwrap();
        assert!(v.algorithms().contains(&Algorithm::HS256));
        assert!(!v.algorithms().contains(&Algorithm::HS384));
        assert!(v.algorithms().contains(&Algorithm::ES256));
    }

    #[test]
    fn hmac_in_allow_list_without_secret_is_a_config_error() {
        let err = secret_builder()
            .algorithms([Algorithm::HS256, Algorithm::HS512])
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::HmacWithoutSecret {
                    alg: Algorithm::HS512
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn keys_outside_the_allow_list_are_a_config_error() {
        let err = secret_builder()
            .algorithms([Algorithm::ES256])
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoUsableKey { .. }), "{err}");
    }

    #[test]
    fn leeway_above_five_minutes_is_refused() {
        assert!(secret_builder().leeway(MAX_LEEWAY).build().is_ok());
        let err = secret_builder()
            .leeway(MAX_LEEWAY + Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::LeewayTooLarge { .. }), "{err}");
    }

    #[test]
    fn empty_issuer_audience_and_no_keys_are_refused() {
        assert!(matches!(
            JwtVerifier::builder("", "https://rs")
                .hmac_secret([1u8; 32], Algorithm::HS256)
                .build(),
            Err(ConfigError::EmptyIssuer)
        ));
        assert!(matches!(
            JwtVerifier::builder("https://as", "")
                .hmac_secret([1u8; 32], Algorithm::HS256)
                .build(),
            Err(ConfigError::EmptyAudience)
        ));
        assert!(matches!(
            JwtVerifier::builder("https://as", "https://rs").build(),
            Err(ConfigError::NoKeys)
        ));
    }

    #[test]
    fn first_key_error_is_reported_by_build() {
        let err = JwtVerifier::builder("https://as", "https://rs")
            .hmac_secret([1u8; 8], Algorithm::HS256)
            .jwks_json("not json")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Key(KeyError::HmacKeyTooShort { .. })),
            "{err}"
        );
    }

    #[test]
    fn oversized_token_is_refused_before_decoding() {
        let v = secret_builder().max_token_bytes(10).build().unwrap();
        let err = v.verify_sync("not even a token but long").unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::TooLarge {
                    size: 25,
                    limit: 10
                }
            ),
            "{err}"
        );
        assert_eq!(err.error_code(), "invalid_request");
    }

    #[test]
    fn debug_shows_configuration_not_secrets() {
        let v = secret_builder().build().unwrap();
        let shown = format!("{v:?}");
        assert!(shown.contains("https://as"), "{shown}");
        assert!(!shown.contains("[1, 1"), "{shown}");
    }
}
