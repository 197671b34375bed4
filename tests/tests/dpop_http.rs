//! DPoP (RFC 9449) over HTTP, from outside: the notes server behind `rmcp-authz` on
//! 127.0.0.1 with DPoP accepted (or required), and requests made by an independent
//! implementation (tests/clients/dpop_http.py: PyJWT and `cryptography` mint the access
//! tokens, bound or not, and the proofs) sent by a raw HTTP client. Each request is answered
//! with the status, challenge scheme and error RFC 9449 and RFC 6750 call for; the
//! metadata says what the server accepts; a cached token verification never stands in for
//! the proof.

use rmcp_authz::dev::DevIssuer;
use rmcp_authz::token::dpop::{DpopOptions, DpopVerifier};
use rmcp_authz::token::{CacheOptions, CachedVerifier};
use rmcp_authz::{Authz, AuthzBuilder};
use rmcp_authz_tests::http::{Raw, call_body, challenge, http, post_to, send};
use rmcp_authz_tests::notes::{http_app, notes_policy};
use rmcp_authz_tests::server::TestServer;
use serde_json::Value;

/// The requests `dpop_http.py` makes for the endpoint `url`, and its issuer's key.
fn corpus(url: &str) -> Value {
    rmcp_authz_tests::python_corpus("dpop_http.py", &[url])
}

/// A notes server trusting the Python issuer, configured by `configure`, and the corpus of
/// requests made for it.
async fn server(configure: impl FnOnce(AuthzBuilder) -> AuthzBuilder) -> (TestServer, Value) {
    let (listener, url) = TestServer::bind().await;
    let corpus = corpus(&url);
    let issuer = DevIssuer::from_pkcs8_pem(
        corpus["issuer"].as_str().unwrap(),
        corpus["issuer_key_pem"].as_str().unwrap(),
    )
    .expect("the Python issuer's key loads");
    let server = TestServer::serve_on(listener, issuer, notes_policy(), configure, |authz| {
        http_app(authz, authz.http_config()).expect("the notes app")
    });
    (server, corpus)
}

/// `case`'s request: a `tools/call` of `list_notes` with the case's headers, in order
/// (two `DPoP` headers stay two).
async fn send_case(url: &str, case: &Value) -> Raw {
    let mut request = post_to(url, call_body(1, "list_notes").to_string());
    for pair in case["headers"].as_array().unwrap() {
        request = request.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    send(request).await
}

/// The server's Protected Resource Metadata.
async fn metadata(server: &TestServer) -> Value {
    http()
        .get(rmcp_authz_tests::http::metadata_url(server))
        .send()
        .await
        .expect("the metadata is served")
        .json()
        .await
        .expect("the metadata is JSON")
}

/// Every `WWW-Authenticate` challenge of `raw`, parsed, in order.
fn challenges(raw: &Raw) -> Vec<rmcp_authz_tests::http::Challenge> {
    raw.headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| challenge(v.to_str().expect("ASCII")))
        .collect()
}

/// What is wrong with `raw` as the answer to `case`, if anything.
fn mismatch(case: &Value, raw: &Raw, dpop_beside_bearer: bool) -> Option<String> {
    let name = case["name"].as_str().unwrap();
    let status = case["status"].as_u64().unwrap();
    if u64::from(raw.status) != status {
        return Some(format!(
            "{name}: status {} (expected {status}): {}",
            raw.status, raw.body
        ));
    }
    if status == 200 {
        let result = &raw.message()["result"];
        return (result["isError"] == true || result.is_null())
            .then(|| format!("{name}: the call did not run: {}", raw.body));
    }
    let found = challenges(raw);
    let Some(first) = found.first() else {
        return Some(format!("{name}: no challenge"));
    };
    let scheme = case["scheme"].as_str().unwrap();
    if !first.scheme.eq_ignore_ascii_case(scheme) {
        return Some(format!(
            "{name}: challenge scheme {} (expected {scheme})",
            first.scheme
        ));
    }
    let error = case["error"].as_str().unwrap();
    if first.param("error") != Some(error) {
        return Some(format!(
            "{name}: error {:?} (expected {error})",
            first.param("error")
        ));
    }
    if first.scheme == "DPoP" && first.param("algs").is_none() {
        return Some(format!("{name}: a DPoP challenge without algs"));
    }
    // Where both schemes are accepted, a Bearer 401 names DPoP too (RFC 9449 section 7.2).
    if first.scheme == "Bearer" && dpop_beside_bearer {
        let dpop = found.get(1).filter(|c| c.scheme == "DPoP");
        if dpop.and_then(|c| c.param("algs")).is_none() {
            return Some(format!(
                "{name}: no DPoP challenge beside Bearer: {found:?}"
            ));
        }
    }
    None
}

#[tokio::test]
async fn requests_made_by_pyjwt_are_answered_as_rfc_9449_says() {
    let (server, corpus) = server(|b| b.dpop(DpopVerifier::new(DpopOptions::default()))).await;
    let cases = corpus["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let raw = send_case(&server.url, case).await;
        failures.extend(mismatch(case, &raw, true));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("dpop over HTTP: {} PyJWT requests answered", cases.len());

    // The metadata says DPoP is accepted, not required, and with which algorithms.
    let metadata = metadata(&server).await;
    assert_eq!(metadata["dpop_bound_access_tokens_required"], false);
    let algs = metadata["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&"ES256".into()) && !algs.contains(&"HS256".into()));
}

#[tokio::test]
async fn a_server_that_requires_dpop_refuses_bearer_tokens_and_asks_for_nonces() {
    let (server, corpus) = server(|b| {
        b.dpop(DpopVerifier::new(
            DpopOptions::default().require_nonce(std::time::Duration::from_secs(60)),
        ))
        .require_dpop()
    })
    .await;
    let case = |name: &str| {
        corpus["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case {name:?}"))
            .clone()
    };
    // A bearer token, bound or not, is answered with DPoP alone.
    for name in ["an unbound token as Bearer", "a bound token sent as Bearer"] {
        let raw = send_case(&server.url, &case(name)).await;
        assert_eq!(raw.status, 401, "{name}: {}", raw.body);
        let found = challenges(&raw);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(found[0].scheme, "DPoP", "{name}: {found:?}");
        assert_eq!(found[0].param("error"), Some("invalid_token"));
        assert!(found[0].param("algs").unwrap().contains("ES256"));
    }
    // A good proof without this server's nonce: use_dpop_nonce, and a nonce to use.
    for name in [
        "a bound token with a fresh proof",
        "a nonce this server never issued",
    ] {
        let raw = send_case(&server.url, &case(name)).await;
        assert_eq!(raw.status, 401, "{name}: {}", raw.body);
        let found = challenges(&raw);
        assert_eq!(found[0].scheme, "DPoP");
        assert_eq!(found[0].param("error"), Some("use_dpop_nonce"), "{name}");
        let nonce = raw.header("dpop-nonce").expect("a DPoP-Nonce header");
        assert!(nonce.len() >= 22, "{nonce}");
    }
    assert_eq!(
        metadata(&server).await["dpop_bound_access_tokens_required"],
        true
    );
}

/// A token verification from the cache never stands in for the proof: the same bound token
/// is verified once, and every later request is still refused without a good proof of its
/// own.
#[tokio::test]
async fn a_cached_token_still_needs_a_proof_on_every_request() {
    let (listener, url) = TestServer::bind().await;
    let corpus = corpus(&url);
    let issuer = DevIssuer::from_pkcs8_pem(
        corpus["issuer"].as_str().unwrap(),
        corpus["issuer_key_pem"].as_str().unwrap(),
    )
    .unwrap();
    let verifier = CachedVerifier::new(
        issuer.verifier(url.clone()).build().unwrap(),
        CacheOptions::default(),
    );
    let authz = Authz::builder(verifier, notes_policy())
        .dpop(DpopVerifier::new(DpopOptions::default()))
        .build();
    let app = http_app(&authz, authz.http_config()).unwrap();
    let served = authz.clone();
    let task = tokio::spawn(async move {
        let _ = served.serve(listener, app, std::future::pending()).await;
    });
    let cases = corpus["cases"].as_array().unwrap();
    let find = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap();
    // The first request verifies the token (and caches it); the replay of its proof, and
    // the same token with bad proofs, are refused though the token is cached.
    for name in [
        "a bound token with its proof",
        "the same proof again (replayed jti)",
        "no proof header",
        "wrong ath",
        "a stolen bound token, proven with the thief's key",
        "a bound token with a fresh proof",
    ] {
        let raw = send_case(&url, find(name)).await;
        if let Some(problem) = mismatch(find(name), &raw, true) {
            panic!("{problem}");
        }
    }
    task.abort();
}
