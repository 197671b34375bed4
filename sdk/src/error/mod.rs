//! Why the crate could not be set up: [`ConfigError`], and the errors it carries.
//!
//! [`AuthError`](crate::token::AuthError) says why a request's token was refused (at
//! request time); [`ConfigError`] says why a verifier, policy or server could not be built
//! (at start-up), including the [`KeyError`]s of key loading and the [`PolicyError`]s of
//! policy building. Those live here, on the ground floor with [`ConfigError`], so that
//! this module imports nothing above it; users find them where they use them
//! (`rmcp_authz::token::KeyError`, `rmcp_authz::policy::PolicyError`). Messages are
//! lowercase, concrete, say what to do, and never contain a token or a secret: values that
//! came from a token are cut with [`excerpt`].

#[cfg(feature = "cedar")]
mod cedar;
mod key;
mod policy;

use std::time::Duration;

#[cfg(feature = "cedar")]
pub use cedar::{CedarError, PolicyProblem, SourcePosition};
pub use key::{KeyError, KeyName};
pub use policy::{ExprError, PolicyError};

use crate::algorithm::Algorithm;

/// Why a verifier (or later, a policy or server) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The issuer is empty.
    #[error(
        "the issuer is empty; set it to the exact \"iss\" your authorization server puts in tokens"
    )]
    EmptyIssuer,
    /// The audience (this resource's URI) is empty.
    #[error(
        "the audience is empty; set it to this MCP server's canonical URI (RFC 8707), e.g. https://mcp.example.com/mcp"
    )]
    EmptyAudience,
    /// No verification key was configured.
    #[error(
        "no verification keys are configured; add a JWK Set, a PEM public key or an HMAC secret"
    )]
    NoKeys,
    /// A remote source (an introspection endpoint, a JWK Set URL) cannot be used as
    /// configured: its URL may not be fetched, or no HTTP client can be built for it. The
    /// source is a `remote::FetchError` (feature `jwks`; `downcast_ref` it to match).
    #[error("{0}")]
    Remote(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Token introspection was configured without the resource server's client
    /// credentials, which the introspection endpoint requires.
    #[error("introspection needs the resource server's client credentials")]
    NoClientCredentials,
    /// A verifier given to a `MultiIssuer` trusts no issuer, or several: each of its
    /// verifiers must trust exactly one, so that a token's `iss` picks one verifier.
    #[error(
        "each verifier of a MultiIssuer must trust exactly one issuer, this one trusts {issuers:?}"
    )]
    NotOneIssuer {
        /// The issuers the verifier trusts.
        issuers: Vec<String>,
    },
    /// Two verifiers given to a `MultiIssuer` trust the same issuer.
    #[error("issuer {issuer} is configured twice")]
    DuplicateIssuer {
        /// The issuer.
        issuer: String,
    },
    /// Keys were given both directly and as a key source (a remote JWK Set, or a
    /// `token::KeySource` of your own).
    #[error(
        "keys are configured both directly and as a remote JWK Set; use one source (publish every key in the JWK Set)"
    )]
    MixedKeySources,
    /// The allow-list of algorithms is empty.
    #[error("the algorithm allow-list is empty; no token could ever verify")]
    NoAlgorithms,
    /// An HMAC algorithm is in the allow-list but no secret for it is configured: HMAC
    /// algorithms are allowed only together with their secret.
    #[error(
        "{alg} is in the allow-list but no {alg} secret is configured; remove it or add the secret"
    )]
    HmacWithoutSecret {
        /// The HMAC algorithm without a secret.
        alg: Algorithm,
    },
    /// None of the configured keys uses an allowed algorithm.
    #[error(
        "none of the configured keys uses an allowed algorithm ({allowed}); no token could ever verify"
    )]
    NoUsableKey {
        /// The allow-list, comma separated.
        allowed: String,
    },
    /// The leeway is larger than this crate allows.
    #[error("leeway of {leeway:?} is larger than the {max:?} allowed; fix the clocks instead")]
    LeewayTooLarge {
        /// The requested leeway.
        leeway: Duration,
        /// The largest leeway accepted.
        max: Duration,
    },
    /// The token size limit is zero.
    #[error("max_token_bytes must be at least 1")]
    ZeroTokenLimit,
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The policy could not be built.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The Cedar policies could not be loaded, or do not check against the server's tools
    /// (feature `cedar`).
    #[cfg(feature = "cedar")]
    #[error(transparent)]
    Cedar(#[from] CedarError),
    /// Policy rules name tools the wrapped server does not have.
    #[error(
        "the policy has rules for tools the server does not have: {tools:?}; fix the names or remove the rules"
    )]
    UnknownTools {
        /// The tool names.
        tools: Vec<String>,
    },
    /// The path given for the MCP endpoint cannot be served.
    #[error("the MCP endpoint path {path:?} cannot be used: {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
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
