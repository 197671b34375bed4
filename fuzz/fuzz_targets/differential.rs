//! Fuzzes the differential check against `jsonwebtoken::decode`: the fuzzer's bytes are
//! read as a token description (header and claims member by member, names and values
//! from lists around the rules or taken raw from the input, times near each boundary,
//! the key and algorithm it is signed with, a last change to its text), or now and then
//! as a token text as it is. Both verifiers decide it, configured alike, and any
//! disagreement outside the classes listed in `tests/tests/differential/classes.rs`
//! panics, printing the token and both decisions.
//!
//! The oracle is the test's own (`tests/tests/differential/oracle.rs`, included as source),
//! so the test and the fuzzer judge by one list. `tests/tests/differential.rs` draws tokens
//! the same way with proptest.

#![no_main]

#[path = "../../tests/tests/differential/oracle.rs"]
mod oracle;

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use oracle::{AUDIENCE, ISSUER, Member, Oracle, Part, Sign, Signer, Spec, Tweak, Val, Verdict};

fn oracle() -> &'static Oracle {
    static ORACLE: OnceLock<Oracle> = OnceLock::new();
    ORACLE.get_or_init(Oracle::new)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let judgement = match u.ratio(1, 16) {
        // The exhausted input reads `ratio` as true: start from a description.
        Ok(true) if !data.is_empty() => {
            let profile = usize::from(u.arbitrary::<u8>().unwrap_or(0));
            let text = String::from_utf8_lossy(u.take_rest()).into_owned();
            oracle().judge_text(profile, &text)
        }
        _ => match spec(&mut u) {
            Ok(spec) => oracle().judge(&spec),
            Err(_) => return,
        },
    };
    if let Verdict::Unexplained(_) = judgement.verdict {
        panic!("{judgement}");
    }
});

fn s(text: &str) -> Val {
    Val::Str(text.to_owned())
}

fn j(text: &str) -> Val {
    Val::Json(text.to_owned())
}

/// The first choice when `likely` (`numerator` in `denominator`), else one of `rest`.
/// An exhausted input takes the first.
fn mostly<T: Clone>(
    u: &mut Unstructured<'_>,
    likely: (u32, u32),
    first: T,
    rest: &[T],
) -> Result<T> {
    if rest.is_empty() || u.ratio(likely.0, likely.1)? {
        Ok(first)
    } else {
        Ok(u.choose(rest)?.clone())
    }
}

/// A string from the input, short.
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    let len = u.int_in_range(0..=24)?;
    let bytes = u.bytes(len)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// A JSON value: from the list, a string or raw text from the input.
fn value(u: &mut Unstructured<'_>, list: &[Val]) -> Result<Val> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Val::Str(text(u)?),
        1 => Val::Json(text(u)?),
        _ => u.choose(list)?.clone(),
    })
}

fn date(u: &mut Unstructured<'_>, good: i64) -> Result<Val> {
    Ok(match u.int_in_range(0..=19)? {
        0..=12 => Val::Time {
            offset: good,
            tenths: None,
        },
        13..=17 => Val::Time {
            offset: u.int_in_range(-65..=65)?,
            tenths: if u.arbitrary()? {
                Some(u.int_in_range(0..=9)?)
            } else {
                None
            },
        },
        18 => Val::Time {
            offset: u.arbitrary()?,
            tenths: None,
        },
        _ => value(
            u,
            &[
                s("1800000000"),
                j("null"),
                j("1e20"),
                j("18446744073709551616"),
                j("-5"),
                j("-0.5"),
                j("1e400"),
                j("[1]"),
            ],
        )?,
    })
}

fn member(u: &mut Unstructured<'_>, name: &str, value: Val) -> Result<Member> {
    Ok(Member {
        name: name.to_owned(),
        escaped: u.ratio(1, 12)?,
        value,
    })
}

/// `name: value` when present (`present` in 1000), in `members`.
fn maybe(
    u: &mut Unstructured<'_>,
    members: &mut Vec<Member>,
    present: u32,
    name: &str,
    value: impl FnOnce(&mut Unstructured<'_>) -> Result<Val>,
) -> Result<()> {
    if u.ratio(present, 1000)? {
        let value = value(u)?;
        members.push(member(u, name, value)?);
    }
    Ok(())
}

/// Extra members: names from `names` or the input, values from `values` or the input.
fn extras(
    u: &mut Unstructured<'_>,
    members: &mut Vec<Member>,
    names: &[&str],
    values: &[Val],
) -> Result<()> {
    for _ in 0..u.int_in_range(0..=3)? {
        let name = if u.ratio(1, 6)? {
            text(u)?
        } else {
            (*u.choose(names)?).to_owned()
        };
        let value = value(u, values)?;
        members.push(member(u, &name, value)?);
    }
    Ok(())
}

/// Swaps members into an order drawn from the input.
fn shuffle(u: &mut Unstructured<'_>, members: &mut [Member]) -> Result<()> {
    for i in (1..members.len()).rev() {
        let k = u.int_in_range(0..=i)?;
        members.swap(i, k);
    }
    Ok(())
}

fn header(u: &mut Unstructured<'_>) -> Result<Part> {
    if u.ratio(1, 40)? {
        let len = u.int_in_range(0..=64)?;
        return Ok(Part::Raw(u.bytes(len)?.to_vec()));
    }
    let mut members = Vec::new();
    let alg = mostly(
        u,
        (15, 16),
        Val::SigningAlg,
        &[
            s("none"),
            s("NONE"),
            s("HS256"),
            s("RS256"),
            s("PS256"),
            s("ES256"),
            s("hs256"),
            j("null"),
        ],
    )?;
    members.push(member(u, "alg", alg)?);
    maybe(u, &mut members, 500, "kid", |u| {
        mostly(
            u,
            (4, 5),
            Val::ConfiguredKid,
            &[
                s("hs-1"),
                s("rsa-1"),
                s("unknown"),
                s(""),
                j("null"),
                j("5"),
            ],
        )
    })?;
    maybe(u, &mut members, 900, "typ", |u| {
        mostly(
            u,
            (9, 10),
            s("at+jwt"),
            &[
                s("application/at+jwt"),
                s("JWT"),
                s("id_token+jwt"),
                j("null"),
                j("5"),
            ],
        )
    })?;
    if u.ratio(1, 4)? {
        extras(
            u,
            &mut members,
            &[
                "crit", "b64", "jwk", "cty", "x5c", "jku", "x5u", "enc", "zip", "url", "nonce",
                "x5t#S256", "ext", "alg", "kid", "typ",
            ],
            &[
                j(r#"["b64"]"#),
                j("[]"),
                j("null"),
                j("true"),
                j("false"),
                j("5"),
                j("{}"),
                s("JWT"),
                j(r#"["MIIB"]"#),
                Val::SigningAlg,
            ],
        )?;
    }
    shuffle(u, &mut members)?;
    Ok(Part::Object {
        members,
        spaced: u.ratio(1, 8)?,
    })
}

fn payload(u: &mut Unstructured<'_>) -> Result<Part> {
    match u.int_in_range(0..=79)? {
        0 => {
            let len = u.int_in_range(0..=64)?;
            return Ok(Part::Raw(u.bytes(len)?.to_vec()));
        }
        1 => {
            return Ok(Part::Array(vec![
                date(u, 3600)?,
                date(u, -10)?,
                s("alice"),
                s(ISSUER),
                s(AUDIENCE),
            ]));
        }
        _ => {}
    }
    let mut members = Vec::new();
    maybe(u, &mut members, 980, "iss", |u| {
        mostly(
            u,
            (29, 30),
            s(ISSUER),
            &[
                s(&format!("{ISSUER}/")),
                j(&format!(r#"["{ISSUER}"]"#)),
                j("5"),
                j("null"),
            ],
        )
    })?;
    maybe(u, &mut members, 980, "aud", |u| {
        mostly(
            u,
            (14, 15),
            s(AUDIENCE),
            &[
                j(&format!(r#"["https://other.example", "{AUDIENCE}"]"#)),
                s("HTTPS://MCP.Example.TEST/mcp"),
                s("https://mcp.example.test:443/mcp"),
                s("https://mcp.example.test/mcp/"),
                s("https://mcp.example.test:0443/mcp"),
                j("[]"),
                j("null"),
            ],
        )
    })?;
    maybe(u, &mut members, 980, "sub", |u| {
        mostly(u, (29, 30), s("alice"), &[s(""), j("5"), j("null")])
    })?;
    maybe(u, &mut members, 980, "exp", |u| date(u, 3600))?;
    maybe(u, &mut members, 300, "nbf", |u| date(u, -10))?;
    maybe(u, &mut members, 200, "iat", |u| date(u, 0))?;
    if u.ratio(2, 5)? {
        extras(
            u,
            &mut members,
            &[
                "jti",
                "client_id",
                "azp",
                "scope",
                "scp",
                "act",
                "auth_time",
                "ext",
                "iss",
                "aud",
                "sub",
                "exp",
                "nbf",
            ],
            &[
                s("x"),
                s(""),
                j("5"),
                j("null"),
                j(r#"["read"]"#),
                j(r#"{"sub":"agent"}"#),
                j(r#"{"iss":"x"}"#),
                j("123456789012345678901234567890"),
                j("-0"),
                s(&"x".repeat(17_000)),
            ],
        )?;
    }
    shuffle(u, &mut members)?;
    Ok(Part::Object {
        members,
        spaced: u.ratio(1, 8)?,
    })
}

fn spec(u: &mut Unstructured<'_>) -> Result<Spec> {
    let profile = u.int_in_range(0..=Oracle::PROFILES - 1)?;
    let header = header(u)?;
    let payload = payload(u)?;
    let sign = if u.ratio(29, 30)? {
        Sign::With {
            signer: mostly(
                u,
                (14, 15),
                Signer::Trusted,
                &[Signer::Other, Signer::PublicKeyAsSecret],
            )?,
            alg: if u.ratio(7, 8)? { 0 } else { u.arbitrary()? },
        }
    } else {
        Sign::Empty
    };
    let tweak = mostly(
        u,
        (24, 25),
        Tweak::None,
        &[
            Tweak::PadSignature,
            Tweak::PadPayload,
            Tweak::TrailingNewline,
            Tweak::LeadingSpace,
            Tweak::ExtraPart,
            Tweak::FlipSignature,
            Tweak::TruncateSignature,
        ],
    )?;
    Ok(Spec {
        profile,
        header,
        payload,
        sign,
        tweak,
    })
}
