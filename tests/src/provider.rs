//! A real authorization server for the tests: `oidc-provider` (panva's certified OpenID
//! Connect provider, pinned in `tests/provider/package.json`) run by Node on 127.0.0.1.
//!
//! [`Provider::start`] runs `tests/provider/provider.mjs`, which issues JWT access tokens
//! (RFC 9068, `typ: at+jwt`, ES256) through the client-credentials grant with RFC 8707
//! resource indicators, publishes its keys at its `jwks_uri`, answers token introspection
//! (RFC 7662) for opaque tokens, and rotates its signing key when restarted with
//! [`Provider::rotate`].
//!
//! `oidc-provider` is installed by `scripts/setup-interop.sh` into
//! `target/interop/provider/node_modules`; when it is missing the test fails and says so
//! (it is never skipped).
//!
//! What the provider does, as seen with version 9.13.3:
//! - `sub` of a client-credentials JWT is the `client_id`; the claims are `jti`, `sub`,
//!   `iat`, `exp`, `scope`, `client_id`, `iss` and `aud` (the resource), the header is
//!   `alg: ES256`, `typ: at+jwt` and the `kid`.
//! - A requested scope the resource server does not know is dropped, not refused: the
//!   token then has fewer scopes (or no `scope` claim at all).
//! - JWT access tokens cannot be introspected: the introspection endpoint answers 400
//!   `unsupported_token_type`. Opaque ones (resource [`OPAQUE_RESOURCE`]) can.
//! - Tokens are kept in memory, so a restart (and so [`Provider::rotate`]) forgets every
//!   opaque token; JWTs stay verifiable while their key is published.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The client that gets tokens (client-credentials grant, `client_secret_basic`).
pub const AGENT_ID: &str = "notes-agent";
/// [`AGENT_ID`]'s secret.
pub const AGENT_SECRET: &str = "notes-agent-secret";
/// The client allowed to call the introspection endpoint (`client_secret_basic`); the
/// provider answers `active: false` to every other client.
pub const INTROSPECTOR_ID: &str = "introspector";
/// [`INTROSPECTOR_ID`]'s secret.
pub const INTROSPECTOR_SECRET: &str = "introspector-secret";
/// Every scope the provider grants, for every resource.
pub const SCOPES: &str = "notes:read notes:write notes:delete";
/// The resource whose access tokens are opaque (and so can be introspected). Every other
/// `urn:` resource, and every `http://127.0.0.1...` one, gets JWT access tokens; any other
/// resource is refused with `invalid_target`.
pub const OPAQUE_RESOURCE: &str = "urn:opaque-notes";

/// How long the provider may take to say it is listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one HTTP request to the provider may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().unwrap_or(&here).to_path_buf();
    root.canonicalize().unwrap_or(root)
}

/// Where `scripts/setup-interop.sh` installs `oidc-provider`'s `node_modules`.
pub fn node_modules() -> PathBuf {
    repo_root().join("target/interop/provider/node_modules")
}

/// The provider script, `tests/provider/provider.mjs`.
pub fn script() -> PathBuf {
    repo_root().join("tests/provider/provider.mjs")
}

/// A running `oidc-provider`, killed when dropped.
#[derive(Debug)]
pub struct Provider {
    child: Child,
    issuer: String,
    port: u16,
    keys: PathBuf,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
    discovery: Value,
}

impl Provider {
    /// Starts the provider on a free port of 127.0.0.1, with its keys in
    /// `dir/keys.json` (made when missing), and reads its discovery document.
    ///
    /// # Panics
    /// When `oidc-provider` is not installed (run `scripts/setup-interop.sh`), when Node
    /// cannot be run, or when the provider does not start within [`START_TIMEOUT`].
    pub async fn start(dir: &Path) -> Provider {
        let keys = dir.join("keys.json");
        let (child, issuer, stderr) = spawn(&keys, 0, false).await;
        let port = port_of(&issuer);
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a reqwest client");
        let mut provider = Provider {
            child,
            issuer,
            port,
            keys,
            stderr,
            http,
            discovery: Value::Null,
        };
        provider.discovery = provider.fetch_discovery().await;
        provider
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash), exactly as the
    /// provider puts it in `iss` and in its discovery document.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The port the provider listens on (kept across [`Provider::rotate`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The provider's private keys file (`{"keys":[...]}`), newest signing key first.
    pub fn keys_file(&self) -> &Path {
        &self.keys
    }

    /// The discovery document read from `/.well-known/openid-configuration` at start.
    pub fn discovery(&self) -> &Value {
        &self.discovery
    }

    /// `jwks_uri` from the discovery document.
    pub fn jwks_uri(&self) -> &str {
        self.endpoint("jwks_uri")
    }

    /// `token_endpoint` from the discovery document.
    pub fn token_endpoint(&self) -> &str {
        self.endpoint("token_endpoint")
    }

    /// `introspection_endpoint` from the discovery document.
    pub fn introspection_endpoint(&self) -> &str {
        self.endpoint("introspection_endpoint")
    }

    /// What the provider wrote to stderr so far (warnings, errors), for failure messages.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// GETs `url` and returns its status and body, failing the test when the provider
    /// cannot be reached.
    pub async fn get(&self, url: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\nprovider stderr:\n{}", self.stderr()));
        let status = response.status();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        (status, body)
    }

    /// The JWK Set document served at [`Provider::jwks_uri`] now, as text.
    pub async fn jwks(&self) -> String {
        let (status, body) = self.get(self.jwks_uri()).await;
        assert_eq!(status, StatusCode::OK, "GET {}: {body}", self.jwks_uri());
        body
    }

    /// Sends a client-credentials token request as [`AGENT_ID`], with `resource` and
    /// `scope` when given, and returns the status and the JSON body (a token response or
    /// an OAuth error).
    pub async fn token_request(
        &self,
        resource: Option<&str>,
        scope: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(resource.map(|r| ("resource", r)));
        form.extend(scope.map(|s| ("scope", s)));
        self.post_form(self.token_endpoint(), AGENT_ID, AGENT_SECRET, &form)
            .await
    }

    /// The token response for `resource` and `scope` (see [`Provider::token_request`]).
    ///
    /// # Panics
    /// With the provider's error body when it refuses.
    pub async fn token_response(&self, resource: &str, scope: &str) -> Value {
        let (status, body) = self.token_request(Some(resource), Some(scope)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "token request for {resource} ({scope}) refused: {body}\nprovider stderr:\n{}",
            self.stderr()
        );
        body
    }

    /// An access token for `resource` with `scope` (space-separated), issued to
    /// [`AGENT_ID`].
    ///
    /// # Panics
    /// With the provider's error body when it refuses.
    pub async fn token(&self, resource: &str, scope: &str) -> String {
        let body = self.token_response(resource, scope).await;
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_owned()
    }

    /// Introspects `token` as [`INTROSPECTOR_ID`] and returns the status and JSON body.
    pub async fn introspect(&self, token: &str) -> (StatusCode, Value) {
        self.introspect_as(INTROSPECTOR_ID, INTROSPECTOR_SECRET, token)
            .await
    }

    /// Introspects `token` authenticating as `client_id` with `secret`.
    pub async fn introspect_as(
        &self,
        client_id: &str,
        secret: &str,
        token: &str,
    ) -> (StatusCode, Value) {
        self.post_form(
            self.introspection_endpoint(),
            client_id,
            secret,
            &[("token", token)],
        )
        .await
    }

    /// Stops the provider with SIGTERM (SIGKILL after 10 s) and returns how it exited.
    pub async fn stop(&mut self) -> ExitStatus {
        stop(&mut self.child).await
    }

    /// Rotates the signing key: stops the provider, then restarts it with `--rotate` on the
    /// same keys file and the same port, so the issuer does not change. The new ES256 key
    /// signs from then on; the old keys stay published. Opaque tokens are forgotten.
    ///
    /// # Panics
    /// When the provider does not come back on the same port.
    pub async fn rotate(&mut self) {
        let status = self.stop().await;
        assert!(
            status.success(),
            "the provider exited with {status} on SIGTERM\nprovider stderr:\n{}",
            self.stderr()
        );
        // The port is free once the process is gone; allow the kernel a moment anyway.
        let mut last = String::new();
        for _ in 0..50 {
            match try_spawn(&self.keys, self.port, true).await {
                Ok((child, issuer, stderr)) => {
                    assert_eq!(
                        issuer, self.issuer,
                        "the provider came back on another port"
                    );
                    self.child = child;
                    self.stderr = stderr;
                    self.discovery = self.fetch_discovery().await;
                    return;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the provider did not restart on port {}: {last}", self.port);
    }

    fn endpoint(&self, name: &str) -> &str {
        self.discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in the discovery document {}", self.discovery))
    }

    async fn fetch_discovery(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let (status, body) = self.get(&url).await;
        assert_eq!(status, StatusCode::OK, "GET {url}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
    }

    async fn post_form(
        &self,
        url: &str,
        client_id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(url)
            .basic_auth(client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_urlencode(form))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}\nprovider stderr:\n{}", self.stderr()));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: reading the body: {e}"));
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {url}: {status}, not JSON ({e}): {text}"));
        (status, body)
    }
}

/// `application/x-www-form-urlencoded` (everything but the unreserved characters is
/// percent-encoded, so `+` and `:` survive).
fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, name);
        out.push('=');
        encode(&mut out, value);
    }
    out
}

fn port_of(issuer: &str) -> u16 {
    issuer
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in the issuer {issuer:?}"))
}

async fn spawn(keys: &Path, port: u16, rotate: bool) -> (Child, String, Arc<Mutex<String>>) {
    try_spawn(keys, port, rotate)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the provider script and waits for its `listening URL` line.
async fn try_spawn(
    keys: &Path,
    port: u16,
    rotate: bool,
) -> Result<(Child, String, Arc<Mutex<String>>), String> {
    let modules = node_modules();
    if !modules.join("oidc-provider/package.json").is_file() {
        panic!(
            "oidc-provider is not installed in {}: run scripts/setup-interop.sh",
            modules.display()
        );
    }
    let mut command = Command::new("node");
    command
        .arg(script())
        .arg("--port")
        .arg(port.to_string())
        .arg("--keys")
        .arg(keys)
        .args(["--issuer-host", "127.0.0.1"])
        .env("NODE_PATH", &modules)
        .current_dir(modules.parent().unwrap_or(&modules))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if rotate {
        command.arg("--rotate");
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (is Node.js installed?): {e}"));

    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    let stdout = child.stdout.take().expect("piped stdout");

    let listening = tokio::time::timeout(START_TIMEOUT, read_listening(stdout)).await;
    let failure = match listening {
        Ok(Ok(issuer)) => return Ok((child, issuer, stderr)),
        Ok(Err(e)) => e,
        Err(_) => format!("the provider did not say it was listening within {START_TIMEOUT:?}"),
    };
    let _ = child.start_kill();
    let status = child.wait().await;
    // Let the stderr reader catch up with what the process wrote before it ended.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
    Err(format!(
        "{failure} (exit: {status:?})\nprovider stderr:\n{err}"
    ))
}

/// Reads stdout up to the `listening URL` line, then keeps draining it in the background.
async fn read_listening(stdout: ChildStdout) -> Result<String, String> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(url) = line.strip_prefix("listening ") {
                    let url = url.trim().to_owned();
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(url);
                }
            }
            Ok(None) => return Err("the provider exited before listening".to_owned()),
            Err(e) => return Err(format!("reading the provider's stdout: {e}")),
        }
    }
}

/// Sends SIGTERM (through `kill`, as the tests have no signal crate), waits up to 10 s,
/// then kills.
async fn stop(child: &mut Child) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    let termed = match child.id() {
        Some(pid) => std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success()),
        None => false,
    };
    if termed && let Ok(status) = tokio::time::timeout(Duration::from_secs(10), child.wait()).await
    {
        return status.expect("waiting for the provider");
    }
    let _ = child.start_kill();
    child.wait().await.expect("waiting for the provider")
}
