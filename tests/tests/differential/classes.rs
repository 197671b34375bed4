//! The classes of deliberate disagreement between this crate's verifier and
//! `jsonwebtoken`, each named, with the rule that justifies this crate's side, and how
//! each is recognised.
//!
//! A class is recognised from the token itself, read here independently of both verifiers
//! (base64url, `serde_json`, a duplicate-member walk of its own, the `url` crate), together
//! with the refusing side's error. A class where this crate accepts what `jsonwebtoken`
//! refuses needs a rule just as much as one where it is stricter.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::TokenData;
use jsonwebtoken::errors::ErrorKind;
use rmcp_authz::Principal;
use rmcp_authz::token::AuthError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::AUDIENCE;

/// A class of tokens the two verifiers decide differently, on purpose.
#[derive(Debug)]
pub(crate) struct Class {
    pub(crate) name: &'static str,
    /// The rule that justifies this crate's side.
    pub(crate) rule: &'static str,
    /// True when this crate accepts what `jsonwebtoken` refuses.
    pub(crate) ours_accepts: bool,
    applies: fn(&Case<'_>) -> bool,
}

/// What a class is recognised by: the token read here, independently of both verifiers,
/// and the two decisions.
pub(crate) struct Case<'a> {
    ours: &'a Result<Principal, AuthError>,
    theirs: &'a Result<TokenData<Value>, jsonwebtoken::errors::Error>,
    header: Option<Value>,
    payload: Option<Value>,
    duplicate_member: bool,
    now: i64,
    leeway: i64,
    kids: &'a [&'a str],
}

impl<'a> Case<'a> {
    /// The case of `token`, decided at `now` by a configuration with this `leeway` and
    /// keys with these `kids`.
    pub(crate) fn read(
        token: &str,
        ours: &'a Result<Principal, AuthError>,
        theirs: &'a Result<TokenData<Value>, jsonwebtoken::errors::Error>,
        now: i64,
        leeway: i64,
        kids: &'a [&'a str],
    ) -> Case<'a> {
        let parts: Vec<&str> = token.split('.').collect();
        let decoded = |i: usize| {
            parts
                .get(i)
                .filter(|_| parts.len() == 3)
                .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        };
        let (header, payload) = (decoded(0), decoded(1));
        let json = |b: &Option<Vec<u8>>| b.as_ref().and_then(|b| serde_json::from_slice(b).ok());
        Case {
            ours,
            theirs,
            header: json(&header),
            payload: json(&payload),
            duplicate_member: [header, payload]
                .iter()
                .flatten()
                .any(|b| has_duplicate_member(b)),
            now,
            leeway,
            kids,
        }
    }

    /// The listed class this disagreement falls in, if any.
    pub(crate) fn class(&self) -> Option<&'static Class> {
        let ours_accepts = self.ours.is_ok();
        CLASSES
            .iter()
            .find(|class| class.ours_accepts == ours_accepts && (class.applies)(self))
    }

    fn ours_err(&self) -> Option<&AuthError> {
        self.ours.as_ref().err()
    }

    fn theirs_err(&self) -> Option<&ErrorKind> {
        self.theirs.as_ref().err().map(|e| e.kind())
    }

    fn header_has(&self, name: &str) -> Option<&Value> {
        self.header.as_ref().and_then(|h| h.get(name))
    }

    fn claim(&self, name: &str) -> Option<&Value> {
        self.payload.as_ref().and_then(|p| p.get(name))
    }

    fn ours_malformed(&self) -> bool {
        matches!(self.ours_err(), Some(AuthError::Malformed { .. }))
    }

    fn invalid_claim_among(&self, names: &[&str]) -> bool {
        match self.ours_err() {
            Some(AuthError::InvalidClaim { claim, .. }) => names.contains(&claim.as_str()),
            _ => false,
        }
    }
}

/// Every deliberate disagreement, by name, with its rule. Any other disagreement fails.
pub(crate) const CLASSES: &[Class] = &[
    Class {
        name: "token-too-large",
        rule: "bounded work per token: the length is checked before any decoding \
            (docs/security.md, resource exhaustion); jsonwebtoken has no limit",
        ours_accepts: false,
        applies: |c| matches!(c.ours_err(), Some(AuthError::TooLarge { .. })),
    },
    Class {
        name: "duplicate-member",
        rule: "RFC 7515 section 4 and RFC 7519 section 4 let a parser refuse repeated member \
            names (RFC 8259 section 4: their meaning is unpredictable); jsonwebtoken keeps \
            the last",
        ours_accepts: false,
        applies: |c| c.ours_malformed() && c.duplicate_member,
    },
    Class {
        name: "claims-not-an-object",
        rule: "RFC 7519 section 7.2 step 10: the claims set is a JSON object; jsonwebtoken \
            reads a JSON array positionally as [exp, nbf, sub, iss, aud]",
        ours_accepts: false,
        applies: |c| c.ours_malformed() && c.payload.as_ref().is_some_and(|p| !p.is_object()),
    },
    Class {
        name: "kid-or-typ-null",
        rule: "RFC 7515 sections 4.1.4 and 4.1.9: kid and typ are strings; jsonwebtoken reads \
            null as absent",
        ours_accepts: false,
        applies: |c| {
            c.ours_malformed()
                && (c.header_has("kid").is_some_and(Value::is_null)
                    || c.header_has("typ").is_some_and(Value::is_null))
        },
    },
    Class {
        name: "crit-refused",
        rule: "RFC 7515 section 4.1.11: this crate implements no JWS extension, so every crit \
            is refused; jsonwebtoken understands b64 (RFC 7797) and reads crit: null as \
            absent",
        ours_accepts: false,
        applies: |c| {
            matches!(c.ours_err(), Some(AuthError::UnsupportedCritical { .. }))
                || (c.ours_malformed() && c.header_has("crit").is_some())
        },
    },
    Class {
        name: "unknown-kid",
        rule: "RFC 7515 section 4.1.4: kid names the key, and no configured key has this one; \
            jsonwebtoken, given one key, ignores kid",
        ours_accepts: false,
        applies: |c| {
            matches!(
                c.ours_err(),
                Some(AuthError::UnknownKey { kid: Some(_), .. })
            ) && c
                .header_has("kid")
                .and_then(Value::as_str)
                .is_some_and(|kid| !c.kids.contains(&kid))
        },
    },
    Class {
        name: "one-key-one-algorithm",
        rule: "RFC 8725 section 3.1: a key is used with one algorithm, so a PS256 token finds \
            no key (or, naming the RS256 key's kid, is refused by it); jsonwebtoken verifies \
            PS256 with a key meant for RS256 when both are allowed",
        ours_accepts: false,
        applies: |c| {
            matches!(
                c.ours_err(),
                Some(AuthError::AlgorithmMismatch { .. } | AuthError::UnknownKey { kid: None, .. })
            )
        },
    },
    Class {
        name: "typ-not-access-token",
        rule: "RFC 9068 section 4 and RFC 8725 section 3.11: an access token says typ at+jwt \
            (the lenient check also takes none or JWT); jsonwebtoken does not check typ",
        ours_accepts: false,
        applies: |c| matches!(c.ours_err(), Some(AuthError::WrongType { .. })),
    },
    Class {
        name: "empty-identity",
        rule: "RFC 9068 section 2.2: sub and client_id identify someone, and an empty string \
            names no one (docs/security.md); jsonwebtoken takes any string",
        ours_accepts: false,
        applies: |c| matches!(c.ours_err(), Some(AuthError::EmptyClaim { .. })),
    },
    Class {
        name: "exp-boundary-second",
        rule: "RFC 7519 section 4.1.4: now must be before exp, so exp = now - leeway is \
            expired, and a fraction is floored (the safe side at whole seconds); \
            jsonwebtoken accepts exp = now - leeway and rounds fractions",
        ours_accepts: false,
        applies: |c| {
            matches!(c.ours_err(), Some(AuthError::Expired { .. }))
                && c.claim("exp").and_then(Value::as_f64).is_some_and(|exp| {
                    let edge = (c.now - c.leeway) as f64;
                    exp.floor() <= edge && exp.round() >= edge
                })
        },
    },
    Class {
        name: "nbf-fraction-rounded-up",
        rule: "RFC 7519 section 4.1.5: the token is not accepted before nbf, so at whole \
            seconds a fraction is rounded up; jsonwebtoken rounds it to the nearest second",
        ours_accepts: false,
        applies: |c| {
            matches!(c.ours_err(), Some(AuthError::NotYetValid { .. }))
                && c.claim("nbf").and_then(Value::as_f64).is_some_and(|nbf| {
                    let edge = (c.now + c.leeway) as f64;
                    nbf.ceil() > edge && nbf.round() <= edge
                })
        },
    },
    Class {
        name: "iat-in-the-future",
        rule: "RFC 7519 section 4.1.6 dates the token; an iat beyond the leeway ahead of the \
            clock would pass every age limit and is refused, as PyJWT does \
            (docs/security.md); jsonwebtoken does not read iat",
        ours_accepts: false,
        applies: |c| matches!(c.ours_err(), Some(AuthError::IssuedInFuture { .. })),
    },
    Class {
        name: "iss-not-a-string",
        rule: "RFC 7519 section 4.1.1: iss is a StringOrURI, a string; jsonwebtoken also takes \
            an array holding the issuer",
        ours_accepts: false,
        applies: |c| c.invalid_claim_among(&["iss"]),
    },
    Class {
        name: "numeric-date-not-a-number",
        rule: "RFC 7519 sections 2, 4.1.5 and 4.1.6, OpenID Connect Core section 2: nbf, iat \
            and auth_time are JSON numbers; jsonwebtoken reads a null nbf as absent and \
            never reads iat or auth_time",
        ours_accepts: false,
        applies: |c| c.invalid_claim_among(&["nbf", "iat", "auth_time"]),
    },
    Class {
        name: "string-claim-not-a-string",
        rule: "RFC 7519 sections 4.1.2 and 4.1.7, RFC 9068 section 2.2: sub, jti, client_id and \
            azp are strings; jsonwebtoken does not read them (nor sub when it is not \
            required)",
        ours_accepts: false,
        applies: |c| c.invalid_claim_among(&["sub", "jti", "client_id", "azp"]),
    },
    Class {
        name: "scope-shape",
        rule: "RFC 8693 section 4.2 and RFC 9068 section 2.2.3: scope is a space-separated \
            string (scp also an array of strings); jsonwebtoken does not read them",
        ours_accepts: false,
        applies: |c| c.invalid_claim_among(&["scope", "scp"]),
    },
    Class {
        name: "act-shape",
        rule: "RFC 8693 section 4.1: act is a JSON object naming the actor by sub (or \
            client_id); jsonwebtoken does not read it",
        ours_accepts: false,
        applies: |c| c.invalid_claim_among(&["act"]),
    },
    Class {
        name: "audience-case-and-default-port",
        rule: "MCP authorization spec and RFC 3986 sections 6.2.2.1 and 6.2.3: the scheme and \
            host are case-insensitive and a default port is the same URI; jsonwebtoken \
            compares bytes",
        ours_accepts: true,
        applies: |c| {
            matches!(c.theirs_err(), Some(ErrorKind::InvalidAudience))
                && audiences(c.claim("aud"))
                    .iter()
                    .any(|a| *a != AUDIENCE && same_url(a, AUDIENCE))
        },
    },
    Class {
        name: "unused-header-parameter",
        rule: "RFC 7515 section 4: this crate reads alg, kid, typ and crit only; keys come from \
            configuration, never from jku, jwk, x5u or x5c (RFC 8725 section 3.10), cty, \
            enc, zip, url and nonce are not JWS parameters it uses, and b64 means nothing \
            outside crit (RFC 7797 section 6); jsonwebtoken type-checks them all",
        ours_accepts: true,
        applies: |c| {
            matches!(
                c.theirs_err(),
                Some(ErrorKind::Json(_) | ErrorKind::InvalidToken)
            ) && c
                .header
                .as_ref()
                .and_then(Value::as_object)
                .is_some_and(|h| {
                    h.iter()
                        .any(|(name, value)| unused_parameter_refused(name, value))
                })
        },
    },
    Class {
        name: "nbf-before-1970",
        rule: "RFC 7519 section 2: a NumericDate is any JSON number, a date before 1970 a \
            negative one, and an nbf in the past allows use now (section 4.1.5); \
            jsonwebtoken cannot hold it in a u64",
        ours_accepts: true,
        applies: |c| {
            matches!(c.theirs_err(), Some(ErrorKind::InvalidClaimFormat(claim)) if claim == "nbf")
                && c.claim("nbf")
                    .and_then(Value::as_f64)
                    .is_some_and(|nbf| nbf < 0.0)
        },
    },
    Class {
        name: "exp-beyond-u64",
        rule: "RFC 7519 section 2: a NumericDate is any JSON number, and an exp beyond 2^64 \
            seconds is in the future; jsonwebtoken cannot hold it in a u64",
        ours_accepts: true,
        applies: |c| {
            let refused_exp = match c.theirs_err() {
                Some(
                    ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim),
                ) => claim == "exp",
                _ => false,
            };
            refused_exp
                && c.claim("exp")
                    .and_then(Value::as_f64)
                    .is_some_and(|exp| exp >= 18_446_744_073_709_551_616.0)
        },
    },
];

/// Header parameters this crate never reads, and whether `jsonwebtoken`'s `Header` type
/// refuses `value` for `name`.
fn unused_parameter_refused(name: &str, value: &Value) -> bool {
    match name {
        "cty" | "jku" | "x5u" | "x5t" | "x5t#S256" | "enc" | "zip" | "url" | "nonce" => {
            !(value.is_null() || value.is_string())
        }
        "x5c" => {
            !(value.is_null()
                || value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)))
        }
        "jwk" => !value.is_null(),
        "b64" => value != &Value::Bool(true),
        _ => false,
    }
}

fn audiences(aud: Option<&Value>) -> Vec<&str> {
    match aud {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The same URL once parsed and normalised by the `url` crate (WHATWG).
fn same_url(a: &str, b: &str) -> bool {
    matches!((url::Url::parse(a), url::Url::parse(b)), (Ok(a), Ok(b)) if a == b)
}

/// Whether `json` holds an object with a repeated member name, at any depth (names
/// compared decoded). Not JSON at all: false.
fn has_duplicate_member(json: &[u8]) -> bool {
    serde_json::from_slice::<Duplicates>(json).is_ok_and(|d| d.0)
}

struct Duplicates(bool);

impl<'de> Deserialize<'de> for Duplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DuplicatesVisitor)
    }
}

struct DuplicatesVisitor;

impl<'de> Visitor<'de> for DuplicatesVisitor {
    type Value = Duplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Duplicates, A::Error> {
        let mut found = false;
        while let Some(Duplicates(inner)) = seq.next_element()? {
            found |= inner;
        }
        Ok(Duplicates(found))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Duplicates, A::Error> {
        let (mut names, mut found) = (HashSet::new(), false);
        while let Some(name) = map.next_key::<String>()? {
            found |= !names.insert(name);
            let Duplicates(inner) = map.next_value()?;
            found |= inner;
        }
        Ok(Duplicates(found))
    }
}
