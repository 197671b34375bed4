//! Google Wycheproof JSON Web Signature and JSON Web Key vectors
//! (tests/fixtures/wycheproof, Apache-2.0, see the LICENSE there).
//!
//! JWS vectors go through the signature path `JwtVerifier` takes ([`KeySet::verify_payload`]:
//! shape, base64url, the header read by its fast path or the general parser, algorithm
//! binding, key choice, signature); their payloads are not JWT claims, so the claim checks
//! are not involved. Each vector is also decided by [`KeySet::verify_jws`], which must
//! agree (the same payload or the same error). JWK vectors go through key loading
//! ([`KeySet::from_jwks_json`]) and then the same signature path. A vector counts as
//! rejected when its key is refused at load time or its signature is refused.
//!
//! Every vector marked invalid must be rejected, and every valid one accepted, except the
//! few listed below by tcId with the reason (see the fixture's NOTES.md); the list must be
//! exact, so a stale entry fails too.
//!
//! The vector files give some keys only as private JWKs. A verifier is given public keys,
//! and this crate refuses JWKs with private members, so the test keeps the public members
//! of such keys (for `oct` keys the secret is the key).

use std::collections::BTreeMap;

use rmcp_authz::token::{Algorithm, Key, KeySet};
use rmcp_authz_tests::read_fixture;
use serde_json::{Map, Value};

/// Valid-labelled JWS vectors this crate rejects, with the reason.
const VALID_BUT_REJECTED: &[(u64, &str)] = &[
    (
        346,
        "RFC 7520 figure 20: the JWK is bound to PS256 but the header says PS384 (one key, one algorithm, RFC 8725 3.1)",
    ),
    (
        350,
        "RFC 7520 figure 20 with key_ops: the JWK is bound to PS256 but the header says PS384",
    ),
    (
        347,
        "ES512 (P-521) is not supported: the key is refused when loaded",
    ),
    (
        351,
        "ES512 (P-521) is not supported: the key is refused when loaded",
    ),
    (
        372,
        "a '?' inside the base64url header is not base64url (RFC 7515 section 2); rejecting is the safe side",
    ),
    (
        373,
        "a '?' inside the base64url payload is not base64url (RFC 7515 section 2); rejecting is the safe side",
    ),
];

/// Invalid-labelled JWS vectors this crate accepts: their `jws` is byte-identical to a
/// valid vector, which the test checks.
const INVALID_BUT_IDENTICAL_TO_VALID: &[(u64, u64)] = &[(367, 357), (370, 357)];

#[derive(Default)]
struct Tally {
    ran: usize,
    valid_accepted: usize,
    invalid_rejected: usize,
    rejected_at_load: usize,
    invalid_accepted: usize,
    load_errors: BTreeMap<String, String>,
    disagreements: Vec<String>,
    listed_seen: Vec<u64>,
}

/// The public form of a JWK: private members dropped (not for `oct`, whose `k` is the key).
fn public_jwk(jwk: &Value) -> Value {
    let mut obj: Map<String, Value> = jwk.as_object().expect("a JWK object").clone();
    if obj.get("kty").and_then(Value::as_str) != Some("oct") {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
            obj.remove(member);
        }
    }
    Value::Object(obj)
}

fn load_file(name: &str) -> Value {
    serde_json::from_str(&read_fixture(&format!("wycheproof/{name}"))).expect("vector file parses")
}

fn tests_of(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().expect("tests array")
}

/// Runs one vector against a loaded key set (or a load error) and records the outcome.
fn decide(
    tally: &mut Tally,
    keys: &Result<KeySet, String>,
    test: &Value,
    jws_by_id: &BTreeMap<u64, String>,
) {
    let id = test["tcId"].as_u64().expect("tcId");
    let jws = test["jws"].as_str().expect("jws");
    let valid = test["result"] == "valid";
    let accepted = match keys {
        Ok(keys) => {
            let decided = keys.verify_payload(jws, &Algorithm::ALL);
            let general = keys
                .verify_jws(jws, &Algorithm::ALL)
                .map(|j| j.payload().to_vec());
            if decided != general {
                tally.disagreements.push(format!(
                    "tcId {id}: verify_payload says {decided:?}, verify_jws says {general:?}"
                ));
            }
            decided.is_ok()
        }
        Err(_) => {
            tally.rejected_at_load += 1;
            false
        }
    };
    tally.ran += 1;
    match (valid, accepted) {
        (true, true) => tally.valid_accepted += 1,
        (false, false) => tally.invalid_rejected += 1,
        (true, false) if VALID_BUT_REJECTED.iter().any(|(t, _)| *t == id) => {
            tally.listed_seen.push(id)
        }
        (false, true) => match INVALID_BUT_IDENTICAL_TO_VALID
            .iter()
            .find(|(t, _)| *t == id)
        {
            Some((_, twin)) if jws_by_id.get(twin).map(String::as_str) == Some(jws) => {
                tally.listed_seen.push(id)
            }
            _ => tally.disagreements.push(format!(
                "tcId {id} ({}) is invalid but was ACCEPTED",
                test["comment"]
            )),
        },
        (true, false) => tally.disagreements.push(format!(
            "tcId {id} ({}) is valid but was rejected: {}",
            test["comment"],
            match keys {
                Ok(keys) => keys
                    .verify_payload(jws, &Algorithm::ALL)
                    .unwrap_err()
                    .to_string(),
                Err(e) => format!("key refused: {e}"),
            }
        )),
    }
}

#[test]
fn wycheproof_jws_vectors() {
    let file = load_file("json_web_signature_test.json");
    let groups = file["testGroups"].as_array().expect("groups");
    let jws_by_id: BTreeMap<u64, String> = groups
        .iter()
        .flat_map(tests_of)
        .map(|t| {
            (
                t["tcId"].as_u64().unwrap(),
                t["jws"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut tally = Tally::default();
    for group in groups {
        let jwk = group.get("public").unwrap_or(&group["private"]);
        let keys = Key::from_jwk(&public_jwk(jwk).to_string())
            .map_err(|e| e.to_string())
            .and_then(|key| {
                let mut set = KeySet::new();
                set.insert(key).map_err(|e| e.to_string())?;
                Ok(set)
            });
        for test in tests_of(group) {
            decide(&mut tally, &keys, test, &jws_by_id);
        }
    }
    report("JWS", &tally, file["numberOfTests"].as_u64().unwrap());
    let mut expected_listed: Vec<u64> = VALID_BUT_REJECTED
        .iter()
        .map(|(t, _)| *t)
        .chain(INVALID_BUT_IDENTICAL_TO_VALID.iter().map(|(t, _)| *t))
        .collect();
    expected_listed.sort();
    tally.listed_seen.sort();
    assert!(
        tally.disagreements.is_empty(),
        "{}",
        tally.disagreements.join("\n")
    );
    assert_eq!(
        tally.listed_seen, expected_listed,
        "the listed exceptions must all occur"
    );
}

#[test]
fn wycheproof_jwk_vectors() {
    let file = load_file("json_web_key_test.json");
    let mut tally = Tally::default();
    for group in file["testGroups"].as_array().expect("groups") {
        let set = &group["private"];
        let public: Vec<Value> = set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(public_jwk)
            .collect();
        let doc = serde_json::json!({ "keys": public }).to_string();
        let keys = KeySet::from_jwks_json(&doc).map_err(|e| e.to_string());
        if let Err(e) = &keys {
            let first = tests_of(group)[0]["tcId"].as_u64().unwrap();
            tally.load_errors.insert(
                format!("{} (tcId {first})", group["comment"].as_str().unwrap()),
                e.clone(),
            );
        }
        for test in tests_of(group) {
            decide(&mut tally, &keys, test, &BTreeMap::new());
        }
    }
    report("JWK", &tally, file["numberOfTests"].as_u64().unwrap());
    assert!(
        tally.disagreements.is_empty(),
        "{}",
        tally.disagreements.join("\n")
    );
    assert!(
        tally.listed_seen.is_empty(),
        "no JWK vector is an exception"
    );
}

fn report(what: &str, tally: &Tally, declared: u64) {
    println!(
        "wycheproof {what}: {} vectors ran ({declared} in the file): {} valid accepted, {} invalid rejected ({} at key loading), {} invalid accepted, {} listed exceptions {:?}",
        tally.ran,
        tally.valid_accepted,
        tally.invalid_rejected,
        tally.rejected_at_load,
        tally.invalid_accepted,
        tally.listed_seen.len(),
        tally.listed_seen,
    );
    assert_eq!(tally.ran as u64, declared, "every vector in the file ran");
}
