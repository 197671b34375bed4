//! Parsing one JWK (RFC 7517, RFC 7518 section 6, RFC 8037) into a [`Key`].
//!
//! The checks here are the ones an issuer's JWK Set must pass before any of its keys is
//! trusted: `use` is `sig` when present, `key_ops` includes `verify` when present, no
//! private members, an `alg` that fits the key type and curve (or one that can be derived
//! without ambiguity: EC and Ed25519 keys name their algorithm through their curve), and
//! key material that is well-formed base64url of the right length. Everything else about a
//! key (sizes, the point, ROCA) is checked by [`Key`] itself.

use serde_json::{Map, Value};

use super::{Algorithm, Key, b64url_decode};
use crate::algorithm::KeyFamily;
use crate::error::{KeyError, KeyName};

/// JWK members that only private keys have (RFC 7518 sections 6.2.2 and 6.3.2, RFC 8037).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Builds a key from a JWK object. `position` names the key in errors when it has no
/// `kid`; `default_alg` binds RSA and `oct` keys that carry no `alg`.
pub(crate) fn key_from_jwk(
    value: &Value,
    position: KeyName,
    default_alg: Option<Algorithm>,
) -> Result<Key, KeyError> {
    let jwk = value.as_object().ok_or_else(|| KeyError::Json {
        reason: format!("{position} is not a JSON object"),
    })?;
    let name = match jwk.get("kid") {
        None => position,
        Some(Value::String(kid)) => KeyName::Kid(kid.clone()),
        Some(_) => {
            return Err(KeyError::InvalidMember {
                key: position,
                member: "kid",
                reason: "must be a string".to_owned(),
            });
        }
    };
    let kty = string_member(jwk, &name, "kty")?.ok_or_else(|| KeyError::MissingMember {
        key: name.clone(),
        member: "kty",
    })?;
    if let Some(use_) = string_member(jwk, &name, "use")?
        && use_ != "sig"
    {
        return Err(KeyError::NotForSignatures {
            key: name,
            use_: use_.to_owned(),
        });
    }
    check_key_ops(jwk, &name)?;
    if kty != "oct"
        && let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m))
    {
        return Err(KeyError::PrivateKeyMaterial { key: name, member });
    }
    let declared = match string_member(jwk, &name, "alg")? {
        None => None,
        Some(alg) => {
            Some(
                alg.parse::<Algorithm>()
                    .map_err(|_| KeyError::UnsupportedAlgorithm {
                        key: name.clone(),
                        alg: alg.to_owned(),
                    })?,
            )
        }
    };
    let family = match kty {
        "RSA" => KeyFamily::Rsa,
        "EC" => KeyFamily::Ec,
        "OKP" => KeyFamily::Okp,
        "oct" => KeyFamily::Hmac,
        other => {
            return Err(KeyError::UnsupportedKeyType {
                key: name,
                kty: other.to_owned(),
            });
        }
    };
    if let Some(alg) = declared
        && alg.family() != family
    {
        return Err(KeyError::AlgorithmKeyMismatch {
            key: name,
            alg,
            key_type: kty.to_owned(),
        });
    }
    let default_alg = default_alg.filter(|a| a.family() == family);
    match family {
        KeyFamily::Rsa => {
            let alg = declared
                .or(default_alg)
                .ok_or_else(|| KeyError::MissingAlgorithm {
                    key: name.clone(),
                    kty: "RSA",
                })?;
            let n = bytes_member(jwk, &name, "n")?;
            let e = bytes_member(jwk, &name, "e")?;
            Key::rsa(name, &n, &e, alg)
        }
        KeyFamily::Hmac => {
            let alg = declared
                .or(default_alg)
                .ok_or_else(|| KeyError::MissingAlgorithm {
                    key: name.clone(),
                    kty: "oct",
                })?;
            let k = bytes_member(jwk, &name, "k")?;
            Key::secret(name, &k, alg)
        }
        KeyFamily::Ec => {
            let crv = string_member(jwk, &name, "crv")?.ok_or_else(|| KeyError::MissingMember {
                key: name.clone(),
                member: "crv",
            })?;
            let (curve_alg, size) = match crv {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                other => {
                    return Err(KeyError::CurveMismatch {
                        key: name,
                        reason: format!(
                            "curve {other:?} is not supported (P-256 and P-384 are; ES512 is not offered)"
                        ),
                    });
                }
            };
            if let Some(alg) = declared
                && alg != curve_alg
            {
                return Err(KeyError::CurveMismatch {
                    key: name,
                    reason: format!("curve {crv} is used with {curve_alg}, not {alg}"),
                });
            }
            let x = sized_member(jwk, &name, "x", size, crv)?;
            let y = sized_member(jwk, &name, "y", size, crv)?;
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::public(name, &point, curve_alg)
        }
        KeyFamily::Okp => {
            let crv = string_member(jwk, &name, "crv")?.ok_or_else(|| KeyError::MissingMember {
                key: name.clone(),
                member: "crv",
            })?;
            if crv != "Ed25519" {
                return Err(KeyError::CurveMismatch {
                    key: name,
                    reason: format!("curve {crv:?} is not supported (Ed25519 is)"),
                });
            }
            let x = sized_member(jwk, &name, "x", 32, crv)?;
            Key::public(name, &x, Algorithm::EdDSA)
        }
    }
}

fn check_key_ops(jwk: &Map<String, Value>, name: &KeyName) -> Result<(), KeyError> {
    let Some(ops) = jwk.get("key_ops") else {
        return Ok(());
    };
    let ops: Vec<String> = ops
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| KeyError::InvalidMember {
            key: name.clone(),
            member: "key_ops",
            reason: "must be an array of strings".to_owned(),
        })?;
    if ops.iter().any(|op| op == "verify") {
        Ok(())
    } else {
        Err(KeyError::KeyOpsWithoutVerify {
            key: name.clone(),
            ops,
        })
    }
}

fn string_member<'a>(
    jwk: &'a Map<String, Value>,
    name: &KeyName,
    member: &'static str,
) -> Result<Option<&'a str>, KeyError> {
    match jwk.get(member) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::InvalidMember {
            key: name.clone(),
            member,
            reason: "must be a string".to_owned(),
        }),
    }
}

fn bytes_member(
    jwk: &Map<String, Value>,
    name: &KeyName,
    member: &'static str,
) -> Result<Vec<u8>, KeyError> {
    let text = string_member(jwk, name, member)?.ok_or_else(|| KeyError::MissingMember {
        key: name.clone(),
        member,
    })?;
    b64url_decode(text).ok_or_else(|| KeyError::InvalidMember {
        key: name.clone(),
        member,
        reason: "is not unpadded base64url".to_owned(),
    })
}

fn sized_member(
    jwk: &Map<String, Value>,
    name: &KeyName,
    member: &'static str,
    size: usize,
    crv: &str,
) -> Result<Vec<u8>, KeyError> {
    let bytes = bytes_member(jwk, name, member)?;
    if bytes.len() == size {
        Ok(bytes)
    } else {
        Err(KeyError::InvalidMember {
            key: name.clone(),
            member,
            reason: format!(
                "is {} bytes, a {crv} coordinate is {size} bytes",
                bytes.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: Value) -> Result<Key, KeyError> {
        key_from_jwk(&v, KeyName::Index(0), None)
    }

    // A valid P-256 public key (from the RFC 7515 appendix A.3 example).
    fn p256() -> Value {
        json!({"kty": "EC", "crv": "P-256",
               "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
               "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
    }

    #[test]
    fn ec_key_without_alg_takes_it_from_the_curve() {
        let key = load(p256()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES256);
    }

    #[test]
    fn ec_key_whose_curve_does_not_fit_alg_is_refused() {
        let mut v = p256();
        v["alg"] = json!("ES384");
        assert!(matches!(
            load(v).unwrap_err(),
            KeyError::CurveMismatch { .. }
        ));
        let mut v = p256();
        v["crv"] = json!("P-384");
        let err = load(v).unwrap_err();
        assert!(
            matches!(err, KeyError::InvalidMember { member: "x", .. }),
            "{err}"
        );
    }

    #[test]
    fn ec_point_off_the_curve_is_refused() {
        let mut v = p256();
        v["y"] = json!("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a4");
        assert!(matches!(
            load(v).unwrap_err(),
            KeyError::InvalidPublicKey { .. }
        ));
    }

    #[test]
    fn encryption_keys_and_wrong_key_ops_are_refused() {
        let mut v = p256();
        v["use"] = json!("enc");
        assert!(matches!(
            load(v).unwrap_err(),
            KeyError::NotForSignatures { .. }
        ));
        let mut v = p256();
        v["key_ops"] = json!(["encrypt"]);
        assert!(matches!(
            load(v).unwrap_err(),
            KeyError::KeyOpsWithoutVerify { .. }
        ));
        let mut v = p256();
        v["key_ops"] = json!(["verify"]);
        assert!(load(v).is_ok());
    }

    #[test]
    fn private_members_are_refused() {
        let mut v = p256();
        v["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        let err = load(v).unwrap_err();
        assert!(
            matches!(err, KeyError::PrivateKeyMaterial { member: "d", .. }),
            "{err}"
        );
    }

    #[test]
    fn rsa_and_oct_keys_need_an_alg() {
        let err = load(json!({"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
            .unwrap_err();
        assert!(
            matches!(err, KeyError::MissingAlgorithm { kty: "oct", .. }),
            "{err}"
        );
        let with_default = key_from_jwk(
            &json!({"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
            KeyName::Unnamed,
            Some(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(with_default.algorithm(), Algorithm::HS256);
    }

    #[test]
    fn unsupported_types_curves_and_algorithms_are_named() {
        let err =
            load(json!({"kty": "RSA", "alg": "RSA1_5", "n": "AQAB", "e": "AQAB"})).unwrap_err();
        assert!(err.to_string().contains("RSA1_5"), "{err}");
        let err = load(json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})).unwrap_err();
        assert!(err.to_string().contains("P-521"), "{err}");
        let err = load(json!({"kty": "OKP", "crv": "Ed448", "x": "AA"})).unwrap_err();
        assert!(err.to_string().contains("Ed448"), "{err}");
        let err = load(json!({"kty": "dh"})).unwrap_err();
        assert!(matches!(err, KeyError::UnsupportedKeyType { .. }), "{err}");
        let err = load(json!({"kty": "oct", "alg": "ES256", "k": "AA"})).unwrap_err();
        assert!(
            matches!(err, KeyError::AlgorithmKeyMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key_by_kid_or_position() {
        let err = load(json!({"kty": "EC", "kid": "k-7"})).unwrap_err();
        assert!(err.to_string().contains("\"k-7\""), "{err}");
        let err = key_from_jwk(&json!({"kty": "EC"}), KeyName::Index(3), None).unwrap_err();
        assert!(err.to_string().contains("#3"), "{err}");
    }

    #[test]
    fn padded_or_non_base64url_material_is_refused() {
        let mut v = p256();
        v["x"] = json!("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU=");
        assert!(matches!(
            load(v).unwrap_err(),
            KeyError::InvalidMember { member: "x", .. }
        ));
    }
}
