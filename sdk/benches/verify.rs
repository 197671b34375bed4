//! Token verification cost: `JwtVerifier` against a bare `jsonwebtoken::decode`, and the
//! verified-token cache.
//!
//! For each of RS256, PS256, ES256, ES384, EdDSA and HS256 the bench makes a key with
//! aws-lc-rs, signs one realistic MCP agent access token with it (`iss`, `sub`, `aud`,
//! `exp`, `iat`, `nbf`, five scopes, `client_id`, `jti` and an `act` delegation claim;
//! header `typ: at+jwt` and a `kid`), and builds both verifiers from the same JWK. One
//! criterion group per algorithm measures:
//!
//! - `jsonwebtoken_value`: `jsonwebtoken::decode::<serde_json::Value>` with a `Validation`
//!   doing our checks (algorithm pinned, `iss`, `aud`, `exp` and `nbf` with a 30 s leeway,
//!   `iss`/`aud`/`exp`/`sub` required). It yields every claim, as our `Principal` does, and
//!   is the baseline of the ratio.
//! - `jsonwebtoken_struct`: the same into a claims struct, for reference.
//! - `rmcp_authz_sync`: `JwtVerifier::verify_sync`.
//! - `rmcp_authz_async`: the `Verifier::verify` future, polled once with a no-op waker (it
//!   never waits without a remote JWK Set), so no runtime cost is counted.
//!
//! The `cache` group measures a `CachedVerifier` hit (the token is already cached) next to
//! a `HashMap<String, Principal>` lookup of the token string, and the cost of a miss that
//! verifies an HS256 token and inserts it.
//!
//! At the end the run prints, per algorithm, "ratio vs jsonwebtoken" from criterion's
//! median estimates of this run, and from a short interleaved timing loop (which is less
//! sensitive to other work on the machine).
//!
//! Run with:
//!
//! ```text
//! cargo bench -p rmcp-authz --features cache --bench verify
//! cargo bench -p rmcp-authz --features cache --bench verify -- HS256   # one group
//! ```

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair};
use aws_lc_rs::{hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::median;
use criterion::{BatchSize, Criterion};
use rmcp_authz::Principal;
use rmcp_authz::token::{Algorithm, CacheOptions, CachedVerifier, JwtVerifier, Verifier};
use serde::Deserialize;
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
const LEEWAY_SECS: u64 = 30;

/// How a key signs: the aws-lc-rs key pair, or the HMAC secret.
#[allow(clippy::large_enum_variant)] // six keys, made once
enum Signer {
    Rsa(rsa::KeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    Hmac(hmac::Key),
}

impl Signer {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rsa(pair, encoding) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(*encoding, &rng, message, &mut out).unwrap();
                out
            }
            Signer::Ecdsa(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Signer::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
        }
    }
}

/// One algorithm's key, as a signer and as a public JWK.
struct Case {
    alg: Algorithm,
    jwt_alg: jsonwebtoken::Algorithm,
    signer: Signer,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_case(
    alg: Algorithm,
    jwt_alg: jsonwebtoken::Algorithm,
    encoding: &'static dyn sig::RsaEncoding,
) -> Case {
    let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).unwrap();
    let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
    Case {
        alg,
        jwt_alg,
        signer: Signer::Rsa(pair, encoding),
        jwk,
    }
}

fn ec_case(
    alg: Algorithm,
    jwt_alg: jsonwebtoken::Algorithm,
    signing: &'static sig::EcdsaSigningAlgorithm,
    crv: &str,
) -> Case {
    let pair = sig::EcdsaKeyPair::generate(signing).unwrap();
    let point = pair.public_key().as_ref();
    let size = (point.len() - 1) / 2;
    let jwk = json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=size]),
                     "y": b64(&point[1 + size..])});
    Case {
        alg,
        jwt_alg,
        signer: Signer::Ecdsa(pair),
        jwk,
    }
}

fn cases() -> Vec<Case> {
    let ed = sig::Ed25519KeyPair::generate().unwrap();
    let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())});
    let secret = [0x5au8; 32];
    let mut cases = vec![
        rsa_case(
            Algorithm::RS256,
            jsonwebtoken::Algorithm::RS256,
            &sig::RSA_PKCS1_SHA256,
        ),
        rsa_case(
            Algorithm::PS256,
            jsonwebtoken::Algorithm::PS256,
            &sig::RSA_PSS_SHA256,
        ),
        ec_case(
            Algorithm::ES256,
            jsonwebtoken::Algorithm::ES256,
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
        ),
        ec_case(
            Algorithm::ES384,
            jsonwebtoken::Algorithm::ES384,
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
        ),
        Case {
            alg: Algorithm::EdDSA,
            jwt_alg: jsonwebtoken::Algorithm::EdDSA,
            signer: Signer::Ed25519(ed),
            jwk: ed_jwk,
        },
        Case {
            alg: Algorithm::HS256,
            jwt_alg: jsonwebtoken::Algorithm::HS256,
            signer: Signer::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &secret)),
            jwk: json!({"kty": "oct", "k": b64(&secret)}),
        },
    ];
    for case in &mut cases {
        let jwk = case.jwk.as_object_mut().unwrap();
        jwk.insert("alg".into(), case.alg.as_str().into());
        jwk.insert("kid".into(), format!("bench-{}", case.alg).into());
        jwk.insert("use".into(), "sig".into());
    }
    cases
}

fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// A token as an MCP agent presents it: a user, a client, five scopes, one actor.
fn mint(case: &Case, jti: &str) -> String {
    let header = json!({"alg": case.alg.as_str(), "typ": "at+jwt", "kid": case.jwk["kid"]});
    let iat = now();
    let claims = json!({
        "iss": ISSUER,
        "sub": "user-4f1c9e2a-7b3d-4c8e-9a51-2d6f0b8e3c71",
        "aud": AUDIENCE,
        "exp": iat + 3600,
        "iat": iat,
        "nbf": iat,
        "scope": "notes:read notes:write calendar:read files:read search:query",
        "client_id": "research-agent-0d3e8f",
        "jti": jti,
        "act": {"sub": "planner-agent", "iss": ISSUER, "client_id": "planner-7c21"},
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = case.signer.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn our_verifier(case: &Case) -> JwtVerifier {
    let jwks = json!({ "keys": [case.jwk] }).to_string();
    JwtVerifier::builder(ISSUER, AUDIENCE)
        .jwks_json(&jwks)
        .algorithms([case.alg])
        .leeway(Duration::from_secs(LEEWAY_SECS))
        .build()
        .unwrap()
}

fn jwt_key(case: &Case) -> jsonwebtoken::DecodingKey {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(case.jwk.clone()).unwrap();
    jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap()
}

fn jwt_validation(case: &Case) -> jsonwebtoken::Validation {
    let mut validation = jsonwebtoken::Validation::new(case.jwt_alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    validation
}

/// The token's claims as a typed struct (the `jsonwebtoken_struct` reference).
#[derive(Deserialize)]
#[allow(dead_code)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    scope: String,
    client_id: String,
    jti: String,
    act: Option<Value>,
}

/// Drives a future that never waits to completion, without a runtime.
fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

/// Nanoseconds per call of `f`: the best of a few interleaved rounds.
fn best_ns_per_call(rounds: &mut [&mut dyn FnMut()], iterations: u32) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; rounds.len()];
    for _ in 0..7 {
        for (f, best) in rounds.iter_mut().zip(&mut best) {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
            *best = best.min(ns);
        }
    }
    best
}

struct Prepared {
    case: Case,
    token: String,
    ours: JwtVerifier,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

fn bench_algorithm(c: &mut Criterion, p: &Prepared) {
    // Both sides must accept the token before anything is timed.
    let principal = p.ours.verify_sync(&p.token).unwrap();
    assert_eq!(principal.scopes().len(), 5);
    jsonwebtoken::decode::<Value>(&p.token, &p.key, &p.validation).unwrap();

    let mut group = c.benchmark_group(p.case.alg.as_str());
    group.bench_function("jsonwebtoken_value", |b| {
        b.iter(|| jsonwebtoken::decode::<Value>(black_box(&p.token), &p.key, &p.validation))
    });
    group.bench_function("jsonwebtoken_struct", |b| {
        b.iter(|| jsonwebtoken::decode::<AccessClaims>(black_box(&p.token), &p.key, &p.validation))
    });
    group.bench_function("rmcp_authz_sync", |b| {
        b.iter(|| p.ours.verify_sync(black_box(&p.token)))
    });
    group.bench_function("rmcp_authz_async", |b| {
        b.iter(|| now_or_never(p.ours.verify(black_box(&p.token))))
    });
    group.finish();
}

fn bench_cache(c: &mut Criterion, hs256: &Prepared) {
    let cache = CachedVerifier::new(our_verifier(&hs256.case), CacheOptions::default());
    let token = &hs256.token;
    now_or_never(cache.verify(token)).unwrap();
    let mut map: HashMap<String, Principal> = HashMap::new();
    map.insert(token.clone(), hs256.ours.verify_sync(token).unwrap());

    let mut group = c.benchmark_group("cache");
    group.bench_function("hit", |b| {
        b.iter(|| now_or_never(cache.verify(black_box(token))))
    });
    group.bench_function("hashmap_baseline", |b| {
        b.iter(|| map.get(black_box(token.as_str())).cloned())
    });
    let counter = AtomicU64::new(0);
    group.bench_function("miss_and_insert_hs256", |b| {
        b.iter_batched(
            || {
                mint(
                    &hs256.case,
                    &format!("miss-{}", counter.fetch_add(1, Ordering::Relaxed)),
                )
            },
            |fresh| now_or_never(cache.verify(&fresh)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    assert!(cache.stats().hits > 0);
}

/// Ours and jsonwebtoken's best time per call over a few alternating rounds, and their
/// ratio.
fn interleaved_ratio(p: &Prepared) -> String {
    let iterations = if p.case.alg == Algorithm::HS256 {
        20_000
    } else {
        500
    };
    let best = best_ns_per_call(
        &mut [
            &mut || {
                black_box(p.ours.verify_sync(black_box(&p.token)).unwrap());
            },
            &mut || {
                black_box(
                    jsonwebtoken::decode::<Value>(black_box(&p.token), &p.key, &p.validation)
                        .unwrap(),
                );
            },
        ],
        iterations,
    );
    format_ratio(Some(best[0]), Some(best[1]))
}

fn format_ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) => format!("{:>9.0} ns {:>9.0} ns  {:.3}x", o, t, o / t),
        _ => format!("{:>35}", "(not measured in this run)"),
    }
}

/// Whether criterion only profiles or tests this run (then nothing is compared).
fn only_profiling_or_testing() -> bool {
    std::env::args().any(|a| matches!(a.as_str(), "--test" | "--list" | "--profile-time"))
}

fn main() {
    let started = SystemTime::now();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let comparing = !only_profiling_or_testing();

    let prepared: Vec<Prepared> = cases()
        .into_iter()
        .map(|case| Prepared {
            token: mint(&case, "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"),
            ours: our_verifier(&case),
            key: jwt_key(&case),
            validation: jwt_validation(&case),
            case,
        })
        .collect();
    let mut rows = Vec::new();
    for p in &prepared {
        bench_algorithm(&mut criterion, p);
        let group = p.case.alg.as_str();
        let ours = median(&format!("{group}/rmcp_authz_sync"), started);
        let theirs = median(&format!("{group}/jsonwebtoken_value"), started);
        // Only for the groups criterion ran (a filter may have skipped this one), right
        // after them, so both figures see the same machine.
        if comparing && ours.is_some() {
            rows.push(format!(
                "{group:<6} {}   {}",
                format_ratio(ours, theirs),
                interleaved_ratio(p)
            ));
        }
    }
    let hs256 = prepared
        .iter()
        .find(|p| p.case.alg == Algorithm::HS256)
        .unwrap();
    bench_cache(&mut criterion, hs256);
    criterion.final_summary();
    if !comparing {
        return;
    }

    println!("\nratio vs jsonwebtoken: rmcp_authz_sync / jsonwebtoken_value");
    println!(
        "{:<6} {:>35}   {:>35}",
        "alg", "criterion medians: ours, theirs", "interleaved loop: ours, theirs"
    );
    for row in rows {
        println!("{row}");
    }
    let hit = median("cache/hit", started);
    let baseline = median("cache/hashmap_baseline", started);
    if let (Some(hit), Some(baseline)) = (hit, baseline) {
        println!("cache hit: {hit:.0} ns (HashMap<String, Principal> lookup: {baseline:.0} ns)");
    }
}
