//! The differential oracle: this crate's [`JwtVerifier`] and `jsonwebtoken::decode`,
//! configured alike, decide the same tokens, and every disagreement falls in a class named
//! in [`classes::CLASSES`] with the rule that justifies it.
//!
//! A token is described by a [`Spec`] (header and payload written member by member, so
//! names can repeat or be escaped; the key and algorithm it is signed with; a last tweak
//! of its text) and rendered at the current second, because `jsonwebtoken` reads the wall
//! clock. This crate's verifier is given a [`ManualClock`] set to that second, and a
//! decision is retried when the second changed while the two verifiers decided.
//!
//! The classes, and how each is recognised, are in `classes.rs`.
//!
//! This file and `classes.rs` are shared, as source, by `tests/tests/differential.rs`
//! (proptest) and `fuzz/fuzz_targets/differential.rs` (cargo-fuzz); each includes this file
//! with `#[path]`. They need rmcp-authz, jsonwebtoken, serde, serde_json, base64,
//! aws-lc-rs and url.

#[path = "classes.rs"]
pub(crate) mod classes;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, TokenData, Validation};
use rmcp_authz::token::{Algorithm, AuthError, JwtVerifier, Key, TypCheck};
use rmcp_authz::{ManualClock, Principal};
use serde_json::Value;

use classes::{Case, Class};

pub(crate) const ISSUER: &str = "https://auth.example.test";
pub(crate) const AUDIENCE: &str = "https://mcp.example.test/mcp";

const RSA_PEM: &str = include_str!("../../fixtures/interop/keys/rsa-1.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../../fixtures/interop/keys/rsa-1.pub.pem");
const RSA_OTHER_PEM: &str = include_str!("../../fixtures/interop/keys/rsa-unlisted.pem");
const EC_PEM: &str = include_str!("../../fixtures/interop/keys/ec-p256.pem");
const EC_PUBLIC_PEM: &str = include_str!("../../fixtures/interop/keys/ec-p256.pub.pem");
const SECRET: &[u8; 32] = b"differential-oracle-hmac-secret!";
const OTHER_SECRET: &[u8; 32] = b"an-hmac-secret-nobody-configured";

/// One verifier configuration, set up the same way on both sides.
struct Profile {
    clock: Arc<ManualClock>,
    ours: JwtVerifier,
    key: DecodingKey,
    validation: Validation,
    leeway: i64,
    /// The `kid`s of the configured keys.
    kids: &'static [&'static str],
    /// The algorithms the trusted (and the other) key can sign with.
    algs: &'static [JwtAlg],
    trusted: EncodingKey,
    other: EncodingKey,
    /// The public key's PEM, or for a secret another secret: the HMAC key of an
    /// algorithm-confusion token.
    public: &'static [u8],
}

/// `jsonwebtoken`'s settings for this crate's: the same algorithms, issuer, audience and
/// leeway, `nbf` checked, and the same required claims (`exp`, `iss`, `aud`, and `sub`
/// when `sub` is required).
fn validation(algs: &[JwtAlg], leeway: u64, sub_required: bool) -> Validation {
    let mut v = Validation::new(algs[0]);
    v.algorithms = algs.to_vec();
    v.leeway = leeway;
    v.validate_nbf = true;
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    let mut required = vec!["exp", "iss", "aud"];
    if sub_required {
        required.push("sub");
    }
    v.set_required_spec_claims(&required);
    v
}

fn profiles() -> Vec<Profile> {
    let clock = || Arc::new(ManualClock::new(0));
    let other_ec = {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256");
        EncodingKey::from_ec_der(pkcs8.as_ref())
    };
    let (c0, c1, c2) = (clock(), clock(), clock());
    vec![
        // An HMAC secret with a kid, the strict typ check, 30 s leeway, `sub` required.
        Profile {
            ours: JwtVerifier::builder(ISSUER, AUDIENCE)
                .key(
                    Key::hmac(SECRET, Algorithm::HS256)
                        .expect("secret")
                        .with_kid("hs-1"),
                )
                .algorithms([Algorithm::HS256])
                .clock(c0.clone())
                .build()
                .expect("HS256 verifier"),
            clock: c0,
            key: DecodingKey::from_secret(SECRET).expect("secret"),
            validation: validation(&[JwtAlg::HS256], 30, true),
            leeway: 30,
            kids: &["hs-1"],
            algs: &[JwtAlg::HS256, JwtAlg::HS384, JwtAlg::HS512],
            trusted: EncodingKey::from_secret(SECRET).expect("secret"),
            other: EncodingKey::from_secret(OTHER_SECRET).expect("secret"),
            public: OTHER_SECRET,
        },
        // An RSA key bound to RS256 with a kid; RS256 and PS256 allowed; 60 s leeway.
        Profile {
            ours: JwtVerifier::builder(ISSUER, AUDIENCE)
                .key(
                    Key::from_pem(RSA_PUBLIC_PEM, Algorithm::RS256)
                        .expect("RSA key")
                        .with_kid("rsa-1"),
                )
                .algorithms([Algorithm::RS256, Algorithm::PS256])
                .leeway(std::time::Duration::from_secs(60))
                .clock(c1.clone())
                .build()
                .expect("RS256 verifier"),
            clock: c1,
            key: DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()).expect("RSA key"),
            validation: validation(&[JwtAlg::RS256, JwtAlg::PS256], 60, true),
            leeway: 60,
            kids: &["rsa-1"],
            algs: &[JwtAlg::RS256, JwtAlg::RS384, JwtAlg::PS256, JwtAlg::PS512],
            trusted: EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).expect("RSA key"),
            other: EncodingKey::from_rsa_pem(RSA_OTHER_PEM.as_bytes()).expect("RSA key"),
            public: RSA_PUBLIC_PEM.as_bytes(),
        },
        // A P-256 key without a kid, the lenient typ check, no leeway, no `sub` required.
        Profile {
            ours: JwtVerifier::builder(ISSUER, AUDIENCE)
                .key(Key::from_pem(EC_PUBLIC_PEM, Algorithm::ES256).expect("EC key"))
                .algorithms([Algorithm::ES256])
                .typ_check(TypCheck::Lenient)
                .leeway(std::time::Duration::ZERO)
                .required_claims(Vec::<String>::new())
                .clock(c2.clone())
                .build()
                .expect("ES256 verifier"),
            clock: c2,
            key: DecodingKey::from_ec_pem(EC_PUBLIC_PEM.as_bytes()).expect("EC key"),
            validation: validation(&[JwtAlg::ES256], 0, false),
            leeway: 0,
            kids: &[],
            algs: &[JwtAlg::ES256],
            trusted: EncodingKey::from_ec_pem(EC_PEM.as_bytes()).expect("EC key"),
            other: other_ec,
            public: EC_PUBLIC_PEM.as_bytes(),
        },
    ]
}

/// A token to render: which configuration decides it, its parts, its signature, and a
/// change to its final text.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The configuration, modulo [`Oracle::PROFILES`].
    pub(crate) profile: usize,
    pub(crate) header: Part,
    pub(crate) payload: Part,
    pub(crate) sign: Sign,
    pub(crate) tweak: Tweak,
}

/// A header or payload.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// A JSON object written member by member (names may repeat), maybe with whitespace.
    Object { members: Vec<Member>, spaced: bool },
    /// A JSON array.
    Array(Vec<Val>),
    /// Bytes as they are.
    Raw(Vec<u8>),
}

/// `"name": value`; with `escaped`, the name's first character as a `\u` escape.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) escaped: bool,
    pub(crate) value: Val,
}

/// A JSON value, rendered when the current second is known.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    /// JSON text, written as is.
    Json(String),
    /// A JSON string.
    Str(String),
    /// The current second plus `offset`, with `tenths` as a fraction when given.
    Time { offset: i64, tenths: Option<u8> },
    /// The name of the algorithm the token is signed with.
    SigningAlg,
    /// The `kid` of the configured key, or any `kid` when it has none.
    ConfiguredKid,
}

/// How the token is signed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sign {
    /// By `signer`, with its `alg`-th algorithm (modulo the ones it can sign with).
    With { signer: Signer, alg: u8 },
    /// An empty signature.
    Empty,
}

/// Whose key signs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signer {
    /// The configured key.
    Trusted,
    /// A key of the same kind nobody configured.
    Other,
    /// HMAC keyed with the public key's PEM (RFC 8725 section 2.1's algorithm confusion).
    PublicKeyAsSecret,
}

/// A last change to the token text.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tweak {
    None,
    /// `=` after the signature.
    PadSignature,
    /// `=` after the payload.
    PadPayload,
    /// A newline at the end.
    TrailingNewline,
    /// A space at the start.
    LeadingSpace,
    /// A fourth, empty part.
    ExtraPart,
    /// The signature's first character changed.
    FlipSignature,
    /// The signature's last four characters dropped.
    TruncateSignature,
}

/// How the two verifiers decided one token.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Both accepted (with the same claims), or both refused.
    Agree { accepted: bool },
    /// A deliberate disagreement.
    Listed(&'static Class),
    /// Anything else: a bug on one side, or a class to add.
    Unexplained(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Agree { accepted: true } => f.write_str("agree: both accept"),
            Verdict::Agree { accepted: false } => f.write_str("agree: both refuse"),
            Verdict::Listed(class) => write!(f, "listed: {} ({})", class.name, class.rule),
            Verdict::Unexplained(why) => write!(f, "UNEXPLAINED: {why}"),
        }
    }
}

/// One token, both decisions, and the verdict.
#[derive(Debug)]
pub(crate) struct Judgement {
    pub(crate) token: String,
    pub(crate) profile: usize,
    pub(crate) now: i64,
    pub(crate) ours: Result<Principal, AuthError>,
    pub(crate) theirs: Result<TokenData<Value>, jsonwebtoken::errors::Error>,
    pub(crate) verdict: Verdict,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |i: usize| {
            self.token
                .split('.')
                .nth(i)
                .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        writeln!(f, "{}", self.verdict)?;
        writeln!(f, "  profile {} at {}", self.profile, self.now)?;
        writeln!(f, "  token   {}", self.token)?;
        writeln!(f, "  header  {:?}", part(0))?;
        writeln!(f, "  payload {:?}", part(1))?;
        writeln!(f, "  ours    {:?}", self.ours.as_ref().map(|_| "accepted"))?;
        write!(
            f,
            "  theirs  {:?}",
            self.theirs.as_ref().map(|_| "accepted")
        )
    }
}

/// Both verifiers for every configuration. Decisions set its clocks: use one oracle per
/// thread.
pub(crate) struct Oracle {
    profiles: Vec<Profile>,
}

impl Oracle {
    /// The number of configurations.
    pub(crate) const PROFILES: usize = 3;

    pub(crate) fn new() -> Oracle {
        let profiles = profiles();
        assert_eq!(profiles.len(), Self::PROFILES);
        Oracle { profiles }
    }

    /// Renders `spec` at the current second and has both verifiers decide it.
    pub(crate) fn judge(&self, spec: &Spec) -> Judgement {
        let index = spec.profile % Self::PROFILES;
        self.decide(index, |now| render(&self.profiles[index], spec, now))
    }

    /// Has both verifiers of configuration `profile` decide `token` as it is.
    pub(crate) fn judge_text(&self, profile: usize, token: &str) -> Judgement {
        self.decide(profile % Self::PROFILES, |_| token.to_owned())
    }

    fn decide(&self, index: usize, token_at: impl Fn(i64) -> String) -> Judgement {
        let profile = &self.profiles[index];
        loop {
            let now = unix_now();
            profile.clock.set(now);
            let token = token_at(now);
            let ours = profile.ours.verify_sync(&token);
            let theirs = jsonwebtoken::decode::<Value>(&token, &profile.key, &profile.validation);
            // jsonwebtoken read the wall clock in between; the decisions are comparable
            // only if it read the same second.
            if unix_now() != now {
                continue;
            }
            let verdict = verdict(profile, &token, now, &ours, &theirs);
            return Judgement {
                token,
                profile: index,
                now,
                ours,
                theirs,
                verdict,
            };
        }
    }
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(secs).expect("a 64-bit time")
}

fn verdict(
    profile: &Profile,
    token: &str,
    now: i64,
    ours: &Result<Principal, AuthError>,
    theirs: &Result<TokenData<Value>, jsonwebtoken::errors::Error>,
) -> Verdict {
    match (ours, theirs) {
        (Ok(principal), Ok(data)) => {
            if data.claims == Value::Object(principal.claims().clone()) {
                Verdict::Agree { accepted: true }
            } else {
                Verdict::Unexplained("both accepted, with different claims".to_owned())
            }
        }
        (Err(_), Err(_)) => Verdict::Agree { accepted: false },
        _ => {
            let case = Case::read(token, ours, theirs, now, profile.leeway, profile.kids);
            match case.class() {
                Some(class) => Verdict::Listed(class),
                None => Verdict::Unexplained(match (ours, theirs) {
                    (Err(e), _) => format!("this crate refused ({e}) what jsonwebtoken accepted"),
                    (_, Err(e)) => format!("this crate ACCEPTED what jsonwebtoken refused ({e:?})"),
                    _ => unreachable!("one side refused"),
                }),
            }
        }
    }
}

fn render(profile: &Profile, spec: &Spec, now: i64) -> String {
    let (key, alg) = match spec.sign {
        Sign::With { signer, alg } => {
            let hmac = [JwtAlg::HS256, JwtAlg::HS384, JwtAlg::HS512];
            match signer {
                Signer::Trusted => (Some(&profile.trusted), pick(profile.algs, alg)),
                Signer::Other => (Some(&profile.other), pick(profile.algs, alg)),
                Signer::PublicKeyAsSecret => (None, pick(&hmac, alg)),
            }
        }
        Sign::Empty => (Some(&profile.trusted), profile.algs[0]),
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(render_part(&spec.header, now, alg, profile.kids)),
        URL_SAFE_NO_PAD.encode(render_part(&spec.payload, now, alg, profile.kids))
    );
    let signature = match (spec.sign, key) {
        (Sign::Empty, _) => String::new(),
        (_, Some(key)) => jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("signs"),
        (_, None) => {
            let secret = EncodingKey::from_secret(profile.public).expect("a key");
            jsonwebtoken::crypto::sign(input.as_bytes(), &secret, alg).expect("signs")
        }
    };
    let mut token = format!("{input}.{signature}");
    let sig_start = input.len() + 1;
    match spec.tweak {
        Tweak::None => {}
        Tweak::PadSignature => token.push('='),
        Tweak::PadPayload => token.insert(input.len(), '='),
        Tweak::TrailingNewline => token.push('\n'),
        Tweak::LeadingSpace => token.insert(0, ' '),
        Tweak::ExtraPart => token.push('.'),
        Tweak::FlipSignature => {
            if let Some(c) = token[sig_start..].chars().next() {
                let flipped = if c == 'A' { "B" } else { "A" };
                token.replace_range(sig_start..sig_start + 1, flipped);
            }
        }
        Tweak::TruncateSignature => token.truncate(token.len().saturating_sub(4).max(sig_start)),
    }
    token
}

fn pick(algs: &[JwtAlg], i: u8) -> JwtAlg {
    algs[usize::from(i) % algs.len()]
}

fn render_part(part: &Part, now: i64, alg: JwtAlg, kids: &[&str]) -> Vec<u8> {
    match part {
        Part::Object { members, spaced } => {
            let sp = if *spaced { " \n\t" } else { "" };
            let members: Vec<String> = members
                .iter()
                .map(|m| {
                    let name = json_name(&m.name, m.escaped);
                    format!(
                        "{sp}{name}{sp}:{sp}{}{sp}",
                        render_val(&m.value, now, alg, kids)
                    )
                })
                .collect();
            format!("{{{}}}", members.join(",")).into_bytes()
        }
        Part::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| render_val(v, now, alg, kids))
                .collect();
            format!("[{}]", items.join(",")).into_bytes()
        }
        Part::Raw(bytes) => bytes.clone(),
    }
}

fn render_val(val: &Val, now: i64, alg: JwtAlg, kids: &[&str]) -> String {
    match val {
        Val::Json(text) => text.clone(),
        Val::Str(text) => Value::from(text.as_str()).to_string(),
        Val::Time { offset, tenths } => {
            let secs = now.saturating_add(*offset);
            match tenths {
                Some(t) => format!("{secs}.{}", t % 10),
                None => secs.to_string(),
            }
        }
        Val::SigningAlg => format!("\"{alg:?}\""),
        Val::ConfiguredKid => Value::from(kids.first().copied().unwrap_or("any-kid")).to_string(),
    }
}

/// `name` as a JSON string, its first character as a `\u` escape when `escaped`.
fn json_name(name: &str, escaped: bool) -> String {
    let quoted = Value::from(name).to_string();
    match name.chars().next() {
        Some(first) if escaped && first.is_ascii() => {
            format!("\"\\u{:04x}{}", u32::from(first), &quoted[2..])
        }
        _ => quoted,
    }
}
