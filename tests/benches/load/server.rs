//! The server side of the harness: the child process `load serve ...`, one MCP server on
//! 127.0.0.1 pinned (by the parent, with `taskset`) to one CPU, on a 1-worker tokio
//! runtime. It prints its port on stdout and serves until its stdin closes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt as _;
use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler, tool, tool_handler, tool_router};
use rmcp_authz::Authz;
use rmcp_authz::audit::{Auditor, JsonLines};
use rmcp_authz::policy::Policy;
use rmcp_authz::token::{CacheOptions, CachedVerifier, JwtVerifier};
use serde::Deserialize;

use crate::{AUDIENCE, ISSUER, Mode, NOTE_TEXT, Variant};

/// The tiny tool server every variant serves: `read_note` (allowed to the benchmark's
/// token), `delete_note` (denied to it by the policy; stateless here, so the bare server
/// can run it forever), and `fillers` tools that only exist to make the policy larger.
#[derive(Clone)]
pub(crate) struct Tiny {
    tool_router: Arc<ToolRouter<Self>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct NoteId {
    /// The note's id.
    id: String,
}

#[tool_router]
impl Tiny {
    pub(crate) fn new(fillers: usize) -> Self {
        let mut router = Self::tool_router();
        for i in 0..fillers {
            let schema = serde_json::json!({"type": "object", "properties": {}});
            let serde_json::Value::Object(schema) = schema else {
                unreachable!("a JSON object")
            };
            router.add_route(ToolRoute::new_dyn(
                Tool::new(
                    filler_name(i),
                    "A tool that makes the policy larger",
                    schema,
                ),
                filler_call,
            ));
        }
        Tiny {
            tool_router: Arc::new(router),
        }
    }

    #[tool(description = "Read one note")]
    async fn read_note(&self, Parameters(NoteId { id }): Parameters<NoteId>) -> String {
        let _ = id;
        NOTE_TEXT.to_owned()
    }

    #[tool(description = "Delete a note")]
    async fn delete_note(&self, Parameters(NoteId { id }): Parameters<NoteId>) -> String {
        format!("deleted {id}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tiny {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The name of filler tool `i`.
pub(crate) fn filler_name(i: usize) -> String {
    format!("filler_{i:05}")
}

type CallFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<CallToolResponse, McpError>> + Send + 'a>,
>;

fn filler_call(_context: ToolCallContext<'_, Tiny>) -> CallFuture<'_> {
    Box::pin(async { Ok(CallToolResult::success(vec![ContentBlock::text("ok")]).into()) })
}

/// The policy of the `authz` variants: `policy_tools` rules in all (the two real tools
/// and fillers), every filler readable with `notes:read` so the filtered `tools/list` is
/// the bare server's list.
pub(crate) fn policy(policy_tools: usize) -> Policy {
    let mut builder = Policy::builder()
        .implies("notes:admin", ["notes:read"])
        .tool("read_note", "notes:read")
        .tool("delete_note", "notes:admin");
    for i in 0..policy_tools.saturating_sub(2) {
        builder = builder.tool(filler_name(i), "notes:read");
    }
    builder.build().expect("the benchmark policy is valid")
}

/// What `load serve` was asked to run.
#[derive(Debug)]
pub(crate) struct ServeArgs {
    pub(crate) variant: Variant,
    pub(crate) mode: Mode,
    pub(crate) nodelay: bool,
    pub(crate) policy_tools: usize,
    pub(crate) jwks: PathBuf,
    pub(crate) audit_dir: PathBuf,
}

impl ServeArgs {
    /// The arguments after `serve` for the child command line.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".to_owned(),
            "--variant".to_owned(),
            self.variant.name().to_owned(),
            "--mode".to_owned(),
            self.mode.name().to_owned(),
            "--policy-tools".to_owned(),
            self.policy_tools.to_string(),
            "--jwks".to_owned(),
            self.jwks.display().to_string(),
            "--audit-dir".to_owned(),
            self.audit_dir.display().to_string(),
        ];
        if !self.nodelay {
            args.push("--no-nodelay".to_owned());
        }
        args
    }

    pub(crate) fn parse(args: &[String]) -> Result<ServeArgs, String> {
        let mut variant = None;
        let mut mode = None;
        let mut nodelay = true;
        let mut policy_tools = crate::DEFAULT_POLICY_TOOLS;
        let mut jwks = None;
        let mut audit_dir = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--variant" => variant = Some(Variant::parse(&value()?)?),
                "--mode" => mode = Some(Mode::parse(&value()?)?),
                "--no-nodelay" => nodelay = false,
                "--policy-tools" => {
                    policy_tools = value()?
                        .parse()
                        .map_err(|e| format!("--policy-tools: {e}"))?
                }
                "--jwks" => jwks = Some(PathBuf::from(value()?)),
                "--audit-dir" => audit_dir = Some(PathBuf::from(value()?)),
                other => return Err(format!("serve: unknown argument {other:?}")),
            }
        }
        Ok(ServeArgs {
            variant: variant.ok_or("serve needs --variant")?,
            mode: mode.ok_or("serve needs --mode")?,
            nodelay,
            policy_tools,
            jwks: jwks.ok_or("serve needs --jwks")?,
            audit_dir: audit_dir.ok_or("serve needs --audit-dir")?,
        })
    }
}

/// Runs the child: builds the server, prints its port, serves until stdin closes.
pub(crate) fn serve_main(args: ServeArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind 127.0.0.1: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("local addr: {e}"))?
        .port();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(args.mode == Mode::Session)
        .with_json_response(args.mode == Mode::Json);
    // The same server in every variant: the policy's fillers exist in the bare one too.
    let tiny = Tiny::new(args.policy_tools.saturating_sub(2));
    let sessions = Arc::new(LocalSessionManager::default());
    // rmcp's service, unwrapped.
    let plain = |tiny: Tiny, sessions, config| {
        let mcp = StreamableHttpService::new(move || Ok(tiny.clone()), sessions, config);
        axum::Router::new().nest_service("/mcp", mcp)
    };
    let (app, authz) = match args.variant {
        Variant::Bare => (plain(tiny, sessions, config), None),
        Variant::Authz | Variant::AuthzNoCache | Variant::NoAudit => {
            let verifier = JwtVerifier::builder(ISSUER, AUDIENCE)
                .jwks_file(&args.jwks)
                .build()
                .map_err(|e| format!("verifier: {e}"))?;
            let policy = policy(args.policy_tools);
            let mut builder = if args.variant == Variant::AuthzNoCache {
                Authz::builder(verifier, policy)
            } else {
                let cached = CachedVerifier::new(verifier, CacheOptions::default());
                Authz::builder(cached, policy)
            };
            if matches!(args.variant, Variant::Authz | Variant::AuthzNoCache) {
                let sink = JsonLines::open(args.audit_dir.join("audit.jsonl"))
                    .map_err(|e| format!("audit file: {e}"))?;
                // Buffered, the default durability.
                let auditor = Auditor::builder(Arc::new(sink))
                    .build()
                    .map_err(|e| format!("auditor: {e}"))?;
                builder = builder.auditor(auditor);
            }
            let authz = builder.build();
            // As the README's quick start: the tools checked once, at start-up.
            let app = authz
                .router_with("/mcp", move || tiny.clone(), config)
                .map_err(|e| e.to_string())?;
            (app, Some(authz))
        }
    };

    // Stop when the parent closes our stdin (or dies).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let shutdown = async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    println!("{port}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let nodelay = args.nodelay;
    let listener = listener.tap_io(move |tcp| {
        if nodelay {
            let _ = tcp.set_nodelay(true);
        }
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    if let Some(auditor) = authz.as_ref().and_then(Authz::auditor) {
        auditor.close().await;
    }
    served.map_err(|e| format!("serve: {e}"))
}
