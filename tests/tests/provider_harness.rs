//! Tests of the test authorization server itself ([`rmcp_authz_tests::provider`]): a real
//! `oidc-provider` run by Node on 127.0.0.1, checked against today's static
//! [`JwtVerifier`] (keys given as JWKS text, no fetching).
//!
//! Needs `bash scripts/setup-interop.sh` first (it installs `oidc-provider`); without it
//! every test fails saying so.
//!
//! What these tests found in `oidc-provider` 9.13.3:
//! - RFC 8414 metadata exists: `/.well-known/oauth-authorization-server` answers 200 with
//!   the same document as `/.well-known/openid-configuration` (same `issuer`, `jwks_uri`,
//!   `token_endpoint`, `introspection_endpoint`).
//! - JWT access tokens cannot be introspected: the introspection endpoint refuses them with
//!   400 `unsupported_token_type` ("Structured JWT Tokens cannot be introspected via the
//!   introspection_endpoint"). Opaque access tokens (resource `urn:opaque-notes`) can, and
//!   come back `active: true` with `client_id`, `scope`, `aud`, `iss`, `exp`, `iat` but no
//!   `sub` (a client-credentials token has no end user; its JWT form uses the client id).
//! - A restart forgets opaque tokens (in-memory storage): after a rotation an old opaque
//!   token introspects as `active: false`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use rmcp_authz::token::{AuthErrorKind, JwtVerifier};
use rmcp_authz_tests::provider::{AGENT_ID, AGENT_SECRET, OPAQUE_RESOURCE, Provider, SCOPES};
use serde_json::Value;

const RESOURCE: &str = "http://127.0.0.1:9/mcp";
const OTHER_RESOURCE: &str = "http://127.0.0.1:10/other";

/// The decoded header and payload of a compact JWS.
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = |what: &str| -> Value {
        let text = parts
            .next()
            .unwrap_or_else(|| panic!("no {what} in {token}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .unwrap_or_else(|e| panic!("{what} is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what} is not JSON ({e})"))
    };
    let header = part("header");
    let payload = part("payload");
    (header, payload)
}

fn kids(jwks: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(jwks).expect("JWKS is JSON");
    doc["keys"]
        .as_array()
        .expect("JWKS has keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("every key has a kid").to_owned())
        .collect()
}

fn verifier(provider: &Provider, jwks: &str, audience: &str) -> JwtVerifier {
    JwtVerifier::builder(provider.issuer(), audience)
        .jwks_json(jwks)
        .build()
        .expect("a verifier from the provider's JWKS")
}

#[tokio::test]
async fn discovery_names_the_issuer_and_its_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path()).await;
    let issuer = provider.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert!(!issuer.ends_with('/'), "{issuer}");

    let (status, body) = provider
        .get(&format!("{issuer}/.well-known/openid-configuration"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let oidc: Value = serde_json::from_str(&body).expect("discovery is JSON");
    assert_eq!(oidc["issuer"], issuer);
    let jwks_uri = oidc["jwks_uri"].as_str().expect("a jwks_uri");
    assert!(jwks_uri.starts_with(issuer), "{jwks_uri}");
    assert_eq!(jwks_uri, provider.jwks_uri());
    assert!(
        oidc["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "client_credentials")),
        "{oidc}"
    );
    assert_eq!(
        oidc["introspection_endpoint"].as_str(),
        Some(provider.introspection_endpoint())
    );

    // The JWKS endpoint publishes public keys only: an ES256 key first, then RS256.
    let jwks: Value = serde_json::from_str(&provider.jwks().await).expect("JWKS is JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{jwks}");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[1]["alg"], "RS256");
    for key in keys {
        assert!(key.get("d").is_none(), "a private key is published: {key}");
    }

    // RFC 8414 authorization server metadata: oidc-provider serves it too, with the same
    // content as the OpenID document.
    let (status, body) = provider
        .get(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let oauth: Value = serde_json::from_str(&body).expect("RFC 8414 metadata is JSON");
    for field in [
        "issuer",
        "jwks_uri",
        "token_endpoint",
        "introspection_endpoint",
    ] {
        assert_eq!(oauth[field], oidc[field], "{field}");
    }
}

#[tokio::test]
async fn a_client_credentials_token_verifies_with_the_static_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path()).await;
    let response = provider.token_response(RESOURCE, "notes:read").await;
    assert_eq!(response["token_type"], "Bearer", "{response}");
    assert_eq!(response["scope"], "notes:read", "{response}");
    assert_eq!(response["expires_in"], 3600, "{response}");
    let token = response["access_token"].as_str().expect("an access token");

    let (header, claims) = decode(token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    let jwks = provider.jwks().await;
    assert_eq!(header["kid"].as_str(), Some(kids(&jwks)[0].as_str()));
    assert_eq!(claims["iss"], provider.issuer(), "{claims}");
    assert_eq!(claims["aud"], RESOURCE, "{claims}");
    assert_eq!(claims["sub"], AGENT_ID, "{claims}");
    assert_eq!(claims["client_id"], AGENT_ID, "{claims}");
    assert_eq!(claims["scope"], "notes:read", "{claims}");
    assert!(claims["jti"].is_string(), "{claims}");
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(3600), "{claims}");

    let who = verifier(&provider, &jwks, RESOURCE)
        .verify_sync(token)
        .expect("the provider's token verifies");
    assert_eq!(who.issuer(), provider.issuer());
    assert_eq!(who.subject(), Some(AGENT_ID));
    assert_eq!(who.client_id(), Some(AGENT_ID));
    assert_eq!(who.scopes(), ["notes:read"]);
    assert!(who.has_scope("notes:read"));
    assert!(!who.has_scope("notes:write"));
    assert_eq!(who.audiences(), [RESOURCE]);

    // Every scope at once.
    let all = provider.token(RESOURCE, SCOPES).await;
    let who = verifier(&provider, &jwks, RESOURCE)
        .verify_sync(&all)
        .expect("verifies");
    assert_eq!(who.scopes(), SCOPES.split(' ').collect::<Vec<_>>());
}

#[tokio::test]
async fn a_token_for_another_resource_fails_the_audience_check() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path()).await;
    let jwks = provider.jwks().await;
    let other = provider.token(OTHER_RESOURCE, "notes:read").await;
    assert_eq!(decode(&other).1["aud"], OTHER_RESOURCE);

    let err = verifier(&provider, &jwks, RESOURCE)
        .verify_sync(&other)
        .expect_err("a token for another resource is refused");
    assert_eq!(err.kind(), AuthErrorKind::WrongAudience, "{err}");
    // ... and it is fine for its own resource.
    verifier(&provider, &jwks, OTHER_RESOURCE)
        .verify_sync(&other)
        .expect("verifies for its own audience");

    // The provider itself refuses resources outside 127.0.0.1 and `urn:`.
    let (status, body) = provider
        .token_request(Some("https://elsewhere.example/mcp"), Some("notes:read"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_target", "{body}");
}

#[tokio::test]
async fn the_provider_refuses_a_wrong_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path()).await;
    assert_ne!(AGENT_SECRET, "wrong");
    let response = reqwest::Client::new()
        .post(provider.token_endpoint())
        .basic_auth(AGENT_ID, Some("wrong"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&resource=http%3A%2F%2F127.0.0.1%3A9%2Fmcp")
        .send()
        .await
        .expect("the provider answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("an OAuth error");
    assert_eq!(body["error"], "invalid_client", "{body}");
}

#[tokio::test]
async fn rotation_publishes_the_new_key_first_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = Provider::start(dir.path()).await;
    let issuer = provider.issuer().to_owned();
    let before = provider.jwks().await;
    let old_kids = kids(&before);
    let old_token = provider.token(RESOURCE, "notes:read").await;
    assert_eq!(
        decode(&old_token).0["kid"].as_str(),
        Some(old_kids[0].as_str())
    );

    provider.rotate().await;
    assert_eq!(
        provider.issuer(),
        issuer,
        "rotation keeps the issuer (and port)"
    );

    let after = provider.jwks().await;
    let new_kids = kids(&after);
    assert_eq!(new_kids.len(), old_kids.len() + 1, "{after}");
    assert!(
        !old_kids.contains(&new_kids[0]),
        "a new kid first: {new_kids:?}"
    );
    assert_eq!(new_kids[1..], old_kids[..], "the old keys stay, in order");

    let new_token = provider.token(RESOURCE, "notes:read").await;
    let (header, _) = decode(&new_token);
    assert_eq!(header["kid"].as_str(), Some(new_kids[0].as_str()));
    assert_eq!(header["alg"], "ES256");

    let fresh = verifier(&provider, &after, RESOURCE);
    fresh
        .verify_sync(&new_token)
        .expect("the new token verifies");
    let who = fresh
        .verify_sync(&old_token)
        .expect("a token signed before the rotation still verifies");
    assert_eq!(who.client_id(), Some(AGENT_ID));
    // Keys fetched before the rotation do not know the new kid.
    let stale = verifier(&provider, &before, RESOURCE);
    let err = stale
        .verify_sync(&new_token)
        .expect_err("the old JWKS lacks the new key");
    assert_eq!(err.kind(), AuthErrorKind::UnknownKey, "{err}");

    // Rotating again adds one more key in front.
    provider.rotate().await;
    let again = kids(&provider.jwks().await);
    assert_eq!(again.len(), new_kids.len() + 1);
    assert_eq!(again[1..], new_kids[..]);
}

#[tokio::test]
async fn introspection_answers_for_opaque_tokens_and_refuses_jwts() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = Provider::start(dir.path()).await;

    let opaque = provider
        .token(OPAQUE_RESOURCE, "notes:read notes:write")
        .await;
    assert_eq!(opaque.split('.').count(), 1, "an opaque token: {opaque}");
    let (status, body) = provider.introspect(&opaque).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["client_id"], AGENT_ID, "{body}");
    assert_eq!(body["scope"], "notes:read notes:write", "{body}");
    assert_eq!(body["aud"], OPAQUE_RESOURCE, "{body}");
    assert_eq!(body["iss"], provider.issuer(), "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["exp"].is_i64(), "{body}");

    // Only the introspector client is told anything.
    let (status, body) = provider
        .introspect_as(AGENT_ID, AGENT_SECRET, &opaque)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false, "{body}");

    // An unknown token is inactive.
    let (status, body) = provider.introspect("no-such-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false, "{body}");

    // oidc-provider refuses to introspect its own JWT access tokens.
    let jwt = provider.token(RESOURCE, "notes:read").await;
    let (status, body) = provider.introspect(&jwt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unsupported_token_type", "{body}");

    // Opaque tokens live in the provider's memory: a restart forgets them.
    provider.rotate().await;
    let (status, body) = provider.introspect(&opaque).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false, "{body}");
}

#[tokio::test]
async fn the_provider_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = Provider::start(dir.path()).await;
    let status = provider.stop().await;
    assert!(
        status.success(),
        "{status}\nprovider stderr:\n{}",
        provider.stderr()
    );
}
