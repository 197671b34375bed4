//! Fuzzes JWK Set loading: any input, as (lossy) UTF-8, is handed to
//! `KeySet::from_jwks_json` (and to `Key::from_jwk`, which parses one JWK the same way).
//! Loading must answer `Ok` or `Err`, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rmcp_authz::token::{Key, KeySet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match KeySet::from_jwks_json(&text) {
        Ok(keys) => {
            let _ = format!("{keys:?}");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
    match Key::from_jwk(&text) {
        Ok(key) => {
            let _ = format!("{key:?}");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
