//! The `Authorized` wrapper must forward every `ServerHandler` method: rmcp gives each one
//! a default, so a method the wrapper forgets silently answers with rmcp's default instead
//! of the wrapped server's. One test compares the wrapper's methods with the ones rmcp's
//! source declares (found through `cargo metadata`, so it follows the rmcp in the lock
//! file); the others check, with a spy handler behind the wrapper, that calls reach it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientNotification, ClientRequest, CustomNotification, CustomRequest, CustomResult, ErrorCode,
    GetSkillRequestParams, Implementation, InitializeRequestParams, ListSkillsResult,
    PaginatedRequestParams, PingRequest, ProtocolVersion, ServerCapabilities, ServerConfig,
    ServerResult, SubscriptionFilter, Tool,
};
use rmcp::service::{
    NotificationContext, RequestContext, RoleClient, RunningService, ServiceError,
};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Policy, ScopeExpr};
use rmcp_authz::server::Authorized;
use rmcp_authz::{Authz, Principal};
use rmcp_authz_tests::server::connect_in_memory;
use serde_json::{Value, json};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------------------
// The method list, from source.
// ---------------------------------------------------------------------------------------

/// The directory of the `rmcp` package this workspace builds against.
fn rmcp_source_dir() -> PathBuf {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let id_of = |name: &str| -> Vec<&str> {
        packages
            .iter()
            .filter(|p| p["name"] == name)
            .filter_map(|p| p["id"].as_str())
            .collect()
    };
    // The rmcp that rmcp-authz itself depends on (there could be several rmcp versions).
    let sdk_id = *id_of("rmcp-authz").first().expect("rmcp-authz in metadata");
    let rmcp_ids = id_of("rmcp");
    let node = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .find(|n| n["id"] == sdk_id)
        .expect("rmcp-authz in the resolve graph");
    let rmcp_id = node["deps"]
        .as_array()
        .expect("deps")
        .iter()
        .filter_map(|d| d["pkg"].as_str())
        .find(|pkg| rmcp_ids.contains(pkg))
        .expect("rmcp-authz depends on rmcp");
    let package = packages
        .iter()
        .find(|p| p["id"] == rmcp_id)
        .expect("the rmcp package");
    let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
    manifest.parent().expect("manifest directory").to_path_buf()
}

/// Identifiers following the keyword `fn` on a line.
fn fn_names(line: &str) -> impl Iterator<Item = String> + '_ {
    let words: Vec<&str> = line
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let names: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "fn")
        .map(|w| w[1].to_owned())
        .collect();
    names.into_iter()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// The methods declared in rmcp's `server_handler_methods!` (the body of the
/// `ServerHandler` trait), comments and doc examples left out.
fn upstream_methods(source: &str) -> Vec<String> {
    let start = source
        .find("macro_rules! server_handler_methods")
        .expect("rmcp's server.rs has `macro_rules! server_handler_methods`");
    let end = source[start..]
        .find("macro_rules! impl_server_handler_for_wrapper")
        .map(|i| start + i)
        .expect("rmcp's server.rs has `macro_rules! impl_server_handler_for_wrapper`");
    source[start..end]
        .lines()
        .filter(|l| !is_comment(l))
        .flat_map(fn_names)
        .collect()
}

/// The methods of `impl<H: ServerHandler> ServerHandler for Authorized<H>`: the items at
/// the impl's own indentation, up to its closing brace in column 0 (rustfmt's layout).
fn wrapper_methods(source: &str) -> Vec<String> {
    let header = "impl<H: ServerHandler> ServerHandler for Authorized<H>";
    let start = source
        .find(header)
        .unwrap_or_else(|| panic!("sdk/src/server.rs has `{header}`"));
    let body = &source[start..];
    let end = body
        .find("\n}\n")
        .expect("the impl ends with a closing brace in column 0");
    body[..end]
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("    ") && !l.starts_with("     ") && !is_comment(l))
        .flat_map(fn_names)
        .collect()
}

#[test]
fn wrapper_implements_every_server_handler_method() {
    let dir = rmcp_source_dir();
    let path = dir.join("src/handler/server.rs");
    let upstream_text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let upstream = upstream_methods(&upstream_text);
    let upstream_set: BTreeSet<&str> = upstream.iter().map(String::as_str).collect();
    assert_eq!(
        upstream.len(),
        upstream_set.len(),
        "a method name appears twice in rmcp's list, so the parser read something else: {upstream:?}"
    );
    assert!(
        upstream.len() >= 25,
        "only {} methods found in {}; the parser no longer fits rmcp's source: {upstream:?}",
        upstream.len(),
        path.display()
    );
    for name in [
        "call_tool",
        "list_tools",
        "read_resource",
        "get_info",
        "ping",
        "on_custom_request",
        "on_custom_notification",
    ] {
        assert!(
            upstream_set.contains(name),
            "{name} not found: {upstream:?}"
        );
    }
    // Names from rmcp's doc example must not be counted.
    assert!(!upstream_set.contains("MyServer"));

    let wrapper_text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sdk/src/server/handler.rs"
    ));
    let wrapper = wrapper_methods(wrapper_text);
    let wrapper_set: BTreeSet<&str> = wrapper.iter().map(String::as_str).collect();
    assert!(
        wrapper.len() >= 25 && wrapper_set.contains("call_tool"),
        "the wrapper parser found too little: {wrapper:?}"
    );
    // `principal`, `authorize`, `denied` are helpers outside the impl.
    assert!(!wrapper_set.contains("authorize"), "{wrapper:?}");

    let missing: Vec<&str> = upstream_set.difference(&wrapper_set).copied().collect();
    assert!(
        missing.is_empty(),
        "Authorized<H> does not forward these ServerHandler methods of rmcp {} (they would \
         silently use rmcp's defaults): {missing:?}",
        dir.display()
    );
    let extra: Vec<&str> = wrapper_set.difference(&upstream_set).copied().collect();
    assert!(
        extra.is_empty(),
        "the wrapper has methods rmcp's trait does not declare: {extra:?}"
    );
}

#[test]
fn method_parsers_skip_comments_and_nested_items() {
    let upstream = "macro_rules! server_handler_methods {\n    () => {\n        fn ping(\n        /// fn not_this(\n        // fn nor_this()\n        fn get_tool(&self, _name: &str) -> Option<Tool> {\n    };\n}\nmacro_rules! impl_server_handler_for_wrapper {\n        fn after(\n";
    assert_eq!(upstream_methods(upstream), ["ping", "get_tool"]);
    let wrapper = "fn before() {}\nimpl<H: ServerHandler> ServerHandler for Authorized<H> {\n    fn ping(\n        fn nested() {}\n    // fn commented()\n    async fn complete(\n}\n\nfn after() {}\n";
    assert_eq!(wrapper_methods(wrapper), ["ping", "complete"]);

    // On the real source, a forwarding method taken out is noticed.
    let real = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sdk/src/server/handler.rs"
    ));
    let without_listen = real.replacen("fn listen(", "fn not_listen(", 1);
    assert_ne!(
        without_listen, real,
        "the wrapper no longer has `fn listen(`"
    );
    let names = wrapper_methods(&without_listen);
    assert!(!names.iter().any(|n| n == "listen"), "{names:?}");
    assert!(wrapper_methods(real).iter().any(|n| n == "listen"));
}

// ---------------------------------------------------------------------------------------
// Calls reach the wrapped handler.
// ---------------------------------------------------------------------------------------

const SPY_NAME: &str = "forwarding-spy-5e1c";
const SPY_VERSION: ProtocolVersion = ProtocolVersion::V_2025_03_26;
const AUDIENCE: &str = "urn:forwarding:test";

/// A handler that records what reached it.
#[derive(Debug, Clone, Default)]
struct Spy {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Spy {
    fn record(&self, what: impl Into<String>) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.into());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (briefly) until `what` has been recorded: notifications have no reply.
    async fn saw(&self, what: &str) -> bool {
        let deadline = tokio::time::Instant::now() + STEP;
        while tokio::time::Instant::now() < deadline {
            if self.calls().iter().any(|c| c == what) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl ServerHandler for Spy {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_skills()
                .build(),
        );
        info.protocol_version = SPY_VERSION;
        info.server_info = Implementation::new(SPY_NAME, "9.9.9");
        info.instructions = Some("spy instructions".to_owned());
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&[SPY_VERSION])
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == "spy_tool").then(|| Tool::new("spy_tool", "a tool", serde_json::Map::new()))
    }

    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().prompts_list_changed().build())
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.record("ping");
        Ok(())
    }

    async fn on_initialized(&self, _context: NotificationContext<RoleServer>) {
        self.record("initialized");
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        self.record("roots_list_changed");
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        self.record(format!("notification {}", notification.method));
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.record(format!("request {}", request.method));
        let subject = context
            .extensions
            .get::<Principal>()
            .and_then(|p| p.subject().map(str::to_owned));
        Ok(CustomResult::new(
            json!({ "echo": request.params, "subject": subject }),
        ))
    }

    async fn list_skills(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        self.record("list_skills");
        Ok(ListSkillsResult::with_all_items(Vec::new()))
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetSkillResult, McpError> {
        self.record("get_skill");
        Err(McpError::invalid_params(
            format!("spy has no skill {}", request.uri),
            None,
        ))
    }
}

fn spy_policy() -> Policy {
    Policy::builder()
        .tool("spy_tool", "spy:use")
        .custom_request("spy/echo", ScopeExpr::authenticated())
        .custom_request("spy/admin", "spy:admin")
        .custom_request("spy/poke", ScopeExpr::authenticated())
        .skill("nope", "spy:use")
        .build()
        .expect("spy policy")
}

/// The spy behind `Authz::wrap_for` for a caller `spy-user` with scope `spy:use`.
async fn wrapped_spy() -> (Spy, Authorized<Spy>) {
    let issuer = DevIssuer::new("https://auth.forwarding.test.invalid").expect("issuer");
    let verifier = issuer.verifier(AUDIENCE).build().expect("verifier");
    let authz = Authz::new(verifier, spy_policy());
    let token = issuer
        .token(AUDIENCE)
        .subject("spy-user")
        .scopes(["spy:use"])
        .mint()
        .expect("mint");
    let principal = authz.verifier().verify(&token).await.expect("verify");
    let spy = Spy::default();
    let wrapped = authz
        .wrap_for(spy.clone(), principal)
        .expect("the policy fits the spy");
    (spy, wrapped)
}

/// Serves `wrapped` on one end of an in-memory pipe and connects a client to the other.
async fn connect(wrapped: Authorized<Spy>) -> RunningService<RoleClient, ()> {
    connect_in_memory(wrapped).await.0
}

async fn request(
    client: &RunningService<RoleClient, ()>,
    request: ClientRequest,
) -> Result<ServerResult, ServiceError> {
    timeout(STEP, client.send_request(request))
        .await
        .expect("answered in time")
}

#[tokio::test]
async fn synchronous_methods_answer_for_the_wrapped_handler() {
    let (spy, wrapped) = wrapped_spy().await;
    assert_eq!(wrapped.get_info().server_info.name, SPY_NAME);
    assert_eq!(
        wrapped.supported_protocol_versions().as_ref(),
        spy.supported_protocol_versions().as_ref()
    );
    assert!(wrapped.get_tool("spy_tool").is_some());
    assert!(wrapped.get_tool("other").is_none());
    assert_eq!(
        wrapped.accepted_subscription_filter(&SubscriptionFilter::new()),
        Some(SubscriptionFilter::builder().prompts_list_changed().build())
    );
    let negotiated = wrapped
        .negotiate_initialize(&InitializeRequestParams::default())
        .expect("negotiate");
    assert_eq!(negotiated.server_info.name, SPY_NAME);
    assert_eq!(negotiated.protocol_version, SPY_VERSION);
}

#[tokio::test]
async fn initialize_and_notifications_reach_the_wrapped_handler() {
    let (spy, wrapped) = wrapped_spy().await;
    let client = connect(wrapped).await;
    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some(SPY_NAME)
    );
    assert_eq!(info.instructions.as_deref(), Some("spy instructions"));
    assert_eq!(info.protocol_version, SPY_VERSION);
    assert!(spy.saw("initialized").await, "calls: {:?}", spy.calls());

    // A custom notification no rule names is dropped; one with a rule goes through (in
    // order, so by the time the second arrives the first was dropped, not delayed).
    for method in ["spy/unruled", "spy/poke"] {
        client
            .send_notification(ClientNotification::CustomNotification(
                CustomNotification::new(method, Some(json!({"n": 1}))),
            ))
            .await
            .expect("send notification");
    }
    assert!(
        spy.saw("notification spy/poke").await,
        "calls: {:?}",
        spy.calls()
    );
    assert!(
        !spy.calls().contains(&"notification spy/unruled".to_owned()),
        "calls: {:?}",
        spy.calls()
    );
    client
        .notify_roots_list_changed()
        .await
        .expect("send roots/list_changed");
    assert!(
        spy.saw("roots_list_changed").await,
        "calls: {:?}",
        spy.calls()
    );

    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
}

#[tokio::test]
async fn requests_reach_the_wrapped_handler() {
    let (spy, wrapped) = wrapped_spy().await;
    let client = connect(wrapped).await;

    let pong = request(&client, ClientRequest::PingRequest(PingRequest::default())).await;
    assert!(matches!(pong, Ok(ServerResult::EmptyResult(_))), "{pong:?}");
    assert!(
        spy.calls().contains(&"ping".to_owned()),
        "{:?}",
        spy.calls()
    );

    let skills = timeout(STEP, client.list_skills(None))
        .await
        .expect("answered in time")
        .expect("skills/list reaches the spy");
    assert!(skills.skills.is_empty());
    assert!(
        spy.calls().contains(&"list_skills".to_owned()),
        "{:?}",
        spy.calls()
    );

    let skill = timeout(
        STEP,
        client.get_skill(GetSkillRequestParams::new("skill://nope/SKILL.md")),
    )
    .await
    .expect("answered in time");
    match skill {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
            assert!(e.message.contains("spy has no skill"), "{e:?}");
        }
        other => panic!("skills/get: expected the spy's error, got {other:?}"),
    }

    // A custom request with a rule reaches the spy, with the principal in its context.
    let echo = request(
        &client,
        ClientRequest::CustomRequest(CustomRequest::new("spy/echo", Some(json!({"x": 1})))),
    )
    .await;
    match echo {
        Ok(ServerResult::CustomResult(CustomResult(value))) => {
            assert_eq!(value["echo"], json!({"x": 1}), "{value}");
            assert_eq!(value["subject"], "spy-user", "{value}");
        }
        other => panic!("spy/echo: {other:?}"),
    }
    assert!(
        spy.calls().contains(&"request spy/echo".to_owned()),
        "{:?}",
        spy.calls()
    );

    // Without the scope, or without a rule, it is refused before the spy sees it.
    for method in ["spy/admin", "spy/unruled"] {
        let refused = request(
            &client,
            ClientRequest::CustomRequest(CustomRequest::new(method, None)),
        )
        .await;
        match refused {
            Err(ServiceError::McpError(e)) => assert_eq!(e.code, ErrorCode(-32003), "{e:?}"),
            other => panic!("{method}: expected a denial, got {other:?}"),
        }
        let seen = format!("request {method}");
        assert!(!spy.calls().contains(&seen), "{method} reached the spy");
    }

    timeout(STEP, client.cancel())
        .await
        .expect("close in time")
        .expect("close");
}
