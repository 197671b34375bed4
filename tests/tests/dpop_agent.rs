//! DPoP (RFC 9449) on the agent side, against real parts: the development issuer's token
//! endpoint served on 127.0.0.1 issues DPoP-bound tokens to `TokenExchangeClient::dpop`
//! (with and without a demanded nonce), refuses bad proofs, and keeps bindings through
//! token exchange; `AuthorizedHttpClient::dpop` signs a proof for every request and
//! answers a `use_dpop_nonce` challenge from a small axum server once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Request;
use axum::middleware::{self, Next};
use rmcp_authz::Principal;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::remote::{ExchangeClientError, FetchOptions, TokenExchangeClient};
use rmcp_authz::token::dpop::DpopKey;
use serde_json::Value;

const FIRST: &str = "https://agents.test.invalid/mcp";
const TARGET: &str = "https://notes.test.invalid/mcp";

/// The development issuer, served at its own URL, counting its token requests.
struct Issuer {
    issuer: Arc<DevIssuer>,
    url: String,
    token_requests: Arc<AtomicUsize>,
}

async fn serve(require_nonce: bool) -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut issuer = DevIssuer::new(url.clone()).unwrap();
    if require_nonce {
        issuer = issuer.require_dpop_nonce();
    }
    let issuer = Arc::new(issuer);
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&token_requests);
    let app = Arc::clone(&issuer)
        .token_endpoint_router()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let counter = Arc::clone(&counter);
            async move {
                if request.uri().path() == "/token" {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request).await
            }
        }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Issuer {
        issuer,
        url,
        token_requests,
    }
}

impl Issuer {
    fn endpoint(&self) -> String {
        format!("{}/token", self.url)
    }

    fn client(&self) -> TokenExchangeClient {
        TokenExchangeClient::new(self.endpoint(), FetchOptions::loopback_http()).unwrap()
    }

    fn user_token(&self) -> String {
        self.issuer
            .token(FIRST)
            .subject("alice")
            .scopes(["notes:read", "notes:write"])
            .mint()
            .unwrap()
    }

    fn agent_token(&self, jkt: Option<&str>) -> String {
        let token = self
            .issuer
            .token(self.url.clone())
            .subject("research-agent")
            .client_id("research-agent");
        match jkt {
            Some(jkt) => token.dpop_bound(jkt),
            None => token,
        }
        .mint()
        .unwrap()
    }

    fn verify(&self, token: &str) -> Principal {
        self.issuer
            .verifier(TARGET)
            .build()
            .unwrap()
            .verify_sync(token)
            .unwrap()
    }
}

fn cnf_jkt(principal: &Principal) -> Option<String> {
    principal
        .claim("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[tokio::test]
async fn a_proof_at_the_token_endpoint_gets_a_token_bound_to_the_key() {
    let server = serve(false).await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let client = server.client().dpop(Arc::clone(&key));
    let token = client
        .exchange(&server.user_token(), None, TARGET, &["notes:read"])
        .await
        .unwrap();
    assert!(token.dpop_bound, "token_type DPoP");
    let who = server.verify(&token.access_token);
    assert_eq!(cnf_jkt(&who).as_deref(), Some(key.thumbprint()));
    assert_eq!(who.subject(), Some("alice"));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);

    // The metadata names the proof algorithms.
    let metadata = server.issuer.authorization_server_metadata();
    let algs = metadata["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&Value::from("ES256")), "{metadata}");

    // Without a key, a bearer token as before.
    let token = server
        .client()
        .exchange(&server.user_token(), None, TARGET, &[])
        .await
        .unwrap();
    assert!(!token.dpop_bound);
    assert_eq!(cnf_jkt(&server.verify(&token.access_token)), None);
}

#[tokio::test]
async fn a_demanded_nonce_is_fetched_once_and_kept() {
    let server = serve(true).await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let client = server.client().dpop(Arc::clone(&key));
    let token = client
        .exchange(&server.user_token(), None, TARGET, &[])
        .await
        .unwrap();
    assert!(token.dpop_bound);
    assert_eq!(
        cnf_jkt(&server.verify(&token.access_token)).as_deref(),
        Some(key.thumbprint())
    );
    assert_eq!(
        server.token_requests.load(Ordering::SeqCst),
        2,
        "refused with use_dpop_nonce, then sent again with the nonce"
    );
    // The nonce is kept: a clone's next request needs no retry.
    client
        .clone()
        .exchange(&server.user_token(), None, TARGET, &[])
        .await
        .unwrap();
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 3);
}

/// POSTs a token exchange form to `endpoint` with these `DPoP` headers; the status and
/// the JSON answer.
async fn raw_exchange(endpoint: &str, subject: &str, proofs: &[String]) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(endpoint).form(&[
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", subject),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("resource", TARGET),
    ]);
    for proof in proofs {
        request = request.header("dpop", proof);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_proofs_are_refused_with_invalid_dpop_proof() {
    let server = serve(false).await;
    let key = DpopKey::generate().unwrap();
    let endpoint = server.endpoint();
    let subject = server.user_token();
    let good = || key.proof("POST", &endpoint, None, None).unwrap();
    let cases = [
        ("two headers", vec![good(), good()]),
        (
            "another URL",
            vec![
                key.proof("POST", "http://127.0.0.1:1/token", None, None)
                    .unwrap(),
            ],
        ),
        (
            "another method",
            vec![key.proof("GET", &endpoint, None, None).unwrap()],
        ),
        ("not a JWS", vec!["not.a.proof".to_owned()]),
    ];
    for (case, proofs) in cases {
        let (status, body) = raw_exchange(&endpoint, &subject, &proofs).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{case}: {body}");
        assert!(body["error_description"].is_string(), "{case}: {body}");
    }
    // A proof is used once.
    let proof = good();
    let (status, body) = raw_exchange(&endpoint, &subject, std::slice::from_ref(&proof)).await;
    assert_eq!((status, &body["token_type"]), (200, &Value::from("DPoP")));
    let (status, body) = raw_exchange(&endpoint, &subject, &[proof]).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_dpop_proof"))
    );
}

#[tokio::test]
async fn exchange_keeps_bindings() {
    let server = serve(false).await;
    let alice_key = Arc::new(DpopKey::generate().unwrap());
    let agent_key = Arc::new(DpopKey::generate().unwrap());
    let bound_user = server
        .issuer
        .token(FIRST)
        .subject("alice")
        .scopes(["notes:read"])
        .dpop_bound(alice_key.thumbprint())
        .mint()
        .unwrap();
    let code = |result: Result<_, ExchangeClientError>| {
        result.unwrap_err().error_code().map(str::to_owned)
    };

    // A bound subject token is never exchanged without a proof: that would strip its binding.
    let plain = server.client();
    let refused = plain.exchange(&bound_user, None, TARGET, &[]).await;
    assert_eq!(code(refused).as_deref(), Some("invalid_dpop_proof"));

    // Without an actor token, only the holder of the subject's key.
    let agent = server.client().dpop(Arc::clone(&agent_key));
    let refused = agent.exchange(&bound_user, None, TARGET, &[]).await;
    assert_eq!(code(refused).as_deref(), Some("invalid_grant"));
    let own = server
        .client()
        .dpop(Arc::clone(&alice_key))
        .exchange(&bound_user, None, TARGET, &[])
        .await
        .unwrap();
    assert_eq!(
        cnf_jkt(&server.verify(&own.access_token)).as_deref(),
        Some(alice_key.thumbprint())
    );

    // A bound actor token: the requester must prove the actor's key.
    let bound_agent = server.agent_token(Some(agent_key.thumbprint()));
    let thief = server.client().dpop(Arc::new(DpopKey::generate().unwrap()));
    let refused = thief
        .exchange(&server.user_token(), Some(&bound_agent), TARGET, &[])
        .await;
    assert_eq!(code(refused).as_deref(), Some("invalid_grant"));
    let refused = plain
        .exchange(&server.user_token(), Some(&bound_agent), TARGET, &[])
        .await;
    assert_eq!(code(refused).as_deref(), Some("invalid_dpop_proof"));

    // An actor Alice's bound token does not name in may_act: whoever holds it without its
    // key stole it, and cannot re-bind it to their own key by adding an actor token.
    let refused = agent
        .exchange(&bound_user, Some(&bound_agent), TARGET, &[])
        .await;
    assert_eq!(code(refused).as_deref(), Some("invalid_grant"));

    // The actor her token names, proving its key, exchanges it: bound to the actor's key.
    let handed = server
        .issuer
        .token(FIRST)
        .subject("alice")
        .scopes(["notes:read"])
        .dpop_bound(alice_key.thumbprint())
        .claim("may_act", serde_json::json!({"sub": "research-agent"}))
        .mint()
        .unwrap();
    let delegated = agent
        .exchange(&handed, Some(&bound_agent), TARGET, &[])
        .await
        .unwrap();
    assert!(delegated.dpop_bound);
    let who = server.verify(&delegated.access_token);
    assert_eq!(cnf_jkt(&who).as_deref(), Some(agent_key.thumbprint()));
    assert_eq!(who.agent(), Some("research-agent"));
}

/// What the small resource server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The `Authorization` scheme.
    scheme: String,
    /// The proof's check against this request and token: `Ok(nonce)` or the error.
    proof: Result<Option<String>, String>,
    body_bytes: usize,
}

/// A resource server at `/mcp` that checks DPoP proofs and demands its nonce: a proof
/// without the current nonce gets 401 `use_dpop_nonce` with `DPoP-Nonce`. With
/// `rotate`, every DPoP request is refused so, with a new nonce each time.
struct Resource {
    url: String,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

async fn resource_server(rotate: bool) -> Resource {
    use axum::http::{HeaderMap, Method, StatusCode};
    use axum::response::IntoResponse;
    use rmcp_authz::token::dpop::{DpopOptions, DpopVerifier};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let verifier = Arc::new(DpopVerifier::new(DpopOptions::default()));
    let nonce = Arc::new(std::sync::Mutex::new(0_u32));
    let (state_url, state_seen) = (url.clone(), Arc::clone(&seen));
    let handler = move |method: Method, headers: HeaderMap, body: axum::body::Bytes| {
        let (url, seen, verifier, nonce) = (
            state_url.clone(),
            Arc::clone(&state_seen),
            Arc::clone(&verifier),
            Arc::clone(&nonce),
        );
        async move {
            let authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let (scheme, token) = authorization.split_once(' ').unwrap_or_default();
            let proof = match headers.get("dpop").and_then(|v| v.to_str().ok()) {
                None => Err("no proof".to_owned()),
                Some(proof) => verifier
                    .check(proof, method.as_str(), &url, Some(token))
                    .map_err(|e| e.to_string())
                    .map(|_| {
                        let payload = proof.split('.').nth(1).unwrap();
                        let claims: Value = serde_json::from_slice(
                            &base64::Engine::decode(
                                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                                payload,
                            )
                            .unwrap(),
                        )
                        .unwrap();
                        claims["nonce"].as_str().map(str::to_owned)
                    }),
            };
            seen.lock().unwrap().push(Seen {
                method: method.to_string(),
                scheme: scheme.to_owned(),
                proof: proof.clone(),
                body_bytes: body.len(),
            });
            if scheme != "DPoP" {
                return StatusCode::ACCEPTED.into_response();
            }
            let current = format!("n-{}", nonce.lock().unwrap());
            match proof {
                Ok(Some(sent)) if sent == current && !rotate => {
                    StatusCode::ACCEPTED.into_response()
                }
                Ok(_) => {
                    let next = {
                        let mut n = nonce.lock().unwrap();
                        if rotate {
                            *n += 1;
                        }
                        format!("n-{n}")
                    };
                    (
                        StatusCode::UNAUTHORIZED,
                        [
                            (
                                "www-authenticate",
                                r#"DPoP error="use_dpop_nonce", error_description="a nonce is required", algs="ES256""#.to_owned(),
                            ),
                            ("dpop-nonce", next),
                        ],
                    )
                        .into_response()
                }
                Err(e) => (
                    StatusCode::UNAUTHORIZED,
                    [(
                        "www-authenticate",
                        format!("DPoP error=\"invalid_dpop_proof\", error_description=\"{e}\""),
                    )],
                )
                    .into_response(),
            }
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::any(handler));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Resource { url, seen }
}

/// `client` posting the `notifications/initialized` message to `uri`.
async fn post_initialized(
    client: &rmcp_authz::agent::AuthorizedHttpClient,
    uri: &Arc<str>,
) -> Result<
    rmcp::transport::streamable_http_client::StreamableHttpPostResponse,
    rmcp::transport::streamable_http_client::StreamableHttpError<
        <rmcp_authz::agent::AuthorizedHttpClient as rmcp::transport::streamable_http_client::StreamableHttpClient>::Error,
    >,
>{
    use rmcp::transport::streamable_http_client::StreamableHttpClient;
    let initialized = serde_json::from_value(serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/initialized"
    }))
    .unwrap();
    client
        .post_message(Arc::clone(uri), initialized, None, None, Default::default())
        .await
}

fn agent_client(
    token: rmcp_authz::agent::AccessToken,
    key: &Arc<DpopKey>,
) -> rmcp_authz::agent::AuthorizedHttpClient {
    rmcp_authz::agent::AuthorizedHttpClient::new(
        reqwest::Client::new(),
        Arc::new(token),
        Vec::<String>::new(),
    )
    .without_resource_check()
    .dpop(Arc::clone(key))
}

#[tokio::test]
async fn the_agent_probes_for_a_demanded_nonce_and_sends_again_once() {
    use rmcp::transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpPostResponse,
    };
    use rmcp_authz::agent::AccessToken;

    let server = resource_server(false).await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let client = agent_client(
        AccessToken::new("opaque-bound-token", None, Vec::<String>::new()).with_dpop_bound(true),
        &key,
    );
    let uri: Arc<str> = server.url.as_str().into();
    let answer = post_initialized(&client, &uri).await.unwrap();
    assert!(
        matches!(answer, StreamableHttpPostResponse::Accepted),
        "{answer:?}"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    // The message without a nonce, the empty probe, the message with the nonce.
    assert_eq!(seen[0].proof, Ok(None));
    assert!(seen[0].body_bytes > 0);
    assert_eq!(seen[1].proof, Ok(None));
    assert_eq!((seen[1].method.as_str(), seen[1].body_bytes), ("POST", 0));
    assert_eq!(seen[2].proof, Ok(Some("n-0".to_owned())));
    assert!(seen.iter().all(|s| s.scheme == "DPoP"));

    // The nonce is kept: the next request (a clone's, a DELETE) passes at once, with a
    // proof of its own method.
    client
        .clone()
        .delete_session(
            Arc::clone(&uri),
            "session-1".into(),
            None,
            Default::default(),
        )
        .await
        .unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(seen[3].method, "DELETE");
    assert_eq!(seen[3].proof, Ok(Some("n-0".to_owned())));
}

#[tokio::test]
async fn a_second_use_dpop_nonce_is_returned_and_unbound_tokens_go_as_bearer() {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    use rmcp_authz::agent::AccessToken;

    let server = resource_server(true).await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let uri: Arc<str> = server.url.as_str().into();
    // A JWT whose cnf names a key is presented as DPoP without being told.
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        format!(r#"{{"cnf":{{"jkt":"{}"}}}}"#, key.thumbprint()),
    );
    let bound = AccessToken::new(format!("e30.{payload}.c2ln"), None, Vec::<String>::new());
    let err = post_initialized(&agent_client(bound, &key), &uri)
        .await
        .unwrap_err();
    match err {
        StreamableHttpError::AuthRequired(challenge) => assert!(
            challenge.www_authenticate_header.contains("use_dpop_nonce"),
            "{challenge:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.seen.lock().unwrap().len(), 3, "once more, not again");

    // An unbound token goes as Bearer, without a proof, even with a key.
    let unbound = AccessToken::new("plain-bearer", None, Vec::<String>::new());
    post_initialized(&agent_client(unbound, &key), &uri)
        .await
        .unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3].scheme, "Bearer");
    assert_eq!(seen[3].proof, Err("no proof".to_owned()));
}

#[tokio::test]
async fn a_token_endpoint_that_keeps_asking_for_a_nonce_is_asked_twice_only() {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/token", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    StatusCode::BAD_REQUEST,
                    [("dpop-nonce", format!("n-{n}"))],
                    axum::Json(serde_json::json!({"error": "use_dpop_nonce"})),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let client = TokenExchangeClient::new(endpoint, FetchOptions::loopback_http())
        .unwrap()
        .dpop(Arc::new(DpopKey::generate().unwrap()));
    let err = client
        .exchange("subject", None, TARGET, &[])
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("use_dpop_nonce"), "{err}");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}
