//! Fuzzes JWT access-token verification: any input, as (lossy) UTF-8, is handed to
//! `JwtVerifier::verify_sync` of a verifier trusting the interop JWK Set (RSA, P-256,
//! P-384 and Ed25519 keys). The verifier must answer `Ok` or `Err`, never panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rmcp_authz::token::JwtVerifier;

const JWKS: &str = include_str!("../../tests/fixtures/interop/keys/jwks.json");
const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "https://mcp.example.test/mcp";

fn verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        JwtVerifier::builder(ISSUER, AUDIENCE)
            .jwks_json(JWKS)
            .build()
            .expect("the interop JWK Set loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    match verifier().verify_sync(&token) {
        Ok(principal) => {
            // Nothing the fuzzer makes is signed by these keys unless it kept a seed
            // token's signed bytes; render the principal so that path runs too.
            let _ = format!("{principal:?}");
        }
        Err(err) => {
            let _ = (
                err.to_string(),
                err.kind(),
                err.error_code(),
                err.description(),
            );
        }
    }
});
