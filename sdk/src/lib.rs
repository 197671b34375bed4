//! # rmcp-authz
//!
//! Authorization for [rmcp](https://docs.rs/rmcp) MCP servers: every request carries an
//! OAuth 2.1 access token (a JWT), every token is verified the way a security review
//! expects, and the caller becomes a [`Principal`]: the user, the agent acting for them,
//! the scopes they were granted, and the chain of agents a delegated token passed through.
//!
//! This release holds the foundation: token verification. Per-tool scope policy, the
//! rmcp server wrapper, the HTTP layer and the audit log build on it.
//!
//! ## Verifying access tokens
//!
//! A [`JwtVerifier`](token::JwtVerifier) needs the two settings that must never be
//! skipped, the issuer and this server's own URI (the audience, RFC 8707), and the
//! issuer's keys. Everything else has a safe default.
//!
//! ```
//! use rmcp_authz::dev::DevIssuer;
//! use rmcp_authz::token::{AuthError, JwtVerifier};
//!
//! // A development issuer stands in for your authorization server.
//! let issuer = DevIssuer::new("https://auth.example.com")?;
//! let jwks = issuer.jwks().to_string(); // what the issuer publishes at its jwks_uri
//!
//! let verifier = JwtVerifier::builder("https://auth.example.com", "https://mcp.example.com/mcp")
//!     .jwks_json(&jwks)
//!     .build()?;
//!
//! // An agent acting for alice, delegated through a planner agent.
//! let token = issuer
//!     .token("https://mcp.example.com/mcp")
//!     .subject("alice")
//!     .client_id("notes-app")
//!     .scopes(["notes:read"])
//!     .actor("research-agent")
//!     .mint()?;
//! let who = verifier.verify_sync(&token)?;
//! assert_eq!(who.subject(), Some("alice"));
//! assert_eq!(who.agent(), Some("research-agent"));
//! assert!(who.has_scope("notes:read"));
//!
//! // A token for another server is refused, and the error says why.
//! let other = issuer.token("https://other.example.com/mcp").mint()?;
//! let err = verifier.verify_sync(&other).unwrap_err();
//! assert!(matches!(err, AuthError::WrongAudience { .. }));
//! assert_eq!(err.error_code(), "invalid_token"); // RFC 6750
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What is checked
//!
//! In order: the token's size (16 KiB by default) before any decoding; the JWS shape
//! (three parts, strict base64url, a JSON object header with no duplicate members);
//! `alg` against an allow-list (asymmetric algorithms by default, HMAC only with a
//! configured secret, `none` never); no unknown `crit` headers; the key, chosen by `kid`
//! from the configured keys only (never from `jwk`, `jku`, `x5u` or `x5c`), bound to
//! exactly one algorithm; the signature; `typ` is `at+jwt` (RFC 9068); then the claims:
//! `iss` exact, `aud` contains this resource exactly, `exp`/`nbf` within a leeway of 30 s
//! (at most 5 min), dates that are JSON numbers, identity claims that are strings.
//! Keys are checked when loaded (RSA at least 2048 bits without the ROCA flaw, EC points
//! on their curve, HMAC secrets at least as long as the hash, `use` and `key_ops` fit for
//! verification, no duplicate `kid`s). `docs/security.md` maps each rule to the attack
//! it stops.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | (none)  | token verification, principals, the development issuer |
//! | `full`  | every optional feature (none yet) |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod authz;
mod clock;
pub mod dev;
mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod policy;
mod principal;
pub mod server;
pub mod stdio;
pub mod token;

pub use authz::{Authz, AuthzBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, Error};
pub use principal::{Actor, Principal};

/// The README's code blocks, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
