//! The HTTP layer's DPoP step (feature `dpop`, RFC 9449 sections 4.3, 7 and 9): for a
//! request presenting `Authorization: DPoP <token>`, its one `DPoP` proof header checked
//! against the request (its method, and its URL as this server's resource origin plus the
//! request's path) and the token, then the token's `cnf.jkt` checked against the proof's
//! key; the principal that goes on carries that key
//! ([`Principal::proof_key`](crate::Principal::proof_key)).
//!
//! The proof is checked on every request, before the token (which the verifier may take
//! from its cache: a cached verification never stands in for a proof); its `jti` is
//! recorded against replay once the token is verified and bound to the proof's key, so
//! only a caller holding both fills the replay cache. A refusal of the
//! proof is a 401 with a `DPoP` challenge: `invalid_dpop_proof`, or `use_dpop_nonce` with a
//! fresh nonce in `DPoP-Nonce` when the server requires nonces.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};

use super::challenge::Rejection;
use super::refusal::Refused;
use crate::principal::Principal;
use crate::token::dpop::{DpopError, DpopVerifier, access_token_binding};

/// The `DPoP` request header (the proof) and the `DPoP-Nonce` response header.
const DPOP_HEADER: HeaderName = HeaderName::from_static("dpop");
const NONCE_HEADER: HeaderName = HeaderName::from_static("dpop-nonce");

/// How the layer treats DPoP: the verifier of proofs, and whether bearer tokens are
/// refused altogether.
#[derive(Debug)]
pub(crate) struct DpopSettings {
    pub(crate) verifier: Arc<DpopVerifier>,
    pub(crate) required: bool,
    /// The `algs` of a `DPoP` challenge, made once.
    pub(crate) algs: String,
}

impl DpopSettings {
    pub(crate) fn new(verifier: Arc<DpopVerifier>, required: bool) -> DpopSettings {
        let algs = verifier.options().algorithm_names();
        DpopSettings {
            verifier,
            required,
            algs,
        }
    }

    /// Checks the request's one `DPoP` proof for `token`, sent to `origin` (the resource
    /// URI's `scheme://authority`) at `path`.
    pub(super) fn check_proof(
        &self,
        parts: &http::request::Parts,
        origin: &str,
        token: &str,
    ) -> Result<crate::token::dpop::DpopProof, Box<Refused>> {
        let mut proofs = parts.headers.get_all(DPOP_HEADER).iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(proof), None) => proof,
            (None, _) => return Err(self.refusal("the request has no DPoP proof header")),
            (Some(_), Some(_)) => {
                return Err(self.refusal("the request has more than one DPoP proof header"));
            }
        };
        let Ok(proof) = proof.to_str() else {
            return Err(self.refusal("the DPoP proof header is not visible ASCII"));
        };
        // Nested routers strip their prefix from the URI; the original has the whole path.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.path(), |original| original.0.path());
        let url = format!("{origin}{path}");
        self.verifier
            .check_unrecorded(proof, parts.method.as_str(), &url, Some(token))
            .map_err(|e| self.proof_refusal(&e))
    }

    /// `principal`, proven by `proof`'s key, when its token is bound to that key and the
    /// proof was not used before (recorded now: only a caller holding a valid token and
    /// its key takes a place in the replay cache).
    pub(super) fn bind(
        &self,
        principal: Principal,
        proof: &crate::token::dpop::DpopProof,
    ) -> Result<Principal, Box<Refused>> {
        access_token_binding(&principal, proof)
            .and_then(|()| self.verifier.record_use(proof))
            .map_err(|e| self.proof_refusal(&e))?;
        Ok(principal.with_proof_key(Arc::clone(&proof.jkt)))
    }

    /// A 401 `invalid_dpop_proof` saying `message`.
    fn refusal(&self, message: &str) -> Box<Refused> {
        self.proof_refusal(&DpopError::Malformed(message.to_owned()))
    }

    /// The 401 for a proof (or binding) refused: its RFC 9449 error code in a `DPoP`
    /// challenge, and a fresh nonce when one is what the proof lacked.
    fn proof_refusal(&self, error: &DpopError) -> Box<Refused> {
        // A malformed proof is described by what is wrong with it alone.
        let message = match error {
            DpopError::Malformed(m) => m.clone(),
            other => other.to_string(),
        };
        tracing::debug!(target: "rmcp_authz::rejection", %error, "DPoP proof refused");
        if matches!(error, DpopError::ReplayCacheFull) {
            // Not the client's fault: try again (with a new proof) shortly.
            return Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                super::RejectionKind::InvalidDpopProof,
                &message,
            )
            .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
            .into();
        }
        let kind = if matches!(error, DpopError::Binding) {
            super::RejectionKind::InvalidToken
        } else {
            super::RejectionKind::InvalidDpopProof
        };
        let mut rejection = Rejection::new(StatusCode::UNAUTHORIZED, kind, &message)
            .dpop_challenge(&[
                ("error", Some(error.error_code())),
                ("error_description", Some(&message)),
            ]);
        if matches!(error, DpopError::UseNonce)
            && let Some(nonce) = self.verifier.nonce()
            && let Ok(value) = HeaderValue::from_str(&nonce)
        {
            rejection = rejection.header(NONCE_HEADER, value);
        }
        rejection.into()
    }
}
