//! A first end-to-end pass over HTTP: an rmcp client, the notes server, real tokens.

use rmcp::model::CallToolRequestParams;
use rmcp_authz_tests::server::TestServer;

#[tokio::test]
async fn allowed_and_denied_calls_over_http() {
    let server = TestServer::start(true).await;
    let client = server
        .legacy_client(&server.token(&["notes:read"]))
        .await
        .expect("connect");
    let tools = client.list_tools(None).await.expect("list");
    let names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    println!("tools: {names:?} cache {:?}", tools.cache_scope);
    let ok = client
        .call_tool(CallToolRequestParams::new("list_notes"))
        .await;
    println!("list_notes: {ok:?}");
    let denied = client.call_tool(CallToolRequestParams::new("purge")).await;
    println!("purge: {denied:?}");
    let who = client.call_tool(CallToolRequestParams::new("whoami")).await;
    println!("whoami: {who:?}");
    client.cancel().await.unwrap();

    let modern = server
        .modern_client(&server.token(&["notes:write"]))
        .await
        .expect("connect 2026");
    let tools = modern.list_tools(None).await.expect("list");
    println!(
        "2026 tools: {:?}",
        tools
            .tools
            .iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    );
    let denied = modern.call_tool(CallToolRequestParams::new("purge")).await;
    println!("2026 purge: {denied:?}");
    let none = server.legacy_client("").await;
    println!("no token: {:?}", none.err());
}
