//! Where a [`JwtVerifier`](super::JwtVerifier) gets its keys: the [`KeySource`] trait.
//!
//! Keys configured in the verifier (a JWK Set, PEM keys, HMAC secrets) are a source that
//! never changes; `remote::RemoteJwks` (feature `jwks`) is one that fetches the issuer's
//! JWK Set and follows its rotation. The verifier asks its source for the keys on every
//! verification and, when a token names a key they lack, once more for a newer set:
//! whether that fetches, how often, and what happens when fetching fails is the source's
//! business. This module defines the trait `token` needs, so that `token` imports nothing
//! from the modules that implement it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{AuthError, KeySet};

/// Where a [`JwtVerifier`](super::JwtVerifier) gets the keys it verifies with.
///
/// Implemented by the keys configured in the verifier itself and by
/// `remote::RemoteJwks` (feature `jwks`); give a verifier any other source with
/// [`JwtVerifierBuilder::key_source`](super::JwtVerifierBuilder::key_source). Each key in a
/// set is checked when the set is made ([`KeySet`]), so a source hands out only keys fit
/// for verification.
///
/// ```
/// use std::sync::Arc;
/// use rmcp_authz::token::{AuthError, JwtVerifier, KeySet, KeySource};
/// # use rmcp_authz::dev::DevIssuer;
///
/// /// Keys that some other part of the program loads and swaps.
/// #[derive(Debug)]
/// struct Loaded(std::sync::RwLock<Option<Arc<KeySet>>>);
///
/// impl KeySource for Loaded {
///     fn current_keys(&self) -> Result<Arc<KeySet>, AuthError> {
///         self.0.read().unwrap().clone().ok_or_else(|| AuthError::KeysUnavailable {
///             reason: "no keys loaded yet".to_owned(),
///         })
///     }
/// }
///
/// # let issuer = DevIssuer::new("https://auth.example")?;
/// let keys = KeySet::from_jwks_json(&issuer.jwks().to_string())?;
/// let source = Loaded(std::sync::RwLock::new(Some(Arc::new(keys))));
/// let verifier = JwtVerifier::builder("https://auth.example", "https://mcp.example/mcp")
///     .key_source(source)
///     .build()?;
/// let token = issuer.token("https://mcp.example/mcp").mint()?;
/// assert!(verifier.verify_sync(&token).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[async_trait]
pub trait KeySource: Any + Send + Sync + fmt::Debug {
    /// The keys at hand, without waiting or fetching: what
    /// [`JwtVerifier::verify_sync`](super::JwtVerifier::verify_sync) verifies with.
    ///
    /// # Errors
    /// [`AuthError::KeysUnavailable`] when the source has no keys yet.
    fn current_keys(&self) -> Result<Arc<KeySet>, AuthError>;

    /// The keys to verify with, for the async [`Verifier`](super::Verifier): a source that
    /// fetches may fetch them first (or start a refresh) here. Default:
    /// [`KeySource::current_keys`].
    ///
    /// # Errors
    /// [`AuthError::KeysUnavailable`] when there are no usable keys.
    async fn keys(&self) -> Result<Arc<KeySet>, AuthError> {
        self.current_keys()
    }

    /// Asked when `seen`, a set this source handed out, has no key for a token's `kid`
    /// (`None` when the token has no `kid`): a newer set that may have it, or `None`, and
    /// the token is refused as naming an unknown key. A source that fetches decides here
    /// whether to fetch again, and bounds how often tokens with unknown `kid`s can make it
    /// fetch. Default: `None` (the keys never change).
    async fn keys_for_unknown_kid(
        &self,
        kid: Option<&str>,
        seen: &Arc<KeySet>,
    ) -> Option<Arc<KeySet>> {
        let _ = (kid, seen);
        None
    }

    /// Where the keys are fetched from, a URL, for messages and `Debug`; `None` (the
    /// default) for keys that are not fetched.
    fn location(&self) -> Option<&str> {
        None
    }
}

/// The keys configured in the verifier itself: the source that never changes.
pub(super) struct StaticKeys(pub(super) Arc<KeySet>);

impl fmt::Debug for StaticKeys {
    /// Shows how many keys, never their material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("keys", &self.0.len())
            .finish()
    }
}

impl KeySource for StaticKeys {
    fn current_keys(&self) -> Result<Arc<KeySet>, AuthError> {
        Ok(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::dev::DevIssuer;
    use crate::token::{JwtVerifier, Verifier};

    const AUD: &str = "https://rs";

    /// A source with one set at hand and a newer one it finds when asked for an unknown
    /// `kid`.
    #[derive(Debug)]
    struct Rotating {
        old: Arc<KeySet>,
        new: Arc<KeySet>,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl KeySource for Rotating {
        fn current_keys(&self) -> Result<Arc<KeySet>, AuthError> {
            Ok(Arc::clone(&self.old))
        }

        async fn keys_for_unknown_kid(
            &self,
            _kid: Option<&str>,
            seen: &Arc<KeySet>,
        ) -> Option<Arc<KeySet>> {
            assert!(Arc::ptr_eq(seen, &self.old), "asked about the set it gave");
            self.asked.fetch_add(1, Ordering::SeqCst);
            Some(Arc::clone(&self.new))
        }

        fn location(&self) -> Option<&str> {
            Some("https://as/jwks")
        }
    }

    fn key_set(issuer: &DevIssuer) -> Arc<KeySet> {
        Arc::new(KeySet::from_jwks_json(&issuer.jwks().to_string()).unwrap())
    }

    #[tokio::test]
    async fn an_unknown_kid_is_verified_with_the_newer_set_the_source_finds() {
        let old = DevIssuer::new("https://as").unwrap();
        let new = DevIssuer::new("https://as").unwrap();
        let source = Rotating {
            old: key_set(&old),
            new: key_set(&new),
            asked: AtomicUsize::new(0),
        };
        let verifier = JwtVerifier::builder("https://as", AUD)
            .key_source(source)
            .build()
            .unwrap();
        let token = new.token(AUD).mint().unwrap();

        // Without waiting, only the keys at hand: the new kid is unknown.
        let err = verifier.verify_sync(&token).unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey { .. }), "{err}");
        // The async path asks the source once, and verifies with what it found.
        assert!(verifier.verify(&token).await.is_ok());
        let source: &dyn Any = verifier.key_source();
        let source = source.downcast_ref::<Rotating>().unwrap();
        assert_eq!(source.asked.load(Ordering::SeqCst), 1);
        assert!(
            verifier
                .verify(&old.token(AUD).mint().unwrap())
                .await
                .is_ok()
        );
        assert_eq!(
            source.asked.load(Ordering::SeqCst),
            1,
            "a known kid asks nothing"
        );

        assert_eq!(verifier.remote_url(), Some("https://as/jwks"));
        assert!(
            verifier.keys().is_empty(),
            "no keys configured in the verifier"
        );
    }

    #[tokio::test]
    async fn configured_keys_are_a_source_that_never_changes() {
        let issuer = DevIssuer::new("https://as").unwrap();
        let other = DevIssuer::new("https://as").unwrap();
        let verifier = issuer.verifier(AUD).build().unwrap();
        assert_eq!(verifier.keys().len(), 1);
        assert_eq!(verifier.remote_url(), None);
        let err = verifier
            .verify(&other.token(AUD).mint().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn a_source_cannot_be_mixed_with_keys_given_to_the_builder() {
        let issuer = DevIssuer::new("https://as").unwrap();
        let err = issuer
            .verifier(AUD)
            .key_source(StaticKeys(key_set(&issuer)))
            .build()
            .unwrap_err();
        assert!(matches!(err, crate::ConfigError::MixedKeySources), "{err}");
    }
}
