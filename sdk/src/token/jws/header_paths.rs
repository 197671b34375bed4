//! Property tests: the two ways [`KeySet::verify_compact`] reads a header agree.
//!
//! The fast path ([`SimpleHeader::parse`]) reads the usual header without a JSON map; every
//! other header goes to the general strict parser ([`parse_object`] and `select_by_header`),
//! the one [`KeySet::verify_jws`] uses. For generated headers (member sets drawn from `alg`,
//! `kid`, `typ`, `crit`, `jwk` and others, values of every JSON type, repeated members,
//! escaped names such as `"\u0061lg"`, whitespace, non-ASCII text, invalid JSON and UTF-8):
//!
//! - when the fast path answers, the general parser reads the same object, of `alg`, `kid`
//!   and `typ` strings only, with the same values; and when the general parser reads such an
//!   object, the fast path answers (it is taken for every usual header);
//! - `verify_compact` decides every token signed under such a header exactly as
//!   `verify_jws` does: the same payload, or the same error (variant and text), with and
//!   without a `typ` check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::token::Key;

const SECRETS: [[u8; 64]; 4] = [[3; 64], [4; 64], [5; 64], [6; 64]];

/// HS256 with kid `k`, HS512 with kid `k2`, HS384 without a kid; `SECRETS[3]` is trusted
/// by no one.
fn keys() -> KeySet {
    let mut set = KeySet::new();
    for (secret, alg, kid) in [
        (SECRETS[0], Algorithm::HS256, Some("k")),
        (SECRETS[1], Algorithm::HS512, Some("k2")),
        (SECRETS[2], Algorithm::HS384, None),
    ] {
        let key = Key::hmac(secret, alg).expect("a 64-byte secret");
        set.insert(match kid {
            Some(kid) => key.with_kid(kid),
            None => key,
        })
        .expect("distinct kids");
    }
    set
}

/// A member name as written: plain, its first character escaped, or every character
/// escaped.
fn name() -> BoxedStrategy<String> {
    let plain = prop_oneof![
        8 => prop::sample::select(vec!["alg", "kid", "typ"]),
        4 => prop::sample::select(vec!["crit", "jwk", "cty", "b64", "x5c", "jku"]),
        2 => prop::sample::select(vec!["ALG", "Kid", "alg ", "", "t\u{e9}p", "\u{1F511}"]),
    ];
    (plain, 0..6u8)
        .prop_map(|(name, escape)| match escape {
            0 => json_string(name, Escape::First),
            1 => json_string(name, Escape::All),
            _ => json_string(name, Escape::None),
        })
        .boxed()
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    First,
    All,
}

/// `text` as a JSON string literal, with its first or every character as a `\u` escape
/// (a surrogate pair outside the basic plane).
fn json_string(text: &str, escape: Escape) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        let escaped = match escape {
            Escape::None => false,
            Escape::First => i == 0,
            Escape::All => true,
        };
        if escaped {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            let quoted = serde_json::to_string(&c.to_string()).expect("a string serializes");
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
    }
    out.push('"');
    out
}

/// A member value as written.
fn value() -> BoxedStrategy<String> {
    let words = prop::sample::select(vec![
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "none",
        "nOnE",
        "",
        "k",
        "k2",
        "unknown",
        "at+jwt",
        "JWT",
        "b64",
        "caf\u{e9}",
    ]);
    prop_oneof![
        8 => (words, 0..4u8).prop_map(|(w, e)| json_string(
            w,
            match e {
                0 => Escape::First,
                1 => Escape::All,
                _ => Escape::None,
            }
        )),
        2 => "\\PC{0,6}".prop_map(|s| json_string(&s, Escape::None)),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "1.5", "-0", "1e400", "18446744073709551616", "null", "true", "false",
            "[]", "[\"b64\"]", "[\"exp\", 1]", "{}", "{\"kty\":\"oct\",\"k\":\"AA\"}",
            "\"\\ud800\"", "\"\\u0000\"",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Whitespace between JSON tokens.
fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => Just(""), 1 => Just(" "), 1 => Just("\n\t"), 1 => Just("\r\n  ")]
}

/// `"name":value`, spaced.
fn member(name: BoxedStrategy<String>, value: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (ws(), name, ws(), value, ws())
        .prop_map(|(a, n, b, v, c)| format!("{a}{n}{b}:{a}{v}{c}"))
        .boxed()
}

/// A string value among `words`, maybe escaped.
fn word(words: Vec<&'static str>) -> BoxedStrategy<String> {
    (prop::sample::select(words), 0..5u8)
        .prop_map(|(w, e)| match e {
            0 => json_string(w, Escape::First),
            1 => json_string(w, Escape::All),
            _ => json_string(w, Escape::None),
        })
        .boxed()
}

/// An object written member by member: mostly an `alg` naming an HMAC algorithm, `kid`
/// and `typ` often, other members sometimes, in any order.
fn object() -> BoxedStrategy<Vec<u8>> {
    let name_of = |n: &'static str| word(vec![n]);
    let alg = prop_oneof![
        6 => member(name_of("alg"), word(vec!["HS256", "HS384", "HS512"])),
        1 => member(name_of("alg"), value()),
        1 => member(name(), value()),
    ]
    .boxed();
    let kid = prop::option::weighted(
        0.6,
        prop_oneof![
            4 => member(name_of("kid"), word(vec!["k", "k2", "unknown", ""])),
            1 => member(name_of("kid"), value()),
        ],
    );
    let typ = prop::option::weighted(
        0.5,
        prop_oneof![
            4 => member(name_of("typ"), word(vec!["at+jwt", "JWT", "application/at+jwt"])),
            1 => member(name_of("typ"), value()),
        ],
    );
    let extras = prop::collection::vec(member(name(), value()), 0..3);
    let extras = prop_oneof![2 => Just(Vec::new()).boxed(), 1 => extras.boxed()];
    (alg, kid, typ, extras, ws())
        .prop_flat_map(|(alg, kid, typ, extras, w)| {
            let mut members: Vec<String> = vec![alg];
            members.extend(kid);
            members.extend(typ);
            members.extend(extras);
            (Just(members).prop_shuffle(), Just(w))
        })
        .prop_map(|(members, w)| format!("{w}{{{}}}{w}", members.join(",")).into_bytes())
        .boxed()
}

/// Header bytes: mostly an object, sometimes a broken one, another JSON value, or raw
/// bytes.
fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => object(),
        1 => object().prop_map(|mut o| {
            o.pop();
            o
        }),
        1 => object().prop_map(|mut o| {
            o.extend_from_slice(b"x");
            o
        }),
        1 => prop::sample::select(vec![
            "[]", "null", "\"alg\"", "{\"alg\":\"HS256\",}", "{\"alg\":\"HS256\"}{}",
            "{\"alg\":\"HS256\",\"kid\":\"\u{fffd}\"}", "\u{feff}{\"alg\":\"HS256\"}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(b"{\"alg\":\"HS256\",\"kid\":\"\xff\"}".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ]
}

/// The signature: with the key the header names, with one of the secrets (the three
/// trusted, one not), empty, or junk.
fn signature() -> impl Strategy<Value = Sig> {
    let secret = prop_oneof![6 => 0..3usize, 1 => Just(3usize)];
    let alg = prop::sample::select(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
    prop_oneof![
        8 => Just(Sig::AsNamed),
        8 => (secret, alg).prop_map(|(i, alg)| Sig::Hmac(i, alg)),
        1 => Just(Sig::Text(String::new())),
        1 => "[A-Za-z0-9_=+/ -]{0,12}".prop_map(Sig::Text),
    ]
}

#[derive(Debug, Clone)]
enum Sig {
    /// With the secret and algorithm the header names (read leniently here: the last of
    /// repeated members), when it names one.
    AsNamed,
    Hmac(usize, Algorithm),
    Text(String),
}

fn token(header: &[u8], payload: &[u8], sig: &Sig) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = match sig {
        Sig::AsNamed => return token(header, payload, &named(header)),
        Sig::Hmac(i, alg) => {
            let hash = match alg {
                Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
                Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
                _ => aws_lc_rs::hmac::HMAC_SHA256,
            };
            let tag = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(hash, &SECRETS[*i]),
                input.as_bytes(),
            );
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        }
        Sig::Text(text) => text.clone(),
    };
    format!("{input}.{sig}")
}

/// The key and algorithm `header` names, by this test's own reading of the key table of
/// [`keys`]; `SECRETS[3]` when it names none.
fn named(header: &[u8]) -> Sig {
    let header: Value = serde_json::from_slice(header).unwrap_or_default();
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("HS384") => Algorithm::HS384,
        Some("HS512") => Algorithm::HS512,
        _ => Algorithm::HS256,
    };
    let secret = match (header.get("kid").and_then(Value::as_str), alg) {
        (Some("k"), _) => 0,
        (Some("k2"), _) => 1,
        (_, Algorithm::HS384) => 2,
        (None, Algorithm::HS256) => 0,
        (None, _) => 1,
        _ => 3,
    };
    Sig::Hmac(secret, alg)
}

/// Subsets of the HMAC algorithms (the empty one included).
fn allowed() -> impl Strategy<Value = Vec<Algorithm>> {
    let all = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    prop_oneof![
        2 => Just(all.clone()),
        1 => prop::sample::subsequence(all, 0..=3),
    ]
}

/// The `typ` check the verifier makes, written out again here.
fn strict_typ(typ: Option<&str>) -> Result<(), AuthError> {
    match typ {
        Some(t) if t.eq_ignore_ascii_case("at+jwt") => Ok(()),
        other => Err(AuthError::WrongType {
            found: other.map(str::to_owned),
        }),
    }
}

/// `Some((alg, kid, typ))` when `header` is an object of `alg`, `kid` and `typ` strings
/// only, with `alg` present: the headers the fast path is for.
fn usual(header: &Map<String, Value>) -> Option<(&str, Option<&str>, Option<&str>)> {
    let only_usual = header
        .iter()
        .all(|(name, value)| matches!(name.as_str(), "alg" | "kid" | "typ") && value.is_string());
    let text = |name: &str| header.get(name).and_then(Value::as_str);
    (only_usual && header.contains_key("alg"))
        .then(|| (text("alg").unwrap_or_default(), text("kid"), text("typ")))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fast_header_path_reads_what_the_general_parser_reads(header in header()) {
        let general = parse_object(&header).ok();
        let general_usual = general.as_ref().and_then(usual);
        match SimpleHeader::parse(&header) {
            Some(fast) => {
                let (alg, kid, typ) = general_usual.unwrap_or_else(|| panic!(
                    "the fast path read {:?}, which the general parser reads as {general:?}",
                    String::from_utf8_lossy(&header)
                ));
                prop_assert_eq!(fast.alg.as_ref(), alg);
                prop_assert_eq!(fast.kid.as_deref(), kid);
                prop_assert_eq!(fast.typ.as_deref(), typ);
            }
            None => prop_assert!(
                general_usual.is_none(),
                "the fast path declined {:?}, a usual header",
                String::from_utf8_lossy(&header)
            ),
        }
    }

    #[test]
    fn verify_compact_decides_as_verify_jws(
        header in header(),
        payload in prop_oneof![Just(b"{}".to_vec()), prop::collection::vec(any::<u8>(), 0..16)],
        sig in signature(),
        allowed in allowed(),
    ) {
        let keys = keys();
        let token = token(&header, &payload, &sig);
        let jws = keys.verify_jws(&token, &allowed);

        let compact = keys.verify_compact(&token, &allowed, |_| Ok(()));
        let expected = jws.clone().map(|j| j.payload().to_vec());
        prop_assert_eq!(&compact, &expected, "without a typ check: {}", token);

        let compact = keys.verify_compact(&token, &allowed, strict_typ);
        let expected = jws.and_then(|j| strict_typ(j.typ()).map(|()| j.payload().to_vec()));
        prop_assert_eq!(&compact, &expected, "with the strict typ check: {}", token);
    }
}

#[test]
fn escaped_names_and_values_take_the_fast_path_with_decoded_text() {
    let header = br#"{"\u0061lg" : "HS\u0032\u0035\u0036", "kid":"k", "typ":"at+jwt"}"#;
    let fast = SimpleHeader::parse(header).expect("a usual header");
    assert_eq!(fast.alg, "HS256");
    assert_eq!(fast.kid.as_deref(), Some("k"));
    let token = token(header, b"{}", &Sig::Hmac(0, Algorithm::HS256));
    assert_eq!(
        keys().verify_payload(&token, &[Algorithm::HS256]).unwrap(),
        b"{}"
    );
    let twice = br#"{"alg":"HS256","\u0061lg":"HS256"}"#;
    assert!(SimpleHeader::parse(twice).is_none());
    assert!(parse_object(twice).is_err());
}
