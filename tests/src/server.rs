//! Starting the notes server behind `rmcp-authz` on 127.0.0.1 for a test, and rmcp
//! clients that talk to it.

use rmcp::ServiceExt;
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp_authz::Authz;
use rmcp_authz::dev::DevIssuer;
use tokio::task::JoinHandle;

use crate::notes::{http_app, notes_policy};

/// The issuer every test server trusts.
pub const ISSUER: &str = "https://auth.test.invalid";

/// A notes server listening on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp` (also the token audience).
    pub url: String,
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    /// The development issuer whose tokens the server accepts.
    pub issuer: DevIssuer,
    /// The server's `Authz`.
    pub authz: Authz,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts the notes server with sessions (`stateful`) or without, under
    /// [`notes_policy`].
    pub async fn start(stateful: bool) -> TestServer {
        TestServer::start_with_policy(stateful, notes_policy()).await
    }

    /// A token for this server with these scopes, for `alice` via client `notes-agent`.
    pub fn token(&self, scopes: &[&str]) -> String {
        self.issuer
            .token(&self.url)
            .subject("alice")
            .client_id("notes-agent")
            .scopes(scopes)
            .mint()
            .expect("mint")
    }

    /// A transport presenting `token`.
    pub fn transport(&self, token: &str) -> StreamableHttpClientTransport<reqwest::Client> {
        transport(&self.url, token)
    }

    /// An rmcp client speaking protocol 2025-06-18 (initialize handshake, sessions).
    pub async fn legacy_client(
        &self,
        token: &str,
    ) -> Result<RunningService<RoleClient, ClientConfig>, rmcp::service::ClientInitializeError>
    {
        legacy_client(&self.url, token).await
    }

    /// An rmcp client speaking protocol 2026-07-28 (discover, `Mcp-Name` headers).
    pub async fn modern_client(
        &self,
        token: &str,
    ) -> Result<RunningService<RoleClient, ClientConfig>, rmcp::service::ClientInitializeError>
    {
        use rmcp::ClientServiceExt as _;
        ClientConfig::default()
            .serve_with_lifecycle(
                self.transport(token),
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
    }
}

impl TestServer {
    /// Like [`TestServer::start`], with `policy` in place of `notes_policy()` (it must fit
    /// the notes server).
    pub async fn start_with_policy(
        stateful: bool,
        policy: rmcp_authz::policy::Policy,
    ) -> TestServer {
        TestServer::start_with(stateful, policy, None).await
    }

    /// Like [`TestServer::start`], recording to `auditor`.
    pub async fn start_audited(stateful: bool, auditor: rmcp_authz::audit::Auditor) -> TestServer {
        TestServer::start_with(stateful, notes_policy(), Some(auditor)).await
    }

    /// A server with `policy` and, if given, an audit log.
    pub async fn start_with(
        stateful: bool,
        policy: rmcp_authz::policy::Policy,
        auditor: Option<rmcp_authz::audit::Auditor>,
    ) -> TestServer {
        TestServer::start_app(policy, auditor, |authz| {
            http_app(
                authz,
                StreamableHttpServerConfig::default().with_legacy_session_mode(stateful),
            )
            .expect("the policy fits the notes server")
        })
        .await
    }
}

/// A transport to the MCP endpoint `url` presenting `token`.
pub fn transport(url: &str, token: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    )
}

/// An rmcp client of the MCP endpoint `url` speaking protocol 2025-06-18, presenting
/// `token`.
pub async fn legacy_client(
    url: &str,
    token: &str,
) -> Result<RunningService<RoleClient, ClientConfig>, rmcp::service::ClientInitializeError> {
    ClientConfig::default()
        .with_protocol_version(ProtocolVersion::V_2025_06_18)
        .serve(transport(url, token))
        .await
}

impl TestServer {
    /// A server for `policy` (and `auditor`, if given) whose whole app `make_app` builds
    /// from the server's `Authz`: for handlers other than the notes server, or endpoints
    /// assembled another way. The resource URI (and token audience) is `url`.
    pub async fn start_app(
        policy: rmcp_authz::policy::Policy,
        auditor: Option<rmcp_authz::audit::Auditor>,
        make_app: impl FnOnce(&Authz) -> axum::Router,
    ) -> TestServer {
        let (listener, _) = TestServer::bind().await;
        let issuer = DevIssuer::new(ISSUER).expect("dev issuer");
        TestServer::serve_on(
            listener,
            issuer,
            policy,
            |builder| match auditor {
                Some(auditor) => builder.auditor(auditor),
                None => builder,
            },
            make_app,
        )
    }

    /// A listener on an ephemeral port of 127.0.0.1, and the MCP endpoint's URL there
    /// (`http://127.0.0.1:<port>/mcp`), for [`TestServer::serve_on`].
    pub async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        (listener, format!("http://{addr}/mcp"))
    }

    /// A server on `listener` (from [`TestServer::bind`]) trusting `issuer`'s tokens for
    /// its URL, with `policy` and whatever else `configure` sets on the `Authz` builder,
    /// serving the app `make_app` builds.
    pub fn serve_on(
        listener: tokio::net::TcpListener,
        issuer: DevIssuer,
        policy: rmcp_authz::policy::Policy,
        configure: impl FnOnce(rmcp_authz::AuthzBuilder) -> rmcp_authz::AuthzBuilder,
        make_app: impl FnOnce(&Authz) -> axum::Router,
    ) -> TestServer {
        let addr = listener.local_addr().expect("local addr");
        let origin = format!("http://{addr}");
        let url = format!("{origin}/mcp");
        let verifier = issuer.verifier(url.clone()).build().expect("verifier");
        let authz = configure(Authz::builder(verifier, policy)).build();
        let app = make_app(&authz);
        let served = authz.clone();
        let task = tokio::spawn(async move {
            let _ = served.serve(listener, app, std::future::pending()).await;
        });
        TestServer {
            url,
            origin,
            issuer,
            authz,
            task,
        }
    }

    /// The notes server under `policy` (and `auditor`), built by `Authz::router("/mcp", ..)`
    /// with the router's own defaults (stateless, JSON responses, the resource's host
    /// allowed).
    pub async fn start_router(
        policy: rmcp_authz::policy::Policy,
        auditor: Option<rmcp_authz::audit::Auditor>,
    ) -> TestServer {
        TestServer::start_app(policy, auditor, |authz| {
            // One store for every request, as in `http_app`.
            let notes = crate::notes::Notes::new();
            authz
                .router("/mcp", move || notes.clone())
                .expect("the policy fits the notes server")
        })
        .await
    }
}

/// The client's end of an in-memory pipe (see [`serve_in_memory`]).
pub type InMemoryTransport = (
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
);

/// `wrapped` served on one end of an in-memory pipe (as on stdio: one caller, the principal
/// given to `wrap_for`); the other end, for any rmcp client to connect through. The server
/// task ends when the client closes, or when the handshake fails (a refused `initialize`).
pub fn serve_in_memory<H: rmcp::ServerHandler>(
    wrapped: rmcp_authz::server::Authorized<H>,
) -> (InMemoryTransport, JoinHandle<()>) {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        if let Ok(running) = wrapped.serve(tokio::io::split(server_io)).await {
            let _ = running.waiting().await;
        }
    });
    (tokio::io::split(client_io), server)
}

/// `wrapped` served over an in-memory pipe (as on stdio: one caller, the principal given to
/// `wrap_for`), and an rmcp client connected to it. The server task ends when the client
/// closes; await it to know it stopped.
pub async fn connect_in_memory<H: rmcp::ServerHandler>(
    wrapped: rmcp_authz::server::Authorized<H>,
) -> (RunningService<RoleClient, ()>, JoinHandle<()>) {
    let (client_io, server) = serve_in_memory(wrapped);
    let client = tokio::time::timeout(crate::http::STEP, ().serve(client_io))
        .await
        .expect("initialize in time")
        .expect("the client connects");
    (client, server)
}

/// Spawns `command`, a server process that prints `listening <URL>` as its first line
/// once it accepts connections (as `notes_http_config` does), killed when the child is
/// dropped; returns it and the URL.
pub async fn spawn_listening(
    mut command: tokio::process::Command,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt as _;

    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the server");
    let stdout = child.stdout.take().expect("its standard output");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the server starts within 60 s")
        .expect("its standard output reads")
        .expect("the server prints its address");
    let url = first
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (child, url)
}
