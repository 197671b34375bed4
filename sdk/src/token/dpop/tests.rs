use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;

const NOW: i64 = 1_765_000_000;
const URL: &str = "https://mcp.example.com/mcp";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

struct Agent {
    key: EcdsaKeyPair,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Agent {
    fn new() -> Agent {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref();
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Agent { key, jwk }
    }

    /// A compact JWS of `header` and `claims`, signed with this agent's key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    fn claims(&self, jti: &str) -> Value {
        let ath =
            b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, TOKEN.as_bytes()).as_ref());
        json!({"jti": jti, "htm": "POST", "htu": URL, "iat": NOW, "ath": ath})
    }

    fn proof(&self, jti: &str) -> String {
        self.sign(&self.header(), &self.claims(jti))
    }
}

fn verifier() -> DpopVerifier {
    DpopVerifier::new(DpopOptions::default().clock(Arc::new(ManualClock::new(NOW))))
}

#[test]
fn a_fresh_proof_passes_once_and_names_its_key() {
    let agent = Agent::new();
    let v = verifier();
    let proof = v
        .check(&agent.proof("a"), "POST", URL, Some(TOKEN))
        .unwrap();
    assert_eq!(proof.alg, Algorithm::ES256);
    assert_eq!(
        *proof.jkt,
        *jwk_thumbprint(agent.jwk.as_object().unwrap()).unwrap()
    );
    assert_eq!(
        v.check(&agent.proof("a"), "POST", URL, Some(TOKEN)),
        Err(DpopError::Replayed)
    );
    // Another jti is another proof; the same jti from another key is too.
    assert!(v.check(&agent.proof("b"), "POST", URL, Some(TOKEN)).is_ok());
    assert!(
        v.check(&Agent::new().proof("a"), "POST", URL, Some(TOKEN))
            .is_ok()
    );
}

#[test]
fn the_rfc_7638_example_thumbprint() {
    // RFC 7638 section 3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(jwk.as_object().unwrap()).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn every_check_refuses_what_it_should() {
    let agent = Agent::new();
    let v = verifier();
    let with = |header: Value, claims: Value| agent.sign(&header, &claims);
    let mut n = 0;
    let mut jti = || {
        n += 1;
        format!("j{n}")
    };
    let check = |proof: &str| v.check(proof, "POST", URL, Some(TOKEN));

    let mut h = agent.header();
    h["typ"] = json!("JWT");
    assert_eq!(check(&with(h, agent.claims(&jti()))), Err(DpopError::Type));
    for alg in ["none", "HS256", "ES512"] {
        let mut h = agent.header();
        h["alg"] = json!(alg);
        assert!(
            matches!(
                check(&with(h, agent.claims(&jti()))),
                Err(DpopError::Algorithm(_))
            ),
            "{alg}"
        );
    }
    let mut h = agent.header();
    h["jwk"]["d"] = json!("c2VjcmV0");
    assert!(matches!(
        check(&with(h, agent.claims(&jti()))),
        Err(DpopError::Key(_))
    ));
    let mut h = agent.header();
    h.as_object_mut().unwrap().remove("jwk");
    assert!(matches!(
        check(&with(h, agent.claims(&jti()))),
        Err(DpopError::Key(_))
    ));
    // Signed by another key than the jwk names.
    let other = Agent::new();
    assert_eq!(
        check(&other.sign(&agent.header(), &agent.claims(&jti()))),
        Err(DpopError::Signature)
    );
    let mut c = agent.claims(&jti());
    c["htm"] = json!("GET");
    assert!(matches!(
        check(&with(agent.header(), c)),
        Err(DpopError::Method { .. })
    ));
    let mut c = agent.claims(&jti());
    c["htu"] = json!("https://mcp.example.com/other");
    assert!(matches!(
        check(&with(agent.header(), c)),
        Err(DpopError::Url { .. })
    ));
    for iat in [NOW - 61, NOW + 61] {
        let mut c = agent.claims(&jti());
        c["iat"] = json!(iat);
        assert_eq!(
            check(&with(agent.header(), c)),
            Err(DpopError::Time { iat, now: NOW })
        );
    }
    let mut c = agent.claims(&jti());
    c["ath"] = json!("not-the-hash");
    assert_eq!(
        check(&with(agent.header(), c)),
        Err(DpopError::AccessTokenHash)
    );
    let mut c = agent.claims(&jti());
    c.as_object_mut().unwrap().remove("ath");
    assert_eq!(
        check(&with(agent.header(), c)),
        Err(DpopError::AccessTokenHash)
    );
    let mut c = agent.claims(&jti());
    c.as_object_mut().unwrap().remove("jti");
    assert!(matches!(
        check(&with(agent.header(), c)),
        Err(DpopError::Malformed(_))
    ));
    assert!(matches!(check("two.parts"), Err(DpopError::Malformed(_))));
    assert!(matches!(
        check(&"a".repeat(MAX_PROOF_BYTES + 1)),
        Err(DpopError::Malformed(_))
    ));
    // At a token endpoint there is no access token, and no ath to check.
    let mut c = agent.claims(&jti());
    c.as_object_mut().unwrap().remove("ath");
    assert!(v.check(&with(agent.header(), c), "POST", URL, None).is_ok());
}

#[test]
fn htu_is_compared_as_the_rfc_says() {
    let agent = Agent::new();
    let v = verifier();
    for (i, htu) in [
        "HTTPS://MCP.Example.com:443/mcp",
        "https://mcp.example.com/mcp?x=1#f",
    ]
    .iter()
    .enumerate()
    {
        let mut c = agent.claims(&format!("u{i}"));
        c["htu"] = json!(htu);
        assert!(
            v.check(&agent.sign(&agent.header(), &c), "POST", URL, Some(TOKEN))
                .is_ok(),
            "{htu}"
        );
    }
    assert_eq!(normalize_htu("http://a.example:80"), "http://a.example/");
    assert_eq!(
        normalize_htu("https://a.example:8443/x?q"),
        "https://a.example:8443/x"
    );
    // The path keeps its case.
    assert_ne!(
        normalize_htu("https://a.example/MCP"),
        normalize_htu("https://a.example/mcp")
    );
}

#[test]
fn a_token_is_bound_only_to_the_key_its_cnf_names() {
    let agent = Agent::new();
    let proof = verifier()
        .check(&agent.proof("b"), "POST", URL, Some(TOKEN))
        .unwrap();
    let principal = |cnf: Value| {
        let mut claims = serde_json::Map::new();
        claims.insert("cnf".to_owned(), cnf);
        Principal::builder("https://as", NOW + 600)
            .subject("alice")
            .claims(claims)
            .build()
            .unwrap()
    };
    assert_eq!(
        access_token_binding(&principal(json!({"jkt": proof.jkt})), &proof),
        Ok(())
    );
    assert_eq!(
        access_token_binding(&principal(json!({"jkt": "other"})), &proof),
        Err(DpopError::Binding)
    );
    assert_eq!(
        access_token_binding(&principal(json!({})), &proof),
        Err(DpopError::Binding)
    );
}

#[test]
fn nonces_are_required_when_set_and_expire_with_their_lifetime() {
    let agent = Agent::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let options = DpopOptions::default()
        .clock(clock.clone())
        .require_nonce(Duration::from_secs(30));
    let v = DpopVerifier::new(options.clone());
    assert!(v.requires_nonce());
    let with_nonce = |jti: &str, nonce: &str| {
        let mut claims = agent.claims(jti);
        claims["nonce"] = nonce.into();
        agent.sign(&agent.header(), &claims)
    };
    // None, or one this verifier never issued: use_dpop_nonce (and the jti is not spent).
    let check = |proof: &str| v.check(proof, "POST", URL, Some(TOKEN));
    assert_eq!(check(&agent.proof("n1")), Err(DpopError::UseNonce));
    assert_eq!(
        check(&with_nonce("n2", "bm9uY2U")),
        Err(DpopError::UseNonce)
    );
    let other = DpopVerifier::new(options.clone()).nonce().unwrap();
    assert_eq!(check(&with_nonce("n3", &other)), Err(DpopError::UseNonce));
    assert_eq!(DpopError::UseNonce.error_code(), "use_dpop_nonce");
    // Its own nonce passes, within the lifetime.
    let nonce = v.nonce().unwrap();
    assert!(check(&with_nonce("n1", &nonce)).is_ok());
    clock.advance(Duration::from_secs(31));
    // The proof's iat is now 31 s old (inside the 60 s window), but the nonce is stale.
    assert_eq!(check(&with_nonce("n4", &nonce)), Err(DpopError::UseNonce));
    // A shared secret makes replicas' nonces interchangeable.
    let shared = options.clone().nonce_secret([7; 32]);
    let (a, b) = (DpopVerifier::new(shared.clone()), DpopVerifier::new(shared));
    let mut claims = agent.claims("n5");
    claims["iat"] = (NOW + 31).into();
    claims["nonce"] = a.nonce().unwrap().into();
    assert!(
        b.check(
            &agent.sign(&agent.header(), &claims),
            "POST",
            URL,
            Some(TOKEN)
        )
        .is_ok()
    );
    // Without nonces required, there is none to give.
    assert_eq!(verifier().nonce(), None);
}

#[test]
fn a_token_hashed_once_is_matched_only_by_itself() {
    let agent = Agent::new();
    let v = verifier();
    // The first proof hashes the token; the next takes it from the cache.
    for jti in ["t1", "t2"] {
        assert!(v.check(&agent.proof(jti), "POST", URL, Some(TOKEN)).is_ok());
    }
    assert_eq!(v.tokens.len(), 1);
    // Another token under the same `ath` is hashed, and refused.
    let other = format!("{TOKEN}x");
    assert_eq!(
        v.check(&agent.proof("t3"), "POST", URL, Some(&other)),
        Err(DpopError::AccessTokenHash)
    );
    // The same token under another `ath` (a prefix of the right one) is refused too.
    let mut claims = agent.claims("t4");
    let ath = claims["ath"].as_str().unwrap().to_owned();
    claims["ath"] = json!(ath[..ath.len() - 1]);
    assert_eq!(
        v.check(
            &agent.sign(&agent.header(), &claims),
            "POST",
            URL,
            Some(TOKEN)
        ),
        Err(DpopError::AccessTokenHash)
    );
    assert_eq!(v.tokens.len(), 1);
    // A token over 8 KiB passes, hashed each time, and is not kept.
    let long = "t".repeat(MAX_CACHED_TOKEN_BYTES + 1);
    let mut claims = agent.claims("t5");
    claims["ath"] = json!(b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        long.as_bytes()
    )
    .as_ref()));
    let proof = agent.sign(&agent.header(), &claims);
    assert!(v.check(&proof, "POST", URL, Some(&long)).is_ok());
    assert_eq!(v.tokens.len(), 1);
}

#[test]
fn a_replay_id_is_the_same_hash_for_a_short_or_a_long_jti() {
    let thumbprint = [9_u8; 32];
    for jti in ["", "j", &"x".repeat(96), &"y".repeat(97), &"z".repeat(4000)] {
        let mut input = thumbprint.to_vec();
        input.extend_from_slice(jti.as_bytes());
        let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        assert_eq!(
            replay_id(&thumbprint, jti),
            expected.as_ref(),
            "{}",
            jti.len()
        );
    }
}
