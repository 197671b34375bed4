//! Differential test against `jsonwebtoken::decode`: this crate's [`JwtVerifier`] and
//! `jsonwebtoken` (12), configured alike (same key, algorithm allow-list, issuer, audience,
//! leeway, `exp` and `nbf` checks, required claims), must decide generated tokens alike,
//! except in the classes of deliberate disagreement listed by name, each with the rule
//! that justifies it, in `differential/classes.rs`. Any other disagreement fails, whichever
//! side accepts; every class must also be met by its witness token.
//!
//! Three configurations: an HMAC secret (HS256, with a `kid`), an RSA key bound to RS256
//! with RS256 and PS256 allowed, a P-256 key without `kid` (lenient `typ`, no leeway, no
//! `sub` required). Tokens are signed with real keys (the configured one, another,
//! the public key as an HMAC secret), with headers and claims drawn around the rules:
//! algorithm names and confusion, `kid`, `typ`, `crit`, unused header parameters, times at
//! the second of each boundary with and without fractions, claim types, big numbers,
//! repeated and escaped member names, whitespace, claims as an array, padding and other
//! changes to the text.
//!
//! `fuzz/fuzz_targets/differential.rs` runs the same oracle on fuzzer-made tokens. The
//! property runs 512 cases; set `PROPTEST_CASES` for longer runs.

#[path = "differential/oracle.rs"]
mod oracle;

use std::collections::BTreeMap;

use oracle::classes::CLASSES;
use oracle::{AUDIENCE, ISSUER, Member, Oracle, Part, Sign, Signer, Spec, Tweak, Val, Verdict};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn s(text: &str) -> Val {
    Val::Str(text.to_owned())
}

fn j(text: &str) -> Val {
    Val::Json(text.to_owned())
}

fn member(name: &str, value: Val) -> Member {
    Member {
        name: name.to_owned(),
        escaped: false,
        value,
    }
}

fn time(offset: i64) -> Val {
    Val::Time {
        offset,
        tenths: None,
    }
}

/// Picks among `(weight, value)` pairs.
fn one_of<T: Clone + std::fmt::Debug + 'static>(choices: Vec<(u32, T)>) -> BoxedStrategy<T> {
    let total: u32 = choices.iter().map(|(w, _)| w).sum();
    (0..total)
        .prop_map(move |mut n| {
            for (w, v) in &choices {
                if n < *w {
                    return v.clone();
                }
                n -= w;
            }
            unreachable!("n < total")
        })
        .boxed()
}

/// A NumericDate near a boundary (the leeways are 0, 30 and 60 s) or well inside the
/// validity period, with a fraction sometimes; or something that is not one.
fn date(good: i64) -> BoxedStrategy<Val> {
    let near = (-65i64..=65, prop::option::weighted(0.3, 0..10u8))
        .prop_map(|(offset, tenths)| Val::Time { offset, tenths });
    let odd = one_of(vec![
        (2, s("1800000000")),
        (1, j("null")),
        (1, j("1e20")),
        (1, j("18446744073709551615")),
        (1, j("18446744073709551616")),
        (1, j("-5")),
        (1, j("-0.5")),
        (1, j("true")),
        (1, j("[1]")),
    ]);
    prop_oneof![16 => Just(time(good)), 4 => near, 1 => odd].boxed()
}

fn header_member() -> BoxedStrategy<Member> {
    let ec_jwk = concat!(
        r#"{"kty":"EC","crv":"P-256","#,
        r#""x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","#,
        r#""y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#
    );
    one_of(vec![
        (1, member("crit", j(r#"["b64"]"#))),
        (1, member("crit", j("[]"))),
        (1, member("crit", j("null"))),
        (1, member("crit", j(r#"["exp"]"#))),
        (2, member("b64", j("true"))),
        (1, member("b64", j("false"))),
        (1, member("jwk", j(ec_jwk))),
        (1, member("jwk", j("5"))),
        (1, member("cty", s("JWT"))),
        (1, member("cty", j("5"))),
        (1, member("x5c", j(r#"["MIIB"]"#))),
        (1, member("x5c", s("MIIB"))),
        (1, member("jku", s("https://evil.example/jwks"))),
        (1, member("x5u", j("{}"))),
        (1, member("enc", s("A128GCM"))),
        (1, member("zip", j("null"))),
        (1, member("url", j("1"))),
        (1, member("nonce", j("[]"))),
        (1, member("x5t#S256", s("abc"))),
        (2, member("ext", j(r#"{"a":[1,2.5,"\u00e9"]}"#))),
        (1, member("alg", s("none"))),
        (1, member("alg", Val::SigningAlg)),
        (1, member("kid", s("hs-1"))),
        (1, member("typ", s("at+jwt"))),
    ])
}

fn header() -> BoxedStrategy<Part> {
    let alg = one_of(vec![
        (60, Val::SigningAlg),
        (1, s("none")),
        (1, s("NONE")),
        (1, s("HS256")),
        (1, s("RS256")),
        (1, s("PS256")),
        (1, s("ES256")),
        (1, s("hs256")),
        (1, s("ES512")),
        (1, j("null")),
        (1, j(r#"["HS256"]"#)),
    ]);
    let kid = prop::option::weighted(
        0.5,
        one_of(vec![
            (12, Val::ConfiguredKid),
            (1, s("hs-1")),
            (1, s("rsa-1")),
            (2, s("unknown")),
            (1, s("")),
            (1, s("../../etc/passwd")),
            (1, j("null")),
            (1, j("5")),
        ]),
    );
    let typ = prop::option::weighted(
        0.9,
        one_of(vec![
            (40, s("at+jwt")),
            (2, s("application/at+jwt")),
            (1, s("AT+JWT")),
            (2, s("JWT")),
            (1, s("id_token+jwt")),
            (1, j("null")),
            (1, j("5")),
        ]),
    );
    let extras = prop_oneof![
        4 => Just(Vec::new()).boxed(),
        1 => prop::collection::vec(header_member(), 1..3).boxed(),
    ];
    let object = (alg, kid, typ, extras, any::<bool>(), any::<u8>())
        .prop_flat_map(|(alg, kid, typ, extras, spaced, escape)| {
            let mut members = vec![member("alg", alg)];
            members.extend(kid.map(|v| member("kid", v)));
            members.extend(typ.map(|v| member("typ", v)));
            members.extend(extras);
            if let Some(m) = members.get_mut(usize::from(escape % 16)) {
                m.escaped = true;
            }
            (Just(members).prop_shuffle(), Just(spaced))
        })
        .prop_map(|(members, spaced)| Part::Object { members, spaced });
    let raw = one_of(vec![
        (1, Part::Raw(b"[]".to_vec())),
        (1, Part::Raw(b"{\"alg\":\"HS256\"".to_vec())),
        (
            1,
            Part::Raw(b"{\"alg\":\"HS256\",\"kid\":\"\xff\"}".to_vec()),
        ),
    ]);
    prop_oneof![40 => object, 1 => raw].boxed()
}

fn payload_member() -> BoxedStrategy<Member> {
    let big = "x".repeat(17_000);
    prop_oneof![
        12 => one_of(vec![
            (1, member("jti", s("id-1"))),
            (1, member("jti", j("5"))),
            (1, member("client_id", s("client"))),
            (1, member("client_id", s(""))),
            (1, member("azp", j("[]"))),
            (1, member("scope", s("read write"))),
            (1, member("scope", j(r#"["read"]"#))),
            (1, member("scp", j(r#"["read"]"#))),
            (1, member("scp", j("[1]"))),
            (1, member("act", j(r#"{"sub":"agent"}"#))),
            (1, member("act", s("agent"))),
            (1, member("act", j(r#"{"iss":"x"}"#))),
            (1, member("act", j(r#"{"sub":""}"#))),
            (1, member("ext", j("123456789012345678901234567890"))),
            (1, member("ext", j("-0"))),
            (1, member("ext", j("1.7976931348623157e308"))),
            (1, member("ext", s("caf\u{e9} \u{1F600} \u{0}"))),
            (1, member("ext", j(r#"{"a":{"b":[null,true,{"c":"d"}]}}"#))),
            (1, member("iss", s(ISSUER))),
            (1, member("aud", s(AUDIENCE))),
            (1, member("sub", s("mallory"))),
            (1, member("exp", time(3600))),
            (1, member("ext", s(&big))),
        ]),
        2 => date(0).prop_map(|v| member("iat", v)),
        1 => date(-3600).prop_map(|v| member("auth_time", v)),
    ]
    .boxed()
}

fn payload() -> BoxedStrategy<Part> {
    let iss = prop::option::weighted(
        0.98,
        one_of(vec![
            (60, s(ISSUER)),
            (1, s(&format!("{ISSUER}/"))),
            (1, j(&format!(r#"["{ISSUER}"]"#))),
            (1, j("5")),
            (1, j("null")),
        ]),
    );
    let aud = prop::option::weighted(
        0.98,
        one_of(vec![
            (60, s(AUDIENCE)),
            (4, j(&format!(r#"["https://other.example", "{AUDIENCE}"]"#))),
            (1, s("HTTPS://MCP.Example.TEST/mcp")),
            (1, s("https://mcp.example.test:443/mcp")),
            (1, s("https://mcp.example.test/mcp/")),
            (1, s("https://mcp.example.test/MCP")),
            (1, j("[]")),
            (1, j("[1]")),
            (1, j("null")),
            (1, s("https://other.example/mcp")),
        ]),
    );
    let sub = prop::option::weighted(
        0.98,
        one_of(vec![
            (60, s("alice")),
            (1, s("")),
            (1, j("5")),
            (1, j("null")),
        ]),
    );
    let exp = prop::option::weighted(0.98, date(3600));
    let nbf = prop::option::weighted(0.3, date(-10));
    let extras = prop_oneof![
        3 => Just(Vec::new()).boxed(),
        2 => prop::collection::vec(payload_member(), 1..4).boxed(),
    ];
    let object = (iss, aud, sub, exp, nbf, extras, any::<bool>(), any::<u8>())
        .prop_flat_map(|(iss, aud, sub, exp, nbf, extras, spaced, escape)| {
            let mut members = Vec::new();
            members.extend(iss.map(|v| member("iss", v)));
            members.extend(aud.map(|v| member("aud", v)));
            members.extend(sub.map(|v| member("sub", v)));
            members.extend(exp.map(|v| member("exp", v)));
            members.extend(nbf.map(|v| member("nbf", v)));
            members.extend(extras);
            if let Some(m) = members.get_mut(usize::from(escape % 24)) {
                m.escaped = true;
            }
            (Just(members).prop_shuffle(), Just(spaced))
        })
        .prop_map(|(members, spaced)| Part::Object { members, spaced });
    let array = Just(Part::Array(vec![
        time(3600),
        time(-10),
        s("alice"),
        s(ISSUER),
        s(AUDIENCE),
    ]));
    let raw = one_of(vec![
        (1, Part::Raw(b"null".to_vec())),
        (1, Part::Raw(b"\"claims\"".to_vec())),
        (1, Part::Raw(b"{\"iss\":".to_vec())),
        (1, Part::Raw(b"{\"sub\":\"\xc3\x28\"}".to_vec())),
    ]);
    prop_oneof![40 => object, 1 => array, 1 => raw].boxed()
}

fn sign() -> BoxedStrategy<Sign> {
    let alg = prop_oneof![8 => Just(0u8), 1 => any::<u8>()];
    let signer = one_of(vec![
        (30, Signer::Trusted),
        (1, Signer::Other),
        (1, Signer::PublicKeyAsSecret),
    ]);
    prop_oneof![
        40 => (signer, alg).prop_map(|(signer, alg)| Sign::With { signer, alg }),
        1 => Just(Sign::Empty),
    ]
    .boxed()
}

fn tweak() -> BoxedStrategy<Tweak> {
    one_of(vec![
        (80, Tweak::None),
        (1, Tweak::PadSignature),
        (1, Tweak::PadPayload),
        (1, Tweak::TrailingNewline),
        (1, Tweak::LeadingSpace),
        (1, Tweak::ExtraPart),
        (1, Tweak::FlipSignature),
        (1, Tweak::TruncateSignature),
    ])
}

fn spec() -> impl Strategy<Value = Spec> {
    (0..Oracle::PROFILES, header(), payload(), sign(), tweak()).prop_map(
        |(profile, header, payload, sign, tweak)| Spec {
            profile,
            header,
            payload,
            sign,
            tweak,
        },
    )
}

#[test]
fn generated_tokens_are_decided_alike_or_in_a_listed_class() {
    let oracle = Oracle::new();
    let config = Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            Config::default().cases
        } else {
            512
        },
        failure_persistence: None,
        ..Config::default()
    };
    let tally = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let result = TestRunner::new(config).run(&spec(), |spec| {
        let judgement = oracle.judge(&spec);
        let outcome = match &judgement.verdict {
            Verdict::Unexplained(_) => return Err(TestCaseError::fail(judgement.to_string())),
            Verdict::Listed(class) => format!("listed: {}", class.name),
            agree => agree.to_string(),
        };
        *tally.borrow_mut().entry(outcome).or_default() += 1;
        Ok(())
    });
    let tally = tally.into_inner();
    for (outcome, count) in &tally {
        println!("{count:6}  {outcome}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
    let total: usize = tally.values().sum();
    let accepted = tally.get("agree: both accept").copied().unwrap_or(0);
    assert!(
        accepted * 10 >= total,
        "only {accepted} of {total} tokens were accepted by both: \
         the generator no longer makes enough valid tokens"
    );
}

/// A token both sides accept, for `profile`; the witnesses below change one thing.
fn valid(profile: usize) -> Spec {
    Spec {
        profile,
        header: Part::Object {
            members: vec![member("alg", Val::SigningAlg), member("typ", s("at+jwt"))],
            spaced: false,
        },
        payload: Part::Object {
            members: vec![
                member("iss", s(ISSUER)),
                member("aud", s(AUDIENCE)),
                member("sub", s("alice")),
                member("exp", time(3600)),
            ],
            spaced: false,
        },
        sign: Sign::With {
            signer: Signer::Trusted,
            alg: 0,
        },
        tweak: Tweak::None,
    }
}

fn with_header(mut spec: Spec, extra: Member) -> Spec {
    if let Part::Object { members, .. } = &mut spec.header {
        members.retain(|m| m.name != extra.name);
        members.push(extra);
    }
    spec
}

fn with_claim(mut spec: Spec, extra: Member) -> Spec {
    if let Part::Object { members, .. } = &mut spec.payload {
        members.retain(|m| m.name != extra.name);
        members.push(extra);
    }
    spec
}

fn appending_claim(mut spec: Spec, extra: Member) -> Spec {
    if let Part::Object { members, .. } = &mut spec.payload {
        members.push(extra);
    }
    spec
}

/// One token per listed class, decided into exactly that class: the list holds no class
/// that cannot happen, and each class's test recognises its own case.
#[test]
fn every_listed_class_has_a_witness() {
    let frac = |offset, tenths| Val::Time {
        offset,
        tenths: Some(tenths),
    };
    let witnesses: Vec<(&str, Spec)> = vec![
        (
            "token-too-large",
            with_claim(valid(0), member("pad", s(&"x".repeat(17_000)))),
        ),
        (
            "duplicate-member",
            appending_claim(
                with_claim(valid(0), member("jti", s("a"))),
                member("jti", s("b")),
            ),
        ),
        (
            "claims-not-an-object",
            Spec {
                payload: Part::Array(vec![
                    time(3600),
                    time(-10),
                    s("alice"),
                    s(ISSUER),
                    s(AUDIENCE),
                ]),
                ..valid(0)
            },
        ),
        (
            "kid-or-typ-null",
            with_header(valid(2), member("kid", j("null"))),
        ),
        (
            "crit-refused",
            with_header(
                with_header(valid(0), member("b64", j("true"))),
                member("crit", j(r#"["b64"]"#)),
            ),
        ),
        (
            "unknown-kid",
            with_header(valid(0), member("kid", s("other"))),
        ),
        (
            "one-key-one-algorithm",
            Spec {
                sign: Sign::With {
                    signer: Signer::Trusted,
                    alg: 2, // PS256 with the RSA key bound to RS256
                },
                ..with_header(valid(1), member("kid", s("rsa-1")))
            },
        ),
        (
            "typ-not-access-token",
            with_header(valid(0), member("typ", s("JWT"))),
        ),
        ("empty-identity", with_claim(valid(0), member("sub", s("")))),
        (
            "exp-boundary-second",
            with_claim(valid(0), member("exp", time(-30))),
        ),
        (
            "nbf-fraction-rounded-up",
            with_claim(valid(2), member("nbf", frac(0, 2))),
        ),
        (
            "iat-in-the-future",
            with_claim(valid(0), member("iat", time(3600))),
        ),
        (
            "iss-not-a-string",
            with_claim(valid(0), member("iss", j(&format!(r#"["{ISSUER}"]"#)))),
        ),
        (
            "numeric-date-not-a-number",
            with_claim(valid(0), member("iat", s("1800000000"))),
        ),
        (
            "string-claim-not-a-string",
            with_claim(valid(0), member("jti", j("7"))),
        ),
        (
            "scope-shape",
            with_claim(valid(0), member("scope", j(r#"["read"]"#))),
        ),
        ("act-shape", with_claim(valid(0), member("act", s("agent")))),
        (
            "audience-case-and-default-port",
            with_claim(
                valid(0),
                member("aud", s("https://MCP.example.test:443/mcp")),
            ),
        ),
        (
            "unused-header-parameter",
            with_header(valid(0), member("cty", j("5"))),
        ),
        (
            "nbf-before-1970",
            with_claim(valid(0), member("nbf", j("-5"))),
        ),
        (
            "exp-beyond-u64",
            with_claim(valid(0), member("exp", j("1e20"))),
        ),
    ];
    let oracle = Oracle::new();
    let mut failures = Vec::new();
    for (name, spec) in &witnesses {
        let judgement = oracle.judge(spec);
        match &judgement.verdict {
            Verdict::Listed(class) if class.name == *name => {}
            _ => failures.push(format!("{name}: {judgement}")),
        }
    }
    let mut listed: Vec<&str> = CLASSES.iter().map(|c| c.name).collect();
    let mut witnessed: Vec<&str> = witnesses.iter().map(|(n, _)| *n).collect();
    listed.sort_unstable();
    witnessed.sort_unstable();
    assert_eq!(listed, witnessed, "one witness per listed class");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The PyJWT corpus' tokens (tests/fixtures/interop), as they are, in every configuration:
/// its RS256 and ES256 tokens are signed with the keys two configurations trust.
#[test]
fn pyjwt_corpus_tokens_are_decided_alike_or_in_a_listed_class() {
    let corpus: serde_json::Value =
        serde_json::from_str(&rmcp_authz_tests::read_fixture("interop/cases.json"))
            .expect("cases.json parses");
    let oracle = Oracle::new();
    let (mut failures, mut accepted) = (Vec::new(), 0);
    for case in corpus["cases"].as_array().expect("cases") {
        let token = case["token"].as_str().expect("a token");
        for profile in 0..Oracle::PROFILES {
            let judgement = oracle.judge_text(profile, token);
            match judgement.verdict {
                Verdict::Unexplained(_) => failures.push(format!("{}: {judgement}", case["name"])),
                Verdict::Agree { accepted: true } => accepted += 1,
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        accepted >= 2,
        "the corpus' valid RS256 and ES256 tokens are accepted by both"
    );
}

#[test]
fn a_well_formed_token_is_accepted_by_both_in_every_configuration() {
    let oracle = Oracle::new();
    for profile in 0..Oracle::PROFILES {
        let judgement = oracle.judge(&valid(profile));
        assert!(
            matches!(judgement.verdict, Verdict::Agree { accepted: true }),
            "{judgement}"
        );
    }
}
