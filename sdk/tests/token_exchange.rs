//! RFC 8693 token exchange over HTTP, both sides: the development issuer's token endpoint
//! served on 127.0.0.1, discovered through its RFC 8414 metadata, called with
//! `TokenExchangeClient`, and the exchanged token verified with keys fetched from the
//! issuer's `jwks_uri`. Refusals come back as typed errors naming the OAuth error code.

use std::sync::Arc;
use std::time::Duration;

use rmcp_authz::dev::DevIssuer;
use rmcp_authz::remote::{
    ExchangeClientError, FetchError, FetchOptions, IssuerMetadata, RemoteJwks, RemoteJwksOptions,
    TargetParameter, TokenExchangeClient, discover,
};
use rmcp_authz::token::{JwtVerifier, Verifier};
use serde_json::{Value, json};

const FIRST: &str = "https://agents.test.invalid/mcp";
const TARGET: &str = "https://calendar.test.invalid/mcp";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The issuer, served at its own URL.
struct Server {
    issuer: Arc<DevIssuer>,
    url: String,
}

async fn serve(path: &str) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let issuer = Arc::new(DevIssuer::new(url.clone()).unwrap());
    let app = Arc::clone(&issuer).token_endpoint_router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { issuer, url }
}

fn options() -> FetchOptions {
    FetchOptions::loopback_http()
}

async fn discovered(server: &Server) -> IssuerMetadata {
    discover(&server.url, &options()).await.unwrap()
}

async fn client(server: &Server) -> TokenExchangeClient {
    let metadata = discovered(server).await;
    TokenExchangeClient::new(metadata.token_endpoint.unwrap(), options())
        .unwrap()
        .client_credentials("calendar-tool", "s3cret: with & odd=chars")
}

async fn verifier(server: &Server, audience: &str) -> JwtVerifier {
    let metadata = discovered(server).await;
    let jwks_options = RemoteJwksOptions::default().fetch(options());
    let jwks = RemoteJwks::new(metadata.jwks_uri.unwrap(), jwks_options).unwrap();
    JwtVerifier::builder(server.url.clone(), audience)
        .remote_jwks(jwks)
        .build()
        .unwrap()
}

fn user_token(server: &Server) -> String {
    server
        .issuer
        .token(FIRST)
        .subject("alice")
        .client_id("chat-app")
        .scopes(["calendar:read", "calendar:write", "notes:read"])
        .actor("orchestrator")
        .mint()
        .unwrap()
}

fn agent_token(server: &Server, name: &str) -> String {
    server
        .issuer
        .token(server.url.clone())
        .subject(name)
        .client_id(name)
        .mint()
        .unwrap()
}

fn refused_with(result: Result<impl std::fmt::Debug, ExchangeClientError>, code: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.error_code(), Some(code), "{err}");
    assert!(
        matches!(err, ExchangeClientError::Refused { status: 400, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(code), "{err}");
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_and_keys() {
    let server = serve("").await;
    let metadata = discovered(&server).await;
    assert_eq!(metadata.issuer, server.url);
    assert_eq!(
        metadata.token_endpoint.as_deref(),
        Some(format!("{}/token", server.url).as_str())
    );
    assert_eq!(
        metadata.jwks_uri.as_deref(),
        Some(format!("{}/jwks", server.url).as_str())
    );
    assert_eq!(
        metadata.document["grant_types_supported"],
        json!([TOKEN_EXCHANGE])
    );

    // An issuer with a path is found at the path-inserted metadata URL.
    let tenant = serve("/tenant-1").await;
    let metadata = discovered(&tenant).await;
    assert_eq!(
        metadata.token_endpoint.as_deref(),
        Some(format!("{}/token", tenant.url).as_str())
    );
    let token = client(&tenant)
        .await
        .exchange(&user_token(&tenant), None, TARGET, &[])
        .await
        .unwrap();
    verifier(&tenant, TARGET)
        .await
        .verify(&token.access_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_agent_exchanges_the_callers_token_for_a_downstream_one() {
    let server = serve("").await;
    let exchanged = client(&server)
        .await
        .exchange(
            &user_token(&server),
            Some(&agent_token(&server, "research-agent")),
            TARGET,
            &["calendar:read"],
        )
        .await
        .unwrap();
    assert_eq!(exchanged.scope, Some(vec!["calendar:read".to_owned()]));
    let lifetime = exchanged.expires_in.unwrap();
    assert!(
        lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3600),
        "{lifetime:?}"
    );
    assert!(!format!("{exchanged:?}").contains(&exchanged.access_token));

    let who = verifier(&server, TARGET)
        .await
        .verify(&exchanged.access_token)
        .await
        .unwrap();
    assert_eq!(who.subject(), Some("alice"));
    assert_eq!(who.agent(), Some("research-agent"));
    assert_eq!(who.client_id(), Some("research-agent"));
    let chain: Vec<_> = who.delegation_chain().iter().map(|a| a.id()).collect();
    assert_eq!(chain, ["research-agent", "orchestrator"]);
    assert_eq!(who.scopes(), ["calendar:read"]);

    // The new token is for the downstream service only.
    assert!(
        verifier(&server, FIRST)
            .await
            .verify(&exchanged.access_token)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn refusals_name_the_oauth_error() {
    let server = serve("").await;
    let client = client(&server).await;
    let user = user_token(&server);

    // Widening.
    refused_with(
        client.exchange(&user, None, TARGET, &["admin"]).await,
        "invalid_scope",
    );
    // Another issuer's token.
    let impostor = DevIssuer::new(server.url.clone()).unwrap();
    let foreign = impostor.token(FIRST).subject("alice").mint().unwrap();
    refused_with(
        client.exchange(&foreign, None, TARGET, &[]).await,
        "invalid_grant",
    );
    // An actor the subject token's may_act does not name.
    let restricted = server
        .issuer
        .token(FIRST)
        .subject("alice")
        .claim("may_act", json!({"sub": "research-agent"}))
        .mint()
        .unwrap();
    refused_with(
        client
            .exchange(
                &restricted,
                Some(&agent_token(&server, "mallory")),
                TARGET,
                &[],
            )
            .await,
        "invalid_grant",
    );
    assert!(
        client
            .exchange(
                &restricted,
                Some(&agent_token(&server, "research-agent")),
                TARGET,
                &[],
            )
            .await
            .is_ok()
    );
    // A target that cannot be an audience.
    refused_with(
        client
            .exchange(&user, None, "https://x.test.invalid/#frag", &[])
            .await,
        "invalid_target",
    );
    // The `audience` parameter works as well as `resource`.
    let by_audience = client
        .clone()
        .target_parameter(TargetParameter::Audience)
        .exchange(&user, None, TARGET, &[])
        .await
        .unwrap();
    assert_eq!(
        by_audience.scope,
        Some(vec![
            "calendar:read".to_owned(),
            "calendar:write".to_owned(),
            "notes:read".to_owned()
        ])
    );
    // Nothing is sent for an empty audience.
    assert!(matches!(
        client.exchange(&user, None, "", &[]).await,
        Err(ExchangeClientError::InvalidArgument { .. })
    ));
}

/// The endpoint itself, with a plain HTTP client: what the form may and may not say.
#[tokio::test]
async fn the_endpoint_follows_rfc_6749_and_8693() {
    let server = serve("").await;
    let user = user_token(&server);
    let http = reqwest::Client::new();
    let endpoint = format!("{}/token", server.url);
    let post = |form: Vec<(&'static str, String)>| {
        let request = http.post(&endpoint).form(&form);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let no_store = response
                .headers()
                .get("cache-control")
                .is_some_and(|v| v == "no-store");
            let body: Value = response.json().await.unwrap();
            assert!(no_store, "{body}");
            (status, body)
        }
    };
    let base = || {
        vec![
            ("grant_type", TOKEN_EXCHANGE.to_owned()),
            ("subject_token", user.clone()),
            ("subject_token_type", ACCESS_TOKEN.to_owned()),
            ("resource", TARGET.to_owned()),
        ]
    };

    let (status, body) = post(base()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["scope"], "calendar:read calendar:write notes:read");
    assert!(body["expires_in"].as_u64().unwrap() <= 3600);

    let jwt_typed = base()
        .into_iter()
        .map(|(k, v)| match k {
            "subject_token_type" => (k, "urn:ietf:params:oauth:token-type:jwt".to_owned()),
            _ => (k, v),
        })
        .collect();
    assert_eq!(post(jwt_typed).await.0, 200);

    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (
            {
                let mut f = base();
                f[0].1 = "client_credentials".to_owned();
                f
            },
            "unsupported_grant_type",
        ),
        (base()[1..].to_vec(), "invalid_request"),
        (
            {
                let mut f = base();
                f[2].1 = "urn:ietf:params:oauth:token-type:id_token".to_owned();
                f
            },
            "invalid_request",
        ),
        (
            {
                let mut f = base();
                f.push(("actor_token", agent_token(&server, "a")));
                f
            },
            "invalid_request",
        ),
        (
            {
                let mut f = base();
                f.push(("actor_token_type", ACCESS_TOKEN.to_owned()));
                f
            },
            "invalid_request",
        ),
        (
            {
                let mut f = base();
                f.push(("subject_token", user.clone()));
                f
            },
            "invalid_request",
        ),
        (base()[..3].to_vec(), "invalid_request"),
        (
            {
                let mut f = base();
                f.push(("audience", "https://other.test.invalid/mcp".to_owned()));
                f
            },
            "invalid_target",
        ),
        (
            {
                let mut f = base();
                f.push(("scope", "calendar:read admin".to_owned()));
                f
            },
            "invalid_scope",
        ),
    ];
    for (form, code) in cases {
        let (status, body) = post(form.clone()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{form:?}: {body}"
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description
                .bytes()
                .all(|b| matches!(b, 0x20 | 0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
            "{description}"
        );
    }

    // The same resource as `resource` and `audience` is one target.
    let mut both = base();
    both.push(("audience", TARGET.to_owned()));
    assert_eq!(post(both).await.0, 200);

    // Not a form.
    let response = http
        .post(&endpoint)
        .json(&json!({"grant_type": TOKEN_EXCHANGE}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn unusable_endpoints_are_typed_errors() {
    assert!(matches!(
        TokenExchangeClient::new("http://as.test.invalid/token", options()),
        Err(FetchError::Insecure { .. })
    ));
    let server = serve("").await;
    // A URL the router does not serve: 404 without an OAuth error body.
    let client = TokenExchangeClient::new(format!("{}/nowhere", server.url), options()).unwrap();
    let err = client
        .exchange(&user_token(&server), None, TARGET, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeClientError::Fetch(FetchError::Status { status: 404, .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.error_code(), None);
}
