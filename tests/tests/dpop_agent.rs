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

    // The actor, proving its key, exchanges Alice's bound token: bound to the actor's key.
    let delegated = agent
        .exchange(&bound_user, Some(&bound_agent), TARGET, &[])
        .await
        .unwrap();
    assert!(delegated.dpop_bound);
    let who = server.verify(&delegated.access_token);
    assert_eq!(cnf_jkt(&who).as_deref(), Some(agent_key.thumbprint()));
    assert_eq!(who.agent(), Some("research-agent"));
}
