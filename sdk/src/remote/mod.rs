//! Keys and answers from the authorization server (feature `jwks`): discovery of its
//! metadata, its JWK Set fetched and followed as keys rotate, token introspection for
//! opaque tokens, and a verifier that routes tokens to the one issuer that signed them.
//!
//! Everything here fetches over HTTPS only (plain HTTP to loopback addresses on explicit
//! opt-in, for development), with time and size limits, and never follows redirects.
//! `docs/keys.md` describes configuration, rotation and failure behaviour.

mod discovery;
mod exchange;
pub(crate) mod fetch;
mod introspection;
mod jwks;

pub use discovery::{DiscoveryError, IssuerMetadata, discover, metadata_urls};
pub use exchange::{ExchangeClientError, ExchangedToken, TargetParameter, TokenExchangeClient};
pub use fetch::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_DOCUMENT_BYTES, FetchError, FetchOptions, HttpClientError,
};
pub use introspection::{IntrospectionVerifier, IntrospectionVerifierBuilder};
pub use jwks::{JwksError, JwksStats, RemoteJwks, RemoteJwksOptions};
