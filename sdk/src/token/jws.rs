//! JWS compact serialization (RFC 7515 section 7.1): parsing and signature verification.
//!
//! This layer knows nothing of claims. It checks the shape (exactly three parts, strict
//! unpadded base64url, a JSON object header without duplicate members), refuses `none` in
//! any spelling and algorithms outside the allow-list, refuses any `crit` header (this
//! crate implements no JWS extensions, RFC 7515 section 4.1.11), picks the key by `kid`
//! from the configured [`KeySet`] only, and checks the signature.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::error::AuthError;
use super::{Algorithm, KeySet, b64url_decode};
use crate::error::excerpt;
pub(crate) use crate::json::parse_object;

/// A JWS whose signature has been verified with a configured key.
///
/// Returned by [`KeySet::verify_jws`]; claims have not been looked at.
#[derive(Clone)]
pub struct Jws {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    header: Map<String, Value>,
    payload: Vec<u8>,
}

impl fmt::Debug for Jws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("typ", &self.typ)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Jws {
    /// The verified algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` header parameter, if present.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `typ` header parameter, if present.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The whole protected header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The decoded payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

impl KeySet {
    /// Verifies a JWS compact serialization against this set and returns its header and
    /// payload. Claims are not examined: [`JwtVerifier`](super::JwtVerifier) does that.
    ///
    /// # Errors
    /// [`AuthError::Malformed`], [`AuthError::Unsigned`], [`AuthError::AlgorithmNotAllowed`],
    /// [`AuthError::UnsupportedCritical`], [`AuthError::UnknownKey`],
    /// [`AuthError::AlgorithmMismatch`] or [`AuthError::BadSignature`].
    pub fn verify_jws(&self, token: &str, allowed: &[Algorithm]) -> Result<Jws, AuthError> {
        let [h, p, s] = split_compact(token)?;
        let header = decode_object_part(h, "header")?;
        let (alg, key) = self.select_by_header(&header, allowed)?;
        let payload = verify_signature(key, token, [h, p, s])?;
        Ok(Jws {
            alg,
            kid: optional_string(&header, "kid")?.map(str::to_owned),
            typ: optional_string(&header, "typ")?.map(str::to_owned),
            header,
            payload,
        })
    }

    /// Verifies a JWS compact serialization against this set, as [`KeySet::verify_jws`]
    /// does, and returns only its payload: the path [`JwtVerifier`](super::JwtVerifier)
    /// takes, without the claim checks.
    ///
    /// The usual header (`alg`, `kid` and `typ`, strings, nothing else) is read without
    /// building a JSON map, so this is the cheaper call when the header is not needed.
    /// The checks and errors are those of [`KeySet::verify_jws`]; `typ` is not checked
    /// here either.
    ///
    /// ```
    /// use rmcp_authz::dev::DevIssuer;
    /// use rmcp_authz::token::{Algorithm, AuthError, KeySet};
    ///
    /// let issuer = DevIssuer::new("https://auth.example")?;
    /// let keys = KeySet::from_jwks_json(&issuer.jwks().to_string())?;
    /// let allowed = Algorithm::ASYMMETRIC;
    /// let token = issuer.token("https://mcp.example/mcp").subject("alice").mint()?;
    /// let payload = keys.verify_payload(&token, &allowed)?;
    /// let claims: serde_json::Value = serde_json::from_slice(&payload)?;
    /// assert_eq!(claims["sub"], "alice");
    ///
    /// let unsigned = "eyJhbGciOiJub25lIn0.e30.";
    /// assert!(matches!(keys.verify_payload(unsigned, &allowed), Err(AuthError::Unsigned { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`KeySet::verify_jws`].
    pub fn verify_payload(&self, token: &str, allowed: &[Algorithm]) -> Result<Vec<u8>, AuthError> {
        self.verify_compact(token, allowed, |_| Ok(()))
    }

    /// As [`KeySet::verify_payload`], for the verifier: `check_typ` is given the `typ`
    /// header once the signature is good.
    ///
    /// The usual header (`alg`, `kid` and `typ`, strings, nothing else) is read without
    /// building a JSON map; any other header is read as `verify_jws` reads it, so the
    /// checks and errors are the same.
    pub(crate) fn verify_compact(
        &self,
        token: &str,
        allowed: &[Algorithm],
        check_typ: impl FnOnce(Option<&str>) -> Result<(), AuthError>,
    ) -> Result<Vec<u8>, AuthError> {
        let [h, p, s] = split_compact(token)?;
        let header_bytes =
            b64url_decode(h).ok_or_else(|| AuthError::malformed("the header is not base64url"))?;
        let payload = match SimpleHeader::parse(&header_bytes) {
            Some(header) => {
                let alg = allowed_algorithm(&header.alg, allowed)?;
                let key = self.select(header.kid.as_deref(), alg)?;
                let payload = verify_signature(key, token, [h, p, s])?;
                check_typ(header.typ.as_deref())?;
                payload
            }
            None => {
                let header = parse_object(&header_bytes).map_err(|e| {
                    AuthError::malformed(format!("the header is not a JSON object: {e}"))
                })?;
                let (_, key) = self.select_by_header(&header, allowed)?;
                let payload = verify_signature(key, token, [h, p, s])?;
                check_typ(optional_string(&header, "typ")?)?;
                payload
            }
        };
        Ok(payload)
    }

    /// The header checks before the signature, in order: `alg` (present, not `none`,
    /// allowed), no `crit`, `kid` and `typ` strings; then the key.
    fn select_by_header(
        &self,
        header: &Map<String, Value>,
        allowed: &[Algorithm],
    ) -> Result<(Algorithm, &super::Key), AuthError> {
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::malformed("the header has no \"alg\" string"))?;
        let alg = allowed_algorithm(alg_name, allowed)?;
        if let Some(crit) = header.get("crit") {
            return Err(critical_error(crit));
        }
        let kid = optional_string(header, "kid")?;
        optional_string(header, "typ")?;
        Ok((alg, self.select(kid, alg)?))
    }
}

/// The algorithm `alg_name` names, if it is not `none` and is on the allow-list.
fn allowed_algorithm(alg_name: &str, allowed: &[Algorithm]) -> Result<Algorithm, AuthError> {
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(AuthError::Unsigned {
            alg: excerpt(alg_name),
        });
    }
    alg_name
        .parse::<Algorithm>()
        .ok()
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| AuthError::AlgorithmNotAllowed {
            alg: excerpt(alg_name),
            allowed: allowed
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Decodes the payload and checks the signature of `token` (split into `[h, p, s]`)
/// with `key`; returns the payload bytes.
fn verify_signature(
    key: &super::Key,
    token: &str,
    [h, p, s]: [&str; 3],
) -> Result<Vec<u8>, AuthError> {
    let payload =
        b64url_decode(p).ok_or_else(|| AuthError::malformed("the payload is not base64url"))?;
    if s.is_empty() {
        return Err(AuthError::malformed("the signature is empty"));
    }
    let signature =
        b64url_decode(s).ok_or_else(|| AuthError::malformed("the signature is not base64url"))?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(AuthError::BadSignature {
            kid: key.kid().unwrap_or("(no kid)").to_owned(),
        });
    }
    Ok(payload)
}

/// A protected header of the usual shape: `alg`, and optionally `kid` and `typ`, each once
/// and each a string, and no other member.
///
/// [`SimpleHeader::parse`] reads such a header without building a JSON map. It answers
/// `None` for every other input (another member such as `crit` or `jwk`, a value of
/// another type, a repeated member, invalid JSON), and the caller then reads the header
/// with the general strict parser, which yields the same values or the precise error.
struct SimpleHeader<'h> {
    alg: Cow<'h, str>,
    kid: Option<Cow<'h, str>>,
    typ: Option<Cow<'h, str>>,
}

impl<'h> SimpleHeader<'h> {
    fn parse(bytes: &'h [u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

impl<'de> Deserialize<'de> for SimpleHeader<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SimpleHeaderVisitor)
    }
}

struct SimpleHeaderVisitor;

impl<'de> Visitor<'de> for SimpleHeaderVisitor {
    type Value = SimpleHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a header with only alg, kid and typ strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let (mut alg, mut kid, mut typ) = (None, None, None);
        while let Some(name) = access.next_key::<SimpleName>()? {
            let slot = match name {
                SimpleName::Alg => &mut alg,
                SimpleName::Kid => &mut kid,
                SimpleName::Typ => &mut typ,
            };
            if slot.is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
            *slot = Some(access.next_value::<Text<'de>>()?.0);
        }
        Ok(SimpleHeader {
            alg: alg.ok_or_else(|| de::Error::missing_field("alg"))?,
            kid,
            typ,
        })
    }
}

/// A member name of a [`SimpleHeader`]; any other name is an error.
enum SimpleName {
    Alg,
    Kid,
    Typ,
}

impl<'de> Deserialize<'de> for SimpleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = SimpleName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("alg, kid or typ")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<SimpleName, E> {
                match name {
                    "alg" => Ok(SimpleName::Alg),
                    "kid" => Ok(SimpleName::Kid),
                    "typ" => Ok(SimpleName::Typ),
                    _ => Err(E::custom("another member")),
                }
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// A JSON string, borrowed from the input when it has no escapes; any other value is an
/// error.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The header, payload and signature parts of a compact serialization.
pub(crate) fn split_compact(token: &str) -> Result<[&str; 3], AuthError> {
    if token.is_empty() {
        return Err(AuthError::malformed("the token is empty"));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok([h, p, s]),
        _ => Err(not_three_parts(token)),
    }
}

/// The error for a token that is not three parts; out of line, off the path of one that is.
#[cold]
#[inline(never)]
fn not_three_parts(token: &str) -> AuthError {
    AuthError::malformed(format!(
        "a JWS has three dot-separated parts, this token has {}",
        token.split('.').count()
    ))
}

/// A base64url part that holds a JSON object (`what` names it in errors).
pub(crate) fn decode_object_part(part: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = b64url_decode(part)
        .ok_or_else(|| AuthError::malformed(format!("the {what} is not base64url")))?;
    parse_object(&bytes)
        .map_err(|e| AuthError::malformed(format!("the {what} is not a JSON object: {e}")))
}

fn critical_error(crit: &Value) -> AuthError {
    match crit.as_array() {
        Some(names) if !names.is_empty() && names.iter().all(Value::is_string) => {
            AuthError::UnsupportedCritical {
                params: names
                    .iter()
                    .filter_map(Value::as_str)
                    .take(8)
                    .map(excerpt)
                    .collect(),
            }
        }
        _ => AuthError::malformed("\"crit\" must be a non-empty array of strings"),
    }
}

fn optional_string<'h>(
    header: &'h Map<String, Value>,
    name: &str,
) -> Result<Option<&'h str>, AuthError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::malformed(format!(
            "the header's {name:?} is not a string"
        ))),
    }
}

#[cfg(test)]
mod header_paths;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn set() -> KeySet {
        let mut keys = KeySet::new();
        keys.insert(
            super::super::Key::hmac([3u8; 32], Algorithm::HS256)
                .unwrap()
                .with_kid("k"),
        )
        .unwrap();
        keys
    }

    fn hs256(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[3u8; 32]),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    const HS: [Algorithm; 1] = [Algorithm::HS256];

    #[test]
    fn valid_jws_yields_header_and_payload() {
        let jws = set()
            .verify_jws(
                &hs256(r#"{"alg":"HS256","kid":"k","typ":"at+jwt"}"#, "{}"),
                &HS,
            )
            .unwrap();
        assert_eq!(jws.algorithm(), Algorithm::HS256);
        assert_eq!(jws.kid(), Some("k"));
        assert_eq!(jws.typ(), Some("at+jwt"));
        assert_eq!(jws.payload(), b"{}");
    }

    #[test]
    fn duplicate_header_members_are_malformed() {
        let token = hs256(r#"{"alg":"HS256","kid":"k","kid":"other"}"#, "{}");
        let err = set().verify_jws(&token, &HS).unwrap_err();
        assert!(err.to_string().contains("duplicate member"), "{err}");
    }

    #[test]
    fn header_that_is_not_an_object_is_malformed() {
        for header in ["[1]", "\"alg\"", "{", "null"] {
            let token = format!("{}.{}.AAAA", b64(header), b64("{}"));
            assert!(matches!(
                set().verify_jws(&token, &HS).unwrap_err(),
                AuthError::Malformed { .. }
            ));
        }
    }

    #[test]
    fn crit_is_always_refused() {
        let token = hs256(
            r#"{"alg":"HS256","kid":"k","crit":["b64"],"b64":false}"#,
            "{}",
        );
        assert!(matches!(
            set().verify_jws(&token, &HS).unwrap_err(),
            AuthError::UnsupportedCritical { .. }
        ));
        let token = hs256(r#"{"alg":"HS256","kid":"k","crit":[]}"#, "{}");
        assert!(matches!(
            set().verify_jws(&token, &HS).unwrap_err(),
            AuthError::Malformed { .. }
        ));
    }

    #[test]
    fn algorithm_outside_allow_list_is_refused_even_with_a_key() {
        let token = hs256(r#"{"alg":"HS256","kid":"k"}"#, "{}");
        let err = set().verify_jws(&token, &[Algorithm::ES256]).unwrap_err();
        assert!(
            matches!(err, AuthError::AlgorithmNotAllowed { .. }),
            "{err}"
        );
    }

    #[test]
    fn padded_or_non_canonical_base64_is_malformed() {
        let good = hs256(r#"{"alg":"HS256","kid":"k"}"#, "{}");
        let (rest, sig) = good.rsplit_once('.').unwrap();
        let padded = format!("{rest}.{sig}=");
        assert!(matches!(
            set().verify_jws(&padded, &HS).unwrap_err(),
            AuthError::Malformed { .. }
        ));
    }

    #[test]
    fn signature_over_other_bytes_is_refused() {
        let good = hs256(r#"{"alg":"HS256","kid":"k"}"#, r#"{"a":1}"#);
        let other = hs256(r#"{"alg":"HS256","kid":"k"}"#, r#"{"a":2}"#);
        let forged = format!(
            "{}.{}",
            good.rsplit_once('.').unwrap().0,
            other.rsplit_once('.').unwrap().1
        );
        assert!(matches!(
            set().verify_jws(&forged, &HS).unwrap_err(),
            AuthError::BadSignature { .. }
        ));
    }
}
