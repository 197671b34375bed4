//! Against a real authorization server: `oidc-provider` (npm, OpenID Certified) on
//! 127.0.0.1, issuing JWT access tokens with the client-credentials grant and RFC 8707
//! resource indicators. The MCP server finds the provider's keys by discovery alone and
//! follows them through a key rotation without restarting; opaque tokens are checked by
//! introspection.

use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp_authz::Authz;
use rmcp_authz::remote::{
    FetchOptions, IntrospectionVerifier, RemoteJwks, RemoteJwksOptions, discover,
};
use rmcp_authz::token::{AuthError, JwtVerifier, Verifier};
use rmcp_authz_tests::http::{bearer, call_body, post_to, send};
use rmcp_authz_tests::notes::{http_app, notes_policy};
use rmcp_authz_tests::provider::{self, Provider};
use rmcp_authz_tests::server::legacy_client;

fn loopback() -> RemoteJwksOptions {
    RemoteJwksOptions::default().fetch(FetchOptions::loopback_http())
}

/// The notes server on 127.0.0.1, trusting `provider` found by discovery alone.
struct NotesServer {
    url: String,
    jwks: RemoteJwks,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NotesServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn notes_server(provider: &Provider) -> NotesServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    // What `JwtVerifier::discover` does, keeping a handle on the JWK Set for its stats.
    let metadata = discover(provider.issuer(), &FetchOptions::loopback_http())
        .await
        .expect("discovery finds the provider's metadata");
    let jwks_uri = metadata.jwks_uri.expect("a jwks_uri");
    assert_eq!(jwks_uri, provider.jwks_uri());
    let jwks = RemoteJwks::new(jwks_uri, loopback()).unwrap();
    let verifier = JwtVerifier::builder(provider.issuer(), url.clone())
        .remote_jwks(jwks.clone())
        .build()
        .unwrap();
    let authz = Authz::new(verifier, notes_policy());
    assert_eq!(authz.authorization_servers(), [provider.issuer()]);
    let app = http_app(
        &authz,
        StreamableHttpServerConfig::default().with_legacy_session_mode(true),
    )
    .unwrap();
    let task = tokio::spawn(async move {
        let _ = authz.serve(listener, app, std::future::pending()).await;
    });
    NotesServer { url, jwks, task }
}

async fn call(server: &NotesServer, token: &str, tool: &str) -> Result<String, String> {
    let client = legacy_client(&server.url, token)
        .await
        .map_err(|e| e.to_string())?;
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()))
        .await
        .map_err(|e| e.to_string());
    let _ = client.cancel().await;
    let result = result?;
    Ok(result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_verify_end_to_end_and_survive_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = Provider::start(dir.path()).await;
    let server = notes_server(&provider).await;
    // `JwtVerifier::discover` finds the same keys.
    let discovered = JwtVerifier::discover(provider.issuer(), server.url.clone(), loopback())
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(discovered.remote_url(), Some(provider.jwks_uri()));

    // A token for this server: verified through the rmcp server, scopes in the Principal.
    let reader = provider.token(&server.url, "notes:read").await;
    assert_eq!(
        call(&server, &reader, "list_notes").await.unwrap(),
        "welcome"
    );
    let who: serde_json::Value =
        serde_json::from_str(&call(&server, &reader, "whoami").await.unwrap()).unwrap();
    assert_eq!(who["scopes"], serde_json::json!(["notes:read"]), "{who}");
    assert_eq!(who["client"], provider::AGENT_ID, "{who}");
    let denied = call(&server, &reader, "write_note").await.unwrap_err();
    assert!(
        denied.to_lowercase().contains("insufficient scope"),
        "{denied}"
    );

    // A token the same provider issued for another resource is refused.
    let foreign = provider.token("http://127.0.0.1:9/mcp", "notes:read").await;
    let refused = send(
        post_to(&server.url, call_body(1, "list_notes").to_string())
            .header("authorization", bearer(&foreign)),
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused
            .www_authenticate()
            .param("error_description")
            .is_some_and(|d| d.contains("not meant for this resource")),
        "{refused:?}"
    );

    // The provider rotates its signing key (restarted with a new key first, the old one
    // still published). Our server is not restarted.
    let old_kid = kid(&reader);
    provider.rotate().await;
    let rotated = provider.token(&server.url, "notes:read notes:write").await;
    assert_ne!(
        kid(&rotated),
        old_kid,
        "the provider signs with the new key"
    );
    assert_eq!(
        call(&server, &rotated, "list_notes").await.unwrap(),
        "welcome"
    );
    assert_eq!(
        call(&server, &reader, "list_notes").await.unwrap(),
        "welcome",
        "a token signed with the old, still published key keeps working"
    );
    let stats = server.jwks.stats();
    assert_eq!(stats.unknown_kid_fetches, 1, "{stats:?}");
    assert_eq!(stats.fetch_failures, 0, "{stats:?}");
    assert!(stats.keys >= 2, "old and new keys: {stats:?}");
}

/// The `kid` of a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_provider_tokens_are_checked_by_introspection() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path()).await;
    let verifier = IntrospectionVerifier::builder(
        provider.introspection_endpoint(),
        provider.issuer(),
        provider::OPAQUE_RESOURCE,
    )
    .client_credentials(provider::INTROSPECTOR_ID, provider::INTROSPECTOR_SECRET)
    .fetch_options(FetchOptions::loopback_http())
    // Client-credentials tokens have no end user, so no `sub`.
    .required_claims(Vec::<String>::new())
    .build()
    .unwrap();
    let opaque = provider
        .token(provider::OPAQUE_RESOURCE, "notes:read notes:write")
        .await;
    assert!(opaque.split('.').count() != 3, "an opaque token: {opaque}");
    let who = verifier.verify(&opaque).await.expect("active");
    assert_eq!(who.client_id(), Some(provider::AGENT_ID));
    assert_eq!(who.scopes(), ["notes:read", "notes:write"]);
    assert_eq!(who.issuer(), provider.issuer());
    assert!(matches!(
        verifier.verify("not-a-token-it-issued").await,
        Err(AuthError::Inactive)
    ));
}
