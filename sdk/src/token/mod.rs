//! Bearer token to [`Principal`]: the [`Verifier`] trait, JWT verification, keys.
//!
//! [`JwtVerifier`] checks JWT access tokens (RFC 9068) against a [`KeySet`] of keys each
//! bound to one [`Algorithm`], taken from a [`KeySource`] (the keys it was given, or a
//! source that fetches them, such as a remote JWK Set); failures are [`AuthError`]s that
//! name the failed check; bad keys are refused with [`KeyError`]s when loaded. Other verifiers (token
//! introspection, caches) implement the same [`Verifier`] trait.

#[cfg(feature = "cache")]
mod cache;
pub(crate) mod claims;
pub mod dangerous;
#[cfg(feature = "dpop")]
pub mod dpop;
mod error;
mod jwk;
mod jws;
mod jwt;
mod key;
mod keyset;
mod multi;
#[cfg(feature = "cache")]
mod revocation;
mod roca;
mod source;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use crate::algorithm::{Algorithm, UnknownAlgorithm};
pub use crate::error::{KeyError, KeyName};
#[cfg(feature = "cache")]
pub use cache::{CacheOptions, CacheStats, CachedVerifier};
pub use error::{AuthError, AuthErrorKind};
pub use jws::Jws;
pub use jwt::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, JwtVerifier, JwtVerifierBuilder, MAX_LEEWAY, TypCheck,
};
pub use key::Key;
#[cfg(feature = "dev")]
pub(crate) use key::read_file as read_key_file;
pub use keyset::KeySet;
pub use multi::MultiIssuer;
#[cfg(feature = "postgres")]
pub(crate) use revocation::Lists as RevocationLists;
#[cfg(feature = "cache")]
pub use revocation::{RevocationKind, Revocations};
pub use source::KeySource;

use crate::principal::Principal;

/// Turns a bearer token into a [`Principal`], or says why not.
///
/// Object safe, so servers can hold an `Arc<dyn Verifier>` and swap implementations
/// (JWT, introspection, a cache in front of either).
///
/// ```
/// use std::sync::Arc;
/// use rmcp_authz::token::{Verifier, JwtVerifier};
/// # use rmcp_authz::dev::DevIssuer;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = DevIssuer::new("https://auth.example")?;
/// let verifier: Arc<dyn Verifier> = Arc::new(issuer.verifier("https://mcp.example/mcp").build()?);
/// let token = issuer.token("https://mcp.example/mcp").mint()?;
/// assert!(verifier.verify(&token).await.is_ok());
/// assert!(verifier.verify("garbage").await.is_err());
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Verifier: Send + Sync + std::fmt::Debug {
    /// Verifies `token` (the bearer string, without the `Bearer ` prefix).
    async fn verify(&self, token: &str) -> Result<Principal, AuthError>;

    /// The resource (audience) tokens must be for, if this verifier checks one: the
    /// default `resource` of the Protected Resource Metadata.
    fn resource_uri(&self) -> Option<&str> {
        None
    }

    /// The issuers this verifier trusts: the default `authorization_servers` of the
    /// Protected Resource Metadata.
    fn trusted_issuers(&self) -> Vec<String> {
        Vec::new()
    }
}

macro_rules! forward_verifier {
    ($wrapper:ident) => {
        #[async_trait]
        impl<V: Verifier + ?Sized> Verifier for $wrapper<V> {
            async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
                (**self).verify(token).await
            }

            fn resource_uri(&self) -> Option<&str> {
                (**self).resource_uri()
            }

            fn trusted_issuers(&self) -> Vec<String> {
                (**self).trusted_issuers()
            }
        }
    };
}

use std::sync::Arc;
forward_verifier!(Arc);
forward_verifier!(Box);

/// Strict unpadded base64url (RFC 7515 section 2): no padding, no whitespace, no
/// non-canonical trailing bits.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
