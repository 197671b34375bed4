//! A reverse proxy on 127.0.0.1 that presents a bearer token for its clients: it adds
//! `Authorization: Bearer <token>` to each request and forwards the rest as it came
//! (method, path and query, headers, `Host` included, and the body), and streams the
//! upstream's response back as it arrives (SSE included). It lets a client that sends no
//! token, such as the MCP conformance suite, reach a server behind `rmcp-authz`.
//!
//! Each request is forwarded over its own HTTP/1.1 connection to the upstream, so a
//! long-lived SSE stream holds nothing else up. Hop-by-hop headers (RFC 9110 section
//! 7.6.1: `Connection` and those it names, `Keep-Alive`, `Proxy-Connection`, `TE`,
//! `Transfer-Encoding`, `Upgrade`) belong to each connection and are not forwarded, as
//! for any proxy; each side frames its own messages.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

/// A running proxy, stopped when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// `http://127.0.0.1:<port>`, where the proxy listens.
    pub origin: String,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    authorization: HeaderValue,
}

impl Proxy {
    /// Starts forwarding what arrives on `listener` to `upstream`, presenting `token`.
    pub fn start(listener: tokio::net::TcpListener, upstream: SocketAddr, token: &str) -> Proxy {
        let origin = format!(
            "http://{}",
            listener.local_addr().expect("the proxy's address")
        );
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is a header value");
        authorization.set_sensitive(true);
        let app = axum::Router::new().fallback(forward).with_state(Upstream {
            addr: upstream,
            authorization,
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { origin, task }
    }
}

/// Removes the hop-by-hop headers of `headers`, those `Connection` names included.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Response<Body> {
    match try_forward(&upstream, request).await {
        Ok(response) => response,
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("proxy: {e}")))
            .expect("a plain response"),
    }
}

async fn try_forward(
    upstream: &Upstream,
    request: Request,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = request.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::AUTHORIZATION, upstream.authorization.clone());
    // The request line keeps the origin-form target the client sent (path and query).
    let request = axum::http::Request::from_parts(parts, body);

    let stream = tokio::net::TcpStream::connect(upstream.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await?;
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}
