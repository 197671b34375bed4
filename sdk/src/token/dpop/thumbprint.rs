//! The RFC 7638 thumbprint of a proof's public key: what a DPoP-bound token's `cnf.jkt`
//! names.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The RFC 7638 thumbprint of a public JWK: base64url SHA-256 of its required members, in
/// lexicographic order, without whitespace.
///
/// # Errors
/// A message naming the missing member or the unknown `kty`.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Result<String, String> {
    thumbprint_digest(jwk).map(|digest| URL_SAFE_NO_PAD.encode(digest))
}

/// The SHA-256 digest [`jwk_thumbprint`] encodes.
pub(super) fn thumbprint_digest(jwk: &Map<String, Value>) -> Result<[u8; 32], String> {
    let kty = jwk.get("kty").and_then(Value::as_str).ok_or("no \"kty\"")?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => return Err(format!("no thumbprint for kty {other:?}")),
    };
    let mut required = Map::new();
    for member in members {
        let value = jwk
            .get(*member)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no \"{member}\" string"))?;
        required.insert((*member).to_owned(), Value::String(value.to_owned()));
    }
    // A serde_json map without `preserve_order` sorts its keys; with it (feature `cedar`
    // turns it on), they were inserted in order above.
    let canonical = serde_json::to_string(&required).map_err(|e| e.to_string())?;
    let mut thumbprint = [0_u8; 32];
    thumbprint.copy_from_slice(digest(&SHA256, canonical.as_bytes()).as_ref());
    Ok(thumbprint)
}
