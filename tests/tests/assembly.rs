//! What a wrapper trusts over HTTP: only what its own `Authz`'s layer verified and decided.
//! A layer of another `Authz` in front of it (a lenient policy, another issuer) is as
//! good as none: the request is refused as unauthenticated, never served on the other
//! layer's word.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp_authz::Authz;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::Policy;
use rmcp_authz_tests::http::{call_body, mcp_post, send};
use rmcp_authz_tests::notes::Notes;
use rmcp_authz_tests::server::TestServer;

#[tokio::test]
async fn a_wrapper_does_not_trust_another_authz_s_layer() {
    // The strict `Authz` wraps the handlers; a lenient one's layer is put in front.
    let strict = {
        let issuer = DevIssuer::new("https://strict.test.invalid").expect("issuer");
        let verifier = issuer
            .verifier("https://strict.test.invalid/mcp")
            .build()
            .expect("verifier");
        let policy = Policy::builder()
            .tool("whoami", "notes:admin")
            .build()
            .expect("policy");
        Authz::new(verifier, policy)
    };
    let lenient = Policy::builder()
        .tool("whoami", "notes:read")
        .build()
        .expect("policy");
    let server = TestServer::start_app(lenient, None, move |lenient_authz| {
        strict.wrap(Notes::new()).expect("the policy fits");
        let factory = move || strict.wrap(Notes::new()).map_err(std::io::Error::other);
        let mcp = StreamableHttpService::new(
            factory,
            Arc::new(LocalSessionManager::default()),
            lenient_authz.http_config(),
        );
        axum::Router::new().nest_service("/mcp", lenient_authz.protect(mcp))
    })
    .await;

    // The lenient layer lets the call through; the strict wrapper does not take its word.
    let token = server.token(&["notes:read"]);
    let raw = send(mcp_post(&server, Some(&token), &call_body(1, "whoami"))).await;
    let message = raw.message();
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(message["error"]["code"], -32004, "{message}");
    assert!(message.get("result").is_none(), "served: {message}");
}
