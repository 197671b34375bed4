//! Reading a token without verifying it: for inspection and debugging only.
//!
//! Nothing here checks a signature, so nothing here may ever decide access. The
//! `rmcp-authz token inspect` command uses it to show what a token says, and what a
//! verifier would object to.

use serde_json::{Map, Value};

use super::jws::{decode_object_part, split_compact};
use super::{AuthError, b64url_decode};

/// A token's header and claims, read without verification.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Unverified {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims (the payload, when it is a JSON object).
    pub claims: Map<String, Value>,
    /// The signature's length in bytes.
    pub signature_len: usize,
}

/// Decodes `token`'s header and claims **without checking anything but their shape**.
///
/// ```
/// use rmcp_authz::token::dangerous::decode_unverified;
/// # let issuer = rmcp_authz::dev::DevIssuer::new("https://as.example")?;
/// let token = issuer.token("https://rs.example/mcp").subject("alice").mint()?;
/// let t = decode_unverified(&token)?;
/// assert_eq!(t.claims["sub"], "alice");
/// assert_eq!(t.header["typ"], "at+jwt");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`AuthError::Malformed`] when the token is not three base64url parts with JSON object
/// header and payload.
pub fn decode_unverified(token: &str) -> Result<Unverified, AuthError> {
    let [h, p, s] = split_compact(token)?;
    let signature =
        b64url_decode(s).ok_or_else(|| AuthError::malformed("the signature is not base64url"))?;
    Ok(Unverified {
        header: decode_object_part(h, "header")?,
        claims: decode_object_part(p, "payload")?,
        signature_len: signature.len(),
    })
}
