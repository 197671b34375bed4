//! The agent side against real servers on 127.0.0.1: an authorization server the test
//! controls (RFC 8414 metadata, a client credentials endpoint minting tokens with the
//! development issuer, scopes narrowed or refused as configured, and the development
//! issuer's token exchange), and an MCP server behind `Authz`'s HTTP layer, whose policy
//! gives each tool its own scope. Client credentials go through rmcp's client auth, found
//! by rmcp's discovery from the MCP server's protected resource metadata. An rmcp client
//! over `AuthorizedHttpClient` steps up once on `insufficient_scope`, with a refreshing
//! source never presents an expired token, and sends nothing to a server whose metadata
//! names another resource, or that has none. An `OAuthSession` with client credentials
//! authorizes on the server's challenge, steps up, and gives up after its cap.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::ClientCredentialsConfig;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use rmcp_authz::Authz;
use rmcp_authz::agent::{
    self, AuthorizedHttpClient, ClientCredentials, Credentials, Exchanged, OAuthSession,
    OnBehalfOf, Refreshing, SessionError, TokenSource, TokenSourceError,
};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::Policy;
use rmcp_authz::remote::{FetchOptions, TokenExchangeClient};
use serde_json::json;

const CLIENT_ID: &str = "research-agent";
const CLIENT_SECRET: &str = "s3cret:&=";
/// Scopes the token endpoint grants; others are left out of the token, silently.
const GRANTABLE: [&str; 2] = ["notes:read", "notes:write"];
/// A scope the token endpoint refuses outright (400 `invalid_scope`).
const REFUSED: &str = "vault:open";

/// The token endpoint's settings and what it saw.
struct AuthServer {
    issuer: Arc<DevIssuer>,
    audience: String,
    lifetime: Duration,
    hits: AtomicUsize,
    scopes_asked: Mutex<Vec<String>>,
}

async fn token_endpoint(
    State(server): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server.hits.fetch_add(1, Ordering::SeqCst);
    let error = |status: StatusCode, code: &str| {
        (status, axum::Json(json!({"error": code}))).into_response()
    };
    let encode =
        |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(CLIENT_SECRET)))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if param("grant_type").as_deref() != Some("client_credentials") {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if param("resource").as_deref() != Some(server.audience.as_str()) {
        return error(StatusCode::BAD_REQUEST, "invalid_target");
    }
    let scope = param("scope").unwrap_or_default();
    server.scopes_asked.lock().unwrap().push(scope.clone());
    let asked: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if asked.contains(&REFUSED) {
        return error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let granted: Vec<&str> = asked
        .into_iter()
        .filter(|s| GRANTABLE.contains(s))
        .collect();
    let token = server
        .issuer
        .token(server.audience.clone())
        .subject(CLIENT_ID)
        .client_id(CLIENT_ID)
        .scopes(granted.iter().copied())
        .expires_in(server.lifetime)
        .mint()
        .unwrap();
    axum::Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": server.lifetime.as_secs(),
        "scope": granted.join(" "),
    }))
    .into_response()
}

/// A notes server with four tools, each needing its own scope.
#[derive(Debug, Clone, Default)]
struct Notes;

const TOOLS: [(&str, &str); 4] = [
    ("read", "notes:read"),
    ("write", "notes:write"),
    ("purge", "notes:admin"),
    ("open_vault", REFUSED),
];

fn tool(name: &str) -> Option<Tool> {
    TOOLS.iter().find(|(n, _)| *n == name).map(|(n, _)| {
        let schema = json!({"type": "object"}).as_object().unwrap().clone();
        Tool::new(n.to_string(), format!("the {n} tool"), Arc::new(schema))
    })
}

impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tool(name)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            TOOLS.iter().filter_map(|(n, _)| tool(n)).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(
            CallToolResult::success(vec![ContentBlock::text(format!("{} done", request.name))])
                .into(),
        )
    }
}

/// Responses of the MCP server, by status.
#[derive(Default)]
struct Statuses {
    unauthorized: AtomicUsize,
    forbidden: AtomicUsize,
}

async fn count(
    State(statuses): State<Arc<Statuses>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    match response.status() {
        StatusCode::UNAUTHORIZED => statuses.unauthorized.fetch_add(1, Ordering::SeqCst),
        StatusCode::FORBIDDEN => statuses.forbidden.fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
    response
}

struct Setup {
    auth: Arc<AuthServer>,
    exchange_url: String,
    /// Token exchange requests.
    exchanges: Arc<AtomicUsize>,
    mcp_url: String,
    statuses: Arc<Statuses>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn setup(lifetime: Duration) -> Setup {
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("http://{}", as_listener.local_addr().unwrap());
    let mcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp_url = format!("http://{}/mcp", mcp_listener.local_addr().unwrap());

    let issuer = Arc::new(DevIssuer::new(issuer_url.clone()).unwrap());
    // A small leeway, so a token presented after its expiry would be refused.
    let verifier = issuer
        .verifier(mcp_url.clone())
        .leeway(Duration::from_secs(1))
        .build()
        .unwrap();
    let auth = Arc::new(AuthServer {
        issuer: issuer.clone(),
        audience: mcp_url.clone(),
        lifetime,
        hits: AtomicUsize::new(0),
        scopes_asked: Mutex::new(Vec::new()),
    });
    // Client credentials at /cc/token, with the metadata rmcp's discovery reads (HTTP
    // Basic only, as this endpoint checks); the development issuer's token exchange at
    // /dev/token.
    let exchanges = Arc::new(AtomicUsize::new(0));
    let metadata = json!({
        "issuer": issuer_url,
        "authorization_endpoint": format!("{issuer_url}/authorize"),
        "token_endpoint": format!("{issuer_url}/cc/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    });
    let as_app = Router::new()
        .route("/cc/token", post(token_endpoint))
        .with_state(auth.clone())
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { axum::Json(metadata) }),
        )
        .nest(
            "/dev",
            issuer
                .token_endpoint_router()
                .layer(middleware::from_fn_with_state(
                    exchanges.clone(),
                    count_requests,
                )),
        );

    let mut policy = Policy::builder();
    for (name, scope) in TOOLS {
        policy = policy.tool(name, scope);
    }
    let authz = Authz::new(verifier, policy.build().unwrap());
    let statuses = Arc::new(Statuses::default());
    let mcp_app = authz
        .router("/mcp", || Notes)
        .unwrap()
        .layer(middleware::from_fn_with_state(statuses.clone(), count));

    let tasks = vec![
        tokio::spawn(async move {
            axum::serve(as_listener, as_app).await.unwrap();
        }),
        tokio::spawn(async move {
            axum::serve(mcp_listener, mcp_app).await.unwrap();
        }),
    ];
    Setup {
        auth,
        exchange_url: format!("{issuer_url}/dev/token"),
        exchanges,
        mcp_url,
        statuses,
        tasks,
    }
}

impl Setup {
    /// The agent's client credentials, by rmcp's discovery from the MCP server (which
    /// first probes the server without a token, for its challenge: one 401).
    async fn credentials(&self) -> ClientCredentials {
        ClientCredentials::discover(&self.mcp_url, secret(CLIENT_SECRET))
            .await
            .unwrap()
    }

    /// 401s the MCP server answered, beyond discovery's probes.
    fn unauthorized(&self, probes: usize) -> usize {
        self.statuses.unauthorized.load(Ordering::SeqCst) - probes
    }

    fn client(
        &self,
        source: Arc<dyn TokenSource>,
    ) -> (
        AuthorizedHttpClient,
        StreamableHttpClientTransport<AuthorizedHttpClient>,
    ) {
        let http = AuthorizedHttpClient::new(reqwest::Client::new(), source, ["notes:read"]);
        let transport = StreamableHttpClientTransport::with_client(
            http.clone(),
            StreamableHttpClientTransportConfig::with_uri(self.mcp_url.as_str()),
        );
        (http, transport)
    }

    fn scopes_asked(&self) -> Vec<String> {
        self.auth.scopes_asked.lock().unwrap().clone()
    }
}

fn secret(secret: &str) -> ClientCredentialsConfig {
    ClientCredentialsConfig::ClientSecret {
        client_id: CLIENT_ID.to_owned(),
        client_secret: secret.to_owned(),
        scopes: vec![],
        resource: None,
    }
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn steps_up_once_for_exactly_the_scopes_the_challenge_names() {
    let setup = setup(Duration::from_secs(3600)).await;
    let source = Arc::new(Refreshing::new(setup.credentials().await));
    let probes = setup.statuses.unauthorized.load(Ordering::SeqCst);
    let (http, transport) = setup.client(source.clone());
    let client = ClientConfig::default().serve(transport).await.unwrap();

    let read = client
        .call_tool(CallToolRequestParams::new("read"))
        .await
        .unwrap();
    assert_eq!(text(&read), "read done");
    assert_eq!(setup.statuses.forbidden.load(Ordering::SeqCst), 0);
    assert_eq!(http.stats().step_ups, 0);

    // write: refused with insufficient_scope, stepped up to read + write, sent again.
    let write = client
        .call_tool(CallToolRequestParams::new("write"))
        .await
        .unwrap();
    assert_eq!(text(&write), "write done");
    assert_eq!(setup.statuses.forbidden.load(Ordering::SeqCst), 1);
    assert_eq!(http.stats().step_ups, 1);
    assert_eq!(http.scopes(), ["notes:read", "notes:write"]);
    assert!(
        setup
            .scopes_asked()
            .contains(&"notes:read notes:write".to_owned()),
        "{:?}",
        setup.scopes_asked()
    );
    // Later calls keep the wider token: no further refusal.
    client
        .call_tool(CallToolRequestParams::new("write"))
        .await
        .unwrap();
    client
        .call_tool(CallToolRequestParams::new("read"))
        .await
        .unwrap();
    assert_eq!(setup.statuses.forbidden.load(Ordering::SeqCst), 1);

    // purge: notes:admin is left out of the token; exactly one retry, then the refusal.
    let purge = client.call_tool(CallToolRequestParams::new("purge")).await;
    assert!(purge.is_err(), "{purge:?}");
    assert_eq!(setup.statuses.forbidden.load(Ordering::SeqCst), 3);
    assert_eq!(
        setup.scopes_asked().last().map(String::as_str),
        Some("notes:admin notes:read notes:write")
    );
    let stats = http.stats();
    assert_eq!((stats.step_ups, stats.step_ups_failed), (2, 1));
    assert_eq!(http.scopes(), ["notes:read", "notes:write"]);

    // open_vault: the token endpoint refuses the scope; the message is not sent again.
    let vault = client
        .call_tool(CallToolRequestParams::new("open_vault"))
        .await;
    assert!(vault.is_err(), "{vault:?}");
    assert_eq!(setup.statuses.forbidden.load(Ordering::SeqCst), 4);
    let stats = http.stats();
    assert_eq!((stats.step_ups, stats.step_ups_failed), (3, 2));

    // The session still works.
    let read = client
        .call_tool(CallToolRequestParams::new("read"))
        .await
        .unwrap();
    assert_eq!(text(&read), "read done");
    assert_eq!(setup.unauthorized(probes), 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_session_authorizes_on_the_challenge_and_steps_up_within_its_cap() {
    let setup = setup(Duration::from_secs(3600)).await;
    let credentials = Credentials::ClientCredentials(ClientCredentialsConfig::ClientSecret {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        scopes: vec!["notes:read".to_owned()],
        resource: None,
    });
    let session = OAuthSession::builder(&setup.mcp_url, credentials)
        .build()
        .await
        .unwrap();
    let forbidden = || setup.statuses.forbidden.load(Ordering::SeqCst);

    // The first request goes out without a token; its 401 is answered with one grant.
    let client = session.connect(ClientConfig::default()).await.unwrap();
    assert_eq!(setup.statuses.unauthorized.load(Ordering::SeqCst), 1);
    assert_eq!(setup.scopes_asked(), ["notes:read"]);
    let read = session
        .request(|| client.call_tool(CallToolRequestParams::new("read")))
        .await
        .unwrap();
    assert_eq!(text(&read), "read done");

    // write: refused with insufficient_scope, stepped up to read + write, sent again.
    let write = session
        .request(|| client.call_tool(CallToolRequestParams::new("write")))
        .await
        .unwrap();
    assert_eq!(text(&write), "write done");
    assert_eq!(forbidden(), 1);
    assert_eq!(setup.scopes_asked().len(), 2);
    assert_eq!(setup.scopes_asked()[1], "notes:read notes:write");

    // purge: notes:admin is left out of every token; three step-ups, then the session
    // gives up.
    let purge = session
        .request(|| client.call_tool(CallToolRequestParams::new("purge")))
        .await;
    assert!(
        matches!(
            purge,
            Err(SessionError::TooManyAuthorizations { max: 3, .. })
        ),
        "{purge:?}"
    );
    assert_eq!(forbidden(), 5);
    assert_eq!(setup.scopes_asked().len(), 5);

    // The signed-in session is a token source, with the scopes granted.
    let token = session.token(&[]).await.unwrap();
    assert_eq!(token.scopes, ["notes:read", "notes:write"]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_refreshing_source_never_presents_an_expired_token() {
    // Tokens live 2 s, the margin is 3 s: every request gets a new token. (An `exp` is in
    // whole seconds, so a token minted late in a second has up to one second less; with a
    // 1 s lifetime, one minted at x.99 s had expired when it arrived.)
    let setup = setup(Duration::from_secs(2)).await;
    let source =
        Arc::new(Refreshing::new(setup.credentials().await).margin(Duration::from_secs(3)));
    let probes = setup.statuses.unauthorized.load(Ordering::SeqCst);
    let (http, transport) = setup.client(source.clone());
    let client = ClientConfig::default().serve(transport).await.unwrap();
    for _ in 0..4 {
        client
            .call_tool(CallToolRequestParams::new("read"))
            .await
            .unwrap();
        // Long enough, in total, for any reused token to have expired.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    client
        .call_tool(CallToolRequestParams::new("read"))
        .await
        .unwrap();
    let stats = source.stats();
    assert_eq!(stats.reused, 0, "{stats:?}");
    assert_eq!(stats.fetched, http.stats().tokens_requested);
    assert_eq!(setup.auth.hits.load(Ordering::SeqCst) as u64, stats.fetched);
    assert_eq!(setup.unauthorized(probes), 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_token_far_from_expiry_is_reused() {
    let setup = setup(Duration::from_secs(3600)).await;
    let source = Arc::new(Refreshing::new(setup.credentials().await));
    let (http, transport) = setup.client(source.clone());
    let client = ClientConfig::default().serve(transport).await.unwrap();
    for _ in 0..5 {
        client
            .call_tool(CallToolRequestParams::new("read"))
            .await
            .unwrap();
    }
    let requested = http.stats().tokens_requested;
    assert!(requested >= 7, "{requested}"); // initialize, initialized, five calls
    assert_eq!(setup.auth.hits.load(Ordering::SeqCst), 1);
    let stats = source.stats();
    assert_eq!((stats.fetched, stats.refreshes), (1, 0));
    assert_eq!(stats.reused, requested - 1);
    let distinct: BTreeSet<String> = setup.scopes_asked().into_iter().collect();
    assert_eq!(distinct.into_iter().collect::<Vec<_>>(), ["notes:read"]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn token_endpoint_refusals_keep_their_oauth_error() {
    let setup = setup(Duration::from_secs(60)).await;
    let wrong = ClientCredentials::discover(&setup.mcp_url, secret("wrong"))
        .await
        .unwrap();
    let err = wrong.token(&["notes:read".to_owned()]).await.unwrap_err();
    assert!(
        matches!(err, TokenSourceError::OAuth(_)) && err.to_string().contains("invalid_client"),
        "{err}"
    );
    let err = setup
        .credentials()
        .await
        .token(&[REFUSED.to_owned()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_scope"), "{err}");
    let token = setup
        .credentials()
        .await
        .token(&["notes:read".to_owned(), "notes:admin".to_owned()])
        .await
        .unwrap();
    assert_eq!(token.scopes, ["notes:read"]);
    assert!(token.remaining().unwrap() <= Duration::from_secs(60));
    assert!(!format!("{token:?}").contains(&token.token));
}

#[tokio::test]
async fn exchanged_tokens_act_for_the_user_and_step_up_within_the_users_scopes() {
    let setup = setup(Duration::from_secs(3600)).await;
    let issuer = &setup.auth.issuer;
    let alice = issuer
        .token(setup.mcp_url.clone())
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:read", "notes:write"])
        .mint()
        .unwrap();
    let agent_token = issuer
        .token(setup.mcp_url.clone())
        .subject(CLIENT_ID)
        .client_id(CLIENT_ID)
        .mint()
        .unwrap();
    let exchange =
        TokenExchangeClient::new(setup.exchange_url.clone(), FetchOptions::loopback_http())
            .unwrap();
    let exchanged =
        Exchanged::new(exchange, alice.clone(), setup.mcp_url.clone()).actor_token(agent_token);
    assert!(!format!("{exchanged:?}").contains(&alice));
    let source = Arc::new(Refreshing::new(exchanged));
    let (http, transport) = setup.client(source.clone());
    let client = ClientConfig::default().serve(transport).await.unwrap();

    client
        .call_tool(CallToolRequestParams::new("read"))
        .await
        .unwrap();
    let write = client
        .call_tool(CallToolRequestParams::new("write"))
        .await
        .unwrap();
    assert_eq!(text(&write), "write done");
    assert_eq!(http.stats().step_ups, 1);
    assert_eq!(http.scopes(), ["notes:read", "notes:write"]);

    // Alice has no notes:admin: the exchange refuses it, and the message is not resent.
    let forbidden = setup.statuses.forbidden.load(Ordering::SeqCst);
    let purge = client.call_tool(CallToolRequestParams::new("purge")).await;
    assert!(purge.is_err(), "{purge:?}");
    assert_eq!(
        setup.statuses.forbidden.load(Ordering::SeqCst),
        forbidden + 1
    );
    assert_eq!(http.stats().step_ups_failed, 1);
    let refused = source.token(&["notes:admin".to_owned()]).await.unwrap_err();
    assert_eq!(refused.error_code(), Some("invalid_scope"), "{refused}");
    assert!(matches!(refused, TokenSourceError::Exchange(_)));
    assert_eq!(source.stats().fetched, 2);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn no_token_means_nothing_is_sent() {
    #[derive(Debug)]
    struct Down;
    #[async_trait::async_trait]
    impl TokenSource for Down {
        async fn token(
            &self,
            _scopes: &[String],
        ) -> Result<rmcp_authz::agent::AccessToken, TokenSourceError> {
            Err(TokenSourceError::Other("the vault is sealed".to_owned()))
        }
    }
    let setup = setup(Duration::from_secs(60)).await;
    let (http, transport) = setup.client(Arc::new(Down));
    let err = ClientConfig::default().serve(transport).await.unwrap_err();
    assert!(
        err.to_string().contains("the vault is sealed") || format!("{err:?}").contains("sealed"),
        "{err:?}"
    );
    assert_eq!(http.stats().tokens_requested, 1);
    assert_eq!(setup.statuses.unauthorized.load(Ordering::SeqCst), 0);
}

/// Counts every request.
async fn count_requests(
    State(seen): State<Arc<AtomicUsize>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    seen.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// Counts the requests that carry an `Authorization` header.
async fn count_bearers(
    State(seen): State<Arc<AtomicUsize>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    if request.headers().contains_key("authorization") {
        seen.fetch_add(1, Ordering::SeqCst);
    }
    next.run(request).await
}

/// Serves `app` on 127.0.0.1, counting the requests with a bearer token; its `/mcp` URL.
async fn serve_counted(
    app: Router,
    seen: Arc<AtomicUsize>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = app.layer(middleware::from_fn_with_state(seen, count_bearers));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn nothing_is_sent_to_a_server_whose_metadata_names_another_resource_or_none() {
    let setup = setup(Duration::from_secs(60)).await;
    // A server elsewhere that claims to be the notes server: its verifier, and so its
    // protected resource metadata, name the notes server's URL.
    let verifier = setup
        .auth
        .issuer
        .verifier(setup.mcp_url.clone())
        .build()
        .unwrap();
    let authz = Authz::new(
        verifier,
        Policy::builder()
            .tool("read", "notes:read")
            .build()
            .unwrap(),
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let (impostor, task) =
        serve_counted(authz.router("/mcp", || Notes).unwrap(), seen.clone()).await;
    // And a server that publishes no metadata at all.
    let bare = Router::new().route("/mcp", post(|| async { StatusCode::OK }));
    let (silent, silent_task) = serve_counted(bare, seen.clone()).await;

    // rmcp's discovery refuses to get client credentials for either.
    let err = ClientCredentials::discover(&impostor, secret(CLIENT_SECRET))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TokenSourceError::ResourceMismatch { named, .. } if *named == setup.mcp_url),
        "{err}"
    );
    assert!(
        ClientCredentials::discover(&silent, secret(CLIENT_SECRET))
            .await
            .is_err()
    );

    // A client with tokens in hand asks for none, and sends none.
    let source = Arc::new(Refreshing::new(setup.credentials().await));
    for (url, expected) in [
        (&impostor, "ResourceMismatch"),
        (&silent, "NoResourceMetadata"),
    ] {
        let http =
            AuthorizedHttpClient::new(reqwest::Client::new(), source.clone(), ["notes:read"]);
        let transport = StreamableHttpClientTransport::with_client(
            http.clone(),
            StreamableHttpClientTransportConfig::with_uri(url.as_str()),
        );
        let err = ClientConfig::default().serve(transport).await.unwrap_err();
        let shown = format!("{err:?}");
        assert!(shown.contains(expected), "{url}: {shown}");
        assert_eq!(http.stats().tokens_requested, 0, "{url}");
        let checked = agent::check_resource(url).await.unwrap_err();
        assert!(format!("{checked:?}").contains(expected), "{checked:?}");
    }
    // An OAuth session authorizes for neither: nothing asked of the authorization server.
    let hits = setup.auth.hits.load(Ordering::SeqCst);
    for url in [&impostor, &silent] {
        let session = OAuthSession::builder(
            url.as_str(),
            Credentials::ClientCredentials(secret(CLIENT_SECRET)),
        )
        .build()
        .await
        .unwrap();
        let err = session
            .connect(ClientConfig::default())
            .await
            .map(|_| ())
            .unwrap_err();
        if url == &impostor {
            assert!(
                matches!(&err, rmcp_authz::agent::SessionError::ResourceMismatch { named, .. } if *named == setup.mcp_url),
                "{err}"
            );
        }
    }
    assert_eq!(setup.auth.hits.load(Ordering::SeqCst), hits);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    assert_eq!(source.stats().fetched, 0);
    // The notes server itself passes the check.
    agent::check_resource(&setup.mcp_url).await.unwrap();
    task.abort();
    silent_task.abort();
}

/// An MCP server whose one tool, `relay`, reads a note from the notes server on its
/// caller's behalf.
#[derive(Clone)]
struct Desk {
    downstream: Arc<OnBehalfOf>,
    notes: String,
}

impl ServerHandler for Desk {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let schema = json!({"type": "object"}).as_object().unwrap().clone();
        (name == "relay").then(|| Tool::new("relay", "reads a note downstream", Arc::new(schema)))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let failed = |e: String| McpError::internal_error(e, None);
        let subject = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| rmcp_authz::SubjectToken::of(&parts.extensions))
            .ok_or_else(|| failed("no caller token".to_owned()))?;
        let source = self.downstream.source(subject, &self.notes);
        let transport = agent::transport(self.notes.clone(), source, ["notes:read"]);
        let client = ClientConfig::default()
            .serve(transport)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let read = client
            .call_tool(CallToolRequestParams::new("read"))
            .await
            .map_err(|e| failed(e.to_string()))?;
        client.cancel().await.map_err(|e| failed(e.to_string()))?;
        Ok(read.into())
    }
}

#[tokio::test]
async fn a_tool_calls_downstream_on_its_callers_behalf_with_one_exchange() {
    let setup = setup(Duration::from_secs(3600)).await;
    let issuer = &setup.auth.issuer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let desk_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let exchange =
        TokenExchangeClient::new(setup.exchange_url.clone(), FetchOptions::loopback_http())
            .unwrap();
    let desk = Desk {
        downstream: Arc::new(OnBehalfOf::new(exchange)),
        notes: setup.mcp_url.clone(),
    };
    let downstream = desk.downstream.clone();
    let authz = Authz::new(
        issuer.verifier(desk_url.clone()).build().unwrap(),
        Policy::builder().tool("relay", "desk:use").build().unwrap(),
    );
    let app = authz.router("/mcp", move || desk.clone()).unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });

    let alice = issuer
        .token(desk_url.clone())
        .subject("alice")
        .scopes(["desk:use", "notes:read"])
        .mint()
        .unwrap();
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(desk_url.as_str()).auth_header(alice),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    for _ in 0..2 {
        let relayed = client
            .call_tool(CallToolRequestParams::new("relay"))
            .await
            .unwrap();
        assert_eq!(text(&relayed), "read done", "{relayed:?}");
    }
    // One exchange served both calls; the notes server took every exchanged token.
    assert_eq!(setup.exchanges.load(Ordering::SeqCst), 1);
    assert_eq!(setup.statuses.unauthorized.load(Ordering::SeqCst), 0);
    downstream.clear();
    client.cancel().await.unwrap();
    task.abort();
}
