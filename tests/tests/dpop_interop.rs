//! DPoP proofs (RFC 9449) made by an independent implementation, PyJWT with `cryptography`
//! (tests/clients/dpop_proofs.py, run in the venv `scripts/setup-interop.sh` makes), checked
//! by `token::dpop::DpopVerifier`: valid proofs for ES256, ES384, PS256, RS256 and EdDSA
//! (with the RFC 7638 thumbprint Python computed), and every kind of bad proof refused with
//! the error it calls for.

use std::sync::Arc;

use rmcp_authz::ManualClock;
use rmcp_authz::token::dpop::{DpopError, DpopOptions, DpopVerifier};

/// The name of what `result` is, as the corpus writes it.
fn kind(result: &Result<rmcp_authz::token::dpop::DpopProof, DpopError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(DpopError::Malformed(_)) => "malformed",
        Err(DpopError::Type) => "type",
        Err(DpopError::Algorithm(_)) => "algorithm",
        Err(DpopError::Key(_)) => "key",
        Err(DpopError::Signature) => "signature",
        Err(DpopError::Method { .. }) => "method",
        Err(DpopError::Url { .. }) => "url",
        Err(DpopError::Time { .. }) => "time",
        Err(DpopError::AccessTokenHash) => "ath",
        Err(DpopError::Replayed) => "replayed",
        Err(DpopError::Binding) => "binding",
        Err(_) => "other",
    }
}

#[test]
fn proofs_made_by_pyjwt_are_checked_as_rfc_9449_says() {
    let corpus = rmcp_authz_tests::python_corpus("dpop_proofs.py", &[]);
    let now = corpus["now"].as_i64().unwrap();
    let verifier = DpopVerifier::new(DpopOptions::default().clock(Arc::new(ManualClock::new(now))));
    let (url, method, token) = (
        corpus["url"].as_str().unwrap(),
        corpus["method"].as_str().unwrap(),
        corpus["access_token"].as_str().unwrap(),
    );
    let cases = corpus["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let result = verifier.check(case["proof"].as_str().unwrap(), method, url, Some(token));
        let expected = case["expect"].as_str().unwrap();
        if kind(&result) != expected {
            failures.push(format!("{name}: expected {expected}, got {result:?}"));
            continue;
        }
        if let (Ok(proof), Some(jkt)) = (&result, case["jkt"].as_str())
            && *proof.jkt != *jkt
        {
            failures.push(format!(
                "{name}: thumbprint {} but PyJWT's key hashes to {jkt}",
                proof.jkt
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("dpop interop: {} PyJWT proofs checked", cases.len());
}
