//! Claim validation for JWT access tokens (RFC 7519 section 4.1, RFC 9068 section 4,
//! RFC 8693 section 4.1) and the mapping of valid claims to a [`Principal`].
//!
//! Rules: required claims present; `iss` equal to the configured issuer, byte for byte;
//! `aud` (a string or an array of strings) containing this resource's URI (RFC 8707: a token
//! for another resource is refused), exactly but for the case of its scheme and host and a
//! default port; `exp`, `nbf`, `iat` and `auth_time` JSON
//! numbers, never strings; `exp` in the future, `nbf` and `iat` in the past, within the leeway
//! (at whole seconds, a fraction rounded to the safe side of each check);
//! identity claims non-empty strings; `act` nested objects each with a `sub` or a
//! `client_id`.

use std::time::Duration;

use serde_json::{Map, Value};

use super::MAX_LEEWAY;
use super::error::AuthError;
use crate::error::{ConfigError, excerpt};
use crate::json::kind_of;
use crate::principal::{Actor, Principal, PrincipalParts};

/// The deepest delegation chain accepted; deeper `act` nesting is refused as invalid.
pub(crate) const MAX_DELEGATION_DEPTH: usize = 32;

/// What a token's claims are checked against.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) leeway_secs: u64,
    pub(crate) required: Vec<String>,
}

impl ClaimRules {
    /// The rules for tokens of `issuer` meant for `audience`, with `leeway` for `exp` and
    /// `nbf`, requiring `iss`, `aud`, `exp` and the `extra` claims.
    ///
    /// # Errors
    /// [`ConfigError::EmptyIssuer`], [`ConfigError::EmptyAudience`] or
    /// [`ConfigError::LeewayTooLarge`].
    pub(crate) fn new(
        issuer: String,
        audience: String,
        leeway: Duration,
        extra: Vec<String>,
    ) -> Result<ClaimRules, ConfigError> {
        if issuer.is_empty() {
            return Err(ConfigError::EmptyIssuer);
        }
        if audience.is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::LeewayTooLarge {
                leeway,
                max: MAX_LEEWAY,
            });
        }
        let mut required: Vec<String> = ["iss", "aud", "exp"].map(String::from).to_vec();
        for claim in extra {
            if !required.contains(&claim) {
                required.push(claim);
            }
        }
        Ok(ClaimRules {
            issuer,
            audience,
            leeway_secs: leeway.as_secs(),
            required,
        })
    }
}

/// The registered claims `validate` reads, found in one pass over the claims.
#[derive(Default)]
struct Registered<'a> {
    iss: Option<&'a Value>,
    sub: Option<&'a Value>,
    aud: Option<&'a Value>,
    exp: Option<&'a Value>,
    nbf: Option<&'a Value>,
    iat: Option<&'a Value>,
    auth_time: Option<&'a Value>,
    client_id: Option<&'a Value>,
    azp: Option<&'a Value>,
    jti: Option<&'a Value>,
    scope: Option<&'a Value>,
    scp: Option<&'a Value>,
    act: Option<&'a Value>,
}

impl<'a> Registered<'a> {
    fn find(claims: &'a Map<String, Value>) -> Self {
        let mut found = Registered::default();
        for (name, value) in claims {
            if let Some(slot) = found.slot(name) {
                *slot = Some(value);
            }
        }
        found
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<&'a Value>> {
        Some(match name {
            "iss" => &mut self.iss,
            "sub" => &mut self.sub,
            "aud" => &mut self.aud,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            "iat" => &mut self.iat,
            "auth_time" => &mut self.auth_time,
            "client_id" => &mut self.client_id,
            "azp" => &mut self.azp,
            "jti" => &mut self.jti,
            "scope" => &mut self.scope,
            "scp" => &mut self.scp,
            "act" => &mut self.act,
            _ => return None,
        })
    }
}

/// Checks `claims` at time `now` and builds the principal.
pub(crate) fn validate(
    claims: Map<String, Value>,
    rules: &ClaimRules,
    now: i64,
) -> Result<Principal, AuthError> {
    // One pass over the claims instead of a map lookup per registered claim.
    let mut r = Registered::find(&claims);
    if let Some(missing) = rules.required.iter().find(|c| match r.slot(c) {
        Some(slot) => slot.is_none(),
        None => !claims.contains_key(c.as_str()),
    }) {
        return Err(AuthError::MissingClaim {
            claim: missing.clone(),
        });
    }
    let exp = numeric_date(r.exp, "exp")?
        .ok_or_else(|| AuthError::MissingClaim {
            claim: "exp".to_owned(),
        })?
        .down;
    let nbf = numeric_date(r.nbf, "nbf")?.map(|nbf| nbf.up);
    let iat = numeric_date(r.iat, "iat")?;
    numeric_date(r.auth_time, "auth_time")?;

    let issuer = string(r.iss, "iss")?.ok_or_else(|| AuthError::MissingClaim {
        claim: "iss".to_owned(),
    })?;
    if issuer != rules.issuer {
        return Err(AuthError::WrongIssuer {
            expected: rules.issuer.clone(),
            found: excerpt(issuer),
        });
    }
    let audiences = audiences(r.aud)?;
    if !audiences.iter().any(|a| same_resource(a, &rules.audience)) {
        return Err(AuthError::WrongAudience {
            expected: rules.audience.clone(),
            found: audiences.iter().take(8).map(|a| excerpt(a)).collect(),
        });
    }

    let leeway = i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX);
    if now.saturating_sub(leeway) >= exp {
        return Err(AuthError::Expired {
            exp,
            now,
            leeway_secs: rules.leeway_secs,
        });
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(AuthError::NotYetValid {
            nbf,
            now,
            leeway_secs: rules.leeway_secs,
        });
    }
    // RFC 7519 leaves `iat` unchecked, but a token dated ahead of the clock would read as
    // fresher than any real one and pass every age limit (`max_token_age`).
    if let Some(iat) = iat
        && iat.up > now.saturating_add(leeway)
    {
        return Err(AuthError::IssuedInFuture {
            iat: iat.up,
            now,
            leeway_secs: rules.leeway_secs,
        });
    }

    let subject = identity(r.sub, "sub")?.map(str::to_owned);
    let client_id = match identity(r.client_id, "client_id")? {
        Some(c) => Some(c.to_owned()),
        None => identity(r.azp, "azp")?.map(str::to_owned),
    };
    let jti = string(r.jti, "jti")?.map(str::to_owned);
    let scopes = scopes(r.scope, r.scp)?;
    let actors = actors(r.act)?;
    let audiences = audiences.into_iter().map(str::to_owned).collect();
    Ok(PrincipalParts {
        issuer: issuer.to_owned(),
        subject,
        client_id,
        audiences,
        scopes,
        actors,
        jti,
        iat: iat.map(|iat| iat.down),
        exp,
        claims,
        clock_leeway_secs: Some(i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX)),
    }
    .into())
}

/// A NumericDate at the clock's resolution, whole seconds: a fraction rounded down and
/// up, so that each check takes its safe side. `exp` is read down (a token expires up to a
/// second early), `nbf` and the future-`iat` check read up (a token becomes valid up to a
/// second late); the principal's `iat` is read down.
#[derive(Debug, Clone, Copy)]
struct Seconds {
    down: i64,
    up: i64,
}

/// A NumericDate claim (RFC 7519 section 2): a JSON number of seconds, maybe fractional.
/// A string, even of digits, is refused: parsers that coerce them have been exploited.
fn numeric_date(value: Option<&Value>, name: &str) -> Result<Option<Seconds>, AuthError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let whole = |s| Some(Seconds { down: s, up: s });
            if let Some(i) = n.as_i64() {
                Ok(whole(i))
            } else if n.is_u64() {
                Ok(whole(i64::MAX))
            } else {
                // A float: JSON has no NaN or infinity, and `as` saturates.
                Ok(n.as_f64().map(|f| Seconds {
                    down: f.floor() as i64,
                    up: f.ceil() as i64,
                }))
            }
        }
        Some(other) => Err(AuthError::invalid_claim(
            name,
            format!(
                "must be a number of seconds since the epoch (NumericDate), found {}",
                kind_of(other)
            ),
        )),
    }
}

fn string<'a>(value: Option<&'a Value>, name: &str) -> Result<Option<&'a str>, AuthError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(AuthError::invalid_claim(
            name,
            format!("must be a string, found {}", kind_of(other)),
        )),
    }
}

/// An identity claim: a string, and not an empty one, which would name no one.
fn identity<'a>(value: Option<&'a Value>, name: &str) -> Result<Option<&'a str>, AuthError> {
    match string(value, name)? {
        Some("") => Err(AuthError::EmptyClaim {
            claim: name.to_owned(),
        }),
        other => Ok(other),
    }
}

/// Whether the audience `aud` names the resource `resource`: byte for byte, or, failing
/// that, once the case of the scheme and host is folded and a default port (`:443` for
/// https, `:80` for http) dropped, on both sides (RFC 3986 section 6.2.2.1 and 6.2.3; the
/// MCP authorization spec asks resource servers to accept uppercase scheme and host). The
/// path and query stay exact, and a URI with user information is only compared exactly.
/// Nothing is allocated: a token for this resource usually matches on the first test.
pub(crate) fn same_resource(aud: &str, resource: &str) -> bool {
    if aud == resource {
        return true;
    }
    match (UriParts::split(aud), UriParts::split(resource)) {
        (Some(a), Some(b)) => {
            a.scheme.eq_ignore_ascii_case(b.scheme)
                && a.host.eq_ignore_ascii_case(b.host)
                && a.port == b.port
                && a.rest == b.rest
        }
        _ => false,
    }
}

/// A URI cut where [`same_resource`] needs it; the port is `None` when absent or the
/// scheme's default.
struct UriParts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    /// The path, query and fragment, compared exactly.
    rest: &'a str,
}

impl<'a> UriParts<'a> {
    fn split(uri: &'a str) -> Option<UriParts<'a>> {
        let (scheme, after) = uri.split_once("://")?;
        let scheme_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
        if scheme.is_empty() || !scheme.bytes().all(scheme_char) {
            return None;
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            // An IPv6 literal: the port, if any, follows the bracket.
            Some(_) => {
                let close = authority.find(']')? + 1;
                let (host, tail) = authority.split_at(close);
                match tail {
                    "" => (host, None),
                    tail => (host, Some(tail.strip_prefix(':')?)),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return None;
        }
        let default = if scheme.eq_ignore_ascii_case("https") {
            Some("443")
        } else if scheme.eq_ignore_ascii_case("http") {
            Some("80")
        } else {
            None
        };
        let port = port.filter(|p| Some(*p) != default);
        Some(UriParts {
            scheme,
            host,
            port,
            rest,
        })
    }
}

fn audiences(aud: Option<&Value>) -> Result<Vec<&str>, AuthError> {
    match aud {
        None => Err(AuthError::MissingClaim {
            claim: "aud".to_owned(),
        }),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    AuthError::invalid_claim("aud", "must be a string or an array of strings")
                })
            })
            .collect(),
        Some(other) => Err(AuthError::invalid_claim(
            "aud",
            format!(
                "must be a string or an array of strings, found {}",
                kind_of(other)
            ),
        )),
    }
}

/// Scopes from `scope` (RFC 8693 section 4.2, RFC 9068 section 2.2.3), else from `scp`.
/// When both are present `scope` wins: the narrower reading of an ambiguous token.
fn scopes(scope: Option<&Value>, scp: Option<&Value>) -> Result<Vec<String>, AuthError> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    let (name, value) = match (scope, scp) {
        (Some(v), _) => ("scope", v),
        (None, Some(v)) => ("scp", v),
        (None, None) => return Ok(Vec::new()),
    };
    match value {
        Value::String(s) => s.split(' ').for_each(&mut push),
        Value::Array(items) if name == "scp" => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| AuthError::invalid_claim("scp", "must hold only strings"))?;
                push(s);
            }
        }
        other => {
            return Err(AuthError::invalid_claim(
                name,
                format!(
                    "must be a space-separated string{}, found {}",
                    if name == "scp" {
                        " or an array of strings"
                    } else {
                        ""
                    },
                    kind_of(other)
                ),
            ));
        }
    }
    Ok(out)
}

/// The delegation chain: `act`, then `act.act`, ... (RFC 8693 section 4.1: the outermost
/// `act` is the current actor).
fn actors(act: Option<&Value>) -> Result<Vec<Actor>, AuthError> {
    let mut chain = Vec::new();
    let mut next = act;
    while let Some(value) = next {
        if chain.len() == MAX_DELEGATION_DEPTH {
            return Err(AuthError::invalid_claim(
                "act",
                format!("delegation chain is deeper than {MAX_DELEGATION_DEPTH} actors"),
            ));
        }
        let act = value
            .as_object()
            .ok_or_else(|| AuthError::invalid_claim("act", "must be a JSON object"))?;
        let member = |name: &str, qualified: &str| match act.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(AuthError::EmptyClaim {
                claim: qualified.to_owned(),
            }),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(AuthError::invalid_claim(
                "act",
                format!("an actor's {name:?} must be a string"),
            )),
        };
        // RFC 8693 section 4.1: claims other than `sub` may identify the actor; an agent
        // acting as itself is a client, named by its `client_id`.
        let subject = member("sub", "act.sub")?;
        let issuer = member("iss", "act.iss")?;
        let client_id = member("client_id", "act.client_id")?;
        let actor = Actor::new(
            subject.map(str::to_owned),
            issuer.map(str::to_owned),
            client_id.map(str::to_owned),
        )
        .ok_or_else(|| {
            AuthError::invalid_claim("act", "an actor must have a \"sub\" or a \"client_id\"")
        })?;
        chain.push(actor);
        next = act.get("act");
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://as.example".into(),
            audience: "https://rs.example/mcp".into(),
            leeway_secs: 30,
            required: ["iss", "aud", "exp", "sub"].map(String::from).to_vec(),
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut c = json!({"iss": "https://as.example", "aud": "https://rs.example/mcp",
                           "sub": "alice", "exp": NOW + 60})
        .as_object()
        .unwrap()
        .clone();
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    fn check(extra: Value) -> Result<Principal, AuthError> {
        validate(claims(extra), &rules(), NOW)
    }

    #[test]
    fn expired_within_leeway_ok() {
        assert!(check(json!({"exp": NOW - 29})).is_ok());
    }

    #[test]
    fn expired_beyond_leeway_is_refused() {
        let err = check(json!({"exp": NOW - 30})).unwrap_err();
        assert!(
            matches!(err, AuthError::Expired { exp, .. } if exp == NOW - 30),
            "{err}"
        );
    }

    #[test]
    fn nbf_within_leeway_ok_beyond_refused() {
        assert!(check(json!({"nbf": NOW + 30})).is_ok());
        assert!(matches!(
            check(json!({"nbf": NOW + 31})).unwrap_err(),
            AuthError::NotYetValid { .. }
        ));
    }

    #[test]
    fn numeric_dates_as_strings_are_refused() {
        for claim in ["exp", "nbf", "iat", "auth_time"] {
            let err = check(json!({claim: "1800000060"})).unwrap_err();
            assert!(
                matches!(&err, AuthError::InvalidClaim { claim: c, .. } if c == claim),
                "{claim}: {err}"
            );
        }
    }

    #[test]
    fn fractions_round_to_the_safe_side_of_each_check() {
        // exp down: NOW - 29.5 reads NOW - 30, expired with a 30 s leeway.
        assert!(check(json!({"exp": (NOW - 30) as f64 + 0.5})).is_err());
        // nbf up: NOW + 30.2 reads NOW + 31, beyond the leeway.
        let err = check(json!({"nbf": (NOW + 30) as f64 + 0.2})).unwrap_err();
        assert!(
            matches!(err, AuthError::NotYetValid { nbf, .. } if nbf == NOW + 31),
            "{err}"
        );
        assert!(check(json!({"nbf": (NOW + 29) as f64 + 0.9})).is_ok());
        // iat up for the future check, down for the principal.
        assert!(matches!(
            check(json!({"iat": (NOW + 30) as f64 + 0.1})).unwrap_err(),
            AuthError::IssuedInFuture { iat, .. } if iat == NOW + 31
        ));
        let p = check(json!({"iat": (NOW - 10) as f64 + 0.5})).unwrap();
        assert_eq!(p.issued_at(), Some(NOW - 10));
    }

    #[test]
    fn fractional_and_huge_exp_are_numbers() {
        assert!(check(json!({"exp": (NOW + 10) as f64 + 0.5})).is_ok());
        assert!(check(json!({"exp": u64::MAX})).is_ok());
        assert!(check(json!({"exp": -5})).is_err());
    }

    #[test]
    fn required_claims_are_named_when_missing() {
        for claim in ["iss", "aud", "exp", "sub"] {
            let err = check(json!({claim: null})).unwrap_err();
            assert_eq!(
                err,
                AuthError::MissingClaim {
                    claim: claim.into()
                }
            );
        }
    }

    #[test]
    fn issuer_must_match_exactly() {
        for iss in [
            "https://as.example/",
            "https://AS.example",
            "https://as.example.evil",
        ] {
            assert!(matches!(
                check(json!({"iss": iss})).unwrap_err(),
                AuthError::WrongIssuer { .. }
            ));
        }
    }

    #[test]
    fn audience_must_contain_resource_exactly() {
        assert!(check(json!({"aud": ["x", "https://rs.example/mcp"]})).is_ok());
        for aud in [
            json!("https://rs.example/mcp/"),
            json!("https://rs.example"),
            json!([]),
            json!(["https://rs.example/mcpx"]),
        ] {
            assert!(matches!(
                check(json!({"aud": aud})).unwrap_err(),
                AuthError::WrongAudience { .. }
            ));
        }
        assert!(matches!(
            check(json!({"aud": 7})).unwrap_err(),
            AuthError::InvalidClaim { .. }
        ));
    }

    #[test]
    fn scopes_from_scope_string_then_scp() {
        let p = check(json!({"scope": "a  b a"})).unwrap();
        assert_eq!(p.scopes(), ["a", "b"]);
        let p = check(json!({"scp": ["x", "y"]})).unwrap();
        assert_eq!(p.scopes(), ["x", "y"]);
        let p = check(json!({"scp": "x y"})).unwrap();
        assert_eq!(p.scopes(), ["x", "y"]);
        let p = check(json!({"scope": "a", "scp": ["admin"]})).unwrap();
        assert_eq!(p.scopes(), ["a"]);
        assert!(check(json!({"scope": ["a"]})).is_err());
        assert!(check(json!({"scp": [1]})).is_err());
    }

    #[test]
    fn client_from_client_id_else_azp() {
        let p = check(json!({"azp": "b", "client_id": "a"})).unwrap();
        assert_eq!(p.client_id(), Some("a"));
        let p = check(json!({"azp": "b"})).unwrap();
        assert_eq!(p.client_id(), Some("b"));
        assert_eq!(p.agent(), Some("b"));
    }

    #[test]
    fn delegation_chain_is_outermost_first() {
        let p = check(json!({"act": {"sub": "a1", "iss": "https://as.example",
                                     "act": {"sub": "a2", "act": {"sub": "a3"}}}}))
        .unwrap();
        let subs: Vec<_> = p.delegation_chain().iter().map(|a| a.id()).collect();
        assert_eq!(subs, ["a1", "a2", "a3"]);
        assert_eq!(p.delegation_chain()[0].issuer(), Some("https://as.example"));
        assert_eq!(p.agent(), Some("a1"));
    }

    #[test]
    fn malformed_or_too_deep_act_is_refused() {
        assert!(check(json!({"act": "a1"})).is_err());
        assert!(check(json!({"act": {"iss": "x"}})).is_err());
        assert!(check(json!({"act": {"sub": 5}})).is_err());
        let mut act = json!({"sub": "last"});
        for i in 0..MAX_DELEGATION_DEPTH {
            act = json!({"sub": format!("a{i}"), "act": act});
        }
        let err = check(json!({ "act": act })).unwrap_err();
        assert!(err.to_string().contains("deeper"), "{err}");
    }

    #[test]
    fn iat_in_the_future_beyond_leeway_is_refused() {
        assert!(check(json!({"iat": NOW + 30})).is_ok(), "within the leeway");
        let err = check(json!({"iat": NOW + 31})).unwrap_err();
        assert_eq!(
            err,
            AuthError::IssuedInFuture {
                iat: NOW + 31,
                now: NOW,
                leeway_secs: 30
            }
        );
        assert!(err.to_string().contains("iat"), "{err}");
        // A year ahead, with `exp` a year out: the token is refused, not merely old.
        let year = 365 * 24 * 3600;
        assert!(check(json!({"iat": NOW + year, "exp": NOW + year + 3600})).is_err());
    }

    #[test]
    fn empty_identity_claims_are_refused() {
        for (claim, value) in [
            ("sub", json!("")),
            ("client_id", json!("")),
            ("azp", json!("")),
            ("act", json!({"sub": ""})),
            ("act", json!({"sub": "a1", "client_id": ""})),
            ("act", json!({"sub": "a1", "iss": ""})),
            ("act", json!({"sub": "a1", "act": {"sub": ""}})),
        ] {
            let err = check(json!({ claim: value })).unwrap_err();
            assert!(
                matches!(&err, AuthError::EmptyClaim { claim: c } if c.starts_with(claim)),
                "{claim}: {err}"
            );
            assert!(err.to_string().contains("empty"), "{claim}: {err}");
        }
        assert!(check(json!({"iss": ""})).is_err());
    }

    #[test]
    fn an_actor_named_only_by_client_id_is_accepted() {
        let p = check(json!({"act": {"client_id": "planner-app",
                                     "act": {"sub": "orchestrator"}}}))
        .unwrap();
        assert_eq!(p.agent(), Some("planner-app"));
        assert_eq!(p.delegation_chain().len(), 2);
        assert_eq!(p.delegation_chain()[0].client_id(), Some("planner-app"));
        assert_eq!(p.delegation_chain()[0].subject(), None);
        assert_eq!(p.delegation_chain()[0].id(), "planner-app");
        assert_eq!(p.delegation_chain()[1].id(), "orchestrator");
        // Neither `sub` nor `client_id`: nothing names the actor.
        let err = check(json!({"act": {"iss": "https://as.example"}})).unwrap_err();
        assert!(err.to_string().contains("client_id"), "{err}");
    }

    #[test]
    fn audience_scheme_and_host_case_and_default_port_are_normalised() {
        for aud in [
            "HTTPS://RS.Example/mcp",
            "https://rs.example:443/mcp",
            "Https://RS.EXAMPLE:443/mcp",
        ] {
            assert!(check(json!({ "aud": aud })).is_ok(), "{aud}");
        }
        for aud in [
            "https://rs.example/MCP",
            "https://rs.example/Mcp",
            "http://rs.example/mcp",
            "https://rs.example:80/mcp",
            "https://rs.example:8443/mcp",
            "https://rs.example:/mcp",
            "https://rs.example:0443/mcp",
            "https://user@rs.example/mcp",
            "https://rs.example/mcp/",
            "https://rs.examplE.evil/mcp",
        ] {
            assert!(
                matches!(
                    check(json!({ "aud": aud })).unwrap_err(),
                    AuthError::WrongAudience { .. }
                ),
                "{aud}"
            );
        }
        // Both sides: a configured URI in capitals with its default port matches too,
        // and http's default port is 80; the query stays exact.
        let mut rules = rules();
        rules.audience = "HTTP://RS.example:80/mcp?v=A".into();
        let accepts = |aud: &str| validate(claims(json!({ "aud": aud })), &rules, NOW).is_ok();
        assert!(accepts("http://rs.example/mcp?v=A"));
        assert!(!accepts("http://rs.example/mcp?v=a"));
        assert!(!accepts("https://rs.example/mcp?v=A"));
    }

    #[test]
    fn same_resource_folds_only_scheme_host_and_default_port() {
        let same = [
            (
                "HTTP://Tools.Example.COM/mcp",
                "http://tools.example.com/mcp",
            ),
            ("https://[::1]:443/mcp", "HTTPS://[::1]/mcp"),
            (
                "http://Tools.Example.COM:80/mcp",
                "HTTP://tools.example.com/mcp",
            ),
            ("https://a.example:8443/x?q", "HTTPS://A.EXAMPLE:8443/x?q"),
            ("urn:x", "urn:x"),
            ("wss://A.example/mcp", "wss://a.example/mcp"),
        ];
        for (a, b) in same {
            assert!(same_resource(a, b) && same_resource(b, a), "{a} {b}");
        }
        let different = [
            ("https://[::1]:8443/mcp", "https://[::1]/mcp"),
            ("https://a.example/mcp#f", "https://a.example/mcp#F"),
            ("https://a.example/mcp?Q", "https://a.example/mcp?q"),
            ("wss://a.example:443/mcp", "wss://a.example/mcp"),
            ("URN:x", "urn:x"),
            ("https://a.example", "https://a.example/"),
            ("https://U@a.example/mcp", "https://u@a.example/mcp"),
            ("https://", "HTTPS://"),
            ("https://[::1/mcp", "HTTPS://[::1/mcp"),
        ];
        for (a, b) in different {
            assert!(!same_resource(a, b) && !same_resource(b, a), "{a} {b}");
        }
    }

    #[test]
    fn identity_claims_of_wrong_type_are_refused() {
        for claim in ["sub", "client_id", "azp", "jti", "iss"] {
            assert!(
                matches!(
                    check(json!({claim: 1})).unwrap_err(),
                    AuthError::InvalidClaim { .. }
                ),
                "{claim}"
            );
        }
    }
}
