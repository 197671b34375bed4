//! # rmcp-authz
//!
//! Authorization for [rmcp](https://docs.rs/rmcp) MCP servers: every request carries an
//! OAuth 2.1 access token (a JWT), every token is verified the way a security review
//! expects, and the caller becomes a [`Principal`]: the user, the agent acting for them,
//! the scopes they were granted, and the chain of agents a delegated token passed through.
//!
//! On top of verification sit a [`Policy`](policy::Policy) (which scopes each tool,
//! resource and prompt needs, with hierarchies), the [`Authorized`](server::Authorized)
//! wrapper that gates any rmcp `ServerHandler`, filters its lists and hands tools the
//! caller, a tower layer for Streamable HTTP that answers with RFC 6750 challenges
//! (feature `http`), and a stdio server taking its token from the environment. All of them
//! are made from one [`Authz`] value, so there is exactly one place that decides.
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
//! `iss` exact, `aud` contains this resource (exactly but for the case of scheme and host
//! and a default port), `exp`/`nbf`/`iat` within a leeway of 30 s (at most 5 min), dates
//! that are JSON numbers, identity claims that are non-empty strings.
//! Keys are checked when loaded (RSA at least 2048 bits without the ROCA flaw, EC points
//! on their curve, HMAC secrets at least as long as the hash, `use` and `key_ops` fit for
//! verification, no duplicate `kid`s). `docs/security.md` maps each rule to the attack
//! it stops.
//!
//! ## Protecting an rmcp server
//!
//! ```
//! use rmcp_authz::{Authz, dev::DevIssuer, policy::{Operation, Policy, all_of}};
//! # let issuer = DevIssuer::new("https://auth.example.com")?;
//! # let verifier = issuer.verifier("https://mcp.example.com/mcp").build()?;
//! let policy = Policy::builder()
//!     .implies("notes:admin", ["notes:write"])
//!     .implies("notes:write", ["notes:read"])
//!     .tool("list_notes", "notes:read")
//!     .tool("purge", all_of(["notes:admin", "ops:purge"]))
//!     .build()?;
//! let token = issuer.token("https://mcp.example.com/mcp").scopes(["notes:write"]).mint()?;
//! let alice = verifier.verify_sync(&token)?;
//! let authz = Authz::new(verifier, policy);
//!
//! // notes:write implies notes:read.
//! assert!(authz.policy().decide(&alice, Operation::CallTool("list_notes")).is_allowed());
//! // A denial names every scope the call needs: the step-up challenge.
//! let denied = authz.policy().decide(&alice, Operation::CallTool("purge"));
//! assert_eq!(denied.denial().unwrap().challenge_scope().as_deref(), Some("notes:admin ops:purge"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Then, over Streamable HTTP, `authz.router("/mcp", MyServer::new)?` is the whole
//! protected endpoint (rmcp's service, the wrapper on every handler, the 401/403 layer,
//! the Protected Resource Metadata routes) and `authz.serve(listener, app, shutdown)`
//! serves it (see the `http` module); over stdio,
//! `authz.serve_stdio(MyServer::new(), "MCP_ACCESS_TOKEN")`; over any other rmcp transport,
//! `authz.wrap(MyServer::new())?` is a `ServerHandler` whose every method is gated.
//! `docs/policy.md` describes every rule and every HTTP response.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | (none)  | token verification, principals, policy, the server wrapper, stdio |
//! | `http`  | the tower layer for Streamable HTTP, challenges, Protected Resource Metadata routes (axum) |
//! | `config` | configuration files: the verifier, policy and audit log from TOML (toml) |
//! | `cli`   | the `rmcp-authz` command-line tool, `cli::run` (clap, time) |
//! | `jwks`  | keys from the issuer: remote JWK Sets following rotation, discovery, token introspection (reqwest, rustls) |
//! | `cache` | a verified-token cache in front of any verifier, with revocation (moka) |
//! | `dev`   | the development issuer (`dev::DevIssuer`) that mints tokens for demos, examples and tests, and with `http` its token endpoint; never needed in production |
//! | `agent` | the client side: token sources (client credentials, token exchange, refreshing) and an rmcp Streamable HTTP client that presents their tokens and steps up on `insufficient_scope` |
//! | `cedar` | argument-level policy: Cedar policies over the caller, the tool and its arguments, checked at start-up against the server's tool schemas (`policy::cedar`; cedar-policy 4.7) |
//! | `postgres` | the audit trail (a hash chain per replica) and the revocation list shared through PostgreSQL (`postgres`; tokio-postgres) |
//! | `dpop` | sender-constrained tokens (RFC 9449): the HTTP layer's `DPoP` scheme (`AuthzBuilder::dpop`, `require_dpop`), the proof check (`token::dpop`: proofs, key thumbprints, a replay cache, server nonces); turns on `http` |
//! | `full`  | every optional feature |
//!
//! ## Architecture
//!
//! The modules form layers, and each imports only from the layers below it (or from its
//! own, without cycles); no two modules import each other, directly or through a third.
//! `sdk/tests/architecture.rs` checks this from the source, and CONTRIBUTING.md explains
//! it.
//!
//! | layer | modules |
//! |---|---|
//! | the hub and its users | [`Authz`]; above it `config`, `dev`, `agent`, `cli` |
//! | the gates | [`server`] (the [`Authorized`](server::Authorized) wrapper), `http` (the layer and endpoint), [`stdio`] |
//! | what the gates share | a crate-private guard (verifier, policy, audit, task owners), the audit trail of one request, [`request_state`]; beside them `postgres` (the audit sink and revocation list replicas share) |
//! | services | [`audit`] (events, sinks, the writer), `remote` (discovery, JWK Sets, introspection, token exchange) |
//! | decisions | [`token`] (a bearer token to a [`Principal`]), [`policy`] (what a principal may do) |
//! | the ground floor | [`Clock`], [`Principal`], [`codes`], [`ConfigError`] and the other set-up errors, strict JSON, JWS algorithm names, OAuth constants |
//!
//! A lower layer that needs something of a higher one defines it itself: `token` reads
//! keys through [`token::KeySource`] (static keys and remote JWK Sets implement it), a
//! principal keeps a policy's grant set in a plain struct, and the gates work from the
//! guard [`Authz`] hands them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "agent")]
pub mod agent;
mod algorithm;
pub mod audit;
mod authz;
#[cfg(feature = "cli")]
pub mod cli;
mod clock;
pub mod codes;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
mod error;
mod gate;
mod guard;
#[cfg(feature = "http")]
pub mod http;
mod json;
mod oauth;
pub mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
mod principal;
#[cfg(feature = "jwks")]
pub mod remote;
pub mod request_state;
pub mod server;
pub mod stdio;
pub mod token;

pub use authz::{Authz, AuthzBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codes::AUDIT_UNAVAILABLE;
pub use error::ConfigError;
pub use oauth::SubjectToken;
pub use principal::{Actor, Principal, PrincipalBuilder, PrincipalError};

/// The README's code blocks, compiled and run as doctests so they cannot rot.
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// docs/guide.md's code blocks, compiled (and, but for serving, run) as doctests.
#[cfg(all(doctest, feature = "http", feature = "jwks", feature = "cache"))]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;

/// docs/policy.md's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/policy.md")]
pub struct PolicyDoctests;

/// docs/audit.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/audit.md")]
pub struct AuditDoctests;

/// docs/cli.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/cli.md")]
pub struct CliDoctests;

/// docs/config.md's code blocks, compiled as doctests.
#[cfg(all(doctest, feature = "config"))]
#[doc = include_str!("../../docs/config.md")]
pub struct ConfigDoctests;

/// docs/delegation.md's code blocks, compiled as doctests.
#[cfg(all(doctest, feature = "agent"))]
#[doc = include_str!("../../docs/delegation.md")]
pub struct DelegationDoctests;

/// docs/agent.md's code blocks, compiled as doctests.
#[cfg(all(doctest, feature = "agent"))]
#[doc = include_str!("../../docs/agent.md")]
pub struct AgentDoctests;

/// docs/deploy.md's code blocks, compiled as doctests.
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../../docs/deploy.md")]
pub struct DeployDoctests;

/// docs/dpop.md's code blocks, compiled and run as doctests.
#[cfg(all(
    doctest,
    feature = "dpop",
    feature = "dev",
    feature = "agent",
    feature = "jwks"
))]
#[doc = include_str!("../../docs/dpop.md")]
pub struct DpopDoctests;

/// docs/keys.md's code blocks, compiled as doctests.
#[cfg(all(doctest, feature = "jwks", feature = "cache"))]
#[doc = include_str!("../../docs/keys.md")]
pub struct KeysDoctests;
