//! Keys and answers from an authorization server the test controls (a local HTTP server):
//! remote JWK Sets fetched on first use and followed through rotation; discovery with the
//! issuer checked;
//! the issuer down, slow, answering garbage, 50 MB, or keys that fail validation; stale
//! keys served while fetches fail; a set that is due served while its refresh runs (or
//! hangs) in the background; a burst of 10,000 tokens with unknown `kid`s causing at most
//! one fetch per cooldown while known keys keep verifying; token introspection.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::remote::{
    DiscoveryError, FetchError, FetchOptions, JwksError, RemoteJwks, RemoteJwksOptions, discover,
};
use rmcp_authz::token::{AuthError, JwtVerifier, KeyError, Verifier};
use serde_json::{Value, json};
use tokio::sync::Notify;

const AUDIENCE: &str = "https://mcp.test.invalid/mcp";

/// What the JWKS endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Down,
    Slow,
    Garbage,
    HugeDeclared,
    HugeStreamed,
    BadKeys,
    /// Serve, but only once `release` is notified.
    Hold,
}

struct Control {
    mode: Mutex<Mode>,
    jwks: Mutex<Value>,
    max_age: Mutex<Option<u64>>,
    hits: AtomicUsize,
    /// Requests blocked in `Mode::Hold`, not yet released.
    held: AtomicUsize,
    release: Notify,
    origin: Mutex<String>,
}

impl Control {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// A body of `remaining` bytes in 64 KiB frames, without a Content-Length.
struct Endless {
    remaining: usize,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024);
        self.remaining -= n;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![b' '; n])))))
    }
}

async fn jwks(State(control): State<Arc<Control>>) -> Response<Body> {
    control.hits.fetch_add(1, Ordering::SeqCst);
    let mode = *control.mode.lock().unwrap();
    let json = |value: &Value| {
        let mut response = Response::new(Body::from(value.to_string()));
        if let Some(age) = *control.max_age.lock().unwrap() {
            response.headers_mut().insert(
                "cache-control",
                HeaderValue::from_str(&format!("public, max-age={age}")).unwrap(),
            );
        }
        response
    };
    match mode {
        Mode::Serve => json(&control.jwks.lock().unwrap()),
        Mode::Hold => {
            control.held.fetch_add(1, Ordering::SeqCst);
            control.release.notified().await;
            control.held.fetch_sub(1, Ordering::SeqCst);
            json(&control.jwks.lock().unwrap())
        }
        Mode::Down => {
            let mut r = Response::new(Body::from("down"));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json(&control.jwks.lock().unwrap())
        }
        Mode::Garbage => Response::new(Body::from("<html>not json</html>")),
        Mode::HugeDeclared => Response::new(Body::from(vec![b' '; 50 << 20])),
        Mode::HugeStreamed => Response::new(Body::new(Endless {
            remaining: 50 << 20,
        })),
        Mode::BadKeys => json(
            &json!({"keys": [{"kty": "RSA", "kid": "weak", "alg": "RS256", "n": "AQAB", "e": "AQAB"}]}),
        ),
    }
}

async fn metadata(State(control): State<Arc<Control>>) -> axum::Json<Value> {
    let origin = control.origin.lock().unwrap().clone();
    axum::Json(json!({"issuer": origin, "jwks_uri": format!("{origin}/jwks")}))
}

/// An RFC 7662 endpoint: client `rs` / `rs-secret`; the token's text says what to answer.
async fn introspect(
    State(control): State<Arc<Control>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response<Body> {
    control.hits.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("rs:rs-secret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        let mut r = Response::new(Body::from(r#"{"error":"invalid_client"}"#));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let token = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .unwrap_or_default()
        .to_owned();
    let origin = control.origin.lock().unwrap().clone();
    let live = json!({
        "active": true, "iss": origin, "aud": AUDIENCE, "sub": "alice", "client_id": "agent",
        "scope": "notes:read notes:write", "exp": 4_000_000_000u64, "jti": "t1",
        "act": {"sub": "planner"}
    });
    let answer = match token.as_str() {
        "live" => live,
        "no-iss" => {
            let mut v = live;
            v.as_object_mut().unwrap().remove("iss");
            v
        }
        "foreign" => {
            let mut v = live;
            v["aud"] = json!("https://elsewhere.invalid/mcp");
            v
        }
        "expired" => {
            let mut v = live;
            v["exp"] = json!(1_000_000_000u64);
            v
        }
        _ => json!({"active": false}),
    };
    Response::new(Body::from(answer.to_string()))
}

async fn foreign_metadata() -> axum::Json<Value> {
    axum::Json(
        json!({"issuer": "https://elsewhere.invalid", "jwks_uri": "https://elsewhere.invalid/jwks"}),
    )
}

/// The test's authorization server: its origin is the issuer.
struct Server {
    origin: String,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let control = Arc::new(Control {
            mode: Mutex::new(Mode::Serve),
            jwks: Mutex::new(json!({"keys": []})),
            max_age: Mutex::new(None),
            hits: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            release: Notify::new(),
            origin: Mutex::new(origin.clone()),
        });
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route(
                "/other/.well-known/openid-configuration",
                get(foreign_metadata),
            )
            .route("/introspect", axum::routing::post(introspect))
            .with_state(control.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            origin,
            control,
            task,
        }
    }

    fn issuer(&self) -> DevIssuer {
        DevIssuer::new(self.origin.clone()).unwrap()
    }

    /// Publishes the keys of `issuers`.
    fn publish(&self, issuers: &[&DevIssuer]) {
        let keys: Vec<Value> = issuers
            .iter()
            .flat_map(|i| i.jwks()["keys"].as_array().cloned().unwrap_or_default())
            .collect();
        *self.control.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.origin)
    }
}

fn options() -> RemoteJwksOptions {
    RemoteJwksOptions::default()
        .fetch(FetchOptions::loopback_http().timeout(Duration::from_millis(500)))
}

fn remote_verifier(server: &Server, options: RemoteJwksOptions) -> JwtVerifier {
    let jwks = RemoteJwks::new(server.jwks_url(), options).unwrap();
    JwtVerifier::builder(server.origin.clone(), AUDIENCE)
        .remote_jwks(jwks)
        .build()
        .unwrap()
}

/// Waits (yielding to the server and the background refresh) until `what` holds; panics,
/// naming `why`, if it never does. A bound on a wait, not an assertion on its length.
async fn wait_until(why: &str, what: impl Fn() -> bool) {
    for _ in 0..3000 {
        if what() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {why}");
}

/// Options under which the set is due as soon as it is fetched, so every verification
/// finds it due.
fn due_at_once() -> RemoteJwksOptions {
    options()
        .default_age(Duration::ZERO)
        .min_age(Duration::ZERO)
}

fn token(issuer: &DevIssuer) -> String {
    issuer.token(AUDIENCE).subject("alice").mint().unwrap()
}

/// A token naming `kid`, with a signature no key can match: refused at key selection.
fn forged(issuer: &str, kid: &str) -> String {
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(json!({"alg": "ES256", "typ": "at+jwt", "kid": kid})),
        enc(json!({"iss": issuer, "aud": AUDIENCE, "sub": "mallory", "exp": 4_000_000_000u64})),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

#[tokio::test]
async fn discovery_finds_the_keys_and_tokens_verify() {
    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    let metadata = discover(&server.origin, &FetchOptions::loopback_http())
        .await
        .unwrap();
    assert_eq!(
        metadata.jwks_uri.as_deref(),
        Some(server.jwks_url().as_str())
    );
    let verifier = JwtVerifier::discover(&server.origin, AUDIENCE, options())
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(server.control.hits(), 0, "keys are fetched on first use");
    let who = verifier.verify(&token(&issuer)).await.unwrap();
    assert_eq!(who.subject(), Some("alice"));
    assert_eq!(server.control.hits(), 1);
    verifier.verify(&token(&issuer)).await.unwrap();
    assert_eq!(server.control.hits(), 1, "fresh keys are not fetched again");
    assert_eq!(verifier.remote_jwks().unwrap().stats().keys, 1);
}

#[tokio::test]
async fn discovery_refuses_metadata_for_another_issuer_and_insecure_urls() {
    let server = Server::start().await;
    let other = format!("{}/other", server.origin);
    let err = discover(&other, &FetchOptions::loopback_http())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::IssuerMismatch { found, .. } if found == "https://elsewhere.invalid"),
        "{err}"
    );
    let err = discover(&server.origin, &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::Fetch(FetchError::Insecure { .. })),
        "{err}"
    );
    let err = RemoteJwks::new("http://as.example/jwks", options()).unwrap_err();
    assert!(matches!(err, FetchError::Insecure { .. }), "{err}");
    let err = RemoteJwks::new(server.jwks_url(), RemoteJwksOptions::default()).unwrap_err();
    assert!(
        matches!(err, FetchError::Insecure { .. }),
        "loopback needs the opt-in: {err}"
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let server = Server::start().await;
    let old = server.issuer();
    server.publish(&[&old]);
    let verifier = remote_verifier(&server, options());
    let old_token = token(&old);
    verifier.verify(&old_token).await.unwrap();
    // The issuer rotates: a new key signs, the old one stays published.
    let new = server.issuer();
    server.publish(&[&new, &old]);
    let new_token = token(&new);
    verifier
        .verify(&new_token)
        .await
        .expect("the new kid is fetched");
    verifier
        .verify(&old_token)
        .await
        .expect("the old key still verifies");
    assert_eq!(server.control.hits(), 2);
    let stats = verifier.remote_jwks().unwrap().stats();
    assert_eq!((stats.unknown_kid_fetches, stats.keys), (1, 2), "{stats:?}");
}

#[tokio::test]
async fn an_unreachable_or_broken_jwks_is_a_clear_unavailable_error() {
    for (mode, expect) in [
        (Mode::Down, "HTTP status 503"),
        (Mode::Slow, "no complete answer within"),
        (Mode::Garbage, "not a JSON object"),
        (Mode::HugeDeclared, "larger than 262144 bytes"),
        (Mode::HugeStreamed, "larger than 262144 bytes"),
        (Mode::BadKeys, "the JWK Set was refused"),
    ] {
        let server = Server::start().await;
        let issuer = server.issuer();
        server.publish(&[&issuer]);
        server.control.set(mode);
        let verifier = remote_verifier(&server, options());
        let err = verifier.verify(&token(&issuer)).await.unwrap_err();
        let AuthError::KeysUnavailable { reason } = &err else {
            panic!("{mode:?}: {err:?}");
        };
        assert!(reason.contains(expect), "{mode:?}: {reason}");
        assert_eq!(err.error_code(), "temporarily_unavailable");
        // The failure is remembered for the cooldown: no second fetch.
        let _ = verifier.verify(&token(&issuer)).await;
        assert_eq!(server.control.hits(), 1, "{mode:?}");
        assert_eq!(verifier.remote_jwks().unwrap().stats().fetch_failures, 1);
    }
}

#[tokio::test]
async fn while_fetches_fail_the_last_good_keys_are_used_up_to_a_limit() {
    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    // Due at once, so every verification wants a refresh.
    let o = due_at_once();
    let verifier = remote_verifier(&server, o.clone());
    let jwks = verifier.remote_jwks().unwrap();
    verifier.verify(&token(&issuer)).await.unwrap();
    server.control.set(Mode::Down);
    for _ in 0..20 {
        verifier
            .verify(&token(&issuer))
            .await
            .expect("stale keys are used");
    }
    wait_until("the background refresh ends", || {
        jwks.stats().background_refreshes == 1
    })
    .await;
    for _ in 0..20 {
        verifier
            .verify(&token(&issuer))
            .await
            .expect("stale keys are still used after the refresh failed");
    }
    let stats = jwks.stats();
    assert_eq!(
        server.control.hits(),
        2,
        "one failed refresh, then the cooldown"
    );
    assert_eq!(
        (stats.background_refreshes, stats.fetch_failures),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.stale_uses, 40, "{stats:?}");

    // With no staleness allowed, the same failure refuses tokens.
    let strict = verifier_with_keys_then_down(&server, o.stale_for(Duration::ZERO)).await;
    assert!(matches!(
        strict.verify(&token(&issuer)).await,
        Err(AuthError::KeysUnavailable { .. })
    ));
}

#[tokio::test]
async fn refresh_says_why_as_a_typed_error() {
    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    let jwks = RemoteJwks::new(server.jwks_url(), options()).unwrap();

    server.control.set(Mode::Down);
    let err = jwks.refresh().await.unwrap_err();
    assert!(
        matches!(
            &err,
            JwksError::Fetch(FetchError::Status { status: 503, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HTTP status 503"), "{err}");

    server.control.set(Mode::BadKeys);
    let err = jwks.refresh().await.unwrap_err();
    let JwksError::Keys { source } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**source, KeyError::RsaKeySize { .. }), "{source}");
    assert!(
        err.to_string().starts_with("the JWK Set was refused: "),
        "{err}"
    );
    let cause = std::error::Error::source(&err).expect("the key error is the source");
    assert_eq!(cause.to_string(), source.to_string());

    server.control.set(Mode::Serve);
    jwks.refresh().await.unwrap();
    assert_eq!(jwks.stats().keys, 1);
}

async fn verifier_with_keys_then_down(server: &Server, o: RemoteJwksOptions) -> JwtVerifier {
    server.control.set(Mode::Serve);
    let verifier = remote_verifier(server, o);
    verifier.remote_jwks().unwrap().refresh().await.unwrap();
    server.control.set(Mode::Down);
    verifier
}

#[tokio::test]
async fn cache_control_max_age_is_honoured_within_bounds() {
    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    *server.control.max_age.lock().unwrap() = Some(0);
    let o = options().min_age(Duration::ZERO);
    let verifier = remote_verifier(&server, o);
    let jwks = verifier.remote_jwks().unwrap();
    for hits in 1..=3 {
        verifier.verify(&token(&issuer)).await.unwrap();
        // The first use fetches; every later one finds the set due and refreshes it in
        // the background: wait for that refresh to end before the next use.
        wait_until("the background refresh ends", || {
            jwks.stats().background_refreshes == hits as u64 - 1
        })
        .await;
        assert_eq!(
            server.control.hits(),
            hits,
            "max-age=0 with min_age 0: every use refetches"
        );
    }

    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    *server.control.max_age.lock().unwrap() = Some(0);
    let bounded = remote_verifier(&server, options());
    for _ in 0..3 {
        bounded.verify(&token(&issuer)).await.unwrap();
    }
    assert_eq!(
        server.control.hits(),
        1,
        "max-age=0 is raised to min_age (1 min)"
    );
}

#[tokio::test]
async fn a_due_set_serves_known_kids_while_its_refresh_hangs() {
    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    // Far longer than this test: a verification that waited for the refresh would find
    // it failed (timed out), not still running.
    let o = due_at_once().fetch(FetchOptions::loopback_http().timeout(Duration::from_secs(30)));
    let verifier = remote_verifier(&server, o);
    let jwks = verifier.remote_jwks().unwrap();
    let known = token(&issuer);
    verifier.verify(&known).await.unwrap();
    let first = jwks.current().unwrap();

    // The issuer now holds every JWKS request until the test releases it.
    server.control.set(Mode::Hold);
    verifier
        .verify(&known)
        .await
        .expect("a due set still verifies its own kids");
    wait_until("the refresh reaches the server and is held", || {
        server.control.held() == 1
    })
    .await;
    for _ in 0..10 {
        verifier
            .verify(&known)
            .await
            .expect("known kids verify while the refresh is held");
    }
    // Every verification above ended while the one refresh is still held at the server:
    // neither done nor failed.
    let stats = jwks.stats();
    assert_eq!(
        server.control.held(),
        1,
        "the handler has not been released"
    );
    assert_eq!(
        (
            stats.fetches,
            stats.background_refreshes,
            stats.fetch_failures
        ),
        (2, 0, 0),
        "one refresh, in the background, not ended: {stats:?}"
    );
    assert_eq!(stats.stale_uses, 11, "{stats:?}");
    assert!(Arc::ptr_eq(&jwks.current().unwrap(), &first));
    assert_eq!(server.control.hits(), 2, "single flight: no second refresh");

    // Released, the refresh installs the set the issuer serves now.
    let next = server.issuer();
    server.publish(&[&next, &issuer]);
    server.control.release.notify_one();
    wait_until("the held refresh ends", || {
        jwks.stats().background_refreshes == 1
    })
    .await;
    let stats = jwks.stats();
    assert_eq!((stats.keys, stats.fetch_failures), (2, 0), "{stats:?}");
    verifier
        .verify(&token(&next))
        .await
        .expect("the new kid, from the background refresh");
    assert_eq!(jwks.stats().unknown_kid_fetches, 0);
}

#[tokio::test]
async fn a_background_refresh_picks_up_a_rotated_set() {
    let server = Server::start().await;
    let old = server.issuer();
    server.publish(&[&old]);
    let o = due_at_once().fetch(FetchOptions::loopback_http().timeout(Duration::from_secs(30)));
    let verifier = remote_verifier(&server, o);
    let jwks = verifier.remote_jwks().unwrap();
    verifier.verify(&token(&old)).await.unwrap();

    // The issuer publishes a new key; a use of the due set refreshes it in the background.
    let new = server.issuer();
    server.publish(&[&new, &old]);
    verifier.verify(&token(&old)).await.unwrap();
    wait_until("the background refresh ends", || {
        jwks.stats().background_refreshes == 1
    })
    .await;
    assert_eq!(jwks.stats().keys, 2, "the new set is installed");

    // From now on every fetch hangs: the new kid must verify without one.
    server.control.set(Mode::Hold);
    verifier
        .verify(&token(&new))
        .await
        .expect("the new kid is in the current set");
    let stats = jwks.stats();
    assert_eq!(stats.unknown_kid_fetches, 0, "{stats:?}");
    assert_eq!(
        (stats.fetch_failures, stats.background_refreshes),
        (0, 1),
        "no fetch ended, none was waited for: {stats:?}"
    );
}

#[tokio::test]
async fn an_unknown_kid_waits_for_the_running_refresh_and_takes_its_set() {
    let server = Server::start().await;
    let old = server.issuer();
    server.publish(&[&old]);
    let o = due_at_once().fetch(FetchOptions::loopback_http().timeout(Duration::from_secs(30)));
    let verifier = Arc::new(remote_verifier(&server, o));
    let jwks = verifier.remote_jwks().unwrap().clone();
    verifier.verify(&token(&old)).await.unwrap();

    server.control.set(Mode::Hold);
    verifier.verify(&token(&old)).await.unwrap();
    wait_until("the background refresh is held", || {
        server.control.held() == 1
    })
    .await;

    // A token for a key the current set lacks: a possible rotation, so it may wait.
    let new = server.issuer();
    let rotated = {
        let verifier = verifier.clone();
        let token = token(&new);
        tokio::spawn(async move { verifier.verify(&token).await })
    };
    wait_until("the unknown kid asks for a fetch", || {
        jwks.stats().unknown_kid_fetches == 1
    })
    .await;
    assert!(!rotated.is_finished(), "it waits for the running refresh");
    server.publish(&[&new, &old]);
    server.control.release.notify_one();
    rotated
        .await
        .unwrap()
        .expect("the refresh it waited for has the new key");
    let stats = jwks.stats();
    assert_eq!(server.control.hits(), 2, "no second fetch: {stats:?}");
    assert_eq!((stats.fetches, stats.fetch_failures), (2, 0), "{stats:?}");
}

#[tokio::test]
async fn a_failed_background_refresh_keeps_the_set_and_retries_after_the_cooldown() {
    let server = Server::start().await;
    let old = server.issuer();
    server.publish(&[&old]);
    let o = due_at_once().cooldown(Duration::ZERO);
    let verifier = remote_verifier(&server, o);
    let jwks = verifier.remote_jwks().unwrap();
    verifier.verify(&token(&old)).await.unwrap();
    let first = jwks.current().unwrap();

    server.control.set(Mode::Down);
    verifier.verify(&token(&old)).await.unwrap();
    wait_until("the background refresh ends", || {
        jwks.stats().background_refreshes == 1
    })
    .await;
    assert_eq!(jwks.stats().fetch_failures, 1);
    assert!(
        Arc::ptr_eq(&jwks.current().unwrap(), &first),
        "a failed refresh keeps the current set"
    );

    // The cooldown (zero here) has passed: the next due use tries again.
    let new = server.issuer();
    server.publish(&[&new, &old]);
    server.control.set(Mode::Serve);
    verifier.verify(&token(&old)).await.unwrap();
    wait_until("the retried refresh ends", || {
        jwks.stats().background_refreshes == 2
    })
    .await;
    let stats = jwks.stats();
    assert_eq!((stats.keys, stats.fetch_failures), (2, 1), "{stats:?}");
    verifier.verify(&token(&new)).await.unwrap();
    assert_eq!(jwks.stats().unknown_kid_fetches, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let server = Server::start().await;
    let issuer = server.issuer();
    server.publish(&[&issuer]);
    let verifier = Arc::new(remote_verifier(&server, options()));
    let good = token(&issuer);
    verifier.verify(&good).await.unwrap();
    assert_eq!(server.control.hits(), 1);

    // The one fetch an unknown kid may cause is held open at the server: known keys must
    // keep verifying meanwhile, without waiting for it.
    server.control.set(Mode::Hold);
    let burst: Vec<_> = (0..10_000)
        .map(|i| {
            let verifier = verifier.clone();
            let token = forged(&server.origin, &format!("forged-{i}"));
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for _ in 0..500 {
        if server.control.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.control.hits(), 2, "one fetch for the unknown kids");
    for _ in 0..100 {
        tokio::time::timeout(Duration::from_secs(5), verifier.verify(&good))
            .await
            .expect("known keys verify while the fetch is held")
            .expect("and are accepted");
    }
    server.control.release.notify_one();
    for task in burst {
        let result = task.await.unwrap();
        assert!(
            matches!(result, Err(AuthError::UnknownKey { .. })),
            "{result:?}"
        );
    }
    assert_eq!(server.control.hits(), 2, "at most one fetch per cooldown");
    let stats = verifier.remote_jwks().unwrap().stats();
    assert_eq!(stats.unknown_kid_fetches, 1, "{stats:?}");
    assert_eq!(stats.unknown_kid_refusals, 9_999, "{stats:?}");
}

#[tokio::test]
async fn introspection_maps_active_answers_to_principals_and_refuses_the_rest() {
    use rmcp_authz::remote::IntrospectionVerifier;
    let server = Server::start().await;
    let endpoint = format!("{}/introspect", server.origin);
    let verifier = IntrospectionVerifier::builder(&endpoint, &server.origin, AUDIENCE)
        .client_credentials("rs", "rs-secret")
        .fetch_options(FetchOptions::loopback_http())
        .build()
        .unwrap();
    let who = verifier.verify("live").await.unwrap();
    assert_eq!(who.subject(), Some("alice"));
    assert_eq!(who.client_id(), Some("agent"));
    assert_eq!(who.agent(), Some("planner"));
    assert_eq!(who.scopes(), ["notes:read", "notes:write"]);
    assert_eq!(
        verifier.verify("no-iss").await.unwrap().issuer(),
        server.origin,
        "the endpoint's issuer when the answer names none"
    );
    assert!(matches!(
        verifier.verify("revoked").await,
        Err(AuthError::Inactive)
    ));
    assert!(matches!(
        verifier.verify("foreign").await,
        Err(AuthError::WrongAudience { .. })
    ));
    assert!(matches!(
        verifier.verify("expired").await,
        Err(AuthError::Expired { .. })
    ));

    let wrong_client = IntrospectionVerifier::builder(&endpoint, &server.origin, AUDIENCE)
        .client_credentials("rs", "not-the-secret")
        .fetch_options(FetchOptions::loopback_http())
        .build()
        .unwrap();
    let err = wrong_client.verify("live").await.unwrap_err();
    assert!(
        matches!(&err, AuthError::KeysUnavailable { reason } if reason.contains("401")),
        "{err:?}"
    );
    assert!(
        IntrospectionVerifier::builder("http://as.example/introspect", "x", "y")
            .client_credentials("a", "b")
            .build()
            .is_err(),
        "https required"
    );
    assert!(
        IntrospectionVerifier::builder(&endpoint, "x", "y")
            .build()
            .is_err(),
        "credentials required"
    );
    assert!(!format!("{verifier:?}").contains("rs-secret"));
}
