//! Property tests: no input makes token verification or key loading panic.
//!
//! A resource server hands every bearer token it receives, attacker-controlled, to
//! [`JwtVerifier::verify_sync`], and may load JWK Sets fetched over the network with
//! [`KeySet::from_jwks_json`]. Whatever those inputs are, the answer must be `Ok` or
//! `Err`: a panic is a denial of service at best. The properties below feed them
//!
//! - arbitrary strings (arbitrary Unicode, up to about 40 KB);
//! - dot-joined base64url-looking segments, so inputs get past the shape check;
//! - hand-built tokens with arbitrary JSON headers and payloads and random signatures,
//!   which must all be refused (none of them is signed with a trusted key);
//! - tokens minted by [`DevIssuer`] and then mutated, which must be refused unless the
//!   mutation left the decoded header, payload and signature bytes identical;
//! - validly signed tokens whose claims are arbitrary JSON, which may be accepted only
//!   when they carry the configured issuer and audience;
//! - arbitrary and structured JWK Set documents and single JWKs.
//!
//! Each property runs 256 cases (set `PROPTEST_CASES` for longer runs). Failing cases are
//! not persisted to disk; proptest prints the minimal failing input.
//! `fuzz/` holds cargo-fuzz targets for the same entry points (`scripts/fuzz.sh`).

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use rmcp_authz::Principal;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::token::{Algorithm, AuthError, JwtVerifier, Key, KeyError, KeySet, TypCheck};
use rmcp_authz_tests::read_fixture;
use serde_json::{Map, Value, json};

const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "https://mcp.example.test/mcp";
/// A limit above the largest generated input, so size is not the only check reached.
const LARGE_LIMIT: usize = 64 * 1024;
/// Key ids of `tests/fixtures/interop/keys/jwks.json`.
const INTEROP_KIDS: [&str; 4] = ["rsa-1", "ec-p256", "ec-p384", "ed-1"];
const HMAC_SECRET: [u8; 32] = [7; 32];

static DEV: LazyLock<DevIssuer> =
    LazyLock::new(|| DevIssuer::new(ISSUER).expect("a development issuer can be made"));

static INTEROP_JWKS: LazyLock<String> = LazyLock::new(|| read_fixture("interop/keys/jwks.json"));

/// Verifiers with different keys and settings; every hostile input goes to each of them.
static VERIFIERS: LazyLock<Vec<JwtVerifier>> = LazyLock::new(|| {
    vec![
        // The development issuer's key, default settings (16 KiB limit, strict `typ`).
        DEV.verifier(AUDIENCE).build().expect("dev verifier"),
        // RSA, P-256, P-384 and Ed25519 keys; a limit above every generated input.
        JwtVerifier::builder(ISSUER, AUDIENCE)
            .jwks_json(&INTEROP_JWKS)
            .max_token_bytes(LARGE_LIMIT)
            .build()
            .expect("interop verifier"),
        // An HMAC secret, lenient `typ`, no required `sub`, the largest leeway.
        JwtVerifier::builder(ISSUER, AUDIENCE)
            .hmac_secret(HMAC_SECRET, Algorithm::HS256)
            .typ_check(TypCheck::Lenient)
            .required_claims(Vec::<String>::new())
            .leeway(rmcp_authz::token::MAX_LEEWAY)
            .max_token_bytes(LARGE_LIMIT)
            .build()
            .expect("hmac verifier"),
    ]
});

/// The development issuer's verifier, lenient about `typ` and `sub`.
static DEV_LENIENT: LazyLock<JwtVerifier> = LazyLock::new(|| {
    DEV.verifier(AUDIENCE)
        .typ_check(TypCheck::Lenient)
        .required_claims(Vec::<String>::new())
        .max_token_bytes(LARGE_LIMIT)
        .build()
        .expect("lenient dev verifier")
});

/// `cases` per property, or `PROPTEST_CASES` when set (for longer local runs).
fn config(cases: u32) -> ProptestConfig {
    let defaults = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            defaults.cases
        } else {
            cases
        },
        failure_persistence: None,
        ..defaults
    }
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Renders everything an error offers, so formatting is covered too.
fn touch_auth_error(err: &AuthError) {
    let _ = (
        err.to_string(),
        format!("{err:?}"),
        err.kind(),
        err.error_code(),
        err.description(),
    );
}

fn touch_key_error(err: &KeyError) {
    let _ = (err.to_string(), format!("{err:?}"));
}

fn touch_principal(p: &Principal) {
    let _ = (
        format!("{p:?}"),
        p.issuer(),
        p.subject(),
        p.agent(),
        p.scopes(),
        p.delegation_chain(),
        p.audiences(),
        p.expires_at(),
    );
}

/// Verifies `token` with `verifier`, exercising whatever comes back.
fn verify(verifier: &JwtVerifier, token: &str) -> Result<Principal, AuthError> {
    let result = verifier.verify_sync(token);
    match &result {
        Ok(p) => touch_principal(p),
        Err(e) => touch_auth_error(e),
    }
    result
}

/// Each dot-separated part of `token` decoded as strict unpadded base64url, or `None`
/// when a part does not decode.
fn decoded_parts(token: &str) -> Option<Vec<Vec<u8>>> {
    token
        .split('.')
        .map(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Strings of arbitrary Unicode scalar values, from empty to about 40 KB.
fn arbitrary_text() -> impl Strategy<Value = String> {
    let chars = |max: usize| {
        prop::collection::vec(any::<char>(), 0..=max).prop_map(|c| c.into_iter().collect())
    };
    prop_oneof![
        4 => chars(64),
        2 => "[ -~]{0,256}",
        2 => chars(2_000),
        1 => chars(10_000),
        // Four-byte characters: 36 to 40 KB.
        1 => prop::collection::vec(prop::char::range('\u{10000}', '\u{10FFFF}'), 9_000..=10_000)
            .prop_map(|c| c.into_iter().collect()),
        // Token-alphabet text around the default 16 KiB limit.
        1 => "[A-Za-z0-9_.-]{15000,20000}",
    ]
}

/// Signature-like bytes: every length the trusted algorithms use, and others.
fn signature_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        prop::sample::select(vec![32usize, 48, 64, 96, 128, 256, 384, 512])
            .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len)),
        // All-zero signatures (ECDSA r = s = 0, "psychic signatures", CVE-2022-21449).
        prop::sample::select(vec![0usize, 1, 32, 64, 96, 256]).prop_map(|len| vec![0u8; len]),
    ]
}

fn json_number() -> impl Strategy<Value = Value> {
    let now = now();
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        (-7_200i64..7_200).prop_map(move |d| Value::from(now.saturating_add(d))),
        prop::sample::select(vec![
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(0),
            json!(-1),
            json!(0.5),
            json!(-0.0),
            json!(1e300),
            json!(-1e300),
            json!(9.223_372_036_854_776e18),
            json!(f64::MAX),
            json!(f64::MIN),
        ]),
    ]
}

/// Strings a verifier compares against, and arbitrary ones.
fn json_text() -> impl Strategy<Value = String> {
    let known: Vec<String> = [
        ISSUER,
        AUDIENCE,
        "https://auth.example.test/",
        "at+jwt",
        "application/at+jwt",
        "JWT",
        "none",
        "ES256",
        "RS256",
        "HS256",
        "EdDSA",
        "sig",
        "verify",
        "notes:read notes:write",
        "",
        " ",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(INTEROP_KIDS.iter().map(|s| (*s).to_owned()))
    .chain(std::iter::once(DEV.kid().to_owned()))
    .collect();
    prop_oneof![
        prop::sample::select(known),
        "[a-z:/.+ ]{0,16}",
        any::<String>(),
        prop::collection::vec(any::<char>(), 60..80).prop_map(|c| c.into_iter().collect()),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_text().prop_map(Value::String),
    ]
}

/// Arbitrary JSON values, nested a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON nested deeper than serde_json's recursion limit (128).
fn deeply_nested_json() -> impl Strategy<Value = String> {
    (100usize..200, any::<bool>()).prop_map(|(depth, arrays)| {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        format!("{}1{}", open.repeat(depth), close.repeat(depth))
    })
}

/// A nested `act` chain of `len` actors (valid up to 32), with arbitrary `sub` values.
fn act_chain() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-z-]{1,12}".prop_map(Value::String),
            1 => json_value(),
        ],
        1..40,
    )
    .prop_map(|subs| {
        let mut act: Option<Value> = None;
        for sub in subs.into_iter().rev() {
            let mut obj = Map::new();
            obj.insert("sub".into(), sub);
            if let Some(inner) = act.take() {
                obj.insert("act".into(), inner);
            }
            act = Some(Value::Object(obj));
        }
        act.unwrap_or(Value::Null)
    })
}

const CLAIM_NAMES: [&str; 14] = [
    "iss",
    "aud",
    "sub",
    "exp",
    "nbf",
    "iat",
    "auth_time",
    "client_id",
    "azp",
    "scope",
    "scp",
    "act",
    "jti",
    "cnf",
];

/// A claim name: one the verifier reads, or any other.
fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(CLAIM_NAMES.to_vec()).prop_map(str::to_owned),
        1 => json_text(),
    ]
}

/// A value for a claim: arbitrary JSON, a string, an edge number, an array of strings,
/// a delegation chain.
fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => json_value(),
        2 => json_text().prop_map(Value::String),
        2 => json_number(),
        1 => prop::collection::vec(json_text().prop_map(Value::String), 0..5)
            .prop_map(Value::Array),
        1 => act_chain(),
    ]
}

/// A claim and a value for it: usually of the type the verifier expects for that name
/// (so the checks after the type checks run), sometimes anything.
fn claim_change() -> impl Strategy<Value = (String, Value)> {
    claim_name().prop_flat_map(|name| {
        let plausible = match name.as_str() {
            "exp" | "nbf" | "iat" | "auth_time" => json_number().boxed(),
            "iss" => prop_oneof![
                prop::sample::select(vec![
                    ISSUER,
                    "https://auth.example.test/",
                    "",
                    "HTTPS://AUTH.EXAMPLE.TEST"
                ])
                .prop_map(Value::from),
                json_text().prop_map(Value::from),
            ]
            .boxed(),
            "aud" => prop_oneof![
                json_text().prop_map(Value::from),
                prop::collection::vec(
                    prop_oneof![
                        Just(Value::from(AUDIENCE)),
                        json_text().prop_map(Value::from),
                    ],
                    0..4,
                )
                .prop_map(Value::Array),
            ]
            .boxed(),
            "act" => act_chain().boxed(),
            _ => prop_oneof![
                json_text().prop_map(Value::from),
                prop::collection::vec(json_text().prop_map(Value::from), 0..4)
                    .prop_map(Value::Array),
            ]
            .boxed(),
        };
        (Just(name), prop_oneof![3 => plausible, 1 => claim_value()])
    })
}

/// Claims that start valid and then have members replaced, added or removed.
fn claims_object() -> impl Strategy<Value = Map<String, Value>> {
    let now = now();
    (
        prop::collection::vec(claim_change(), 0..4),
        prop::collection::vec(prop::sample::select(CLAIM_NAMES.to_vec()), 0..3),
    )
        .prop_map(move |(changes, removals)| {
            let mut claims = Map::new();
            claims.insert("iss".into(), ISSUER.into());
            claims.insert("aud".into(), AUDIENCE.into());
            claims.insert("sub".into(), "user-alice".into());
            claims.insert("exp".into(), now.saturating_add(3_600).into());
            for (name, value) in changes {
                claims.insert(name, value);
            }
            for name in removals {
                claims.remove(name);
            }
            claims
        })
}

/// A header value: mostly a plausible object (so later checks are reached), sometimes
/// arbitrary JSON.
fn header_value() -> impl Strategy<Value = Value> {
    let algs = prop::sample::select(vec![
        "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA", "HS256",
        "HS384", "HS512", "none", "None", "NONE", "nOnE", "", "es256", "ES512", "Ed25519",
    ]);
    let kids: Vec<String> = INTEROP_KIDS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::once(DEV.kid().to_owned()))
        .collect();
    // Present with probability `p`: usually a plausible value, sometimes any JSON.
    let member = |p: f64, known: BoxedStrategy<Value>| {
        prop::option::weighted(
            p,
            prop_oneof![
                6 => known,
                1 => json_value(),
            ],
        )
    };
    let typs = prop_oneof![
        3 => Just(Value::from("at+jwt")),
        1 => json_text().prop_map(Value::from),
    ];
    // An algorithm and a key id that belong together, so the signature check of each
    // key type runs; or each chosen on its own.
    let dev_kid = DEV.kid().to_owned();
    let pairs = prop::sample::select(vec![
        ("ES256", Some(dev_kid)),
        ("RS256", Some("rsa-1".to_owned())),
        ("PS256", Some("rsa-1".to_owned())),
        ("ES256", Some("ec-p256".to_owned())),
        ("ES384", Some("ec-p384".to_owned())),
        ("EdDSA", Some("ed-1".to_owned())),
        ("HS256", None),
    ])
    .prop_map(|(alg, kid)| (Some(Value::from(alg)), kid.map(Value::from)));
    let alg_and_kid = prop_oneof![
        3 => pairs,
        2 => (
            member(0.95, algs.prop_map(Value::from).boxed()),
            member(0.85, prop::sample::select(kids).prop_map(Value::from).boxed()),
        ),
    ];
    let object = (
        alg_and_kid,
        member(0.8, typs.boxed()),
        prop::option::weighted(0.1, json_value()),
        prop::collection::btree_map(
            prop_oneof![
                prop::sample::select(vec!["jwk", "jku", "x5u", "x5c", "b64", "cty", "zip"])
                    .prop_map(str::to_owned),
                json_text(),
            ],
            json_value(),
            0..3,
        ),
    )
        .prop_map(|((alg, kid), typ, crit, extra)| {
            let mut header: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [("alg", alg), ("kid", kid), ("typ", typ), ("crit", crit)] {
                if let Some(value) = value {
                    header.insert(name.into(), value);
                }
            }
            Value::Object(header)
        });
    prop_oneof![4 => object, 1 => json_value()]
}

/// The text of a header: serialized JSON, JSON with a duplicate member, or JSON nested
/// past the parser's recursion limit.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => header_value().prop_map(|v| v.to_string()),
        1 => (json_text(), json_text()).prop_map(|(a, b)| {
            format!(
                r#"{{"alg":"ES256","kid":{},"kid":{},"typ":"at+jwt"}}"#,
                Value::String(a),
                Value::String(b)
            )
        }),
        1 => deeply_nested_json(),
    ]
}

fn payload_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => claims_object().prop_map(|c| Value::Object(c).to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => deeply_nested_json().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

/// One part of a dot-joined token: base64url-ish text, or the encoding of something.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{0,120}",
        1 => "[A-Za-z0-9_=+/ \t-]{0,40}",
        1 => "[A-Za-z0-9_-]{1,4}",
        2 => prop::collection::vec(any::<u8>(), 0..600).prop_map(b64),
        2 => header_text().prop_map(b64),
        2 => payload_text().prop_map(b64),
        1 => any::<String>(),
    ]
}

/// A change to a token's text.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one bit into the code point of one character.
    FlipBit(Index, u8),
    /// Replace one character.
    Replace(Index, char),
    /// Insert one character.
    Insert(Index, char),
    /// Remove one character.
    Remove(Index),
    /// Keep only a prefix.
    Truncate(Index),
    /// Swap two dot-separated parts.
    SwapSegments(Index, Index),
    /// Repeat one part after itself.
    DuplicateSegment(Index),
    /// Drop one part.
    DropSegment(Index),
}

fn token_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        3 => (any::<Index>(), token_char()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        2 => (any::<Index>(), token_char()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        1 => any::<Index>().prop_map(Mutation::DuplicateSegment),
        1 => any::<Index>().prop_map(Mutation::DropSegment),
    ]
}

fn apply(token: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let mut segments: Vec<&str> = token.split('.').collect();
    match mutation {
        Mutation::FlipBit(i, bit) if !chars.is_empty() => {
            let at = i.index(chars.len());
            let flipped = u32::from(chars[at]) ^ (1 << bit);
            chars[at] = char::from_u32(flipped).unwrap_or(char::REPLACEMENT_CHARACTER);
        }
        Mutation::Replace(i, c) if !chars.is_empty() => {
            let at = i.index(chars.len());
            chars[at] = *c;
        }
        Mutation::Insert(i, c) => {
            let at = i.index(chars.len() + 1);
            chars.insert(at, *c);
        }
        Mutation::Remove(i) if !chars.is_empty() => {
            chars.remove(i.index(chars.len()));
        }
        Mutation::Truncate(i) => {
            chars.truncate(i.index(chars.len() + 1));
        }
        Mutation::SwapSegments(a, b) => {
            let (a, b) = (a.index(segments.len()), b.index(segments.len()));
            segments.swap(a, b);
            return segments.join(".");
        }
        Mutation::DuplicateSegment(i) => {
            let at = i.index(segments.len());
            segments.insert(at, segments[at]);
            return segments.join(".");
        }
        Mutation::DropSegment(i) => {
            segments.remove(i.index(segments.len()));
            return segments.join(".");
        }
        _ => {}
    }
    chars.into_iter().collect()
}

/// Base64url of random bytes of lengths that matter to some key type, or a fixed value.
fn jwk_bytes_member() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0usize, 1, 3, 31, 32, 33, 47, 48, 49, 64, 255, 256, 257, 384, 512, 1024, 1025,
        ])
        .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
        .prop_map(|b| Value::String(b64(b))),
        1 => prop::sample::select(vec!["AQAB", "Aw", "AAEAAQ", "AQAB=", "", "AA", "_w", "AQ"])
            .prop_map(Value::from),
        1 => json_value(),
    ]
}

/// An RSA modulus: random bytes whose top bit is set (so the size is the byte length
/// times eight), often 2048 to 8192 bits, so the exponent, ROCA and parsing checks run.
fn rsa_modulus() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![255usize, 256, 257, 384, 512, 1024, 1025])
            .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
            .prop_map(|mut n| {
                if let Some(top) = n.first_mut() {
                    *top |= 0x80;
                }
                Value::String(b64(n))
            }),
        1 => jwk_bytes_member(),
    ]
}

/// An EC coordinate or Ed25519 key: random bytes of a curve's size, or anything.
fn coordinate() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(vec![32usize, 48])
            .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
            .prop_map(|b| Value::String(b64(b))),
        1 => jwk_bytes_member(),
    ]
}

fn rsa_exponent() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(vec!["AQAB", "Aw", "AAEAAQ", "AQ", "Ag", "AAAAAAAAAQAB", ""])
            .prop_map(Value::from),
        1 => prop::collection::vec(any::<u8>(), 0..9).prop_map(|e| Value::String(b64(e))),
        1 => json_value(),
    ]
}

/// A value from `choices` (usually) or any JSON.
fn text_or_any(choices: Vec<&'static str>) -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(choices).prop_map(Value::from),
        1 => json_value(),
    ]
}

/// A JWK of each key type with the members that type needs, each well-formed or not,
/// plus optional `use`, `key_ops`, `kid` and private members.
fn typed_jwk() -> impl Strategy<Value = Value> {
    let rsa = (
        rsa_modulus(),
        rsa_exponent(),
        prop::option::weighted(
            0.9,
            text_or_any(vec![
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "HS256",
            ]),
        ),
    )
        .prop_map(|(n, e, alg)| {
            let mut jwk = json!({ "kty": "RSA", "n": n, "e": e });
            if let Some(alg) = alg {
                jwk["alg"] = alg;
            }
            jwk
        });
    // Random coordinates of the curve's size reach the on-curve check.
    let sized_point = |crv: &'static str, size: usize| {
        (
            Just(Value::from(crv)),
            prop::collection::vec(any::<u8>(), size).prop_map(|b| Value::String(b64(b))),
            prop::collection::vec(any::<u8>(), size).prop_map(|b| Value::String(b64(b))),
        )
    };
    let point = prop_oneof![
        2 => sized_point("P-256", 32),
        1 => sized_point("P-384", 48),
        2 => (
            text_or_any(vec!["P-256", "P-384", "P-521", "secp256k1"]),
            coordinate(),
            coordinate(),
        ),
    ];
    let ec = (
        point,
        prop::option::weighted(0.5, text_or_any(vec!["ES256", "ES384", "EdDSA", "RS256"])),
    )
        .prop_map(|((crv, x, y), alg)| {
            let mut jwk = json!({ "kty": "EC", "crv": crv, "x": x, "y": y });
            if let Some(alg) = alg {
                jwk["alg"] = alg;
            }
            jwk
        });
    let okp = (
        text_or_any(vec!["Ed25519", "Ed448", "X25519"]),
        prop::option::weighted(0.5, text_or_any(vec!["EdDSA", "ES256"])),
        coordinate(),
    )
        .prop_map(|(crv, alg, x)| {
            let mut jwk = json!({ "kty": "OKP", "crv": crv, "x": x });
            if let Some(alg) = alg {
                jwk["alg"] = alg;
            }
            jwk
        });
    let oct = (
        prop::option::weighted(0.9, text_or_any(vec!["HS256", "HS384", "HS512", "RS256"])),
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|k| Value::String(b64(k))),
            1 => json_value(),
        ],
    )
        .prop_map(|(alg, k)| {
            let mut jwk = json!({ "kty": "oct", "k": k });
            if let Some(alg) = alg {
                jwk["alg"] = alg;
            }
            jwk
        });
    let kind = prop_oneof![
        3 => rsa,
        2 => ec,
        2 => okp,
        2 => oct,
        1 => text_or_any(vec!["RSA", "EC", "OKP", "oct", "rsa", ""])
            .prop_map(|kty| json!({ "kty": kty })),
    ];
    let key_ops = prop_oneof![
        3 => prop::collection::vec(text_or_any(vec!["verify", "sign", "encrypt", ""]), 0..3)
            .prop_map(Value::Array),
        1 => json_value(),
    ];
    (
        kind,
        prop::option::weighted(0.2, text_or_any(vec!["sig", "enc", ""])),
        prop::option::weighted(0.2, key_ops),
        prop::option::weighted(0.7, json_text().prop_map(Value::from)),
        prop::option::weighted(
            0.1,
            (
                prop::sample::select(vec!["d", "p", "q", "dp", "dq", "qi", "oth"]),
                jwk_bytes_member(),
            ),
        ),
    )
        .prop_map(|(mut jwk, use_, key_ops, kid, private)| {
            for (name, value) in [("use", use_), ("key_ops", key_ops), ("kid", kid)] {
                if let Some(value) = value {
                    jwk[name] = value;
                }
            }
            if let Some((name, value)) = private {
                jwk[name] = value;
            }
            jwk
        })
}

/// A JWK: typed, a fixture key with one member changed, or any JSON.
fn jwk_value() -> impl Strategy<Value = Value> {
    prop_oneof![4 => typed_jwk(), 2 => fixture_jwk_with_change(), 1 => json_value()]
}

/// One key of the interop JWK Set with one member replaced or removed.
fn fixture_jwk_with_change() -> impl Strategy<Value = Value> {
    let doc: Value = serde_json::from_str(&INTEROP_JWKS).expect("fixture JWKS is JSON");
    let keys = doc["keys"].as_array().cloned().unwrap_or_default();
    (
        prop::sample::select(keys),
        prop::sample::select(vec![
            "kty", "crv", "alg", "use", "key_ops", "kid", "n", "e", "x", "y", "d",
        ]),
        prop::option::of(prop_oneof![jwk_bytes_member(), json_value()]),
    )
        .prop_map(|(mut key, member, value)| {
            if let Some(obj) = key.as_object_mut() {
                match value {
                    Some(value) => obj.insert(member.to_owned(), value),
                    None => obj.remove(member),
                };
            }
            key
        })
}

fn check_jwks_text(text: &str) {
    for result in [
        KeySet::from_jwks_json(text),
        KeySet::from_jwks_json_with_default_alg(text, Algorithm::RS256),
        KeySet::from_jwks_json_with_default_alg(text, Algorithm::HS256),
    ] {
        match result {
            Ok(keys) => {
                let _ = (keys.len(), format!("{keys:?}"));
                // A loaded set must also be usable (or refused) by a verifier.
                match JwtVerifier::builder(ISSUER, AUDIENCE).keys(keys).build() {
                    Ok(v) => {
                        let _ = verify(&v, "eyJhbGciOiJFUzI1NiJ9.e30.AAAA");
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
            Err(e) => touch_key_error(&e),
        }
    }
    match Key::from_jwk(text) {
        Ok(key) => {
            let _ = (key.kid(), key.algorithm(), format!("{key:?}"));
        }
        Err(e) => touch_key_error(&e),
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Any string at all, from empty to past the size limit, is answered without panic.
    #[test]
    fn arbitrary_unicode_strings_are_refused_without_panic(text in arbitrary_text()) {
        for verifier in VERIFIERS.iter() {
            let result = verify(verifier, &text);
            prop_assert!(result.is_err(), "random text accepted: {text:?}");
        }
    }

    /// Dot-joined base64url-looking parts (three and four, plus other counts) reach the
    /// base64, JSON and signature checks, and are refused without panic.
    #[test]
    fn dot_joined_base64url_segments_are_refused_without_panic(
        segments in prop_oneof![
            3 => prop::collection::vec(segment(), 3),
            2 => prop::collection::vec(segment(), 4),
            1 => prop::collection::vec(segment(), 0..7),
        ]
    ) {
        let token = segments.join(".");
        for verifier in VERIFIERS.iter() {
            let result = verify(verifier, &token);
            prop_assert!(result.is_err(), "unsigned token accepted: {token:?}");
        }
    }

    /// Arbitrary JSON as the header and payload, with a random signature: reaches the
    /// header, allow-list, `crit`, key-selection and signature checks of every key type,
    /// and is always refused, since nothing here holds a trusted private key or secret.
    #[test]
    fn arbitrary_json_header_and_payload_with_random_signature_are_refused(
        header in header_text(),
        payload in payload_text(),
        signature in signature_bytes(),
    ) {
        let token = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature));
        for verifier in VERIFIERS.iter().chain(std::iter::once(&*DEV_LENIENT)) {
            let result = verify(verifier, &token);
            prop_assert!(
                result.is_err(),
                "forged token accepted: header {header}, signature {signature:?}"
            );
        }
    }

    /// Tokens minted by the development issuer, then mutated: never a panic, and never
    /// accepted unless the decoded header, payload and signature are those of the
    /// original; an accepted token speaks for the original subject.
    #[test]
    fn mutated_dev_tokens_are_refused_unless_the_signed_bytes_are_unchanged(
        // Any non-empty subject: an empty `sub` names no one and is refused.
        subject in prop_oneof![
            "[a-z0-9-]{1,16}",
            any::<String>().prop_filter("a subject is not empty", |s| !s.is_empty()),
        ],
        scopes in prop::collection::vec("[a-z:]{1,10}", 0..4),
        actor in prop::option::of("[a-z-]{1,12}"),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut request = DEV.token(AUDIENCE).subject(subject.clone()).scopes(&scopes);
        if let Some(actor) = &actor {
            request = request.actor(actor.clone());
        }
        let original = request.mint().expect("minting succeeds");
        prop_assert!(DEV_LENIENT.verify_sync(&original).is_ok(), "the original verifies");
        let mutated = mutations.iter().fold(original.clone(), |t, m| apply(&t, m));

        for verifier in [&VERIFIERS[0], &*DEV_LENIENT] {
            let result = verify(verifier, &mutated);
            if mutated == original {
                prop_assert!(result.is_ok());
            }
            if let Ok(principal) = result {
                prop_assert_eq!(
                    decoded_parts(&mutated),
                    decoded_parts(&original),
                    "a token whose signed bytes changed was accepted: {}",
                    mutated
                );
                prop_assert_eq!(principal.subject(), Some(subject.as_str()));
            }
        }
        for verifier in &VERIFIERS[1..] {
            // Other keys: the token was never signed by them.
            prop_assert!(verify(verifier, &mutated).is_err());
        }
    }

    /// Parts of two different minted tokens spliced together: accepted only when the
    /// result is one of the two originals.
    #[test]
    fn segments_spliced_between_two_dev_tokens_are_refused(
        take_from_second in prop::array::uniform3(any::<bool>()),
    ) {
        let first = DEV.token(AUDIENCE).subject("alice").mint().expect("mint");
        let second = DEV.token(AUDIENCE).subject("mallory").scopes(["admin"]).mint().expect("mint");
        let (a, b): (Vec<&str>, Vec<&str>) =
            (first.split('.').collect(), second.split('.').collect());
        let spliced = (0..3)
            .map(|i| if take_from_second[i] { b[i] } else { a[i] })
            .collect::<Vec<_>>()
            .join(".");
        let result = verify(&VERIFIERS[0], &spliced);
        if let Ok(principal) = result {
            prop_assert!(
                spliced == first || spliced == second,
                "a spliced token was accepted: {}", spliced
            );
            let expected = if spliced == first { "alice" } else { "mallory" };
            prop_assert_eq!(principal.subject(), Some(expected));
        }
    }

    /// Validly signed tokens whose claims are arbitrary: every claim check sees hostile
    /// types and edge values (huge, negative and fractional dates, deep `act` chains), and
    /// a token is accepted only when its issuer and audience are the configured ones.
    #[test]
    fn signed_tokens_with_arbitrary_claims_never_panic(
        claims in claims_object(),
        typ in prop::option::weighted(0.9, prop_oneof![
            3 => Just("at+jwt".to_owned()),
            1 => Just("JWT".to_owned()),
            1 => json_text(),
        ]),
    ) {
        let claims = Value::Object(claims);
        let token = DEV.mint_claims(&claims, typ.as_deref()).expect("an object can be signed");
        for verifier in [&VERIFIERS[0], &*DEV_LENIENT] {
            if let Ok(principal) = verify(verifier, &token) {
                prop_assert_eq!(claims.get("iss"), Some(&json!(ISSUER)));
                prop_assert!(principal.audiences().iter().any(|a| a == AUDIENCE));
                prop_assert_eq!(principal.subject(), claims.get("sub").and_then(Value::as_str));
                prop_assert!(principal.delegation_chain().len() <= 32);
            }
        }
    }

    /// Validly signed tokens whose payload is any JSON object at all.
    #[test]
    fn signed_tokens_with_arbitrary_json_objects_never_panic(
        claims in prop::collection::btree_map(json_text(), json_value(), 0..8),
    ) {
        let claims = Value::Object(claims.into_iter().collect());
        let token = DEV.mint_claims(&claims, Some("at+jwt")).expect("an object can be signed");
        for verifier in [&VERIFIERS[0], &*DEV_LENIENT] {
            if verify(verifier, &token).is_ok() {
                prop_assert_eq!(claims.get("iss"), Some(&json!(ISSUER)));
            }
        }
    }

    /// Any string into the JWK Set and single-JWK loaders is answered without panic.
    #[test]
    fn arbitrary_strings_into_jwk_loading_never_panic(text in arbitrary_text()) {
        check_jwks_text(&text);
    }

    /// Structured JWK Sets, with well-formed and malformed members of every key type
    /// (including random RSA moduli, which reach the size, exponent and ROCA checks).
    #[test]
    fn structured_jwk_sets_never_panic(
        keys in prop::collection::vec(jwk_value(), 0..4),
        keys_member in prop_oneof![
            6 => Just("keys".to_owned()),
            1 => json_text(),
        ],
    ) {
        for key in &keys {
            check_jwks_text(&key.to_string());
        }
        let mut doc = Map::new();
        doc.insert(keys_member, Value::Array(keys));
        check_jwks_text(&Value::Object(doc).to_string());
    }
}
