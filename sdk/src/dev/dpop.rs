//! DPoP at the development issuer's token endpoint (features `http` and `dpop`, RFC 9449
//! section 5): the proof a client sends with its token request, checked, and the nonce
//! the issuer may demand (section 8).
//!
//! This module owns the issuer's [`DpopVerifier`] and nonce, and the one check of a token
//! request's `DPoP` header: none (a bearer token is issued), one valid proof (its key's
//! thumbprint goes into [`ExchangeRequest::dpop_jkt`](super::ExchangeRequest::dpop_jkt)),
//! or a refusal. The binding rules themselves are [`DevIssuer::exchange`]'s.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::exchange::{ExchangeError, ExchangeErrorCode};
use super::{DevIssuer, random_id};
use crate::clock::Clock;
use crate::token::Algorithm;
use crate::token::dpop::{DpopOptions, DpopVerifier};

/// The proof algorithms the token endpoint accepts, as its metadata says.
pub(super) const DPOP_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::PS256,
    Algorithm::RS256,
];

/// The token endpoint's DPoP state: its verifier (with a replay cache) and, when the
/// issuer demands one, the nonce every proof must carry.
#[derive(Debug)]
pub(super) struct EndpointDpop {
    verifier: DpopVerifier,
    nonce: Option<String>,
}

impl EndpointDpop {
    /// A verifier on `clock`, with `nonce` demanded (or not).
    pub(super) fn new(clock: Arc<dyn Clock>, nonce: Option<String>) -> EndpointDpop {
        let options = DpopOptions::default()
            .algorithms(DPOP_ALGORITHMS)
            .clock(clock);
        EndpointDpop {
            verifier: DpopVerifier::new(options),
            nonce,
        }
    }

    /// The same check on another clock, with the same nonce.
    pub(super) fn with_clock(&self, clock: Arc<dyn Clock>) -> EndpointDpop {
        EndpointDpop::new(clock, self.nonce.clone())
    }

    /// The nonce demanded, if any.
    pub(super) fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
}

impl DevIssuer {
    /// The same issuer, whose token endpoint demands a server nonce in every DPoP proof
    /// (RFC 9449 section 8; features `http` and `dpop`): a proof without it, or with
    /// another, is answered 400 `use_dpop_nonce` with the nonce in a `DPoP-Nonce` header,
    /// and a client sends the request again with it. The nonce is made once, here, and
    /// sent on successful answers too: it never expires, unlike a production server's
    /// (`DpopOptions::require_nonce` bounds their lifetime). Requests without a proof are
    /// not affected. For testing clients' nonce handling, not for guarding anything.
    #[must_use]
    pub fn require_dpop_nonce(mut self) -> DevIssuer {
        self.dpop = EndpointDpop::new(Arc::clone(&self.clock), Some(random_id()));
        self
    }

    /// Checks the `DPoP` header of a token request: `Ok(None)` without one, the proof
    /// key's thumbprint for one valid proof, else the refusal to answer with.
    pub(super) fn token_request_proof(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Refusal> {
        let mut proofs = headers.get_all("dpop").iter();
        let Some(proof) = proofs.next() else {
            return Ok(None);
        };
        if proofs.next().is_some() {
            return Err(invalid("a token request carries at most one DPoP header"));
        }
        let proof = proof
            .to_str()
            .map_err(|_| invalid("the DPoP header is not visible ASCII"))?;
        let checked = self
            .dpop
            .verifier
            .check(proof, "POST", &self.endpoint_url("token"), None)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(nonce) = self.dpop.nonce()
            && proof_nonce(proof).as_deref() != Some(nonce)
        {
            return Err(Refusal::UseNonce(nonce.to_owned()));
        }
        Ok(Some(checked.jkt.to_string()))
    }
}

/// Why a token request's proof was refused.
#[derive(Debug)]
pub(super) enum Refusal {
    /// 400 `invalid_dpop_proof`.
    Invalid(ExchangeError),
    /// 400 `use_dpop_nonce`, with the nonce to send.
    UseNonce(String),
}

impl Refusal {
    /// The answer: an RFC 6749 error, with `DPoP-Nonce` for `use_dpop_nonce`.
    pub(super) fn into_response(self) -> Response {
        match self {
            Refusal::Invalid(error) => super::token_endpoint::error_response(&error),
            Refusal::UseNonce(nonce) => {
                let mut response = super::token_endpoint::no_store(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "use_dpop_nonce",
                        "error_description": "the authorization server requires a nonce in the DPoP proof",
                    }),
                );
                add_nonce(&mut response, &nonce);
                response
            }
        }
    }
}

/// Adds `DPoP-Nonce: nonce` to `response`.
pub(super) fn add_nonce(response: &mut Response, nonce: &str) {
    // The nonce is base64url: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(nonce) {
        response.headers_mut().insert("dpop-nonce", value);
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(ExchangeError::new(
        ExchangeErrorCode::InvalidDpopProof,
        message,
    ))
}

/// The `nonce` claim of a proof already verified.
fn proof_nonce(proof: &str) -> Option<String> {
    let payload = proof.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("nonce")?.as_str().map(str::to_owned)
}
