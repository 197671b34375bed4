//! The PyJWT interop corpus (tests/fixtures/interop, copied unchanged from
//! shared/interop): tokens minted by an independent implementation, each with the
//! decision a correct verifier makes and, when accepted, the principal it yields.
//!
//! Every case must be decided exactly as its `expect` says. On top of the corpus, this
//! test states (in `EXPECTED_REJECTION`) which check must refuse each rejected case, so a
//! token refused for the wrong reason (a forged signature caught only by a claim check,
//! say) fails here too.

use rmcp_authz::ManualClock;
use rmcp_authz::token::{Algorithm, AuthError, AuthErrorKind, JwtVerifier};
use rmcp_authz_tests::{fixtures_dir, read_fixture};
use serde::Deserialize;

/// A fixed "now" between the corpus' minting (2026) and its far expiry (2100).
const NOW: i64 = 1_800_000_000;

#[derive(Deserialize)]
struct Corpus {
    minted_by: String,
    verifier: VerifierConfig,
    cases: Vec<Case>,
    hs256_verifier: HsVerifierConfig,
    hs256_cases: Vec<Case>,
}

#[derive(Deserialize)]
struct VerifierConfig {
    issuer: String,
    audience: String,
    jwks: String,
    require_typ: String,
    required_claims: Vec<String>,
    max_token_bytes: usize,
}

#[derive(Deserialize)]
struct HsVerifierConfig {
    issuer: String,
    audience: String,
    secret_b64u: String,
    algorithms: Vec<String>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    token: String,
    expect: String,
    why: String,
    principal: Option<ExpectedPrincipal>,
}

#[derive(Deserialize)]
struct ExpectedPrincipal {
    subject: String,
    client_id: String,
    scopes: Vec<String>,
    actors: Vec<String>,
}

/// Which check must refuse each rejected case (this project's reading of the corpus).
const EXPECTED_REJECTION: &[(&str, AuthErrorKind)] = &[
    ("ps256-with-rs256-key", AuthErrorKind::Algorithm),
    ("expired", AuthErrorKind::Expired),
    ("not-yet-valid", AuthErrorKind::NotYetValid),
    ("wrong-audience", AuthErrorKind::WrongAudience),
    ("missing-audience", AuthErrorKind::Claim),
    ("audience-prefix", AuthErrorKind::WrongAudience),
    ("wrong-issuer", AuthErrorKind::WrongIssuer),
    ("issuer-trailing-slash", AuthErrorKind::WrongIssuer),
    ("missing-exp", AuthErrorKind::Claim),
    ("missing-sub", AuthErrorKind::Claim),
    ("string-exp", AuthErrorKind::Claim),
    ("typ-jwt", AuthErrorKind::WrongType),
    ("typ-absent", AuthErrorKind::WrongType),
    ("unknown-kid", AuthErrorKind::UnknownKey),
    ("signature-from-other-key", AuthErrorKind::BadSignature),
    ("tampered-payload", AuthErrorKind::BadSignature),
    ("alg-none", AuthErrorKind::Unsigned),
    ("alg-None", AuthErrorKind::Unsigned),
    ("alg-NONE", AuthErrorKind::Unsigned),
    ("alg-nOnE", AuthErrorKind::Unsigned),
    ("rs-hs-key-confusion", AuthErrorKind::Algorithm),
    ("psychic-signature", AuthErrorKind::BadSignature),
    ("empty-signature", AuthErrorKind::Malformed),
    // The header's key is ignored; the one configured ES256 key does not verify it.
    ("embedded-jwk", AuthErrorKind::BadSignature),
    // jku is ignored; the configured key named by kid does not verify it.
    ("jku-injection", AuthErrorKind::BadSignature),
    ("kid-path-traversal", AuthErrorKind::UnknownKey),
    ("crit-unknown", AuthErrorKind::UnsupportedCritical),
    ("two-segments", AuthErrorKind::Malformed),
    ("four-segments", AuthErrorKind::Malformed),
    ("bad-base64", AuthErrorKind::Malformed),
    ("payload-not-object", AuthErrorKind::Malformed),
    ("oversized", AuthErrorKind::TooLarge),
    ("empty", AuthErrorKind::Malformed),
    ("hs256-without-hs-key", AuthErrorKind::Algorithm),
    ("hs256-wrong-secret", AuthErrorKind::BadSignature),
    ("hs512-when-hs256-configured", AuthErrorKind::Algorithm),
];

fn corpus() -> Corpus {
    serde_json::from_str(&read_fixture("interop/cases.json")).expect("cases.json parses")
}

/// Decides every case; returns the failures as text, one per case.
fn decide_all(verifier: &JwtVerifier, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let result = verifier.verify_sync(&case.token);
        match (case.expect.as_str(), result) {
            ("accept", Ok(p)) => {
                let want = case
                    .principal
                    .as_ref()
                    .expect("accepted cases list a principal");
                let actors: Vec<&str> = p.delegation_chain().iter().map(|a| a.id()).collect();
                if p.subject() != Some(want.subject.as_str())
                    || p.client_id() != Some(want.client_id.as_str())
                    || p.scopes() != want.scopes.as_slice()
                    || actors != want.actors
                {
                    failures.push(format!(
                        "{}: accepted with wrong principal {p:?}",
                        case.name
                    ));
                }
            }
            ("accept", Err(e)) => {
                failures.push(format!("{}: rejected ({e}); {}", case.name, case.why))
            }
            ("reject", Ok(_)) => failures.push(format!("{}: ACCEPTED; {}", case.name, case.why)),
            ("reject", Err(e)) => check_reason(&case.name, &e, &mut failures),
            (other, _) => failures.push(format!("{}: unknown expectation {other:?}", case.name)),
        }
    }
    failures
}

fn check_reason(name: &str, err: &AuthError, failures: &mut Vec<String>) {
    match EXPECTED_REJECTION.iter().find(|(n, _)| *n == name) {
        Some((_, kind)) if err.kind() == *kind => {}
        Some((_, kind)) => failures.push(format!(
            "{name}: rejected as {:?} ({err}), expected {kind:?}",
            err.kind()
        )),
        None => failures.push(format!(
            "{name}: no expected rejection reason listed in this test"
        )),
    }
}

#[test]
fn pyjwt_corpus_is_decided_as_expected() {
    let corpus = corpus();
    let cfg = &corpus.verifier;
    assert_eq!(
        cfg.require_typ, "at+jwt",
        "the corpus asks for the default typ check"
    );
    let verifier = JwtVerifier::builder(&cfg.issuer, &cfg.audience)
        .jwks_file(fixtures_dir().join("interop").join(&cfg.jwks))
        .required_claims(cfg.required_claims.iter().cloned())
        .max_token_bytes(cfg.max_token_bytes)
        .clock(ManualClock::new(NOW))
        .build()
        .expect("the corpus verifier builds");

    let failures = decide_all(&verifier, &corpus.cases);
    let total = corpus.cases.len();
    println!(
        "interop ({}): {}/{total} cases decided as expected",
        corpus.minted_by,
        total - failures.len()
    );
    assert_eq!(total, 44, "the corpus has 44 cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pyjwt_hs256_corpus_is_decided_as_expected() {
    let corpus = corpus();
    let cfg = &corpus.hs256_verifier;
    let secret = read_fixture(&format!("interop/{}", cfg.secret_b64u));
    let secret = base64_url_decode(secret.trim());
    let algorithms: Vec<Algorithm> = cfg
        .algorithms
        .iter()
        .map(|a| a.parse().expect("known algorithm"))
        .collect();
    let verifier = JwtVerifier::builder(&cfg.issuer, &cfg.audience)
        .hmac_secret(&secret, algorithms[0])
        .algorithms(algorithms.iter().copied())
        .clock(ManualClock::new(NOW))
        .build()
        .expect("the HS256 verifier builds");

    let failures = decide_all(&verifier, &corpus.hs256_cases);
    let total = corpus.hs256_cases.len();
    println!(
        "interop HS256 ({}): {}/{total} cases decided as expected",
        corpus.minted_by,
        total - failures.len()
    );
    assert_eq!(total, 3, "the HS256 corpus has 3 cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_listed_rejection_reason_names_a_corpus_case() {
    let corpus = corpus();
    let names: Vec<&str> = corpus
        .cases
        .iter()
        .chain(&corpus.hs256_cases)
        .filter(|c| c.expect == "reject")
        .map(|c| c.name.as_str())
        .collect();
    for (name, _) in EXPECTED_REJECTION {
        assert!(names.contains(name), "{name} is not a rejected corpus case");
    }
    assert_eq!(names.len(), EXPECTED_REJECTION.len());
}

#[test]
fn corpus_pem_keys_load_and_verify_like_the_jwks() {
    // The same keys as PEM files (SPKI public keys and PKCS#8 private keys) verify the
    // corpus' valid tokens just as the JWK Set does.
    let corpus = corpus();
    let cfg = &corpus.verifier;
    for (case, file, alg) in [
        ("valid-rs256", "rsa-1", Algorithm::RS256),
        ("valid-es256", "ec-p256", Algorithm::ES256),
        ("valid-es384", "ec-p384", Algorithm::ES384),
        ("valid-eddsa", "ed-1", Algorithm::EdDSA),
    ] {
        let token = &corpus.cases.iter().find(|c| c.name == case).unwrap().token;
        for pem in [format!("{file}.pub.pem"), format!("{file}.pem")] {
            let verifier = JwtVerifier::builder(&cfg.issuer, &cfg.audience)
                .pem_file(fixtures_dir().join("interop/keys").join(&pem), alg)
                .clock(ManualClock::new(NOW))
                .build()
                .unwrap_or_else(|e| panic!("{pem}: {e}"));
            let p = verifier
                .verify_sync(token)
                .unwrap_or_else(|e| panic!("{case} with {pem}: {e}"));
            assert_eq!(p.subject(), Some("user-alice"));
        }
    }
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("the secret is base64url")
}
